"""Bump hunt (dijet fits, window scan, significance, toys) and LHCO-style black boxes, on toy data only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jetad.data import JetSample, read_sample, write_sample
from jetad.data.clustering import pair_mass
from jetad.data.formats import convert, detect_format, open_reader
from jetad.data.sample import SchemaError, jet_four_vectors
from jetad.evaluate.bumphunt import (
    SQRT_S_GEV,
    FitError,
    bump_hunt,
    choose_fit_start,
    dijet_function,
    fit_background,
    local_significance,
    null_significance_check,
    sample_dijet_spectrum,
    scan_windows,
    top_fraction,
)
from jetad.evaluate.plots import plot_bumphunt, plot_significance_scan
from jetad.physics.dijet import dijet_features
from jetad.tasks.blackbox import blackbox_labels, key_path, make_blackbox, read_key

RANGE = (2500.0, 7000.0)
BINS = 45
SHAPE = (10.0, 5.0, 0.2)


def dijet_params(n_events: float, shape: tuple[float, float, float] = SHAPE) -> tuple[float, ...]:
    """(p0, p1, p2, p3) of a density [events/GeV] integrating to n_events over RANGE."""
    grid = np.linspace(*RANGE, 4001)
    return (n_events / np.trapezoid(dijet_function(grid / SQRT_S_GEV, 1.0, *shape), grid), *shape)


def expected_in(params: tuple[float, ...], lo: float, hi: float) -> float:
    grid = np.linspace(lo, hi, 401)
    return float(np.trapezoid(dijet_function(grid / SQRT_S_GEV, *params), grid))


@pytest.fixture(scope="module")
def background() -> tuple[tuple[float, ...], np.ndarray]:
    params = dijet_params(50_000)
    return params, sample_dijet_spectrum(params, RANGE, np.random.default_rng(1))


@pytest.fixture(scope="module")
def with_bump(background):
    """Background + a Gaussian bump at 3.5 TeV (sigma 150 GeV) with S/sqrt(B) = 5 in the 10% window at 3.5 TeV."""
    params, bkg = background
    lo, hi = 3500 * 0.95, 3500 * 1.05
    s_window = 5.0 * np.sqrt(expected_in(params, lo, hi))
    rng = np.random.default_rng(2)
    signal = rng.normal(3500.0, 150.0, int(s_window / 0.7566))  # 75.7% of a Gaussian lies within +-1.17 sigma
    return np.concatenate([bkg, signal]), len(bkg), s_window


# --------------------------------------------------------------------------------------------- fit


def test_fit_recovers_dijet_function_parameters_within_three_sigma(background):
    params, mjj = background
    fit = fit_background(mjj, bins=BINS, range=RANGE)
    pulls = (fit.params - np.array(params)) / fit.errors
    assert fit.converged and np.all(np.abs(pulls) < 3), (pulls, fit.status)
    assert 0.5 < fit.chi2_ndf < 1.6
    assert fit.expected(*RANGE) == pytest.approx(len(mjj), rel=0.01)
    assert set(fit.param_dict()) == {"p0", "p0_err", "p1", "p1_err", "p2", "p2_err", "p3", "p3_err"}


def test_sideband_fit_leaves_out_every_bin_touching_the_window(background):
    _, mjj = background
    fit = fit_background(mjj, bins=BINS, range=RANGE, exclude=(3325.0, 3675.0))
    left, right = fit.edges[:-1], fit.edges[1:]
    assert not fit.fitted_bins[(right > 3325.0) & (left < 3675.0)].any()
    assert fit.fitted_bins.sum() == BINS - 4 and fit.ndf == BINS - 4 - 4


def test_fit_with_three_events_raises_fit_error():
    with pytest.raises(FitError, match=r"3 events.*status"):
        fit_background(np.array([3000.0, 3500.0, 4000.0]), bins=20, range=RANGE)


def test_local_significance_matches_the_asimov_formula_and_is_signed():
    assert local_significance(150, 100) == pytest.approx(np.sqrt(2 * (150 * np.log(1.5) - 50)))
    assert local_significance(100, 100) == pytest.approx(0.0)
    assert local_significance(70, 100) < 0
    assert local_significance(150, 100, 1e-8) == pytest.approx(local_significance(150, 100))
    assert 0 < local_significance(150, 100, 10.0) < local_significance(150, 100)


# -------------------------------------------------------------------------------------------- scan


def test_injected_bump_at_3500_gev_is_found_with_z_above_3_and_nowhere_else(with_bump):
    mjj, _, s_window = with_bump
    result = scan_windows(mjj, bins=BINS, range=RANGE)
    best = result.best
    assert result.lo[best] <= 3500.0 < result.hi[best]
    assert result.max_z > 3.0
    far = np.abs(result.centers - 3500.0) > 500.0
    assert far.sum() >= 8 and np.all(result.z[far] < 3.0), result.z[far]
    assert result.signal_yield[best] == pytest.approx(s_window, abs=3 * result.signal_yield_err[best])
    summary = result.summary()
    assert summary["local_z"] == pytest.approx(result.max_z) and summary["global_p"] is None
    json.dumps(summary)


def test_background_only_scan_has_no_significant_window(background):
    _, mjj = background
    result = scan_windows(mjj, bins=BINS, range=RANGE)
    assert result.max_z < 3.0


def test_global_p_value_from_toys_is_reproducible_and_reported(with_bump):
    mjj, _, _ = with_bump
    kw = {"centers": [3000.0, 3500.0, 4500.0], "bins": BINS, "range": RANGE, "n_toys": 4, "seed": 7}
    a, b = scan_windows(mjj, **kw), scan_windows(mjj, **kw)
    assert len(a.toy_max_z) + a.n_toys_failed == 4
    np.testing.assert_array_equal(a.toy_max_z, b.toy_max_z)
    assert a.global_p == pytest.approx(1 / 5)  # no toy reaches the bump's Z: (0 + 1) / (4 + 1)
    assert a.global_p_gv is not None and a.global_p_gv < 0.01 and a.global_z is not None


def test_null_toys_give_local_z_with_mean_zero_and_unit_width():
    check = null_significance_check(n_toys=120, n_events=20_000, seed=3)
    assert check.n_failed == 0 and len(check.z) == 120
    assert abs(check.mean) < 0.3, check.mean
    assert 0.75 < check.width < 1.3, check.width


def test_bump_hunt_keeps_the_top_fraction_by_score_and_enhances_the_bump(with_bump):
    mjj, n_bkg, _ = with_bump
    rng = np.random.default_rng(4)
    scores = np.concatenate([rng.normal(0, 1, n_bkg), rng.normal(2.5, 1, len(mjj) - n_bkg)])
    results = bump_hunt(mjj, scores, efficiencies=(1.0, 0.1), bins=BINS, range=RANGE)
    assert list(results) == [1.0, 0.1]
    assert results[1.0].n_events == len(mjj) and results[1.0].threshold is None
    assert results[0.1].n_events == int(np.ceil(0.1 * len(mjj)))
    assert results[0.1].threshold == pytest.approx(np.quantile(scores, 0.9), abs=0.01)
    np.testing.assert_array_equal(results[0.1].centers, results[1.0].centers)
    assert results[0.1].max_z > results[1.0].max_z > 3.0


def test_window_outside_the_data_range_is_a_clear_error(background):
    _, mjj = background
    with pytest.raises(ValueError, match="outside the data/fit range"):
        scan_windows(mjj, centers=[8000.0], bins=BINS, range=RANGE)


def test_too_few_events_after_selection_or_in_sidebands_are_clear_errors(background):
    _, mjj = background
    with pytest.raises(ValueError, match="fewer than 50"):
        bump_hunt(mjj, np.arange(len(mjj), dtype=float), efficiencies=(0.0005,), bins=BINS, range=RANGE)
    crowded = np.concatenate([np.full(500, 3500.0), np.linspace(2600, 6900, 30)])
    with pytest.raises(ValueError, match="sidebands"):
        scan_windows(crowded, centers=[3500.0], bins=BINS, range=RANGE)


def test_plots_write_bump_and_scan_figures(with_bump, tmp_path):
    mjj, _, _ = with_bump
    result = scan_windows(mjj, centers=[3000.0, 3500.0, 4000.0], bins=BINS, range=RANGE)
    assert plot_bumphunt(result, tmp_path / "bump.png", caption="toy").stat().st_size > 0
    assert plot_significance_scan({1.0: result}, tmp_path / "scan.png").stat().st_size > 0


# ------------------------------------------------------------------------------- the turn-on and the null

TURN_ON = (2300.0, 200.0)  # erf midpoint and width [GeV]: a trigger turn-on peaking near 2.4 TeV
WIDE = (1500.0, 7000.0)


def turn_on_spectrum(n: int, seed: int) -> np.ndarray:
    return sample_dijet_spectrum((1.0, 10.0, 5.0, 0.0), WIDE, np.random.default_rng(seed), n=n, turn_on=TURN_ON)


@pytest.fixture(scope="module")
def with_turn_on() -> np.ndarray:
    return turn_on_spectrum(20_000, seed=11)


def test_default_fit_starts_above_the_turn_on_peak_and_says_where(with_turn_on):
    start = choose_fit_start(with_turn_on)
    assert start.choice == "auto" and 2250 < start.peak_gev < 2600
    assert start.start_gev == pytest.approx(1.1 * start.peak_gev)
    assert "above the turn-on peak" in start.describe()
    summary = bump_hunt(with_turn_on, None)[1.0].summary()
    assert summary["fit_range_gev"][0] == pytest.approx(start.start_gev) == summary["fit_start_gev"]
    assert summary["fit_start_choice"] == "auto" and "turn-on" in summary["fit_start"]
    falling = sample_dijet_spectrum((1.0, 10.0, 5.0, 0.0), (2500.0, 7000.0), np.random.default_rng(1), n=5000)
    assert choose_fit_start(falling).choice == "data"  # no turn-on: the fit starts at the lowest mass


def test_fitting_the_turn_on_fakes_a_bump_that_the_default_range_does_not(with_turn_on):
    from_lowest = scan_windows(with_turn_on, range=(float(with_turn_on.min()), None))
    assert from_lowest.max_z > 5 or from_lowest.global_fit.chi2_pvalue < 1e-6  # the failure the default avoids
    default = bump_hunt(with_turn_on, None)[1.0]
    assert default.global_fit.chi2_pvalue > 1e-3 and default.max_z < 3.5


def test_null_toys_with_a_turn_on_give_local_z_near_standard_normal():
    check = null_significance_check(n_toys=50, n_events=20_000, seed=5, center=3500.0, range=WIDE, turn_on=TURN_ON)
    assert check.n_failed == 0 and len(check.z) == 50
    assert abs(check.mean) < 0.5, check.mean
    assert 0.6 < check.width < 1.5, check.width
    assert np.all(check.fit_starts > 2500) and check.rate_above_3 <= 0.06


def test_a_window_below_the_fit_start_is_refused_with_the_reason(with_turn_on):
    with pytest.raises(ValueError, match=r"outside the data/fit range.*turn-on peak"):
        bump_hunt(with_turn_on, None, centers=[2500.0])


def test_tied_scores_are_cut_at_exactly_the_fraction_at_random_and_reproducibly():
    scores = np.repeat([0.0, 1.0, 2.0], [6000, 3000, 1000])  # heavy ties, rows sorted by score
    keep, threshold = top_fraction(scores, 0.2, seed=3)
    assert len(keep) == 2000 and threshold == 1.0
    tied = keep[scores[keep] == 1.0]
    assert len(tied) == 1000 and 6000 + 800 < tied.mean() < 6000 + 2200  # spread over the tied rows, not the first
    np.testing.assert_array_equal(keep, top_fraction(scores, 0.2, seed=3)[0])
    assert not np.array_equal(keep, top_fraction(scores, 0.2, seed=4)[0])


def test_bump_hunt_keeps_the_fraction_of_tied_scores_without_following_row_order(with_turn_on):
    mjj = np.sort(with_turn_on)  # rows in mjj order: a file-order tie-break would keep only the lowest masses
    hunt = bump_hunt(mjj, np.zeros(len(mjj)), efficiencies=(1.0, 0.2))
    inside = hunt[1.0].n_events
    assert hunt[0.2].n_events == pytest.approx(0.2 * inside, rel=0.1)


def test_global_p_at_the_toy_floor_is_reported_as_a_bound(with_bump):
    mjj, _, _ = with_bump
    res = scan_windows(mjj, centers=[3000.0, 3500.0, 4500.0], bins=BINS, range=RANGE, n_toys=3, seed=1)
    assert res.global_p == pytest.approx(1 / 4) and res.global_p_is_bound
    assert res.global_p_text() == "< 0.25"
    summary = res.summary()
    assert summary["global_p_is_bound"] is True and summary["global_p_text"] == "< 0.25"
    quiet = scan_windows(mjj, centers=[5000.0, 6000.0], bins=BINS, range=RANGE, n_toys=5, seed=1)
    assert not quiet.global_p_is_bound or quiet.n_toys_above == 0


def test_too_small_selections_and_windows_are_skipped_with_reasons_not_aborted(with_turn_on):
    rng = np.random.default_rng(0)
    hunt = bump_hunt(with_turn_on, rng.random(len(with_turn_on)), efficiencies=(1.0, 0.1, 0.001))
    assert list(hunt) == [1.0, 0.1] and "fewer than 50" in hunt.skipped[0.001]
    assert hunt.summary()["0.001"]["skipped"] == hunt.skipped[0.001]
    assert [r[2] for r in hunt.table_rows()][-1] == "not searched"
    mjj = sample_dijet_spectrum(dijet_params(3000), RANGE, rng, n=3000)
    side = [int(((mjj < 0.95 * c) | (mjj >= 1.05 * c)).sum()) for c in (3000.0, 6000.0)]  # more at 6 TeV
    res = scan_windows(mjj, centers=[3000.0, 6000.0], bins=BINS, range=RANGE, min_sideband_events=sum(side) // 2)
    assert list(res.centers) == [6000.0] and res.skipped[0][0] == 3000.0 and "sidebands" in res.skipped[0][1]


def test_black_box_key_path_is_the_box_name_with_key_json():
    assert key_path("dir/box_raw.h5") == Path("dir/box_raw.key.json")
    assert key_path("dir/box_raw.h5", "k.json") == Path("k.json")


# --------------------------------------------------------------------------------------- black box


def toy_dijets(n: int, jet_pt: float, label: int, seed: int, n_particles: int = 20) -> JetSample:
    """Back-to-back dijet events: two sprays of massless particles, the leading jet heavier in even rows."""
    rng = np.random.default_rng(seed)
    jets = []
    for axis_eta, axis_phi, spread in ((0.3, 0.0, 0.08), (-0.4, np.pi, 0.04)):
        pt = rng.dirichlet(np.ones(n_particles), n) * jet_pt
        pt = -np.sort(-pt, axis=1)
        eta = axis_eta + rng.normal(0, spread, (n, n_particles))
        phi = np.angle(np.exp(1j * (axis_phi + rng.normal(0, spread, (n, n_particles)))))
        jets.append(np.stack([pt, eta, phi, pt * np.cosh(eta)], axis=-1).astype(np.float32))
    mask = np.ones((n, n_particles), dtype=bool)
    j1, j2 = jet_four_vectors(jets[0], mask), jet_four_vectors(jets[1], mask)
    event = {f"j{i}_{f}": j[:, k] for i, j in ((1, j1), (2, j2)) for k, f in enumerate(("pt", "eta", "phi", "m"))}
    event |= {"mjj": pair_mass(j1, j2).astype(np.float32), "j2_constituents": jets[1], "j2_mask": mask,
              "met": np.zeros(n, dtype=np.float32)}
    features = {"tau21": rng.uniform(0.1, 0.5, n).astype(np.float32),
                "j2_tau21": rng.uniform(0.5, 0.9, n).astype(np.float32)}
    return JetSample(jets[0], mask, j1, np.full(n, label), np.ones(n, np.float32), features, event,
                     attrs={"process": "lhco-sig" if label == 11 else "lhco-bkg", "jet_r": 1.0})


@pytest.fixture(scope="module")
def dijet_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("blackbox")
    return (write_sample(d / "bkg.h5", toy_dijets(60, 1300.0, 10, seed=5)),
            write_sample(d / "sig.h5", toy_dijets(20, 1750.0, 11, seed=6)))


def test_black_box_round_trips_through_the_lhco_reader_with_signal_rows_in_the_key(dijet_files, tmp_path):
    bkg, sig = dijet_files
    box = make_blackbox(bkg, sig, n_bkg=40, n_sig=8, out=tmp_path / "box.h5", key_out=tmp_path / "key.json", seed=3)
    assert detect_format(box) == "lhco"
    with open_reader(box) as reader:
        assert not reader.has_label and reader.n_particles == 700 and reader.n_rows == 48
    key = read_key(tmp_path / "key.json")
    assert key["n_sig"] == 8 and key["n_bkg"] == 40 and len(key["signal_rows"]) == 8 and key["seed"] == 3
    assert key["sources"]["signal"]["process"] == "lhco-sig"
    sample = read_sample(convert(box, tmp_path / "box_jets.h5"))
    assert len(sample) == 48
    labels = blackbox_labels(key, sample.event["source_row"])
    assert labels.sum() == 8
    mjj = sample.event["mjj"]
    assert mjj[labels == 1].min() > 3200.0 > 2900.0 > mjj[labels == 0].max()  # signal jets are 1750 GeV each


def test_zero_signal_box_and_same_seed_same_box(dijet_files, tmp_path):
    bkg, _ = dijet_files
    a = make_blackbox(bkg, None, n_bkg=30, n_sig=0, out=tmp_path / "a.h5", seed=9)
    b = make_blackbox(bkg, None, n_bkg=30, n_sig=0, out=tmp_path / "b.h5", seed=9)
    c = make_blackbox(bkg, None, n_bkg=30, n_sig=0, out=tmp_path / "c.h5", seed=10)
    frames = [pd.read_hdf(p, "df") for p in (a, b, c)]
    assert frames[0].shape == (30, 2100)
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert not frames[0].equals(frames[2])
    key = read_key(tmp_path / "a.key.json")
    assert key["n_sig"] == 0 and key["signal_rows"] == []
    assert not list(tmp_path.glob("*.tmp"))


def test_secret_signal_count_is_only_in_the_key(dijet_files, tmp_path):
    bkg, sig = dijet_files
    box = make_blackbox(bkg, sig, n_bkg=40, n_sig="secret", out=tmp_path / "s.h5", seed=1, secret_range=(2, 15))
    key = read_key(tmp_path / "s.key.json")
    assert 2 <= key["n_sig"] <= 15 and key["n_sig_secret"]
    assert len(pd.read_hdf(box, "df")) == 40  # the box size does not reveal n_sig


def test_black_box_errors_name_the_problem(dijet_files, tmp_path):
    bkg, sig = dijet_files
    with pytest.raises(ValueError, match="file has 60"):
        make_blackbox(bkg, sig, n_bkg=100, n_sig=1, out=tmp_path / "x.h5")
    with pytest.raises(ValueError, match="no signal file"):
        make_blackbox(bkg, None, n_bkg=10, n_sig=5, out=tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_dijet_features_order_the_jets_by_mass():
    sample = toy_dijets(12, 1300.0, 10, seed=8)
    sample.event["j1_m"][::2] = 500.0  # leading jet heavier in even rows, lighter in odd rows
    sample.event["j1_m"][1::2] = 50.0
    sample.event["j2_m"][:] = 100.0
    feats = dijet_features(sample)
    assert list(feats)[:5] == ["mjj", "mj1", "delta_mj", "tau21_j1", "tau21_j2"]
    np.testing.assert_allclose(feats["mj1"], np.where(np.arange(12) % 2 == 0, 100.0, 50.0))
    np.testing.assert_allclose(feats["delta_mj"], np.where(np.arange(12) % 2 == 0, 400.0, 50.0))
    lighter_is_sub = np.arange(12) % 2 == 0
    np.testing.assert_allclose(feats["tau21_j1"], np.where(lighter_is_sub, sample.features["j2_tau21"],
                                                           sample.features["tau21"]))
    np.testing.assert_allclose(feats["tau21_j2"], np.where(lighter_is_sub, sample.features["tau21"],
                                                           sample.features["j2_tau21"]))
    del sample.features["j2_tau21"]
    with pytest.raises(SchemaError, match="jetad features"):
        dijet_features(sample)
    assert "tau21_j1" not in dijet_features(sample, taus=False)


def test_cli_bumphunt_on_a_score_file_with_an_injected_bump(tmp_path):
    from typer.testing import CliRunner

    from jetad.cli import app
    from jetad.data.scores import ScoreTable, write_scores
    from jetad.evaluate.bumphunt import sample_dijet_spectrum

    rng = np.random.default_rng(7)
    bkg = sample_dijet_spectrum((1.0, 10.0, 5.0, 0.0), (2000.0, 6000.0), rng, n=20_000)
    sig = rng.normal(3500.0, 150.0, 600)
    mjj = np.concatenate([bkg, sig])
    score = np.concatenate([rng.random(len(bkg)), rng.random(len(sig)) + 0.5])  # signal-like scores are higher
    table = ScoreTable(score=score, label=np.r_[np.zeros(len(bkg)), np.ones(len(sig))].astype(int),
                       weight=np.ones(len(mjj), np.float32), source=np.zeros(len(mjj), np.int16), sources=["box"],
                       observers={"mjj": mjj.astype(np.float32)}, attrs={"detector": "toy"})
    write_scores(tmp_path / "s.h5", table)
    res = CliRunner().invoke(app, ["bumphunt", str(tmp_path / "s.h5"), "--cut", "1", "--cut", "0.3",
                                   "-o", str(tmp_path / "bh")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "bh" / "bumphunt.json").exists() and (tmp_path / "bh" / "significance_scan.png").exists()
    summary = json.loads((tmp_path / "bh" / "bumphunt.json").read_text())
    assert 3200 < summary["0.3"]["best_center_gev"] < 3800 and summary["0.3"]["local_z"] > 3


# ------------------------------------------------------------------- every CLI option takes effect on its own


@pytest.fixture(scope="module")
def turn_on_scores(tmp_path_factory):
    from jetad.data.scores import ScoreTable, write_scores

    mjj = turn_on_spectrum(8000, seed=21)
    table = ScoreTable(score=np.random.default_rng(2).random(len(mjj)), label=np.zeros(len(mjj), int),
                       weight=np.ones(len(mjj), np.float32), source=np.zeros(len(mjj), np.int16), sources=["box"],
                       observers={"mjj": mjj.astype(np.float32)}, attrs={"detector": "toy"})
    return write_scores(tmp_path_factory.mktemp("bh") / "s.h5", table)


def run_bumphunt(path, tmp_path, *options):
    from typer.testing import CliRunner

    from jetad.cli import app

    out = tmp_path / "bh"
    res = CliRunner().invoke(app, ["bumphunt", str(path), *options, "-o", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads((out / "bumphunt.json").read_text()), " ".join(res.stdout.split())


@pytest.mark.parametrize(("options", "check"), [
    ((), lambda s: list(s) == ["1", "0.1", "0.01"] and s["1"]["fit_start_choice"] == "auto"),
    (("--cut", "0.5"), lambda s: list(s) == ["0.5"]),
    (("--cut", "1", "--width", "0.2"), lambda s: s["1"]["best_window_gev"][1] / s["1"]["best_window_gev"][0]
     == pytest.approx(1.1 / 0.9)),
    (("--cut", "1", "--bins", "23"), lambda s: s["1"]["fit"] and s["1"]["global_fit_chi2_ndf"] > 0
     and s["1"]["fit_status"]),
    (("--cut", "1", "--mjj-min", "3000"), lambda s: s["1"]["fit_range_gev"][0] == pytest.approx(3000)
     and s["1"]["fit_start_choice"] == "user"),
    (("--cut", "1", "--mjj-max", "5000"), lambda s: s["1"]["fit_range_gev"][1] == pytest.approx(5000)
     and s["1"]["fit_start_choice"] == "auto"),
    (("--cut", "1", "--fit-start-margin", "0.2"), lambda s: s["1"]["fit_start_margin"] == pytest.approx(0.2)
     and s["1"]["fit_range_gev"][0] == pytest.approx(1.2 * s["1"]["turn_on_peak_gev"])),
    (("--cut", "1", "--toys", "2", "--seed", "5"), lambda s: s["1"]["n_toys"] + s["1"]["n_toys_failed"] == 2
     and s["1"]["seed"] == 5),
])
def test_each_bumphunt_option_takes_effect_on_its_own(turn_on_scores, tmp_path, options, check):
    summary, _ = run_bumphunt(turn_on_scores, tmp_path, *options)
    assert check(summary), summary


def test_bumphunt_bins_option_sets_the_binning(turn_on_scores, tmp_path):
    a, _ = run_bumphunt(turn_on_scores, tmp_path / "a", "--cut", "1", "--bins", "23")
    b, _ = run_bumphunt(turn_on_scores, tmp_path / "b", "--cut", "1")
    assert a["1"]["fit_range_gev"] == b["1"]["fit_range_gev"]
    assert len(a["1"]["windows"]) < len(b["1"]["windows"])  # 3 sideband bins of the coarser binning cost windows


def test_bumphunt_prints_the_fit_start_and_a_bound_global_p(tmp_path):
    from jetad.data.scores import ScoreTable, write_scores

    rng = np.random.default_rng(3)
    mjj = np.concatenate([turn_on_spectrum(8000, seed=4), rng.normal(3800.0, 100.0, 400)])
    table = ScoreTable(score=np.zeros(len(mjj)), label=np.zeros(len(mjj), int), weight=np.ones(len(mjj), np.float32),
                       source=np.zeros(len(mjj), np.int16), sources=["box"], observers={"mjj": mjj.astype(np.float32)},
                       attrs={"detector": "toy"})
    summary, printed = run_bumphunt(write_scores(tmp_path / "s.h5", table), tmp_path, "--cut", "1", "--toys", "3")
    assert "above the turn-on peak" in printed and "< 0.25" in printed
    assert summary["1"]["global_p_is_bound"] is True
