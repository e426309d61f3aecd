"""Run named tasks x detectors into a resumable SQLite results database, a CSV and a Markdown leaderboard.

Each (task, method) cell generates or reuses its samples (cached under ``WORKDIR/samples/<hash>.h5``), trains on
the background train split, scores the background test split and each signal, and evaluates them (metrics.json
and plots under ``WORKDIR/<task>/<method>/``, so ``write_report(WORKDIR)`` works). A cell with an "ok" result
for the same task definition, parameters and seed is reused, not rerun; failures are stored, never skipped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import platform
import sqlite3
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from jetad import __version__
from jetad.data.sample import JetSample, concatenate
from jetad.data.scores import ScoreTable
from jetad.data.store import read_sample
from jetad.detectors import REGISTRY, make_detector
from jetad.detectors.scoring import score_sample
from jetad.evaluate.report_files import evaluate_score_table
from jetad.generate.processes import default_config
from jetad.generate.production import produce
from jetad.tasks.registry import SIZES, TASKS, SampleSpec, Task, sample_counts, task_hash

__all__ = ["COLUMNS", "query_results", "run_benchmark"]

#: Columns of the `results` table, in order.
COLUMNS = ("run_id", "created_at", "machine", "jetad_version", "task", "task_hash", "size", "method", "params_json",
           "seed", "status", "signal", "auc", "max_sic", "rejection_eps_s_0_3", "jsd_eps_b_0_1", "dcor_mass",
           "train_s", "infer_jets_per_s", "n_parameters", "n_train", "n_test", "onnx_ms_per_jet_b1",
           "onnx_jets_per_s_b1024")
_REAL = {"auc", "max_sic", "rejection_eps_s_0_3", "jsd_eps_b_0_1", "dcor_mass", "train_s", "infer_jets_per_s",
         "onnx_ms_per_jet_b1", "onnx_jets_per_s_b1024"}
_INT = {"seed", "n_parameters", "n_train", "n_test"}
#: evaluate_scores key -> results column.
_METRIC_COLUMNS = {"auc": "auc", "max_sic": "max_sic", "rejection_at_eps_s_0.3": "rejection_eps_s_0_3",
                   "jsd_at_eps_b_0.1": "jsd_eps_b_0_1", "dcor_score_mass": "dcor_mass"}

Say = Callable[[str], None]


# ------------------------------------------------------------------------------------------------- database


def _connect(db: str | Path) -> sqlite3.Connection:
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(db))
    con.row_factory = sqlite3.Row
    sql_type = {c: "REAL" if c in _REAL else "INTEGER" if c in _INT else "TEXT" for c in COLUMNS}
    cols = ", ".join(f"{c} {sql_type[c]}" for c in COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, {cols})")
    have = {r[1] for r in con.execute("PRAGMA table_info(results)")}
    for c in COLUMNS:  # a database from an older jetad gains the new columns
        if c not in have:
            con.execute(f"ALTER TABLE results ADD COLUMN {c} {sql_type[c]}")
    con.execute("CREATE INDEX IF NOT EXISTS results_cell ON results (task_hash, method, params_json, seed, status)")
    return con


def _insert(con: sqlite3.Connection, row: dict[str, Any]) -> None:
    values = [row.get(c) for c in COLUMNS]
    values = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    con.execute(f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", values)
    con.commit()


def query_results(db: str | Path, task: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
    """Rows of the results database (oldest first), optionally for one task and/or method."""
    if not Path(db).exists():
        raise FileNotFoundError(f"{db}: no results database; run 'jetad benchmark' first")
    where, args = [], []
    for col, value in (("task", task), ("method", method)):
        if value is not None:
            where.append(f"{col} = ?")
            args.append(value)
    sql = f"SELECT {', '.join(COLUMNS)} FROM results" + (f" WHERE {' AND '.join(where)}" if where else "")
    with closing(_connect(db)) as con:
        return [dict(r) for r in con.execute(sql + " ORDER BY id", args)]


def _ok_rows(con: sqlite3.Connection, key: dict[str, Any]) -> list[dict[str, Any]]:
    """The latest 'ok' rows of one cell, one per signal."""
    rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM results WHERE task_hash = ? AND method = ? AND "
                       "params_json = ? AND seed = ? AND status = 'ok' ORDER BY id",
                       (key["task_hash"], key["method"], key["params_json"], key["seed"])).fetchall()
    return list({r["signal"]: dict(r) for r in rows}.values())


# -------------------------------------------------------------------------------------------------- samples


#: Rows per shard of benchmark samples: fixed, so a sample's jets do not depend on the number of workers.
SHARD_SIZE = 2000


def _sample_path(spec: SampleSpec, size: str, n_scale: float, workdir: Path) -> tuple[Path, int, int]:
    """Cache path of a sample (`<hash>.h5`, or a shard directory `<hash>` above SHARD_SIZE jets), (n_train, n_test)."""
    n_train, n_test = sample_counts(spec, size, n_scale)
    cfg = default_config(spec.process, **spec.overrides)
    payload = json.dumps({"cfg": asdict(cfg), "n": n_train + n_test, "seed": spec.seed, "shard_size": SHARD_SIZE},
                         sort_keys=True, default=str)
    name = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return workdir / "samples" / (name if n_train + n_test > SHARD_SIZE else f"{name}.h5"), n_train, n_test


def _load(spec: SampleSpec, size: str, n_scale: float, workdir: Path, say: Say,
          workers: int = 1) -> tuple[JetSample, JetSample]:
    """(train, test) splits of a sample, generated once (shards on `workers` processes) and then read from the cache."""
    path, n_train, n_test = _sample_path(spec, size, n_scale, workdir)
    if not path.exists():
        say(f"generate {spec.name}: {n_train + n_test} {spec.process} jets, seed {spec.seed} -> {path}")
    produce(default_config(spec.process, **spec.overrides), n_train + n_test, spec.seed, path,
            shard_size=SHARD_SIZE, workers=workers)
    sample = read_sample(path)
    if len(sample) < n_train + n_test:
        raise RuntimeError(f"{path}: {len(sample)} jets, expected {n_train + n_test}; delete it to regenerate")
    return sample.subset(slice(0, n_train)), sample.subset(slice(n_train, n_train + n_test))


# ----------------------------------------------------------------------------------------------- one cell


def _machine() -> str:
    return f"{platform.node()} ({os.cpu_count()} CPUs)"


def _params_json(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _run_cell(task: Task, method: str, params: dict[str, Any], size: str, n_scale: float, seed: int,
              workdir: Path, say: Say, workers: int = 1) -> list[dict[str, Any]]:
    """Train, score and evaluate one (task, method); one result dict per signal."""
    backgrounds = [_load(s, size, n_scale, workdir, say, workers) for s in task.background]
    signals = {s.name: _load(s, size, n_scale, workdir, say, workers)[1] for s in task.signals_for(size)}
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
                                        attrs={"detector": method, "params": det.get_params(), "task": task.name})
        out = workdir / task.name / method if len(signals) == 1 else workdir / task.name / method / name
        observer = task.observer if task.observer in table.observers else "mass"
        ev = evaluate_score_table(table, name, "background", out, observer=observer,
                                  path=f"{task.name}/{method}/{name}")
        row: dict[str, Any] = {col: ev["metrics"].get(key) for key, col in _METRIC_COLUMNS.items()}
        row |= {"signal": name, "train_s": train_s, "infer_jets_per_s": jets_per_s,
                "n_parameters": int(det.n_parameters()), "n_train": len(train), "n_test": len(bkg_test) + len(sample)}
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
) -> list[dict[str, Any]]:
    """Run every (task, method) cell; return one row per cell and signal (status 'ok', 'reused', 'failed: ...'
    or 'not applicable: ...') and write WORKDIR/results.csv and results.md after every cell.

    Arguments:
        db: SQLite file or ``sqlite:///path`` URL (default WORKDIR/results.sqlite); 'ok' cells with the same task
            hash, parameters and seed are reused from it, so an interrupted run resumes. A shared file on a
            network disk serves several machines (each row records its machine).
        workers: Dask LocalCluster processes for sample generation (shards are fixed, so results do not change).
        params: method -> parameter overrides merged over the task's settings for `size`.
        n_scale: multiplies every sample size (tests use ~0.1 of 'small').
    """
    workdir = Path(workdir)
    if isinstance(db, str) and db.startswith("sqlite:///"):
        db = db.removeprefix("sqlite:///")
    elif isinstance(db, str) and "://" in db:
        raise ValueError(f"results database {db!r}: only SQLite files (a path or sqlite:///path) are supported")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    resolved = [task if isinstance(task, Task) else _task(task) for task in tasks]  # every name checked first
    workdir.mkdir(parents=True, exist_ok=True)
    db = Path(db) if db is not None else workdir / "results.sqlite"
    say = step or (lambda msg: None)
    run_id = uuid.uuid4().hex[:12]
    rows: list[dict[str, Any]] = []
    con = _connect(db)
    try:
        for task in resolved:
            thash = task_hash(task, size, n_scale)
            for method in methods:
                cell_params = {**task.detectors.get(method, {}).get(size, {}), **(params or {}).get(method, {})}
                base = {"run_id": run_id, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                        "machine": _machine(), "jetad_version": __version__, "task": task.name, "task_hash": thash,
                        "size": size, "method": method, "params_json": _params_json(cell_params), "seed": seed}
                cell = _cell_rows(con, task, method, cell_params, base, size, n_scale, seed, workdir, say, workers)
                rows.extend(cell)
                for row in cell:
                    say(f"{task.name} / {method} / {row.get('signal') or '-'}: {row['status']}"
                        + (f", AUC {row['auc']:.3f}" if row.get("auc") is not None else ""))
                _write_tables(rows, workdir)
    finally:
        con.close()
    return rows


def _task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def _cell_rows(con: sqlite3.Connection, task: Task, method: str, cell_params: dict[str, Any],
               base: dict[str, Any], size: str, n_scale: float, seed: int, workdir: Path,
               say: Say, workers: int = 1) -> list[dict[str, Any]]:
    """Rows of one cell: not applicable, reused, freshly run, or failed (each stored except reuses)."""
    if method not in task.detectors:
        reason = task.not_applicable.get(method)
        if reason is None:
            reason = (f"unknown detector (known: {', '.join(sorted(REGISTRY))})" if method not in REGISTRY
                      else f"not configured for task {task.name}")
        row = {**base, "status": f"not applicable: {reason}"}
        _insert(con, row)
        return [row]
    n_signals = len(task.signals_for(size))
    previous = _ok_rows(con, base)
    if len(previous) == n_signals:
        say(f"{task.name} / {method}: reused from run {previous[0]['run_id']}")
        return [{**r, "status": "reused"} for r in previous]
    try:
        results = _run_cell(task, method, cell_params, size, n_scale, seed, workdir, say, workers)
    except Exception as err:  # a benchmark row records the failure; the run goes on with the next cell
        status = f"failed: {type(err).__name__}: {err}"
        say(f"{task.name} / {method}: {status}\n{traceback.format_exc(limit=3)}")
        row = {**base, "status": status}
        _insert(con, row)
        return [row]
    out = []
    for result in results:
        row = {**base, **result, "status": "ok"}
        _insert(con, row)
        out.append(row)
    return out


# ----------------------------------------------------------------------------------------------- tables


def _cell_text(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column in ("infer_jets_per_s", "onnx_jets_per_s_b1024"):
        return f"{value:,.0f}"
    if column == "train_s":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return str(value)


def _write_tables(rows: list[dict[str, Any]], workdir: Path) -> None:
    """results.csv (every column) and results.md (a leaderboard: by task and signal, best AUC first)."""
    with open(workdir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    shown = ("task", "signal", "method", "status", "auc", "max_sic", "rejection_eps_s_0_3", "jsd_eps_b_0_1",
             "dcor_mass", "train_s", "infer_jets_per_s", "onnx_ms_per_jet_b1", "onnx_jets_per_s_b1024",
             "n_parameters", "n_train", "n_test")

    def key(r: dict[str, Any]) -> tuple:
        auc = r.get("auc")
        return r["task"], r.get("signal") or "", -(auc if isinstance(auc, float) and math.isfinite(auc) else -1.0)

    lines = ["# jetad benchmark", "", f"size {rows[0]['size']}, seed {rows[0]['seed']}, "
             f"jetad {rows[0]['jetad_version']}, {rows[0]['machine']}", "",
             "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for r in sorted(rows, key=key):
        lines.append("| " + " | ".join(_cell_text(r.get(c), c).replace("|", "/") for c in shown) + " |")
    (workdir / "results.md").write_text("\n".join(lines) + "\n")
