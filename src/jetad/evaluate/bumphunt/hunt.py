"""The bump hunt as run on a search's output: keep the top fraction eps of events by anomaly score (ties broken
at random, seeded), then scan mjj windows on one fit range chosen from the full sample; one result per eps.

This is the last step of every LHC Olympics strategy (2101.08320). `bump_hunt_scores` runs it on a score file
(``jetad score``) and is what ``jetad bumphunt`` calls; `BumpHunt.write` writes bumphunt.json and the plots.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jetad.evaluate.bumphunt.fit import FitRange, _as_mass
from jetad.evaluate.bumphunt.fit_start import FIT_START_MARGIN, FitStart, fit_edges
from jetad.evaluate.bumphunt.look_elsewhere import scan_windows
from jetad.evaluate.bumphunt.scan import BumpHuntResult, _check_width, _check_windows, default_centers

#: Columns of `BumpHunt.table_rows`.
TABLE_COLUMNS = ("eps_B cut", "events in fit", "best window [GeV]", "local Z", "signal yield", "global p")


class BumpHunt(Mapping[float, BumpHuntResult]):
    """`BumpHuntResult` per selection efficiency eps (a mapping eps -> result), the fit start they share, and
    the efficiencies that could not be searched (`skipped`: eps -> why)."""

    def __init__(self, results: dict[float, BumpHuntResult], fit_start: FitStart, skipped: dict[float, str],
                 caption: str = ""):
        self.results = results
        self.fit_start = fit_start
        self.skipped = skipped
        self.caption = caption

    def __getitem__(self, eps: float) -> BumpHuntResult:
        return self.results[eps]

    def __iter__(self) -> Iterator[float]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def summary(self) -> dict[str, dict[str, Any]]:
        """{eps: result summary} for bumphunt.json; a skipped eps maps to {"efficiency", "skipped": why}."""
        out: dict[str, dict[str, Any]] = {f"{e:g}": r.summary() for e, r in self.results.items()}
        for eps, why in self.skipped.items():
            out[f"{eps:g}"] = {"efficiency": eps, "skipped": why, **self.fit_start.as_dict()}
        return dict(sorted(out.items(), key=lambda kv: -float(kv[0])))

    def table_rows(self) -> list[tuple[str, ...]]:
        """One row of strings per efficiency, in `TABLE_COLUMNS` order (a skipped one says why)."""
        rows: list[tuple[str, ...]] = []
        for eps, r in self.results.items():
            b = r.best
            rows.append((f"{eps:g}", str(r.n_events), f"{r.lo[b]:.0f}-{r.hi[b]:.0f}", f"{r.max_z:.2f}",
                         f"{r.signal_yield[b]:.0f} ± {r.signal_yield_err[b]:.0f}", r.global_p_text()))
        rows += [(f"{eps:g}", "-", "not searched", "-", why, "-") for eps, why in self.skipped.items()]
        return rows

    def write(self, out: str | Path, caption: str | None = None) -> Path:
        """bumphunt.json and the plots into directory `out` (see `write_bumphunt`); returns the JSON's path."""
        from jetad.evaluate.report_files import write_bumphunt

        return write_bumphunt(self, out, caption=self.caption if caption is None else caption)


def top_fraction(scores: np.ndarray, eps: float, seed: int = 0) -> tuple[np.ndarray, float | None]:
    """Sorted indices of the ceil(eps N) highest scores, ties broken at random (seeded), and the threshold.

    Tied scores (a classifier that falls back to a constant, boosted trees with few leaves) would otherwise be
    kept in file order, which can follow mjj; a random tie-break keeps exactly the fraction eps, and keeps the
    tied events at random. The threshold is the lowest kept score (None for eps = 1).
    """
    scores = np.asarray(scores, dtype=np.float64)
    k = math.ceil(eps * len(scores) - 1e-9)
    order = np.lexsort((np.random.default_rng(seed).random(len(scores)), -scores))
    return np.sort(order[:k]), (float(scores[order[k - 1]]) if eps < 1 and k > 0 else None)


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
    fit_start_margin: float = FIT_START_MARGIN,
) -> BumpHunt:
    """Keep the top fraction eps of events by anomaly score (`top_fraction`), then `scan_windows`, per eps.

    The fit range, bins and window centres are fixed from the full sample, so that every efficiency scans the
    same windows: by default the fit starts `fit_start_margin` above the peak of the full mjj spectrum
    (`choose_fit_start`), above the trigger turn-on; ``range=(low, high)`` [GeV] sets either edge. Without
    scores only eps = 1 is run. Toys of efficiency i use seed + i; ties are broken with `seed`.
    An efficiency that keeps fewer than `min_events` events, or whose windows all lack sideband events, is
    skipped with the reason (`BumpHunt.skipped`); a ValueError is raised when no efficiency could be run, and
    for a window outside the fit range (the message says where the fit starts and why).
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
    for eps in efficiencies:
        if not 0 < eps <= 1:
            raise ValueError(f"bump_hunt: efficiency {eps} not in (0, 1]")
    edges, start = fit_edges(m, w, bins, range, fit_start_margin)
    centers = default_centers(edges, width_fraction) if centers is None else np.atleast_1d(
        np.asarray(centers, dtype=np.float64))
    _check_windows(centers, width_fraction, edges, start)
    results, skipped = {}, {}
    for i, eps in enumerate(efficiencies):
        keep, threshold = top_fraction(scores, eps, seed)
        if len(keep) < min_events:
            skipped[float(eps)] = (f"efficiency {eps:g} keeps {len(keep)} of {len(m)} events, fewer than "
                                   f"{min_events}; use a larger efficiency or more events")
            continue
        try:
            res = scan_windows(m[keep], centers, width_fraction, edges, weights=w[keep], n_toys=n_toys,
                               seed=seed + i, min_sideband_events=min_events,
                               include_fit_uncertainty=include_fit_uncertainty, n_params=n_params)
        except ValueError as err:
            skipped[float(eps)] = f"efficiency {eps:g}: {err}"
            continue
        res.efficiency, res.threshold, res.fit_start = float(eps), threshold, start
        results[float(eps)] = res
    if not results:
        raise ValueError("bump_hunt: no efficiency could be searched: " + "; ".join(skipped.values()))
    return BumpHunt(results, start, skipped)


def bump_hunt_scores(path: str | Path, **kwargs: Any) -> BumpHunt:
    """`bump_hunt` on a score file of dijet events (``jetad score``), with its mjj observer and event weights.

    Keyword arguments go to `bump_hunt`; the result's caption names the file, the detector and the seed.
    Raises SchemaError when the file has no mjj observer.
    """
    from jetad.data.sample import SchemaError
    from jetad.data.scores import read_scores

    path = Path(path)
    table = read_scores(path)
    if "mjj" not in table.observers:
        raise SchemaError(f"{path}: no mjj observer; score dijet files (lhco-bkg / lhco-sig / converted LHCO boxes)")
    hunt = bump_hunt(table.observers["mjj"], table.score, weights=table.weight, **kwargs)
    hunt.caption = (f"{path.name}: {table.attrs.get('detector', '?')}, {len(table.score)} events, "
                    f"seed {kwargs.get('seed', 0)}")
    return hunt
