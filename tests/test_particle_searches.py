"""Specifications for the particle-level resonant searches (LHCO 2101.08320): particle graph AE, VRNN, EMD AE,
LDA on the Lund plane.

The toy has constituents, built directly in numpy: background jets are one-prong clouds (a hard core and soft,
wide radiation), signal jets two (X, 500 GeV) or three (Y) hard prongs, from a narrow 3.5 TeV resonance; mjj
falls as a power law on 2.9-4.3 TeV. The searches see no labels; labels only grade them.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from jetad.data.sample import JetSample, SchemaError, jet_four_vectors
from jetad.searches.emd_ae import EMDAutoencoder, batched_assignment_cost
from jetad.searches.graph_ae import ParticleGraphAE
from jetad.searches.lund_lda import LundLDA, fit_lda, lda_topic_weights, lund_word_counts, primary_lund_declusterings
from jetad.searches.particle_view import ParticleSearch, dijet_particles, relative_particles
from jetad.searches.vrnn import ParticleVRNN
from test_weak_supervision import sr_auc


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def _jet_constituents(rng: np.random.Generator, pt: np.ndarray, n_prongs: np.ndarray, n_max: int) -> tuple:
    """(n, n_max, 4) constituents (pT, eta, phi, E), pT-sorted, and the mask of jets with `n_prongs` prongs each.

    One prong: a leading particle and a wide (0.12) exponential cloud; two / three prongs: narrow (0.04) clouds at
    0.35-0.6 / 0.2-0.35 from the first, sharing the jet pT (Dirichlet); the jet axis at a random (eta, phi).
    """
    n = len(pt)
    mult = np.clip(rng.poisson(np.where(n_prongs == 1, 22, 28)), 6, n_max)
    real = np.arange(n_max)[None] < mult[:, None]
    prong = np.minimum((rng.uniform(size=(n, n_max)) * n_prongs[:, None]).astype(int), n_prongs[:, None] - 1)
    prong[:, :3] = np.minimum(np.arange(3)[None], n_prongs[:, None] - 1)  # every prong has a particle
    share = np.where(np.arange(3)[None] < n_prongs[:, None], rng.dirichlet(np.full(3, 2.0), n), 0.0)
    share /= share.sum(1, keepdims=True)
    sep = np.where(n_prongs == 2, rng.uniform(0.35, 0.6, n), rng.uniform(0.2, 0.35, n)) * (n_prongs > 1)
    turn0 = rng.uniform(0, 2 * np.pi, n)
    centers = np.stack([np.stack([r * np.cos(turn0 + t), r * np.sin(turn0 + t)], 1)
                        for r, t in ((0 * sep, 0.0), (sep, 0.0), (sep, 2.1))], 1)  # (n, 3 prongs, 2)
    width = np.where(n_prongs == 1, 0.12, 0.04)[:, None]
    radius, turn = rng.exponential(1.0, (n, n_max)) * width, rng.uniform(0, 2 * np.pi, (n, n_max))
    c = np.take_along_axis(centers, prong[..., None].repeat(2, -1), axis=1)
    deta, dphi = c[..., 0] + radius * np.cos(turn), c[..., 1] + radius * np.sin(turn)
    w = np.where(real, rng.gamma(0.6, 1.0, (n, n_max)) + 1e-3, 0.0)
    w[:, 0] += np.where(n_prongs == 1, 3.0, 0.0) * real[:, 0]  # the one-prong core
    in_prong = np.stack([(w * (prong == j)).sum(1) for j in range(3)], 1)
    frac = w / np.maximum(np.take_along_axis(in_prong, prong, 1), 1e-12) * np.take_along_axis(share, prong, 1)
    p_t = pt[:, None] * frac / frac.sum(1, keepdims=True)
    eta0, phi0 = rng.uniform(-1.0, 1.0, (n, 1)), rng.uniform(-np.pi, np.pi, (n, 1))
    eta, phi = eta0 + deta, (phi0 + dphi + np.pi) % (2 * np.pi) - np.pi
    const = np.stack([p_t, eta, phi, p_t * np.cosh(eta)], -1) * real[..., None]
    order = np.argsort(-np.where(real, p_t, -1.0), axis=1, kind="stable")
    return np.take_along_axis(const, order[..., None], 1), np.take_along_axis(real, order, 1)


def toy_particle_dijets(n_bkg: int, n_sig: int, seed: int, n_max: int = 40) -> JetSample:
    """Shuffled toy dijet events with both jets' constituents (event j2_constituents / j2_mask), mjj [GeV]."""
    rng = np.random.default_rng(seed)
    lo, hi, a = 2900.0, 4300.0, 6.0
    mjj = np.r_[(lo**-a - rng.uniform(size=n_bkg) * (lo**-a - hi**-a)) ** (-1 / a), rng.normal(3500.0, 60.0, n_sig)]
    n = len(mjj)
    label = np.r_[np.zeros(n_bkg, int), np.ones(n_sig, int)]
    x_first = rng.uniform(size=n) < 0.5
    prongs1 = np.where(label == 1, np.where(x_first, 2, 3), 1)
    prongs2 = np.where(label == 1, np.where(x_first, 3, 2), 1)
    jets = []
    for prongs in (prongs1, prongs2):
        const, mask = _jet_constituents(rng, mjj / 2, prongs, n_max)
        jets.append((const, mask, jet_four_vectors(const, mask)))
    (c1, m1, j1), (c2, m2, j2) = jets
    event = {"mjj": mjj.astype(np.float32), "j1_m": j1[:, 3], "j2_m": j2[:, 3],
             "j2_constituents": c2.astype(np.float32), "j2_mask": m2}
    sample = JetSample(constituents=c1, mask=m1, jets=j1, label=label, weight=np.ones(n), event=event,
                       attrs={"source": f"particle-toy(seed={seed})"})
    return sample.validate()[rng.permutation(n)]


