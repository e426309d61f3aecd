"""Bump hunt on the dijet invariant mass: dijet-function sideband fits, local and global significance.

The background is the four-parameter dijet function of the CMS/ATLAS dijet resonance searches
(CMS 1911.03947, ATLAS 1910.08447), fitted to the binned mjj spectrum with a Poisson likelihood (iminuit); the
expected function is integrated over each bin (Simpson), not evaluated at bin centres. For each signal window
``[m (1 - f/2), m (1 + f/2)]`` the fit is repeated with the window excluded (a sideband fit) and interpolated
into it; the events counted in the window are compared with that expectation. This is the last step of every
LHC Olympics strategy (2101.08320): select the most anomalous events, then look for a bump in mjj.

Significance: the signed likelihood-ratio (Asimov-form) Z of a Poisson count n over background b
(Cowan, Cranmer, Gross, Vitells 1007.1727), by default with the sideband-fit uncertainty sigma_b on b profiled
(G. Cowan, "Discovery sensitivity for a counting experiment with background uncertainty", 2012). Without it
the null Z is too wide (measured here: width 1.25 instead of 1 at 20k events). The look-elsewhere effect is
handled with toys (background-only pseudo-data from the full-range fit, the whole scan re-run, the maximum Z
taken), and additionally extrapolated with Gross-Vitells (1005.1891) from the mean number of upcrossings of
the toys' Z^2 at Z = 1. All masses are in GeV; sqrt(s) = 13 TeV.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from iminuit import Minuit
from matplotlib.figure import Figure
from scipy.stats import chi2 as chi2_dist
from scipy.stats import norm

__all__ = [
    "SQRT_S_GEV",
    "BackgroundFit",
    "BumpHuntResult",
    "FitError",
    "NullCheck",
    "bump_hunt",
    "default_centers",
    "dijet_function",
    "fit_background",
    "local_significance",
    "null_significance_check",
    "plot_bumphunt",
    "plot_significance_scan",
    "sample_dijet_spectrum",
    "scan_windows",
]

SQRT_S_GEV = 13000.0
#: A fit range (low, high) [GeV]; None, or a None edge, takes the data's min / max.
FitRange = tuple[float | None, float | None] | None
#: (p1, p2, p3) of a QCD-like spectrum in the LHCO mass range, used by the null check and as a start value.
QCD_LIKE_SHAPE = (10.0, 5.0, 0.0)
_NAMES = ("p0", "p1", "p2", "p3")
_SIMPSON_W = np.array([1.0, 4.0, 2.0, 4.0, 1.0]) / 12.0
_STARTS = ((10.0, 5.0, 0.0), (5.0, 5.0, 0.0), (20.0, 4.0, 0.0), (1.0, 7.0, 0.0), (30.0, 2.0, 0.0),
           (10.0, 5.0, 0.5), (10.0, 5.0, -0.5))
_MIN_FIT_EVENTS = 20
_GV_REFERENCE_Z = 1.0
#: Bounds of (p1, p2, p3): wide enough for any falling spectrum in reach of 13 TeV, narrow enough that p0 stays a
#: finite float when a small sample leaves the parameters degenerate (they then sit at a bound, see `status`).
_SHAPE_LIMITS = ((-50.0, 100.0), (-50.0, 50.0), (-15.0, 15.0))
_GOOD_DEVIANCE_PER_NDF = 2.0  # a first valid fit this good is kept; a worse one makes the other starts run


class FitError(RuntimeError):
    """The background fit did not converge; the message gives the reason and the iminuit status."""


def dijet_function(x: np.ndarray | float, p0: float, p1: float, p2: float, p3: float) -> np.ndarray:
    """p0 (1 - x)^p1 / x^(p2 + p3 ln x) with x = mjj / sqrt(s): the dijet background shape (CMS/ATLAS dijet searches).

    In this module the function is a density in events per GeV of mjj.
    """
    x = np.asarray(x, dtype=np.float64)
    return p0 * (1.0 - x) ** p1 / x ** (p2 + p3 * np.log(x))


def _log_shape(x: np.ndarray, p1: float, p2: float, p3: float) -> np.ndarray:
    lx = np.log(x)
    return p1 * np.log1p(-x) - (p2 + p3 * lx) * lx


def local_significance(n: np.ndarray | float, b: np.ndarray | float, sigma_b: np.ndarray | float = 0.0) -> np.ndarray:
    """Signed Z = sqrt(2 (n ln(n/b) - (n - b))) of n observed over b expected (1007.1727); + for an excess.

    With ``sigma_b > 0`` the background uncertainty is profiled (Cowan's formula for a counting experiment with a
    Gaussian-constrained background): Z^2 = 2 [n ln(n (b + s^2) / (b^2 + n s^2)) - (b^2 / s^2) ln(1 + s^2 (n - b)
    / (b (b + s^2)))], which reduces to the plain formula for s = sigma_b -> 0.
    """
    n, b, s = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (n, b, sigma_b)))
    if (b <= 0).any():
        raise ValueError(f"local_significance: expected background must be > 0, got min {b.min():g}")
    with np.errstate(divide="ignore", invalid="ignore"):
        plain = np.where(n > 0, n * np.log(n / b), 0.0) - (n - b)
        s2 = np.maximum(s, 0.0) ** 2
        use = s2 > 1e-9 * b
        s2u = np.where(use, s2, 1.0)
        first = np.where(n > 0, n * np.log(n * (b + s2u) / (b * b + n * s2u)), 0.0)
        second = b * b / s2u * np.log1p(s2u * (n - b) / (b * (b + s2u)))
        q = np.where(use, first - second, plain)
    return np.sign(n - b) * np.sqrt(2.0 * np.clip(q, 0.0, None))


# ---------------------------------------------------------------------------------------------------- fit


@dataclass
class BackgroundFit:
    """A dijet-function fit: parameters p0..p3 with errors and covariance, quality, and what was fitted.

    Internally the fit uses (a, p1, p2, p3) with a = ln f(m_pivot), which decorrelates the normalization from
    the shape; `params`/`covariance` are p0..p3 of `dijet_function` (p0 in events per GeV).
    """

    params: np.ndarray
    errors: np.ndarray
    covariance: np.ndarray
    chi2: float
    ndf: int
    converged: bool
    status: str
    edges: np.ndarray
    counts: np.ndarray
    fitted_bins: np.ndarray
    exclude: tuple[float, float] | None
    sqrt_s: float
    pivot: float
    theta: np.ndarray = field(repr=False)
    theta_covariance: np.ndarray = field(repr=False)

    @property
    def chi2_ndf(self) -> float:
        """Poisson deviance (Baker-Cousins chi2) of the fitted bins per degree of freedom."""
        return self.chi2 / self.ndf

    @property
    def chi2_pvalue(self) -> float:
        """Goodness of fit: P(chi2_ndf >= the deviance). A converged fit can still describe the data badly (a
        large signal, a turn-on inside the range); check this before trusting the interpolation."""
        return float(chi2_dist.sf(self.chi2, self.ndf))

    def param_dict(self) -> dict[str, float]:
        """{p0: value, p0_err: error, ...} for reports."""
        out = {}
        for name, value, error in zip(_NAMES, self.params, self.errors, strict=True):
            out[name], out[f"{name}_err"] = float(value), float(error)
        return out

    def density(self, m: np.ndarray | float) -> np.ndarray:
        """Fitted background density at mjj = m [events per GeV]."""
        return _density(self.theta, np.asarray(m, dtype=np.float64), self.pivot, self.sqrt_s)

    def expected(self, lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray:
        """Expected background events in [lo, hi] GeV (integral of the fitted density)."""
        return _integrals(self.theta, np.asarray(lo, float), np.asarray(hi, float), self.pivot, self.sqrt_s, 16)

    def expected_uncertainty(self, lo: float, hi: float) -> float:
        """Fit uncertainty of `expected(lo, hi)`, propagated with the covariance of the parameters."""
        grad = _integral_gradient(self.theta, lo, hi, self.pivot, self.sqrt_s)
        return float(np.sqrt(max(grad @ self.theta_covariance @ grad, 0.0)))

    def bin_expectation(self) -> np.ndarray:
        """Expected events per bin of `edges`."""
        return self.expected(self.edges[:-1], self.edges[1:])


def _density(theta: np.ndarray, m: np.ndarray, pivot: float, sqrt_s: float) -> np.ndarray:
    a, p1, p2, p3 = theta
    x, x0 = m / sqrt_s, pivot / sqrt_s
    with np.errstate(all="ignore"):
        log_f = a + _log_shape(x, p1, p2, p3) - _log_shape(x0, p1, p2, p3)
        return np.exp(np.clip(log_f, -700.0, 700.0))


def _nodes(lo: np.ndarray, hi: np.ndarray, n_sub: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Simpson nodes (..., 4 n_sub + 1) and weights over [lo, hi]: n_sub 5-point Simpson blocks."""
    t = np.linspace(0.0, 1.0, 4 * n_sub + 1)
    weights = np.zeros(len(t))
    for k in range(n_sub):
        weights[4 * k : 4 * k + 5] += _SIMPSON_W / n_sub
    lo, hi = np.atleast_1d(lo), np.atleast_1d(hi)
    return lo[:, None] + (hi - lo)[:, None] * t[None, :], weights[None, :] * (hi - lo)[:, None]


