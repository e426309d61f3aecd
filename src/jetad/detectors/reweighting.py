"""Mass reweighting ("planing", Chang, Cohen, Ostdiek 1709.10106): train on events weighted so that a nuisance
(jet mass, mjj) is flat, so the model cannot learn its falling spectrum and a cut on the score sculpts it less.

Weights are 1 / (histogram density) of the nuisance in equal-width bins spanning its central 99% (events outside
take the edge bin's weight), clipped at `max_weight` times the mean and normalised to mean 1. Training draws
mini-batches with probability proportional to the weights (`jetad.detectors.training.train_loop`), which works
for every loss without touching it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["flat_weights", "matched_weights", "training_weights"]


def flat_weights(values: np.ndarray, bins: int = 20, max_weight: float = 10.0, central: float = 0.99,
                 sample_weight: np.ndarray | None = None) -> np.ndarray:
    """(N,) factors (mean 1) that make the histogram of `values` flat over its central `central` fraction.

    With `sample_weight`, the histogram is the weighted one and the flat-making factors multiply those weights
    (returned: sample_weight x factor, mean 1). The central range comes from unweighted quantiles.
    """
    values = np.asarray(values, dtype=np.float64)
    base = np.ones(len(values)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if bins < 1 or max_weight <= 1.0:
        raise ValueError(f"reweighting needs bins >= 1 and max_weight > 1, got {bins} and {max_weight}")
    if len(values) == 0:
        return np.ones(0)
    tail = (1.0 - central) / 2
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    if not hi > lo:  # a constant nuisance is already flat
        return base / base.mean()
    idx = np.clip(((values - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(idx, weights=base, minlength=bins)
    w = base * np.divide(base.sum(), bins * counts[idx], out=np.zeros(len(values)), where=counts[idx] > 0)
    for _ in range(100):  # clip and renormalise until no weight exceeds max_weight (converges in a few steps)
        w = w / w.mean()
        if w.max() <= max_weight * (1 + 1e-9):
            break
        w = np.minimum(w, max_weight)
    return w


def matched_weights(values: np.ndarray, target: np.ndarray, bins: int = 20, max_weight: float = 10.0,
                    central: float = 0.99) -> np.ndarray:
    """(N,) factors (mean 1) that give `values` the histogram of `target`: the ratio of the two densities in
    `bins` bins of equal target population over the target's central `central` fraction (values outside take the
    edge bin's factor), clipped at `max_weight` times the mean. Used to compare signal and background at the
    same jet pT, so a detector cannot win by the pT difference alone.
    """
    values, target = np.asarray(values, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if bins < 1 or max_weight <= 1.0:
        raise ValueError(f"matching needs bins >= 1 and max_weight > 1, got {bins} and {max_weight}")
    if len(values) == 0 or len(target) == 0:
        raise ValueError(f"matching needs values and a target, got {len(values)} and {len(target)} entries")
    tail = (1.0 - central) / 2
    edges = np.unique(np.quantile(target, np.linspace(tail, 1.0 - tail, bins + 1)))
    if len(edges) < 2:
        return np.ones(len(values))
    inner = edges[1:-1]
    idx_v, idx_t = np.searchsorted(inner, values, side="right"), np.searchsorted(inner, target, side="right")
    n_bins = len(edges) - 1
    have = np.bincount(idx_v, minlength=n_bins) / len(values)
    want = np.bincount(idx_t, minlength=n_bins) / len(target)
    ratio = np.divide(want, have, out=np.zeros(n_bins), where=have > 0)
    w = ratio[idx_v]
    if not w.sum() > 0:
        raise ValueError("matching: the values and the target do not overlap")
    for _ in range(100):
        w = w / w.mean()
        if w.max() <= max_weight * (1 + 1e-9):
            break
        w = np.minimum(w, max_weight)
    return w


def training_weights(sample_weight: np.ndarray | None, nuisance: np.ndarray | None, bins: int = 20,
                     max_weight: float = 10.0, source: str = "training sample") -> np.ndarray | None:
    """Per-event training weights (mean 1): sample weights (None: all 1) made flat in `nuisance` (None: as they
    are); None when every event would weigh the same."""
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"{source}: sample weights must be finite and non-negative to train with them "
                             f"({int((~np.isfinite(w)).sum())} non-finite, {int((w < 0).sum())} negative); "
                             "train without use_sample_weights")
        if w.sum() <= 0:
            raise ValueError(f"{source}: all sample weights are zero")
    if nuisance is not None:
        w = flat_weights(nuisance, bins, max_weight, sample_weight=sample_weight)
    elif sample_weight is None:
        return None
    return None if np.ptp(w) == 0 else w / w.mean()
