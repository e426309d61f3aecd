"""The beta-VAE logs its loss terms and the unit-free ratio R = beta * KL / reconstruction (issue 11, item 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jetad.data import JetSample
from jetad.detectors import make_detector

FEATURES = ("f0", "f1", "f2", "f3")
BETA = 0.05


def toy_features(n: int, seed: int) -> JetSample:
    """Correlated Gaussian features on one-constituent jets (the VAE reads features only)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    f = np.stack([z[:, 0], z[:, 0] + 0.3 * z[:, 1], z[:, 1], z[:, 0] ** 2], 1)
    cons = np.tile(np.array([[[100.0, 0.0, 0.0, 100.0]]]), (n, 1, 1))
    return JetSample.from_constituents(cons, np.ones((n, 1), bool), label=0, attrs={"jet_r": 0.8},
                                       features={k: f[:, i].astype(np.float32) for i, k in enumerate(FEATURES)})


def hand_terms(vae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-jet reconstruction (mean squared error of the decoded mean) and KL(N(mu, sigma) || N(0, 1)), by hand."""
    with torch.no_grad():
        h = vae.model_.encoder(x)
        d = vae.latent_dim
        mu, logvar = h[:, :d], h[:, d:].clamp(-12, 12)
        reco = ((vae.model_.decoder(mu) - x) ** 2).mean(1)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    return reco, kl


@pytest.fixture(scope="module")
def fitted():
    train, val = toy_features(200, 0), toy_features(80, 1)
    vae = make_detector("vae", inputs={"kind": "features", "features": FEATURES}, beta=BETA, epochs=1,
                        batch_size=50, seed=3, device="cpu")
    return vae.fit(train, val), val


def test_logged_batch_ratio_is_beta_kl_over_reco_by_hand(fitted):
    vae, val = fitted
    x = torch.as_tensor(vae.spec_.transform(val[:32]))
    vae.model_.eval()
    _, logs = vae.loss(x)
    reco, kl = hand_terms(vae, x)
    assert logs["reco"] == pytest.approx(float(reco.mean()), rel=1e-5)
    assert logs["kl"] == pytest.approx(float(kl.mean()), rel=1e-5)
    assert logs["ratio"] == pytest.approx(BETA * float(kl.mean()) / float(reco.mean()), rel=1e-5)
    assert logs["ratio"] > 0


def test_history_holds_the_validation_terms_of_the_kept_epoch(fitted):
    vae, val = fitted
    logs = vae.history_["logs"]
    for key in ("reco", "kl", "ratio", "val_reco", "val_kl", "val_ratio"):
        assert len(logs[key]) == 1, key
    reco, kl = hand_terms(vae, torch.as_tensor(vae.spec_.transform(val)))  # epoch 0 is the kept state
    assert logs["val_reco"][0] == pytest.approx(float(reco.mean()), rel=1e-5)
    assert logs["val_kl"][0] == pytest.approx(float(kl.mean()), rel=1e-5)
    assert logs["val_ratio"][0] == pytest.approx(BETA * float(kl.mean()) / float(reco.mean()), rel=1e-5)
    # the selection number is still the mean validation loss, reconstruction + beta KL
    assert vae.history_["best_criterion"] == pytest.approx(float((reco + BETA * kl).mean()), rel=1e-5)
    assert logs["ratio"][0] > 0
