"""Checks every public-format reader shares: the source file exists and the values in it are physical.

A reader that accepts eta = 50 or a negative pT turns a corrupt or misread file into plausible-looking jets;
these checks make such a file a `SchemaError` naming the file, the column, how many rows and the first one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from jetad.data.sample import SchemaError

__all__ = [
    "HDF5_SIGNATURE",
    "MAX_ABS_ETA",
    "MAX_ABS_PHI",
    "MAX_ENERGY_GEV",
    "ROOT_SIGNATURE",
    "check_physical",
    "check_source_file",
]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ROOT_SIGNATURE = b"root"
#: |eta| beyond this is no detector's acceptance: a corrupt value or a column read as the wrong quantity.
MAX_ABS_ETA = 10.0
#: No collider particle carries more than the centre-of-mass energy; 100 TeV is that of the FCC-hh [GeV].
MAX_ENERGY_GEV = 1e5
#: |phi| beyond 2 pi (plus rounding) is not an azimuth in either the [-pi, pi] or the [0, 2 pi] convention.
MAX_ABS_PHI = 2 * np.pi + 1e-3


def check_source_file(path: str | Path) -> Path:
    """The path, if it names an existing, non-empty file; else FileNotFoundError / SchemaError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise SchemaError(f"{path}: empty file (0 bytes)")
    return path


def _signature(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(8)


def check_physical(
    path: Path, what: str, values: np.ndarray, bad: np.ndarray, rows: np.ndarray, rule: str,
    column: Callable[[int], str] | None = None,
) -> None:
    """SchemaError when any `bad` entry is set, naming the file, the quantity, the number of rows and the first.

    Arguments:
        values, bad: same-shape arrays of the quantity and of the entries that break `rule`.
        rows: the source row of each entry (broadcastable to `values`).
        column: maps the flat index of the first bad entry to the source column's name, when it has one.
    """
    if not bad.any():
        return
    flat_rows = np.broadcast_to(rows, bad.shape)[bad]
    first = int(np.flatnonzero(bad.ravel())[0])
    where = f", column '{column(first)}'" if column is not None else ""
    raise SchemaError(
        f"{path}: {what} breaks {rule} in {len(np.unique(flat_rows))} rows (first: row {int(flat_rows[0])}{where}, "
        f"value {values.ravel()[first]:g}); physically impossible: the file is corrupt or not in this format's layout"
    )
