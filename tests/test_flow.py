"""Specifications for the normalizing-flow detector (MAF/NSF, optionally conditioned on a nuisance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from jetad.data import SchemaError
from jetad.data.sample import JetSample
from jetad.detectors.flow import FlowDensity

COV = np.array([[1.0, 0.8], [0.8, 1.0]]) * np.array([[4.0, 2.0], [2.0, 1.0]])  # sd 2 and 1, correlation 0.8
MEAN = np.array([1.0, -2.0])
SLOPES = np.array([2.0, -1.0])  # conditional feature means per 100 GeV of jet mass


def toy_sample(features: dict[str, np.ndarray], seed: int, mass: np.ndarray | None = None) -> JetSample:
    """Random massless constituents carrying the given feature columns (and jet masses, when given)."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(features.values())))
    c = np.stack([rng.exponential(20, (n, 4)), rng.normal(0, 0.3, (n, 4)), rng.normal(0, 0.3, (n, 4))], -1)
    c = np.concatenate([c, c[..., :1] * np.cosh(c[..., 1:2])], -1)  # E = pT cosh(eta)
    jets = None
    if mass is not None:
        jets = np.stack([np.full(n, 500.0), np.zeros(n), np.zeros(n), mass], 1)
    return JetSample.from_constituents(c, np.ones((n, 4), bool), jets=jets, features=features)


def gaussian_sample(n: int, seed: int) -> tuple[JetSample, np.ndarray]:
    x = np.random.default_rng(seed).multivariate_normal(MEAN, COV, n)
    return toy_sample({"a": x[:, 0], "b": x[:, 1]}, seed), x


def conditional_sample(n: int, seed: int) -> JetSample:
    """Features whose means grow linearly with the jet mass (50-250 GeV); width 0.2."""
    rng = np.random.default_rng(seed)
    m = rng.uniform(50, 250, n)
    x = SLOPES * (m[:, None] / 100) + rng.normal(0, 0.2, (n, 2))
    return toy_sample({"a": x[:, 0], "b": x[:, 1]}, seed, mass=m)


FAST = {"epochs": 25, "patience": 5, "seed": 3}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny flows train fastest on one thread (intra-op threads only add overhead, and thrash on busy CI)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gaussian_flow() -> FlowDensity:
    train, _ = gaussian_sample(4000, seed=1)
    return FlowDensity(inputs={"features": ("a", "b")}, **FAST).fit(train)


@pytest.fixture(scope="module")
def conditional_flow() -> FlowDensity:
    det = FlowDensity(inputs={"features": ("a", "b")}, condition="mass", **FAST)
    return det.fit(conditional_sample(4000, seed=2))


def test_flow_log_density_matches_the_analytic_gaussian(gaussian_flow):
    test, x = gaussian_sample(1000, seed=5)
    truth = multivariate_normal(MEAN, COV).logpdf(x)
    learned = gaussian_flow.log_prob(test)
    assert np.corrcoef(learned, truth)[0, 1] > 0.95
    assert np.mean(np.abs(learned - truth)) < 0.15
    np.testing.assert_allclose(gaussian_flow.score(test), -learned)


def test_jets_far_from_the_bulk_score_higher(gaussian_flow):
    bulk, _ = gaussian_sample(500, seed=6)
    rng = np.random.default_rng(7)
    direction = rng.normal(size=(500, 2))
    far = MEAN + 5 * direction / np.linalg.norm(direction, axis=1, keepdims=True) * np.sqrt(np.diag(COV))
    outliers = toy_sample({"a": far[:, 0], "b": far[:, 1]}, seed=7)
    s_bkg, s_sig = gaussian_flow.score(bulk), gaussian_flow.score(outliers)
    auc = (s_sig[:, None] > s_bkg[None, :]).mean()
    assert auc > 0.9


def test_unconditional_samples_follow_the_training_distribution(gaussian_flow):
    x = gaussian_flow.sample(5000, seed=0)
    assert x.shape == (5000, 2)
    np.testing.assert_allclose(x.mean(0), MEAN, atol=0.15)
    np.testing.assert_allclose(np.cov(x.T), COV, atol=0.4)
    np.testing.assert_array_equal(x, gaussian_flow.sample(5000, seed=0))


