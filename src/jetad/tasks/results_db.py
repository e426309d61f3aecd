"""The SQLite results database of the benchmark: one row per (cell, signal), every attempt kept.

`connect` creates the table (or adds the columns a newer jetad knows to an older database), `insert` appends a
row, `ok_rows` finds a cell's latest successful rows (so a rerun reuses them), `query_results` reads rows back.
"""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "connect", "insert", "ok_rows", "query_results"]

#: Columns of the `results` table, in order.
COLUMNS = ("run_id", "created_at", "machine", "jetad_version", "task", "task_hash", "size", "method", "params_json",
           "seed", "status", "signal", "auc", "max_sic", "rejection_eps_s_0_3", "jsd_eps_b_0_1", "dcor_mass",
           "train_s", "infer_jets_per_s", "n_parameters", "n_train", "n_test", "onnx_ms_per_jet_b1",
           "onnx_jets_per_s_b1024", "auc_stat_err", "n_sig", "n_bkg", "observer")
REAL_COLUMNS = {"auc", "max_sic", "rejection_eps_s_0_3", "jsd_eps_b_0_1", "dcor_mass", "train_s", "infer_jets_per_s",
         "onnx_ms_per_jet_b1", "onnx_jets_per_s_b1024", "auc_stat_err"}
INT_COLUMNS = {"seed", "n_parameters", "n_train", "n_test", "n_sig", "n_bkg"}

def connect(db: str | Path) -> sqlite3.Connection:
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(db))
    con.row_factory = sqlite3.Row
    sql_type = {c: "REAL" if c in REAL_COLUMNS else "INTEGER" if c in INT_COLUMNS else "TEXT" for c in COLUMNS}
    cols = ", ".join(f"{c} {sql_type[c]}" for c in COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, {cols})")
    have = {r[1] for r in con.execute("PRAGMA table_info(results)")}
    for c in COLUMNS:  # a database from an older jetad gains the new columns
        if c not in have:
            con.execute(f"ALTER TABLE results ADD COLUMN {c} {sql_type[c]}")
    con.execute("CREATE INDEX IF NOT EXISTS results_cell ON results (task_hash, method, params_json, seed, status)")
    return con


# Databases of older jetad (before training sizes were an axis) gain the new columns (NULL in their rows); their
# task hashes were made without the test-first split, so their rows are read and listed but never reused.


def insert(con: sqlite3.Connection, row: dict[str, Any]) -> None:
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
    with closing(connect(db)) as con:
        return [dict(r) for r in con.execute(sql + " ORDER BY id", args)]


def ok_rows(con: sqlite3.Connection, key: dict[str, Any]) -> list[dict[str, Any]]:
    """The latest 'ok' rows of one cell, one per signal."""
    rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM results WHERE task_hash = ? AND method = ? AND "
                       "params_json = ? AND seed = ? AND n_train = ? AND status = 'ok' ORDER BY id",
                       (key["task_hash"], key["method"], key["params_json"], key["seed"], key["n_train"])).fetchall()
    return list({r["signal"]: dict(r) for r in rows}.values())