#: Fast settings per search (small networks, few epochs / iterations).
FAST: dict[str, dict] = {
    "graph_ae": {"n_particles": 16, "hidden": 16, "k": 4, "epochs": 8},
    "emd_ae": {"n_particles": 16, "hidden": 16, "k": 4, "epochs": 8},
    "vrnn": {"n_particles": 16, "epochs": 8},
    "lund_lda": {"max_iter": 20},
}
CLASSES = {"graph_ae": ParticleGraphAE, "emd_ae": EMDAutoencoder, "vrnn": ParticleVRNN, "lund_lda": LundLDA}


def make(name: str, **params) -> ParticleSearch:
    return CLASSES[name](**{"n_folds": 2, "seed": 1, "min_sideband_events": 50, **FAST[name], **params})


@pytest.fixture(scope="module")
def injected():
    """About 750 background and 150 signal events in the SR (S/B ~ 20%): an obvious signal."""
    return toy_particle_dijets(3000, 150, seed=1)


@pytest.fixture(scope="module")
def background_only():
    return toy_particle_dijets(4000, 0, seed=2)


@pytest.fixture(scope="module")
def fitted(injected):
    cache: dict[str, ParticleSearch] = {}

    def get(name: str) -> ParticleSearch:
        if name not in cache:
            cache[name] = make(name).fit(injected)
        return cache[name]

    return get


def test_relative_particles_are_pt_fractions_about_the_jet_axis():
    const = np.zeros((1, 4, 4), np.float32)
    const[0, :3] = [[100, 0.5, 3.1, 0], [300, 0.6, -3.1, 0], [50, 0.4, 3.0, 0]]
    const[0, :3, 3] = const[0, :3, 0] * np.cosh(const[0, :3, 1])
    mask = np.array([[True, True, True, False]])
    parts, kept = relative_particles(const, mask, n_particles=2)
    axis = jet_four_vectors(const, mask)[0]
    assert parts.shape == (1, 2, 3) and kept.all()
    np.testing.assert_allclose(parts[0, :, 0], [300 / 450, 100 / 450], rtol=1e-6)  # pT-sorted, capped at 2
    np.testing.assert_allclose(parts[0, :, 1], [0.6 - axis[1], 0.5 - axis[1]], atol=1e-6)
    assert np.abs(parts[0, :, 2]).max() < 0.2  # phi wraps across +-pi: the particles are close to the axis
    padded, kept = relative_particles(const, mask, n_particles=6)
    assert padded.shape == (1, 6, 3) and kept.sum() == 3 and not padded[0, 3:].any()


def test_both_jets_are_read_from_a_dijet_sample(injected):
    parts, mask = dijet_particles(injected, 10, "toy", "graph_ae")
    assert parts.shape == (len(injected), 2, 10, 3) and mask.shape == (len(injected), 2, 10)
    assert (np.diff(np.where(mask, parts[..., 0], 0.0), axis=-1) <= 1e-7).all()  # pT-sorted per jet
    signal = injected.label == 1
    leading = parts[..., 0, 0]  # the one-prong core carries more of the jet pT than any of two or three prongs
    assert np.median(leading[~signal]) > np.median(leading[signal])


def test_primary_lund_declusterings_follow_the_harder_branch():
    parts = np.array([[[0.7, 0, 0], [0.3, 0.3, 0.4], [0, 0, 0]],
                      [[0.5, 0, 0], [0.3, 0.1, 0], [0.2, 0.5, 0]],
                      [[1.0, 0, 0], [0, 0, 0], [0, 0, 0]]])
    mask = parts[..., 0] > 0
    two, three, one = primary_lund_declusterings(parts, mask)
    np.testing.assert_allclose(two, [[0.5, 0.3 * 0.5]], rtol=1e-6)  # Delta, kT = min pT * Delta
    assert three.shape == (2, 2) and three[0, 0] > three[1, 0]  # C/A: the wide splitting is declustered first
    np.testing.assert_allclose(three[1], [0.1, 0.3 * 0.1], rtol=1e-6)
    np.testing.assert_allclose(three[0, 1], 0.2 * three[0, 0], rtol=1e-6)
    assert one.shape == (0, 2)
    counts = lund_word_counts([two, three, one], n_bins=4)
    assert counts.shape == (3, 16) and counts.sum(axis=1).tolist() == [1, 2, 0]


