"""The look-elsewhere effect of the bump hunt: background-only toys re-run the whole scan (global p-value), with
the Gross-Vitells extrapolation (1005.1891) from the toys' upcrossings; `scan_windows` runs the scan and the
toys; `null_significance_check` measures the local-Z distribution on background-only pseudo-data.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import erf
from scipy.stats import norm

from jetad.evaluate.bumphunt.fit import (
    _GV_REFERENCE_Z,
    QCD_LIKE_SHAPE,
    SQRT_S_GEV,
    FitError,
    FitRange,
    _as_mass,
    dijet_function,
    fit_background,
)
from jetad.evaluate.bumphunt.fit_start import FIT_START_MARGIN, fit_edges
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
    fit_start_margin: float = FIT_START_MARGIN,
) -> BumpHuntResult:
    """Sideband-fit every window [m (1 - f/2), m (1 + f/2)] and compare the count in it with the interpolation.

    Arguments:
        mjj: (N,) dijet masses [GeV].
        centers: window centres [GeV]; default `default_centers` (half-overlapping windows inside the range).
        width_fraction: f, the window width relative to its centre (about twice the mjj resolution).
        bins, range: the fit binning: `bins` equal bins over `range` = (low, high) [GeV], or explicit edges. A
            None low edge is chosen above the trigger turn-on (`choose_fit_start`: `fit_start_margin` above
            the spectrum's peak), a None high edge is the data's maximum.
        weights: optional event weights.
        n_toys: background-only toys for the global p-value (0: none). Each toy draws Poisson pseudo-data from
            the full-range fit and re-runs the whole scan; the maximum Z over windows is recorded.
        seed: seed of the toys.
        min_sideband_events: a window whose sidebands hold fewer events is skipped (listed in `skipped`).
        include_fit_uncertainty: profile the sideband-fit uncertainty of b in Z (`local_significance`).
        sqrt_s, n_params: passed to `fit_background`.

    Raises ValueError for a window outside the range, too few events, or when no window could be scanned;
    FitError when the full-range fit fails.
    """
    m, w = _as_mass(mjj, weights, "scan_windows")
    _check_width(width_fraction)
    edges, start = fit_edges(m, w, bins, range, fit_start_margin)
    inside = (m >= edges[0]) & (m <= edges[-1])
    if w[inside].sum() < min_sideband_events:
        raise ValueError(
            f"only {w[inside].sum():.0f} events in [{edges[0]:g}, {edges[-1]:g}] GeV; a bump hunt needs at least "
            f"{min_sideband_events}" + ("" if start.choice == "user" else f" ({start.describe()})")
        )
    centers = default_centers(edges, width_fraction) if centers is None else np.atleast_1d(
        np.asarray(centers, dtype=np.float64))
    _check_windows(centers, width_fraction, edges, start)
    fit_kw: dict[str, Any] = {"sqrt_s": sqrt_s, "n_params": n_params}
    global_fit = fit_background(m, w, edges, **fit_kw)
    scan = _scan(m, w, centers, width_fraction, edges, min_sideband_events, include_fit_uncertainty, fit_kw)
    if len(scan.centers) == 0:
        raise ValueError("no window could be scanned: " + "; ".join(r for _, r in scan.skipped[:3])
                         + (f"; and {len(scan.skipped) - 3} more" if len(scan.skipped) > 3 else ""))
    result = BumpHuntResult(
        **vars(scan), global_fit=global_fit, edges=edges, counts=np.histogram(m, edges, weights=w)[0],
        width_fraction=width_fraction, n_events=int(inside.sum()), include_fit_uncertainty=include_fit_uncertainty,
        seed=seed, fit_start=start,
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
    """Toy global p-value of `result.max_z` (with its bound flag) and the Gross-Vitells extrapolation."""
    rng = np.random.default_rng(seed)
    params = result.global_fit.params
    edges = result.edges
    maxima, crossings, failed = [], [], 0
    for _ in builtins.range(n_toys):
        toy = sample_dijet_spectrum(params, (edges[0], edges[-1]), rng, sqrt_s=fit_kw["sqrt_s"])
        z = _scan(toy, np.ones_like(toy), result.centers, result.width_fraction, edges, min_sideband_events,
                  result.include_fit_uncertainty, fit_kw).z
        if len(z) == 0:
            failed += 1
            continue
        maxima.append(float(np.max(z)))
        crossings.append(_upcrossings(z, _GV_REFERENCE_Z))
    result.toy_max_z = np.array(maxima)
    result.n_toys_failed = failed
    if not maxima:
        raise FitError(f"all {n_toys} toys failed; no global p-value")
    k = int((result.toy_max_z >= result.max_z).sum())
    result.n_toys_above = k
    result.global_p = (k + 1) / (len(maxima) + 1)
    z_obs = max(result.max_z, 0.0)
    gv = norm.sf(z_obs) + np.mean(crossings) * math.exp(-(z_obs**2 - _GV_REFERENCE_Z**2) / 2.0)
    result.global_p_gv = float(min(gv, 1.0))


# ---------------------------------------------------------------------------------------------- null check


@dataclass
class NullCheck:
    """Local Z at one fixed window over background-only toys: should be mean ~0 and width ~1."""

    z: np.ndarray
    z_stat: np.ndarray
    center: float
    n_failed: int
    fit_starts: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def mean(self) -> float:
        return float(np.mean(self.z))

    @property
    def width(self) -> float:
        return float(np.std(self.z, ddof=1))

    @property
    def rate_above_3(self) -> float:
        """Fraction of toys with |Z| >= 3 (0.27% for a standard normal)."""
        return float(np.mean(np.abs(self.z) >= 3.0))


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
    turn_on: tuple[float, float] | None = None,
    fit_start_margin: float = FIT_START_MARGIN,
) -> NullCheck:
    """Distribution of the local Z at a fixed window on background-only dijet-function pseudo-data.

    Each toy draws Poisson(n_events) masses on `range` from the dijet function with shape (p1, p2, p3), times
    an erf trigger turn-on ``turn_on=(m50, width)`` [GeV] if given; fits the sidebands of the window at
    `center` and computes Z. Without a turn-on the fit covers `range`; with one it starts where the bump hunt
    starts it by default (`choose_fit_start`), per toy. Toys whose fit fails are counted, not used.
    """
    rng = np.random.default_rng(seed)
    grid = np.linspace(*range, 4001)
    density = dijet_function(grid / SQRT_S_GEV, 1.0, *shape)
    if turn_on is not None:
        density = density * 0.5 * (1.0 + erf((grid - turn_on[0]) / turn_on[1]))
    params = (n_events / np.trapezoid(density, grid), *shape)
    fit_range = (None, range[1]) if turn_on is not None else range
    windows = np.array([center])
    zs, zstats, starts, failed = [], [], [], 0
    for _ in builtins.range(n_toys):
        toy = sample_dijet_spectrum(params, range, rng, turn_on=turn_on)
        edges, start = fit_edges(toy, None, bins, fit_range, fit_start_margin)
        _check_windows(windows, width_fraction, edges, start)
        out = _scan(toy, np.ones_like(toy), windows, width_fraction, edges, 50, include_fit_uncertainty,
                    {"sqrt_s": SQRT_S_GEV, "n_params": 4})
        if len(out.z) == 0:
            failed += 1
            continue
        zs.append(float(out.z[0]))
        zstats.append(float(out.z_stat[0]))
        starts.append(start.start_gev)
    return NullCheck(z=np.array(zs), z_stat=np.array(zstats), center=center, n_failed=failed,
                     fit_starts=np.array(starts))
