"""NAE / WNAE on a toy background: a curve in 8 features, anomalies far away or off the curve inside its range."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from jetad.data.sample import JetSample
from jetad.detectors.autoencoder import Autoencoder
from jetad.detectors.base import Detector
from jetad.detectors.batch_ot import wasserstein_distance
from jetad.detectors.nae import PRETRAIN_OFFSET, NormalizedAutoencoder, WassersteinNAE
from jetad.detectors.training import TrainingDiverged

NAMES = tuple(f"f{i}" for i in range(8))
INPUTS = {"kind": "features", "features": NAMES, "scaling": "quantile"}
FAST = {"inputs": INPUTS, "device": "cpu", "lr": 3e-3}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks run fastest single-threaded (and do not oversubscribe a busy 2-core runner)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def curve(n: int, rng: np.random.Generator) -> np.ndarray:
    """Background: a 1D manifold embedded in 8 features, with a little noise."""
    t = rng.uniform(-1, 1, n)
    x = np.stack([t, t**2, np.sin(2 * t), np.cos(3 * t), t**3, np.tanh(2 * t), 0.5 * t, np.exp(t)], 1)
    return x + 0.02 * rng.normal(size=x.shape)


def jets(x: np.ndarray, label: int = 0) -> JetSample:
    """A JetSample with one dummy constituent per jet and `x` as its feature columns."""
    c = np.zeros((len(x), 2, 4), np.float32)
    c[:, 0] = (1.0, 0.0, 0.0, 1.0)
    mask = np.zeros((len(x), 2), bool)
    mask[:, 0] = True
    return JetSample.from_constituents(c, mask, label=label,
                                       features={k: x[:, i].astype(np.float32) for i, k in enumerate(NAMES)})


def auc(bkg: np.ndarray, sig: np.ndarray) -> float:
    """Probability that a signal score exceeds a background score."""
    return float((sig[:, None] > bkg[None, :]).mean() + 0.5 * (sig[:, None] == bkg[None, :]).mean())


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    off = curve(400, rng)
    for j in range(off.shape[1]):  # every marginal unchanged, the correlations destroyed: off the curve
        off[:, j] = rng.permutation(off[:, j])
    return {"train": jets(curve(2000, rng)), "test": jets(curve(400, rng)), "off": jets(off, 1),
            "far": jets(curve(100, rng) + 3.0, 1), "small": jets(curve(600, rng))}


@pytest.fixture(scope="module")
def wnae(toy):
    return WassersteinNAE(epochs=8, **FAST).fit(toy["train"])


def test_wnae_scores_far_and_off_manifold_jets_above_background(wnae, toy):
    bkg = wnae.score(toy["test"])
    assert np.isfinite(bkg).all()
    assert auc(bkg, wnae.score(toy["far"])) > 0.95
    assert auc(bkg, wnae.score(toy["off"])) > 0.8


def test_wnae_logs_a_wasserstein_criterion_that_decreases_to_the_best_epoch(wnae):
    h = wnae.history_
    logs = h["logs"]
    assert len(logs["wasserstein"]) == len(logs["epoch"]) == 8
    assert logs["criterion"][h["best_epoch"]] == h["best_criterion"] < logs["criterion"][0]
    assert logs["wasserstein"][-1] < logs["wasserstein"][0]


def test_save_load_round_trip_gives_identical_scores(wnae, toy, tmp_path):
    loaded = Detector.load(wnae.save(tmp_path / "wnae.pt"))
    assert isinstance(loaded, WassersteinNAE)
    assert loaded.get_params() == wnae.get_params()
    np.testing.assert_array_equal(loaded.score(toy["off"]), wnae.score(toy["off"]))


def test_wnae_gradient_reaches_the_parameters_through_the_chain(wnae, toy):
    """Positives are fixed data: the loss depends on the parameters only through the MCMC negatives."""
    wnae.model_.train()
    pos = torch.as_tensor(wnae.spec_.transform(toy["test"]))[:128]
    params = [p for p in wnae.model_.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(1)
    neg = wnae.sample_negatives(len(pos), gen, create_graph=True, push=False)
    grads = torch.autograd.grad(wasserstein_distance(pos, neg), params, allow_unused=True)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    detached = wnae.sample_negatives(len(pos), gen, create_graph=False, push=False)
    assert not wasserstein_distance(pos, detached).requires_grad  # the NAE chain carries no parameter gradient
    loss, logs = wnae.loss(pos)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in params) and any(p.grad.abs().sum() > 0 for p in params)
    assert logs["wasserstein"] == pytest.approx(loss.item())
    wnae.model_.zero_grad(set_to_none=True)
    wnae.model_.eval()


@pytest.mark.parametrize("kind", ["emd", "sinkhorn", "sliced"])
def test_wasserstein_distances_vanish_on_identical_clouds_and_grow_with_a_shift(kind):
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    same, shifted = wasserstein_distance(x, x.clone(), kind), wasserstein_distance(x, x + 1.0, kind)
    assert float(same) < 0.05 * float(shifted)
    exact = {"emd": 8.0, "sinkhorn": 8.0, "sliced": 1.0}[kind]  # W_2^2 of a shift by (1, ..., 1); sliced ~ /dim
    assert float(shifted) == pytest.approx(exact, rel=0.5)


def test_nae_runaway_energy_is_reported_and_the_best_epoch_kept(toy):
    """gamma = 0 leaves E+ - E- unbounded below: with input-space PCD from N(0, 1) starts (the chain of
    `WassersteinNAE`'s defaults) a high learning rate drives the energies to infinity."""
    det = NormalizedAutoencoder(gamma=0.0, pretrain_epochs=0, epochs=12, inputs=INPUTS, device="cpu", lr=0.05,
                                sampling="x", step_size=0.02, noise=0.2, temperature=0.05)
    det.fit(toy["train"])
    stopped = det.history_["stopped"]
    assert "diverged" in stopped and "divergence_threshold" in stopped
    assert det.history_["best_epoch"] < len(det.history_["logs"]["epoch"])
    assert np.isfinite(det.score(toy["test"])).all()


def test_divergence_before_any_epoch_raises_instead_of_returning_scores(toy):
    det = NormalizedAutoencoder(pretrain_epochs=0, epochs=2, divergence_threshold=1e-9, **FAST)
    with pytest.raises(TrainingDiverged, match="divergence_threshold"):
        det.fit(toy["small"])


def test_nae_pretrains_as_an_autoencoder_and_selects_a_fine_tuned_epoch(toy):
    det = NormalizedAutoencoder(pretrain_epochs=2, epochs=4, **FAST).fit(toy["small"])
    crit = det.history_["logs"]["criterion"]
    assert min(crit[:2]) > PRETRAIN_OFFSET > max(crit[2:])
    assert det.history_["best_epoch"] >= 2
    assert np.isnan(det.history_["logs"]["negative_energy"][0])


class Interrupt(Exception):
    pass


def test_same_seed_gives_identical_scores_and_an_interrupted_training_resumes(toy, tmp_path, caplog):
    def fit(**kw):
        return WassersteinNAE(epochs=3, distance="sliced", **FAST, **kw).fit(toy["small"]).score(toy["off"])

    reference = fit()
    np.testing.assert_array_equal(fit(), reference)
    assert not np.array_equal(fit(seed=1), reference)

    ckpt = str(tmp_path / "wnae.ckpt")

    def stop_after_first_epoch(epoch, epochs, logs):
        if epoch == 2:
            raise Interrupt

    det = WassersteinNAE(epochs=3, distance="sliced", checkpoint=ckpt, **FAST)
    with pytest.raises(Interrupt):
        det.fit(toy["small"], progress=stop_after_first_epoch)
    with caplog.at_level(logging.INFO, logger="jetad.detectors.training"):
        resumed = WassersteinNAE(epochs=3, distance="sliced", checkpoint=ckpt, **FAST).fit(toy["small"])
    assert "resuming" in caplog.text
    assert len(resumed.history_["logs"]["epoch"]) == 3
    np.testing.assert_array_equal(resumed.score(toy["off"]), reference)


def test_exact_distance_of_equal_batches_is_the_assignment_with_pot_value_and_gradient():
    import ot

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(48, 8, generator=gen, requires_grad=True)
    y = torch.randn(48, 8, generator=gen, requires_grad=True)
    ours = wasserstein_distance(x, y, "emd")
    w = torch.full((48,), 1.0 / 48)
    ref = ot.emd2(w, w, torch.cdist(x, y) ** 2, numItermax=1_000_000)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    for a, b in zip(torch.autograd.grad(ours, (x, y)), torch.autograd.grad(ref, (x, y)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # unequal sizes keep POT's solver
        unequal = wasserstein_distance(x, y[:40], "emd")
        ref = ot.emd2(w, torch.full((40,), 1 / 40), torch.cdist(x, y[:40]) ** 2)
    assert unequal.item() == pytest.approx(ref.item())


# ----------------------------------------------------------------------------------------------------
# the written-out Langevin chain and the training thread policy


def autograd_chain(model, x, noise, coef, lower, upper, create_graph):
    """The chain as autograd runs it (create_graph: a double backward through every step)."""
    from jetad.detectors.autoencoder import per_jet_mse

    x = x.clone().requires_grad_(True)
    for eta in noise:
        (grad,) = torch.autograd.grad(per_jet_mse(x, model.decoder(model.encoder(x))).sum(), x,
                                      create_graph=create_graph)
        x = torch.clamp(x - coef * grad + eta, lower, upper)
        if not create_graph:
            x = x.detach().requires_grad_(True)
    return x


@pytest.mark.parametrize(("hidden", "activation"), [((64, 32, 16), "silu"), ((16,), "silu"), ((64, 32, 16), "relu")])
def test_written_out_chain_gives_autograds_negatives_and_parameter_gradients(hidden, activation):
    from torch import nn

    from jetad.detectors.autoencoder import build_autoencoder
    from jetad.detectors.langevin import dense_layers, langevin_chain

    torch.manual_seed(0)
    model = build_autoencoder((8,), hidden, 4)
    if activation == "relu":
        for coder in (model.encoder, model.decoder):
            for i, module in enumerate(coder):
                if isinstance(module, nn.SiLU):
                    coder[i] = nn.ReLU()
    lower, upper = torch.full((8,), -2.0), torch.full((8,), 2.0)  # tight: many coordinates clamped
    x0 = 1.5 * torch.randn(200, 8)
    noise = [0.2 * torch.randn(200, 8) for _ in range(10)]
    target = torch.randn(200, 8)
    params = list(model.parameters())
    want = autograd_chain(model, x0, noise, 0.4, lower, upper, True)
    got = langevin_chain(dense_layers(model), x0, noise, 0.4, lower, upper, True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    want_grads = torch.autograd.grad(((want - target) ** 2).sum(), params)
    got_grads = torch.autograd.grad(((got - target) ** 2).sum(), params)
    for p, g, w in zip(model.state_dict(), got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4 * float(w.abs().max()), msg=p)
    detached = langevin_chain(dense_layers(model), x0, noise, 0.4, lower, upper, False)
    assert not detached.requires_grad
    torch.testing.assert_close(detached, autograd_chain(model, x0, noise, 0.4, lower, upper, False).detach(),
                               rtol=1e-5, atol=1e-5)


def test_wnae_negatives_follow_the_autograd_chain_on_the_same_random_numbers(wnae, monkeypatch):
    from jetad.detectors import nae

    def negatives(generator_seed):
        return wnae.sample_negatives(256, torch.Generator().manual_seed(generator_seed), create_graph=True,
                                     push=False)

    fast = negatives(5)
    monkeypatch.setattr(nae, "dense_layers", lambda model: None)  # the autograd path
    slow = negatives(5)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)


def test_only_linear_silu_relu_autoencoders_take_the_written_out_chain():
    from torch import nn

    from jetad.detectors.autoencoder import build_autoencoder
    from jetad.detectors.langevin import dense_layers

    assert [act for *_, act in dense_layers(build_autoencoder((8,), (32, 16), 3))] == [
        "silu", "silu", None, "silu", "silu", None]
    assert dense_layers(build_autoencoder((1, 40, 40), (), 4, channels=(4, 8))) is None  # convolutional
    relu = build_autoencoder((8,), (32,), 3)
    relu.encoder[1] = nn.ReLU()
    assert [act for *_, act in dense_layers(relu)] == ["relu", None, "silu", None]
    relu.encoder[1] = nn.Tanh()
    assert dense_layers(relu) is None


def test_small_networks_train_on_one_thread_and_the_setting_is_restored():
    from jetad.detectors.training import SMALL_MODEL_PARAMETERS, train_loop, training_threads

    small, big = torch.nn.Linear(8, 8), torch.nn.Linear(400, SMALL_MODEL_PARAMETERS // 400 + 1)
    cpu = torch.device("cpu")
    assert training_threads(small, cpu) == 1
    assert training_threads(big, cpu) is None
    assert training_threads(small, torch.device("cuda")) is None
    assert training_threads(small, cpu, threads=3) == 3 and training_threads(small, cpu, threads=None) is None
    with pytest.raises(ValueError, match="threads"):
        training_threads(small, cpu, threads=0)
    seen = []

    def step(batch):
        seen.append(torch.get_num_threads())
        return ((small(batch) - batch) ** 2).mean(), {}

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_loop(small, step, lambda: 0.0, np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32),
                   epochs=1, batch_size=32, lr=1e-3, device=cpu)
        assert set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------------
# the NAE's negative phase (2105.05735): it raises the energy of what the AE reconstructs but the data lack


def two_blobs_on_a_line(n: int, rng: np.random.Generator, centre: float | None = None) -> np.ndarray:
    """Jets at t = -1 or +1 (spread 0.15) along one direction of 8 features, or at t = `centre` (spread 0.05)."""
    u = np.linspace(1.0, -1.0, 8) / np.linalg.norm(np.linspace(1.0, -1.0, 8))
    t = rng.choice([-1.0, 1.0], n) + 0.15 * rng.normal(size=n) if centre is None else centre + 0.05 * rng.normal(size=n)
    return 2.0 * t[:, None] * u + 0.03 * rng.normal(size=(n, 8))


def test_nae_raises_the_energy_of_a_planted_cluster_that_the_ae_reconstructs():
    """Background: two blobs on a line; planted: a cluster at their midpoint, on the line (the AE's latent
    manifold interpolates through it) but off the data. The AE reconstructs it as well as the background;
    after the negative phase the NAE's energy there is several times the background's."""
    rng = np.random.default_rng(0)
    train, test = jets(two_blobs_on_a_line(1000, rng)), jets(two_blobs_on_a_line(300, rng))
    planted = jets(two_blobs_on_a_line(300, rng, centre=0.0), 1)
    common = {"inputs": {**INPUTS, "scaling": "standard"}, "device": "cpu", "hidden": (32, 16), "latent_dim": 1,
              "batch_size": 64, "lr": 3e-3}
    ae = Autoencoder(epochs=20, **common).fit(train)
    nae = NormalizedAutoencoder(epochs=20, pretrain_epochs=10, **common).fit(train)

    def ratio(det):  # median energy of the planted cluster over the background's
        return float(np.median(det.score(planted)) / np.median(det.score(test)))

    assert ratio(ae) < 1.5 and auc(ae.score(test), ae.score(planted)) < 0.7
    assert ratio(nae) > 2 * ratio(ae) and auc(nae.score(test), nae.score(planted)) > 0.9
    logs = nae.history_["logs"]
    neg, start = np.array(logs["negative_energy"][10:]), np.array(logs["start_energy"][10:])
    assert np.isfinite(neg).all() and np.isfinite(start).all() and np.isnan(logs["negative_energy"][:10]).all()
    assert neg[-3:].mean() > 3 * neg[0]  # the negatives' energy moves up during the negative phase


def test_latent_chain_descends_the_decoded_energy_and_stays_in_its_box():
    from jetad.detectors.langevin import latent_langevin

    target = torch.tensor([0.5, -0.5])
    lower, upper = torch.full((2,), -1.0), torch.full((2,), 1.0)
    z0 = torch.rand(256, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = latent_langevin(lambda v: ((v - target) ** 2).sum(1), z0, [torch.zeros_like(z0)] * 20, 0.1, lower, upper)
    assert float(((z - target) ** 2).sum(1).mean()) < 0.05 * float(((z0 - target) ** 2).sum(1).mean())
    assert not z.requires_grad and bool((z >= lower).all() and (z <= upper).all())


# ----------------------------------------------------------------------------------------------------
# options of the WNAE reference (activation, fixed box, LR schedule), validated


@pytest.mark.parametrize("bad, match", [
    ({"bounds_padding": -0.1}, "bounds_padding must be >= 0"),
    ({"activation": "tanh"}, "activation must be one of"),
    ({"lr_schedule": "linear"}, "lr_schedule must be one of"),
    ({"sampling_box": (3.0, -3.0)}, "sampling_box must be"),
    ({"sampling_box": (0.0, float("inf"))}, "sampling_box must be"),
    ({"sampling": "latent"}, "sampling must be one of"),
    ({"lr_factor": 1.5}, "lr_factor must lie in"),
])
def test_bad_sampler_and_schedule_options_are_one_clear_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        WassersteinNAE(**bad)


def test_registry_checks_the_types_of_the_new_options():
    from jetad.detectors import ParameterError, make_detector

    det = make_detector("wnae", activation="relu", sampling_box=[-3, 3], lr_schedule="plateau")
    assert det.sampling_box == (-3.0, 3.0)
    with pytest.raises(ParameterError, match="sampling_box"):
        make_detector("wnae", sampling_box="wide")
    with pytest.raises(ParameterError, match="activation"):
        make_detector("wnae", activation=1)


def test_relu_wnae_in_a_fixed_box_with_a_cosine_schedule_trains(toy, tmp_path):
    det = WassersteinNAE(epochs=3, distance="sliced", activation="relu", sampling_box=(-3.0, 3.0),
                         lr_schedule="cosine", **FAST).fit(toy["small"])
    assert any(isinstance(m, torch.nn.ReLU) for m in det.model_.modules())
    assert not any(isinstance(m, torch.nn.SiLU) for m in det.model_.modules())
    torch.testing.assert_close(det.model_.lower, torch.full((8,), -3.0))
    torch.testing.assert_close(det.model_.upper, torch.full((8,), 3.0))
    neg = det.sample_negatives(64, torch.Generator().manual_seed(0), create_graph=False, push=False)
    assert float(neg.min()) >= -3.0 and float(neg.max()) <= 3.0
    lr = det.history_["logs"]["lr"]
    assert lr[0] > lr[1] > lr[2] and lr[0] < FAST["lr"]
    loaded = Detector.load(det.save(tmp_path / "relu.pt"))
    np.testing.assert_array_equal(loaded.score(toy["off"]), det.score(toy["off"]))


def test_plateau_schedule_lowers_the_lr_after_patience_epochs_without_improvement():
    det = WassersteinNAE(lr_schedule="plateau", lr_factor=0.5, lr_patience=1)
    det._reset_chains()
    for crit in (3.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0):
        det._update_plateau(crit)
    assert det.lr_scale_ == 0.25  # two stalls of more than one epoch
