"""Compute substructure features for a whole jet file, chunk by chunk, in place or into a new file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jetad.data.progress import Progress
from jetad.data.store import SampleWriter, add_columns, iter_samples, sample_info
from jetad.physics.features import compute_features

__all__ = ["write_features"]


def write_features(
    src: str | Path,
    out: str | Path | None = None,
    chunk_size: int = 20_000,
    progress: Progress | None = None,
) -> Path:
    """Add the feature columns of `compute_features` to `src` (in place) or write a copy with them to `out`.

    Memory stays bounded by `chunk_size` jets of constituents plus the (N, n_features) float32 columns.
    In place, each file (or each shard of a directory) gets its columns atomically: an interruption leaves
    it as it was.
    """
    info = sample_info(src)
    r = float(info.attrs.get("jet_r", 0.8))
    done = 0
    if out is not None:
        out = Path(out)
        with SampleWriter(out, {**info.attrs, "features_from": str(src)}) as writer:
            for chunk in iter_samples(src, chunk_size=chunk_size):
                chunk.features = {**chunk.features, **compute_features(chunk, r=r)}
                writer.append(chunk)
                done += len(chunk)
                if progress:
                    progress(done, info.n_jets, {})
        return out
    for path in info.files:
        columns: dict[str, list[np.ndarray]] = {}
        for chunk in iter_samples(path, chunk_size=chunk_size):
            for k, v in compute_features(chunk, r=r).items():
                columns.setdefault(k, []).append(v)
            done += len(chunk)
            if progress:
                progress(done, info.n_jets, {})
        add_columns(path, "features", {k: np.concatenate(v) for k, v in columns.items()})
    return Path(src)
