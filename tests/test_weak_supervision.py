"""Specifications for the weakly supervised resonant searches (CWoLa hunting, CATHODE/ANODE, Tag N' Train, QUAK).

Toy dijet events, built directly: background mjj from a falling power law on 2.9-4.3 TeV with jet masses
(lognormal, median slowly rising with mjj) and tau21 (Gaussian) per jet; signal a narrow 3.5 TeV resonance to
jets of 100 and 500 GeV with low tau21. The searches see no labels; labels only grade them.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from jetad.data.sample import JetSample, SchemaError
from jetad.evaluate.metrics import auc, max_sic
from jetad.searches import SEARCHES, make_search
from jetad.searches.cathode import CathodeSearch
from jetad.searches.classifiers import ClassifierEnsemble, fit_classifier
from jetad.searches.cwola import CWoLaHunting
from jetad.searches.inputs import search_features
from jetad.searches.quak import QUAK
from jetad.searches.tag_n_train import TagNTrain

SMALL_FLOW = {"transforms": 3, "hidden": (32, 32), "epochs": 15, "lr": 2e-3, "patience": 5}
SMALL_AE = {"epochs": 10}


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def toy_dijets(n_bkg: int, n_sig: int, seed: int, mjj_range: tuple[float, float] = (2900.0, 4300.0)) -> JetSample:
    """Shuffled toy dijet events: event mjj, j1_m, j2_m [GeV] (j1 = leading, random vs mass), features tau21s."""
    rng = np.random.default_rng(seed)
    lo, hi = mjj_range
    a = 6.0  # dN/dm ~ m^-(a+1)
    mjj_b = (lo**-a - rng.uniform(size=n_bkg) * (lo**-a - hi**-a)) ** (-1 / a)
    scale = (mjj_b / 3500.0) ** 0.2
    ma, mb = (rng.lognormal(np.log(100 * scale), 0.7) for _ in range(2))
    ta, tb = (np.clip(rng.normal(0.6 + 0.005 * (mjj_b - 3500) / 500, 0.15), 0.05, 1.0) for _ in range(2))
    mjj_s = rng.normal(3500.0, 60.0, n_sig)
    mx, my = rng.normal(500.0, 25.0, n_sig), rng.normal(100.0, 8.0, n_sig)
    tx, ty = (np.clip(rng.normal(0.35, 0.1, n_sig), 0.05, 1.0) for _ in range(2))
    swap = rng.uniform(size=n_sig) < 0.5
    m1, m2 = np.r_[ma, np.where(swap, my, mx)], np.r_[mb, np.where(swap, mx, my)]
    t1, t2 = np.r_[ta, np.where(swap, ty, tx)], np.r_[tb, np.where(swap, tx, ty)]
    mjj = np.r_[mjj_b, mjj_s]
    n = len(mjj)
    jets = np.zeros((n, 4), np.float32)
    jets[:, 0], jets[:, 3] = mjj / 2, m1
    sample = JetSample(
        constituents=np.zeros((n, 0, 4)), mask=np.zeros((n, 0), bool), jets=jets,
        label=np.r_[np.zeros(n_bkg, int), np.ones(n_sig, int)], weight=np.ones(n),
        features={"tau21": t1, "j2_tau21": t2}, event={"mjj": mjj, "j1_m": m1, "j2_m": m2},
        attrs={"source": f"toy(seed={seed})"},
    )
    return sample[rng.permutation(n)]


def sr_auc(search, sample: JetSample, scores: np.ndarray | None = None) -> float:
    """Truth-label AUC of signal vs background among the sample's signal-region events."""
    scores = search.score(sample) if scores is None else scores
    sr = search.regions(sample.event["mjj"])[0]
    y, s = sample.label[sr], scores[sr]
    return auc(s[y == 1], s[y == 0])


@pytest.fixture(scope="module")
def injected():
    """About 2500 background and 150 signal events in the SR: S/B ~ 6%."""
    return toy_dijets(10_000, 150, seed=1)


@pytest.fixture(scope="module")
def background_only():
    return toy_dijets(10_000, 0, seed=2)


