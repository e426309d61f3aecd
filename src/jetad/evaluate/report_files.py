"""Evaluate a score file for one signal/background choice: metrics.json plus the standard plots."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jetad.data.json_values import json_safe
from jetad.data.sample import SchemaError
from jetad.data.scores import ScoreTable
from jetad.evaluate.metrics import evaluate_scores, roc_curve, sic_curve
from jetad.evaluate.plots import plot_roc, plot_score_distributions, plot_score_vs_mass, plot_sic

__all__ = ["evaluate_score_table", "signal_and_background", "write_bumphunt"]


def signal_and_background(
    table: ScoreTable, signal: str | int, background: str | int, path: str | Path = "scores",
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (signal, background) masks of `table`; a selection naming no jets, or two that share jets, is an
    error (a sample evaluated against itself has AUC 0.5 by construction)."""
    if str(signal) == str(background):
        raise ValueError(f"{path}: signal and background are both {signal!r}; choose two different sources or labels")
    sig, bkg = table.select(signal, path), table.select(background, path)
    shared = int((sig & bkg).sum())
    if shared:
        raise ValueError(f"{path}: signal {signal!r} and background {background!r} share {shared} jets; choose "
                         f"disjoint selections (sources are {table.sources})")
    return sig, bkg


def evaluate_score_table(
    table: ScoreTable,
    signal: str | int,
    background: str | int,
    out: str | Path,
    observer: str = "mass",
    path: str | Path = "scores",
) -> dict[str, Any]:
    """Metrics of signal vs background jets of `table`, written to out/metrics.json with PNG plots.

    `observer` (a column of `table.observers`) is the mass used for the sculpting metrics; one the table lacks
    is a SchemaError listing those it has. metrics.json is written last and atomically, so it only exists for a
    complete evaluation.
    """
    sig, bkg = signal_and_background(table, signal, background, path)
    if observer not in table.observers:
        raise SchemaError(f"{path}: no observer {observer!r} for the sculpting metrics; it has "
                          f"{', '.join(sorted(table.observers)) or 'none'}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s, b = table.score[sig], table.score[bkg]
    ws, wb = table.weight[sig], table.weight[bkg]
    mass = table.observers[observer]
    metrics = evaluate_scores(s, b, mass_bkg=mass[bkg], w_sig=ws, w_bkg=wb)
    name = str(table.attrs.get("detector", "detector"))
    caption = f"{name}: signal {signal} ({sig.sum()} jets) vs background {background} ({bkg.sum()} jets)"
    eps_s, eps_b, _ = roc_curve(s, b, ws, wb)
    plots = {
        "roc": plot_roc({name: (eps_s, eps_b)}, out / "roc.png", caption=caption),
        "sic": plot_sic({name: sic_curve(s, b, ws, wb)}, out / "sic.png", caption=caption),
        "scores": plot_score_distributions({f"signal {signal}": s, f"background {background}": b},
                                           out / "scores.png", caption=caption),
        "sculpting": plot_score_vs_mass(b, mass[bkg], out / "sculpting.png", w=wb, mass_label=observer,
                                        caption=caption + " (background)"),
    }
    result = {"detector": name, "signal": str(signal), "background": str(background), "observer": observer,
              "metrics": metrics, "plots": {k: str(v) for k, v in plots.items()}, "model": table.attrs.get("params")}
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(json_safe(result), indent=1, default=str))
    os.replace(tmp, out / "metrics.json")
    return result


def write_bumphunt(results: Mapping[float, Any], out: str | Path, caption: str = "") -> Path:
    """The plots of a `bump_hunt` result per efficiency and its significance scan, then out/bumphunt.json.

    The JSON has one entry per efficiency (a `BumpHunt` also lists the skipped ones, with why); it is written
    last and atomically, so it only exists for a complete output; returns its path.
    """
    from jetad.evaluate.plots import plot_bumphunt, plot_significance_scan

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for eps, result in results.items():
        plot_bumphunt(result, out / f"bumphunt_eps{eps:g}.png", caption=caption)
    if len(results):
        plot_significance_scan(results, out / "significance_scan.png", caption=caption)
    summary = results.summary() if hasattr(results, "summary") else {f"{e:g}": r.summary() for e, r in results.items()}
    tmp = out / "bumphunt.json.tmp"
    tmp.write_text(json.dumps(json_safe(summary), indent=1, default=str))
    os.replace(tmp, out / "bumphunt.json")
    return out / "bumphunt.json"
