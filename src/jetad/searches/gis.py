"""GIS: a density ratio p_SR(x) / p_bkg(x) from Gaussianizing Iterative Slicing densities (2012.11638, 2101.08320).

Stein, Seljak and Dai's LHC Olympics entry (2012.11638; Sec. 3.3 of the review 2101.08320) estimates the
conditional background density p_bkg(x | mjj) in the sidebands with GIS, the density-estimation form of the
sliced iterative normalizing flow (2007.00674), interpolates it into the signal region, and ranks SR events by
the ratio to a density of the SR data, as ANODE (2001.04990) does with neural flows. A GIS layer rotates the
inputs, then Gaussianizes every rotated coordinate through its one-dimensional CDF; stacking layers maps any
density to a standard normal, and log p(x) = log N(z) + sum of the layers' log-derivatives.

What this module simplifies: the slicing directions are seeded random rotations (RBIG-style, 1602.00229) instead
of the directions of largest sliced Wasserstein distance; the marginal maps are piecewise linear between
quantile knots (linear tails in z) instead of rational-quadratic splines; the mjj conditioning is a per-layer
shift and log-scale linear in standardized log mjj, fitted in the sidebands (so it interpolates smoothly into
the SR). The SR density is a second, unconditional GIS fitted on the SR data's background latents z = T(x | mjj):
the composite is a density of x, and its Jacobian cancels in the ratio, so the score is log q(z) - log N(z).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.special import ndtri

from jetad.detectors.estimator import register
from jetad.searches.base import DijetView, ResonantSearch

__all__ = ["GISSearch", "GaussianizingSlices", "fit_gis"]

_LOG_2PI = float(np.log(2 * np.pi))


@dataclass
class GaussianizingSlices:
    """A fitted (conditional) GIS transform as arrays: L layers on D inputs, K quantile knots per coordinate.

    Layer l: u = y @ rotations[l]; per coordinate r = (u - a - b c) exp(-(s + t c)) with (a, b) = shift[l, j],
    (s, t) = log_scale[l, j] and c the standardized context; then z = the piecewise-linear map through the
    points (knots[l, j], normal_knots), extended linearly past the end knots.
    """

    rotations: np.ndarray  # (L, D, D) orthogonal
    shift: np.ndarray  # (L, D, 2): a, b
    log_scale: np.ndarray  # (L, D, 2): s, t
    knots: np.ndarray  # (L, D, K) strictly increasing per coordinate
    normal_knots: np.ndarray  # (K,) standard-normal quantiles of the knots' levels

    def forward(self, x: np.ndarray, c: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Latents z (N, D) and log |det dz/dx| (N,) of inputs x (N, D) at context c (N,) (None = 0)."""
        y = np.asarray(x, np.float64)
        ctx = np.zeros(len(y)) if c is None else np.asarray(c, np.float64)
        log_det = np.zeros(len(y))
        for layer in range(len(self.rotations)):
            u = y @ self.rotations[layer]
            a, b = self.shift[layer, :, 0], self.shift[layer, :, 1]
            log_s = self.log_scale[layer, :, 0] + np.outer(ctx, self.log_scale[layer, :, 1])
            r = (u - a - np.outer(ctx, b)) * np.exp(-log_s)
            y, slope = _marginal_map(r, self.knots[layer], self.normal_knots)
            log_det += np.sum(np.log(slope) - log_s, axis=1)
        return y, log_det

    def log_prob(self, x: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        """(N,) log density of x given context c, in the units of x."""
        z, log_det = self.forward(x, c)
        return standard_normal_log_prob(z) + log_det

    def to_state(self) -> dict[str, np.ndarray]:
        """Arrays only (for the model file)."""
        return {"rotations": self.rotations, "shift": self.shift, "log_scale": self.log_scale, "knots": self.knots,
                "normal_knots": self.normal_knots}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GaussianizingSlices:
        """Inverse of `to_state`; ValueError for arrays of inconsistent shapes."""
        arrays = {k: np.asarray(state[k], np.float64) for k in ("rotations", "shift", "log_scale", "knots",
                                                                 "normal_knots")}
        n_layers, d = arrays["rotations"].shape[:2]
        k = len(arrays["normal_knots"])
        shapes = {"rotations": (n_layers, d, d), "shift": (n_layers, d, 2), "log_scale": (n_layers, d, 2),
                  "knots": (n_layers, d, k)}
        bad = [name for name, shape in shapes.items() if arrays[name].shape != shape]
        if bad:
            raise ValueError(f"GIS transform: arrays {bad} do not match {n_layers} layers of {d} inputs, {k} knots")
        return cls(**arrays)


def standard_normal_log_prob(z: np.ndarray) -> np.ndarray:
    """(N,) log N(z; 0, I) of latents z (N, D)."""
    return -0.5 * np.sum(z**2, axis=1) - 0.5 * z.shape[1] * _LOG_2PI


def _marginal_map(r: np.ndarray, knots: np.ndarray, normal_knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column j: z = the monotone piecewise-linear map through (knots[j], normal_knots), linear past the ends;
    returns z and dz/dr, both (N, D)."""
    z, slope = np.empty_like(r), np.empty_like(r)
    for j in range(r.shape[1]):
        q = knots[j]
        seg = np.clip(np.searchsorted(q, r[:, j]) - 1, 0, len(q) - 2)  # segment index, ends extended
        slope[:, j] = (normal_knots[seg + 1] - normal_knots[seg]) / (q[seg + 1] - q[seg])
        z[:, j] = normal_knots[seg] + (r[:, j] - q[seg]) * slope[:, j]
    return z, slope


def _random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random (D, D) orthogonal matrix (QR of a Gaussian matrix with the signs of R's diagonal fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _linear_fit(y: np.ndarray, c: np.ndarray | None) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y on c; slope 0 without context."""
    if c is None or np.ptp(c) == 0:
        return float(np.mean(y)), 0.0
    slope, intercept = np.polyfit(c, y, 1)
    return float(intercept), float(slope)


def _strictly_increasing(q: np.ndarray, gap: float) -> np.ndarray:
    """`q` with every step at least `gap` (ties of clipped features would give infinite slopes)."""
    steps = gap * np.arange(len(q))
    return np.maximum.accumulate(q - steps) + steps


def fit_gis(x: np.ndarray, c: np.ndarray | None = None, n_layers: int = 20, n_knots: int = 24,
            seed: int = 0) -> GaussianizingSlices:
    """Fit a GIS transform of x (N, D) (conditional on the standardized context c (N,), or not for None).

    Layer 0 keeps the input axes (per-feature Gaussianization); later layers use seeded random rotations.
    Knots sit at the quantile levels (k + 0.5) / K of each coordinate's standardized residuals.
    """
    y = np.asarray(x, np.float64)
    n, d = y.shape
    if n < 2 * n_knots:
        raise ValueError(f"GIS needs at least 2 * n_knots = {2 * n_knots} events, got {n}")
    rng = np.random.default_rng(seed)
    levels = (np.arange(n_knots) + 0.5) / n_knots
    normal_knots = ndtri(levels)
    rotations, shifts, log_scales, knots = [], [], [], []
    for layer in range(n_layers):
        rotation = np.eye(d) if layer == 0 else _random_rotation(d, rng)
        u = y @ rotation
        shift, log_scale, knot = np.zeros((d, 2)), np.zeros((d, 2)), np.zeros((d, n_knots))
        r = np.empty_like(u)
        for j in range(d):
            shift[j] = _linear_fit(u[:, j], c)
            e = u[:, j] - shift[j, 0] - (0.0 if c is None else shift[j, 1] * c)
            _, t = _linear_fit(np.log(e**2 + 1e-12 * np.var(e) + 1e-300), c)
            scaled = e * np.exp(-(t * (0.0 if c is None else c)))
            log_scale[j] = (np.log(np.std(scaled) + 1e-300), t)
            r[:, j] = scaled / np.std(scaled)
            knot[j] = _strictly_increasing(np.quantile(r[:, j], levels), 1e-3 / n_knots)
        y, _ = _marginal_map(r, knot, normal_knots)
        rotations.append(rotation)
        shifts.append(shift)
        log_scales.append(log_scale)
        knots.append(knot)
    return GaussianizingSlices(np.stack(rotations), np.stack(shifts), np.stack(log_scales), np.stack(knots),
                               normal_knots)


@register
class GISSearch(ResonantSearch):
    """GIS density-ratio search (Stein, Seljak & Dai 2012.11638 in 2101.08320); k-fold cross-fitted.

    Per fold (SR and sideband events of the other folds, stratified by region): a conditional GIS p_bkg(x | mjj)
    on the sidebands, with c = standardized log mjj; the SR data of the fold mapped to latents z = T(x | mjj);
    an unconditional GIS q(z) on those latents. Score = log q(z) - log N(z) = log p_SR(x | mjj) -
    log p_bkg(x | mjj) (ANODE's R). Every event, sideband events included, is scored by a fold model whose
    background density never saw it (an in-sample sideband density would score sideband events lower and
    sculpt a bump). Events beyond the sidebands are scored by one seeded random fold model each.

    Arguments:
        n_layers: GIS layers of the background density (layer 0 per feature, then random rotations). More layers
            fit the sidebands closer but interpolate worse: on the toy, 10-20 layers of 24 knots gave SR-fraction
            pulls of +2 to +4 without signal on 20k events, 5 layers of 12 knots 0 to +1.4 at the same AUC
            (docs/benchmarks/lhco_weak.md).
        n_knots: quantile knots per coordinate and layer (fewer: smoother, less overfitting).
        sr_layers: GIS layers of the SR-data density on the latents (a few suffice: background is ~N(0, 1)).
        **kwargs: `ResonantSearch` options (signal_region, sideband_width=200 GeV, features, n_folds, seed, ...).

    Example:
        search = GISSearch().fit(data)
        scores = search.scores_[search.signal_region_]
    """

    name: ClassVar[str] = "gis"

    def __init__(self, n_layers: int = 5, n_knots: int = 12, sr_layers: int = 4, **kwargs: Any):
        super().__init__(**kwargs)
        for option, value, low in (("n_layers", n_layers, 1), ("n_knots", n_knots, 3), ("sr_layers", sr_layers, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{option} must be an integer >= {low}, got {value!r}")
        if "mjj" in self.features:
            raise ValueError("mjj is the conditioning variable of the GIS density; remove it from features")
        self.n_layers = n_layers
        self.n_knots = n_knots
        self.sr_layers = sr_layers

    def _context(self, mjj: np.ndarray) -> np.ndarray:
        """Standardized log mjj with the sideband statistics `context_scale_` (mean, std)."""
        return (np.log(mjj) - self.context_scale_[0]) / self.context_scale_[1]

    def _fit_shared(self, view: DijetView) -> None:
        log_m = np.log(view.mjj[view.sb])
        #: (mean, std) of log mjj [log GeV] over the sidebands: the context standardization of every fold.
        self.context_scale_ = np.array([log_m.mean(), log_m.std() + 1e-12])

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        return np.where(view.sr, 1, np.where(view.sb, 0, -1))

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> Any:
        sb, sr = rows[view.sb[rows]], rows[view.sr[rows]]
        seed = self.seed + 7919 * k
        background = fit_gis(view.x[sb], self._context(view.mjj[sb]), self.n_layers, self.n_knots, seed)
        latents, _ = background.forward(view.x[sr], self._context(view.mjj[sr]))
        signal_region = fit_gis(latents, None, self.sr_layers, self.n_knots, seed + 1)
        return {"background": background.to_state(), "signal_region": signal_region.to_state()}

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        background = GaussianizingSlices.from_state(model["background"])
        signal_region = GaussianizingSlices.from_state(model["signal_region"])
        z, _ = background.forward(view.x[rows], self._context(view.mjj[rows]))
        return signal_region.log_prob(z) - standard_normal_log_prob(z)

    def n_parameters(self) -> int:
        """Learned numbers of every fold's GIS transforms (rotations, shifts, log-scales, knots)."""
        self._check_fitted()
        return sum(int(np.size(a)) for model in self.models_ for part in model.values()
                   for name, a in part.items() if name != "normal_knots")