@pytest.fixture(scope="module")
def held_out():
    return toy_dijets(3000, 300, seed=99)


@pytest.fixture(scope="module")
def cwola(injected):
    return CWoLaHunting(seed=1).fit(injected)


@pytest.fixture(scope="module")
def cathode(injected):
    return CathodeSearch(seed=1, flow_params=SMALL_FLOW, oversampling=2).fit(injected)


def test_toy_has_the_requested_injection(injected):
    sr = CWoLaHunting().regions(injected.event["mjj"])[0]
    s_over_b = injected.label[sr].sum() / (1 - injected.label[sr]).sum()
    assert 0.04 < s_over_b < 0.1


def test_cwola_finds_an_injected_resonance(cwola, injected):
    area = sr_auc(cwola, injected, cwola.scores_)
    sr = cwola.signal_region_
    y, s = injected.label[sr], cwola.scores_[sr]
    assert area > 0.7
    assert max_sic(s[y == 1], s[y == 0]) > 2.0


@pytest.mark.parametrize("name", ["cwola", "cathode"])
def test_without_signal_weak_supervision_invents_none(name, background_only, held_out):
    search = {
        "cwola": lambda: CWoLaHunting(seed=2),
        "cathode": lambda: CathodeSearch(seed=2, flow_params=SMALL_FLOW, oversampling=2),
    }[name]().fit(background_only)
    if isinstance(search, CathodeSearch):
        # Data vs imperfect flow samples: the per-fold ensemble's out-of-bag test detects the small flow's
        # mismodelling of this toy (it need not score like the constant), but it must not rank a signal up.
        assert sr_auc(search, held_out) < 0.6
    else:
        assert abs(sr_auc(search, held_out) - 0.5) < 0.1
    if isinstance(search, CWoLaHunting):  # out-of-fold: no memorized SR events
        assert abs(auc(search.scores_[search.signal_region_], search.scores_[search.sideband_]) - 0.5) < 0.05


def test_cathode_finds_an_injected_resonance(cathode, injected):
    assert sr_auc(cathode, injected, cathode.scores_) > 0.7
    assert len(cathode.samples_) == pytest.approx(2 * cathode.signal_region_.sum(), abs=2)
    lo, hi = cathode.signal_region
    assert ((cathode.sample_mjj_ >= lo) & (cathode.sample_mjj_ < hi)).all()


@pytest.mark.parametrize("name", ["cwola", "cathode"])
def test_every_sr_event_is_scored_once_by_a_model_not_trained_on_it(name, cwola, cathode, injected):
    search = {"cwola": cwola, "cathode": cathode}[name]
    sr = search.signal_region_
    assert ((search.fold_[sr] >= 0) & (search.fold_[sr] < search.n_folds)).all()
    np.testing.assert_array_equal(search.score_fold_[search.fold_ >= 0], search.fold_[search.fold_ >= 0])
    view = search._view(injected, checked=False)
    for k, (model, rows) in enumerate(zip(search.models_, search.training_rows_, strict=True)):
        scored = np.flatnonzero(search.score_fold_ == k)  # every event, the population and the rest
        assert len(scored) and not np.intersect1d(scored, rows).size
        np.testing.assert_allclose(search.scores_[scored], search._predict(model, view, scored))
    assert np.bincount(search.score_fold_, minlength=search.n_folds).sum() == len(injected)
    np.testing.assert_array_equal(search.score(injected), search.scores_)  # the fitted sample: out-of-fold


