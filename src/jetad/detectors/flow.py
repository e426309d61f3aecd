"""Normalizing-flow density of jet features; score = -log p(x), or -log p(x | context) when conditioned.

A masked autoregressive flow (MAF, 1705.07057) or a neural spline flow (NSF, 1906.04032), from zuko, is fit
by maximum likelihood on background jets: loss = mean -log p(x). Conditioned on a resonance variable (m_jj)
this is the density estimator of ANODE (2001.04990) and CATHODE (2109.00546); `sample(n, context)` draws
background-like jets at given m_jj values, which CATHODE trains a classifier against in the signal region.

The flow models the InputSpec-transformed features z = T(x). With the 'standard' scaling the Jacobian
|dz/dx| = prod 1/std is a constant: it changes no ranking, and `log_prob`/`score` add it back so densities
are in raw feature units. With 'quantile' the Jacobian depends on x and is not added: scores are then
densities of the Gaussianized features (a valid but different anomaly score). The context (the nuisance) is
log(1 + c)-transformed for masses (jet mass, soft-drop mass, m_jj: positive, spanning decades) and
standardized with training-set statistics that are saved with the model.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from jetad.data.sample import JetSample, SchemaError
from jetad.detectors.base import TorchDetector, register
from jetad.detectors.inputs import InputSpec

__all__ = ["FLOWS", "MASS_CONTEXT", "FlowDensity", "context_columns", "is_mass_column"]

FLOWS = ("maf", "nsf")
#: Conditioning name for the jet mass, `sample.jets[:, 3]` [GeV].
MASS_CONTEXT = "mass"


def is_mass_column(name: str) -> bool:
    """Whether a context column is a mass (log-transformed by default): 'mass', '*mass*', 'mj*', 'm_jj'."""
    low = name.lower()
    return "mass" in low or low.startswith(("mj", "m_j"))


def context_columns(sample: JetSample, names: tuple[str, ...], source: str = "sample") -> np.ndarray:
    """(N, len(names)) float64 raw context: 'mass' is the jet mass, other names feature or event columns."""
    if not names:
        return np.zeros((len(sample), 0))
    return np.stack([sample.column(name, source) for name in names], axis=1)


@register
class FlowDensity(TorchDetector):
    """Normalizing-flow density on jet features; score = -log p(x [| context]), higher = more anomalous.

    Model selection: the epoch with the lowest validation negative log-likelihood (background only).

    Arguments:
        flow: 'maf' (affine masked autoregressive transforms, 1705.07057) or 'nsf' (rational-quadratic
            splines, 1906.04032).
        transforms: number of autoregressive transforms.
        hidden: hidden widths of each transform's masked MLP.
        bins: spline bins (NSF only).
        condition: None, or the nuisance to condition on: 'mass' (jet mass) or a feature/event column name
            ('sd_mass', 'mjj'), or a tuple of them. It must not also be an input feature.
        log_context: apply log(1 + c) to the context before standardizing; None = for masses only
            (`is_mass_column`).
        **kwargs: TorchDetector options (inputs, epochs=50, batch_size=256, lr=1e-3, patience=10, seed, ...).

    Example:
        det = FlowDensity(condition="mjj", inputs={"features": ("mj1", "dmj", "tau21_j1", "tau21_j2")})
        det.fit(sidebands)
        fake = det.sample(len(sr), context=sr.event["mjj"], seed=1)  # CATHODE: background in the SR
    """

    name: ClassVar[str] = "flow"

    def __init__(
        self,
        flow: str = "maf",
        transforms: int = 5,
        hidden: tuple[int, ...] = (64, 64),
        bins: int = 8,
        condition: str | tuple[str, ...] | None = None,
        log_context: bool | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if flow not in FLOWS:
            raise ValueError(f"flow must be one of {FLOWS}, got {flow!r}")
        self.flow = flow
        self.transforms = transforms
        self.hidden = tuple(hidden)
        self.bins = bins
        self.condition = condition
        self.log_context = log_context
        self._validated_spec()

    # -- inputs and context --------------------------------------------------------------------------
    def _context_names(self) -> tuple[str, ...]:
        if self.condition is None:
            return ()
        return (self.condition,) if isinstance(self.condition, str) else tuple(self.condition)

    def _validated_spec(self) -> InputSpec:
        spec = self.input_spec()
        if spec.kind != "features":
            raise ValueError(f"flows model feature vectors; got input kind {spec.kind!r}")
        clash = [c for c in self._context_names() if c in spec.features]
        if clash:
            raise ValueError(
                f"conditioning column(s) {clash} are also input features {spec.features}; a nuisance cannot "
                "be both modelled and conditioned on: remove it from inputs['features']"
            )
        return spec

    def _context_logs(self) -> np.ndarray:
        names = self._context_names()
        if self.log_context is not None:
            return np.full(len(names), bool(self.log_context))
        return np.array([is_mass_column(n) for n in names], dtype=bool)

    def _prepare_context(self, raw: np.ndarray, source: str) -> np.ndarray:
        """Raw context (N, C) -> log(1 + c) where chosen; standardized once `context_mean_` is learned."""
        logs = self._context_logs()
        c = np.array(raw, dtype=np.float64, copy=True)
        if (c[:, logs] <= -1).any():
            raise SchemaError(
                f"{source}: context values <= -1 cannot be log-transformed; pass log_context=False"
            )
        c[:, logs] = np.log1p(c[:, logs])
        if hasattr(self, "context_mean_"):
            c = (c - self.context_mean_) / self.context_std_
        return c

    def _model_inputs(self, sample: JetSample, source: str) -> np.ndarray:
        """The network's rows: transformed features, then the standardized context as the last column(s)."""
        x = self.spec_.transform(sample, source)
        names = self._context_names()
        if not names:
            return x
        c = self._prepare_context(context_columns(sample, names, source), source)
        return np.concatenate([x, c.astype(np.float32)], axis=1)

    def _split_batch(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        f = len(self.spec_.features)
        return (batch[:, :f], batch[:, f:]) if self._context_names() else (batch, None)

    def _log_jacobian(self) -> float:
        """log |dz/dx| of the input scaling when it is constant ('standard'), else 0."""
        if self.spec_.scaling == "standard":
            return float(-np.log(self.spec_.state["std"]).sum())
        return 0.0

    # -- template ------------------------------------------------------------------------------------
    def build_model(self, input_shape: tuple[int, ...]) -> torch.nn.Module:
        import zuko

        if len(input_shape) != 1:
            raise ValueError(f"flows take feature vectors, got input shape {input_shape}")
        kw = {"transforms": self.transforms, "hidden_features": tuple(self.hidden)}
        n_ctx = len(self._context_names())
        if self.flow == "maf":
            return zuko.flows.MAF(input_shape[0], n_ctx, **kw)
        return zuko.flows.NSF(input_shape[0], n_ctx, bins=self.bins, **kw)

    def _flow_log_prob(self, batch: torch.Tensor) -> torch.Tensor:
        x, c = self._split_batch(batch)
        return self.model_(c).log_prob(x) if c is not None else self.model_().log_prob(x)

    def loss(self, batch):
        return -self._flow_log_prob(batch).mean(), {}

    def score_batch(self, batch):
        return -(self._flow_log_prob(batch) + self._log_jacobian())

    def _fit_inputs(self, train: JetSample) -> None:
        """Input scaling plus the context standardization, both learned on training data."""
        self.spec_ = self._validated_spec().fit(train, train.describe("training sample"))
        for attr in ("context_mean_", "context_std_"):
            self.__dict__.pop(attr, None)
        raw = context_columns(train, self._context_names(), train.describe("training sample"))
        c = self._prepare_context(raw, train.describe("training sample"))
        std = c.std(0)
        self.context_mean_, self.context_std_ = c.mean(0), np.where(std > 0, std, 1.0)

    # -- conveniences --------------------------------------------------------------------------------
    def log_prob(self, sample: JetSample) -> np.ndarray:
        """log p(x [| context]) per jet, in raw feature units for the 'standard' scaling (= -score)."""
        return -self.score(sample)

    def latents(self, sample: JetSample, batch_size: int = 8192) -> np.ndarray:
        """(N, F) base-space points z = f(x [; context]) of the jets (N(0, I) for the training distribution),
        through the input scaling and context standardization of training (LaCATHODE 2210.14924 works here)."""
        self._check_fitted()
        rows = self._model_inputs(sample, sample.describe("flow input"))
        self.model_.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(rows), batch_size):
                x, c = self._split_batch(torch.as_tensor(rows[i:i + batch_size], device=self.device_))
                out.append((self.model_(c) if c is not None else self.model_()).transform(x).cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(self.spec_.features)))

    def sample(
        self, n: int, context: np.ndarray | float | None = None, seed: int | None = None
    ) -> np.ndarray:
        """(n, F) jets drawn from the flow, in raw feature units, columns in `spec_.features` order.

        Arguments:
            context: for a conditional flow, raw context values (GeV for masses): (n,) or (n, C), or one value
                for all draws; standardized internally as in training. Must be None for an unconditional flow.
            seed: seeds the draw (the global torch RNG is left untouched); None uses the global RNG.
        """
        self._check_fitted()
        names = self._context_names()
        ctx = None
        if names:
            if context is None:
                raise ValueError(f"this flow is conditioned on {names}; pass context (raw units)")
            c = np.asarray(context, dtype=np.float64)
            if len(names) == 1 and c.ndim <= 1:
                c = c.reshape(-1, 1)
            try:
                c = np.broadcast_to(c, (n, len(names)))
            except ValueError as err:
                raise ValueError(
                    f"context has shape {np.shape(context)}; expected one value, (n,) or (n, {len(names)})"
                ) from err
            if not np.isfinite(c).all():
                raise ValueError("context has NaN/inf values")
            c = self._prepare_context(c, "context")
            ctx = torch.as_tensor(c, dtype=torch.float32, device=self.device_)
        elif context is not None:
            raise ValueError("this flow is unconditional; context must be None")
        devices = list(range(torch.cuda.device_count())) if self.device_.type == "cuda" else []
        self.model_.eval()
        with torch.random.fork_rng(devices=devices, enabled=seed is not None), torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            z = self.model_(ctx).sample() if ctx is not None else self.model_().sample((n,))
        return self.spec_.inverse_transform(z.cpu().numpy().astype(np.float64)).astype(np.float32)

    # -- persistence ---------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return super()._get_state() | {"context_mean": self.context_mean_, "context_std": self.context_std_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.context_mean_ = np.asarray(state["context_mean"], dtype=np.float64)
        self.context_std_ = np.asarray(state["context_std"], dtype=np.float64)
        super()._set_state(state)
