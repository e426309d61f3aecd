"""The sample cache: generated samples addressed by content, made once as resumable shards, extended, reused.

An entry is one production, ``CACHE/samples/<process>-<key>/``, where the key hashes everything that
determines its jets except their number: the generation settings, the seed, the shard size, whether features
are computed, `GENERATION_VERSION` and the pythia8mc version. Shard i depends only on (settings, seed, i)
(`production.produce`, `pythia_events.pythia_seed`), so a request for more rows extends the entry with new
shards and keeps every full shard as it is (the last, partial one is regenerated to full size, its first rows
unchanged: a shard's rows are a prefix of a larger shard of the same index); a request for fewer rows reads
the first n rows. The entry is always a shard directory with a manifest (`jetad.data.manifest`) marked
unfinished before any shard is touched, so an interrupted or concurrent production never reads as complete;
an exclusive lock file serializes producers, and `read_cached` reads under a shared lock.

The cache folder is the ``cache=`` argument, else ``$JETAD_CACHE``, else ``$XDG_CACHE_HOME/jetad``, else
``~/.cache/jetad``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jetad import __version__
from jetad.data.manifest import MANIFEST, read_manifest, write_manifest
from jetad.data.progress import Progress
from jetad.data.sample import JetSample, SchemaError
from jetad.data.store import read_sample
from jetad.generate.processes import GenerationConfig, process_card
from jetad.generate.production import config_hash, produce
from jetad.generate.pythia_events import pythia_version

__all__ = ["ENTRY_FILE", "GENERATION_VERSION", "SHARD_SIZE", "CacheEntry", "cache_dir", "cached_rows", "cached_sample",
           "clear_cache", "entry_path", "list_cache", "read_cached", "sample_key", "settings_summary"]

#: Bump when the code changes which jets (or feature values) a given (settings, seed, shard) produces: the
#: event loop, detector emulation, clustering, selection or `compute_features`. Old entries are then never
#: matched again (list them with `list_cache`, remove them with `clear_cache`).
GENERATION_VERSION = 1
#: Rows per shard of cached samples (the unit of resumption and of extension).
SHARD_SIZE = 2000
#: The cache's description of an entry (what made it), next to the production's manifest.
ENTRY_FILE = "entry.json"
_LOCK = ".lock"
_SAMPLES = "samples"


def cache_dir(cache: str | Path | None = None) -> Path:
    """The cache folder: `cache`, else $JETAD_CACHE, else $XDG_CACHE_HOME/jetad, else ~/.cache/jetad."""
    if cache is not None and str(cache) != "":
        return Path(cache).expanduser()
    if os.environ.get("JETAD_CACHE"):
        return Path(os.environ["JETAD_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jetad"


def _key_payload(cfg: GenerationConfig, seed: int, shard_size: int, features: bool) -> dict[str, Any]:
    return {"production_hash": config_hash(cfg, seed, shard_size), "features": bool(features),
            "generation_version": GENERATION_VERSION, "pythia_version": pythia_version()}


def sample_key(cfg: GenerationConfig, seed: int, shard_size: int = SHARD_SIZE, features: bool = True) -> str:
    """Content address of a production (16 hex digits): settings, seed, shard size, features, code versions."""
    payload = json.dumps(_key_payload(cfg, seed, shard_size, features), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def entry_path(cfg: GenerationConfig, seed: int, cache: str | Path | None = None, shard_size: int = SHARD_SIZE,
               features: bool = True) -> Path:
    """The entry directory of a production (it may not exist yet)."""
    return cache_dir(cache) / _SAMPLES / f"{cfg.process}-{sample_key(cfg, seed, shard_size, features)}"


@contextmanager
def _locked(directory: Path, shared: bool = False) -> Iterator[None]:
    """An advisory lock on the entry (exclusive for producers, shared for readers); a no-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking, the manifest still guards against half-written reads
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / _LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_entry(directory: Path, cfg: GenerationConfig, seed: int, shard_size: int, features: bool) -> None:
    """entry.json (once, atomically): what the entry holds, by whom and when it was started."""
    path = directory / ENTRY_FILE
    if path.exists():
        return
    body = {"key": directory.name.rsplit("-", 1)[-1], "process": cfg.process, "seed": int(seed),
            "shard_size": int(shard_size), "config": asdict(cfg), **_key_payload(cfg, seed, shard_size, features),
            "jetad_version": __version__, "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    tmp = path.with_name(ENTRY_FILE + ".tmp")
    tmp.write_text(json.dumps(body, indent=1, default=str))
    os.replace(tmp, path)


def _manifest(directory: Path) -> dict[str, Any] | None:
    """The entry's manifest, or None when it has none (never started, or not readable)."""
    if not (directory / MANIFEST).exists():
        return None
    try:
        return read_manifest(directory)
    except SchemaError:
        return None


def _complete_rows(manifest: dict[str, Any] | None) -> int:
    """Rows of a complete production (0 when unfinished or absent)."""
    if manifest is None or not manifest.get("complete", False):
        return 0
    return int(sum(s.get("n_jets", 0) for s in manifest["shards"]))


def _target_rows(manifest: dict[str, Any] | None) -> int:
    """Rows the entry's last production asked for (an interrupted one is resumed to this size)."""
    if manifest is None:
        return 0
    return int(sum(s.get("n_jets", 0) for s in manifest["shards"]))


def _produce_one_shard(cfg: GenerationConfig, n: int, seed: int, directory: Path, shard_size: int,
                       features: bool, progress: Progress | None) -> None:
    """A request that fits one shard, written as 000.h5 with a manifest (as `produce` does for two or more)."""
    shards = [{"file": "000.h5", "n_jets": n, "shard": 0}]
    attrs = {"production_hash": config_hash(cfg, seed, shard_size), "seed": seed, "n_jets": n,
             "shard_size": shard_size, **cfg.to_attrs()}
    write_manifest(directory, shards, attrs, complete=False)
    produce(cfg, n, seed, directory / "000.h5", shard_size=shard_size, features=features, progress=progress)
    write_manifest(directory, shards, attrs, complete=True)


def cached_rows(cfg: GenerationConfig, seed: int, cache: str | Path | None = None, shard_size: int = SHARD_SIZE,
                features: bool = True) -> int:
    """Rows a reader gets from the entry now (0 when absent or unfinished); nothing is generated."""
    return _complete_rows(_manifest(entry_path(cfg, seed, cache, shard_size, features)))


def cached_sample(
    cfg: GenerationConfig,
    n: int,
    seed: int,
    cache: str | Path | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    shard_size: int = SHARD_SIZE,
    features: bool = True,
) -> Path:
    """The entry directory holding at least `n` rows of (cfg, seed), generating or extending it when needed.

    A complete entry with >= n rows is returned as is (read its first n rows with `read_cached` or
    ``read_sample(path, stop=n)``); a smaller one gains shards; an unfinished one (interrupted, or killed) is
    resumed to the larger of n and its planned size. `workers` > 1 generates shards on a Dask LocalCluster;
    `progress(rows_done, rows_total, {})` as in `produce`.
    """
    if int(n) < 1:
        raise ValueError(f"n: need a positive number of rows, got {n}")
    if int(shard_size) < 1:
        raise ValueError(f"shard_size: need a positive number of rows per shard, got {shard_size}")
    directory = entry_path(cfg, seed, cache, shard_size, features)
    with _locked(directory):
        _write_entry(directory, cfg, seed, shard_size, features)
        manifest = _manifest(directory)
        if _complete_rows(manifest) < n:
            target = max(int(n), _target_rows(manifest))
            if target <= shard_size:
                _produce_one_shard(cfg, target, seed, directory, shard_size, features, progress)
            else:
                produce(cfg, target, seed, directory, shard_size=shard_size, workers=workers, features=features,
                        progress=progress)
        os.utime(directory / ENTRY_FILE)  # last use, for clear_cache(older_than=...)
    return directory


def read_cached(
    cfg: GenerationConfig,
    n: int,
    seed: int,
    start: int = 0,
    cache: str | Path | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    shard_size: int = SHARD_SIZE,
    features: bool = True,
    reserve: int | None = None,
) -> JetSample:
    """Rows ``start:n`` of the cached production of (cfg, seed), made first if needed (`cached_sample`).

    `reserve` (>= n) makes sure the entry holds that many rows, so a series of growing requests extends the
    production once, not once per request.
    """
    if not 0 <= int(start) <= int(n):
        raise ValueError(f"start: need 0 <= start <= n, got start={start}, n={n}")
    directory = cached_sample(cfg, max(int(n), int(reserve or 0)), seed, cache, workers, progress, shard_size,
                              features)
    with _locked(directory, shared=True):
        return read_sample(directory, start=int(start), stop=int(n))


# ------------------------------------------------------------------------------------------------ listing


@dataclass(frozen=True)
class CacheEntry:
    """One cached production, as `list_cache` sees it.

    `n_jets` counts the rows a reader gets (0 while unfinished); `n_planned` the rows of the last request;
    `current` is False for entries of an older `GENERATION_VERSION` or pythia8mc (never matched again).
    """

    path: Path
    key: str
    process: str
    seed: int
    n_jets: int
    n_planned: int
    complete: bool
    settings: str
    size_bytes: int
    last_used: datetime
    jetad_version: str
    current: bool


def settings_summary(config: dict[str, Any]) -> str:
    """One line of the generation settings: jet radius, pT and eta window, MPI, detector, P, matching, options."""
    pt_max = config.get("pt_max")
    window = f"pT > {config.get('pt_min'):g}" if pt_max in (None, float("inf"), "inf") else \
        f"pT {config.get('pt_min'):g}-{float(pt_max):g}"
    parts = [f"R={config.get('jet_r')}", f"{window} GeV", f"|eta|<{config.get('eta_max')}",
             f"MPI {'on' if config.get('mpi') else 'off'}", str(config.get("detector")),
             f"P={config.get('n_constituents')}"]
    if config.get("match") and _has_matching(config):
        parts.append("parton-matched")
    if config.get("options"):
        parts.append(", ".join(f"{k}={v}" for k, v in sorted(config["options"].items())))
    return ", ".join(parts)


def _has_matching(config: dict[str, Any]) -> bool:
    """Whether the process matches jets to partons (QCD has nothing to match; its `match` flag is inert)."""
    try:
        return bool(process_card(GenerationConfig(**config)).match_ids)
    except (TypeError, ValueError):
        return False


def _entry(directory: Path) -> CacheEntry | None:
    try:
        meta = json.loads((directory / ENTRY_FILE).read_text())
    except (OSError, ValueError):
        return None
    manifest = _manifest(directory)
    size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
    current = meta.get("generation_version") == GENERATION_VERSION and meta.get("pythia_version") == pythia_version()
    return CacheEntry(
        path=directory, key=str(meta.get("key", "")), process=str(meta.get("process", "?")),
        seed=int(meta.get("seed", -1)), n_jets=_complete_rows(manifest), n_planned=_target_rows(manifest),
        complete=_complete_rows(manifest) > 0, settings=settings_summary(meta.get("config", {})), size_bytes=size,
        last_used=datetime.fromtimestamp((directory / ENTRY_FILE).stat().st_mtime, UTC),
        jetad_version=str(meta.get("jetad_version", "?")), current=current,
    )


def list_cache(cache: str | Path | None = None) -> list[CacheEntry]:
    """Every entry of the cache (by process, then last use); an empty list when the cache does not exist."""
    root = cache_dir(cache) / _SAMPLES
    if not root.is_dir():
        return []
    entries = [e for d in sorted(root.iterdir()) if d.is_dir() and (e := _entry(d)) is not None]
    return sorted(entries, key=lambda e: (e.process, e.last_used))


def _age_limit(older_than: timedelta | float | None) -> float | None:
    """A timestamp: entries last used before it are old; `older_than` is a timedelta or a number of days."""
    if older_than is None:
        return None
    days = older_than.total_seconds() / 86400 if isinstance(older_than, timedelta) else float(older_than)
    if not days >= 0:
        raise ValueError(f"older_than: need a non-negative age (timedelta or days), got {older_than!r}")
    return time.time() - days * 86400


def clear_cache(
    cache: str | Path | None = None,
    older_than: timedelta | float | None = None,
    process: str | None = None,
    incomplete: bool = False,
) -> list[CacheEntry]:
    """Remove entries (all, or those last used more than `older_than` ago, of one `process`, or only the
    unfinished ones with `incomplete`); returns the removed entries. An entry a producer holds is skipped."""
    limit = _age_limit(older_than)
    removed = []
    for entry in list_cache(cache):
        if process is not None and entry.process != process:
            continue
        if limit is not None and entry.last_used.timestamp() >= limit:
            continue
        if incomplete and entry.complete:
            continue
        if _remove_unless_busy(entry.path):
            removed.append(entry)
    return removed


def _remove_unless_busy(directory: Path) -> bool:
    """rmtree an entry unless another process holds its lock (a production under way)."""
    try:
        import fcntl
    except ImportError:
        shutil.rmtree(directory)
        return True
    with open(directory / _LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        shutil.rmtree(directory)
    return True
