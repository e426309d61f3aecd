"""Figures of merit for anomaly scores: ROC, AUC, SIC, rejection, mass sculpting, distance correlation.

Scores are raw detector outputs (higher = more anomalous); a selection is ``score > threshold`` and thresholds
are chosen here, at evaluation time, as a background efficiency. Every function takes optional per-event
weights (non-negative; ``None`` means 1) and works on plain numpy arrays, vectorized, in
O(N log N) (distance correlation: O(N log^2 N)) time and O(N) memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.special import rel_entr

from jetad.evaluate.arrays import check_scores, check_weights
from jetad.evaluate.distance_correlation import distance_correlation

__all__ = [
    "auc",
    "auc_grid",
    "distance_correlation",
    "evaluate_scores",
    "js_divergence",
    "mass_sculpting",
    "max_sic",
    "rejection_at",
    "roc_curve",
    "sic_curve",
    "threshold_at_bkg_efficiency",
]

#: Default statistical floor of SIC curves: at least this many (effective) background events must pass,
#: i.e. a relative Poisson uncertainty on eps_b of at most 1/sqrt(25) = 20% (10% on the SIC).
MIN_BKG_EVENTS = 25.0


def _n_effective(w: np.ndarray) -> float:
    """Kish effective sample size (sum w)^2 / sum w^2; N for unit weights."""
    return float(w.sum() ** 2 / np.sum(w**2))


def _efficiency_steps(scores: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique scores ascending and the weighted fraction strictly above each (the survival function)."""
    order = np.argsort(scores, kind="stable")
    s, ws = scores[order], w[order]
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each run of equal scores
    cum = np.cumsum(ws)
    return s[last], (cum[-1] - cum[last]) / cum[-1]


