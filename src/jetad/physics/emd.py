"""Energy Mover's Distance and Wasserstein-p distances between jets (1902.02346), exact or linearized.

Definitions (theta_ij = dR_ij / R, dR over (eta, phi) with phi differences wrapped; f_ij >= 0 a plan):

- ``normalize=True`` (the default, the usual choice for anomaly scores): the weights are pT fractions
  z_i = pT_i / sum pT, the plan moves all of z onto z' (sum_j f_ij = z_i, sum_i f_ij = z'_j), and

      W_p = (min_f sum_ij f_ij theta_ij^p)^(1/p)   for p >= 1,
      W_p =  min_f sum_ij f_ij theta_ij^p           for 0 < p < 1.

  W_1 is the normalized EMD. For p < 1 no outer 1/p power is taken: theta^p is itself a metric for
  0 < p <= 1, so min sum f theta^p is the 1-Wasserstein distance in that metric and obeys the triangle
  inequality, while its 1/p power would not. W_{1/2} (cost sqrt(dR / R)) weighs small displacements more
  than W_1 and is the second metric of the jet-anomaly references (2007.01850-style EMD-to-medoid scores;
  the latent-space comparisons quoted in DESIGN.md).
- ``normalize=False`` (p = 1 only): the EMD of 1902.02346 in GeV,
  EMD = min_f sum_ij f_ij theta_ij + |sum pT - sum pT'| with sum_ij f_ij = min(sum pT, sum pT'),
  computed as a balanced problem with a dummy particle of pT |sum pT - sum pT'| at theta = 1 from
  everything. It is a metric when R is at least half the largest dR in the jets.

Jets are given as a (N, P, >=3) array of (pT [GeV], eta, phi, ...) with zero-pT padding, a list of
(P_i, >=3) arrays, or a `JetSample`; event-level inputs are the same arrays with all particles of an event.
With ``center=True`` (default) each jet is moved to its pT-weighted centroid
(`images.preprocess_constituents`), so distances compare shapes, not positions; ``align=True`` also rotates
and flips as for jet images (use it with the `average_jet` reference, which is aligned).

Solvers (``solver=``): ``"exact"`` (default) the compiled network simplex of `jetad.physics.network_simplex`
over whole tiles of pairs (`jetad.physics.emd_pairs`), equal to POT's `ot.emd2` to 1e-12 and faster than the
`wasserstein` C++ library; ``"pot"`` POT's `ot.emd2` per pair (the reference); ``"lot"`` linearized optimal
transport (2008.08604, `jetad.physics.linearized_ot`): one exact solve per jet against a reference, then
cheap distances between the embeddings (approximate; its cost is measured in docs/benchmarks/ot.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jetad.data import JetSample
from jetad.data.progress import Progress
from jetad.physics.emd_pairs import FlatJets, flat_jets, iter_tiles, pair_distance_pot, tile_distances
from jetad.physics.emd_stream import DistanceMatrix, TileHandler, stream_tiles
from jetad.physics.images import jet_images, preprocess_constituents

__all__ = [
    "SOLVERS",
    "KMedoids",
    "average_jet",
    "emd",
    "emd_to_medoids",
    "emd_to_reference",
    "iter_pairwise_emd",
    "kmedoids",
    "pairwise_emd",
]

SOLVERS = ("exact", "pot", "lot")
Jets = np.ndarray | Sequence[np.ndarray] | JetSample


def _as_padded(jets: Jets) -> tuple[np.ndarray, np.ndarray]:
    """(pt, eta, phi) stacked as (N, P, 3) float64 and the (N, P) mask of real (pT > 0) particles."""
    if isinstance(jets, JetSample):
        arr = np.where(jets.mask[..., None], jets.constituents[..., :3], 0.0).astype(np.float64)
    elif isinstance(jets, np.ndarray) and jets.ndim == 3:
        arr = jets[..., :3].astype(np.float64)
    else:
        items = [np.asarray(j, dtype=np.float64).reshape(-1, np.shape(j)[-1])[:, :3] for j in jets]
        arr = np.zeros((len(items), max((len(j) for j in items), default=0), 3))
        for i, j in enumerate(items):
            arr[i, : len(j)] = j
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(
            f"emd: jets have shape {arr.shape}, expected (N, P, >=3) columns (pT, eta, phi, ...)"
        )
    return arr, arr[..., 0] > 0


def _prepare(jets: Jets, center: bool, align: bool, normalize: bool) -> FlatJets:
    arr, real = _as_padded(jets)
    pt, eta, phi = arr[..., 0], arr[..., 1], arr[..., 2]
    if center or align:
        eta, phi = preprocess_constituents(pt, eta, phi, real, rotate=align, flip=align)
    return flat_jets(pt, eta, phi, real, normalize)


def _check(p: float, R: float, normalize: bool, solver: str = "exact") -> None:
    if p <= 0 or R <= 0:
        raise ValueError(f"emd: need p > 0 and R > 0, got p={p}, R={R}")
    if not normalize and p != 1:
        raise ValueError(f"emd: normalize=False (EMD in GeV) is defined for p=1 only, got p={p}")
    if solver not in SOLVERS:
        raise ValueError(f"emd: solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "lot" and not normalize:
        raise ValueError("emd: solver='lot' needs normalize=True (it transports pT fractions)")


def emd(
    jet_a: np.ndarray,
    jet_b: np.ndarray,
    p: float = 1.0,
    R: float = 0.8,
    normalize: bool = True,
    center: bool = True,
    align: bool = False,
) -> float:
    """EMD / W_p between two jets given as (P, >=3) arrays of (pT [GeV], eta, phi, ...) (1902.02346).

    Dimensionless for ``normalize=True``, GeV for ``normalize=False``; see the module docstring.
    """
    _check(p, R, normalize)
    a, b = _prepare([jet_a], center, align, normalize), _prepare([jet_b], center, align, normalize)
    return float(tile_distances(a, slice(0, 1), b, slice(0, 1), p, R, not normalize, not (center or align))[0, 0])


def iter_pairwise_emd(
    jets_a: Jets,
    jets_b: Jets | None = None,
    p: float = 1.0,
    R: float = 0.8,
    normalize: bool = True,
    center: bool = True,
    align: bool = False,
    block_size: int = 256,
    n_jobs: int = 1,
) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Stream the exact pairwise distance matrix as tiles ``(rows, cols, block)`` without holding N^2 values.

    Like wasserstein.PairwiseEMD with a handler: memory is O(block_size^2) per tile in flight. When
    ``jets_b`` is None the matrix is symmetric and only tiles on or above the diagonal are yielded
    (``cols.start >= rows.start``); mirror them for the rest. ``n_jobs > 1`` computes tiles in that many
    threads (the compiled solver releases the GIL; ``n_jobs <= 0``: one per core).
    """
    _check(p, R, normalize)
    prep_a = _prepare(jets_a, center, align, normalize)
    prep_b = None if jets_b is None else _prepare(jets_b, center, align, normalize)
    threads = _threads(n_jobs)
    return iter_tiles(prep_a, prep_b, p, R, not normalize, not (center or align),
                      _block(len(prep_a), block_size, threads), threads)


