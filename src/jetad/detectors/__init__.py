"""Anomaly detectors on one interface: `fit` on background, `score` (higher = more anomalous), `save`/`load`.

Adding a detector is one new module and one import line here (its `@register` fills `REGISTRY`).
`make_detector(name, **params)` checks the parameters against the constructor first (`validate_params`: names,
annotated types, impossible values), so a bad hyper-parameter is an error before any data are read.
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import math
import re
import types
import typing
from typing import Any

from jetad.detectors import autoencoder, clr, emd_score, flow, nae, nurd  # noqa: F401  (register the zoo)
from jetad.detectors.base import REGISTRY, Detector, TorchDetector, register
from jetad.detectors.inputs import CMS_WNAE_FEATURES, InputSpec

__all__ = ["CMS_WNAE_FEATURES", "REGISTRY", "Detector", "InputSpec", "ParameterError", "TorchDetector", "check_params",
           "constructor_params", "make_detector", "register", "validate_params"]


class ParameterError(ValueError):
    """A hyper-parameter that the estimator's constructor cannot take: unknown name, wrong type or impossible value."""


#: Integer parameters whose default is positive but for which 0 is meaningful (no pre-training, no patience, ...).
_ZERO_ALLOWED = frozenset({"pretrain_epochs", "nae_epochs", "patience", "min_sideband_events"})
#: Parameters with no sign rule (``n_jobs <= 0`` means all cores).
_ANY_SIGN = frozenset({"n_jobs"})
#: Float parameters that must be strictly positive (rates, temperatures, regularization strengths, caps).
_POSITIVE = frozenset({"lr", "critic_lr", "temperature", "step_size", "sinkhorn_reg", "max_weight", "reweight_max",
                       "oversampling", "sideband_width", "divergence_threshold"})
#: Probabilities in [0, 1].
_PROBABILITIES = frozenset({"dropout", "p_drop", "replay_ratio"})


def constructor_params(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters `cls(...)` accepts, through the ``**kwargs`` chain of its base classes.

    Each `inspect.Parameter` carries the evaluated type hint as its annotation (`inspect.Parameter.empty` when
    the hint cannot be evaluated) and the default of the most derived class that declares it.
    """
    params: dict[str, inspect.Parameter] = {}
    klass: type[Any]
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        try:
            hints = typing.get_type_hints(klass.__init__)
        except Exception:  # an unresolvable annotation: check that class's names, not their types
            hints = {}
        forwards = False
        for p in list(inspect.signature(klass.__init__).parameters.values())[1:]:
            if p.kind == p.VAR_KEYWORD:
                forwards = True
            elif p.kind != p.VAR_POSITIONAL and p.name not in params:
                params[p.name] = p.replace(annotation=hints.get(p.name, inspect.Parameter.empty))
        if not forwards:
            break
    return params


def check_params(cls: type, params: dict[str, Any], what: str | None = None) -> dict[str, Any]:
    """`params` checked against the constructor of `cls` before anything is built or read; returns `params`.

    Checks: every name is a constructor parameter (an unknown one lists the known); every value has the annotated
    type (JSON-style: lists for tuples, ints for floats); numbers are finite and keep the sign of their default
    (a count with a positive default stays >= 1, see `_ZERO_ALLOWED`; a non-negative one stays >= 0), fractions
    lie in (0, 1) and probabilities in [0, 1]. Raises `ParameterError` naming `what` (default: the class name),
    the parameter, the value and what it takes.
    """
    what = what or getattr(cls, "name", "") or cls.__name__
    known = constructor_params(cls)
    for key, value in params.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(f"{what} has no parameter {key!r}{hint}; its parameters are {', '.join(known)}")
        p = known[key]
        if p.annotation is not inspect.Parameter.empty and not _conforms(value, p.annotation):
            raise ParameterError(f"{what}: {key} takes {_type_name(p.annotation)}, got {value!r} "
                                 f"({type(value).__name__})")
        problem = _value_problem(key, value, p.default)
        if problem:
            raise ParameterError(f"{what}: {key} {problem}, got {value!r}")
    return params


def validate_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` checked against detector `name`'s constructor (see `check_params`), before any data are read."""
    if name not in REGISTRY:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(sorted(REGISTRY))}")
    check_params(REGISTRY[name], params, name)
    spec = params.get("inputs")
    if isinstance(spec, dict):
        check_params(InputSpec, spec, f"{name} inputs")
        try:
            InputSpec(**spec)
        except (TypeError, ValueError) as err:
            raise ParameterError(f"{name}: inputs {spec!r}: {err}") from None
    return params


def make_detector(name: str, **params: Any) -> Detector:
    """A detector by registry name with constructor parameters, checked first (`validate_params`).

    Unknown names list the known detectors; a parameter of unknown name or wrong type is a `ParameterError`.
    """
    validate_params(name, params)
    return REGISTRY[name](**params)


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON-like `value` fits type hint `hint` (unions, Literal, tuple/list/dict, classes; lenient else)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        return not args or (len(value) == len(args) and all(_conforms(v, a) for v, a in zip(value, args, strict=True)))
    if origin in (list, collections.abc.Sequence):
        return isinstance(value, list | tuple) and (not args or all(_conforms(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    """'InputSpec | dict | None' for the evaluated hint (module prefixes dropped)."""
    return hint.__name__ if isinstance(hint, type) else re.sub(r"\b[\w.]+\.(\w+)", r"\1", str(hint))


def _value_problem(name: str, value: Any, default: Any) -> str | None:
    """What is wrong with a well-typed number (or tuple of numbers) for parameter `name`, or None."""
    if isinstance(value, list | tuple):
        defaults = default if isinstance(default, tuple) and len(default) else (None,)
        return next((f"[{i}] {p}" for i, v in enumerate(value)
                     if (p := _value_problem(name, v, defaults[min(i, len(defaults) - 1)]))), None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return "must be a finite number"
    if name.endswith("_fraction") and not 0 < value < 1:
        return "must lie in (0, 1)"
    if name in _PROBABILITIES and not 0 <= value <= 1:
        return "must lie in [0, 1]"
    if name in _POSITIVE and value <= 0:
        return "must be > 0"
    if name in _ANY_SIGN or isinstance(default, bool) or not isinstance(default, int | float):
        return None
    if isinstance(default, int) and default > 0 and name not in _ZERO_ALLOWED and value < 1:
        return "must be >= 1"
    if default >= 0 and value < 0:
        return "must be >= 0"
    return None