# ------------------------------------------------------------------------------------------- ROC / AUC / SIC
def roc_curve(
    scores_sig: np.ndarray,
    scores_bkg: np.ndarray,
    w_sig: np.ndarray | None = None,
    w_bkg: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signal and background efficiencies of ``score > threshold`` for every distinct threshold.

    Thresholds are the distinct scores of both samples, descending, followed by -inf, so the curve runs from
    (0, 0) (threshold = the largest score) to (1, 1) (threshold = -inf); both efficiencies are non-decreasing.
    Tied scores of signal and background move both efficiencies in one step (a diagonal segment), which makes
    the trapezoidal area the Mann-Whitney probability with ties counted one half (see `auc`).

    Returns:
        (eps_s, eps_b, thresholds), each of length (number of distinct scores + 1).
    """
    s = check_scores(scores_sig, "scores_sig")
    b = check_scores(scores_bkg, "scores_bkg")
    ws = check_weights(w_sig, s.size, "w_sig")
    wb = check_weights(w_bkg, b.size, "w_bkg")
    allscores = np.concatenate([s, b])
    order = np.argsort(-allscores, kind="stable")
    srt = allscores[order]
    cum_s = np.cumsum(np.concatenate([ws, np.zeros(b.size)])[order])
    cum_b = np.cumsum(np.concatenate([np.zeros(s.size), wb])[order])
    last = np.flatnonzero(np.r_[srt[1:] != srt[:-1], True])
    eps_s = np.r_[0.0, cum_s[last] / cum_s[-1]]
    eps_b = np.r_[0.0, cum_b[last] / cum_b[-1]]
    thresholds = np.r_[srt[last], -np.inf]
    return eps_s, eps_b, thresholds


def auc(
    scores_sig: np.ndarray,
    scores_bkg: np.ndarray,
    w_sig: np.ndarray | None = None,
    w_bkg: np.ndarray | None = None,
) -> float:
    """Area under the ROC curve = P(score_s > score_b) + 0.5 P(score_s = score_b), weighted.

    This is the Mann-Whitney U statistic divided by n_s n_b (Hanley & McNeil 1982); 0.5 means no separation,
    values below 0.5 mean the score ranks signal as *less* anomalous than background.
    """
    eps_s, eps_b, _ = roc_curve(scores_sig, scores_bkg, w_sig, w_bkg)
    return float(np.sum(np.diff(eps_b) * (eps_s[1:] + eps_s[:-1])) / 2)


def sic_curve(
    scores_sig: np.ndarray,
    scores_bkg: np.ndarray,
    w_sig: np.ndarray | None = None,
    w_bkg: np.ndarray | None = None,
    min_bkg_events: float = MIN_BKG_EVENTS,
    min_eps_b: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Significance improvement eps_s / sqrt(eps_b) along the ROC curve (1708.02949 convention).

    The curve is kept only where eps_b >= max(min_eps_b, min_bkg_events / N_eff,b), N_eff the Kish effective
    number of background events (N for unit weights): with the default 25 events the relative statistical
    uncertainty of eps_b is at most 20% (10% on the SIC), so the maximum is not set by one or two events.
    The floor is capped at 1, so the point (1, 1) always survives.

    Returns:
        (eps_s, sic) at the surviving ROC points, eps_s non-decreasing.
    """
    eps_s, eps_b, _ = roc_curve(scores_sig, scores_bkg, w_sig, w_bkg)
    wb = check_weights(w_bkg, np.size(scores_bkg), "w_bkg")
    floor = min(1.0, max(float(min_eps_b), float(min_bkg_events) / _n_effective(wb)))
    keep = (eps_b >= floor) & (eps_b > 0)
    return eps_s[keep], eps_s[keep] / np.sqrt(eps_b[keep])


def max_sic(
    scores_sig: np.ndarray,
    scores_bkg: np.ndarray,
    w_sig: np.ndarray | None = None,
    w_bkg: np.ndarray | None = None,
    min_bkg_events: float = MIN_BKG_EVENTS,
    min_eps_b: float = 0.0,
) -> float:
    """Maximum of `sic_curve` (with its statistical floor on eps_b)."""
    _, sic = sic_curve(scores_sig, scores_bkg, w_sig, w_bkg, min_bkg_events, min_eps_b)
    return float(sic.max())


def rejection_at(
    scores_sig: np.ndarray,
    scores_bkg: np.ndarray,
    eps_s: float | Sequence[float] = (0.1, 0.3, 0.5),
    w_sig: np.ndarray | None = None,
    w_bkg: np.ndarray | None = None,
) -> dict[float, float]:
    """Background rejection 1/eps_b at the given signal efficiencies, linearly interpolated along the ROC.

    Where the ROC reaches a signal efficiency with several background efficiencies (a vertical step), the
    smallest one, i.e. the best threshold, is used. The rejection is ``inf`` when no background event passes
    at that signal efficiency (eps_b = 0); it is then bounded below only by the background sample size.
    """
    es, eb, _ = roc_curve(scores_sig, scores_bkg, w_sig, w_bkg)
    es_u, first = np.unique(es, return_index=True)  # first occurrence = smallest eps_b at that eps_s
    targets = np.atleast_1d(np.asarray(eps_s, dtype=np.float64))
    eb_at = np.interp(targets, es_u, eb[first])
    with np.errstate(divide="ignore"):
        rej = np.where(eb_at > 0, 1.0 / np.where(eb_at > 0, eb_at, 1.0), np.inf)
    return {float(t): float(r) for t, r in zip(targets, rej, strict=True)}


def threshold_at_bkg_efficiency(
    scores_bkg: np.ndarray, eps_b: float | Sequence[float] | np.ndarray, w: np.ndarray | None = None
) -> float | np.ndarray:
    """Smallest threshold t whose selection ``score > t`` keeps at most a fraction eps_b of the background.

    The kept fraction equals eps_b up to ties and the granularity of the sample (it is never above it).
    eps_b >= 1 gives -inf (keep everything); eps_b below the smallest achievable fraction gives the largest
    score (keep nothing). A scalar eps_b gives a float, a sequence an array.
    """
    b = check_scores(scores_bkg, "scores_bkg")
    wb = check_weights(w, b.size, "w")
    values, survival = _efficiency_steps(b, wb)
    target = np.asarray(eps_b, dtype=np.float64)
    # survival is non-increasing: the first value whose survival is <= eps_b (with a rounding tolerance)
    k = np.searchsorted(-survival, -(target * (1 + 1e-12) + 1e-15), side="left")
    t = np.where(target >= 1, -np.inf, values[np.minimum(k, values.size - 1)])
    return float(t) if t.ndim == 0 else t


# ---------------------------------------------------------------------------------------------- sculpting
def js_divergence(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two histograms, each normalised to unit sum.

    0 for identical shapes, 1 for disjoint supports. Used as the mass-sculpting measure of DisCo (2001.05310),
    which reports 1/JSD.
    """
    p = np.asarray(p_counts, dtype=np.float64).ravel()
    q = np.asarray(q_counts, dtype=np.float64).ravel()
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in shape: {p.shape} vs {q.shape}")
    if np.any(p < 0) or np.any(q < 0) or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("histograms must be non-negative with a positive sum")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    jsd = (rel_entr(p, m).sum() + rel_entr(q, m).sum()) / (2 * np.log(2))
    return float(np.clip(jsd, 0.0, 1.0))


def mass_sculpting(
    scores_bkg: np.ndarray,
    mass_bkg: np.ndarray,
    eps_b: float | Sequence[float] = (0.5, 0.1, 0.01),
    bins: int | np.ndarray = 50,
    mass_range: tuple[float, float] | None = None,
    w: np.ndarray | None = None,
    versus: str = "all",
) -> dict[float, float]:
    """JSD between the background mass histogram before the cut and after ``score > threshold(eps_b)``.

    A mass-independent score keeps the shape (JSD near 0, up to the statistical noise of the passing sample,
    roughly bins / N_pass); a score that sculpts a bump into the background gives a large JSD.
    ``versus="rejected"`` compares passing to failing events instead (the DisCo 2001.05310 convention).
    Masses are clipped into ``mass_range`` (default: the 0.1% and 99.9% quantiles): tails fill the edge bins.
    An eps_b at which nothing passes gives NaN. Returns {eps_b: JSD}; 1/JSD is the number often quoted.
    """
    s = check_scores(scores_bkg, "scores_bkg")
    m = check_scores(mass_bkg, "mass_bkg")
    if m.shape != s.shape:
        raise ValueError(f"mass_bkg has {m.size} entries but scores_bkg has {s.size}")
    if versus not in ("all", "rejected"):
        raise ValueError(f"versus={versus!r}: use 'all' or 'rejected'")
    wb = check_weights(w, s.size, "w")
    if mass_range is None:
        lo, hi = np.quantile(m, [0.001, 0.999])
        mass_range = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
    edges = np.histogram_bin_edges(m, bins=bins, range=mass_range)
    m = np.clip(m, edges[0], edges[-1])
    h_all, _ = np.histogram(m, bins=edges, weights=wb)
    targets = np.atleast_1d(np.asarray(eps_b, dtype=np.float64))
    thresholds = np.atleast_1d(threshold_at_bkg_efficiency(s, targets, wb))
    out: dict[float, float] = {}
    for e, t in zip(targets, thresholds, strict=True):
        passed = s > t
        h_pass, _ = np.histogram(m[passed], bins=edges, weights=wb[passed])
        ref = h_all if versus == "all" else h_all - h_pass
        ok = h_pass.sum() > 0 and ref.sum() > 0
        out[float(e)] = js_divergence(ref, h_pass) if ok else float("nan")
    return out


# ---------------------------------------------------------------------------------------------- bundles
def auc_grid(
    scores_by_point: Mapping[tuple[float, float], np.ndarray],
    scores_bkg: np.ndarray,
    w_bkg: np.ndarray | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """AUC for every signal point of a 2-d parameter grid, e.g. {(m_Phi, r_inv): scores}.

    Returns ((x_values, y_values), grid) with the sorted distinct first and second key components and
    ``grid[i, j]`` the AUC at (x_values[i], y_values[j]); points not in the dict are NaN.
    """
    keys = list(scores_by_point)
    if not keys or any(len(k) != 2 for k in keys):
        raise ValueError("scores_by_point: need keys (x, y), e.g. (m_phi, r_inv)")
    xs = np.array(sorted({k[0] for k in keys}))
    ys = np.array(sorted({k[1] for k in keys}))
    grid = np.full((xs.size, ys.size), np.nan)
    for (kx, ky), s in scores_by_point.items():
        i, j = int(np.searchsorted(xs, kx)), int(np.searchsorted(ys, ky))
        grid[i, j] = auc(s, scores_bkg, w_bkg=w_bkg)
    return (xs, ys), grid


def evaluate_scores(
    scores_sig: np.ndarray,
    scores_bkg: np.ndarray,
    mass_bkg: np.ndarray | None = None,
    w_sig: np.ndarray | None = None,
    w_bkg: np.ndarray | None = None,
    eps_s: Sequence[float] = (0.1, 0.3, 0.5),
    eps_b: Sequence[float] = (0.5, 0.1, 0.01),
    min_bkg_events: float = MIN_BKG_EVENTS,
) -> dict[str, float]:
    """The standard numbers of one score as a flat dict of floats (JSON-ready; rejections may be inf).

    Keys: n_sig, n_bkg, auc, max_sic, max_sic_eps_s, rejection_at_eps_s_<e>; with ``mass_bkg`` also
    jsd_at_eps_b_<e> (`mass_sculpting`, versus all background) and dcor_score_mass (`distance_correlation`
    of background score and mass).
    """
    ws = check_weights(w_sig, np.size(scores_sig), "w_sig")
    wb = check_weights(w_bkg, np.size(scores_bkg), "w_bkg")
    sic_es, sic = sic_curve(scores_sig, scores_bkg, ws, wb, min_bkg_events)
    k = int(np.argmax(sic))
    out: dict[str, float] = {
        "n_sig": float(np.size(scores_sig)),
        "n_bkg": float(np.size(scores_bkg)),
        "auc": auc(scores_sig, scores_bkg, ws, wb),
        "max_sic": float(sic[k]),
        "max_sic_eps_s": float(sic_es[k]),
    }
    for e, r in rejection_at(scores_sig, scores_bkg, eps_s, ws, wb).items():
        out[f"rejection_at_eps_s_{e:g}"] = r
    if mass_bkg is not None:
        for e, jsd in mass_sculpting(scores_bkg, mass_bkg, eps_b, w=wb).items():
            out[f"jsd_at_eps_b_{e:g}"] = jsd
        out["dcor_score_mass"] = distance_correlation(scores_bkg, mass_bkg, wb)
    return out
