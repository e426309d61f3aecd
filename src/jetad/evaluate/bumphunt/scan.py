"""The window scan of the bump hunt: for each signal window [m (1 - f/2), m (1 + f/2)] a sideband fit with the
window excluded, interpolated into it, and the local significance of the events counted there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from jetad.evaluate.bumphunt.fit import (
    SQRT_S_GEV,
    BackgroundFit,
    FitError,
    dijet_function,
    fit_background,
    local_significance,
)

# --------------------------------------------------------------------------------------------------- scan


@dataclass
class BumpHuntResult:
    """A window scan: per window the observed and expected counts, the local Z and the sideband fit.

    Arrays are per window, in order of `centers` [GeV]. `z` includes the sideband-fit uncertainty when
    `include_fit_uncertainty` was set, `z_stat` never does. `global_p` is from toys ((k + 1) / (n + 1), k toys
    with max Z >= the observed one), `global_p_gv` the Gross-Vitells extrapolation; both None without toys.
    """

    centers: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_obs: np.ndarray
    n_exp: np.ndarray
    sigma_exp: np.ndarray
    z: np.ndarray
    z_stat: np.ndarray
    fits: list[BackgroundFit]
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
        """One-sided Z of the toy global p-value."""
        return None if self.global_p is None else float(norm.isf(self.global_p))

    def summary(self) -> dict[str, Any]:
        """Plain numbers for a JSON report (the best window, its fit, the global significance)."""
        b = self.best
        return {
            "efficiency": self.efficiency, "threshold": self.threshold, "n_events": self.n_events,
            "fit_range_gev": [float(self.edges[0]), float(self.edges[-1])],
            "best_center_gev": float(self.centers[b]), "best_window_gev": [float(self.lo[b]), float(self.hi[b])],
            "n_obs": float(self.n_obs[b]), "n_exp": float(self.n_exp[b]), "sigma_exp": float(self.sigma_exp[b]),
            "signal_yield": float(self.signal_yield[b]), "signal_yield_err": float(self.signal_yield_err[b]),
            "local_z": self.max_z, "local_z_stat": float(self.z_stat[b]),
            "fit_chi2_ndf": self.fits[b].chi2_ndf, "fit_chi2_pvalue": self.fits[b].chi2_pvalue,
            "fit": self.fits[b].param_dict(), "fit_status": self.fits[b].status,
            "global_fit_chi2_ndf": self.global_fit.chi2_ndf, "global_fit_chi2_pvalue": self.global_fit.chi2_pvalue,
            "n_toys": len(self.toy_max_z), "n_toys_failed": self.n_toys_failed, "seed": self.seed,
            "global_p": self.global_p, "global_z": self.global_z, "global_p_gv": self.global_p_gv,
            "windows": [
                {"center": float(c), "n_obs": float(n), "n_exp": float(e), "z": float(z)}
                for c, n, e, z in zip(self.centers, self.n_obs, self.n_exp, self.z, strict=True)
            ],
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
) -> tuple[Any, ...]:
    rows = []
    fits = []
    for c in centers:
        lo, hi = _window(float(c), width_fraction)
        side = (m >= edges[0]) & (m <= edges[-1]) & ((m < lo) | (m >= hi))
        n_side = float(w[side].sum())
        if n_side < min_sideband_events:
            raise ValueError(
                f"window [{lo:g}, {hi:g}] GeV: only {n_side:.0f} events in the sidebands (need at least "
                f"{min_sideband_events}); select more events or use wider bins/range"
            )
        try:
            fit = fit_background(m, w, edges, exclude=(lo, hi), **fit_kw)
        except FitError as err:
            raise FitError(f"window centred at {c:g} GeV: {err}") from err
        n = float(w[(m >= lo) & (m < hi)].sum())
        b = float(fit.expected(lo, hi))
        sb = fit.expected_uncertainty(lo, hi)
        rows.append((lo, hi, n, b, sb))
        fits.append(fit)
    lo, hi, n, b, sb = (np.array(col) for col in zip(*rows, strict=True))
    z_stat = local_significance(n, b)
    z = local_significance(n, b, sb) if include_fit_uncertainty else z_stat
    return lo, hi, n, b, sb, z, z_stat, fits


def _check_windows(centers: np.ndarray, width_fraction: float, edges: np.ndarray) -> None:
    for c in centers:
        lo, hi = _window(float(c), width_fraction)
        if lo < edges[0] or hi > edges[-1]:
            raise ValueError(
                f"window [{lo:g}, {hi:g}] GeV (centre {c:g}) lies outside the data/fit range "
                f"[{edges[0]:g}, {edges[-1]:g}] GeV; choose centres inside it"
            )


def sample_dijet_spectrum(
    params: Sequence[float] | np.ndarray, range: tuple[float, float], rng: np.random.Generator, n: int | None = None,
    sqrt_s: float = SQRT_S_GEV,
) -> np.ndarray:
    """Pseudo-data mjj [GeV] from a dijet-function density (p0..p3, events/GeV) on `range`.

    The number of events is Poisson with the integral as mean unless `n` is given. Inverse-CDF sampling on a
    fine grid (20,000 steps).
    """
    grid = np.linspace(range[0], range[1], 20_001)
    f = dijet_function(grid / sqrt_s, *params)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(grid))])
    total = cdf[-1]
    n = int(rng.poisson(total)) if n is None else int(n)
    return np.interp(rng.uniform(0.0, total, n), cdf, grid)
