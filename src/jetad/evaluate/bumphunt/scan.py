"""The window scan of the bump hunt: for each signal window [m (1 - f/2), m (1 + f/2)] a sideband fit with the
window excluded, interpolated into it, and the local significance of the events counted there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import erf
from scipy.stats import norm

from jetad.evaluate.bumphunt.fit import (
    SQRT_S_GEV,
    BackgroundFit,
    FitError,
    dijet_function,
    fit_background,
    local_significance,
)
from jetad.evaluate.bumphunt.fit_start import FitStart

# --------------------------------------------------------------------------------------------------- scan


@dataclass
class WindowScan:
    """What `_scan` measured: per window it could fit, in order of `centers` [GeV], the observed and expected
    counts, the local Z and the sideband fit; the windows it skipped as (centre, reason)."""

    centers: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_obs: np.ndarray
    n_exp: np.ndarray
    sigma_exp: np.ndarray
    z: np.ndarray
    z_stat: np.ndarray
    fits: list[BackgroundFit]
    skipped: list[tuple[float, str]]


@dataclass
class BumpHuntResult(WindowScan):
    """A window scan: per window the observed and expected counts, the local Z and the sideband fit.

    Arrays are per scanned window, in order of `centers` [GeV]; windows that could not be scanned (too few
    sideband events, a failed fit) are listed in `skipped` as (centre, reason) instead. `z` includes the
    sideband-fit uncertainty when `include_fit_uncertainty` was set, `z_stat` never does. `global_p` is from
    toys ((k + 1) / (n + 1), k toys with max Z >= the observed one; with k = 0 it is only the bound
    p < 1 / (n + 1), see `global_p_is_bound`), `global_p_gv` the Gross-Vitells extrapolation; None without toys.
    """

    global_fit: BackgroundFit
    edges: np.ndarray
    counts: np.ndarray
    width_fraction: float
    n_events: int
    include_fit_uncertainty: bool = True
    efficiency: float = 1.0
    threshold: float | None = None
    toy_max_z: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_toys_failed: int = 0
    seed: int | None = None
    global_p: float | None = None
    global_p_gv: float | None = None
    n_toys_above: int | None = None
    fit_start: FitStart | None = None

    @property
    def best(self) -> int:
        """Index of the most significant window (largest signed Z)."""
        return int(np.argmax(self.z))

    @property
    def max_z(self) -> float:
        """Local Z of the most significant window."""
        return float(self.z[self.best])

    @property
    def signal_yield(self) -> np.ndarray:
        """Fitted signal yield per window: observed minus expected background."""
        return self.n_obs - self.n_exp

    @property
    def signal_yield_err(self) -> np.ndarray:
        """Its uncertainty: sqrt(n_obs + sigma_exp^2)."""
        return np.sqrt(np.maximum(self.n_obs, 0) + self.sigma_exp**2)

    @property
    def global_z(self) -> float | None:
        """One-sided Z of the toy global p-value (a lower bound on Z when `global_p_is_bound`)."""
        return None if self.global_p is None else float(norm.isf(self.global_p))

    @property
    def global_p_is_bound(self) -> bool:
        """True when no toy reached the observed max Z: the global p-value is then only p < 1 / (n_toys + 1)."""
        return self.global_p is not None and self.n_toys_above == 0

    def global_p_text(self) -> str:
        """The toy global p-value for a report: '0.032', or '< 0.032' when it is a bound; '-' without toys."""
        if self.global_p is None:
            return "-"
        return f"< {self.global_p:.3g}" if self.global_p_is_bound else f"{self.global_p:.3g}"

    def summary(self) -> dict[str, Any]:
        """Plain numbers for a JSON report (the best window, its fit, the fit range, the global significance)."""
        b = self.best
        return {
            "efficiency": self.efficiency, "threshold": self.threshold, "n_events": self.n_events,
            "fit_range_gev": [float(self.edges[0]), float(self.edges[-1])],
            **(self.fit_start.as_dict() if self.fit_start is not None else {}),
            "best_center_gev": float(self.centers[b]), "best_window_gev": [float(self.lo[b]), float(self.hi[b])],
            "n_obs": float(self.n_obs[b]), "n_exp": float(self.n_exp[b]), "sigma_exp": float(self.sigma_exp[b]),
            "signal_yield": float(self.signal_yield[b]), "signal_yield_err": float(self.signal_yield_err[b]),
            "local_z": self.max_z, "local_z_stat": float(self.z_stat[b]),
            "fit_chi2_ndf": self.fits[b].chi2_ndf, "fit_chi2_pvalue": self.fits[b].chi2_pvalue,
            "fit": self.fits[b].param_dict(), "fit_status": self.fits[b].status,
            "global_fit_chi2_ndf": self.global_fit.chi2_ndf, "global_fit_chi2_pvalue": self.global_fit.chi2_pvalue,
            "n_toys": len(self.toy_max_z), "n_toys_failed": self.n_toys_failed, "seed": self.seed,
            "global_p": self.global_p, "global_p_is_bound": self.global_p_is_bound,
            "global_p_text": self.global_p_text(), "global_z": self.global_z, "global_p_gv": self.global_p_gv,
            "windows": [
                {"center": float(c), "n_obs": float(n), "n_exp": float(e), "z": float(z)}
                for c, n, e, z in zip(self.centers, self.n_obs, self.n_exp, self.z, strict=True)
            ],
            "skipped_windows": [{"center": float(c), "reason": r} for c, r in self.skipped],
        }


def _check_width(width_fraction: float) -> None:
    """A window width (fraction of its centre) must lie in (0, 1): 0 would scan forever, 1 has no sidebands."""
    if not 0 < width_fraction < 1:
        raise ValueError(f"width_fraction must be in (0, 1), got {width_fraction}")


def _window(center: float, width_fraction: float) -> tuple[float, float]:
    return center * (1.0 - width_fraction / 2.0), center * (1.0 + width_fraction / 2.0)


def default_centers(
    edges: np.ndarray, width_fraction: float = 0.1, step_fraction: float = 0.5, sideband_bins: int = 3
) -> np.ndarray:
    """Window centres [GeV] spaced by `step_fraction` of a window width, keeping `sideband_bins` bins each side."""
    _check_width(width_fraction)
    if not 0 < step_fraction <= 1:
        raise ValueError(f"step_fraction must be in (0, 1], got {step_fraction}")
    width = edges[1] - edges[0]
    lo_min, hi_max = edges[0] + sideband_bins * width, edges[-1] - sideband_bins * width
    c = lo_min / (1.0 - width_fraction / 2.0)
    out = []
    while c * (1.0 + width_fraction / 2.0) <= hi_max:
        out.append(c)
        c *= 1.0 + step_fraction * width_fraction
    if not out:
        raise ValueError(
            f"no {width_fraction:.0%} window fits in [{edges[0]:g}, {edges[-1]:g}] GeV with {sideband_bins} "
            "sideband bins each side; widen the range or narrow the windows"
        )
    return np.array(out)


def _scan(
    m: np.ndarray, w: np.ndarray, centers: np.ndarray, width_fraction: float, edges: np.ndarray,
    min_sideband_events: int, include_fit_uncertainty: bool, fit_kw: dict[str, Any],
) -> WindowScan:
    """Sideband-fit each window; a window with too few sideband events or a failed fit is skipped, with why."""
    rows: list[tuple[float, float, float, float, float, float]] = []
    fits, skipped = [], []
    in_range = (m >= edges[0]) & (m <= edges[-1])
    for c in centers:
        lo, hi = _window(float(c), width_fraction)
        n_side = float(w[in_range & ((m < lo) | (m >= hi))].sum())
        if n_side < min_sideband_events:
            skipped.append((float(c), f"window [{lo:.0f}, {hi:.0f}] GeV: only {n_side:.0f} events in the sidebands "
                                      f"(need at least {min_sideband_events})"))
            continue
        try:
            fit = fit_background(m, w, edges, exclude=(lo, hi), **fit_kw)
        except FitError as err:
            skipped.append((float(c), f"window centred at {c:.0f} GeV: {err}"))
            continue
        n = float(w[(m >= lo) & (m < hi)].sum())
        rows.append((float(c), lo, hi, n, float(fit.expected(lo, hi)), fit.expected_uncertainty(lo, hi)))
        fits.append(fit)
    cols = [np.array([r[k] for r in rows], dtype=np.float64) for k in range(6)]
    z_stat = local_significance(cols[3], cols[4]) if rows else np.zeros(0)
    z = local_significance(cols[3], cols[4], cols[5]) if rows and include_fit_uncertainty else z_stat
    return WindowScan(centers=cols[0], lo=cols[1], hi=cols[2], n_obs=cols[3], n_exp=cols[4], sigma_exp=cols[5], z=z,
                      z_stat=z_stat, fits=fits, skipped=skipped)


def _check_windows(centers: np.ndarray, width_fraction: float, edges: np.ndarray,
                   start: FitStart | None = None, sideband_bins: int = 1) -> None:
    """Every window must leave at least `sideband_bins` fit bins on each side inside the range: a window at the
    edge of the range would be extrapolated into, not interpolated (`default_centers` keeps 3)."""
    width = float(np.min(np.diff(edges)))
    lo_min, hi_max = edges[0] + sideband_bins * width, edges[-1] - sideband_bins * width
    for c in centers:
        lo, hi = _window(float(c), width_fraction)
        if lo < lo_min - 1e-6 * width or hi > hi_max + 1e-6 * width:
            raise ValueError(
                f"window [{lo:g}, {hi:g}] GeV (centre {c:g}) lies outside the data/fit range "
                f"[{edges[0]:g}, {edges[-1]:g}] GeV, or leaves less than {sideband_bins} bin of sideband on a side; "
                "choose centres inside it"
                + (f" ({start.describe()})" if start is not None and start.choice != "user" else "")
            )


def sample_dijet_spectrum(
    params: Sequence[float] | np.ndarray, range: tuple[float, float], rng: np.random.Generator, n: int | None = None,
    sqrt_s: float = SQRT_S_GEV, turn_on: tuple[float, float] | None = None,
) -> np.ndarray:
    """Pseudo-data mjj [GeV] from a dijet-function density (p0..p3, events/GeV) on `range`.

    With ``turn_on=(m50, width)`` [GeV] the density is multiplied by (1 + erf((m - m50) / width)) / 2, the shape
    of a trigger turn-on. The number of events is Poisson with the integral as mean unless `n` is given.
    Inverse-CDF sampling on a fine grid (20,000 steps).
    """
    grid = np.linspace(range[0], range[1], 20_001)
    f = dijet_function(grid / sqrt_s, *params)
    if turn_on is not None:
        f = f * 0.5 * (1.0 + erf((grid - turn_on[0]) / turn_on[1]))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(grid))])
    total = cdf[-1]
    n = int(rng.poisson(total)) if n is None else int(n)
    return np.interp(rng.uniform(0.0, total, n), cdf, grid)