def test_a_jet_typical_for_its_mass_scores_low_and_high_at_another_mass(conditional_flow):
    point = SLOPES * 0.6  # the mean features at 60 GeV
    here = toy_sample({"a": np.array([point[0]]), "b": np.array([point[1]])}, 8, mass=np.array([60.0]))
    there = toy_sample({"a": np.array([point[0]]), "b": np.array([point[1]])}, 8, mass=np.array([240.0]))
    typical = conditional_flow.score(conditional_sample(2000, seed=9))
    assert conditional_flow.score(here)[0] < np.median(typical)
    assert conditional_flow.score(there)[0] > np.quantile(typical, 0.999)


def test_conditional_samples_reproduce_the_conditional_mean(conditional_flow):
    for mass in (80.0, 150.0, 220.0):
        x = conditional_flow.sample(3000, context=np.full(3000, mass), seed=1)
        np.testing.assert_allclose(x.mean(0), SLOPES * mass / 100, atol=0.12)
        assert np.all(x.std(0) < 0.4)
    scalar = conditional_flow.sample(10, context=150.0, seed=2)
    assert scalar.shape == (10, 2)
    with pytest.raises(ValueError, match="context"):
        conditional_flow.sample(10)
    with pytest.raises(ValueError, match="context"):
        conditional_flow.sample(10, context=np.ones(3))


def test_save_load_round_trip_gives_identical_scores(conditional_flow, tmp_path):
    sample = conditional_sample(300, seed=10)
    path = conditional_flow.save(tmp_path / "flow.pt")
    loaded = FlowDensity.load(path)
    assert isinstance(loaded, FlowDensity) and loaded.condition == "mass"
    np.testing.assert_array_equal(loaded.score(sample), conditional_flow.score(sample))
    np.testing.assert_array_equal(loaded.sample(50, context=120.0, seed=4),
                                  conditional_flow.sample(50, context=120.0, seed=4))


def test_conditioning_on_an_input_feature_is_refused():
    with pytest.raises(ValueError, match="sd_mass"):
        FlowDensity(inputs={"features": ("sd_mass", "tau21")}, condition="sd_mass")
    with pytest.raises(ValueError, match="flow must be"):
        FlowDensity(flow="realnvp")


def test_nan_inputs_and_missing_context_raise_schema_errors():
    x = np.random.default_rng(0).normal(size=(100, 2))
    x[5, 1] = np.nan
    bad = toy_sample({"a": x[:, 0], "b": x[:, 1]}, seed=0)
    with pytest.raises(SchemaError, match="NaN"):
        FlowDensity(inputs={"features": ("a", "b")}, epochs=1).fit(bad)
    good = toy_sample({"a": x[:, 0], "b": np.zeros(100)}, seed=0)
    with pytest.raises(SchemaError, match="mjj"):
        FlowDensity(inputs={"features": ("a",)}, condition="mjj", epochs=1).fit(good)


def test_same_seed_gives_identical_scores_for_maf_and_nsf():
    train, _ = gaussian_sample(600, seed=11)
    for flow in ("maf", "nsf"):
        params = {"flow": flow, "inputs": {"features": ("a", "b")}, "epochs": 3, "transforms": 2, "seed": 5}
        a, b = (FlowDensity(**params).fit(train) for _ in range(2))
        np.testing.assert_array_equal(a.score(train), b.score(train))


def test_event_level_context_is_standardized_with_training_statistics():
    rng = np.random.default_rng(12)
    mjj = rng.uniform(2500, 4500, 800)
    x = (mjj - 3500) / 1000 + rng.normal(0, 0.3, 800)
    sample = toy_sample({"a": x}, seed=12)
    sample.event["mjj"] = mjj
    det = FlowDensity(inputs={"features": ("a",)}, condition="mjj", epochs=2, seed=0).fit(sample)
    logm = np.log1p(mjj)
    assert abs(det.context_mean_[0] - logm.mean()) < 0.05
    assert det.sample(5, context=[3000, 3200, 3400, 3600, 3800], seed=0).shape == (5, 1)


def test_latents_of_the_training_distribution_are_standard_normal(conditional_flow):
    """z = f(x; m) maps held-out jets of every mass to N(0, I): the mass trend of the features is gone."""
    held = conditional_sample(3000, seed=9)
    z = conditional_flow.latents(held)
    assert z.shape == (3000, 2) and np.isfinite(z).all()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=0.15)
    np.testing.assert_allclose(z.std(0), 1.0, atol=0.15)
    mass = held.jets[:, 3]
    assert max(abs(np.corrcoef(z[:, j], mass)[0, 1]) for j in range(2)) < 0.1  # raw features: ~0.9 with the mass
