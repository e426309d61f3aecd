"""Exclusive generalized-kT reclustering of jet constituents: the engine behind soft drop and the n-subjettiness axes.

Each jet's constituents are merged pairwise until one pseudojet remains, with the distance
d_ij = min(pT_i^(2p), pT_j^(2p)) dR_ij^2 (p = 1: kT, p = 0: Cambridge/Aachen) and no beam distance: exclusive
clustering with R -> infinity, as FastJet's exclusive jets with a huge R (checked against FastJet in
tests/test_substructure.py). Two recombination schemes: "E" (four-vector sum; positions are the rapidities and
azimuths of the summed four-vectors) and "wta" (winner-take-all, Larkoski, Neill, Thaler 1401.2158: the merged
pseudojet has pT_i + pT_j and the direction of the harder one, as FastJet's WTA_pt_scheme), which gives the
recoil-free WTA axes of n-subjettiness.

How. As in FastJet's NNH strategy each particle keeps its geometric nearest neighbour, so that the smallest
w_i dR^2_(i, NN(i)) (w = pT^(2p)) is the smallest d_ij; after a merging only the merged particle's row and
the rows that pointed at the pair are recomputed: a step costs O(P), not O(P^2). The bookkeeping (nearest
neighbours over a list of the active particles, mergings, snapshots) is compiled with numba, jet by jet,
argmins keeping numpy's rule (lowest index, NaN first); the transcendental functions (pT,
rapidity, azimuth of each merged pseudojet) are the numpy expressions of `pt_rap_phi`, evaluated once per
merging step on all jets at once. numpy's arcsinh / arctan2 are SIMD (SVML) loops on AVX-512 CPUs and differ
from libm's in the last bit, so computing them in compiled code would change which pair merges at exact ties;
this way every value equals the vectorized-numpy engine's bit for bit (tested jet by jet on QCD and top jets).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

__all__ = ["RECOMBINATIONS", "cluster", "follow_harder_branch", "in_chunks", "leaves_under", "pt_rap_phi",
           "trimmed_width"]

_TWO_PI = 2.0 * np.pi
#: Jets x particles per chunk of `in_chunks`: the numpy temporaries of a chunk stay below 256 KiB.
STEP_ELEMENTS = 30_000


def pt_rap_phi(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pT, rapidity, phi) of (..., 4) four-vectors; transverse mass floored at pT (massless rounding)."""
    px, py, pz, en = p4[..., 0], p4[..., 1], p4[..., 2], p4[..., 3]
    pt = np.hypot(px, py)
    mt = np.sqrt(np.maximum(en**2 - pz**2, pt**2))
    rap = np.arcsinh(np.divide(pz, mt, out=np.zeros_like(pz), where=mt > 0))
    return pt, rap, np.arctan2(py, px)


