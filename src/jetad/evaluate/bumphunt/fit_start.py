"""Where the bump hunt's fit starts: above the trigger turn-on of the mjj spectrum.

A leading-jet pT cut (1.2 TeV in the LHC Olympics boxes, 2101.08320) makes the mjj spectrum rise to a peak
and only then fall; the dijet function describes the falling part only. Fitting the turn-on too gives a
bad fit whose residuals look like bumps (measured here: local Z = 33 at 2.5-2.7 TeV on a signal-free box).
The dijet searches start the fit where the trigger is fully efficient (CMS 1911.03947, ATLAS 1910.08447);
here the start is the peak of the smoothed spectrum times (1 + margin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jetad.evaluate.bumphunt.fit import FitRange, _fit_edges

#: Default margin above the turn-on peak (a fraction of the peak mass); see docs/benchmarks/lhco.md, "Null study".
FIT_START_MARGIN = 0.1
#: Gaussian smoothing of the ln(mjj) histogram used to find the peak (about the dijet mass resolution).
_PEAK_SMOOTHING = 0.03
_LOG_BIN = 0.0025


@dataclass(frozen=True)
class FitStart:
    """The fit's low edge [GeV] and how it was chosen ('auto': peak * (1 + margin); 'user'; 'data': no turn-on)."""

    start_gev: float
    choice: str
    peak_gev: float | None = None
    margin: float | None = None

    def describe(self) -> str:
        """One line for a report: where the fit starts and why."""
        if self.choice == "auto":
            return (f"fit starts at {self.start_gev:.0f} GeV: {self.margin:.0%} above the turn-on peak at "
                    f"{self.peak_gev:.0f} GeV (set --mjj-min to choose)")
        if self.choice == "data":
            return (f"fit starts at the lowest mass, {self.start_gev:.0f} GeV: the spectrum falls from there "
                    f"(no turn-on in the data)")
        return f"fit starts at {self.start_gev:.0f} GeV (given)"

    def as_dict(self) -> dict[str, Any]:
        return {"fit_start_gev": self.start_gev, "fit_start_choice": self.choice, "turn_on_peak_gev": self.peak_gev,
                "fit_start_margin": self.margin, "fit_start": self.describe()}


def spectrum_peak(mjj: np.ndarray, weights: np.ndarray | None = None, smoothing: float = _PEAK_SMOOTHING) -> float:
    """The mass [GeV] where the mjj spectrum (events per unit ln mjj, Gaussian-smoothed by `smoothing`) peaks.

    Smoothing over about the mass resolution makes the peak robust to bin-to-bin fluctuations; the density is
    taken per ln(mjj) so that a steeply falling spectrum is not pulled towards its low edge by the bin width.
    """
    m = np.asarray(mjj, dtype=np.float64)
    if len(m) == 0:
        raise ValueError("spectrum_peak: no events")
    lm = np.log(m)
    lo, hi = float(lm.min()), float(lm.max())
    n_bins = max(int(np.ceil((hi - lo) / _LOG_BIN)), 1)
    counts, edges = np.histogram(lm, n_bins, (lo, hi + 1e-12), weights=weights)
    half = int(np.ceil(4 * smoothing / _LOG_BIN))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * _LOG_BIN / smoothing) ** 2)
    smooth = np.convolve(counts, kernel, mode="same")
    norm = np.convolve(np.ones_like(counts, dtype=float), kernel, mode="same")  # edge correction
    i = int(np.argmax(smooth / norm))
    return float(np.exp(0.5 * (edges[i] + edges[i + 1])))


def choose_fit_start(
    mjj: np.ndarray, weights: np.ndarray | None = None, margin: float = FIT_START_MARGIN,
    smoothing: float = _PEAK_SMOOTHING,
) -> FitStart:
    """The low edge of the fit: `margin` above the spectrum's peak, or the lowest mass if the spectrum falls
    from there (a sample already cut in mjj).

    Arguments:
        mjj: (N,) dijet masses [GeV] of the full sample (before any score cut: the turn-on is the trigger's).
        weights: optional event weights.
        margin: fraction of the peak mass added above the peak (0.1: a 2.6 TeV peak starts the fit at 2.86 TeV).
        smoothing: width in ln(mjj) of the Gaussian smoothing used to locate the peak.
    """
    if not 0 <= margin < 1:
        raise ValueError(f"fit_start_margin must be in [0, 1), got {margin}")
    m = np.asarray(mjj, dtype=np.float64)
    peak = spectrum_peak(m, weights, smoothing)
    lowest = float(m.min())
    if np.log(peak / lowest) <= 2 * smoothing:
        return FitStart(lowest, "data", peak_gev=peak, margin=None)
    return FitStart(peak * (1.0 + margin), "auto", peak_gev=peak, margin=margin)


def fit_edges(
    mjj: np.ndarray, weights: np.ndarray | None, bins: int | np.ndarray, range: FitRange,
    margin: float = FIT_START_MARGIN,
) -> tuple[np.ndarray, FitStart]:
    """Bin edges [GeV] of the fit and where it starts: explicit edges, a given low edge, or `choose_fit_start`.

    `range` is (low, high) [GeV]; a None low edge is chosen above the turn-on, a None high edge is the data's
    maximum. Each edge takes effect on its own.
    """
    m = np.asarray(mjj, dtype=np.float64)
    if np.ndim(bins) == 1:
        edges = _fit_edges(m, bins, None)
        return edges, FitStart(float(edges[0]), "user")
    lo, hi = range if range is not None else (None, None)
    if lo is not None:
        start = FitStart(float(lo), "user")
    elif len(m) == 0:
        raise ValueError("no events: cannot set a fit range from the data")
    else:
        start = choose_fit_start(m, weights, margin)
    if hi is not None and not start.start_gev < hi:
        raise ValueError(f"fit range: the high edge {hi:g} GeV must lie above the start; {start.describe()}")
    return _fit_edges(m, bins, (start.start_gev, hi)), start