@pytest.mark.parametrize("name", ["cwola", "cathode"])
def test_a_score_cut_without_signal_keeps_the_signal_region_fraction(name, background_only):
    """No fake bump: out-of-population events are scored like SR events (one model each, never an average)."""
    params = {"cathode": {"flow_params": SMALL_FLOW | {"epochs": 4}, "oversampling": 1,  # an imperfect flow
                          "classifier_params": {"min_validation_gain": None}},  # the ensemble always scores
              "cwola": {"classifier_params": {"min_validation_gain": -1e9}}}[name]  # fit the noise, never the prior
    search = make_search(name, seed=2, n_folds=4, **params).fit(background_only)
    scores, sr = search.scores_, search.signal_region_
    top = scores > np.quantile(scores, 0.9)
    assert top.sum() > 200, "the classifier kept the constant prior: the check needs a non-trivial score"
    n, p = top.sum(), sr.mean()
    pull = (sr[top].mean() - p) / np.sqrt(p * (1 - p) / n)
    assert abs(pull) < 4, (sr[top].mean(), p, pull)


def test_new_samples_get_the_fold_ensemble(cwola, held_out):
    scores = cwola.score(held_out)
    assert scores.shape == (len(held_out),) and np.isfinite(scores).all()
    assert sr_auc(cwola, held_out, scores) > 0.7


def test_same_seed_gives_same_scores():
    data = toy_dijets(4000, 80, seed=3)
    first = CWoLaHunting(seed=5, n_folds=3).fit(data)
    again = CWoLaHunting(seed=5, n_folds=3).fit(data)
    other = CWoLaHunting(seed=6, n_folds=3).fit(data)
    np.testing.assert_array_equal(first.scores_, again.scores_)
    np.testing.assert_array_equal(first.fold_, again.fold_)
    assert not np.array_equal(first.fold_, other.fold_)


def test_anode_density_ratio_runs_and_ranks_signal_up():
    data = toy_dijets(6000, 100, seed=4)
    search = CathodeSearch(anode=True, n_folds=2, seed=4, flow_params=SMALL_FLOW | {"epochs": 8}).fit(data)
    assert np.isfinite(search.scores_).all()
    assert sr_auc(search, data, search.scores_) > 0.6


def test_tag_n_train_runs_and_gives_finite_scores(injected):
    search = TagNTrain(seed=1, n_folds=3, ae_params=SMALL_AE).fit(injected)
    assert search.scores_.shape == (len(injected),) and np.isfinite(search.scores_).all()
    assert search.outputs_.shape == (len(injected), 2) and search.tag_losses_.shape == (len(injected), 2)
    assert ((search.scores_ >= 0) & (search.scores_ <= 1)).all()  # a product of two probabilities


def test_quak_signal_prior_scores_signal_higher(injected):
    prior = toy_dijets(0, 1000, seed=5)  # simulated signal hypothesis, not part of the data
    plain = QUAK(seed=1, n_folds=3, ae_params=SMALL_AE).fit(injected)
    informed = QUAK(seed=1, n_folds=3, ae_params=SMALL_AE).fit(injected, signal_priors=[prior])
    assert np.isfinite(plain.scores_).all() and plain.loss_space_.shape == (len(injected), 1)
    assert informed.loss_space_.shape == (len(injected), 2)
    assert sr_auc(informed, injected, informed.scores_) > max(0.7, sr_auc(plain, injected, plain.scores_))


#: Fast settings of every registered search for the contract test (the zoo; a new search adds its line).
SEARCH_ZOO = {"cwola": {}, "cathode": {"flow_params": SMALL_FLOW | {"epochs": 2}, "oversampling": 1},
              "tag_n_train": {"ae_params": {"epochs": 2}}, "quak": {"ae_params": {"epochs": 2}},
              "pca": {}, "gan_ae": {"epochs": 2}, "latent_vae": {"epochs": 2},
              "regularized_likelihood": {"flow_params": {"transforms": 2, "hidden": (16, 16), "epochs": 2}},
              "topics": {}, "ucluster": {"pretrain_epochs": 1, "epochs": 1}, "combined": {"n_ensemble": 1},
              "gis": {}, "lacathode": {"flow_params": SMALL_FLOW | {"epochs": 2}, "oversampling": 1, "n_ensemble": 2},
              "salad": {"n_ensemble": 2, "reweighter": "hgb"}, "supervised": {"classifier": "hgb", "n_ensemble": 2},
              "graph_ae": {"epochs": 2, "n_particles": 12, "hidden": 8},
              "emd_ae": {"epochs": 2, "n_particles": 12, "hidden": 8},
              "vrnn": {"epochs": 2, "n_particles": 12, "hidden": 8}, "lund_lda": {"max_iter": 5}}
