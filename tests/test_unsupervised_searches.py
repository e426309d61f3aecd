"""Specifications for the unsupervised (per-event) LHC Olympics searches of 2101.08320: PCA, GAN-AE with
DisCo, the BuHuLaSpa-style latent VAE and the regularized likelihood. They learn the features of unlabelled
events (all of them, or the sidebands); labels only grade them."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from jetad.evaluate.distance_correlation import distance_correlation
from jetad.evaluate.metrics import auc
from jetad.searches import load_search
from jetad.searches.gan_ae import GANAESearch
from jetad.searches.inputs import feature_sample
from jetad.searches.latent_vae import LatentVAESearch
from jetad.searches.pca import PCASearch
from jetad.searches.regularized_likelihood import RegularizedLikelihoodSearch
from test_weak_supervision import sr_auc, toy_dijets

SEARCHES = {"pca": PCASearch, "gan_ae": GANAESearch, "latent_vae": LatentVAESearch,
            "regularized_likelihood": RegularizedLikelihoodSearch}
#: Small, fast settings (a few seconds per fit on one thread).
FAST = {"pca": {}, "gan_ae": {"epochs": 8, "patience": 3}, "latent_vae": {"epochs": 8, "patience": 3},
        "regularized_likelihood": {"flow_params": {"transforms": 3, "hidden": (32, 32), "epochs": 8, "patience": 3}}}
NETWORKS = ("gan_ae", "latent_vae", "regularized_likelihood")


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def make(name: str, **params) -> PCASearch | GANAESearch | LatentVAESearch | RegularizedLikelihoodSearch:
    return SEARCHES[name](seed=1, n_folds=2, **(FAST[name] | params))


@pytest.fixture(scope="module")
def injected():
    """About 750 background and 150 signal events in the signal region: an obvious signal."""
    return toy_dijets(3000, 150, seed=11)


@pytest.fixture(scope="module")
def fitted(injected):
    return {name: make(name).fit(injected) for name in NETWORKS}


def correlated_toy(n_bkg: int, n_sig: int, seed: int):
    """Features (a, b, c) of background on the line a = b = c (plus 10% noise); signal off it (b = -a).
    mjj from the dijet toy (signal at 3.5 TeV). Returns (sample, labels)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n_bkg + n_sig)
    sign = np.r_[np.ones(n_bkg), -np.ones(n_sig)]
    x = np.column_stack([a, sign * a, a]) + 0.1 * rng.normal(size=(len(a), 3))
    mjj = np.r_[toy_dijets(n_bkg, 0, seed=seed).event["mjj"], rng.normal(3500.0, 60.0, n_sig)]
    labels = np.r_[np.zeros(n_bkg, int), np.ones(n_sig, int)]
    return feature_sample(x.astype(np.float32), ("a", "b", "c"), mjj, source=f"correlated toy {seed}"), labels


def test_pca_scores_events_off_the_background_subspace_high():
    data, y = correlated_toy(4000, 100, seed=3)
    search = PCASearch(features=("a", "b", "c"), n_components=1, n_folds=2, seed=0).fit(data)
    sr = search.signal_region_
    assert auc(search.scores_[sr & (y == 1)], search.scores_[sr & (y == 0)]) > 0.9
    assert search.models_[0]["components"].shape == (1, 3)


@pytest.mark.parametrize("name", NETWORKS)
def test_search_ranks_an_injected_signal_above_background_in_the_signal_region(name, fitted, injected):
    search = fitted[name]
    assert np.isfinite(search.scores_).all()
    assert sr_auc(search, injected, search.scores_) > 0.75


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_a_score_cut_without_signal_keeps_the_signal_region_fraction(name):
    data = toy_dijets(3000, 0, seed=12)
    search = make(name).fit(data)
    scores, sr = search.scores_, search.signal_region_
    top = scores > np.quantile(scores, 0.9)
    n, p = top.sum(), sr.mean()
    assert n > 250, "ties: the score must be non-trivial for the check to mean anything"
    pull = (sr[top].mean() - p) / np.sqrt(p * (1 - p) / n)
    assert abs(pull) < 4, (sr[top].mean(), p, pull)