def _integrals(theta: np.ndarray, lo: np.ndarray, hi: np.ndarray, pivot: float, sqrt_s: float, n_sub: int = 1):
    scalar = np.ndim(lo) == 0
    m, w = _nodes(lo, hi, n_sub)
    out = (_density(theta, m, pivot, sqrt_s) * w).sum(axis=1)
    return float(out[0]) if scalar else out


def _integral_gradient(theta: np.ndarray, lo: float, hi: float, pivot: float, sqrt_s: float) -> np.ndarray:
    """d/dtheta of the integral over [lo, hi]: the integral of f times d ln f / d(a, p1, p2, p3)."""
    m, w = _nodes(np.asarray(lo, float), np.asarray(hi, float), 16)
    m, w = m[0], w[0]
    f = _density(theta, m, pivot, sqrt_s) * w
    lx, lx0 = np.log(m / sqrt_s), np.log(pivot / sqrt_s)
    dlog = np.stack([
        np.ones_like(m),
        np.log1p(-m / sqrt_s) - np.log1p(-pivot / sqrt_s),
        -(lx - lx0),
        -(lx**2 - lx0**2),
    ])
    return dlog @ f


def _fit_edges(m: np.ndarray, bins: int | np.ndarray, range: FitRange) -> np.ndarray:
    """Bin edges [GeV]: explicit edges, or `bins` equal bins over `range` (a None edge is the data's min/max)."""
    if np.ndim(bins) == 1:
        edges = np.asarray(bins, dtype=np.float64)
        if len(edges) < 2 or not np.isfinite(edges).all() or (np.diff(edges) <= 0).any():
            raise ValueError("bins: edges must be finite and increasing, at least two")
        return edges
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive number of bins, got {bins!r}")
    lo, hi = range if range is not None else (None, None)
    if (lo is None or hi is None) and len(m) == 0:
        raise ValueError("no events: cannot set a fit range from the data")
    lo = float(m.min()) if lo is None else float(lo)
    hi = float(m.max()) if hi is None else float(hi)
    if not 0 < lo < hi < SQRT_S_GEV:
        raise ValueError(f"fit range ({lo:g}, {hi:g}) GeV must satisfy 0 < lo < hi < sqrt(s) = {SQRT_S_GEV:g} GeV")
    return np.linspace(lo, hi, int(bins) + 1)