def _threads(n_jobs: int) -> int:
    import os

    return n_jobs if n_jobs > 0 else (os.cpu_count() or 1)


def _block(n_a: int, block_size: int, n_jobs: int) -> int:
    """Tile size: `block_size`, smaller when that leaves fewer than ~4 tiles per thread (load balance)."""
    if n_jobs <= 1:
        return block_size
    return max(8, min(block_size, -(-n_a // (3 * n_jobs))))


def _pot_tiles(a: FlatJets, b: FlatJets | None, p: float, R: float, gev: bool, wrap: bool, block_size: int,
               skip: set[tuple[int, int]]) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """POT's `ot.emd2` per pair, the same tiles (the reference the compiled solver is checked against)."""
    from jetad.physics.emd_pairs import tiles

    other = a if b is None else b
    for rows, cols in tiles(len(a), None if b is None else len(b), block_size):
        if (rows.start, cols.start) in skip:
            continue
        block = np.zeros((rows.stop - rows.start, cols.stop - cols.start))
        for i in range(rows.start, rows.stop):
            for j in range(cols.start, cols.stop):
                if b is None and j <= i:
                    continue
                block[i - rows.start, j - cols.start] = pair_distance_pot(a.jet(i), other.jet(j), p, R, gev, wrap)
        if b is None and rows == cols:
            block = np.triu(block, 1) + np.triu(block, 1).T
        yield rows, cols, block


def pairwise_emd(
    jets_a: Jets,
    jets_b: Jets | None = None,
    p: float = 1.0,
    R: float = 0.8,
    normalize: bool = True,
    center: bool = True,
    align: bool = False,
    n_jobs: int = 1,
    block_size: int = 256,
    handler: TileHandler | list[TileHandler] | None = None,
    checkpoint: str | Path | None = None,
    progress: Progress | None = None,
    solver: str = "exact",
    lot_reference: np.ndarray | None = None,
    checkpoint_every: float = 60.0,
) -> Any:
    """(N_a, N_b) matrix of EMD / W_p distances (N_a x N_a, symmetric, zero diagonal if ``jets_b`` is None).

    With a `handler` (`emd_stream.DistanceFile`, `KNearest`, `DistanceHistogram`, ..., or a list of them) the
    tiles are streamed into it and ``handler.result()`` is returned: no N^2 matrix in memory. `checkpoint` (a path)
    makes the stream resumable (saved every `checkpoint_every` seconds and at the end; a rerun skips the
    finished tiles); `progress(done_pairs, total_pairs, {})` is called after each tile.
    ``solver="lot"`` uses linearized OT against `lot_reference` (default: `linearized_ot.lot_reference`
    of the jets themselves).
    """
    _check(p, R, normalize, solver)
    symmetric = jets_b is None
    n_a = len(jets_a)
    n_b = n_a if jets_b is None else len(jets_b)
    threads = _threads(n_jobs)
    block_size = _block(n_a, block_size, threads) if solver == "exact" else block_size
    meta = {"n_a": n_a, "n_b": n_b, "p": p, "R": R, "normalize": normalize, "center": center, "align": align,
            "block_size": block_size, "solver": solver}
    if solver == "lot":
        from jetad.physics.linearized_ot import lot_embedding, lot_tiles
        from jetad.physics.linearized_ot import lot_reference as make_reference

        ref = make_reference(jets_a, R=R, center=center, align=align) if lot_reference is None else lot_reference
        emb_a = lot_embedding(jets_a, ref, p=p, R=R, center=center, align=align, n_jobs=n_jobs)
        emb_b = None if jets_b is None else lot_embedding(jets_b, ref, p=p, R=R, center=center, align=align,
                                                     n_jobs=n_jobs)

        def make(skip: set[tuple[int, int]]) -> Iterator[tuple[slice, slice, np.ndarray]]:
            return lot_tiles(emb_a, emb_b, p, block_size, skip)
    else:
        prep_a = _prepare(jets_a, center, align, normalize)
        prep_b = None if jets_b is None else _prepare(jets_b, center, align, normalize)
        wrap = not (center or align)

        def make(skip: set[tuple[int, int]]) -> Iterator[tuple[slice, slice, np.ndarray]]:
            if solver == "pot":
                return _pot_tiles(prep_a, prep_b, p, R, not normalize, wrap, block_size, skip)
            return iter_tiles(prep_a, prep_b, p, R, not normalize, wrap, block_size, threads, skip)

    return stream_tiles(make, n_a, n_b, symmetric, DistanceMatrix() if handler is None else handler, meta,
                        checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress)


def emd_to_reference(
    jets: Jets,
    reference: np.ndarray,
    p: float = 1.0,
    R: float = 0.8,
    normalize: bool = True,
    center: bool = True,
    align: bool = False,
    n_jobs: int = 1,
    solver: str = "exact",
) -> np.ndarray:
    """(N,) distance of each jet to one reference jet, a (P_ref, >=3) array (e.g. `average_jet`).

    The reference goes through the same centring/alignment as the jets.
    """
    return pairwise_emd(jets, [reference], p, R, normalize, center, align, n_jobs=n_jobs, solver=solver)[:, 0]


def average_jet(
    jets: Jets,
    method: str = "image",
    align: bool = True,
    size: int = 40,
    extent: float = 0.8,
) -> np.ndarray:
    """The pT-weighted average jet as a (M, 3) array of (pT fraction, eta, phi) "particles" summing to 1.

    Jets are centred on their centroids (and rotated/flipped if ``align``) first, then averaged:

    - ``"image"``: the mean of the unit-normalized size x size jet images; each non-empty pixel becomes a
      particle at the pixel centre (at most size^2 particles, resolution 2 extent / size).
    - ``"concat"``: every constituent of every jet, weighted by its pT fraction / N (exact, but
      N * P particles: use it for small N).

    Compare jets with it using `emd_to_reference(..., align=align)` so both sides share the frame.
    """
    arr, real = _as_padded(jets)
    pt = np.where(real, arr[..., 0], 0.0)
    x, y = preprocess_constituents(pt, arr[..., 1], arr[..., 2], real, rotate=align, flip=align)
    if method == "image":
        image = jet_images(pt, x, y, real, size=size, extent=extent, preprocess=False).mean(axis=0)
        centres = -extent + (np.arange(size) + 0.5) * (2 * extent / size)
        iy, ix = np.nonzero(image)
        weights = image[iy, ix].astype(np.float64)
        return np.stack([weights / weights.sum(), centres[ix], centres[iy]], axis=1)
    if method == "concat":
        frac = pt / pt.sum(axis=1, keepdims=True) / len(pt)
        return np.stack([frac[real], x[real], y[real]], axis=1)
    raise ValueError(f"average_jet: method must be 'image' or 'concat', got {method!r}")


class KMedoids(NamedTuple):
    """Result of `kmedoids`: medoid row indices (k,), cluster label per point (N,), total distance."""

    medoids: np.ndarray
    labels: np.ndarray
    cost: float


def kmedoids(distance_matrix: np.ndarray, k: int, seed: int = 0, max_iter: int = 100) -> KMedoids:
    """k-medoids on a precomputed (N, N) distance matrix: k-medoids++ seeding, then alternating updates.

    Alternate (assign every point to its nearest medoid; move each medoid to the member with the smallest
    summed distance to its cluster) until the medoids stop changing. Deterministic for a given seed.
    """
    d = np.asarray(distance_matrix, dtype=np.float64)
    n = len(d)
    if d.shape != (n, n) or not 1 <= k <= n:
        raise ValueError(f"kmedoids: need a square matrix and 1 <= k <= N, got shape {d.shape}, k={k}")
    rng = np.random.default_rng(seed)
    medoids = [int(rng.integers(n))]
    for _ in range(1, k):
        candidates = np.setdiff1d(np.arange(n), medoids)
        nearest = d[np.ix_(candidates, np.asarray(medoids))].min(axis=1)
        prob = nearest / nearest.sum() if nearest.sum() > 0 else None
        medoids.append(int(rng.choice(candidates, p=prob)))
    med = np.array(medoids)
    for _ in range(max_iter):
        labels = d[:, med].argmin(axis=1)
        new = med.copy()
        for c in range(k):
            members = np.flatnonzero(labels == c)
            if len(members):
                new[c] = members[d[np.ix_(members, members)].sum(axis=1).argmin()]
        if np.array_equal(new, med):
            break
        med = new
    labels = d[:, med].argmin(axis=1)
    return KMedoids(med, labels, float(d[np.arange(n), med[labels]].sum()))


def emd_to_medoids(
    jets: Jets,
    medoids: Jets,
    p: float = 1.0,
    R: float = 0.8,
    normalize: bool = True,
    center: bool = True,
    align: bool = False,
    n_jobs: int = 1,
    solver: str = "exact",
    lot_reference: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) distance of each jet to the nearest medoid jet: an EMD anomaly score (2007.01850-style).

    Pick the medoids with `kmedoids` on a background `pairwise_emd` matrix, e.g.
    ``emd_to_medoids(sample, background[kmedoids(D, k).medoids])``. Streams (`KNearest(1)`): memory O(N).
    """
    from jetad.physics.emd_stream import KNearest

    dist, _ = pairwise_emd(jets, medoids, p, R, normalize, center, align, n_jobs=n_jobs, handler=KNearest(1),
                           solver=solver, lot_reference=lot_reference)
    return dist[:, 0]
