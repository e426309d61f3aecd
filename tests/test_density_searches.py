"""Specifications for the density-based and simulation-assisted LHC Olympics strategies (2101.08320): GIS, LaCATHODE,
SALAD and the supervised baseline, on the toy dijets of test_weak_supervision."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from jetad.data.sample import JetSample
from jetad.evaluate.metrics import auc, max_sic
from jetad.searches.gis import GISSearch, fit_gis
from jetad.searches.lacathode import LaCathodeSearch
from jetad.searches.salad import SaladSearch
from jetad.searches.supervised import SupervisedSearch
from test_weak_supervision import SMALL_FLOW, sr_auc, toy_dijets

#: Boosted-tree members that learn faster than the ensemble defaults (fewer, larger steps).
QUICK_TREES = {"learning_rate": 0.1, "max_iter": 200, "n_iter_no_change": 10}
#: Fast settings per search (tiny flows and ensembles, three folds).
FAST: dict[str, dict] = {
    "gis": {},
    "lacathode": {"flow_params": SMALL_FLOW | {"epochs": 8}, "oversampling": 2, "n_ensemble": 1},
    "salad": {"n_ensemble": 5, "reweighter_params": {"epochs": 20, "batch_size": 256},
              "classifier_params": QUICK_TREES},
    "supervised": {"classifier": "hgb", "n_ensemble": 2, "classifier_params": {"max_iter": 100, "learning_rate": 0.1}},
}
SEARCH_TYPES = {"gis": GISSearch, "lacathode": LaCathodeSearch, "salad": SaladSearch, "supervised": SupervisedSearch}


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def mismodelled(sample: JetSample, tau21_shift: float = -0.1) -> JetSample:
    """`sample` with both jets' tau21 shifted: simulation that mis-models a substructure feature."""
    out = sample.subset(slice(None))
    out.features = {k: v + tau21_shift if k in ("tau21", "j2_tau21") else v for k, v in sample.features.items()}
    out.attrs = {**sample.attrs, "source": f"mismodelled {sample.describe()}"}
    return out


@pytest.fixture(scope="module")
def simulation():
    """Background-only toy of another seed with tau21 mis-modelled by -0.1 (the data's spread is 0.15)."""
    return mismodelled(toy_dijets(8000, 0, seed=21))


@pytest.fixture(scope="module")
def fit_inputs(simulation):
    """The extra fit arguments of each search (simulation, signal library)."""
    library = [toy_dijets(0, 600, seed=22)]
    return {"gis": {}, "lacathode": {}, "salad": {"simulation": simulation},
            "supervised": {"simulation": toy_dijets(8000, 0, seed=23), "signal_library": library}}


def fitted(name: str, data: JetSample, inputs: dict, seed: int, **params) -> object:
    return SEARCH_TYPES[name](seed=seed, n_folds=3, **(FAST[name] | params)).fit(data, **inputs[name])


@pytest.fixture(scope="module")
def injected():
    """About 1300 background and 100 signal events in the SR: S/B ~ 8%."""
    return toy_dijets(5000, 100, seed=1)


@pytest.fixture(scope="module")
def searches(injected, fit_inputs):
    return {name: fitted(name, injected, fit_inputs, seed=1) for name in SEARCH_TYPES}


def sr_fraction_pull(search) -> float:
    """Pull of the SR fraction among the top 10% of scores from the SR fraction of all events (a fake bump > 0)."""
    scores, sr = search.scores_, search.signal_region_
    if np.ptp(scores) == 0:  # a constant score (the prior): no cut can prefer a region
        return 0.0
    top = scores > np.quantile(scores, 0.9)
    p = sr.mean()
    return float((sr[top].mean() - p) / np.sqrt(p * (1 - p) / top.sum()))


# ------------------------------------------------------------------------------------------------ GIS transform


def test_gis_maps_a_conditional_density_to_a_standard_normal():
    rng = np.random.default_rng(0)
    c = rng.normal(size=6000)
    x = np.c_[rng.lognormal(0.0, 0.6, 6000) * np.exp(0.3 * c), rng.normal(size=6000) + 0.8 * c]
    x[:, 1] += 0.5 * x[:, 0]
    gis = fit_gis(x[:4000], c[:4000], n_layers=10, seed=1)
    z, _ = gis.forward(x[4000:], c[4000:])
    np.testing.assert_allclose(z.mean(0), 0, atol=0.1)
    np.testing.assert_allclose(z.std(0), 1, atol=0.1)
    assert abs(np.corrcoef(z.T)[0, 1]) < 0.1
    grid = np.linspace(-50, 100, 30001)[:, None]  # a 1D density integrates to one at any context
    for ctx in (-1.0, 0.0, 1.5):
        one = fit_gis(x[:4000, :1], c[:4000], n_layers=3, seed=1)
        density = np.exp(one.log_prob(grid, np.full(len(grid), ctx)))
        assert np.sum(density) * (grid[1, 0] - grid[0, 0]) == pytest.approx(1.0, abs=0.02)


