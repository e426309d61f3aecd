"""Productions: split a request into shards, run them in-process or on Dask, resume after interruption.

The unit of work is (config, seed, shard index, rows) -> one HDF5 file, written under a temporary name and
renamed when complete. A request that fits one shard writes a single file at the output path; a larger one
writes ``OUT/manifest.json`` (marked unfinished) before it touches any shard, then ``OUT/000.h5, OUT/001.h5,
...``, and marks the manifest complete when every shard is done; readers refuse the directory in between, and
refuse shards whose production hash or seed differ from the manifest's. Re-running the same command keeps
finished shards (checked by their provenance) and redoes the rest, so the result is the same whether it ran in
one go, resumed, or ran on any number of workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

from jetad.data.progress import Progress
from jetad.data.store import SampleInfo, same_attr, write_manifest, write_sample
from jetad.generate.pipeline import generate_sample
from jetad.generate.processes import GenerationConfig
from jetad.physics.features import FEATURES_VERSION

__all__ = ["config_hash", "plan_shards", "produce"]

log = logging.getLogger(__name__)


def config_hash(cfg: GenerationConfig, seed: int, shard_size: int) -> str:
    """Content hash of everything that determines a production's rows: settings, seed, sharding and the version
    of the feature definitions (a shard made before a definition changed is redone, never mixed in)."""
    payload = json.dumps({"cfg": asdict(cfg), "seed": seed, "shard_size": shard_size,
                          "feature_definitions": FEATURES_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def plan_shards(n: int, shard_size: int) -> list[int]:
    """Rows per shard: full shards then the remainder."""
    if n <= 0 or shard_size <= 0:
        raise ValueError(f"need positive n and shard size, got n={n}, shard_size={shard_size}")
    sizes = [shard_size] * (n // shard_size)
    if n % shard_size:
        sizes.append(n % shard_size)
    return sizes


def _make_shard(
    cfg: GenerationConfig, rows: int, seed: int, shard: int, path: str, features: bool, tag: str,
    progress: Progress | None = None,
) -> str:
    """The unit of work: generate one shard (features from every constituent, before padding), write it atomically."""
    sample = generate_sample(cfg, rows, seed, shard, progress=progress, features=features)
    write_sample(path, sample, {"production_hash": tag})
    return path


def _shard_done(path: Path, rows: int, tag: str) -> bool:
    if not path.exists():
        return False
    try:
        info = SampleInfo(path)
    except Exception:  # an unreadable leftover is redone, never trusted
        return False
    return info.n_jets == rows and same_attr(info.attrs.get("production_hash"), tag)


def produce(
    cfg: GenerationConfig,
    n: int,
    seed: int,
    out: str | Path,
    shard_size: int = 10_000,
    workers: int = 1,
    scheduler: str | None = None,
    features: bool = True,
    progress: Progress | None = None,
) -> Path:
    """Generate `n` rows into `out` (a file if one shard, else a shard directory with a manifest).

    Arguments:
        workers: >1 starts an in-process Dask LocalCluster with that many single-threaded worker processes.
        scheduler: address of an existing dask.distributed scheduler (overrides `workers`).
        progress: called as progress(rows_done, rows_total, {}) when shards finish (and per batch in-process).
    """
    out = Path(out)
    sizes = plan_shards(n, shard_size)
    tag = config_hash(cfg, seed, shard_size)
    if len(sizes) == 1:
        if out.is_dir():
            raise FileExistsError(f"{out}: is a directory, but {n} rows fit one file; choose another output path")
        if _shard_done(out, n, tag):
            log.info("%s is complete; nothing to do", out)
            return out
        _run_inline(cfg, [(n, 0, out)], seed, features, tag, progress, n)
        return out
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is a file, but {len(sizes)} shards need a directory")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(rows, i, out / f"{i:03d}.h5") for i, rows in enumerate(sizes)]
    shards = [{"file": p.name, "n_jets": rows, "shard": i} for rows, i, p in jobs]
    attrs = {"production_hash": tag, "seed": seed, "n_jets": n, "shard_size": shard_size, **cfg.to_attrs()}
    todo = [j for j in jobs if not _shard_done(j[2], j[0], tag)]
    # The manifest names this production before any shard is rewritten, so a run killed half-way (or a mix of
    # this production's shards with another's) can never read as complete.
    write_manifest(out, shards, attrs, complete=False)
    for _, _, path in todo:
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)
    done_rows = n - sum(rows for rows, _, _ in todo)
    log.info("%s: %d of %d shards to make", out, len(todo), len(jobs))
    if todo:
        if scheduler or workers > 1:
            _run_dask(cfg, todo, seed, features, tag, progress, n, done_rows, workers, scheduler)
        else:
            _run_inline(cfg, todo, seed, features, tag, progress, n, done_rows)
    write_manifest(out, shards, attrs, complete=True)
    return out


def _run_inline(cfg, todo, seed, features, tag, progress, total, done_rows=0) -> None:
    for rows, shard, path in todo:
        batch_progress = (lambda r, n, logs, base=done_rows: progress(base + r, total, logs)) if progress else None
        _make_shard(cfg, rows, seed, shard, str(path), features, tag, batch_progress)
        done_rows += rows
        if progress:
            progress(done_rows, total, {})


def _run_dask(cfg, todo, seed, features, tag, progress, total, done_rows, workers, scheduler) -> None:
    from dask.distributed import Client, LocalCluster, as_completed

    if not log.isEnabledFor(logging.INFO):  # the cluster's start/stop chatter only with jetad's -v
        logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        # a free local port: the default 8787 clashes with any other running cluster (a warning, an error in tests)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0")
        client = Client(cluster)
    try:
        futures = {
            client.submit(_make_shard, cfg, rows, seed, shard, str(path), features, tag, pure=False): rows
            for rows, shard, path in todo
        }
        for fut in as_completed(futures):
            fut.result()
            done_rows += futures[fut]
            if progress:
                progress(done_rows, total, {})
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