@pytest.mark.parametrize("name", NETWORKS)
def test_a_saved_search_scores_identically(name, fitted, injected, tmp_path):
    search, new = fitted[name], toy_dijets(500, 20, seed=13)
    loaded = load_search(search.save(tmp_path / f"{name}.pt"))
    assert type(loaded) is type(search) and loaded.get_params() == search.get_params()
    np.testing.assert_array_equal(loaded.score(injected), search.scores_)
    np.testing.assert_allclose(loaded.score(new), search.score(new), rtol=1e-6)
    assert loaded.n_parameters() == search.n_parameters() > 0


def test_a_saved_pca_scores_identically(injected, tmp_path):
    search = PCASearch(detrend_mjj=True, seed=2, n_folds=3).fit(injected)
    loaded = load_search(search.save(tmp_path / "pca.pt"))
    np.testing.assert_array_equal(loaded.score(injected), search.scores_)
    new = toy_dijets(500, 20, seed=13)
    np.testing.assert_allclose(loaded.score(new), search.score(new), rtol=1e-12)
    assert loaded.n_parameters() == search.n_parameters() > 0


def test_detrending_removes_the_mass_dependence_of_the_pca_score():
    """Jet masses proportional to mjj: the plain PCA score follows mjj, the detrended one much less."""
    data = toy_dijets(6000, 0, seed=14)
    scale = data.event["mjj"] / 3500.0
    data.event["j1_m"], data.event["j2_m"] = data.event["j1_m"] * scale, data.event["j2_m"] * scale
    plain, flat = (PCASearch(detrend_mjj=d, n_folds=2, seed=0).fit(data) for d in (False, True))
    mjj = data.event["mjj"]
    assert distance_correlation(flat.scores_, mjj) < 0.5 * distance_correlation(plain.scores_, mjj)


def test_sideband_training_never_trains_on_the_signal_region(injected):
    search = PCASearch(train_region="sidebands", seed=0, n_folds=2).fit(injected)
    sr = search.signal_region_
    assert (search.fold_[sr] == -1).all()
    for rows in search.training_rows_:
        assert search.sideband_[rows].all()
    assert np.isfinite(search.scores_).all()


def test_gan_ae_stores_only_the_generator_and_its_selection_criterion(fitted):
    model = fitted["gan_ae"].models_[0]
    assert any(k.startswith("encoder.") for k in model["generator"]) and "discriminator" not in model
    assert np.isfinite(model["best_criterion"]) and 1 <= model["epochs_run"] <= FAST["gan_ae"]["epochs"]


def test_latent_vae_decoder_reads_the_mass_next_to_the_latent(fitted):
    search = fitted["latent_vae"]
    first = search.models_[0]["vae"]["decoder.0.weight"]
    assert first.shape[1] == search.latent_dim + 1  # (z, standardized log mjj)
    plain = LatentVAESearch(condition_mjj=False, disco_lambda=0.0)
    assert plain._network().decoder[0].in_features == plain.latent_dim


def test_regularized_likelihood_conditions_its_flow_on_mjj_and_detrends(fitted):
    model = fitted["regularized_likelihood"].models_[0]
    assert model["flow"].condition == "mjj"
    assert np.any(model["trend"]["slope"] != 0) and (model["trend"]["scale_floor"] > 0).all()


@pytest.mark.parametrize(("name", "option", "value"), [
    ("pca", "n_components", 0), ("pca", "n_components", 4), ("pca", "train_region", "sr"),
    ("gan_ae", "alpha", -1.0), ("gan_ae", "eps", 0.0), ("gan_ae", "val_fraction", 1.5), ("gan_ae", "batch_size", 1),
    ("latent_vae", "score_kind", "kl"), ("latent_vae", "beta", 0.0), ("latent_vae", "disco_lambda", -1.0),
    ("latent_vae", "latent_dim", 0),
    ("regularized_likelihood", "score_kind", "nll"), ("regularized_likelihood", "flow_params", [1]),
    ("regularized_likelihood", "features", ("mjj", "mj1")), ("regularized_likelihood", "ae_params", "small"),
])
def test_bad_options_are_a_value_error_naming_the_option(name, option, value):
    with pytest.raises(ValueError, match=option):
        SEARCHES[name](**{option: value})
