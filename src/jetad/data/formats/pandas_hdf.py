"""DataFrames written with ``DataFrame.to_hdf`` (PyTables fixed or table format), read with h5py and no pickle.

PyTables, and so pandas, unpickles object-typed nodes (an object index, column labels or values) and any
string attribute that looks like a pickle, so opening a crafted file with ``pd.read_hdf`` runs its code.
This reader never hands file content to `pickle`: it refuses object-typed (pickled) axes and columns, reads
numeric arrays with h5py, and decodes the few metadata attributes pandas stores as pickles of plain lists
(the column names of the table format) with `literal_pickle`, which builds only str, bytes, numbers, None,
lists, tuples and dicts and refuses every opcode that would look up or call a Python object.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetad.data.formats.source import HDF5_SIGNATURE, _signature, check_source_file
from jetad.data.sample import SchemaError

__all__ = ["PandasHDFFrame", "literal_pickle", "read_rows"]

#: Pickle opcodes that build plain literals; GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, EXT*, PERSID are not here.
_LITERAL_OPCODES = frozenset(
    "PROTO FRAME STOP MARK POP POP_MARK DUP MEMOIZE PUT BINPUT LONG_BINPUT GET BINGET LONG_BINGET "
    "NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT "
    "STRING BINSTRING SHORT_BINSTRING UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8 "
    "BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8 EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 "
    "EMPTY_LIST LIST APPEND APPENDS EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET ADDITEMS FROZENSET".split()
)
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError, AttributeError)


class _LiteralUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def literal_pickle(raw: Any, what: str) -> Any:
    """The plain value (str, number, None, list, tuple, dict) pickled in `raw`; SchemaError naming `what` else.

    Every opcode is checked (without executing anything) before loading, and the loader refuses any class or
    function lookup, so no code in the pickle can run.
    """
    if not isinstance(raw, bytes):
        raise SchemaError(f"{what}: expected pickled metadata (bytes), found {type(raw).__name__}")
    try:
        for op, _, _ in pickletools.genops(raw):
            if op.name not in _LITERAL_OPCODES:
                raise SchemaError(f"{what}: pickled metadata uses {op.name}, which would load Python objects; "
                                  "refusing to unpickle")
        return _LiteralUnpickler(io.BytesIO(bytes(raw))).load()
    except SchemaError:
        raise
    except Exception as err:  # any failure to decode untrusted bytes means malformed metadata
        raise SchemaError(f"{what}: malformed pickled metadata ({type(err).__name__}: {err}); refusing to unpickle") \
            from err


#: PyTables' Blosc filters (jetad's black boxes use Blosc), which h5py's HDF5 lacks; python-blosc2 decodes both.
_BLOSC_FILTERS = {32001: "blosc", 32026: "blosc2"}


def read_rows(ds: h5py.Dataset, start: int, stop: int, where: str) -> np.ndarray:
    """``ds[start:stop]``; chunks compressed with PyTables' Blosc filter are decoded with python-blosc2."""
    plist = ds.id.get_create_plist()
    filters = [plist.get_filter(i)[::3] for i in range(plist.get_nfilters())]  # (code, name)
    missing = [(code, _text(name)) for code, name in filters if not h5py.h5z.filter_avail(code)]
    if not missing:
        return ds[start:stop]
    if len(filters) != 1 or filters[0][0] not in _BLOSC_FILTERS:
        raise SchemaError(f"{where}: compressed with HDF5 filters {missing} that this installation cannot decode; "
                          "rewrite the file uncompressed or with zlib (complib='zlib')")
    return _blosc_rows(ds, start, stop, where, frames=filters[0][0] == 32026)


def _blosc_chunk(raw: bytes, frames: bool, chunks: tuple[int, ...], itemsize: int, where: str) -> bytes:
    """One decoded chunk: a Blosc buffer, or a Blosc2 frame (b2frame, n-dim chunks as b2nd); sizes checked first."""
    import blosc2

    expected = int(np.prod(chunks)) * itemsize
    if not frames:
        nbytes, cbytes, _ = blosc2.get_cbuffer_sizes(raw)
        if nbytes != expected or cbytes != len(raw):
            raise SchemaError(f"{where}: Blosc chunk claims {nbytes} bytes from {cbytes}, expected {expected} "
                              f"from {len(raw)} (truncated or corrupt file)")
        return blosc2.decompress(raw)
    schunk = blosc2.schunk_from_cframe(raw, copy=True)
    if "b2nd" in schunk.meta:
        array = blosc2.ndarray_from_cframe(raw)
        if tuple(array.shape) != tuple(chunks) or array.dtype.itemsize != itemsize:
            raise SchemaError(f"{where}: Blosc2 chunk of shape {array.shape}, expected {chunks} (corrupt file)")
        return array[...].tobytes()
    if schunk.nbytes != expected:
        raise SchemaError(f"{where}: Blosc2 chunk claims {schunk.nbytes} bytes, expected {expected} (corrupt file)")
    return schunk[:]


