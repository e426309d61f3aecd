"""Run named tasks x detectors x training sizes x seeds into a resumable SQLite database and leaderboards.

A cell is (task, method, parameters, n_train, seed). Its samples come from the sample cache
(`jetad.generate.cache`, shared by every run and work folder): the first n_test rows of each sample test, the
next n_train rows of each background train, so every training size of a learning curve is scored on the same
jets. A cell trains on the background train split, scores the background test split and each signal, and
evaluates them (metrics.json and plots under ``WORKDIR/<task>/<method>/``, so ``write_report(WORKDIR)`` works).
A cell with an "ok" result for the same task definition (at that n_train), parameters and seed is reused, not
rerun; failures are stored, never skipped. `leaderboard` aggregates the rows over seeds (mean +- std of the
AUC, its statistical error from the test size, the distance correlation with the sculpting observer) into
WORKDIR/leaderboard.md and .csv; with several training sizes the learning curves go to
WORKDIR/<task>/learning_curves.png. docs/benchmarks/leaderboard.md explains the numbers.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from jetad import __version__
from jetad.data.sample import JetSample, concatenate
from jetad.data.scores import ScoreTable
from jetad.detectors import REGISTRY, make_detector
from jetad.detectors.reweighting import matched_weights
from jetad.detectors.scoring import score_sample
from jetad.evaluate.report_files import evaluate_score_table
from jetad.generate.cache import cached_rows, entry_path, read_cached
from jetad.generate.processes import default_config
from jetad.tasks.leaderboard import (
    auc_stat_error,
    leaderboard,
    write_learning_curves,
    write_tables,
)
from jetad.tasks.registry import SIZES, TASKS, SampleSpec, Task, sample_counts, task_hash, train_counts
from jetad.tasks.results_db import connect, insert, ok_rows

__all__ = ["run_benchmark"]

#: evaluate_scores key -> results column.
_METRIC_COLUMNS = {"auc": "auc", "max_sic": "max_sic", "rejection_at_eps_s_0.3": "rejection_eps_s_0_3",
                   "jsd_at_eps_b_0.1": "jsd_eps_b_0_1", "dcor_score_mass": "dcor_mass"}

Say = Callable[[str], None]


# -------------------------------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class SampleRequest:
    """How a run takes its jets: size, scale, test size, the cache and generation workers, and the training sizes.

    `n_train` is the total of a cell's background training jets (None: the task's count at `size`);
    `n_train_max` the largest of the run, so each cached sample is extended once, not once per training size.
    """

    size: str
    n_scale: float = 1.0
    n_test: int | None = None
    cache: Path | None = None
    workers: int = 1
    n_train: int | None = None
    n_train_max: int | None = None


def _load(spec: SampleSpec, n_train: int, n_reserve: int, req: SampleRequest, say: Say) -> tuple[JetSample, JetSample]:
    """(train, test) of a sample: rows n_test:n_test + n_train and 0:n_test of its cached production, which is
    made (or extended) first to n_test + n_reserve rows."""
    _, n_test = sample_counts(spec, req.size, req.n_scale, n_test=req.n_test)
    cfg = default_config(spec.process, **spec.overrides)
    need = n_test + max(n_train, n_reserve)
    have = cached_rows(cfg, spec.seed, req.cache)
    if have < need:
        path = entry_path(cfg, spec.seed, req.cache)
        unfinished = not have and (path / "manifest.json").exists()
        what = (f"resume an unfinished production (its finished shards are kept) to {need} {spec.process} jets"
                if unfinished else f"{need - have} more {spec.process} jets (to {need})")
        say(f"generate {spec.name}: {what}, seed {spec.seed} -> {path}")
    sample = read_cached(cfg, n_test + n_train, spec.seed, cache=req.cache, workers=req.workers, reserve=need)
    return sample.subset(slice(n_test, n_test + n_train)), sample.subset(slice(0, n_test))


# ----------------------------------------------------------------------------------------------- one cell


def _machine() -> str:
    return f"{platform.node()} ({os.cpu_count()} CPUs)"


def _params_json(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _run_cell(task: Task, method: str, params: dict[str, Any], req: SampleRequest, seed: int,
              workdir: Path, say: Say) -> list[dict[str, Any]]:
    """Train, score and evaluate one (task, method, n_train, seed); one result dict per signal."""
    size = req.size
    trains = train_counts(task, size, req.n_train, req.n_scale)
    reserve = train_counts(task, size, req.n_train_max, req.n_scale) if req.n_train_max else trains
    backgrounds = [_load(s, k, r, req, say) for s, k, r in zip(task.background, trains, reserve, strict=True)]
    signals = {s.name: _load(s, 0, 0, req, say)[1] for s in task.signals_for(size)}
    train = concatenate([tr for tr, _ in backgrounds])
    bkg_test = concatenate([te for _, te in backgrounds])
    say(f"{task.name} / {method}: train on {len(train)} background jets")
    det = make_detector(method, seed=seed, **params)
    t0 = time.perf_counter()
    det.fit(train)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    s_bkg = score_sample(det, bkg_test, "background")
    s_sig = {name: score_sample(det, sample, name) for name, sample in signals.items()}
    n_scored = len(bkg_test) + sum(len(s) for s in signals.values())
    jets_per_s = n_scored / max(time.perf_counter() - t0, 1e-9)
    results = []
    for name, sample in signals.items():
        table = ScoreTable.from_samples([s_bkg, s_sig[name]], [bkg_test, sample], ["background", name],
                                        attrs={"detector": method, "params": det.get_params(), "task": task.name,
                                               "pt_matched": task.match_pt})
        n_bkg_eff = float(len(bkg_test))
        if task.match_pt:  # background test jets weighted to this signal's pT spectrum
            w = matched_weights(bkg_test.jets[:, 0], sample.jets[:, 0])
            table.weight = np.concatenate([bkg_test.weight * w, sample.weight])
            n_bkg_eff = float(w.sum() ** 2 / (w**2).sum())
        out = workdir / task.name / method if len(signals) == 1 else workdir / task.name / method / name
        observer = task.observer if task.observer in table.observers else "mass"
        ev = evaluate_score_table(table, name, "background", out, observer=observer,
                                  path=f"{task.name}/{method}/{name}")
        row: dict[str, Any] = {col: ev["metrics"].get(key) for key, col in _METRIC_COLUMNS.items()}
        row |= {"signal": name, "train_s": train_s, "infer_jets_per_s": jets_per_s,
                "n_parameters": int(det.n_parameters()), "n_train": len(train), "n_test": len(bkg_test) + len(sample),
                "n_sig": len(sample), "n_bkg": len(bkg_test), "observer": observer,
                "auc_stat_err": auc_stat_error(row["auc"], len(sample), n_bkg_eff)}
        results.append(row)
    onnx = _onnx_timing(det, bkg_test, workdir / task.name / method)
    if len(signals) > 1:
        _plot_grid(task, method, size, {r["signal"]: r["auc"] for r in results}, workdir / task.name / method)
    return [r | onnx for r in results]


def _onnx_timing(det: Any, sample: JetSample, out_dir: Path) -> dict[str, float]:
    """ONNX Runtime latency per jet at batch 1 and throughput at batch 1024 (empty for non-neural detectors)."""
    from jetad.detectors.export import export_onnx, onnx_inputs, onnx_latency

    try:
        path = export_onnx(det, out_dir / "model.onnx")
    except NotImplementedError:
        return {}
    timing = onnx_latency(path, onnx_inputs(det, sample[:1024]), repeats=5)["onnxruntime"]
    return {"onnx_ms_per_jet_b1": timing[1]["latency_ms_per_jet"],
            "onnx_jets_per_s_b1024": timing[max(timing)]["throughput_jets_per_s"]}


def _plot_grid(task: Task, method: str, size: str, aucs: dict[str, float], out_dir: Path) -> None:
    """AUC heatmap over the two scanned signal options (e.g. m_med x r_inv) of a grid task."""
    from jetad.evaluate.plots import plot_auc_grid

    specs = {s.name: s.overrides.get("options", {}) for s in task.signals_for(size)}
    keys = sorted({k for o in specs.values() for k in o if len({str(v.get(k)) for v in specs.values()}) > 1})
    if len(keys) != 2:
        return
    xs = sorted({specs[n][keys[0]] for n in aucs})
    ys = sorted({specs[n][keys[1]] for n in aucs})
    grid = np.full((len(xs), len(ys)), np.nan)
    for name, value in aucs.items():
        grid[xs.index(specs[name][keys[0]]), ys.index(specs[name][keys[1]])] = value
    plot_auc_grid(xs, ys, grid, out_dir / "auc_grid.png", keys[0], keys[1], title=f"{task.name}: {method} ({size})")


# ----------------------------------------------------------------------------------------------- the runner


def run_benchmark(
    tasks: Sequence[str | Task],
    methods: Sequence[str],
    size: str = "small",
    workdir: str | Path = "benchmark",
    db: str | Path | None = None,
    seed: int = 0,
    step: Say | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    n_scale: float = 1.0,
    workers: int = 1,
    seeds: Sequence[int] | None = None,
    n_train: Sequence[int] | None = None,
    n_test: int | None = None,
    cache: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run every (task, method, n_train, seed) cell; return one row per cell and signal (status 'ok', 'reused',
    'failed: ...' or 'not applicable: ...') and write WORKDIR/results.csv, results.md, leaderboard.md and
    leaderboard.csv after every cell (plus learning curves at the end when several training sizes ran).

    Arguments:
        db: SQLite file or ``sqlite:///path`` URL (default WORKDIR/results.sqlite); 'ok' cells with the same task
            hash, parameters, n_train and seed are reused from it, so an interrupted run resumes. A shared file
            on a network disk serves several machines (each row records its machine).
        seed: the training seed of every cell when `seeds` is not given.
        seeds: training seeds (detector initialisation, batches, sampling); the samples stay the same.
        n_train: total background training jets per cell, one cell per value (default: the task's count at
            `size`, times `n_scale`); split over a task's background samples in its proportions.
        n_test: test jets of every sample (background and each signal; default: the task's count at `size`,
            times `n_scale`).
        cache: the sample cache folder (default `jetad.generate.cache.cache_dir()`: $JETAD_CACHE or
            ~/.cache/jetad); the work folder holds results only.
        workers: Dask LocalCluster processes for sample generation (shards are fixed, so results do not change).
        params: method -> parameter overrides merged over the task's settings for `size`.
        n_scale: multiplies every default sample size (tests use ~0.1 of 'small').
    """
    workdir = Path(workdir)
    if isinstance(db, str) and db.startswith("sqlite:///"):
        db = db.removeprefix("sqlite:///")
    elif isinstance(db, str) and "://" in db:
        raise ValueError(f"results database {db!r}: only SQLite files (a path or sqlite:///path) are supported")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    seed_axis = _axis(seeds, "seeds", minimum=0) if seeds is not None else (int(seed),)
    train_axis: tuple[int | None, ...] = _axis(n_train, "n_train", minimum=1) if n_train is not None else (None,)
    resolved = [task if isinstance(task, Task) else _task(task) for task in tasks]  # every name checked first
    largest = max((n for n in train_axis if n is not None), default=None)
    req = SampleRequest(size, n_scale, n_test, Path(cache) if cache is not None else None, workers, None, largest)
    for task in resolved:  # bad sizes are refused before anything runs
        for n in train_axis:
            task_hash(task, size, n_scale, n, n_test)
    workdir.mkdir(parents=True, exist_ok=True)
    db = Path(db) if db is not None else workdir / "results.sqlite"
    say = step or (lambda msg: None)
    run_id = uuid.uuid4().hex[:12]
    rows: list[dict[str, Any]] = []
    con = connect(db)
    try:
        for task in resolved:
            for method in methods:
                cell_params = {**task.detectors.get(method, {}).get(size, {}), **(params or {}).get(method, {})}
                for n in train_axis:
                    cell_req = replace(req, n_train=n)
                    for s in seed_axis:
                        cell = _cell_rows(con, task, method, cell_params, _base(run_id, task, method, cell_params,
                                                                                  cell_req, s),
                                          cell_req, s, workdir, say)
                        rows.extend(cell)
                        for row in cell:
                            say(f"{task.name} / {method} / n_train {row['n_train']} / seed {s} / "
                                f"{row.get('signal') or '-'}: {row['status']}"
                                + (f", AUC {row['auc']:.3f}" if row.get("auc") is not None else ""))
                        write_tables(rows, workdir)
    finally:
        con.close()
    if len(train_axis) > 1:
        write_learning_curves(leaderboard(rows), workdir, size, seed_axis)
    return rows


