"""Tables of a benchmark run: results.md / .csv (a row per cell and signal) and the leaderboard over seeds.

The leaderboard aggregates the rows of `run_benchmark` (or of `query_results(db)`) over training seeds: mean
+- std of the AUC, the AUC's statistical error from the test size (Hanley-McNeil), the distance correlation
with the task's sculpting observer, and flags (a training size below the method's minimum; an AUC below 0.5
with how many standard errors it sits there). With several training sizes, learning curves per task.
docs/benchmarks/leaderboard.md explains the numbers.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jetad.tasks.registry import MIN_TRAIN
from jetad.tasks.results_db import COLUMNS

__all__ = [
    "LEADERBOARD_COLUMNS",
    "auc_stat_error",
    "auc_text",
    "cell_flags",
    "cell_text",
    "leaderboard",
    "write_leaderboard",
    "write_learning_curves",
    "write_tables",
]


def cell_text(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column in ("infer_jets_per_s", "onnx_jets_per_s_b1024"):
        return f"{value:,.0f}"
    if column == "train_s":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return str(value)


def auc_text(auc: Any, err: Any) -> str:
    """An AUC with its statistical error: never an AUC alone."""
    if not isinstance(auc, float) or math.isnan(auc):
        return ""
    return f"{auc:.3f} ± {err:.3f}" if isinstance(err, float) and math.isfinite(err) else f"{auc:.3f} ± ?"


def write_tables(rows: list[dict[str, Any]], workdir: Path) -> None:
    """results.csv (every column), results.md (a row per cell and signal, best AUC first, each AUC with its
    statistical error and flags) and the leaderboard over seeds."""
    with open(workdir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    shown = ("task", "signal", "method", "n_train", "seed", "status", "auc ± stat", "flags", "max_sic",
             "rejection_eps_s_0_3", "jsd_eps_b_0_1", "dcor_mass", "train_s", "infer_jets_per_s",
             "onnx_ms_per_jet_b1", "onnx_jets_per_s_b1024", "n_parameters", "n_test")

    def key(r: dict[str, Any]) -> tuple:
        auc = r.get("auc")
        return r["task"], r.get("signal") or "", -(auc if isinstance(auc, float) and math.isfinite(auc) else -1.0)

    def text(r: dict[str, Any], c: str) -> str:
        if c == "auc ± stat":
            return auc_text(r.get("auc"), r.get("auc_stat_err"))
        if c == "flags":
            return "; ".join(cell_flags(r["method"], r.get("n_train"), r.get("auc"), r.get("auc_stat_err")))
        return cell_text(r.get(c), c)

    seeds = sorted({r["seed"] for r in rows})
    lines = ["# jetad benchmark", "", f"size {rows[0]['size']}, seeds {', '.join(map(str, seeds))}, "
             f"jetad {rows[0]['jetad_version']}, {rows[0]['machine']}", "",
             "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for r in sorted(rows, key=key):
        lines.append("| " + " | ".join(text(r, c).replace("|", "/") for c in shown) + " |")
    (workdir / "results.md").write_text("\n".join(lines) + "\n")
    write_leaderboard(rows, workdir)


# ------------------------------------------------------------------------------------------ leaderboard


def auc_stat_error(auc: float | None, n_sig: int | float | None, n_bkg: int | float | None) -> float:
    """Standard error of an AUC from the test size (Hanley & McNeil 1982, Radiology 143:29, eq. 2).

    SE^2 = [A(1-A) + (n_s-1)(Q1-A^2) + (n_b-1)(Q2-A^2)] / (n_s n_b), Q1 = A/(2-A), Q2 = 2A^2/(1+A);
    NaN when the AUC or a count is missing. About 0.029 at A = 0.5 with 200 + 200 test jets.
    """
    if auc is None or n_sig is None or n_bkg is None or not (n_sig >= 1 and n_bkg >= 1) or math.isnan(auc):
        return math.nan
    a = float(auc)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_sig - 1) * (q1 - a * a) + (n_bkg - 1) * (q2 - a * a)) / (n_sig * n_bkg)
    return math.sqrt(max(var, 0.0))


def cell_flags(method: str, n_train: int | None, auc: float | None, auc_err: float | None,
               auc_std: float | None = None, n_seeds: int = 1) -> list[str]:
    """Warnings a reader must see next to a result: a training size below the method's declared minimum
    (`registry.MIN_TRAIN`), and an AUC below 0.5 with how many standard errors it lies below 0.5."""
    flags = []
    need = MIN_TRAIN.get(method)
    if need is not None and n_train is not None and n_train < need:
        flags.append(f"below minimum size ({method} needs >= {need:,} training jets)")
    if isinstance(auc, float) and auc < 0.5:
        seed_err = auc_std / math.sqrt(n_seeds) if auc_std is not None and math.isfinite(auc_std) else 0.0
        err = math.hypot(auc_err if auc_err is not None and math.isfinite(auc_err) else math.nan, seed_err)
        if math.isnan(err) or err == 0:
            flags.append("AUC < 0.5 (no statistical error available)")
        else:
            z = (0.5 - auc) / err
            what = "consistent with no separation" if z < 2 else "the score ranks background above signal"
            flags.append(f"AUC < 0.5 by {z:.1f} sigma: {what}")
    return flags


#: Columns of leaderboard.csv (one row per task, signal, method, parameters and n_train; over seeds).
LEADERBOARD_COLUMNS = ("task", "signal", "method", "n_train", "n_seeds", "seeds", "auc_mean", "auc_std",
                       "auc_stat_err", "dcor_mean", "dcor_std", "observer", "n_sig", "n_bkg", "min_n_train",
                       "flags", "params_json", "task_hash")


def _mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for one value) of the finite values."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not v.size:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def leaderboard(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results aggregated over seeds: one entry per (task, signal, method, parameters, n_train).

    Takes `run_benchmark` rows or `query_results` rows ('ok' and 'reused' rows with an AUC count; of repeated
    cells the latest). Each entry: the AUC's mean and standard deviation over seeds, its statistical error at
    the mean from the test size (`auc_stat_error`; the test jets are the same for every seed, so this error
    does not shrink with more seeds), the distance correlation of the background score with the sculpting
    observer (mean, std), and `cell_flags`.
    """
    latest: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if r.get("status") in ("ok", "reused") and isinstance(r.get("auc"), float):
            latest[(r["task_hash"], r["method"], r["params_json"], r.get("n_train"), r["seed"], r.get("signal"))] = r
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for (thash, method, pjson, n, _, signal), r in latest.items():
        groups.setdefault((r["task"], signal or "", method, n, pjson, thash), []).append(r)
    board = []
    for (task, signal, method, n, pjson, thash), cell in sorted(groups.items(), key=lambda kv: kv[0][:4]):
        auc_mean, auc_std = _mean_std([r["auc"] for r in cell])
        dcor_mean, dcor_std = _mean_std([r.get("dcor_mass") for r in cell])
        n_sig, n_bkg = cell[-1].get("n_sig"), cell[-1].get("n_bkg")
        err = auc_stat_error(auc_mean, n_sig, n_bkg)
        board.append({
            "task": task, "signal": signal, "method": method, "n_train": n, "n_seeds": len(cell),
            "seeds": ",".join(str(r["seed"]) for r in sorted(cell, key=lambda r: r["seed"])),
            "auc_mean": auc_mean, "auc_std": auc_std, "auc_stat_err": err, "dcor_mean": dcor_mean,
            "dcor_std": dcor_std, "observer": cell[-1].get("observer"), "n_sig": n_sig, "n_bkg": n_bkg,
            "min_n_train": MIN_TRAIN.get(method),
            "flags": "; ".join(cell_flags(method, n, auc_mean, err, auc_std, len(cell))),
            "params_json": pjson, "task_hash": thash,
        })
    return board


