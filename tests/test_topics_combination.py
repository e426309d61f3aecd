"""Specifications for factorized topics, UCluster and the combination of searches (issue 14, items 3 and 5).

The toy is `toy_dijets` of test_weak_supervision (a 3.5 TeV resonance to jets of 100 and 500 GeV with low
tau21 over QCD-like dijets); `complementary_dijets` makes the signal subtle in both jet mass and tau21, so a
search reading only the masses and one reading only the tau21s each see part of it.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from jetad.data.sample import JetSample, SchemaError
from jetad.evaluate.metrics import auc
from jetad.searches import load_search
from jetad.searches.classifiers import ClassifierEnsemble
from jetad.searches.combined import (
    CombinedSearch,
    fit_positive_logistic,
    fit_tail_weights,
    normal_scores,
    simplex_grid,
    tail_excess,
    tail_probabilities,
)
from jetad.searches.cwola import CWoLaHunting
from jetad.searches.topics import FactorizedTopics, fit_factorized_topics
from jetad.searches.ucluster import UCluster
from test_weak_supervision import SMALL_FLOW, sr_auc, toy_dijets

FAST_UCLUSTER = {"pretrain_epochs": 6, "epochs": 6}
MASS_ONLY, TAU_ONLY = {"features": ("mj1", "mj2")}, {"features": ("tau21_j1", "tau21_j2")}
#: Weak supervision that never falls back to the constant prior (the null checks need a non-trivial score).
NOISY = {"classifier_params": {"min_validation_gain": -1e9}}
TINY_CATHODE = {"flow_params": SMALL_FLOW, "oversampling": 2, "n_ensemble": 2}


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def complementary_dijets(n_bkg: int, n_sig: int, seed: int) -> JetSample:
    """`toy_dijets` with a subtler signal: jets of 300 and 120 GeV (15% wide) and tau21 ~ 0.38 +- 0.12."""
    sample = toy_dijets(n_bkg, n_sig, seed)
    rng = np.random.default_rng([seed, 7])
    sig = sample.label == 1
    n = int(sig.sum())
    heavy, light = rng.normal(300.0, 45.0, n), rng.normal(120.0, 18.0, n)
    swap = rng.uniform(size=n) < 0.5
    sample.event["j1_m"][sig], sample.event["j2_m"][sig] = np.where(swap, heavy, light), np.where(swap, light, heavy)
    sample.jets[sig, 3] = sample.event["j1_m"][sig]
    for name in ("tau21", "j2_tau21"):
        sample.features[name][sig] = np.clip(rng.normal(0.38, 0.12, n), 0.05, 1.0)
    return sample


@pytest.fixture(scope="module")
def injected():
    return toy_dijets(10_000, 150, seed=1)


@pytest.fixture(scope="module")
def background_only():
    return toy_dijets(10_000, 0, seed=2)


@pytest.fixture(scope="module")
def small():
    return toy_dijets(3000, 60, seed=7), toy_dijets(800, 40, seed=8)


def signal_region_pull_of_the_top_decile(search) -> float:
    """(SR fraction of the 10% highest scores - SR fraction of all events) / its binomial error; tied scores
    are ordered at random (as a cut through a tie selects a random part of it)."""
    scores, sr = search.scores_, search.signal_region_
    assert len(np.unique(scores)) > 1, "a constant score: the check needs a non-trivial one"
    order = np.lexsort((np.random.default_rng(0).uniform(size=len(scores)), scores))
    top = np.zeros(len(scores), bool)
    top[order[-len(scores) // 10:]] = True
    p = sr.mean()
    return float((sr[top].mean() - p) / np.sqrt(p * (1 - p) / top.sum()))


# ---------------------------------------------------------------------------------------- factorized topics


def test_em_recovers_the_fractions_and_topics_of_a_known_two_topic_mixture():
    rng = np.random.default_rng(0)
    topics = np.array([[0.4, 0.3, 0.2, 0.1, 0.0, 0.0], [0.0, 0.0, 0.1, 0.1, 0.4, 0.4]])
    which = rng.uniform(size=20_000) < 0.2
    cells = np.stack([np.where(which, rng.choice(6, 20_000, p=topics[1]), rng.choice(6, 20_000, p=topics[0]))
                      for _ in range(2)], axis=1)
    log_f, log_p = fit_factorized_topics(cells, 6, n_topics=2, seed=1)
    np.testing.assert_allclose(np.exp(log_f), [0.8, 0.2], atol=0.02)
    np.testing.assert_allclose(np.exp(log_p), topics, atol=0.02)


@pytest.mark.parametrize(("observables", "least_auc"), [("mass_tau21", 0.9), ("mass", 0.65)])
def test_topics_rank_an_injected_resonance_up(observables, least_auc, injected):
    search = FactorizedTopics(observables=observables, seed=1).fit(injected)
    assert search.features == (("mj1", "mj2", "tau21_j1", "tau21_j2") if observables == "mass_tau21"
                               else ("mj1", "mj2"))
    assert sr_auc(search, injected, search.scores_) > least_auc
    assert ((search.scores_ >= 0) & (search.scores_ <= 1)).all()  # a posterior probability
    fractions = [np.exp(m["log_fractions"]) for m in search.models_]
    assert all(f[0] >= f[1] for f in fractions)  # topic 0 is the dominant one, the score the other's posterior


# ---------------------------------------------------------------------------------------------- UCluster


def test_ucluster_finds_an_injected_resonance_in_its_over_populated_cluster(injected):
    search = UCluster(seed=1, n_folds=3, **FAST_UCLUSTER).fit(injected)
    assert sr_auc(search, injected, search.scores_) > 0.8
    assert all(0 <= m["signal_cluster"] < search.n_clusters for m in search.models_)
    assert np.isfinite(search.scores_).all() and search.n_parameters() > 0


def test_ucluster_mass_bin_proxy_trains_without_region_labels(small):
    data, _ = small
    search = UCluster(proxy="mass_bin", mass_feature="mj1", n_mass_bins=4, seed=3, n_folds=2,
                      min_sideband_events=50, pretrain_epochs=3, epochs=3).fit(data)
    assert np.isfinite(search.scores_).all() and len(np.unique(search.scores_)) > 0.9 * len(data)


# ------------------------------------------------------------------------------------------- combination


@pytest.fixture(scope="module")
def complementary():
    return complementary_dijets(10_000, 400, seed=2)


@pytest.fixture(scope="module")
def combined(complementary):
    """One stacking classifier per fold (the default ensemble of 5 is 3-4x slower and as good here: the benchmark)."""
    return CombinedSearch(members=(("cwola", MASS_ONLY), ("cwola", TAU_ONLY)), seed=2, n_ensemble=1).fit(complementary)


def test_the_stacked_combination_beats_complementary_members(combined, complementary):
    sr = combined.signal_region_
    y = complementary.label[sr]
    members = [auc(s[sr][y == 1], s[sr][y == 0]) for s in combined.member_scores_.T]
    assert min(members) > 0.65  # each member sees part of the signal
    assert sr_auc(combined, complementary, combined.scores_) >= max(members) - 0.01


def test_the_combination_is_cross_fitted_on_the_folds_of_its_members(combined, complementary):
    cwola_member = combined.members_[0]
    np.testing.assert_array_equal(cwola_member.fold_, combined.fold_)  # the same SR/sideband folds
    np.testing.assert_array_equal(combined.member_scores_[:, 0], cwola_member.scores_)
    view = combined._view(complementary, checked=False)
    np.testing.assert_array_equal(view.x[:, -2:], combined.member_scores_)  # what the combiner reads: out-of-fold
    for k, (model, rows) in enumerate(zip(combined.models_, combined.training_rows_, strict=True)):
        scored = np.flatnonzero(combined.score_fold_ == k)
        assert len(scored) and not np.intersect1d(scored, rows).size  # no combiner scores an event it saw
        for member in combined.members_:  # nor did the member model that scored an event of the population
            inside = scored[member.fold_[scored] >= 0]
            assert not np.intersect1d(inside, member.training_rows_[k]).size
        np.testing.assert_allclose(combined.scores_[scored], combined._predict(model, view, scored))


@pytest.fixture(scope="module", params=["trees", "linear", "tail"])
def template_combined(request, injected):
    return CombinedSearch(members=(("cathode", TINY_CATHODE), ("cwola", {}), ("topics", {})), combine="template",
                          stacker=request.param, seed=2, n_ensemble=2).fit(injected)


def test_the_template_combination_keeps_the_sensitivity_of_its_cathode_member(template_combined, injected):
    """The combiner is trained on SR data vs a fresh template of the CATHODE member's flow, scored by every member;
    it may not lose the best member's SR AUC (the 'stack' contrast, SR vs sidebands, falls to a constant on boxes
    where CATHODE finds the signal: docs/benchmarks/lhco.md)."""
    search = template_combined
    sr = search.signal_region_
    y = injected.label[sr]
    members = [auc(s[sr][y == 1], s[sr][y == 0]) for s in search.member_scores_.T]
    assert members[0] > 0.7  # CATHODE finds the toy's resonance
    assert sr_auc(search, injected, search.scores_) >= max(members) - 0.02
    n_sr = int(sr.sum())
    assert search.template_scores_.shape == (pytest.approx(4 * n_sr, abs=4), 3)
    cathode = search.members_[0]  # a fresh template, not the samples the CATHODE classifiers were trained on
    assert not np.isin(search.template_scores_[:, 0], cathode.scores_).all()
    np.testing.assert_array_equal(search.fold_ >= 0, sr)  # folds over the SR data, as CATHODE's


@pytest.mark.parametrize("stacker", ["trees", "tail"])
def test_the_template_combination_is_quiet_without_signal(background_only, stacker):
    search = CombinedSearch(members=(("cathode", TINY_CATHODE), ("cwola", NOISY)), combine="template", n_folds=3,
                            seed=2, n_ensemble=1, stacker=stacker, **NOISY).fit(background_only)
    assert abs(signal_region_pull_of_the_top_decile(search)) < 4


def test_single_model_scores_of_new_events_spread_as_the_out_of_fold_scores(background_only):
    """New background events scored by one random fold model each pass a cut on the fitted sample's out-of-fold
    scores as often as the fitted events do; the fold mean (`score`) is narrower and passes far fewer (the bias
    the template combination had)."""
    search = CWoLaHunting(n_folds=5, seed=4, n_ensemble=1, **NOISY).fit(background_only)
    new = toy_dijets(10_000, 0, seed=9)
    single = search.single_model_scores(new, seed=5)
    np.testing.assert_array_equal(single, search.single_model_scores(new, seed=5))  # seeded
    fold = np.random.default_rng(5).integers(5, size=len(new))
    view = search._fitted_view(new)
    rows = np.flatnonzero(fold == 2)
    np.testing.assert_allclose(single[rows], search._predict(search.models_[2], view, rows))  # one model per event
    cut = np.quantile(search.scores_, 0.95)
    fitted, spread, mean = 0.05, (single > cut).mean(), (search.score(new) > cut).mean()
    assert abs(spread - fitted) < 0.012 < abs(mean - fitted)


def test_normal_scores_are_standard_normal_under_the_reference_and_keep_ties():
    rng = np.random.default_rng(3)
    reference = np.sort(np.column_stack([rng.exponential(size=20_000), rng.integers(0, 3, 20_000)]), axis=0)
    z = normal_scores(reference, np.column_stack([rng.exponential(size=20_000), rng.integers(0, 3, 20_000)]))
    assert abs(z[:, 0].mean()) < 0.03 and abs(z[:, 0].std() - 1) < 0.03  # any units in, N(0, 1) out
    assert len(np.unique(z[:, 1])) == 3  # a tied member stays tied (mid-rank), it gains no spurious order
    assert np.all(np.diff(normal_scores(reference, np.sort(reference, axis=0))[:, 0]) >= 0)  # monotone


def test_the_simplex_grid_holds_every_weight_vector_once():
    grid = simplex_grid(3, 4)
    assert grid.shape == (15, 3)  # C(4 + 2, 2)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert len({tuple(row) for row in grid}) == 15 and grid.min() >= 0
    assert {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)} <= {tuple(row) for row in grid}


def test_the_tail_weights_follow_the_tail_where_the_logistic_follows_the_bulk():
    """Member 0 shifts every signal event a little (the bulk), member 1 puts a third of them far out (the tail):
    the logistic loss prefers member 0, the tail excess at a 1% cut member 1, and the tail stacker's weights
    beat both vertices on the objective they maximize."""
    rng = np.random.default_rng(5)
    background = rng.normal(size=(20_000, 2))
    signal = rng.normal(size=(1_000, 2)) + np.array([0.6, 0.0])
    signal[:330, 1] += 4.0
    z, y = np.r_[signal, background], np.r_[np.ones(1_000), np.zeros(20_000)]
    logistic, _ = fit_positive_logistic(z, y)
    assert logistic[0] > logistic[1]
    weights, objective = fit_tail_weights(z, y, fractions=(0.01,))
    assert weights[1] > weights[0] and weights.sum() == pytest.approx(1.0)
    vertices = tail_excess(z[y == 1], z[y == 0], (0.01,))
    assert objective >= vertices.max() and vertices[1] > 3 * vertices[0]


def test_the_positive_logistic_weighs_informative_members_and_drops_inverted_ones():
    rng = np.random.default_rng(4)
    background, signal = rng.normal(size=(6000, 3)), rng.normal(size=(1500, 3)) + np.array([1.0, 0.0, -0.8])
    z, y = np.r_[signal, background], np.r_[np.ones(1500), np.zeros(6000)]
    weights, _ = fit_positive_logistic(z, y)
    assert weights[0] > 0.7 and weights[1] < 0.1 and weights[2] == 0.0  # never a negative weight


def test_tail_probabilities_are_the_smoothed_fraction_at_or_above():
    reference = np.sort(np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]), axis=0)
    p = tail_probabilities(reference, np.array([[0.0, 35.0], [2.0, 20.0]]))
    np.testing.assert_allclose(p, [[4 / 4, 1 / 4], [3 / 4, 3 / 4]])


# ------------------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("name", ["topics", "ucluster", "combined"])
def test_a_score_cut_without_signal_keeps_the_signal_region_fraction(name, background_only):
    search = {
        "topics": lambda: FactorizedTopics(seed=2, n_folds=3),
        "ucluster": lambda: UCluster(seed=2, n_folds=3, **FAST_UCLUSTER),
        "combined": lambda: CombinedSearch(members=(("cwola", MASS_ONLY | NOISY), ("cwola", TAU_ONLY | NOISY)),
                                           n_folds=3, seed=2, n_ensemble=1, **NOISY),
    }[name]().fit(background_only)
    assert abs(signal_region_pull_of_the_top_decile(search)) < 4


SAVED = {
    "topics": lambda: FactorizedTopics(observables="mass", n_mass_bins=6),
    "ucluster": lambda: UCluster(pretrain_epochs=2, epochs=2),
    "stack": lambda: CombinedSearch(members=(("cwola", {}), ("topics", {"n_mass_bins": 6}))),
    "rank_mean": lambda: CombinedSearch(members=(("cwola", MASS_ONLY), ("ucluster", FAST_UCLUSTER)),
                                        combine="rank_mean"),
    "min_p": lambda: CombinedSearch(members=(("cwola", MASS_ONLY), ("topics", {})), combine="min_p"),
    "template": lambda: CombinedSearch(members=(("cathode", TINY_CATHODE | {"flow_params": SMALL_FLOW | {"epochs": 2}}),
                                                ("cwola", MASS_ONLY)), combine="template", n_ensemble=1),
    "template_linear": lambda: CombinedSearch(members=(("cathode", TINY_CATHODE | {"flow_params": SMALL_FLOW | {
        "epochs": 2}}), ("cwola", MASS_ONLY)), combine="template", stacker="linear"),
    "template_tail": lambda: CombinedSearch(members=(("cathode", TINY_CATHODE | {"flow_params": SMALL_FLOW | {
        "epochs": 2}}), ("cwola", MASS_ONLY)), combine="template", stacker="tail", tail_fractions=[0.05, 0.1]),
}


@pytest.mark.parametrize("name", sorted(SAVED))
def test_a_saved_search_scores_identically(name, small, tmp_path):
    data, new = small
    search = SAVED[name]().set_params(seed=3, n_folds=2, min_sideband_events=50).fit(data)
    loaded = load_search(search.save(tmp_path / f"{name}.pt"))
    assert type(loaded) is type(search) and loaded.get_params() == search.get_params()
    np.testing.assert_array_equal(loaded.score(data), search.scores_)
    np.testing.assert_array_equal(loaded.score(data[100:400]), search.scores_[100:400])
    np.testing.assert_allclose(loaded.score(new), search.score(new), rtol=1e-6)
    assert loaded.n_parameters() == search.n_parameters() > 0
    if name == "stack":  # the default stacker: an ensemble of classifiers per fold, stored as arrays
        assert all(isinstance(m, ClassifierEnsemble) and len(m.members_) == 5 for m in loaded.models_)


def test_a_combined_file_with_broken_members_is_a_clear_error(small, tmp_path):
    from jetad.data.model_file import read_model_payload, write_model_payload

    data, _ = small
    search = CombinedSearch(members=(("cwola", {}),), n_folds=2, seed=3, min_sideband_events=50, n_ensemble=1).fit(data)
    payload = read_model_payload(search.save(tmp_path / "c.pt"))
    payload["state"]["members_"] = "not a list"
    write_model_payload(tmp_path / "broken.pt", payload)
    with pytest.raises(SchemaError, match=r"broken\.pt.*members_"):
        load_search(tmp_path / "broken.pt")


@pytest.mark.parametrize(("make", "option"), [
    (lambda: FactorizedTopics(observables="tau32"), "observables"),
    (lambda: FactorizedTopics(n_topics=1), "n_topics"),
    (lambda: FactorizedTopics(n_mass_bins=1), "n_mass_bins"),
    (lambda: FactorizedTopics(pseudo_count=0.0), "pseudo_count"),
    (lambda: FactorizedTopics(features=("mj1",)), "features"),
    (lambda: UCluster(proxy="labels"), "proxy"),
    (lambda: UCluster(proxy="mass_bin", mass_feature="mj2"), "mass_feature"),
    (lambda: UCluster(n_clusters=1), "n_clusters"),
    (lambda: UCluster(temperature=0.0), "temperature"),
    (lambda: CombinedSearch(members=()), "members"),
    (lambda: CombinedSearch(members=(("cwola",),)), r"members\[0\]"),
    (lambda: CombinedSearch(members=(("bumpy", {}),)), r"members\[0\].*unknown search"),
    (lambda: CombinedSearch(members=(("cwola", {"n_folds": 3}),)), r"members\[0\].*n_folds"),
    (lambda: CombinedSearch(members=(("cwola", {"n_ensemble": 0}),)), r"members\[0\].*n_ensemble"),
    (lambda: CombinedSearch(members=(("combined", {}),)), "combination cannot be a member"),
    (lambda: CombinedSearch(combine="mean"), "combine"),
    (lambda: CombinedSearch(classifier="mlp"), "monotone"),
    (lambda: CombinedSearch(combine="template"), "needs a CATHODE member"),
    (lambda: CombinedSearch(members=(("cathode", {"anode": True}),), combine="template"), "needs a CATHODE member"),
    (lambda: CombinedSearch(members=(("cathode", {}), ("cwola", {"features": ("mj1", "tau32_j1")})),
                            combine="template"), r"members\[1\].*features from that set"),
    (lambda: CombinedSearch(template_oversampling=0.0), "template_oversampling"),
    (lambda: CombinedSearch(stacker="forest"), "stacker"),
    (lambda: CombinedSearch(stacker="tail", tail_fractions=(0.0,)), "tail_fractions"),
    (lambda: CombinedSearch(stacker="tail", tail_fractions=()), "tail_fractions"),
    (lambda: CombinedSearch(stacker="tail", tail_steps=0), "tail_steps"),
])
def test_bad_options_are_clear_errors(make, option):
    with pytest.raises(ValueError, match=option):
        make()


def test_the_combination_stage_refits_alone_on_the_fitted_members(small):
    data, _ = small
    search = CombinedSearch(members=(("cwola", MASS_ONLY),), combine="rank_mean", n_folds=2, seed=3,
                            min_sideband_events=50)
    with pytest.raises(RuntimeError, match="not fitted"):
        search.fit_combination(data)
    first = search.fit(data).scores_.copy()
    members = search.members_
    np.testing.assert_array_equal(search.fit_combination(data).scores_, first)  # deterministic, members kept
    assert search.members_ is members


def test_unfitted_searches_refuse_to_score(small):
    data, _ = small
    for search in (FactorizedTopics(), UCluster(), CombinedSearch()):
        with pytest.raises(RuntimeError, match="not fitted"):
            search.score(data)


def test_a_member_is_the_search_it_names(small):
    data, _ = small
    search = CombinedSearch(members=(("cwola", MASS_ONLY),), n_folds=2, seed=3, min_sideband_events=50,
                            n_ensemble=1).fit(data)
    alone = CWoLaHunting(n_folds=2, seed=3, min_sideband_events=50, **MASS_ONLY).fit(data)
    np.testing.assert_array_equal(search.member_scores_[:, 0], alone.scores_)
