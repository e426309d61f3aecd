"""The dijet-function background fit of the bump hunt (CMS 1911.03947, ATLAS 1910.08447): a binned Poisson
likelihood (iminuit) of f(x) = p0 (1 - x)^p1 / x^(p2 + p3 ln x), x = mjj / sqrt(s), integrated over each bin
(Simpson), optionally with a window excluded (a sideband fit); and the local significance of a count over it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from iminuit import Minuit
from scipy.stats import chi2 as chi2_dist

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


def _log_shape(x: np.ndarray | float, p1: float, p2: float, p3: float) -> np.ndarray:
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
