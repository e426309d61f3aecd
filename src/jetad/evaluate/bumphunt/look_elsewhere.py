"""The look-elsewhere effect of the bump hunt: background-only toys re-run the whole scan (global p-value), with
the Gross-Vitells extrapolation (1005.1891) from the toys' upcrossings; `bump_hunt` runs cut, scan and toys;
`null_significance_check` measures the local-Z distribution on background-only pseudo-data.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from jetad.evaluate.bumphunt.fit import (
    _GV_REFERENCE_Z,
    QCD_LIKE_SHAPE,
    SQRT_S_GEV,
    FitError,
    FitRange,
    _as_mass,
    _fit_edges,
    dijet_function,
    fit_background,
)
from jetad.evaluate.bumphunt.scan import (
    BumpHuntResult,
    _check_width,
    _check_windows,
    _scan,
    default_centers,
    sample_dijet_spectrum,
)


def scan_windows(
    mjj: np.ndarray,
    centers: Sequence[float] | np.ndarray | None = None,
    width_fraction: float = 0.1,
    bins: int | np.ndarray = 40,
    range: FitRange = None,
    weights: np.ndarray | None = None,
    n_toys: int = 0,
    seed: int = 0,
    min_sideband_events: int = 50,
    include_fit_uncertainty: bool = True,
    sqrt_s: float = SQRT_S_GEV,
    n_params: int = 4,
) -> BumpHuntResult:
    """Sideband-fit every window [m (1 - f/2), m (1 + f/2)] and compare the count in it with the interpolation.

    Arguments:
        mjj: (N,) dijet masses [GeV].
        centers: window centres [GeV]; default `default_centers` (half-overlapping windows inside the range).
        width_fraction: f, the window width relative to its centre (about twice the mjj resolution).
        bins, range: the fit binning (default: 40 bins over the data's min..max; a None edge of the range is the
            data's).
        weights: optional event weights.
        n_toys: background-only toys for the global p-value (0: none). Each toy draws Poisson pseudo-data from
            the full-range fit and re-runs the whole scan; the maximum Z over windows is recorded.
        seed: seed of the toys.
        min_sideband_events: a window whose sidebands hold fewer events is an error.
        include_fit_uncertainty: profile the sideband-fit uncertainty of b in Z (`local_significance`).
        sqrt_s, n_params: passed to `fit_background`.

    Raises ValueError for a window outside the range or too few sideband events, FitError when a fit fails.
    """
    m, w = _as_mass(mjj, weights, "scan_windows")
    _check_width(width_fraction)
    edges = _fit_edges(m, bins, range)
    inside = (m >= edges[0]) & (m <= edges[-1])
    if w[inside].sum() < min_sideband_events:
        raise ValueError(
            f"only {w[inside].sum():.0f} events in [{edges[0]:g}, {edges[-1]:g}] GeV; a bump hunt needs at least "
            f"{min_sideband_events}"
        )
    centers = default_centers(edges, width_fraction) if centers is None else np.atleast_1d(
        np.asarray(centers, dtype=np.float64))
    _check_windows(centers, width_fraction, edges)
    fit_kw: dict[str, Any] = {"sqrt_s": sqrt_s, "n_params": n_params}
    global_fit = fit_background(m, w, edges, **fit_kw)
    lo, hi, n, b, sb, z, z_stat, fits = _scan(m, w, centers, width_fraction, edges, min_sideband_events,
                                              include_fit_uncertainty, fit_kw)
    result = BumpHuntResult(
        centers=centers, lo=lo, hi=hi, n_obs=n, n_exp=b, sigma_exp=sb, z=z, z_stat=z_stat, fits=fits,
        global_fit=global_fit, edges=edges, counts=np.histogram(m, edges, weights=w)[0], width_fraction=width_fraction,
        n_events=int(inside.sum()), include_fit_uncertainty=include_fit_uncertainty, seed=seed,
    )
    if n_toys > 0:
        _global_significance(result, n_toys, seed, min_sideband_events, fit_kw)
    return result


def _upcrossings(z: np.ndarray, level: float) -> int:
    """Upcrossings of q = max(Z, 0)^2 above level^2 along the scan (a start above the level counts as one)."""
    above = np.nan_to_num(z, nan=-np.inf) >= level
    return int(above[0]) + int((above[1:] & ~above[:-1]).sum())


def _global_significance(result: BumpHuntResult, n_toys: int, seed: int, min_sideband_events: int,
                         fit_kw: dict[str, Any]) -> None:
    rng = np.random.default_rng(seed)
    params = result.global_fit.params
    edges = result.edges
    maxima, crossings, failed = [], [], 0
    for _ in builtins.range(n_toys):
        toy = sample_dijet_spectrum(params, (edges[0], edges[-1]), rng, sqrt_s=fit_kw["sqrt_s"])
        try:
            z = _scan(toy, np.ones_like(toy), result.centers, result.width_fraction, edges, min_sideband_events,
                      result.include_fit_uncertainty, fit_kw)[5]
        except (FitError, ValueError):
            failed += 1
            continue
        maxima.append(float(np.max(z)))
        crossings.append(_upcrossings(z, _GV_REFERENCE_Z))
    result.toy_max_z = np.array(maxima)
    result.n_toys_failed = failed
    if not maxima:
        raise FitError(f"all {n_toys} toys failed; no global p-value")
    k = int((result.toy_max_z >= result.max_z).sum())
    result.global_p = (k + 1) / (len(maxima) + 1)
    z_obs = max(result.max_z, 0.0)
    gv = norm.sf(z_obs) + np.mean(crossings) * math.exp(-(z_obs**2 - _GV_REFERENCE_Z**2) / 2.0)
    result.global_p_gv = float(min(gv, 1.0))


def bump_hunt(
    mjj: np.ndarray,
    scores: np.ndarray | None = None,
    efficiencies: Sequence[float] = (1.0, 0.1, 0.01),
    weights: np.ndarray | None = None,
    centers: Sequence[float] | np.ndarray | None = None,
    width_fraction: float = 0.1,
    bins: int | np.ndarray = 40,
    range: FitRange = None,
    n_toys: int = 0,
    seed: int = 0,
    min_events: int = 50,
    include_fit_uncertainty: bool = True,
    n_params: int = 4,
) -> dict[float, BumpHuntResult]:
    """Keep the top fraction eps of events by anomaly score, then `scan_windows`; one result per efficiency.

    The threshold for eps is the score of the ceil(eps N)-th highest-scoring event among all events (ties
    broken by order); without scores only eps = 1 is run. Range, bins and window centres are fixed from the
    full sample so that every efficiency scans the same windows. Toys of efficiency i use seed + i.
    Raises ValueError when fewer than `min_events` events are selected or lie in the sidebands.
    """
    m, w = _as_mass(mjj, weights, "bump_hunt")
    _check_width(width_fraction)
    if scores is None:
        efficiencies, scores = (1.0,), np.zeros_like(m)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.shape != m.shape:
        raise ValueError(f"bump_hunt: {len(scores)} scores for {len(m)} mjj values")
    if not np.isfinite(scores).all():
        raise ValueError("bump_hunt: scores contain NaN/inf")
    edges = _fit_edges(m, bins, range)
    if centers is None:
        centers = default_centers(edges, width_fraction)
    order = np.argsort(-scores, kind="stable")
    results = {}
    for i, eps in enumerate(efficiencies):
        if not 0 < eps <= 1:
            raise ValueError(f"bump_hunt: efficiency {eps} not in (0, 1]")
        k = math.ceil(eps * len(m) - 1e-9)
        if k < min_events:
            raise ValueError(
                f"bump_hunt: efficiency {eps:g} keeps {k} of {len(m)} events, fewer than {min_events}; use a "
                "larger efficiency or more events"
            )
        keep = np.sort(order[:k])
        threshold = float(scores[order[k - 1]]) if eps < 1 else None
        res = scan_windows(m[keep], centers, width_fraction, edges, weights=w[keep], n_toys=n_toys, seed=seed + i,
                           min_sideband_events=min_events, include_fit_uncertainty=include_fit_uncertainty,
                           n_params=n_params)
        res.efficiency, res.threshold = float(eps), threshold
        results[float(eps)] = res
    return results


# ---------------------------------------------------------------------------------------------- null check


@dataclass
class NullCheck:
    """Local Z at one fixed window over background-only toys: should be mean ~0 and width ~1."""

    z: np.ndarray
    z_stat: np.ndarray
    center: float
    n_failed: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.z))

    @property
    def width(self) -> float:
        return float(np.std(self.z, ddof=1))


def null_significance_check(
    n_toys: int = 200,
    n_events: int = 20_000,
    seed: int = 0,
    center: float = 3500.0,
    width_fraction: float = 0.1,
    shape: tuple[float, float, float] = QCD_LIKE_SHAPE,
    range: tuple[float, float] = (2500.0, 6500.0),
    bins: int = 40,
    include_fit_uncertainty: bool = True,
) -> NullCheck:
    """Distribution of the local Z at a fixed window on background-only dijet-function pseudo-data.

    Each toy draws Poisson(n_events) masses from the dijet function with shape (p1, p2, p3) on `range`, fits
    the sidebands of the window at `center` and computes Z; toys whose fit fails are counted, not used.
    """
    rng = np.random.default_rng(seed)
    grid = np.linspace(*range, 2001)
    integral = np.trapezoid(dijet_function(grid / SQRT_S_GEV, 1.0, *shape), grid)
    params = (n_events / integral, *shape)
    edges = np.linspace(*range, bins + 1)
    _check_windows(np.array([center]), width_fraction, edges)
    zs, zstats, failed = [], [], 0
    for _ in builtins.range(n_toys):
        toy = sample_dijet_spectrum(params, range, rng)
        try:
            out = _scan(toy, np.ones_like(toy), np.array([center]), width_fraction, edges, 50,
                        include_fit_uncertainty, {"sqrt_s": SQRT_S_GEV, "n_params": 4})
        except FitError:
            failed += 1
            continue
        zs.append(out[5][0])
        zstats.append(out[6][0])
    return NullCheck(z=np.array(zs), z_stat=np.array(zstats), center=center, n_failed=failed)