def _rotate(p4: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Four-vectors (N, ..., 4) rotated in the transverse plane by angle (N,)."""
    c = np.cos(angle).reshape((-1,) + (1,) * (p4.ndim - 2))
    s = np.sin(angle).reshape(c.shape)
    out = p4.copy()
    out[..., 0] = c * p4[..., 0] - s * p4[..., 1]
    out[..., 1] = s * p4[..., 0] + c * p4[..., 1]
    return out


RECOMBINATIONS = ("E", "wta")


def cluster(
    p4: np.ndarray, mask: np.ndarray, kt_power: int, snapshots: tuple[int, ...] = (), recombination: str = "E"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Cluster each jet's constituents pairwise until one pseudojet remains.

    Arguments:
        p4: (N, P, 4) (px, py, pz, E) [GeV], zero where masked.
        mask: (N, P) real constituent.
        kt_power: p of d_ij = min(pT_i^(2p), pT_j^(2p)) dR_ij^2 (1: kT, 0: Cambridge/Aachen).
        snapshots: multiplicities n whose exclusive n-jet configuration is returned.
        recombination: "E" (four-vector sum) or "wta" (winner-take-all: pT sum, direction of the harder,
            1401.2158); it decides the pT and position of a merged pseudojet, hence the clustering sequence.

    Returns:
        node_p4: (N, 2P-1, 4) four-vectors of leaves (0..P-1) and of merged nodes (P + step): the sum of each
            node's constituents (for both recombinations).
        children: (N, max(P-1, 1), 2) the two node ids merged at each step (-1 where a jet had finished).
        root: (N,) node id of the whole jet (-1 for an empty jet).
        snapshots: {n: ((N, n, 4) four-vectors, (N, n) valid)} the exclusive n-jet configuration;
            jets with fewer than n constituents keep all of them (the rest invalid). With "E" the four-vectors
            are the pseudojets'; with "wta" they are the input four-vectors of the winning constituents, whose
            directions are the WTA axes (exactly, not up to rounding).
    """
    if recombination not in RECOMBINATIONS:
        raise ValueError(f"cluster: recombination {recombination!r} is not one of {', '.join(RECOMBINATIONS)}")
    wta = recombination == "wta"
    n_jets, n_part = mask.shape
    mask = np.asarray(mask, dtype=bool)
    # work in the frame where the jet axis has phi = 0, so pairwise phi differences rarely need wrapping
    jet = p4.sum(axis=1)
    jet_phi = np.arctan2(jet[:, 1], jet[:, 0])
    v = _rotate(np.asarray(p4, dtype=np.float64), -jet_phi)
    active = mask.copy()
    count = active.sum(axis=1)
    pt, rap, phi = pt_rap_phi(v)
    w = np.where(active, pt ** (2 * kt_power), 1.0) if kt_power else np.ones_like(pt)  # 1: no 0 * inf
    alive = np.argsort(~active, axis=1, kind="stable")  # each jet's active particles first (swap-removed)
    where = np.argsort(alive, axis=1)  # position of each particle in `alive`
    nn_j, nn_d = _nearest_neighbours(rap, phi, active, alive, count)

    node = np.broadcast_to(np.arange(n_part), (n_jets, n_part)).copy()
    node_p4 = np.zeros((n_jets, 2 * n_part - 1, 4))
    node_p4[:, :n_part] = v
    children = np.full((n_jets, max(n_part - 1, 1), 2), -1, dtype=np.int64)
    root = np.where(count > 0, np.argmax(active, axis=1), -1)
    root = np.where(count >= 2, n_part + count - 2, root)

    snap_n = np.asarray(snapshots, dtype=np.int64)
    snap_p4 = np.zeros((len(snapshots), n_jets, max(snapshots, default=0), 4))
    snap_valid = np.zeros(snap_p4.shape[:3], dtype=bool)
    snap_leaf = np.zeros(snap_p4.shape[:3], dtype=np.int64)  # the winning constituent of each snapshot pseudojet
    winner = np.broadcast_to(np.arange(n_part), (n_jets, n_part)).copy()
    for s, n in enumerate(snapshots):  # jets that start at or below n constituents keep all of them
        rows = np.flatnonzero(count <= n)
        order = np.argsort(~active[rows], axis=1, kind="stable")[:, :n]
        snap_p4[s, rows, : order.shape[1]] = np.take_along_axis(v[rows], order[..., None], axis=1)
        snap_valid[s, rows, : order.shape[1]] = np.take_along_axis(active[rows], order, axis=1)
        snap_leaf[s, rows, : order.shape[1]] = order

    jets, first, second = (np.empty(n_jets, dtype=np.int64) for _ in range(3))
    merged = np.empty((n_jets, 4))
    for step in range(n_part - 1):
        n_merged = _merge_closest(step, v, active, count, alive, where, w, nn_j, nn_d, node, node_p4, children,
                                  jets, first, second, merged)
        if n_merged == 0:
            break
        if wta:
            pt_i, rap_i, phi_i = _winner_take_all(n_merged, jets, first, second, pt, rap, phi, winner)
        else:
            pt_i, rap_i, phi_i = pt_rap_phi(merged[:n_merged])
        w_i = pt_i ** (2 * kt_power) if kt_power else np.ones_like(pt_i)
        _update_neighbours(n_merged, jets, first, second, pt_i, rap_i, phi_i, w_i, v, active, count, alive,
                           pt, rap, phi, w, nn_j, nn_d, snap_n, snap_p4, snap_valid, winner, snap_leaf)

    node_p4 = _rotate(node_p4, jet_phi)
    if wta:
        rows = np.arange(n_jets)[:, None]
        snaps = {n: (np.asarray(p4, dtype=np.float64)[rows, snap_leaf[s, :, :n]], snap_valid[s, :, :n])
                 for s, n in enumerate(snapshots)}
    else:
        snaps = {n: (_rotate(snap_p4[s, :, :n], jet_phi), snap_valid[s, :, :n]) for s, n in enumerate(snapshots)}
    return node_p4, children, root, snaps


@njit(cache=True, nogil=True)
def _winner_take_all(n_merged: int, jets: np.ndarray, first: np.ndarray, second: np.ndarray, pt: np.ndarray,
                     rap: np.ndarray, phi: np.ndarray, winner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pT, rapidity, phi) of the pseudojets merged by `_merge_closest` in the WTA scheme: pT_i + pT_j and the
    position of the harder (i on a tie, as FastJet's WTA_pt_scheme keeps its first argument); `winner` follows."""
    pt_i, rap_i, phi_i = np.empty(n_merged), np.empty(n_merged), np.empty(n_merged)
    for q in range(n_merged):
        b, i, j = jets[q], first[q], second[q]
        hard = i if pt[b, i] >= pt[b, j] else j
        pt_i[q], rap_i[q], phi_i[q] = pt[b, i] + pt[b, j], rap[b, hard], phi[b, hard]
        winner[b, i] = winner[b, hard]
    return pt_i, rap_i, phi_i


@njit(cache=True, nogil=True, inline="always")
def _angle2(y_a: float, phi_a: float, y_b: float, phi_b: float) -> float:
    """(y_a - y_b)^2 + dphi^2 with |dphi| = min(|phi_a - phi_b|, 2 pi - |phi_a - phi_b|), phis in [-pi, pi]."""
    dphi = abs(phi_a - phi_b)
    dphi = min(dphi, _TWO_PI - dphi)
    dy = y_a - y_b
    return dy * dy + dphi * dphi


@njit(cache=True, nogil=True, inline="always")
def _smaller(x: float, best: float) -> bool:
    """x replaces best in a running argmin with numpy's rule: first minimum, a NaN wins and stays."""
    return x < best or (x != x and best == best)


@njit(cache=True, nogil=True, inline="always")
def _before(x: float, m: int, best: float, best_m: int) -> bool:
    """(x, m) replaces (best, best_m) in an argmin over indices m visited in any order, with numpy's result:
    the lowest index of the minimum, a NaN (lowest index) before everything."""
    if x != x:
        return best == best or m < best_m
    return best == best and (x < best or (x == best and m < best_m))


@njit(cache=True, nogil=True, inline="always")
def _nearest(b: int, k: int, rap: np.ndarray, phi: np.ndarray, alive: np.ndarray, n_alive: int) -> tuple[int, float]:
    """Nearest active neighbour of particle k of jet b (index 0, distance inf if none)."""
    best_j, best_d = 0, np.inf
    for p in range(n_alive):
        m = alive[b, p]
        if m != k:
            d = _angle2(rap[b, k], phi[b, k], rap[b, m], phi[b, m])
            if _before(d, m, best_d, best_j):
                best_j, best_d = m, d
    return best_j, best_d


@njit(cache=True, nogil=True)
def _nearest_neighbours(rap: np.ndarray, phi: np.ndarray, active: np.ndarray, alive: np.ndarray,
                        count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nn_j = np.zeros(rap.shape, dtype=np.int64)
    nn_d = np.full(rap.shape, np.inf)
    for b in range(rap.shape[0]):
        for k in range(rap.shape[1]):
            if active[b, k]:
                nn_j[b, k], nn_d[b, k] = _nearest(b, k, rap, phi, alive, count[b])
    return nn_j, nn_d


@njit(cache=True, nogil=True)
def _merge_closest(step, v, active, count, alive, where, w, nn_j, nn_d, node, node_p4, children, jets, first, second,
                   merged):
    """One merging in every jet with >= 2 pseudojets: the pair of smallest w_i dR^2_(i, NN(i)) becomes the
    pseudojet i; returns how many jets merged (their ids, i, j and merged four-vectors in the buffers)."""
    n_part = v.shape[1]
    n = 0
    for b in range(v.shape[0]):
        if count[b] < 2:
            continue
        i, best = 0, np.inf
        for k in range(n_part):
            d = w[b, k] * nn_d[b, k]
            if _smaller(d, best):
                i, best = k, d
        j = nn_j[b, i]
        children[b, step, 0] = node[b, i]
        children[b, step, 1] = node[b, j]
        for c in range(4):
            merged[n, c] = v[b, i, c] + v[b, j, c]
            v[b, i, c] = merged[n, c]
            node_p4[b, n_part + step, c] = merged[n, c]
        node[b, i] = n_part + step
        active[b, j] = False
        nn_d[b, j] = np.inf
        last = alive[b, count[b] - 1]  # swap-remove j from the active list
        alive[b, where[b, j]], where[b, last] = last, where[b, j]
        count[b] -= 1
        jets[n], first[n], second[n] = b, i, j
        n += 1
    return n


@njit(cache=True, nogil=True)
def _update_neighbours(n_merged, jets, first, second, pt_i, rap_i, phi_i, w_i, v, active, count, alive, pt, rap,
                       phi, w, nn_j, nn_d, snap_n, snap_p4, snap_valid, winner, snap_leaf):
    """Nearest-neighbour table after the mergings of `_merge_closest`, and the n-jet snapshots (four-vectors
    and winning constituents).

    Only active particles are visited (inactive rows keep distance inf: nothing to update there)."""
    n_part = v.shape[1]
    for q in range(n_merged):
        b, i, j = jets[q], first[q], second[q]
        pt[b, i], rap[b, i], phi[b, i], w[b, i] = pt_i[q], rap_i[q], phi_i[q], w_i[q]
        best_k, best_d = 0, np.inf
        for p in range(count[b]):  # the merged pseudojet may become a nearer neighbour of every row
            k = alive[b, p]
            if k == i:
                continue
            d = _angle2(rap[b, k], phi[b, k], rap_i[q], phi_i[q])
            if _before(d, k, best_d, best_k):
                best_k, best_d = k, d
            old = nn_j[b, k]
            if d < nn_d[b, k]:
                nn_d[b, k], nn_j[b, k] = d, i
            if old == i or old == j:  # its neighbour was merged: recompute
                nn_j[b, k], nn_d[b, k] = _nearest(b, k, rap, phi, alive, count[b])
        nn_j[b, i], nn_d[b, i] = best_k, best_d
        for s in range(len(snap_n)):
            if count[b] == snap_n[s]:
                m = 0
                for k in range(n_part):
                    if active[b, k]:
                        snap_p4[s, b, m] = v[b, k]
                        snap_valid[s, b, m] = True
                        snap_leaf[s, b, m] = winner[b, k]
                        m += 1


@njit(cache=True, nogil=True)
def follow_harder_branch(root: np.ndarray, passed: np.ndarray, harder: np.ndarray, n_part: int) -> np.ndarray:
    """Decluster from the root along the harder branch until a splitting passes; (N,) node ids reached.

    `passed[b, step]` tells whether the splitting made at `step` passes, `harder[b, step]` is its harder
    child. A leaf (id < P) or an empty jet (-1) is where the walk stops without a passing splitting.
    """
    out = root.copy()
    for b in range(len(root)):
        while out[b] >= n_part and not passed[b, out[b] - n_part]:
            out[b] = harder[b, out[b] - n_part]
    return out


@njit(cache=True, nogil=True)
def leaves_under(children: np.ndarray, node: np.ndarray, n_part: int) -> np.ndarray:
    """(N, P) bool: the leaves (constituents) below node[b] in jet b's clustering tree (none where node < 0).

    `children` as returned by `cluster`; nodes >= P are mergings (step = node - P), nodes < P are leaves.
    """
    out = np.zeros((len(node), n_part), dtype=np.bool_)
    stack = np.empty(n_part + 1, dtype=np.int64)  # a depth-first walk holds at most depth + 1 <= P nodes
    for b in range(len(node)):
        if node[b] < 0:
            continue
        stack[0] = node[b]
        top = 1
        while top > 0:
            top -= 1
            x = stack[top]
            if x < n_part:
                out[b, x] = True
            else:
                stack[top] = children[b, x - n_part, 0]
                stack[top + 1] = children[b, x - n_part, 1]
                top += 2
    return out


def trimmed_width(counts: np.ndarray, n_part: int) -> np.ndarray:
    """Widths to trim padded rows to without changing any row sum bit for bit.

    numpy sums a contiguous row pairwise: blocks of <= 128 split at multiples of 8, each block summed with
    8 interleaved accumulators. Trimming zero padding to a multiple of 8 inside the first block leaves every
    non-zero term in the same accumulator and the same order; wider jets keep the full width.
    """
    leaf = n_part
    while leaf > 128:
        leaf = leaf // 2 - (leaf // 2) % 8
    width = -(-np.maximum(counts, 1) // 8) * 8
    return np.where(width <= leaf, width, n_part).astype(np.int64)


def in_chunks(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], p4: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """fn over chunks of jets of similar multiplicity, each trimmed to its largest multiplicity, sized so
    that the (jets x particles) numpy temporaries stay below 256 KiB (`STEP_ELEMENTS`).

    Sorting by multiplicity and trimming the zero padding makes every chunk as small as the jets it holds
    (about half the time on QCD jets padded to 100, docs/benchmarks/ot.md); each jet's arithmetic is
    unchanged (only trailing zero padding is cut, `trimmed_width`; masks with padding before real
    constituents are not trimmed), so values are identical bit for bit.
    Larger temporaries trigger numpy's temporary elision, whose stack inspection costs ~0.5 ms per operation
    on some systems and made the clustering several times slower.
    """
    counts = mask.sum(axis=1)
    if len(mask) == 0:
        return fn(p4, mask)
    order = np.argsort(counts, kind="stable")
    width = trimmed_width(counts[order], mask.shape[1])
    if not (np.diff(mask.astype(np.int8), axis=1) <= 0).all():  # padding not last (not our schema): no trim
        width[:] = mask.shape[1]
    out: np.ndarray | None = None
    start = 0
    while start < len(order):
        # the largest chunk [start, stop) whose (jets x widest jet) fits the step budget
        fits = (np.arange(1, len(order) - start + 1) * width[start:]) <= STEP_ELEMENTS
        stop = start + max(1, int(np.argmin(fits)) if not fits.all() else len(fits))
        rows = order[start:stop]
        w = int(width[stop - 1])
        res = fn(p4[rows, :w], mask[rows, :w])
        if out is None:
            out = np.zeros((len(mask), *res.shape[1:]), dtype=res.dtype)
        out[rows] = res
        start = stop
    assert out is not None  # at least one chunk ran: len(mask) > 0
    return out
