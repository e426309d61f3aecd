"""The on-disk form of `JetSample`: HDF5 files with provenance, and sharded productions with a manifest.

Writing lives here: a write goes to ``name.h5.tmp`` and is renamed only when complete, so a file that exists
is a finished file. Reading (every layout, value and attribute checked) lives in `jetad.data.sample_reading`,
attribute encoding in `jetad.data.attributes`, the production manifest in `jetad.data.manifest`; this module
is also the one place to import all of them from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetad.data.attributes import base_attrs, encode_attr
from jetad.data.manifest import MANIFEST, SCHEMA_NAME, SCHEMA_VERSION, same_attr, write_manifest
from jetad.data.sample import JetSample, SchemaError
from jetad.data.sample_reading import (
    ARRAYS,
    GROUPS,
    SampleInfo,
    iter_samples,
    open_sample_file,
    read_sample,
    sample_info,
)

__all__ = [
    "MANIFEST",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SampleInfo",
    "SampleWriter",
    "add_columns",
    "iter_samples",
    "read_sample",
    "same_attr",
    "sample_info",
    "write_manifest",
    "write_sample",
]

#: Rows per HDF5 chunk (fewer for wide constituent arrays, to keep a chunk near 4 MB).
_CHUNK_ROWS = 1024


class SampleWriter:
    """Append JetSample chunks to ``path.tmp``; `close()` renames it to ``path`` (only on success).

    Use as a context manager: an exception inside the block removes the temporary file, so an interrupted
    write never leaves a file that looks complete.
    """

    def __init__(self, path: str | Path, attrs: dict[str, Any] | None = None, compression: str | None = "lzf"):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.tmp, "w", libver=("v110", "latest"))  # checksummed metadata: damage is an error
        self._attrs = {**(attrs or {}), **base_attrs()}
        self._compression = compression
        self._n = 0
        self._p: int | None = None
        self._layout: tuple[tuple[str, ...], tuple[str, ...]] | None = None

    def _create(self, sample: JetSample) -> None:
        self._p = sample.n_constituents
        self._layout = (tuple(sample.features), tuple(sample.event))
        for name in ARRAYS:
            self._dataset(name, getattr(sample, name))
        for group in GROUPS:
            self._file.require_group(group)
            for key, arr in getattr(sample, group).items():
                self._dataset(f"{group}/{key}", np.asarray(arr))

    def _dataset(self, name: str, arr: np.ndarray) -> None:
        _require_numbers(arr, name, self.path)
        tail = arr.shape[1:]
        rows = max(1, min(_CHUNK_ROWS, 4_000_000 // max(1, int(np.prod(tail)) * 4)))
        # Zero-length trailing axes (a constituent-free, features-only sample) need a resizable axis to chunk.
        self._file.create_dataset(
            name, shape=(0, *tail), maxshape=(None, *(d or None for d in tail)), dtype=arr.dtype,
            chunks=(rows, *(d or 1 for d in tail)), compression=self._compression,
        )

    def append(self, sample: JetSample) -> None:
        """Write the jets of `sample` after those already written (same P and same columns)."""
        if len(sample) == 0:
            return
        if self._layout is None:
            self._create(sample)
        if sample.n_constituents != self._p:
            raise SchemaError(f"{self.path}: chunk has P={sample.n_constituents}, file has P={self._p}")
        if (tuple(sample.features), tuple(sample.event)) != self._layout:
            raise SchemaError(f"{self.path}: chunk columns differ from the first chunk's")
        n0, n1 = self._n, self._n + len(sample)
        for name in ARRAYS:
            self._write(name, getattr(sample, name), n0, n1)
        for group in GROUPS:
            for key, arr in getattr(sample, group).items():
                self._write(f"{group}/{key}", np.asarray(arr), n0, n1)
        self._n = n1

    def _write(self, name: str, arr: np.ndarray, n0: int, n1: int) -> None:
        ds = self._file[name]
        ds.resize(n1, axis=0)
        ds[n0:n1] = arr

    def update_attrs(self, attrs: dict[str, Any]) -> None:
        """Add provenance known only after the data (counters, efficiencies); written at `close`."""
        self._attrs.update(attrs)

    def close(self) -> Path:
        """Finish the file: attributes, flush, rename ``path.tmp`` -> ``path``."""
        if self._layout is None:
            self.abort()
            raise SchemaError(f"{self.path}: nothing was written (0 jets); refusing to create an empty sample")
        try:
            self._attrs["n_jets"] = self._n
            for key, value in self._attrs.items():
                self._file.attrs[key] = encode_attr(value)
            self._file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop the temporary file."""
        try:
            self._file.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _require_numbers(arr: np.ndarray, name: str, path: Path) -> None:
    """Readers accept numeric datasets only, so writers refuse anything else before it reaches a file."""
    if arr.dtype.kind not in "biuf":
        raise SchemaError(f"{path}: {name} has dtype {arr.dtype}; jetad files hold numbers only (bool, int, float)")


def write_sample(path: str | Path, sample: JetSample, attrs: dict[str, Any] | None = None) -> Path:
    """Write one sample atomically (temp name, then rename); returns the path."""
    with SampleWriter(path, {**sample.attrs, **(attrs or {})}) as writer:
        writer.append(sample)
    return Path(path)


def add_columns(path: str | Path, group: str, columns: dict[str, np.ndarray], attrs: dict | None = None) -> None:
    """Add or replace columns of `group` ('features' or 'event') in a single jetad file, atomically.

    The file is copied to ``path.tmp`` with the new columns (HDF5 copies the other datasets chunk by chunk,
    without decompressing) and renamed over `path` only when complete, so an interruption leaves the file
    as it was and no ``.tmp`` behind.
    """
    path = Path(path)
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}")
    with open_sample_file(path) as h5:
        n = h5["jets"].shape[0]
    columns = {key: np.asarray(arr) for key, arr in columns.items()}
    for key, arr in columns.items():
        _require_numbers(arr, f"{group}/{key}", path)
        if arr.ndim == 0 or len(arr) != n:
            raise SchemaError(f"{path}: column {group}/{key} has {len(arr) if arr.ndim else 0} rows, file has {n} jets")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(path, "r") as src, h5py.File(tmp, "w", libver=("v110", "latest")) as dst:
            for name in src:
                if name != group:
                    src.copy(src[name], dst, name=name)
            target = dst.create_group(group)
            for key in src.get(group, {}):
                if key not in columns:
                    src.copy(src[group][key], target, name=key)
            for key, arr in columns.items():
                target.create_dataset(key, data=arr, compression="lzf")
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for key, value in (attrs or {}).items():
                dst.attrs[key] = encode_attr(value)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
