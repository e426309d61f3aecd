"""Reading jetad sample files and shard directories, every layout, value and attribute checked.

A shard directory reads only when its manifest is marked complete and every shard carries the manifest's
production hash, seed and row count. Readers check the layout (datasets, dtypes, shapes), the values (NaN/inf,
labels, constituents) and the attributes, and fail with a `SchemaError` naming the file and the problem.
Reads are chunked (`iter_samples`) so a million-jet file never has to sit in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetad.data.attributes import H5_ERRORS, decode_attr, read_attrs
from jetad.data.manifest import (
    MANIFEST,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    check_shards,
    read_manifest,
    rerun_hint,
    same_attr,
)
from jetad.data.sample import JetSample, SchemaError, concatenate

__all__ = ["ARRAYS", "GROUPS", "LAYOUT", "SampleInfo", "iter_samples", "open_sample_file", "read_sample",
           "sample_info"]

#: The per-jet datasets and the column groups of a sample file.
ARRAYS = ("constituents", "mask", "jets", "label", "weight")
GROUPS = ("features", "event")
#: Shape and dtype kinds of each schema dataset ('b' bool, 'i'/'u' integers, 'f' floats).
LAYOUT = {"constituents": (3, "fiu"), "mask": (2, "biu"), "jets": (2, "fiu"), "label": (1, "iu"), "weight": (1, "fiu")}



class SampleInfo:
    """What a file or shard directory holds, read without loading arrays.

    A shard directory is read only when its manifest marks the production complete and every shard carries
    the manifest's production hash, seed and row count: a mixed or unfinished directory is a SchemaError.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest = read_manifest(self.path) if self.path.is_dir() else None
        if manifest is None:
            self.files = [self.path]
        else:
            self.files = [self.path / s["file"] for s in manifest["shards"]]
            if not manifest.get("complete", True):  # manifests before the flag were written only at the end
                raise _unfinished(self.path, manifest)
        if not self.files:
            raise SchemaError(f"{self.path}: manifest lists no shards")
        self.counts = []
        shard_attrs = []
        for f in self.files:
            if manifest is not None and not f.exists():
                raise FileNotFoundError(f"{f}: listed in {self.path / MANIFEST} but missing; "
                                        f"{rerun_hint(self.path, manifest['attrs'])} to remake it")
            with open_sample_file(f) as h5:
                self.counts.append(int(h5["jets"].shape[0]))
                shard_attrs.append(read_attrs(h5, f))
                if f == self.files[0]:
                    self.attrs = shard_attrs[0]
                    self.n_constituents = int(h5["constituents"].shape[1])
                    self.features = sorted(h5["features"].keys()) if "features" in h5 else []
                    self.event = sorted(h5["event"].keys()) if "event" in h5 else []
                    layout = _columns(h5)
                else:
                    clash = {k: (v, layout[k]) for k, v in _columns(h5).items() if k in layout and v != layout[k]}
                    if clash:
                        raise SchemaError(
                            f"{self.path}: shard {f.name} and {self.files[0].name} disagree on the per-row shape or "
                            f"dtype of {clash}; the directory mixes productions: regenerate it"
                        )
        if manifest is not None:
            check_shards(self.path, manifest, shard_attrs, self.counts)
        self.n_jets = int(sum(self.counts))

    def __repr__(self) -> str:
        return f"SampleInfo({self.path}, n_jets={self.n_jets}, P={self.n_constituents}, shards={len(self.files)})"


def sample_info(path: str | Path) -> SampleInfo:
    """Counts, attributes and column names of a jetad file or shard directory."""
    return SampleInfo(path)


def _unfinished(directory: Path, manifest: dict[str, Any]) -> SchemaError:
    """The error for a production whose manifest is not marked complete, naming the shards still to make."""
    tag = manifest["attrs"].get("production_hash")
    pending = []
    for shard in manifest["shards"]:
        try:
            with open_sample_file(directory / shard["file"]) as h5:
                done = same_attr(read_attrs(h5, directory / shard["file"]).get("production_hash"), tag)
        except (SchemaError, FileNotFoundError):
            done = False
        if not done:
            pending.append(shard["file"])
    what = f"shards {', '.join(pending)} are not yet made by it" if pending else "every shard exists but it stopped " \
        "before marking the production finished"
    return SchemaError(f"{directory}: unfinished production ({MANIFEST} is not marked complete; {what}); "
                       f"{rerun_hint(directory, manifest['attrs'])} to finish it")