def _blosc_rows(ds: h5py.Dataset, start: int, stop: int, where: str, frames: bool) -> np.ndarray:
    """Rows ``start:stop`` of a Blosc-compressed chunked dataset, chunk by chunk (sizes checked before decoding)."""
    import itertools

    stop = min(stop, ds.shape[0])
    dtype, chunks, shape = ds.id.get_type().dtype, ds.chunks, ds.shape
    out = np.zeros((max(0, stop - start), *shape[1:]), dtype=dtype)
    if stop <= start:
        return out
    chunk_bytes = int(np.prod(chunks)) * dtype.itemsize
    trailing = [range(0, n, c) for n, c in zip(shape[1:], chunks[1:], strict=True)]
    for row0 in range(start // chunks[0] * chunks[0], stop, chunks[0]):
        for rest in itertools.product(*trailing):
            offset = (row0, *rest)
            mask, raw = ds.id.read_direct_chunk(offset)
            if not mask & 1:  # bit set: the filter was skipped for this chunk
                raw = _blosc_chunk(raw, frames, chunks, dtype.itemsize, f"{where} chunk {offset}")
            if len(raw) != chunk_bytes:
                raise SchemaError(f"{where}: chunk at {offset} has {len(raw)} bytes, expected {chunk_bytes}")
            block = np.frombuffer(raw, dtype=dtype).reshape(chunks)
            r0, r1 = max(start, row0), min(stop, row0 + chunks[0])
            ends = [min(o + c, n) for o, c, n in zip(rest, chunks[1:], shape[1:], strict=True)]
            out[(slice(r0 - start, r1 - start), *(slice(o, e) for o, e in zip(rest, ends, strict=True)))] = block[
                (slice(r0 - row0, r1 - row0), *(slice(0, e - o) for o, e in zip(rest, ends, strict=True)))]
    return out


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _is_object(dtype: np.dtype) -> bool:
    """Object (pickled) or variable-length data, in the dtype itself or in a field of a compound dtype."""
    if dtype.fields:
        return any(_is_object(sub) for sub, *_ in dtype.fields.values())
    base = dtype.subdtype[0] if dtype.subdtype else dtype
    return base.kind == "O" or h5py.check_vlen_dtype(base) is not None


def _labels(ds: h5py.Dataset, what: str) -> list[str]:
    """Column labels stored as numbers or fixed-width strings, as the strings pandas would show."""
    if ds.ndim != 1 or ds.dtype.kind not in "biufS":
        raise SchemaError(f"{what}: labels of dtype {ds.dtype} and shape {ds.shape}; expected numbers or strings")
    return [_text(v) if isinstance(v, bytes) else str(v.item()) for v in read_rows(ds, 0, ds.shape[0], what)]


class PandasHDFFrame:
    """Row ranges of a pandas DataFrame stored with ``DataFrame.to_hdf`` (PyTables fixed or table format).

    Only the requested rows are read (h5py slices of the value blocks). Numeric columns only: object-typed
    axes or columns are refused before anything is read from them. Shared by the LHCO and top-tagging readers.
    """

    def __init__(self, path: str | Path, key: str | None = None, prefer: tuple[str, ...] = ()):
        self.path = check_source_file(path)
        if _signature(self.path) != HDF5_SIGNATURE:
            raise SchemaError(f"{self.path}: not an HDF5 file (no HDF5 signature)")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise SchemaError(f"{self.path}: cannot be opened as HDF5 (truncated or corrupt?): {err}") from err
        try:
            self.key = self._choose_key(key, prefer)
            group = self._h5[self.key]
            self._refuse_objects(group)
            kind = _text(group.attrs.get("pandas_type"))
            if kind == "frame":
                self._open_fixed(group)
            elif kind == "frame_table":
                self._open_table(group)
            else:
                raise SchemaError(f"{self.path}: '{self.key}' is a pandas {kind!r}, expected a DataFrame "
                                  "('frame' or 'frame_table')")
        except SchemaError:
            self.close()
            raise
        except _READ_ERRORS as err:
            self.close()
            raise SchemaError(
                f"{self.path}: DataFrame '{key or prefer}' cannot be read (truncated or corrupt?): {err}"
            ) from err
        if len(set(self.columns)) != len(self.columns):
            self.close()
            raise SchemaError(f"{self.path}: DataFrame '{self.key}' has duplicate column labels")
        if self.n_rows == 0:
            self.close()
            raise SchemaError(f"{self.path}: DataFrame '{self.key}' has no rows")

    # -------------------------------------------------------------------------------------------- layout

    def _choose_key(self, key: str | None, prefer: tuple[str, ...]) -> str:
        keys: list[str] = []
        self._h5.visititems(
            lambda name, obj: keys.append(name) if isinstance(obj, h5py.Group) and "pandas_type" in obj.attrs else None
        )
        if not keys:
            raise SchemaError(
                f"{self.path}: no pandas DataFrame in this HDF5 file (expected DataFrame.to_hdf)"
            )
        if key is not None:
            if key.strip("/") not in keys:
                raise SchemaError(f"{self.path}: no DataFrame under key '{key}' (keys: {keys})")
            return key.strip("/")
        for k in prefer:
            if k in keys:
                return k
        if len(keys) == 1:
            return keys[0]
        raise SchemaError(f"{self.path}: several DataFrames {keys}; pass key=... to choose one")

    def _refuse_objects(self, group: h5py.Group) -> None:
        """SchemaError for any object-typed (pickled) node of the frame, before any of it is read."""
        found: list[tuple[str, h5py.Dataset]] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and (
                _is_object(obj.dtype) or _text(obj.attrs.get("PSEUDOATOM")) == "object"
            ):
                found.append((name, obj))

        group.visititems(visit)
        if not found:
            return
        name, _ = found[0]
        leaf = name.rsplit("/", 1)[-1]
        if leaf.endswith("_values") or leaf == "table":
            items = group.get(leaf.replace("_values", "_items"))
            try:
                labels = _labels(items, "") if isinstance(items, h5py.Dataset) and not _is_object(items.dtype) else []
            except SchemaError:
                labels = []
            what = f"column {labels[0]!r}" if len(labels) == 1 else f"columns {labels}" if labels else "column"
            what += f" ({leaf})"
        else:
            role = {"axis0": "column labels", "axis1": "row index"}.get(leaf, "labels")
            what = f"axis '{leaf}' ({role})"
        raise SchemaError(
            f"{self.path}: object-typed {what} in DataFrame '{self.key}': refusing to unpickle (pandas pickles "
            "object data, and unpickling can run code); store numbers only (df.astype(float), a numeric index)"
        )

    def _open_fixed(self, group: h5py.Group) -> None:
        self.layout = "fixed"
        axis0 = group["axis0"]
        self.columns = _labels(axis0, f"{self.path}: {self.key}/axis0")
        position = {c: i for i, c in enumerate(self.columns)}
        self.dtypes: dict[str, np.dtype] = {}
        self._blocks: list[tuple[h5py.Dataset, bool, np.ndarray]] = []
        rows = set()
        for b in range(int(group.attrs.get("nblocks", 0))):
            items = _labels(group[f"block{b}_items"], f"{self.path}: {self.key}/block{b}_items")
            values = group[f"block{b}_values"]
            if "shape" in values.attrs:  # pandas writes a placeholder node for an array with no elements
                rows.add(0)
                continue
            transposed = bool(values.attrs.get("transposed", 0))
            shape = values.shape if transposed else values.shape[::-1]
            if values.ndim != 2 or shape[1] != len(items) or any(c not in position for c in items):
                raise SchemaError(f"{self.path}: {self.key}/block{b}_values has shape {values.shape} for items "
                                  f"{items[:5]}...; the frame is corrupt")
            rows.add(shape[0])
            self.dtypes.update(dict.fromkeys(items, values.dtype))
            self._blocks.append((values, transposed, np.array([position[c] for c in items], dtype=np.int64)))
        if set(self.dtypes) != set(self.columns) and rows != {0}:
            missing = [c for c in self.columns if c not in self.dtypes]
            raise SchemaError(f"{self.path}: DataFrame '{self.key}' has no values for columns {missing[:5]}")
        if len(rows) > 1:
            raise SchemaError(f"{self.path}: the value blocks of '{self.key}' disagree on the row count {rows}")
        self.n_rows = rows.pop() if rows else 0

    def _open_table(self, group: h5py.Group) -> None:
        self.layout = "table"
        table = group["table"]
        where = f"{self.path}: {self.key}"
        axes = literal_pickle(group.attrs.get("non_index_axes"), f"{where} attribute 'non_index_axes'")
        if not (isinstance(axes, list) and len(axes) == 1 and isinstance(axes[0], tuple | list) and len(axes[0]) == 2):
            raise SchemaError(f"{where}: attribute 'non_index_axes' is {axes!r}; expected [(1, [column labels])]")
        self.columns = [str(c) for c in axes[0][1]]
        position = {c: i for i, c in enumerate(self.columns)}
        index_cols = literal_pickle(group.attrs.get("index_cols", b"N."), f"{where} attribute 'index_cols'") or []
        skip = {str(c[1]) for c in index_cols if isinstance(c, tuple | list) and len(c) == 2} | {"index"}
        self.dtypes = {}
        self._fields: list[tuple[str, np.ndarray]] = []
        for field in table.dtype.names or ():
            if field in skip:
                continue
            sub = table.dtype[field]
            base = sub.subdtype[0] if sub.subdtype else sub
            if field.startswith("values_block_"):
                kind = table.attrs.get(f"{field}_kind")
                items = [str(c) for c in literal_pickle(kind, f"{where}/table attribute '{field}_kind'") or []]
            else:
                items = [field]  # a data column, stored under its own name
            if int(np.prod(sub.shape)) != len(items) or any(c not in position for c in items):
                raise SchemaError(f"{where}/table: field {field} holds {sub.shape} values for columns {items[:5]}; "
                                  "the frame is corrupt")
            self.dtypes.update(dict.fromkeys(items, base))
            self._fields.append((field, np.array([position[c] for c in items], dtype=np.int64)))
        if set(self.dtypes) != set(self.columns):
            missing = [c for c in self.columns if c not in self.dtypes]
            raise SchemaError(f"{where}: no values for columns {missing[:5]}")
        self._table = table
        self.n_rows = int(table.shape[0]) if table.ndim == 1 else -1
        if self.n_rows < 0:
            raise SchemaError(f"{where}/table has shape {table.shape}; expected one record per row")

    # ---------------------------------------------------------------------------------------------- read

    def require_numeric(self, columns: list[str]) -> None:
        """SchemaError naming the first of `columns` that is not a numeric (int, float, bool) column."""
        for c in columns:
            if self.dtypes[c].kind not in "biuf":
                raise SchemaError(f"{self.path}: column '{c}' has dtype {self.dtypes[c]}, expected numbers")

    def rows(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, n_columns) float64 values of rows ``start:stop``, checked to be finite."""
        self.require_numeric(self.columns)
        n = stop - start
        values = np.empty((n, len(self.columns)), dtype=np.float64)
        try:
            if self.layout == "fixed":
                for ds, transposed, pos in self._blocks:
                    if not transposed:  # pandas writes untransposed only the placeholders of empty arrays
                        raise SchemaError(f"{self.path}: {ds.name} is stored untransposed; the frame is corrupt")
                    block = read_rows(ds, start, stop, f"{self.path}: {ds.name}")
                    if len(block) != n:
                        raise SchemaError(f"{self.path}: rows {start}:{stop} returned {len(block)} rows "
                                          "(truncated file?)")
                    values[:, pos] = block
            else:
                records = read_rows(self._table, start, stop, f"{self.path}: {self._table.name}")
                if len(records) != n:
                    raise SchemaError(f"{self.path}: rows {start}:{stop} returned {len(records)} rows "
                                      "(truncated file?)")
                for field, pos in self._fields:
                    values[:, pos] = records[field].reshape(n, len(pos))
        except SchemaError:
            raise
        except _READ_ERRORS as err:
            raise SchemaError(
                f"{self.path}: rows {start}:{stop} cannot be read (truncated file?): {err}"
            ) from err
        bad = ~np.isfinite(values)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise SchemaError(
                f"{self.path}: {int(bad.sum())} NaN/inf values in rows {start}:{stop} "
                f"(first at row {start + row}, column '{self.columns[col]}')"
            )
        return values

    def close(self) -> None:
        """Close the HDF5 file."""
        h5 = getattr(self, "_h5", None)
        if h5 is not None:
            h5.close()