def _as_mass(mjj: np.ndarray, weights: np.ndarray | None, what: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(mjj, dtype=np.float64).ravel()
    if not np.isfinite(m).all():
        raise ValueError(f"{what}: mjj has {int((~np.isfinite(m)).sum())} NaN/inf values")
    w = np.ones_like(m) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != m.shape:
        raise ValueError(f"{what}: {len(w)} weights for {len(m)} events")
    if len(m) and ((m <= 0).any() or (m >= SQRT_S_GEV).any()):
        raise ValueError(f"{what}: mjj must lie in (0, {SQRT_S_GEV:g}) GeV (masses are in GeV, not TeV)")
    return m, w


def fit_background(
    mjj: np.ndarray,
    weights: np.ndarray | None = None,
    bins: int | np.ndarray = 40,
    range: FitRange = None,
    exclude: tuple[float, float] | None = None,
    sqrt_s: float = SQRT_S_GEV,
    n_params: int = 4,
) -> BackgroundFit:
    """Binned Poisson-likelihood fit of the dijet function to mjj [GeV], optionally excluding a window.

    Arguments:
        mjj: (N,) dijet masses [GeV].
        weights: optional event weights (a scaled-Poisson likelihood: sum w per bin over sum w^2 / sum w).
        bins: number of bins over `range`, or explicit edges.
        range: fit range (low, high) [GeV]; default, or a None edge: the data's min and max.
        exclude: a window (lo, hi) [GeV]; every bin overlapping it is left out of the fit (sideband fit).
        sqrt_s: collision energy [GeV] in x = mjj / sqrt(s).
        n_params: 4, or 3 to fix p3 = 0 (the 3-parameter dijet function, for small samples).

    The per-bin expectation is the Simpson integral of the density over the bin. Several start values are
    tried (migrad from the three best by likelihood, then simplex + migrad) until a valid minimum with deviance
    below 2 ndf is found; otherwise the lowest valid minimum wins.
    The covariance is the inverse expected Fisher information (analytic derivatives), not Hesse's.
    Raises FitError when no start converges to a valid minimum with a positive-definite covariance, and when
    too few events or bins are left to fit four parameters.
    """
    m, w = _as_mass(mjj, weights, "fit_background")
    edges = _fit_edges(m, bins, range)
    sumw = np.histogram(m, edges, weights=w)[0]
    sumw2 = np.histogram(m, edges, weights=w * w)[0]
    used = np.ones(len(sumw), dtype=bool)
    if exclude is not None:
        lo, hi = exclude
        used = (edges[1:] <= lo) | (edges[:-1] >= hi)
    scale = np.divide(sumw2, sumw, out=np.ones_like(sumw), where=sumw > 0)
    if (sumw > 0).any():
        scale[sumw <= 0] = np.mean(scale[sumw > 0])
    n_eff = sumw / scale
    n_total = float(n_eff[used].sum())
    if n_params not in (3, 4):
        raise ValueError(f"n_params must be 3 or 4, got {n_params}")
    ndf = int(used.sum()) - n_params
    where = f"fit in [{edges[0]:g}, {edges[-1]:g}] GeV" + (f" excluding [{exclude[0]:g}, {exclude[1]:g}]" if exclude
                                                            else "")
    if n_total < _MIN_FIT_EVENTS or ndf < 1:
        raise FitError(
            f"{where}: {n_total:.0f} events in {int(used.sum())} fitted bins; the {n_params}-parameter dijet fit "
            f"needs at least {_MIN_FIT_EVENTS} events and {n_params + 1} bins (status: not attempted)"
        )
    centres_used = 0.5 * (edges[:-1] + edges[1:])[used]
    pivot = float(np.exp(np.average(np.log(centres_used), weights=np.maximum(n_eff[used], 1e-12))))
    lo_e, hi_e = edges[:-1][used], edges[1:][used]
    m_nodes, w_nodes = _nodes(lo_e, hi_e, 1)
    n_u, scale_u = n_eff[used], scale[used]
    log_n = np.where(n_u > 0, n_u * np.log(np.where(n_u > 0, n_u, 1.0)), 0.0)

    lx, lx0 = np.log(m_nodes / sqrt_s), math.log(pivot / sqrt_s)
    dlog_f = np.stack([  # d ln f / d(a, p1, p2, p3) at every node
        np.ones_like(lx), np.log1p(-m_nodes / sqrt_s) - math.log1p(-pivot / sqrt_s), -(lx - lx0), -(lx**2 - lx0**2),
    ])

    def expected(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled bin expectations mu and their gradient d mu / d theta, shape (4, bins)."""
        fw = _density(theta, m_nodes, pivot, sqrt_s) * w_nodes
        return fw.sum(axis=1) / scale_u, (dlog_f * fw).sum(axis=2) / scale_u

    def deviance(theta: np.ndarray) -> float:
        mu = np.maximum(expected(theta)[0], 1e-300)
        value = 2.0 * np.sum(mu - n_u + log_n - n_u * np.log(mu))
        return float(value) if np.isfinite(value) else 1e300

    def gradient(theta: np.ndarray) -> np.ndarray:
        mu, dmu = expected(theta)
        grad = 2.0 * dmu @ (1.0 - n_u / np.maximum(mu, 1e-300))
        return np.where(np.isfinite(grad), grad, 0.0)

    starts = []
    for p1, p2, p3 in _STARTS:
        shape = (_density(np.array([0.0, p1, p2, p3]), m_nodes, pivot, sqrt_s) * w_nodes).sum(axis=1) / scale_u
        a = math.log(n_total / max(float(shape.sum()), 1e-300))
        theta = np.array([a, p1, p2, p3])
        starts.append((deviance(theta), theta))
    starts.sort(key=lambda t: t[0])

    attempts: list[str] = []
    best: tuple[Minuit, np.ndarray] | None = None
    for i, (_, start) in enumerate([*starts[:3], starts[0]]):
        fit = Minuit(deviance, start, grad=gradient, name=("a", "p1", "p2", "p3"))
        fit.errordef = Minuit.LEAST_SQUARES  # the deviance is 2 * NLL
        fit.errors = (0.05, 1.0, 0.5, 0.1)
        fit.limits = (None, *_SHAPE_LIMITS)
        if n_params == 3:
            fit.values["p3"] = 0.0
            fit.fixed["p3"] = True
        fit.print_level = 0
        if i == 3:
            fit.simplex(ncall=4000)
        fit.migrad(ncall=20_000)
        cov_t = _fisher_covariance(*expected(np.array(fit.values)), n_params) if fit.valid else None
        attempts.append(_fmin_status(fit) + ("" if cov_t is not None or not fit.valid else " fisher_posdef=False"))
        if cov_t is not None and (best is None or fit.fval < best[0].fval - 1e-6):
            best = (fit, cov_t)
        if best is not None and best[0].fval < _GOOD_DEVIANCE_PER_NDF * ndf:
            break
    if best is None:
        raise FitError(f"{where}: the dijet-function fit did not converge from {len(attempts)} starts; "
                       f"statuses: {'; '.join(attempts)}")

    theta = np.array(best[0].values)
    cov_t = best[1]
    x0 = pivot / sqrt_s
    a, p1, p2, p3 = theta
    log_p0 = a - float(_log_shape(x0, p1, p2, p3))
    p0 = math.exp(log_p0)
    jac = np.eye(4)
    jac[0] = [p0, -p0 * math.log1p(-x0), p0 * math.log(x0), p0 * math.log(x0) ** 2]
    cov = jac @ cov_t @ jac.T
    return BackgroundFit(
        params=np.array([p0, p1, p2, p3]), errors=np.sqrt(np.clip(np.diag(cov), 0, None)), covariance=cov,
        chi2=float(best[0].fval), ndf=ndf, converged=True, status=_fmin_status(best[0]), edges=edges, counts=sumw,
        fitted_bins=used, exclude=None if exclude is None else (float(exclude[0]), float(exclude[1])),
        sqrt_s=float(sqrt_s), pivot=pivot, theta=theta, theta_covariance=cov_t,
    )


def _fisher_covariance(mu: np.ndarray, dmu: np.ndarray, n_params: int = 4) -> np.ndarray | None:
    """Inverse expected Fisher information sum_i dmu_i dmu_i^T / mu_i of a binned Poisson fit (None if singular).

    Analytic, because Hesse's finite-difference second derivatives are unstable for the strongly correlated
    dijet parameters (measured here: errors scattered by a factor 6 between equivalent minima; Minos agrees with
    this matrix).
    """
    dmu = dmu[:n_params]
    info = (dmu / np.maximum(mu, 1e-300)) @ dmu.T
    try:
        np.linalg.cholesky(info)
        cov = np.linalg.inv(info)
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return None
    full = np.zeros((4, 4))
    full[:n_params, :n_params] = cov
    return full if np.isfinite(cov).all() else None


def _fmin_status(fit: Minuit) -> str:
    fmin = fit.fmin
    if fmin is None:
        return "not run"
    flags = {
        "valid": fmin.is_valid, "above_max_edm": fmin.is_above_max_edm, "call_limit": fmin.has_reached_call_limit,
        "posdef_covar": fmin.has_posdef_covar, "accurate_covar": fmin.has_accurate_covar,
    }
    at_limit = [
        name for name, value, (lo, hi) in zip(("p1", "p2", "p3"), list(fit.values)[1:], _SHAPE_LIMITS, strict=True)
        if min(value - lo, hi - value) < 1e-3 * (hi - lo)
    ]
    return (f"fval={fmin.fval:.4g} edm={fmin.edm:.2g} nfcn={fmin.nfcn} " + " ".join(f"{k}={v}" for k, v in
                                                                                   flags.items())
            + (f" at_limit={','.join(at_limit)}" if at_limit else ""))


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
    params: Sequence[float], range: tuple[float, float], rng: np.random.Generator, n: int | None = None,
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
    fit_kw = {"sqrt_s": sqrt_s, "n_params": n_params}
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


# -------------------------------------------------------------------------------------------------- plots


@contextmanager
def _styled() -> Iterator[None]:
    import matplotlib.style

    try:
        import mplhep

        style: Any = mplhep.style.CMS
    except ImportError:  # plain matplotlib style without mplhep
        style = "default"
    with matplotlib.style.context(style):
        yield


def _save(fig: Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    return out


def plot_bumphunt(result: BumpHuntResult, out: str | Path, window: int | None = None, caption: str = "") -> Path:
    """Data with Poisson errors, the sideband fit of a window (default: the most significant), the full-range
    fit, the window shaded, and the pulls (data - fit) / sqrt(fit) below. Writes a PNG; returns its path."""
    i = result.best if window is None else int(window)
    fit = result.fits[i]
    edges, counts = result.edges, result.counts
    centres, widths = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)
    expected = fit.bin_expectation()
    with _styled():
        fig = Figure(figsize=(9.0, 8.0), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
        shown = counts > 0
        top.errorbar(centres[shown], counts[shown] / widths[shown], yerr=np.sqrt(counts[shown]) / widths[shown],
                     xerr=widths[shown] / 2, fmt="o", color="k", ms=4, label=f"data ({result.n_events} events)")
        fine = np.linspace(edges[0], edges[-1], 400)
        top.plot(fine, fit.density(fine), color="tab:red",
                 label=f"sideband fit ($\\chi^2$/ndf = {fit.chi2:.1f}/{fit.ndf})")
        top.plot(fine, result.global_fit.density(fine), color="tab:blue", ls="--", lw=1, label="full-range fit")
        for ax in (top, bottom):
            ax.axvspan(result.lo[i], result.hi[i], color="gold", alpha=0.3)
        top.set_yscale("log")
        top.set_ylabel("Events / GeV", fontsize=18)
        top.legend(fontsize=12, title=(f"window {result.lo[i]:.0f}-{result.hi[i]:.0f} GeV: "
                                       f"n = {result.n_obs[i]:.0f}, b = {result.n_exp[i]:.1f} ± "
                                       f"{result.sigma_exp[i]:.1f}, Z = {result.z[i]:.2f}"
                                       f"\n$\\epsilon$ = {result.efficiency:g}"
                                       + ("" if result.global_p is None else
                                          f", global p = {result.global_p:.3g} ({len(result.toy_max_z)} toys)")),
                   title_fontsize=12)
        pull = (counts - expected) / np.sqrt(np.maximum(expected, 1e-9))
        bottom.bar(centres, pull, width=widths, color=np.where(fit.fitted_bins, "tab:gray", "gold"),
                   edgecolor="k", lw=0.5)
        bottom.axhline(0, color="k", lw=1)
        bottom.set_ylabel("pull", fontsize=14)
        bottom.set_xlabel("$m_{jj}$ [GeV]", fontsize=18)
        if caption:
            fig.suptitle(caption, fontsize=12)
        return _save(fig, out)


def plot_significance_scan(
    results: BumpHuntResult | Mapping[float, BumpHuntResult], out: str | Path, caption: str = ""
) -> Path:
    """Local Z against window centre, one line per efficiency, with 3 and 5 sigma guides. Writes a PNG."""
    if isinstance(results, BumpHuntResult):
        results = {results.efficiency: results}
    with _styled():
        fig = Figure(figsize=(9.0, 6.0), layout="constrained")
        ax = fig.subplots()
        for eps, res in results.items():
            label = f"$\\epsilon$ = {eps:g}: max Z = {res.max_z:.2f}"
            if res.global_p is not None:
                label += f", global Z = {res.global_z:.2f}"
            ax.plot(res.centers, res.z, "o-", ms=4, label=label)
        for level in (3, 5):
            ax.axhline(level, color="gray", ls=":", lw=1)
        ax.axhline(0, color="k", lw=1)
        ax.set_xlabel("window centre $m_{jj}$ [GeV]", fontsize=18)
        ax.set_ylabel("local significance Z", fontsize=18)
        ax.legend(fontsize=12)
        if caption:
            fig.suptitle(caption, fontsize=12)
        return _save(fig, out)