# ----------------------------------------------------------------------------------------- finds, stays quiet


@pytest.mark.parametrize("name", sorted(SEARCH_TYPES))
def test_each_search_finds_an_injected_signal(name, searches, injected):
    search = searches[name]
    sr = search.signal_region_
    y, s = injected.label[sr], search.scores_[sr]
    assert sr_auc(search, injected, search.scores_) > 0.8
    assert max_sic(s[y == 1], s[y == 0]) > 2.0
    assert np.isfinite(search.scores_).all() and search.scores_.shape == (len(injected),)


#: Null fits: LaCATHODE's classifiers always score (never the constant prior), so the cut checks see a real score;
#: SALAD keeps its defaults (reweighted simulation like the data: the constant prior is the right answer).
ALWAYS_SCORE = {"lacathode": {"classifier_params": {"min_validation_gain": None}}}


@pytest.fixture(scope="module")
def null_searches(fit_inputs):
    """Every search fitted on background-only data, plus SALAD without reweighting ('salad_raw')."""
    data = toy_dijets(5000, 0, seed=2)
    found = {name: fitted(name, data, fit_inputs, seed=2, **ALWAYS_SCORE.get(name, {})) for name in SEARCH_TYPES}
    found["salad_raw"] = fitted("salad", data, fit_inputs, seed=2, reweight=False)
    return data, found


@pytest.mark.parametrize("name", sorted(SEARCH_TYPES))
def test_without_signal_no_search_invents_one(name, null_searches):
    """A 10% score cut keeps the SR fraction; weakly supervised scores do not rank an unseen signal up."""
    search = null_searches[1][name]
    assert np.ptp(search.scores_) > 0 or name == "salad", "a constant score: the check needs a non-trivial one"
    assert abs(sr_fraction_pull(search)) < 4
    if name != "supervised":  # the supervised ensemble knows the signal from its library, whatever the data
        held_out = toy_dijets(2000, 200, seed=99)
        assert sr_auc(search, held_out) < 0.65


def test_salad_reweighting_fixes_the_mismodelled_feature(searches, simulation, injected):
    salad = searches["salad"]
    w = salad.simulation_weights(simulation)
    sr_sim = SaladSearch().regions(simulation.event["mjj"])[0]
    data_sr = injected.features["tau21"][salad.signal_region_ & (injected.label == 0)].mean()
    before = abs(simulation.features["tau21"][sr_sim].mean() - data_sr)
    after = abs(np.average(simulation.features["tau21"][sr_sim], weights=w[sr_sim]) - data_sr)
    assert before > 0.08 and after < before / 3


def test_salad_without_reweighting_learns_the_mismodelling(null_searches):
    """No signal: against raw simulation the SR classifier scores tau21 (a fake anomaly); reweighted much less."""
    data, found = null_searches
    spread = {}
    for name in ("salad", "salad_raw"):
        search = found[name]
        sr = search.signal_region_
        tau = data.features["tau21"][sr]
        high = tau > np.median(tau)
        spread[name] = abs(auc(search.scores_[sr][high], search.scores_[sr][~high]) - 0.5)
    assert spread["salad_raw"] > 0.2 and spread["salad"] < spread["salad_raw"] / 2, spread


def test_supervised_depends_on_its_signal_library(fit_inputs, injected):
    """Trained on a wrong hypothesis (heavier jets, high tau21) the supervised baseline misses the injected signal."""
    wrong = mismodelled(toy_dijets(0, 600, seed=24), tau21_shift=0.4)
    wrong.event = {**wrong.event, "j1_m": wrong.event["j1_m"] * 2.5, "j2_m": wrong.event["j2_m"] * 2.5}
    inputs = {"supervised": fit_inputs["supervised"] | {"signal_library": [wrong]}}
    blind = fitted("supervised", injected, inputs, seed=1)
    assert sr_auc(blind, injected, blind.scores_) < 0.75
    both = {"supervised": fit_inputs["supervised"] | {"signal_library": [wrong, *fit_inputs["supervised"]
                                                                           ["signal_library"]]}}
    library = fitted("supervised", injected, both, seed=1)
    assert library.n_hypotheses_ == 2 and sr_auc(library, injected, library.scores_) > 0.9