def open_sample_file(path: Path) -> h5py.File:
    """Open a jetad file read-only after checking its schema attributes and dataset layout."""
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp")
        hint = " (an unfinished write exists as .tmp: the job was interrupted)" if tmp.exists() else ""
        raise FileNotFoundError(f"{path}: no such file{hint}")
    if path.is_dir():
        raise SchemaError(f"{path}: a directory, expected a jetad .h5 file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise SchemaError(f"{path}: cannot be read as HDF5 (truncated or not an HDF5 file): {err}") from err
    try:
        _check_file(h5, path)
    except SchemaError:
        h5.close()
        raise
    except H5_ERRORS as err:
        h5.close()
        raise SchemaError(f"{path}: cannot be read as a jetad file (truncated or corrupt?): {err}") from err
    return h5


def _check_file(h5: h5py.File, path: Path) -> None:
    """Schema name and version, and every dataset present with the schema's dimensions, dtype and row count."""
    schema = decode_attr(h5.attrs.get("schema", ""), "schema", path)
    if schema != SCHEMA_NAME:
        raise SchemaError(
            f"{path}: not a jetad JetSample file (schema attribute {schema!r}); "
            "public formats are converted with 'jetad convert'"
        )
    version = decode_attr(h5.attrs.get("schema_version", -1), "schema_version", path)
    if not isinstance(version, int) or version != SCHEMA_VERSION:
        raise SchemaError(f"{path}: schema version {version!r}, this jetad reads version {SCHEMA_VERSION}")
    for name, (ndim, kinds) in LAYOUT.items():
        ds = h5.get(name)
        if ds is None:
            raise SchemaError(f"{path}: dataset '{name}' missing")
        _check_dataset(ds, name, path, kinds, ndim)
    n = h5["jets"].shape[0]
    shapes = {name: h5[name].shape for name in ARRAYS}
    if any(shape[0] != n for shape in shapes.values()):
        raise SchemaError(f"{path}: datasets disagree on the number of jets: {shapes}")
    if shapes["constituents"][2] != 4 or shapes["jets"][1] != 4 or shapes["mask"] != shapes["constituents"][:2]:
        raise SchemaError(f"{path}: constituents {shapes['constituents']}, mask {shapes['mask']} and jets "
                          f"{shapes['jets']} must be (N, P, 4), (N, P) and (N, 4)")
    for group in GROUPS:
        if group not in h5:
            continue
        if not isinstance(h5[group], h5py.Group):
            raise SchemaError(f"{path}: '{group}' is not a group of columns")
        for key, ds in h5[group].items():
            _check_dataset(ds, f"{group}/{key}", path, "biuf", 1 if group == "features" else None)
            if ds.shape[0] != n:
                raise SchemaError(f"{path}: {group}/{key} has {ds.shape[0]} rows but jets has {n}")


def _columns(h5: h5py.File) -> dict[str, tuple]:
    """Per-row shape and dtype kind of every dataset, which the shards of one directory must share.

    The constituent axis P may differ (`concatenate` pads it), and a column missing from some shards is left
    out of the whole (`concatenate` keeps the columns all shards have).
    """
    names = [*ARRAYS, *(f"{g}/{k}" for g in GROUPS if g in h5 for k in h5[g])]
    return {name: (h5[name].shape[2 if name in ("constituents", "mask") else 1:], h5[name].dtype.kind)
            for name in names}


def _check_dataset(ds: Any, name: str, path: Path, kinds: str, ndim: int | None = None) -> None:
    if not isinstance(ds, h5py.Dataset):
        raise SchemaError(f"{path}: '{name}' is not a dataset")
    if ds.dtype.kind not in kinds or ds.dtype.subdtype is not None:
        raise SchemaError(f"{path}: {name} has dtype {ds.dtype}, expected numbers ({kinds!r} kinds)")
    if (ndim is not None and ds.ndim != ndim) or ds.ndim == 0:
        raise SchemaError(f"{path}: {name} has {ds.ndim} dimensions, expected {ndim or 'at least 1'}")


def _read_range(path: Path, start: int, stop: int, constituents: bool) -> JetSample:
    with open_sample_file(path) as h5:
        try:
            arrays = {}
            for name in ARRAYS:
                if not constituents and name in ("constituents", "mask"):
                    shape = h5[name].shape
                    arrays[name] = np.zeros((stop - start, 0, *shape[2:]), dtype=h5[name].dtype)
                else:
                    arrays[name] = h5[name][start:stop]
            groups = {
                g: {k: h5[g][k][start:stop] for k in h5[g]} if g in h5 else {} for g in GROUPS
            }
        except H5_ERRORS as err:
            raise SchemaError(f"{path}: rows {start}:{stop} cannot be read (truncated file?): {err}") from err
        attrs = read_attrs(h5, path)
    sample = JetSample(arrays["constituents"], arrays["mask"], arrays["jets"], arrays["label"], arrays["weight"],
                       features=groups["features"], event=groups["event"], attrs=attrs)
    return sample.validate(f"{path}[{start}:{stop}]")


def iter_samples(
    path: str | Path, chunk_size: int = 50_000, constituents: bool = True
) -> Iterator[JetSample]:
    """Yield validated chunks of at most `chunk_size` jets from a file or a shard directory.

    With ``constituents=False`` only jets, labels, weights, features and event columns are read, which is
    what scoring feature-based detectors and evaluation need. A file of zero jets yields nothing.
    """
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive number of jets, got {chunk_size}")
    info = SampleInfo(path)
    for f, n in zip(info.files, info.counts, strict=True):
        for start in range(0, n, chunk_size):
            chunk = _read_range(f, start, min(n, start + chunk_size), constituents)
            chunk.attrs["source"] = str(path)
            yield chunk


def read_sample(
    path: str | Path, start: int = 0, stop: int | None = None, constituents: bool = True
) -> JetSample:
    """Read jets ``start:stop`` (all by default) of a file or shard directory as one validated sample.

    An empty range (or a file of zero jets) reads as an empty sample with the file's columns.
    """

    info = SampleInfo(path)
    stop = info.n_jets if stop is None else min(stop, info.n_jets)
    if not 0 <= start <= stop:
        raise SchemaError(f"{path}: bad row range {start}:{stop} (file has {info.n_jets} jets)")
    parts, offset = [], 0
    for f, n in zip(info.files, info.counts, strict=True):
        lo, hi = max(start - offset, 0), min(stop - offset, n)
        if lo < hi:
            parts.append(_read_range(f, lo, hi, constituents))
        offset += n
    if not parts:
        parts = [_read_range(info.files[0], 0, 0, constituents)]
    sample = parts[0] if len(parts) == 1 else concatenate(parts)
    sample.attrs = dict(info.attrs) | {"source": str(path)}
    return sample
