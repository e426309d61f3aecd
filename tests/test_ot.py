"""Specifications for the compiled optimal-transport solver, the streamed pairwise distances and LOT."""

from __future__ import annotations

import numpy as np
import ot
import pytest
from scipy.stats import spearmanr

from jetad.detectors import make_detector
from jetad.physics.emd import pairwise_emd
from jetad.physics.emd_stream import DistanceFile, DistanceHistogram, KNearest
from jetad.physics.linearized_ot import lot_distances, lot_embedding, lot_reference
from jetad.physics.network_simplex import transport


def toy_jets(n: int, p: int, seed: int) -> np.ndarray:
    """(n, p, 4) jets with 2..p constituents (pT-sorted, zero-padded), some straddling phi = +-pi."""
    rng = np.random.default_rng(seed)
    real = np.arange(p)[None] < rng.integers(2, p + 1, n)[:, None]
    pt = np.sort(rng.exponential(20.0, (n, p)), axis=1)[:, ::-1] + 0.5
    eta = rng.uniform(-1, 1, (n, 1)) + rng.normal(0, 0.2, (n, p))
    phi = rng.choice([np.pi - 0.05, 0.3], (n, 1)) + rng.normal(0, 0.2, (n, p))
    phi = np.pi - np.mod(np.pi - phi, 2 * np.pi)
    return np.where(real[..., None], np.stack([pt, eta, phi, pt * np.cosh(eta)], -1), 0.0)


def test_network_simplex_equals_pot_on_random_and_degenerate_problems():
    rng = np.random.default_rng(0)
    for trial in range(300):
        m, n = rng.integers(1, 30, 2)
        a, b = rng.exponential(1, m), rng.exponential(1, n)
        if trial % 4 == 0 and m == n:  # uniform weights: every basis degenerate (assignment problem)
            a, b = np.ones(m), np.ones(n)
        a, b = a / a.sum(), b / b.sum()
        cost = rng.integers(0, 3, (m, n)).astype(float) if trial % 3 == 0 else rng.uniform(0, 1, (m, n))
        value, plan = transport(a, b, cost, plan=True)
        assert value == pytest.approx(ot.emd2(a, b, cost), abs=1e-12)
        np.testing.assert_allclose(plan.sum(1), a, atol=1e-12)
        np.testing.assert_allclose(plan.sum(0), b, atol=1e-12)
        assert (plan >= 0).all() and (plan * cost).sum() == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize(("p", "normalize", "center"), [(1.0, True, True), (0.5, True, True), (2.0, True, True),
                                                        (1.0, False, False), (0.5, True, False)])
def test_exact_pairwise_agrees_with_pot_on_every_pair(p, normalize, center):
    jets = toy_jets(24, 20, seed=1)
    ours = pairwise_emd(jets, p=p, normalize=normalize, center=center)
    ref = pairwise_emd(jets, p=p, normalize=normalize, center=center, solver="pot")
    assert np.abs(ours - ref).max() < 1e-6 * max(1.0, np.abs(ref).max())
    cross = pairwise_emd(jets[:7], jets[7:], p=p, normalize=normalize, center=center, block_size=3)
    np.testing.assert_allclose(cross, ref[:7, 7:], atol=1e-9)


def test_threads_give_the_serial_matrix():
    jets = toy_jets(30, 15, seed=2)
    np.testing.assert_array_equal(pairwise_emd(jets, n_jobs=2, block_size=4), pairwise_emd(jets))


def test_handlers_stream_what_the_matrix_holds(tmp_path):
    jets = toy_jets(23, 12, seed=3)
    full = pairwise_emd(jets)
    bins = np.linspace(0, 1, 21)
    (dist, idx), hist, path = pairwise_emd(jets, block_size=5, handler=[KNearest(3), DistanceHistogram(bins),
                                                                          DistanceFile(tmp_path / "d.h5")])
    off = np.where(np.eye(len(full), dtype=bool), np.inf, full)
    np.testing.assert_allclose(dist, np.sort(off, axis=1)[:, :3])
    np.testing.assert_array_equal(np.take_along_axis(off, idx, 1), dist)
    upper = full[np.triu_indices(len(full), 1)]
    np.testing.assert_array_equal(hist["counts"], np.histogram(upper, bins)[0])
    assert hist["counts"].sum() + hist["underflow"] + hist["overflow"] == len(upper)
    import h5py

    with h5py.File(path) as f:
        np.testing.assert_allclose(f["distances"][:], full, rtol=1e-6)
    nearest, _ = pairwise_emd(jets[:5], jets[5:], handler=KNearest(1))
    np.testing.assert_allclose(nearest[:, 0], full[:5, 5:].min(1))


def test_an_interrupted_stream_resumes_from_its_checkpoint(tmp_path):
    jets = toy_jets(20, 10, seed=4)
    ckpt = tmp_path / "run.npz"
    calls = []

    def stop_after_three(done: int, total: int, logs: dict) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    kw = {"block_size": 4, "checkpoint": ckpt}
    with pytest.raises(KeyboardInterrupt):
        pairwise_emd(jets, handler=[KNearest(2), DistanceHistogram(np.linspace(0, 1, 11))],
                     progress=stop_after_three, checkpoint_every=0.0, **kw)
    assert ckpt.exists()
    seen = []
    (dist, _), hist = pairwise_emd(jets, handler=[KNearest(2), DistanceHistogram(np.linspace(0, 1, 11))],
                                   progress=lambda d, t, logs: seen.append((d, t)), **kw)
    full = pairwise_emd(jets)
    np.testing.assert_allclose(dist, np.sort(np.where(np.eye(20, dtype=bool), np.inf, full), 1)[:, :2])
    assert hist["counts"].sum() + hist["underflow"] + hist["overflow"] == 190
    assert seen[-1] == (190, 190) and seen[0][0] > 0  # the resumed run started past the finished tiles
    with pytest.raises(ValueError, match="checkpoint of another stream"):
        pairwise_emd(jets, p=0.5, handler=KNearest(2), **kw)


def test_lot_distances_track_exact_ones_at_a_fraction_of_the_solves():
    jets = toy_jets(40, 20, seed=5)
    ref = lot_reference(jets, n_points=32)
    assert ref[:, 0].sum() == pytest.approx(1.0)
    emb = lot_embedding(jets, ref)
    d = lot_distances(emb)
    np.testing.assert_array_equal(d, d.T)
    assert (np.diag(d) == 0).all()
    iu = np.triu_indices(len(jets), 1)
    assert spearmanr(d[iu], pairwise_emd(jets)[iu])[0] > 0.9
    np.testing.assert_allclose(pairwise_emd(jets, solver="lot", lot_reference=ref), d)


def test_lot_detector_scores_and_reloads(tmp_path):
    from jetad.data import JetSample

    c = toy_jets(60, 16, seed=6).astype(np.float32)
    sample = JetSample.from_constituents(c, c[..., 0] > 0)
    det = make_detector("emd", solver="lot", lot_points=16, n_reference=40, k=3, n_constituents=16).fit(sample)
    s = det.score(sample)
    assert s.shape == (60,) and np.isfinite(s).all() and (s >= 0).all()
    from jetad.detectors.base import Detector

    path = det.save(tmp_path / "lot.pt")
    np.testing.assert_array_equal(Detector.load(path).score(sample), s)
    with pytest.raises(ValueError, match="solver"):
        make_detector("emd", solver="sinkhorn-typo")