#: The fit inputs beyond the data of the searches that need them (simulated background, a signal library).
SEARCH_FIT = {"salad": lambda: {"simulation": toy_dijets(3000, 0, seed=70)},
              "supervised": lambda: {"simulation": toy_dijets(3000, 0, seed=70),
                                     "signal_library": [toy_dijets(0, 200, seed=71)]}}
#: Searches whose fitted models are classifiers only (boosted trees / MLPs: no detector parameters counted).
CLASSIFIER_ONLY = ("cwola", "salad", "supervised")


def fit_inputs(name: str) -> dict:
    return SEARCH_FIT[name]() if name in SEARCH_FIT else {}


def contract_toy(name: str, n_bkg: int, n_sig: int, seed: int) -> JetSample:
    """The toy events a search reads: with both jets' constituents for the particle-level searches."""
    if SEARCHES[name].reads_constituents:
        from test_particle_searches import toy_particle_dijets

        return toy_particle_dijets(n_bkg, n_sig, seed=seed)
    return toy_dijets(n_bkg, n_sig, seed=seed)


def test_every_registered_search_is_in_the_zoo():
    assert set(SEARCHES) == set(SEARCH_ZOO), sorted(SEARCHES)


@pytest.mark.parametrize("name", sorted(SEARCH_ZOO))
def test_search_contract(name):
    """fit -> self, one finite score per event, the same seed gives the same scores, clear errors."""
    data = contract_toy(name, 3000, 60, seed=7)
    search = make_search(name, seed=3, n_folds=2, min_sideband_events=50, **SEARCH_ZOO[name])
    with pytest.raises(RuntimeError, match="not fitted"):
        search.score(data)
    assert search.fit(data, **fit_inputs(name)) is search and search.is_fitted()
    scores = search.score(data)
    assert scores.shape == (len(data),) and np.isfinite(scores).all()
    again = make_search(name, seed=3, n_folds=2, min_sideband_events=50, **SEARCH_ZOO[name]).fit(data,
                                                                                                 **fit_inputs(name))
    np.testing.assert_array_equal(again.scores_, search.scores_)
    assert make_search(name, **search.get_params()).get_params() == search.get_params()
    with pytest.raises(SchemaError, match="empty sample"):
        search.score(data[:0])
    with pytest.raises(ValueError, match="unknown parameter"):
        search.set_params(nonexistent=1)


@pytest.mark.parametrize("name", sorted(SEARCH_ZOO))
def test_a_saved_search_scores_like_the_fitted_one(name, tmp_path):
    from jetad.searches import is_search_file, load_search

    data, new = contract_toy(name, 3000, 60, seed=7), contract_toy(name, 800, 40, seed=8)
    params = SEARCH_ZOO[name]
    search = make_search(name, seed=3, n_folds=2, min_sideband_events=50, **params).fit(data, **fit_inputs(name))
    path = search.save(tmp_path / "search.pt")
    assert is_search_file(path) and not (tmp_path / "search.pt.tmp").exists()
    loaded = load_search(path)
    assert type(loaded) is type(search) and loaded.get_params() == search.get_params()
    np.testing.assert_allclose(loaded.score(new), search.score(new), rtol=1e-6)
    np.testing.assert_array_equal(loaded.score(data), search.scores_)  # the fitted sample keeps out-of-fold scores
    np.testing.assert_array_equal(loaded.score(data[100:400]), search.scores_[100:400])  # also chunk by chunk
    assert loaded.n_parameters() == search.n_parameters() >= (0 if name in CLASSIFIER_ONLY else 1)
    assert "samples_" not in torch_payload(path)["state"] and "training_rows_" not in torch_payload(path)["state"]


