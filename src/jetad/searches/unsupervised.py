"""The base of the per-event (unsupervised) LHC Olympics searches (2101.08320) and the helpers they share.

`UnsupervisedSearch`: fold models learn the features of `train_region` events with no labels and no region
label (`pca`, `gan_ae`, `latent_vae`, `regularized_likelihood`). Helpers: fold strata per `train_region`, the
feature standardization, linear location/scale trends of the features in log(mjj) and their removal, the
torch state dicts and option checks of the searches that train bare networks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jetad.searches.base import DijetView, ResonantSearch
from jetad.searches.quak import BACKGROUND_REGIONS

__all__ = ["TRAIN_REGIONS", "UnsupervisedSearch", "check_training_options", "detrended", "identity_trend",
           "mjj_trend", "module_state", "region_strata", "standardization"]

#: Which events train an unsupervised search's fold models (QUAK's `background_region` choices).
TRAIN_REGIONS = BACKGROUND_REGIONS


def region_strata(view: DijetView, train_region: str) -> np.ndarray:
    """Fold strata: every event (0) for 'all'; sideband events (0), others none (-1) for 'sidebands'."""
    return np.where(view.sb, 0, -1) if train_region == "sidebands" else np.zeros(len(view.mjj), np.int64)


def standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations (a constant column gets std 1) of training rows x (N, F)."""
    x = np.asarray(x, np.float64)
    std = x.std(0)
    return x.mean(0), np.where(std > 0, std, 1.0)


def module_state(module: Any) -> dict[str, Any]:
    """A plain dict of detached CPU tensors (what a saved search stores for a bare torch module)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def check_training_options(**options: float) -> None:
    """ValueError naming the first bad training option (counts and rates positive, fractions in (0, 1))."""
    for name, value in options.items():
        if name == "alpha" and value < 0:
            raise ValueError(f"alpha must be >= 0 (the DisCo weight; 0 = no decorrelation), got {value}")
        if name == "val_fraction" and not 0 < value < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {value}")
        if name in ("latent_dim", "epochs", "batch_size", "patience", "lr") and not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
        if name == "batch_size" and value < 2:
            raise ValueError(f"batch_size must be >= 2 (DisCo needs pairs), got {value}")


def mjj_trend(x: np.ndarray, log_m: np.ndarray) -> dict[str, np.ndarray]:
    """Per feature of x (N, F): least-squares lines in log(mjj) of the value (location) and of the absolute
    residual (scale), fitted on training rows; `detrended` removes them."""
    design = np.column_stack([np.ones(len(log_m)), log_m])
    loc, *_ = np.linalg.lstsq(design, x, rcond=None)
    residual = np.abs(x - design @ loc)
    scale, *_ = np.linalg.lstsq(design, residual, rcond=None)
    floor = np.maximum(0.1 * residual.mean(0), 1e-12)  # a scale line crossing zero must not blow up
    return {"intercept": loc[0], "slope": loc[1], "scale_intercept": scale[0], "scale_slope": scale[1],
            "scale_floor": floor}


def identity_trend(n_features: int) -> dict[str, np.ndarray]:
    """The trend `detrended` leaves x unchanged with (zero location, unit scale)."""
    zeros, ones = np.zeros(n_features), np.ones(n_features)
    return {"intercept": zeros, "slope": zeros, "scale_intercept": ones, "scale_slope": zeros, "scale_floor": ones}


def detrended(x: np.ndarray, log_m: np.ndarray, trend: dict[str, np.ndarray]) -> np.ndarray:
    """(x - location(mjj)) / scale(mjj) per feature, for the lines of `mjj_trend` (mjj-dependent standardization:
    a density or a distance in these coordinates no longer follows a location/scale drift of x with mjj)."""
    scale = np.maximum(trend["scale_intercept"] + np.outer(log_m, trend["scale_slope"]), trend["scale_floor"])
    return (x - trend["intercept"] - np.outer(log_m, trend["slope"])) / scale


def _array_size(value: Any) -> int:
    """Numbers in the arrays and tensors of a (nested) fold model stored as a dict or list of arrays."""
    if isinstance(value, dict):
        return sum(_array_size(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_array_size(v) for v in value)
    if isinstance(value, np.ndarray):
        return int(value.size)
    numel = getattr(value, "numel", None)  # a torch tensor
    return int(numel()) if callable(numel) else 0


class UnsupervisedSearch(ResonantSearch):
    """Base of the unsupervised searches: fold models learn the features of `train_region` events, no labels.

    Arguments:
        train_region: 'all' events (default; the sidebands are then not required) or the 'sidebands' only
            (the SR is never trained on, QUAK's `background_region`).
        **kwargs: `ResonantSearch` options (signal_region, sideband_width, features, n_folds, seed, ...).
    """

    def __init__(self, train_region: str = "all", **kwargs: Any):
        super().__init__(**kwargs)
        if train_region not in TRAIN_REGIONS:
            raise ValueError(f"train_region must be one of {TRAIN_REGIONS}, got {train_region!r}")
        self.train_region = train_region

    def _needs_sidebands(self) -> bool:
        return self.train_region == "sidebands"

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        return region_strata(view, self.train_region)

    def n_parameters(self) -> int:
        """Network parameters of jetad detectors, plus the numbers of fold models stored as arrays/tensors."""
        models = self._fitted_state().get("models_", [])
        return super().n_parameters() + sum(_array_size(m) for m in models if isinstance(m, dict))
