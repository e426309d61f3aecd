"""The Detector contract (scikit-learn style) and the template every neural detector fills in.

`fit(train, val=None) -> self` learns on background; `score(sample) -> (N,)` with higher = more anomalous;
`save(path)` / `load(path)` store the constructor parameters, the input spec and the learned state, the same
way for every detector and search (`jetad.detectors.estimator`). Hyper-parameters are constructor arguments
stored as-is; learned state ends in `_`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from jetad.data.sample import JetSample, SchemaError
from jetad.detectors.estimator import FORMAT_VERSION, REGISTRIES, Estimator, Progress, register
from jetad.detectors.inputs import InputSpec

if TYPE_CHECKING:
    import torch

__all__ = ["MODEL_FORMAT_VERSION", "REGISTRY", "Detector", "Progress", "TorchDetector", "register"]

MODEL_FORMAT_VERSION = FORMAT_VERSION
#: Registered detectors by name (the detector part of `REGISTRIES`).
REGISTRY: dict[str, type[Detector]] = REGISTRIES["detector"]  # type: ignore[assignment]


class Detector(Estimator):
    """Base anomaly detector. Subclasses set `name`, take hyper-parameters in `__init__`, implement
    `fit` and `score`, and, if they learn more than the input scaling, `_get_state`/`_set_state`.
    """

    kind: ClassVar[str] = "detector"
    extra_payload_keys: ClassVar[tuple[str, ...]] = ("inputs",)
    remedy: ClassVar[str] = "retrain with 'jetad train'"

    def __init__(self, inputs: InputSpec | dict | None = None, seed: int = 0):
        self.inputs = inputs
        self.seed = seed

    # -- parameters --------------------------------------------------------------------------------
    def _param_value(self, name: str, value: Any) -> Any:
        if name == "inputs" and isinstance(value, InputSpec):
            return value.to_dict() | {"state": {}}
        return value

    def input_spec(self) -> InputSpec:
        """The (unfitted) input spec this detector reads: its `inputs`, else `default_inputs()`."""
        if isinstance(self.inputs, InputSpec):
            return InputSpec(**{**self.inputs.to_dict(), "state": {}})
        return InputSpec(**(self.inputs or self.default_inputs()))

    def default_inputs(self) -> dict[str, Any]:
        """The input spec used when none is given."""
        return {"kind": "features"}

    # -- contract ------------------------------------------------------------------------------------
    def fit(self, train: JetSample, val: JetSample | None = None, progress: Progress | None = None) -> Self:
        raise NotImplementedError

    def score(self, sample: JetSample) -> np.ndarray:
        raise NotImplementedError

    def is_fitted(self) -> bool:
        return hasattr(self, "spec_")

    def _inputs_for(self, sample: JetSample, source: str) -> np.ndarray:
        self._check_fitted()
        if len(sample) == 0:
            raise SchemaError(f"{source}: empty sample, nothing to score")
        return self._model_inputs(sample, source)

    def _fit_inputs(self, train: JetSample) -> None:
        """Learn everything about the inputs from training data (the input scaling; subclasses add more)."""
        self.spec_ = self.input_spec().fit(train, train.describe("training sample"))

    def _model_inputs(self, sample: JetSample, source: str) -> np.ndarray:
        """The rows the model reads for `sample` (the scaled inputs; subclasses may append columns)."""
        return self.spec_.transform(sample, source)

    # -- persistence ---------------------------------------------------------------------------------
    def _payload_extra(self) -> dict[str, Any]:
        return {"inputs": self.spec_.to_dict()}

    def _restore(self, payload: dict[str, Any], path: str | Path) -> None:
        self.spec_ = InputSpec.from_dict(payload["inputs"])
        super()._restore(payload, path)

    @classmethod
    def _fill_registry(cls) -> None:
        import jetad.detectors  # noqa: F401  (its modules register the zoo)


class TorchDetector(Detector):
    """Template for neural detectors: subclasses build the network and say what the loss and score are.

    Subclasses implement `build_model(input_shape)`, `loss(batch) -> (loss, logs)` and
    `score_batch(batch) -> (B,)`; optionally `criterion(x_val)` (default: mean validation loss, background
    only) and `extra_state`/`load_extra_state` (e.g. an MCMC replay buffer) for resumable training.
    Every such detector can be decorrelated from a nuisance with DisCo (`disco_lambda` > 0 adds
    lambda * dCor^2(score, `disco_observer`) per batch; the observer is 'mass', 'pt' or any feature/event column)
    and/or by mass reweighting (`reweight_observer`: training draws events with weights that make that column
    flat in `reweight_bins` bins, no weight above `reweight_max` times the mean; see
    `jetad.detectors.reweighting`). With `use_sample_weights` the samples' own weights are honoured the same
    way (weighted draws, weighted validation); by default they are ignored in training.
    """

    def __init__(
        self,
        inputs: InputSpec | dict | None = None,
        epochs: int = 50,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 10,
        val_fraction: float = 0.2,
        device: str = "auto",
        seed: int = 0,
        checkpoint: str | None = None,
        disco_lambda: float = 0.0,
        disco_observer: str = "mass",
        reweight_observer: str | None = None,
        reweight_bins: int = 20,
        reweight_max: float = 10.0,
        use_sample_weights: bool = False,
    ):
        super().__init__(inputs=inputs, seed=seed)
        if reweight_bins < 1 or reweight_max <= 1:
            raise ValueError(f"need reweight_bins >= 1 and reweight_max > 1, got {reweight_bins}, {reweight_max}")
        self.reweight_max = reweight_max
        self.use_sample_weights = use_sample_weights
        self.disco_lambda = disco_lambda
        self.disco_observer = disco_observer
        self.reweight_observer = reweight_observer
        self.reweight_bins = reweight_bins
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.val_fraction = val_fraction
        self.device = device
        self.checkpoint = checkpoint

    optimizer: ClassVar[str] = "adam"
    #: The network `build_model` returned (set by `fit` and `load`); subclasses narrow the type.
    model_: torch.nn.Module

    # -- the extension points a neural detector fills in -------------------------------------------------
    def build_model(self, input_shape: tuple[int, ...]) -> torch.nn.Module:
        """The network for model inputs of shape `input_shape` per jet."""
        raise NotImplementedError

    def loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """(scalar training loss, numbers to log) for one mini-batch of model inputs."""
        raise NotImplementedError

    def score_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """(B,) anomaly scores of a batch of model inputs; higher = more anomalous."""
        raise NotImplementedError

    def score_module(self) -> torch.nn.Module:
        """A module whose forward(model inputs) is the score (what ONNX export traces); default `score_batch`."""
        from jetad.detectors.export import ScoreBatch

        return ScoreBatch(self)

    def lr_scale(self) -> float | None:
        """The next optimizer step's learning rate as a multiple of `lr` (a schedule), or None: constant `lr`."""
        return None

    def criterion(self, x_val: torch.Tensor) -> float:
        """Background-only model-selection number (lower is better): mean validation loss by default.

        `x_val` is the validation model inputs `fit` passes; a detector with its own `fit` (NuRD) may pass more.
        """
        import torch

        with torch.enable_grad() if self._criterion_needs_grad else torch.no_grad():
            total, n = 0.0, 0
            for i in range(0, len(x_val), 4096):
                batch = x_val[i:i + 4096]
                loss, _ = self.loss(batch)
                total += float(loss.detach()) * len(batch)
                n += len(batch)
        return total / max(n, 1)

    _criterion_needs_grad: ClassVar[bool] = False

    def extra_state(self) -> Any:
        return None

    def load_extra_state(self, state: Any) -> None:
        pass

    def _split(self, train: JetSample, val: JetSample | None) -> tuple[JetSample, JetSample]:
        if val is not None:
            return train, val
        rng = np.random.default_rng(self.seed)
        idx = rng.permutation(len(train))
        n_val = max(1, int(self.val_fraction * len(train)))
        return train[np.sort(idx[n_val:])], train[np.sort(idx[:n_val])]

    def fit(self, train: JetSample, val: JetSample | None = None, progress: Progress | None = None,
            monitor: Callable[[Any], dict[str, float]] | None = None) -> Self:
        """Fit the input scaling and the network on background jets; keep the best epoch by `criterion`.

        Arguments:
            monitor: optional callable(detector) -> dict of numbers logged per epoch (e.g. a signal AUC);
                never used for model selection.
            progress: optional callable(epoch, epochs, logs).
        """
        import torch

        from jetad.detectors.training import pick_device, train_loop

        if len(train) < 2:
            raise SchemaError(f"training sample has {len(train)} jets; need at least 2")
        train, val = self._split(train, val)
        self._fit_inputs(train)
        x_train = self._model_inputs(train, train.describe("training sample"))
        x_val_np = self._model_inputs(val, val.describe("validation sample"))
        w_train, w_val = (self._training_weights(s, s.describe(what)) for s, what in
                          ((train, "training sample"), (val, "validation sample")))
        if w_val is not None:  # the selection criterion sees the same weighted population, by a seeded resample
            rows = np.random.default_rng(self.seed + 1).choice(len(val), size=len(val), p=w_val / w_val.sum())
            x_val_np = x_val_np[np.sort(rows)]
        self.input_shape_ = tuple(x_train.shape[1:])
        self.device_ = pick_device(self.device)
        torch.manual_seed(self.seed)
        self.model_ = self.build_model(self.spec_.shape).to(self.device_)
        x_val = torch.as_tensor(x_val_np, device=self.device_)
        weights_key = None if w_train is None else float(w_train @ w_train)  # a resumed run must use the same weights
        fingerprint = hashlib.sha256(repr(
            (self.get_params(), x_train.shape, float(x_train.sum()), weights_key)
        ).encode()).hexdigest()
        step: Callable[..., tuple[torch.Tensor, dict[str, float]]] = self.loss
        tensors: np.ndarray | tuple[np.ndarray, ...] = x_train
        if self.disco_lambda > 0:  # DisCo: the observer travels with each batch as a second tensor
            step = self._disco_step
            tensors = (x_train, train.column(self.disco_observer).astype(np.float32))
        self.history_ = train_loop(
            self.model_, step, lambda: self.criterion(x_val), tensors,
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            patience=self.patience, seed=self.seed, device=self.device_, checkpoint=self.checkpoint,
            fingerprint=fingerprint, extra_state=(self.extra_state, self.load_extra_state),
            monitor=(lambda: monitor(self)) if monitor else None, progress=progress, optimizer=self.optimizer,
            sample_weights=w_train, lr_scale=self.lr_scale,
        ).to_dict()
        if w_train is not None:
            self.history_["training_weights"] = {"observer": self.reweight_observer, "max": float(w_train.max()),
                                                 "effective_fraction": float(w_train.sum() ** 2 / (w_train**2).sum()
                                                                             / len(w_train))}
        return self

    def _training_weights(self, sample: JetSample, source: str) -> np.ndarray | None:
        """Sample weights times flat-`reweight_observer` weights (None: uniform, plain shuffled epochs)."""
        from jetad.detectors.reweighting import training_weights

        nuisance = None if self.reweight_observer is None else sample.column(self.reweight_observer, source)
        weight = sample.weight if self.use_sample_weights and sample.weight is not None else None
        return training_weights(weight, nuisance, bins=self.reweight_bins, max_weight=self.reweight_max, source=source)

    def _disco_step(self, batch: torch.Tensor, observer: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss + disco_lambda * dCor^2(per-jet score, observer) on the batch (2001.05310)."""
        from jetad.detectors.disco import distance_correlation_sq

        loss, logs = self.loss(batch)
        dcor = distance_correlation_sq(self.score_batch(batch), observer)
        return loss + self.disco_lambda * dcor, {**logs, "disco_dcor2": float(dcor.detach())}

    def score(self, sample: JetSample, batch_size: int = 8192) -> np.ndarray:
        """Anomaly score per jet (higher = more anomalous), computed in batches."""
        import torch

        x = self._inputs_for(sample, sample.describe())
        self.model_.eval()
        out = []
        with torch.enable_grad() if self._score_needs_grad else torch.no_grad():
            for i in range(0, len(x), batch_size):
                batch = torch.as_tensor(x[i:i + batch_size], device=self.device_)
                out.append(self.score_batch(batch).detach().cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    _score_needs_grad: ClassVar[bool] = False

    def _inputs_for(self, sample: JetSample, source: str) -> np.ndarray:
        x = super()._inputs_for(sample, source)
        if tuple(x.shape[1:]) != self.input_shape_:
            raise SchemaError(f"{source}: inputs have shape {tuple(x.shape[1:])} per jet, but this model was trained "
                              f"on {self.input_shape_} (input spec {self.spec_.kind}); retrain or fix the spec")
        return x

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model_.parameters() if p.requires_grad)

    def _get_state(self) -> dict[str, Any]:
        return {"model": {k: v.cpu() for k, v in self.model_.state_dict().items()}, "input_shape": self.input_shape_}

    def _set_state(self, state: dict[str, Any]) -> None:
        from jetad.detectors.training import pick_device

        self.device_ = pick_device(self.device)
        self.input_shape_ = tuple(state["input_shape"])
        self.model_ = self.build_model(self.spec_.shape)
        self.model_.load_state_dict(state["model"])
        self.model_.to(self.device_).eval()