def torch_payload(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def test_loading_a_non_search_file_is_a_clear_error(tmp_path):
    from jetad.searches import is_search_file, load_search

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    assert not is_search_file(junk)
    with pytest.raises(SchemaError, match=r"junk\.pt"):
        load_search(junk)
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        load_search(tmp_path / "missing.pt")
    with pytest.raises(RuntimeError, match="not fitted"):
        CWoLaHunting().save(tmp_path / "x.pt")


# ------------------------------------------------------------------------------------ classifier ensemble


def weak_labels(n: int, n_signal: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CATHODE-like toy: label 1 = 'data' (background plus a shifted signal cluster), label 0 = 'samples'."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (rng.uniform(size=n) < 0.3).astype(np.int64)
    signal = rng.choice(np.flatnonzero(y == 1), n_signal, replace=False)
    x[signal] = rng.normal([1.5, 1.5, 0.0], 0.3, size=(n_signal, 3))
    truth = np.zeros(n, bool)
    truth[signal] = True
    return x, y, truth


def tied(scores: np.ndarray) -> float:
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    return float(np.mean(counts[inverse] > 1))


def test_an_ensemble_unties_the_scores_of_one_tied_model():
    """One early-stopped tree model on a weak signal keeps a few trees or none (here: the constant prior)."""
    x, y, truth = weak_labels(3000, 40, seed=2)
    one = fit_classifier(x, y, seed=2)
    assert one.best_iteration_ < 20 and tied(one.predict_proba(x)[:, 1]) > 0.5
    many = fit_classifier(x, y, seed=2, n_ensemble=10)
    p = many.predict_proba(x)[:, 1]
    assert not many.constant_ and tied(p) < 0.1
    assert auc(p[truth], p[(y == 1) & ~truth]) > 0.8


def test_an_ensemble_learns_a_weak_signal_and_stays_constant_without_one():
    x, y, truth = weak_labels(4000, 100, seed=2)
    found = fit_classifier(x, y, n_ensemble=10, seed=2)
    assert isinstance(found, ClassifierEnsemble) and not found.constant_ and found.oob_gain_ > 3
    p = found.predict_proba(x)[:, 1]
    assert auc(p[truth], p[(y == 1) & ~truth]) > 0.9
    x0, y0, _ = weak_labels(4000, 0, seed=3)
    empty = fit_classifier(x0, y0, n_ensemble=10, seed=3)
    assert empty.constant_ and empty.oob_gain_ < 3
    np.testing.assert_array_equal(empty.predict_proba(x0)[:, 1], empty.prior_)


def test_a_saved_cwola_ensemble_scores_identically(tmp_path):
    from jetad.data.model_file import read_model_payload
    from jetad.searches import load_search

    data = toy_dijets(3000, 60, seed=7)
    search = make_search("cwola", seed=3, n_folds=2, min_sideband_events=50, n_ensemble=3).fit(data)
    assert all(isinstance(m, ClassifierEnsemble) and len(m.members_) == 3 for m in search.models_)
    path = search.save(tmp_path / "cwola.pt")
    stored = read_model_payload(path)["state"]["models_"][0]  # arrays + JSON, read without running code
    assert stored["jetad_object"] == "ClassifierEnsemble" and len(stored["state"]["members"]) == 3
    loaded = load_search(path)
    np.testing.assert_array_equal(loaded.score(data), search.scores_)
    new = toy_dijets(800, 40, seed=8)
    np.testing.assert_array_equal(loaded.score(new), search.score(new))


def test_cathode_uses_an_ensemble_per_fold_by_default(cathode):
    assert cathode.n_ensemble == 10
    assert all(isinstance(m, ClassifierEnsemble) and len(m.members_) == 10 for m in cathode.models_)
    assert tied(cathode.scores_[cathode.signal_region_]) < 0.05


# ---------------------------------------------------------------------------------------------- errors


def test_too_few_sideband_events_is_an_error():
    data = toy_dijets(3000, 0, seed=6)
    with pytest.raises(ValueError, match="sideband events"):
        CWoLaHunting(sideband_width=2.0).fit(data)


def test_signal_region_outside_the_data_is_an_error(background_only):
    with pytest.raises(ValueError, match="not inside the data's mjj range"):
        CWoLaHunting(signal_region=(4200.0, 4600.0)).fit(background_only)
    with pytest.raises(ValueError, match="low < high"):
        CWoLaHunting(signal_region=(3700.0, 3300.0))


def test_missing_feature_column_names_it(background_only):
    with pytest.raises(SchemaError, match="'tau32_j1'"):
        CWoLaHunting(features=("mj1", "tau32_j1")).fit(background_only)
    no_taus = background_only.subset(slice(0, 100))
    no_taus.features = {}
    with pytest.raises(SchemaError, match="'tau21_j1'"):
        search_features(no_taus, ("mj1", "tau21_j1"))
    np.testing.assert_allclose(search_features(no_taus, ("mj2",))[:, 0],
                               np.maximum(no_taus.event["j1_m"], no_taus.event["j2_m"]), rtol=1e-5)


def test_a_single_class_in_a_fold_is_an_error():
    x = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match=r"fold 3.*both classes"):
        fit_classifier(x, np.ones(50, int), what="fold 3")


def test_searches_by_name_and_bad_options():
    assert isinstance(make_search("cwola", n_folds=3), CWoLaHunting)
    assert make_search("cathode").sideband_width is None
    with pytest.raises(ValueError, match="unknown search"):
        make_search("bumpy")
    with pytest.raises(ValueError, match="n_folds"):
        CWoLaHunting(n_folds=1)
    with pytest.raises(ValueError, match="ANODE"):
        CathodeSearch(anode=True, flow_scaling="quantile")
    for search in (CathodeSearch, CWoLaHunting):
        with pytest.raises(ValueError, match="n_ensemble"):
            search(n_ensemble=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        CWoLaHunting().score(toy_dijets(100, 0, seed=0))



def test_cli_search_then_bumphunt(injected, tmp_path):
    from typer.testing import CliRunner

    from jetad.cli import app
    from jetad.data import read_sample, write_sample
    from jetad.data.scores import read_scores

    write_sample(tmp_path / "box.h5", injected)
    runner = CliRunner()
    res = runner.invoke(app, ["search", "cwola", str(tmp_path / "box.h5"), "--seed", "1", "-o", str(tmp_path / "s.h5"),
                              "--save", str(tmp_path / "cwola.pt")])
    assert res.exit_code == 0, res.output
    table = read_scores(tmp_path / "s.h5")
    assert "mjj" in table.observers and len(table.score) == len(read_sample(tmp_path / "box.h5"))
    write_sample(tmp_path / "new.h5", toy_dijets(2000, 100, seed=98))
    res = runner.invoke(app, ["score", str(tmp_path / "cwola.pt"), str(tmp_path / "new.h5"),
                              "-o", str(tmp_path / "n.h5")])
    assert res.exit_code == 0, res.output
    rescored = read_scores(tmp_path / "n.h5")
    assert rescored.attrs["detector"] == "cwola" and "mjj" in rescored.observers
    new = read_sample(tmp_path / "new.h5")
    sr = (new.event["mjj"] >= 3300) & (new.event["mjj"] < 3700)
    assert auc(rescored.score[sr & (new.label == 1)], rescored.score[sr & (new.label == 0)]) > 0.7
    res = runner.invoke(app, ["search", "cwola", str(tmp_path / "box.h5"), "--sr-low", "9000", "--sr-high", "9500",
                              "-o", str(tmp_path / "x.h5")])
    assert res.exit_code == 1 and "error" in res.output


@pytest.mark.parametrize("name", ["quak", "tag_n_train"])
def test_search_autoencoders_can_be_decorrelated_from_mjj(name):
    data = toy_dijets(3000, 60, seed=9)
    ae = {"epochs": 2, "reweight_observer": "mjj"}
    search = make_search(name, seed=1, n_folds=2, min_sideband_events=50, ae_params=ae).fit(data)
    assert np.isfinite(search.scores_).all()
    trained = search.models_[0] if name == "quak" else search.autoencoders_[0]
    assert trained.history_["training_weights"]["observer"] == "mjj"