def _pm(mean: float, std: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if math.isfinite(std) else "")


def write_leaderboard(rows: Sequence[dict[str, Any]], workdir: str | Path) -> tuple[Path, Path]:
    """WORKDIR/leaderboard.md and leaderboard.csv from `leaderboard(rows)`; returns their paths."""
    workdir = Path(workdir)
    board = leaderboard(rows)
    csv_path, md_path = workdir / "leaderboard.csv", workdir / "leaderboard.md"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(LEADERBOARD_COLUMNS))
        writer.writeheader()
        writer.writerows(board)
    header = ("task", "signal", "method", "n_train", "seeds", "AUC (mean ± std over seeds)", "AUC stat. error",
              "dCor(score, observer)", "flags")
    lines = ["# jetad leaderboard", "",
             "AUC: mean ± standard deviation over training seeds; stat. error: Hanley-McNeil error of the AUC "
             "from the test size (the same test jets for every seed); dCor: distance correlation of the background "
             "score with the sculpting observer (mean ± std). See docs/benchmarks/leaderboard.md.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for b in board:
        cells = (b["task"], b["signal"], b["method"], f"{b['n_train']:,}" if b["n_train"] is not None else "",
                 b["seeds"], _pm(b["auc_mean"], b["auc_std"]),
                 f"± {b['auc_stat_err']:.3f}" if math.isfinite(b["auc_stat_err"]) else "?",
                 _pm(b["dcor_mean"], b["dcor_std"], 2) + (f" ({b['observer']})" if b["observer"] else ""),
                 b["flags"])
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path


def write_learning_curves(board: list[dict[str, Any]], workdir: Path, size: str, seeds: Sequence[int]) -> None:
    """AUC and dCor against n_train, one line per method with a band over seeds, per task (and signal)."""
    from jetad.evaluate.plots import plot_learning_curves

    by_plot: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for b in board:
        by_plot.setdefault((b["task"], b["signal"]), {}).setdefault(b["method"], []).append(b)
    signals_of = {task: [s for t, s in by_plot if t == task] for task, _ in by_plot}
    for (task, signal), methods in by_plot.items():
        curves = {m: {k: np.array([e[src] for e in sorted(es, key=lambda e: e["n_train"])], dtype=float)
                      for k, src in (("n_train", "n_train"), ("auc", "auc_mean"), ("auc_std", "auc_std"),
                                     ("auc_err", "auc_stat_err"), ("dcor", "dcor_mean"), ("dcor_std", "dcor_std"))}
                  for m, es in methods.items() if len(es) > 1}
        if not curves:
            continue
        name = "learning_curves.png" if len(signals_of[task]) == 1 else f"learning_curves_{signal}.png"
        n_bkg = next(iter(methods.values()))[0]["n_bkg"]
        caption = (f"{task}: {signal} vs background ({size}; test {next(iter(methods.values()))[0]['n_sig']} + "
                   f"{n_bkg} jets; seeds {', '.join(map(str, seeds))}; jetad benchmark)")
        plot_learning_curves(curves, workdir / task / name, caption=caption)
