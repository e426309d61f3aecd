"""Bump hunt (dijet fits, window scan, significance, toys) and LHCO-style black boxes, on toy data only."""

from __future__ import annotations

import json

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
    dijet_function,
    fit_background,
    local_significance,
    null_significance_check,
    sample_dijet_spectrum,
    scan_windows,
)
from jetad.evaluate.plots import plot_bumphunt, plot_significance_scan
from jetad.physics.dijet import dijet_features
from jetad.tasks.blackbox import blackbox_labels, make_blackbox, read_key

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
