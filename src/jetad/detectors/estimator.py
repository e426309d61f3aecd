"""The estimator contract shared by every detector and every resonant search, and their one registry.

scikit-learn style: hyper-parameters are constructor arguments stored as-is; `fit(...)` learns state whose
names end in ``_`` and returns ``self``; `score(sample)` gives (N,) numbers, higher = more anomalous;
`get_params` / `set_params` read and change the configuration. `save(path)` / `load(path)` write and read one
model file through `jetad.data.model_file` (arrays + JSON, read without running code): the constructor
parameters, the learned state, the training history and the parameter count, the same for every method.
`@register` puts a class into ``REGISTRIES[kind]`` under its `name`, so adding a method is one new file.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from jetad import __version__
from jetad.data.model_file import check_model_format, read_model_payload, write_model_payload
from jetad.data.progress import Progress
from jetad.data.sample import SchemaError

__all__ = ["FORMAT_VERSION", "PAYLOAD_KEYS", "REGISTRIES", "Estimator", "Progress", "register"]

#: Model-file format version of every estimator: 2 = arrays + JSON only (1 pickled whole objects).
FORMAT_VERSION = 2
#: The keys of every estimator payload (besides format, format_version, jetad_version).
PAYLOAD_KEYS = ("method", "params", "state", "history", "n_parameters")
#: kind ('detector', 'search') -> registry name -> class.
REGISTRIES: dict[str, dict[str, type[Estimator]]] = {"detector": {}, "search": {}}

E = TypeVar("E", bound="Estimator")


def register(cls: type[E]) -> type[E]:
    """Class decorator: make an estimator available by its `name` (CLI, benchmark, `load`)."""
    if not cls.name or cls.kind not in REGISTRIES:
        raise TypeError(f"{cls.__name__}: a registered estimator needs a name and a kind in {sorted(REGISTRIES)}")
    REGISTRIES[cls.kind][cls.name] = cls
    return cls


class Estimator:
    """Base of detectors and searches: parameters, the fitted check, and the one model-file format.

    Subclasses set `name` and `kind`, implement `fit` and `score`, and store learned state beyond what the
    base saves in `_get_state` / `_set_state` (arrays, tensors and JSON values only).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    #: Payload keys this kind adds to `PAYLOAD_KEYS` (detectors: their input spec).
    extra_payload_keys: ClassVar[tuple[str, ...]] = ()
    #: What a user does about a model file this jetad cannot read.
    remedy: ClassVar[str] = "fit and save it again with this jetad"
    #: Values of parameters added after model files were first written, as those files were trained with: a file
    #: without the parameter loads with this value, not the new default (which would silently change the model).
    params_before: ClassVar[dict[str, Any]] = {}

    @classmethod
    def model_format(cls) -> str:
        """The `format` field of this kind's model files ('jetad.detector', 'jetad.search')."""
        return f"jetad.{cls.kind}"

    # -- parameters --------------------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """Constructor parameter names, through the class hierarchy (what `get_params` returns)."""
        names: list[str] = []
        klass: type[Any]  # not `type`: mypy refuses `__init__` looked up on a plain type instance
        for klass in cls.__mro__:
            if klass is object:
                continue
            for p in list(inspect.signature(klass.__init__).parameters.values())[1:]:
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in names:
                    names.append(p.name)
        return names

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as stored (the model's configuration)."""
        return {p: self._param_value(p, getattr(self, p)) for p in self.param_names() if hasattr(self, p)}

    def _param_value(self, name: str, value: Any) -> Any:
        """A parameter as `get_params` reports it (detectors turn a fitted input spec back into its config)."""
        return value

    def set_params(self: E, **params: Any) -> E:
        """Change constructor parameters (before `fit`); unknown names are a ValueError listing the known."""
        known = self.param_names()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"{self.name or type(self).__name__}: unknown parameter(s) {unknown}; known: {known}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # -- contract ----------------------------------------------------------------------------------
    def fit(self: E, *args: Any, **kwargs: Any) -> E:
        raise NotImplementedError

    def score(self, sample: Any) -> Any:
        raise NotImplementedError

    def is_fitted(self) -> bool:
        """Whether `fit` (or `load`) has run."""
        return False

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() or load()")

    def n_parameters(self) -> int:
        """Trainable parameters (0 for methods without a network)."""
        return 0

    # -- persistence -------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        """Learned state as arrays, tensors and JSON values."""
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        """Inverse of `_get_state`."""

    def _payload_extra(self) -> dict[str, Any]:
        """The payload entries named by `extra_payload_keys`."""
        return {}

    def _restore(self, payload: dict[str, Any], path: str | Path) -> None:
        """Set the learned state from a checked payload (subclasses add what `_payload_extra` wrote)."""
        self.history_ = payload["history"]
        self._set_state(payload["state"])

    def to_payload(self) -> dict[str, Any]:
        """The model-file payload of this fitted estimator (also nested inside saved searches)."""
        self._check_fitted()
        return {"format": self.model_format(), "format_version": FORMAT_VERSION, "jetad_version": __version__,
                "method": self.name, "params": self.get_params(), "state": self._get_state(),
                "history": getattr(self, "history_", None), "n_parameters": self.n_parameters(),
                **self._payload_extra()}

    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator to `path` atomically (arrays + JSON; `load` reads it back)."""
        return write_model_payload(path, self.to_payload())

    @classmethod
    def load(cls: type[E], path: str | Path) -> E:
        """A saved estimator of this kind (the right subclass is picked from the file)."""
        return cls.from_payload(read_model_payload(path), path)

    @classmethod
    def _fill_registry(cls) -> None:
        """Import the package whose modules register this kind."""

    @classmethod
    def from_payload(cls: type[E], payload: dict[str, Any], path: str | Path) -> E:
        """The estimator stored in a model file's payload; SchemaError naming `path` if it is malformed."""
        what = "model" if cls.kind == "detector" else cls.kind
        check_model_format(payload, path, cls.model_format(), FORMAT_VERSION, what, cls.remedy,
                           keys=PAYLOAD_KEYS + cls.extra_payload_keys)
        cls._fill_registry()
        registry = REGISTRIES[cls.kind]
        name, params, state = payload["method"], payload["params"], payload["state"]
        if not isinstance(name, str) or name not in registry:
            raise SchemaError(f"{path}: unknown {cls.kind} {name!r} (known: {sorted(registry)})")
        if not isinstance(params, dict) or not isinstance(state, dict):
            raise SchemaError(f"{path}: malformed {what} file (params and state must be dicts)")
        klass = registry[name]
        if not issubclass(klass, cls):
            raise SchemaError(f"{path}: holds a {klass.__name__}, not a {cls.__name__}")
        try:
            est = klass(**{**klass.params_before, **params})
            est._restore(payload, path)
        except SchemaError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError, AttributeError) as err:
            raise SchemaError(f"{path}: saved {name} does not match this jetad ({type(err).__name__}: "
                              f"{str(err)[:200]}); {cls.remedy}") from None
        return est
