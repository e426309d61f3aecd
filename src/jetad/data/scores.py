"""Score files: one anomaly score per jet, with labels, weights, which input file it came from, and observers.

Observers (jet mass, soft-drop mass, pT, mjj) are not used by the detector but are carried with the scores so
that mass sculpting can always be checked (weaver-core's "observers").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetad.data.attributes import base_attrs, encode_attr, read_attrs
from jetad.data.sample import JetSample, SchemaError

__all__ = ["SCORES_SCHEMA", "ScoreTable", "check_table", "observers_of", "read_scores", "write_scores"]

SCORES_SCHEMA = "jetad.Scores"
OBSERVER_FEATURES = ("sd_mass", "tau21", "tau32")
OBSERVER_EVENT = ("mjj", "met")
#: Per-jet datasets of a score file and the dtype kinds each may have ('b' bool, 'i'/'u' integers, 'f' floats).
COLUMNS = {"score": "fiu", "label": "biu", "weight": "fiu", "source": "iu"}
#: What h5py raises on damaged files (SchemaError, a ValueError, is re-raised before these are caught).
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)
_REDO = "rewrite it with 'jetad score MODEL FILE... -o FILE'"


def observers_of(sample: JetSample) -> dict[str, np.ndarray]:
    """The observer columns of a sample: jet pT and mass, plus soft-drop mass/taus and mjj/MET when present."""
    obs = {"pt": sample.jets[:, 0], "mass": sample.jets[:, 3]}
    obs |= {k: sample.features[k] for k in OBSERVER_FEATURES if k in sample.features}
    obs |= {k: np.asarray(sample.event[k]) for k in OBSERVER_EVENT if k in sample.event}
    return {k: np.asarray(v, dtype=np.float32) for k, v in obs.items()}


@dataclass
class ScoreTable:
    """Scores of jets from one or more files.

    Arguments:
        score: (N,) anomaly scores, higher = more anomalous.
        label, weight: per jet, from the input files.
        source: (N,) index into `sources`, the input file of each jet.
        observers: named (N,) columns carried for sculpting checks.
    """

    score: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    source: np.ndarray
    sources: list[str]
    observers: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_samples(cls, scores: Sequence[np.ndarray], samples: Sequence[JetSample], sources: Sequence[str],
                     attrs: dict[str, Any] | None = None) -> ScoreTable:
        """The table of `scores[i]` for the jets of `samples[i]`, which came from the input named `sources[i]`
        (parts with the same name share one source index): labels, weights and the observers all parts have."""
        if not len(scores) == len(samples) == len(sources) or not len(scores):
            raise ValueError(f"from_samples needs one score array and one source name per sample, got "
                             f"{len(scores)} score arrays, {len(samples)} samples, {len(sources)} names")
        for s, jets, name in zip(scores, samples, sources, strict=True):
            if len(s) != len(jets):
                raise ValueError(f"{name}: {len(s)} scores for {len(jets)} jets")
        parts = [cls(score=np.asarray(s), label=jets.label, weight=jets.weight, source=np.zeros(len(jets), np.int16),
                     sources=[name], observers=observers_of(jets))
                 for s, jets, name in zip(scores, samples, sources, strict=True)]
        return cls.concatenate(parts, attrs)

    @classmethod
    def concatenate(cls, tables: Sequence[ScoreTable], attrs: dict[str, Any] | None = None) -> ScoreTable:
        """One table of the rows of `tables` in order; sources merged by name, observers those all tables have."""
        if not tables:
            raise ValueError("nothing to concatenate: no score tables")
        names = list(dict.fromkeys(name for t in tables for name in t.sources))
        source = [np.asarray([names.index(n) for n in t.sources], np.int16)[t.source] for t in tables]
        common = [k for k in tables[0].observers if all(k in t.observers for t in tables)]
        return cls(score=np.concatenate([t.score for t in tables]), label=np.concatenate([t.label for t in tables]),
                   weight=np.concatenate([t.weight for t in tables]), source=np.concatenate(source), sources=names,
                   observers={k: np.concatenate([t.observers[k] for t in tables]) for k in common},
                   attrs=dict(attrs if attrs is not None else tables[0].attrs))

    def select(self, which: str | int, path: str | Path = "scores") -> np.ndarray:
        """Boolean mask of jets from the source file named `which` (path, name or stem) or with label `which`."""
        if isinstance(which, int) or (isinstance(which, str) and which.lstrip("-").isdigit()):
            mask = self.label == int(which)
        else:
            names = [Path(s) for s in self.sources]
            hits = [i for i, s in enumerate(names) if which in (str(s), s.name, s.stem)]
            if not hits:
                raise SchemaError(f"{path}: no source {which!r}; sources are {self.sources} (or give a label)")
            mask = np.isin(self.source, hits)
        if not mask.any():
            raise SchemaError(f"{path}: no jets selected by {which!r}")
        return mask


def check_table(table: ScoreTable, where: str | Path = "scores") -> ScoreTable:
    """`table` with its columns checked: 1-D, numeric, one entry per jet, finite scores/weights/observers,
    labels integers, sources a list of names that `source` indexes. Raises SchemaError naming `where`."""
    n = None
    for name, kinds in (*COLUMNS.items(), *((f"observers/{k}", "fiu") for k in table.observers)):
        arr = table.observers[name[10:]] if name.startswith("observers/") else getattr(table, name)
        arr = np.asarray(arr)
        if arr.ndim != 1 or arr.dtype.kind not in kinds:
            raise SchemaError(f"{where}: {name} has shape {arr.shape} and dtype {arr.dtype}; expected one "
                              f"{'integer' if 'f' not in kinds else 'number'} per jet; {_REDO}")
        n = len(arr) if n is None else n
        if len(arr) != n:
            raise SchemaError(f"{where}: {name} has {len(arr)} entries but score has {n}; the file is damaged; {_REDO}")
        if name != "label" and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise SchemaError(f"{where}: {int((~np.isfinite(arr)).sum())} {name} values are NaN/inf; {_REDO}")
    if not n:
        raise SchemaError(f"{where}: no jets (an empty score file); {_REDO}")
    sources = table.sources
    if not isinstance(sources, list | tuple) or not sources or not all(isinstance(s, str) for s in sources):
        raise SchemaError(f"{where}: attribute 'sources' must be a non-empty list of file names, got {sources!r}; "
                          f"{_REDO}")
    source = np.asarray(table.source)
    if source.min() < 0 or source.max() >= len(sources):
        raise SchemaError(f"{where}: source indices span [{source.min()}, {source.max()}] but there are "
                          f"{len(sources)} sources; {_REDO}")
    return table


def write_scores(path: str | Path, table: ScoreTable) -> Path:
    """Write a score file atomically (``path.tmp``, renamed when complete; removed if anything fails).

    The file uses the HDF5 1.10 format, whose metadata carry checksums, and fixed-length string attributes (no
    global heap): a damaged file is then an error when read, where single flipped bytes in the default format
    can make libhdf5 hang (found by tests/test_fuzz_cli.py).
    """
    path = Path(path)
    check_table(table, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(tmp, "w", libver=("v110", "latest")) as f:
            for name in COLUMNS:
                f.create_dataset(name, data=np.asarray(getattr(table, name)))
            g = f.create_group("observers")
            for k, v in table.observers.items():
                g.create_dataset(k, data=np.asarray(v))
            attrs = {**table.attrs, **base_attrs(), "schema": SCORES_SCHEMA, "sources": list(table.sources)}
            for k, v in attrs.items():
                value = encode_attr(v)
                f.attrs[k] = np.bytes_(value.encode()) if isinstance(value, str) else value
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_scores(path: str | Path) -> ScoreTable:
    """Read and check a score file (`check_table`); anything else - another kind of file, a missing or damaged
    column, lengths that disagree, NaN scores - is a SchemaError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such score file")
    if path.is_dir():
        raise SchemaError(f"{path}: is a directory, not a score file (from 'jetad score' or 'jetad search')")
    try:
        f = h5py.File(path, "r")
    except _H5_ERRORS as err:
        raise SchemaError(f"{path}: cannot be read as HDF5 (truncated or not a score file): {err}") from err
    with f:
        attrs = read_attrs(f, path)
        if attrs.get("schema") != SCORES_SCHEMA:
            raise SchemaError(f"{path}: not a jetad score file (make one with 'jetad score MODEL FILE... -o {path}')")
        try:
            columns = {name: _dataset(f, name, path) for name in COLUMNS}
            group = f.get("observers")
            if group is not None and not isinstance(group, h5py.Group):
                raise SchemaError(f"{path}: 'observers' is not a group; {_REDO}")
            observers = {k: _dataset(group, k, path, "observers/") for k in (group or {})}
        except SchemaError:
            raise
        except _H5_ERRORS as err:
            raise SchemaError(f"{path}: cannot be read (truncated or damaged?): {type(err).__name__}: {err}") from err
    if "sources" not in attrs:
        raise SchemaError(f"{path}: attribute 'sources' missing; {_REDO}")
    table = ScoreTable(**columns, sources=attrs.pop("sources"), observers=observers, attrs=attrs)
    return check_table(table, path)


def _dataset(group: h5py.Group, name: str, path: Path, prefix: str = "") -> np.ndarray:
    if name not in group:
        raise SchemaError(f"{path}: dataset '{prefix}{name}' missing; {_REDO}")
    ds = group[name]
    if not isinstance(ds, h5py.Dataset):
        raise SchemaError(f"{path}: '{prefix}{name}' is not a dataset; {_REDO}")
    return np.asarray(ds[()])
