"""The manifest of a sharded production: which shard files make it, and whether it is finished.

A production writes its manifest marked unfinished before it touches the first shard and marks it complete
only when every shard is written; readers refuse an unfinished directory, and one whose shards do not all
carry the manifest's production hash, seed and row count (a mixed directory), naming the shards and the
command that finishes or redoes it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jetad.data.sample import SchemaError

__all__ = ["MANIFEST", "SCHEMA_NAME", "SCHEMA_VERSION", "check_shards", "read_manifest", "rerun_hint", "same_attr",
           "write_manifest"]

SCHEMA_NAME = "jetad.JetSample"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def same_attr(value: Any, expected: Any) -> bool:
    """`value == expected` for provenance attributes, False (not an array) when a damaged file holds an array."""
    return type(value) is type(expected) and bool(value == expected)


def read_manifest(directory: Path) -> dict[str, Any]:
    mpath = directory / MANIFEST
    if not mpath.exists():
        raise SchemaError(
            f"{directory}: no {MANIFEST}; the production is incomplete (re-run the same 'jetad generate' "
            "command to resume) or this is not a jetad shard directory"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError
        raise SchemaError(f"{mpath}: not valid JSON ({err}); re-run the 'jetad generate' command that made it") \
            from err
    schema = manifest.get("schema") if isinstance(manifest, dict) else None
    if schema != SCHEMA_NAME or "shards" not in manifest:
        raise SchemaError(f"{mpath}: not a jetad manifest (schema={schema!r})")
    shards, attrs = manifest["shards"], manifest.setdefault("attrs", {})
    if not isinstance(attrs, dict) or not isinstance(shards, list):
        raise SchemaError(f"{mpath}: 'shards' must be a list and 'attrs' an object; re-run 'jetad generate'")
    for i, shard in enumerate(shards):
        name = shard.get("file") if isinstance(shard, dict) else None
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise SchemaError(f"{mpath}: shard {i} has file {name!r}; expected a file name inside {directory}")
        if "n_jets" in shard and (not isinstance(shard["n_jets"], int) or shard["n_jets"] < 0):
            raise SchemaError(f"{mpath}: shard {name} has n_jets {shard['n_jets']!r}; expected a count")
    return manifest


def rerun_hint(directory: Path, attrs: dict[str, Any]) -> str:
    """The command that finishes or redoes a production, from the manifest's attributes."""
    if not {"process", "n_jets", "seed"} <= set(attrs):
        return "re-run the 'jetad generate' command that made it"
    size = f" --shard-size {attrs['shard_size']}" if "shard_size" in attrs else ""
    return (f"re-run 'jetad generate {attrs['process']} -n {attrs['n_jets']}{size} --seed {attrs['seed']} "
            f"-o {directory}' (with the same other options)")


def check_shards(directory: Path, manifest: dict[str, Any], attrs: list[dict[str, Any]], counts: list[int]) -> None:
    """Every shard must carry the manifest's production hash and seed, and its row count."""
    want = {k: manifest["attrs"][k] for k in ("production_hash", "seed") if k in manifest["attrs"]}
    bad = []
    for shard, shard_attrs, n in zip(manifest["shards"], attrs, counts, strict=True):
        got = {k: shard_attrs.get(k) for k in want}
        if not all(same_attr(got[k], v) for k, v in want.items()) or shard.get("n_jets", n) != n:
            bad.append(f"{shard['file']} ({', '.join(f'{k} {v}' for k, v in got.items())}, {n} jets)")
    if bad:
        expected = ", ".join(f"{k} {v}" for k, v in want.items())
        raise SchemaError(
            f"{directory}: shards {'; '.join(bad)} do not match {MANIFEST} ({expected or 'its row counts'}); the "
            f"directory mixes productions: {rerun_hint(directory, manifest['attrs'])} to redo them"
        )


def write_manifest(
    directory: str | Path, shards: list[dict[str, Any]], attrs: dict[str, Any], complete: bool = True
) -> Path:
    """Write the manifest of a sharded production (atomically).

    A production writes it with ``complete=False`` before it touches the first shard and with ``complete=True``
    when every shard is done; readers refuse the directory in between.
    """
    directory = Path(directory)
    mpath = directory / MANIFEST
    tmp = mpath.with_name(MANIFEST + ".tmp")
    body = {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "complete": bool(complete), "shards": shards,
            "attrs": attrs}
    try:
        tmp.write_text(json.dumps(body, indent=1, default=str))
        os.replace(tmp, mpath)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return mpath
