"""HDF5 attributes of jetad files: numbers and strings as they are, anything else as "json:" strings.

Every file jetad writes (samples, score files) carries `base_attrs()`: schema name and version, jetad version,
creation time. Reading an attribute back never runs code; a damaged one is a `SchemaError` naming file and key.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetad import __version__
from jetad.data.manifest import SCHEMA_NAME, SCHEMA_VERSION
from jetad.data.sample import SchemaError

__all__ = ["H5_ERRORS", "base_attrs", "decode_attr", "encode_attr", "read_attrs"]

#: What h5py and numpy raise on damaged files and impossible layouts (SchemaError is handled before these).
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)


def encode_attr(value: Any) -> Any:
    if isinstance(value, str | int | float | bool | np.integer | np.floating):
        return value
    return "json:" + json.dumps(value, default=str, sort_keys=True)


def decode_attr(value: Any, name: str = "?", source: str | Path = "file") -> Any:
    """An attribute as written by `encode_attr`; a damaged "json:" value is a SchemaError naming `source`/`name`."""
    try:
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value.startswith("json:"):
            return json.loads(value[5:])
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError, JSONDecodeError
        raise SchemaError(
            f"{source}: attribute {name!r} is not valid ({type(err).__name__}: {err}); the file was damaged or "
            "edited by hand: regenerate or reconvert it"
        ) from err
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(h5: h5py.File, path: Path) -> dict[str, Any]:
    """All file attributes, decoded; an unreadable or malformed one is a SchemaError naming it."""
    out, key = {}, "?"
    try:
        for key in list(h5.attrs):
            out[key] = h5.attrs[key]
    except H5_ERRORS as err:
        raise SchemaError(f"{path}: attribute {key!r} cannot be read ({err}); regenerate or reconvert the file") \
            from err
    return {key: decode_attr(raw, key, path) for key, raw in out.items()}


def base_attrs() -> dict[str, Any]:
    """Attributes every jetad file carries: schema name/version, jetad version, creation time."""
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "jetad_version": __version__,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
