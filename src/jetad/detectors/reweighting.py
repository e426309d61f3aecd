"""Mass reweighting ("planing", Chang, Cohen, Ostdiek 1709.10106): train on events weighted so that a nuisance
(jet mass, mjj) is flat, so the model cannot learn its falling spectrum and a cut on the score sculpts it less.

Weights are 1 / (histogram density) of the nuisance in equal-width bins spanning its central 99% (events outside
take the edge bin's weight), clipped at `max_weight` times the mean and normalised to mean 1. Training draws
mini-batches with probability proportional to the weights (`jetad.detectors.training.train_loop`), which works
for every loss without touching it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["flat_weights", "training_weights"]


def flat_weights(values: np.ndarray, bins: int = 20, max_weight: float = 10.0,
                 central: float = 0.99) -> np.ndarray:
    """(N,) weights (mean 1) that make the histogram of `values` flat over its central `central` fraction."""
    values = np.asarray(values, dtype=np.float64)
    if bins < 1 or max_weight <= 1.0:
        raise ValueError(f"reweighting needs bins >= 1 and max_weight > 1, got {bins} and {max_weight}")
    if len(values) == 0:
        return np.ones(0)
    tail = (1.0 - central) / 2
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    if not hi > lo:  # a constant nuisance is already flat
        return np.ones(len(values))
    idx = np.clip(((values - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(idx, minlength=bins).astype(np.float64)
    w = len(values) / (bins * counts[idx])
    for _ in range(100):  # clip and renormalise until no weight exceeds max_weight (converges in a few steps)
        w = w / w.mean()
        if w.max() <= max_weight * (1 + 1e-9):
            break
        w = np.minimum(w, max_weight)
    return w


def training_weights(sample_weight: np.ndarray, nuisance: np.ndarray | None, bins: int = 20,
                     max_weight: float = 10.0, source: str = "training sample") -> np.ndarray | None:
    """Per-event training weights: sample weights times flat-nuisance weights; None when all would be equal."""
    w = np.asarray(sample_weight, dtype=np.float64)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{source}: sample weights must be finite and non-negative to train with them "
                         f"({int((~np.isfinite(w)).sum())} non-finite, {int((w < 0).sum())} negative)")
    if w.sum() <= 0:
        raise ValueError(f"{source}: all sample weights are zero")
    if nuisance is not None:
        w = w * flat_weights(nuisance, bins, max_weight)
    return None if np.ptp(w) == 0 else w / w.mean()
