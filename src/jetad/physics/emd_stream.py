"""Streamed pairwise distances: tiles go to a handler (a file or a reducer), never an N x N matrix in memory.

As `wasserstein.PairwiseEMD` with an external handler (1902.02346's code), but resumable: with a checkpoint
file the set of finished tiles and the handler's state are saved together (atomically, every
`checkpoint_every` seconds), and a rerun with the same arguments skips what is done. For a symmetric stream
(one set of jets) a handler sees only the tiles on and above the diagonal and mirrors them itself.

Handlers: `DistanceMatrix` (in memory, small N), `DistanceFile` (HDF5, float32), `KNearest` (the k smallest
distances per row: nearest medoid with k = 1, k-NN graphs), `DistanceHistogram` (the distribution of the
N(N-1)/2 distances). Memory: O(N k) for `KNearest`, O(bins) for the histogram, plus the tiles in flight.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jetad.data.progress import Progress

__all__ = ["DistanceFile", "DistanceHistogram", "DistanceMatrix", "KNearest", "TileHandler", "stream_tiles"]

Tiles = Iterator[tuple[slice, slice, np.ndarray]]


class TileHandler(Protocol):
    """Receives blocks of a distance matrix; `state`/`load_state` make it resumable (arrays only)."""

    def start(self, n_a: int, n_b: int, symmetric: bool) -> None: ...
    def __call__(self, rows: slice, cols: slice, block: np.ndarray) -> None: ...
    def state(self) -> dict[str, np.ndarray]: ...
    def load_state(self, state: dict[str, np.ndarray]) -> None: ...
    def result(self) -> Any: ...


class DistanceMatrix:
    """The full (N_a, N_b) matrix in memory (symmetric: mirrored, zero diagonal)."""

    def start(self, n_a: int, n_b: int, symmetric: bool) -> None:
        self.matrix, self.symmetric = np.zeros((n_a, n_b)), symmetric

    def __call__(self, rows: slice, cols: slice, block: np.ndarray) -> None:
        self.matrix[rows, cols] = block
        if self.symmetric:
            self.matrix[cols, rows] = block.T

    def state(self) -> dict[str, np.ndarray]:
        return {"matrix": self.matrix}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.matrix = state["matrix"]

    def result(self) -> np.ndarray:
        return self.matrix


class DistanceFile:
    """The matrix as dataset ``distances`` (float32) of an HDF5 file, written to ``path.tmp`` and renamed to
    `path` when complete; a resumed stream reopens the ``.tmp`` file."""

    def __init__(self, path: str | Path, dtype: type = np.float32, attrs: dict[str, Any] | None = None):
        self.path, self.dtype, self.attrs = Path(path), dtype, attrs or {}

    def start(self, n_a: int, n_b: int, symmetric: bool) -> None:
        import h5py

        self.symmetric = symmetric
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.tmp = tmp
        if tmp.exists():
            self.file = h5py.File(tmp, "r+")
            if self.file["distances"].shape != (n_a, n_b):
                raise ValueError(f"{tmp}: distances have shape {self.file['distances'].shape}, this stream "
                                 f"({n_a}, {n_b}); delete it to start over")
        else:
            self.file = h5py.File(tmp, "w")
            self.file.create_dataset("distances", (n_a, n_b), dtype=self.dtype,
                                     chunks=(min(n_a, 256), min(n_b, 256)))
            self.file.attrs.update(self.attrs)

    def __call__(self, rows: slice, cols: slice, block: np.ndarray) -> None:
        data = self.file["distances"]
        data[rows, cols] = block
        if self.symmetric and rows != cols:
            data[cols, rows] = block.T

    def state(self) -> dict[str, np.ndarray]:
        self.file.flush()
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        pass

    def result(self) -> Path:
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path


class KNearest:
    """The k smallest distances of every row and their column indices, ascending (self-pairs excluded).

    ``result()``: (distances (N_a, k), indices (N_a, k)); missing neighbours (k >= N) are inf / -1.
    """

    def __init__(self, k: int = 1):
        if k < 1:
            raise ValueError(f"KNearest: k must be >= 1, got {k}")
        self.k = k

    def start(self, n_a: int, n_b: int, symmetric: bool) -> None:
        self.symmetric = symmetric
        self.dist = np.full((n_a, self.k), np.inf)
        self.index = np.full((n_a, self.k), -1, dtype=np.int64)

    def _merge(self, rows: slice, cols: slice, block: np.ndarray) -> None:
        if self.symmetric:
            block = block.copy()
            i, j = np.nonzero(np.arange(rows.start, rows.stop)[:, None] == np.arange(cols.start, cols.stop))
            block[i, j] = np.inf
        dist = np.concatenate([self.dist[rows], block], axis=1)
        index = np.concatenate([self.index[rows], np.broadcast_to(np.arange(cols.start, cols.stop), block.shape)],
                               axis=1)
        order = np.argsort(dist, axis=1, kind="stable")[:, : self.k]
        self.dist[rows] = np.take_along_axis(dist, order, axis=1)
        self.index[rows] = np.take_along_axis(index, order, axis=1)

    def __call__(self, rows: slice, cols: slice, block: np.ndarray) -> None:
        self._merge(rows, cols, block)
        if self.symmetric and rows != cols:
            self._merge(cols, rows, block.T)

    def state(self) -> dict[str, np.ndarray]:
        return {"dist": self.dist, "index": self.index}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.dist, self.index = state["dist"], state["index"]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self.dist, self.index


class DistanceHistogram:
    """Counts of the distances of all distinct pairs (i < j for one set) in fixed `bins` (edges);
    values outside the edges are counted in ``underflow`` / ``overflow``."""

    def __init__(self, bins: np.ndarray):
        self.bins = np.asarray(bins, dtype=np.float64)

    def start(self, n_a: int, n_b: int, symmetric: bool) -> None:
        self.symmetric = symmetric
        self.counts = np.zeros(len(self.bins) + 1, dtype=np.int64)  # [underflow, bins..., overflow]

    def __call__(self, rows: slice, cols: slice, block: np.ndarray) -> None:
        values = block
        if self.symmetric and rows == cols:
            values = block[np.triu_indices(len(block), k=1)]
        self.counts += np.bincount(np.searchsorted(self.bins, values.ravel(), side="right"),
                                   minlength=len(self.counts))[: len(self.counts)]

    def state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.counts = state["counts"]

    def result(self) -> dict[str, np.ndarray | int]:
        return {"edges": self.bins, "counts": self.counts[1:-1], "underflow": int(self.counts[0]),
                "overflow": int(self.counts[-1])}


class _Several:
    """Several handlers fed the same tiles; ``result()`` is the list of their results."""

    def __init__(self, handlers: list[TileHandler]):
        self.handlers = handlers

    def start(self, n_a: int, n_b: int, symmetric: bool) -> None:
        for h in self.handlers:
            h.start(n_a, n_b, symmetric)

    def __call__(self, rows: slice, cols: slice, block: np.ndarray) -> None:
        for h in self.handlers:
            h(rows, cols, block)

    def state(self) -> dict[str, np.ndarray]:
        return {f"{i}/{k}": v for i, h in enumerate(self.handlers) for k, v in h.state().items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for i, h in enumerate(self.handlers):
            h.load_state({k.split("/", 1)[1]: v for k, v in state.items() if k.split("/", 1)[0] == str(i)})

    def result(self) -> list[Any]:
        return [h.result() for h in self.handlers]


def _save(path: Path, done: set[tuple[int, int]], state: dict[str, np.ndarray], meta: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    # Any values: savez's stub has a keyword `allow_pickle: bool`, which mypy matches a **dict of arrays against
    arrays: dict[str, Any] = {f"handler/{k}": v for k, v in state.items()}
    np.savez(tmp, done=np.array(sorted(done), dtype=np.int64).reshape(-1, 2), meta=meta, **arrays)
    os.replace(tmp, path)


def _tile_pairs(n_rows: int, n_cols: int, diagonal: bool) -> int:
    return n_rows * (n_rows - 1) // 2 if diagonal else n_rows * n_cols


def stream_tiles(make_tiles: Callable[[set[tuple[int, int]]], Tiles], n_a: int, n_b: int, symmetric: bool,
                 handler: TileHandler | list[TileHandler], meta: dict[str, Any], checkpoint: str | Path | None = None,
                 checkpoint_every: float = 60.0, progress: Progress | None = None) -> Any:
    """Feed every tile of `make_tiles(skip)` to `handler` (or each of a list) and return its ``result()``.

    `meta` (sizes, p, R, ``block_size``, ...) is stored in the checkpoint; a checkpoint made with other
    arguments is an error, not silently reused. `progress(done_pairs, total_pairs, {})` after each tile.
    """
    if isinstance(handler, list | tuple):
        handler = _Several(list(handler))
    handler.start(n_a, n_b, symmetric)
    meta_arr = np.array(repr(sorted(meta.items())))
    done: set[tuple[int, int]] = set()
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        with np.load(path) as saved:
            if str(saved["meta"]) != str(meta_arr):
                raise ValueError(f"{path}: checkpoint of another stream ({saved['meta']}); delete it to restart")
            done = {(int(r), int(c)) for r, c in saved["done"]}
            handler.load_state({k.split("/", 1)[1]: saved[k] for k in saved.files if k.startswith("handler/")})
    total = n_a * (n_a - 1) // 2 if symmetric else n_a * n_b
    bs = int(meta["block_size"])
    pairs = sum(_tile_pairs(min(bs, n_a - r), min(bs, n_b - c), symmetric and r == c) for r, c in done)
    last = time.monotonic()
    for rows, cols, block in make_tiles(done):
        handler(rows, cols, block)
        done.add((rows.start, cols.start))
        if progress is not None:
            n_rows, n_cols = block.shape
            pairs += _tile_pairs(n_rows, n_cols, symmetric and rows == cols)
            progress(pairs, total, {})
        if path is not None and time.monotonic() - last > checkpoint_every:
            _save(path, done, handler.state(), meta_arr)
            last = time.monotonic()
    if path is not None:
        _save(path, done, handler.state(), meta_arr)
    return handler.result()
