"""The one model-file format: tensors, numpy arrays and JSON values, nothing that can run code when opened.

Detectors, saved searches and training checkpoints are all written by `write_model_payload` and read by
`read_model_payload`. A payload is a tree of dicts (str or int keys), lists, tuples, str, int, float, bool,
None, torch tensors and numpy arrays (numeric, bool or string dtypes). On disk it is a `torch.save` zip in which
numpy arrays are stored as raw bytes plus dtype and shape, so the file is read back with
``torch.load(weights_only=True)``: the restricted unpickler of PyTorch that rebuilds tensors and plain
containers only and refuses every other global, so a crafted ``__reduce__`` payload is never called.
Anything else (a fitted object, a class, a function) cannot be written: the owner turns it into arrays and
a config first and rebuilds it on load.

References: PyTorch serialization semantics, ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from jetad.data.sample import SchemaError

__all__ = ["TAG", "check_model_format", "decode", "encode", "read_model_payload", "write_model_payload"]

#: Key of the marker dicts this module writes for values JSON lacks (tuples, numpy arrays).
TAG = "__jetad__"
#: numpy dtype kinds a model file may hold: bool, integers, floats, complex, bytes, unicode, datetimes.
_SAFE_KINDS = frozenset("biufcSUmM")


def encode(value: Any, where: str = "payload") -> Any:
    """`value` as a tree of plain containers, scalars and torch tensors (numpy arrays -> tagged bytes).

    Raises TypeError naming the place (`where`) of the first value that has no safe form.
    """
    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _SAFE_KINDS or value.dtype.fields is not None:
            raise TypeError(f"{where}: numpy array of dtype {value.dtype} cannot be stored in a model file")
        data = np.ascontiguousarray(value)
        raw = torch.frombuffer(bytearray(data.tobytes()), dtype=torch.uint8) if data.nbytes else torch.zeros(
            0, dtype=torch.uint8)
        return {TAG: "ndarray", "dtype": data.dtype.str, "shape": list(data.shape), "data": raw}
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool) or k == TAG:
                raise TypeError(f"{where}: dict key {k!r} cannot be stored in a model file (str or int keys only)")
            out[k] = encode(v, f"{where}.{k}")
        return out
    raise TypeError(f"{where}: a {type(value).__module__}.{type(value).__qualname__} cannot be stored in a model "
                    "file (arrays, tensors and JSON values only); store its arrays and config instead")


def decode(value: Any, where: str = "payload") -> Any:
    """Inverse of `encode`; SchemaError (naming `where`) for any structure `encode` does not write."""
    import torch

    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, list):
        return [decode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if TAG not in value:
            return {k: decode(v, f"{where}.{k}") for k, v in value.items()}
        kind = value[TAG]
        if kind == "tuple" and isinstance(value.get("items"), list):
            return tuple(decode(v, f"{where}[{i}]") for i, v in enumerate(value["items"]))
        if kind == "ndarray":
            return _decode_array(value, where)
        raise SchemaError(f"{where}: unknown stored value {kind!r}")
    raise SchemaError(f"{where}: unexpected {type(value).__name__} in a model file")


def _decode_array(value: dict[str, Any], where: str) -> np.ndarray:
    import torch

    try:
        dtype = np.dtype(value["dtype"])
        shape = tuple(int(s) for s in value["shape"])
        data = value["data"]
    except (KeyError, TypeError, ValueError) as err:
        raise SchemaError(f"{where}: malformed stored array ({err})") from err
    if dtype.kind not in _SAFE_KINDS or dtype.fields is not None or dtype.hasobject:
        raise SchemaError(f"{where}: stored array of dtype {dtype} is not allowed")
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8 or data.ndim != 1:
        raise SchemaError(f"{where}: stored array data must be a flat uint8 tensor")
    if any(s < 0 for s in shape) or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != data.numel():
        raise SchemaError(f"{where}: stored array has {data.numel()} bytes, not the {shape} x {dtype} it declares")
    return np.frombuffer(data.numpy().tobytes(), dtype=dtype).reshape(shape).copy()


def write_model_payload(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` (see the module docstring) atomically: a temporary name, then a rename.

    The temporary file is removed if anything fails, so no half-written model is ever found under `path`.
    """
    import torch

    path = Path(path)
    encoded = encode(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(encoded, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_model_payload(path: str | Path) -> dict[str, Any]:
    """The dict stored in a jetad model file (detector, saved search or checkpoint), read without running code.

    A file that holds anything beyond tensors, arrays and JSON values (a pickled object: a crafted file, or one
    written by an older jetad whose model format 1 pickled numpy objects) is refused before any of it is called.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.is_dir():
        raise SchemaError(f"{path}: is a directory, not a jetad model file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":  # torch.save writes a zip archive; anything else is another kind of file
        kind = "an HDF5 file (a jet or score file?)" if head == b"\x89HDF" else "not a zip archive"
        raise SchemaError(f"{path}: not a jetad model file ({kind}); give a model written by 'jetad train', "
                          "'jetad search --save' or Detector.save")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()
        hint = next((line for line in reason if "Unsupported global" in line or "GLOBAL" in line), reason[0]
                    if reason else "")
        raise SchemaError(
            f"{path}: refused: the file holds Python objects, not only arrays and JSON (written by an older jetad, "
            f"model format 1, or crafted; nothing in it was run: {hint.strip()[:160]}); retrain or re-save it with "
            "this jetad") from None
    except Exception as err:
        raise SchemaError(f"{path}: not a readable jetad model file (truncated or corrupt: "
                          f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})") from None
    if not isinstance(payload, dict):
        raise SchemaError(f"{path}: not a jetad model file (holds a {type(payload).__name__})")
    return decode(payload, str(path))


def check_model_format(payload: dict[str, Any], path: str | Path, fmt: str, version: int, what: str, redo: str,
                       keys: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> None:
    """SchemaError unless `payload` has format `fmt` at `version` and exactly the `keys` (+ `optional`) given.

    `what` names the kind of file, `redo` the remedy.
    """
    from jetad import __version__

    if payload.get("format") != fmt:
        raise SchemaError(f"{path}: not a jetad {what} file (format {payload.get('format')!r}, expected {fmt!r})")
    if payload.get("format_version") != version:
        older = isinstance(payload.get("format_version"), int) and payload["format_version"] < version
        raise SchemaError(
            f"{path}: {what} format version {payload.get('format_version')} (jetad {payload.get('jetad_version')}), "
            f"this jetad {__version__} reads version {version}"
            + ("; written by an older jetad" if older else "") + f"; {redo}"
        )
    if keys:
        required = {"format", "format_version", "jetad_version", *keys}
        missing = sorted(required - set(payload))
        unknown = sorted(set(payload) - required - set(optional))
        if missing or unknown:
            problems = [f"missing {missing}"] * bool(missing) + [f"unknown {unknown}"] * bool(unknown)
            raise SchemaError(f"{path}: malformed {what} file ({'; '.join(problems)}); {redo}")