# ------------------------------------------------------------------------------------------ save/load, errors


@pytest.mark.parametrize("name", sorted(SEARCH_TYPES))
def test_a_saved_search_scores_identically(name, searches, injected, tmp_path):
    from jetad.searches import is_search_file, load_search

    search, new = searches[name], toy_dijets(800, 40, seed=8)
    path = search.save(tmp_path / f"{name}.pt")
    assert is_search_file(path)
    loaded = load_search(path)
    assert type(loaded) is type(search) and loaded.get_params() == search.get_params()
    np.testing.assert_array_equal(loaded.score(injected), search.scores_)
    np.testing.assert_allclose(loaded.score(new), search.score(new), rtol=1e-6)
    assert type(search)(**search.get_params()).get_params() == search.get_params()


def test_bad_options_and_missing_inputs_are_clear_errors(injected, simulation):
    with pytest.raises(ValueError, match="n_knots"):
        GISSearch(n_knots=1)
    with pytest.raises(ValueError, match="mjj is the conditioning"):
        GISSearch(features=("mj1", "mjj"))
    with pytest.raises(ValueError, match="anode"):
        LaCathodeSearch(anode=True)
    with pytest.raises(ValueError, match="reweighter"):
        SaladSearch(reweighter="bdt")
    with pytest.raises(ValueError, match="max_weight"):
        SaladSearch(max_weight=0.5)
    with pytest.raises(ValueError, match="--simulation"):
        SaladSearch().fit(injected)
    with pytest.raises(ValueError, match="simulated events in the signal region"):
        SaladSearch(n_folds=3).fit(injected, simulation=simulation[:20])
    with pytest.raises(ValueError, match="--simulation"):
        SupervisedSearch().fit(injected, signal_library=[injected])
    with pytest.raises(ValueError, match="signal_library"):
        SupervisedSearch().fit(injected, simulation=simulation)
    with pytest.raises(ValueError, match="background_region"):
        SupervisedSearch(background_region="sidebands")


# -------------------------------------------------------------------------------------------- command line


def test_cli_passes_simulation_and_signal_files(simulation, tmp_path):
    from typer.testing import CliRunner

    from jetad.cli import app
    from jetad.cli.search_commands import fit_file_arguments
    from jetad.data import write_sample
    from jetad.data.scores import read_scores

    data = toy_dijets(3000, 80, seed=41)
    paths = {k: tmp_path / f"{k}.h5" for k in ("data", "sim", "sig1", "sig2")}
    for key, sample in (("data", data), ("sim", simulation[:5000]), ("sig1", toy_dijets(0, 300, seed=31)),
                        ("sig2", toy_dijets(0, 300, seed=32))):
        write_sample(paths[key], sample)
    runner = CliRunner()
    fast = ["--set", "n_folds=2", "--set", "n_ensemble=1"]
    res = runner.invoke(app, ["search", "salad", str(paths["data"]), "--simulation", str(paths["sim"]), *fast,
                              "--set", "reweighter=hgb", "--set", "min_sideband_events=50",
                              "-o", str(tmp_path / "salad.h5")])
    assert res.exit_code == 0, res.output
    table = read_scores(tmp_path / "salad.h5")
    sr = (table.observers["mjj"] >= 3300) & (table.observers["mjj"] < 3700)
    labels = data.label  # the score file keeps the event order of the data
    assert auc(table.score[sr & (labels == 1)], table.score[sr & (labels == 0)]) > 0.7
    res = runner.invoke(app, ["search", "supervised", str(paths["data"]), "--simulation", str(paths["sim"]),
                              "--signal", str(paths["sig1"]), "--signal", str(paths["sig2"]), *fast,
                              "--set", "classifier=hgb", "-o", str(tmp_path / "sup.h5")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", "cwola", str(paths["data"]), "--simulation", str(paths["sim"]),
                              "-o", str(tmp_path / "x.h5")])
    assert res.exit_code == 2 and "--simulation" in res.output and "cwola" in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1, res.output
    assert fit_file_arguments("quak", {"--signal": [paths["sig1"]], "--simulation": None}) == {
        "signal_priors": [paths["sig1"]]}
