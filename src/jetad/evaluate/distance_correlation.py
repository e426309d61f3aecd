"""Distance correlation of two 1-d variables, exact and weighted, in O(N log^2 N) time and O(N) memory.

The sculpting figure next to every AUC (dCor of score and mass) and the DisCo penalty (2001.05310) measure this.
"""

from __future__ import annotations

import numpy as np

from jetad.evaluate.arrays import check_scores, check_weights

__all__ = ["distance_correlation"]


def _weighted_abs_row_sums(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """a_i = sum_j w_j |v_i - v_j| for all i in O(N log N) by sorting."""
    order = np.argsort(v, kind="stable")
    vs, ws = v[order], w[order]
    cw, cs = np.cumsum(ws), np.cumsum(ws * vs)
    a_sorted = vs * cw - cs + (cs[-1] - cs) - vs * (cw[-1] - cw)
    a = np.empty_like(a_sorted)
    a[order] = a_sorted
    return a


def _weighted_abs_product_sum(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """sum_ij w_i w_j |x_i - x_j| |y_i - y_j| in O(N log^2 N), vectorized (after Huo & Szekely 2016).

    With jets ordered by x, |x_i - x_j||y_i - y_j| = (x_i - x_j)(y_i - y_j)(2[y_j < y_i] - 1) for j before i.
    The all-pairs part is closed-form; the dominance part (j before i and y_j < y_i) is summed by a bottom-up
    merge sort on y over blocks of 1, 2, 4, ... jets: each pair (j, i) is counted once, at the level where j
    is in the left and i in the right half of one block, by a sorted search on (block, rank of y).
    """
    n = x.size
    ox = np.argsort(x, kind="stable")
    xs, ys, ws = x[ox], y[ox], w[ox]
    ry = np.empty(n, dtype=np.int64)
    ry[np.argsort(ys, kind="stable")] = np.arange(n)
    moments = np.stack([ws, ws * xs, ws * ys, ws * xs * ys], axis=1)  # w, wx, wy, wxy
    dominated = np.zeros((n, 4))
    by_rank = np.arange(n, dtype=np.int64)  # positions sorted by (pos // half, rank of y): sorted sub-blocks
    half = 1
    while half < n:
        block = by_rank // (2 * half)
        is_left = (by_rank % (2 * half)) < half
        left, right = by_rank[is_left], by_rank[~is_left]
        keys = block[is_left] * n + ry[left]  # ascending: each left half is one sorted sub-block
        csum = np.zeros((left.size + 1, 4))
        np.cumsum(moments[left], axis=0, out=csum[1:])
        rblock = block[~is_left] * n
        hi = np.searchsorted(keys, rblock + ry[right], side="left")
        lo = np.searchsorted(keys, rblock, side="left")
        dominated[right] += csum[hi] - csum[lo]
        # merge the two sorted halves of every block (timsort on sorted runs: linear per level)
        by_rank = by_rank[np.argsort(block * n + ry[by_rank], kind="stable")]
        half *= 2
    sw, swx, swy, swxy = dominated.T
    dom = np.sum(ws * (xs * ys * sw - xs * swy - ys * swx + swxy))
    total = w.sum()
    # sum over all j < i of the plain product (x_i - x_j)(y_i - y_j), closed form
    allpairs = total * np.sum(w * x * y) - np.sum(w * x) * np.sum(w * y)
    return float(2.0 * (2.0 * dom - allpairs))


def _dcov2(x: np.ndarray, y: np.ndarray, w: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Weighted squared distance covariance (V-statistic) given the row sums a, b of |dx|, |dy|."""
    if x is y:
        pair = 2.0 * (np.sum(w * x * x) - np.sum(w * x) ** 2)
    else:
        pair = _weighted_abs_product_sum(x, y, w)
    return pair - 2.0 * np.sum(w * a * b) + np.sum(w * a) * np.sum(w * b)


def distance_correlation(
    x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, squared: bool = False
) -> float:
    """Distance correlation dCor(x, y) of two 1-d variables (Szekely, Rizzo & Bakirov 2007), exact.

    0 if and only if x and y are independent (for the population), 1 for an affine relation; unlike Pearson it
    sees y = x^2. This is the V-statistic with normalised weights, the quantity DisCo (2001.05310) penalises
    (``squared=True`` gives dCor^2, its loss term). It is computed without the N x N matrices, so it scales to
    millions of jets (O(N log^2 N) time, O(N) memory; about 4 s for 10^6 jets). Finite-sample bias makes
    independent samples give roughly 1/sqrt(N), not 0.
    """
    xv = check_scores(x, "x")
    yv = check_scores(y, "y")
    if xv.shape != yv.shape:
        raise ValueError(f"x has {xv.size} entries but y has {yv.size}")
    wv = check_weights(w, xv.size, "w")
    wv = wv / wv.sum()
    # dCor is invariant under shifts and scalings; standardising keeps the sums O(1) for numerical precision
    sx, sy = np.std(xv), np.std(yv)
    if sx == 0 or sy == 0:
        return 0.0
    xv = (xv - np.mean(xv)) / sx
    yv = (yv - np.mean(yv)) / sy
    a = _weighted_abs_row_sums(xv, wv)
    b = _weighted_abs_row_sums(yv, wv)
    dcov2_xy = _dcov2(xv, yv, wv, a, b)
    dvar2_x = _dcov2(xv, xv, wv, a, a)
    dvar2_y = _dcov2(yv, yv, wv, b, b)
    denom = np.sqrt(dvar2_x * dvar2_y)
    if denom <= 0:
        return 0.0
    dcor2 = float(np.clip(dcov2_xy / denom, 0.0, 1.0))
    return dcor2 if squared else float(np.sqrt(dcor2))