def test_vectorized_lda_matches_scikit_learn():
    from sklearn.decomposition import LatentDirichletAllocation

    rng = np.random.default_rng(0)
    topics = rng.dirichlet(np.full(12, 0.3), 2)
    mix = rng.dirichlet([0.5, 0.5], 120)
    counts = np.stack([rng.multinomial(20, p) for p in mix @ topics]).astype(float)
    reference = LatentDirichletAllocation(2, learning_method="batch", max_iter=15, random_state=0).fit(counts)
    np.testing.assert_allclose(lda_topic_weights(counts, reference.components_), reference.transform(counts),
                               atol=2e-3)
    lam = fit_lda(counts, 2, max_iter=15, seed=0)
    ours = lda_topic_weights(counts, lam)[:, 0]
    assert abs(np.corrcoef(ours, reference.transform(counts)[:, 0])[0, 1]) > 0.95  # the same topics, any order


def test_batched_assignment_cost_is_the_exact_ot_of_batch_ot():
    import torch

    from jetad.detectors.batch_ot import wasserstein_distance

    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 9, 3, generator=gen), torch.rand(6, 9, 3, generator=gen, requires_grad=True)
    ours = batched_assignment_cost(x, y)
    reference = torch.stack([wasserstein_distance(a, b, kind="emd") for a, b in zip(x, y, strict=True)])
    torch.testing.assert_close(ours, reference)
    (g_ours,) = torch.autograd.grad(ours.sum(), y)
    (g_reference,) = torch.autograd.grad(reference.sum(), y)
    torch.testing.assert_close(g_ours, g_reference)
    assert float(batched_assignment_cost(y.detach()[:, torch.randperm(9, generator=gen)], y.detach()).abs().max()) == 0


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_particle_search_finds_an_injected_resonance(name, fitted, injected):
    search = fitted(name)
    assert search.reads_constituents
    assert sr_auc(search, injected, search.scores_) > (0.6 if name == "vrnn" else 0.8)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_without_signal_a_score_cut_keeps_the_signal_region_fraction(name, background_only):
    search = make(name, seed=2).fit(background_only)
    scores, sr = search.scores_, search.signal_region_
    top = scores > np.quantile(scores, 0.9)
    n, p = top.sum(), sr.mean()
    assert n > 300
    pull = (sr[top].mean() - p) / np.sqrt(p * (1 - p) / n)
    assert abs(pull) < 4, (sr[top].mean(), p, pull)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_a_saved_particle_search_scores_like_the_fitted_one(name, fitted, injected, tmp_path):
    from jetad.searches import load_search

    search = fitted(name)
    new = toy_particle_dijets(300, 30, seed=8)
    loaded = load_search(search.save(tmp_path / f"{name}.pt"))
    assert type(loaded) is type(search) and loaded.get_params() == search.get_params()
    np.testing.assert_array_equal(loaded.score(injected), search.scores_)
    np.testing.assert_allclose(loaded.score(new), search.score(new), rtol=1e-6)
    assert loaded.n_parameters() == search.n_parameters() >= 1


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_the_same_seed_gives_the_same_scores(name):
    data = toy_particle_dijets(900, 30, seed=5)
    fast = {"epochs": 2} if name != "lund_lda" else {"max_iter": 5}
    first, again = make(name, **fast).fit(data), make(name, **fast).fit(data)
    np.testing.assert_array_equal(first.scores_, again.scores_)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_a_sample_without_constituents_is_a_clear_error(name):
    from test_weak_supervision import toy_dijets

    features_only = toy_dijets(2000, 0, seed=3)
    features_only.attrs["source"] = "features_only.h5"
    with pytest.raises(SchemaError, match=rf"features_only\.h5: the {name} search reads both jets' constituents"):
        make(name).fit(features_only)


@pytest.mark.parametrize(("name", "option", "value"), [
    ("graph_ae", "k", 0), ("graph_ae", "scale", -1.0), ("emd_ae", "distance", "sliced"), ("vrnn", "kl_weight", 0.0),
    ("vrnn", "combine", "mean"), ("lund_lda", "n_bins", 1), ("lund_lda", "train_region", "sb"),
    ("graph_ae", "n_particles", 1), ("vrnn", "epochs", 0),
])
def test_bad_options_name_the_option(name, option, value):
    with pytest.raises(ValueError, match=option):
        make(name, **{option: value})


def test_jetad_search_reads_the_constituents_a_particle_search_needs(tmp_path):
    """The command line reads constituents for particle-level searches (and only for them)."""
    from typer.testing import CliRunner

    from jetad.cli import app
    from jetad.data.scores import read_scores
    from jetad.data.store import write_sample

    path = write_sample(tmp_path / "box.h5", toy_particle_dijets(1500, 60, seed=5))
    res = CliRunner().invoke(app, ["search", "lund_lda", str(path), "--set", "max_iter=5", "--set", "n_folds=2",
                                   "-o", str(tmp_path / "scores.h5")])
    assert res.exit_code == 0, res.output
    table = read_scores(tmp_path / "scores.h5")
    assert len(table.score) == 1560 and np.isfinite(table.score).all() and "mjj" in table.observers