def _axis(values: Sequence[int], name: str, minimum: int) -> tuple[int, ...]:
    """A benchmark axis: distinct whole numbers >= minimum, in the given order."""
    if isinstance(values, str | int):
        raise ValueError(f"{name}: give a list of whole numbers, got {values!r}")
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or int(v) < minimum:
            raise ValueError(f"{name}: every value must be a whole number >= {minimum}, got {v!r}")
        if int(v) not in out:
            out.append(int(v))
    if not out:
        raise ValueError(f"{name}: give at least one value")
    return tuple(out)


def _base(run_id: str, task: Task, method: str, cell_params: dict[str, Any], req: SampleRequest,
          seed: int) -> dict[str, Any]:
    """The key and provenance columns every row of a cell carries."""
    return {"run_id": run_id, "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": _machine(),
            "jetad_version": __version__, "task": task.name,
            "task_hash": task_hash(task, req.size, req.n_scale, req.n_train, req.n_test), "size": req.size,
            "method": method, "params_json": _params_json(cell_params), "seed": seed,
            "n_train": sum(train_counts(task, req.size, req.n_train, req.n_scale))}


def _task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def _cell_rows(con: sqlite3.Connection, task: Task, method: str, cell_params: dict[str, Any],
               base: dict[str, Any], req: SampleRequest, seed: int, workdir: Path, say: Say) -> list[dict[str, Any]]:
    """Rows of one cell: not applicable, reused, freshly run, or failed (each stored except reuses)."""
    if method not in task.detectors:
        reason = task.not_applicable.get(method)
        if reason is None:
            reason = (f"unknown detector (known: {', '.join(sorted(REGISTRY))})" if method not in REGISTRY
                      else f"not configured for task {task.name}")
        row = {**base, "status": f"not applicable: {reason}"}
        insert(con, row)
        return [row]
    n_signals = len(task.signals_for(req.size))
    previous = ok_rows(con, base)
    if len(previous) == n_signals:
        say(f"{task.name} / {method}: reused from run {previous[0]['run_id']}")
        return [{**r, "status": "reused"} for r in previous]
    try:
        results = _run_cell(task, method, cell_params, req, seed, workdir, say)
    except Exception as err:  # a benchmark row records the failure; the run goes on with the next cell
        status = f"failed: {type(err).__name__}: {err}"
        say(f"{task.name} / {method}: {status}\n{traceback.format_exc(limit=3)}")
        row = {**base, "status": status}
        insert(con, row)
        return [row]
    out = []
    for result in results:
        row = {**base, **result, "status": "ok"}
        insert(con, row)
        out.append(row)
    return out
