"""The checked arrays every figure of merit starts from: scores and per-event weights."""

from __future__ import annotations

import numpy as np

__all__ = ["check_scores", "check_weights"]


def check_scores(x: np.ndarray, name: str) -> np.ndarray:
    """`x` as a flat float64 array; empty or NaN/inf is a ValueError naming `name`."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{name}: empty array; need at least one event")
    if not np.all(np.isfinite(x)):
        bad = np.count_nonzero(~np.isfinite(x))
        raise ValueError(f"{name}: {bad} NaN/inf values; drop or fix those events first")
    return x


def check_weights(w: np.ndarray | None, n: int, name: str) -> np.ndarray:
    """Per-event weights (None: all 1) as float64, one per score, finite, non-negative, not all zero."""
    if w is None:
        return np.ones(n)
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.shape != (n,):
        raise ValueError(f"{name}: shape {w.shape} does not match the {n} scores")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name}: weights must be finite and non-negative")
    if w.sum() <= 0:
        raise ValueError(f"{name}: total weight is zero")
    return w
