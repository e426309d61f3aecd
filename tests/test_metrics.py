"""Specifications of the evaluation metrics and a smoke test of every standard figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, norm

from jetad.evaluate import plots
from jetad.evaluate.metrics import (
    auc,
    auc_grid,
    distance_correlation,
    evaluate_scores,
    js_divergence,
    mass_sculpting,
    max_sic,
    rejection_at,
    roc_curve,
    sic_curve,
    threshold_at_bkg_efficiency,
)


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


# ---------------------------------------------------------------------------------------------- AUC / ROC
def test_auc_of_identical_distributions_is_one_half(rng):
    assert auc(rng.normal(size=200_000), rng.normal(size=200_000)) == pytest.approx(0.5, abs=0.005)


def test_auc_of_perfectly_separated_scores_is_one_and_of_reversed_is_zero(rng):
    sig, bkg = rng.uniform(1, 2, 1000), rng.uniform(0, 1, 2000)
    assert auc(sig, bkg) == 1.0
    assert auc(-sig, -bkg) == 0.0


def test_auc_equals_mann_whitney_u_with_ties(rng):
    sig = rng.integers(0, 12, 700).astype(float)
    bkg = rng.integers(0, 9, 900).astype(float)
    u = mannwhitneyu(sig, bkg).statistic / (sig.size * bkg.size)
    assert auc(sig, bkg) == pytest.approx(u, rel=1e-12)


def test_auc_with_all_scores_tied_is_one_half():
    assert auc(np.zeros(10), np.zeros(20)) == pytest.approx(0.5)


def test_weight_two_equals_duplicated_events(rng):
    sig = rng.integers(0, 20, 300).astype(float)
    bkg = rng.integers(0, 15, 400).astype(float)
    ws, wb = rng.integers(1, 3, 300), rng.integers(1, 3, 400)
    dup_s, dup_b = np.repeat(sig, ws), np.repeat(bkg, wb)
    assert auc(sig, bkg, ws, wb) == pytest.approx(auc(dup_s, dup_b), rel=1e-12)
    for a, b in zip(roc_curve(sig, bkg, ws, wb), roc_curve(dup_s, dup_b), strict=True):
        np.testing.assert_allclose(a, b)
    mass = rng.normal(size=400)
    assert distance_correlation(bkg, mass, wb) == pytest.approx(
        distance_correlation(dup_b, np.repeat(mass, wb)), rel=1e-9
    )


def test_roc_curve_runs_from_origin_to_one_and_is_monotone(rng):
    sig, bkg = np.round(rng.normal(1, 1, 500), 1), np.round(rng.normal(0, 1, 800), 1)
    eps_s, eps_b, thresholds = roc_curve(sig, bkg)
    assert (eps_s[0], eps_b[0]) == (0.0, 0.0)
    assert (eps_s[-1], eps_b[-1]) == (1.0, 1.0)
    assert np.all(np.diff(eps_s) >= 0) and np.all(np.diff(eps_b) >= 0)
    assert np.all(np.diff(thresholds) < 0)
    k = len(thresholds) // 2  # efficiencies are those of score > threshold
    assert eps_b[k] == pytest.approx(np.mean(bkg > thresholds[k]))
    assert eps_s[k] == pytest.approx(np.mean(sig > thresholds[k]))


def test_threshold_at_bkg_efficiency_keeps_that_fraction(rng):
    bkg = rng.normal(size=10_000)
    t = threshold_at_bkg_efficiency(bkg, [1.0, 0.5, 0.1, 0.01, 0.0])
    np.testing.assert_allclose([np.mean(bkg > x) for x in t], [1.0, 0.5, 0.1, 0.01, 0.0])
    tied = np.repeat(np.arange(10.0), 10)  # never keeps more than asked when ties prevent the exact fraction
    assert np.mean(tied > threshold_at_bkg_efficiency(tied, 0.25)) == pytest.approx(0.2)


# ------------------------------------------------------------------------------------------- SIC / rejection
def test_sic_of_a_perfect_discriminant_reaches_one_over_sqrt_of_the_floor(rng):
    sig, bkg = rng.uniform(2, 3, 1000), rng.uniform(0, 1, 10_000)
    eps_s, _ = sic_curve(sig, bkg, min_bkg_events=25)
    # eps_s = 1 for every kept point; the smallest allowed eps_b is 25 / 10_000
    assert np.all(eps_s == 1.0)
    assert max_sic(sig, bkg) == pytest.approx(1 / np.sqrt(25 / 10_000))
    assert max_sic(sig, bkg, min_eps_b=0.01) == pytest.approx(10.0)


def test_rejection_of_two_gaussians_matches_the_analytic_value(rng):
    mu, n = 1.5, 400_000
    rej = rejection_at(rng.normal(mu, 1, n), rng.normal(0, 1, n), eps_s=(0.1, 0.3, 0.5))
    for eps_s, value in rej.items():
        analytic = 1 / norm.sf(mu + norm.isf(eps_s))
        assert value == pytest.approx(analytic, rel=0.05)


def test_rejection_is_infinite_where_no_background_passes(rng):
    rej = rejection_at(rng.uniform(1, 2, 100), rng.uniform(0, 1, 100), eps_s=0.5)
    assert rej == {0.5: np.inf}


# ---------------------------------------------------------------------------------------------- sculpting
def test_jsd_of_identical_histograms_is_zero_and_of_disjoint_is_one():
    h = np.array([1.0, 4.0, 2.0, 0.0])
    assert js_divergence(h, 3 * h) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence([1, 2, 0, 0], [0, 0, 5, 1]) == pytest.approx(1.0)


def test_mass_independent_score_does_not_sculpt_and_score_equal_mass_does(rng):
    mass = rng.exponential(80.0, 100_000) + 20.0
    flat = mass_sculpting(rng.normal(size=mass.size), mass, eps_b=(0.5, 0.1))
    assert all(v < 0.01 for v in flat.values())
    sculpted = mass_sculpting(mass, mass, eps_b=(0.5, 0.1, 0.01))
    assert all(v > 0.2 for v in sculpted.values())
    assert sculpted[0.5] < sculpted[0.1] < sculpted[0.01]


# -------------------------------------------------------------------------------------- distance correlation
def _brute_force_dcor(x, y, w):
    """The textbook O(N^2) weighted V-statistic (Szekely 2007; DisCo 2001.05310 eq. 3)."""
    w = w / w.sum()

    def centred(v):
        d = np.abs(v[:, None] - v[None, :])
        row = d @ w
        return d - row[:, None] - row[None, :] + w @ row

    a, b = centred(x), centred(y)
    return np.sqrt((w @ (a * b) @ w) / np.sqrt((w @ (a * a) @ w) * (w @ (b * b) @ w)))


@pytest.mark.parametrize("n", [2, 7, 64, 301])
def test_fast_distance_correlation_equals_the_quadratic_definition(rng, n):
    x = np.round(rng.normal(size=n), 1)  # rounding makes ties
    y = np.round(x**2 + rng.normal(size=n), 1)
    w = rng.uniform(0.1, 2.0, n)
    assert distance_correlation(x, y, w) == pytest.approx(_brute_force_dcor(x, y, w), rel=1e-9)


def test_distance_correlation_is_small_for_independent_one_for_linear_positive_for_square(rng):
    x, y = rng.normal(size=50_000), rng.normal(size=50_000)
    assert distance_correlation(x, y) < 0.02
    assert distance_correlation(x, 3 * x - 7) == pytest.approx(1.0, abs=1e-6)
    u = rng.uniform(-1, 1, 50_000)
    assert abs(np.corrcoef(u, u**2)[0, 1]) < 0.02
    assert distance_correlation(u, u**2) > 0.4


# ---------------------------------------------------------------------------------------------- bundles
def test_auc_grid_places_each_point_and_leaves_missing_ones_nan(rng):
    bkg = rng.normal(size=2000)
    points = {(m, r): rng.normal(m / 1000 * (1 - r), 1, 500) for m in (1000, 3000) for r in (0.3, 0.7)}
    del points[(3000, 0.7)]
    (xs, ys), grid = auc_grid(points, bkg)
    np.testing.assert_array_equal(xs, [1000, 3000])
    np.testing.assert_array_equal(ys, [0.3, 0.7])
    assert grid[0, 1] == pytest.approx(auc(points[(1000, 0.7)], bkg))
    assert np.isnan(grid[1, 1]) and grid[1, 0] > grid[0, 0] > 0.5


def test_evaluate_scores_is_a_flat_json_ready_dict(rng):
    mass = rng.uniform(50, 250, 5000)
    out = evaluate_scores(rng.normal(1, 1, 2000), rng.normal(size=5000), mass_bkg=mass)
    assert {"auc", "max_sic", "rejection_at_eps_s_0.3", "jsd_at_eps_b_0.1", "dcor_score_mass"} <= set(out)
    assert all(isinstance(v, float) for v in out.values())
    assert json.loads(json.dumps(out)) == out


# ---------------------------------------------------------------------------------------------- plots
def _is_png(path):
    return path.exists() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_plot_function_writes_a_png(rng, tmp_path):
    sig, bkg = rng.normal(1, 1, 3000), rng.normal(0, 1, 3000)
    mass = rng.exponential(60, 3000) + 20
    es, eb, _ = roc_curve(sig, bkg)
    caption = "toy task, 3000 + 3000 jets, seed 2024"
    grid = np.array([[0.5, 0.7, np.nan], [0.2, 0.9, 0.95]])
    written = [
        plots.plot_roc({"gauss": (es, eb), "worse": (es**2, eb)}, tmp_path / "roc.png", caption=caption),
        plots.plot_sic({"gauss": sic_curve(sig, bkg)}, tmp_path / "sic.png", caption=caption),
        plots.plot_auc_grid(
            [1000, 3000],
            [0.1, 0.3, 0.7],
            grid,
            tmp_path / "grid.png",
            r"$m_\Phi$ [GeV]",
            r"$r_{inv}$",
            "AE",
            caption=caption,
        ),
        plots.plot_auc_grids(
            {"AE": grid, "WNAE": 1 - grid},
            [1000, 3000],
            [0.1, 0.3, 0.7],
            tmp_path / "sub" / "grids.png",
            r"$m_\Phi$ [GeV]",
            r"$r_{inv}$",
        ),
        plots.plot_score_vs_mass(bkg + mass / 100, mass, tmp_path / "sculpt.png", caption=caption),
        plots.plot_training_curves(
            {"train_loss": [3.0, 2.0, 1.5], "val_loss": [3.2, 2.4, 2.0], "val_auc": [0.6, 0.7, 0.75]},
            tmp_path / "train.png",
            caption=caption,
        ),
        plots.plot_score_distributions({"signal": sig, "background": bkg}, tmp_path / "scores.png"),
        plots.plot_sensitivity({"cathode": (np.array([3.7, 0.0, 1.8]), np.array([8.2, 0.4, 3.2])),
                                "cwola": (np.array([0.0, 3.7]), np.array([1.0, 4.9]))}, tmp_path / "z.png",
                               caption=caption),
    ]
    for path in written:
        assert _is_png(path), path
    with pytest.raises(ValueError, match="nothing to plot"):
        plots.plot_sensitivity({}, tmp_path / "empty.png")
