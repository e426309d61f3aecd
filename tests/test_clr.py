"""JetCLR / AnomCLR: contrastive training, invariances, scores, persistence (toy jets, a few seconds each)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jetad.data import JetSample
from jetad.detectors import Detector
from jetad.detectors.clr import AnomCLR, JetCLR, anomclr_loss, nt_xent, pt_reweight
from jetad.detectors.clr_encoder import ConstituentTransformer, attention_key_bias, biased_encoder
from jetad.evaluate.metrics import auc
from jetad.evaluate.probe import linear_probe_auc
from jetad.physics.augment import collinear_split

SMALL = {"n_constituents": 24, "dim": 32, "epochs": 8, "batch_size": 64, "patience": 8, "nae_epochs": 4, "seed": 1}


def toy_jets(n: int, anomalous: bool = False, seed: int = 0, p: int = 20) -> JetSample:
    """Background: one narrow prong with a hard core, soft constituents wider; anomalies: two prongs 0.4 apart
    sharing pT more evenly. 8-20 constituents, so the zero padding leaves room for collinear splits."""
    rng = np.random.default_rng(seed + 1000 * anomalous)
    mask = np.arange(p)[None] < rng.integers(8, p + 1, (n, 1))
    pt = np.where(mask, rng.exponential(1.0, (n, p)) ** (1.5 if anomalous else 2.0), 0.0)
    pt = 500 * pt / pt.sum(1, keepdims=True)
    width = 0.1 * np.clip(1 / np.sqrt(np.maximum(pt, 1e-3)), 0.03, 1.0)
    eta, phi = rng.normal(0, 1, (2, n, p)) * width
    if anomalous:
        side = np.where(rng.random((n, p)) < 0.5, 0.2, -0.2)
        angle = rng.uniform(0, 2 * np.pi, (n, 1))
        eta, phi = eta + side * np.cos(angle), phi + side * np.sin(angle)
    eta, phi = eta + rng.uniform(-1, 1, (n, 1)), phi + rng.uniform(-3, 3, (n, 1))
    order = np.argsort(-pt, 1)
    pt, eta, phi, mask = (np.take_along_axis(a, order, 1) for a in (pt, eta, phi, mask))
    cons = np.stack([pt, eta, phi, pt * np.cosh(eta)], -1) * mask[..., None]
    return JetSample.from_constituents(cons, mask, label=int(anomalous), attrs={"jet_r": 0.8})


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return toy_jets(400), toy_jets(150, seed=5), toy_jets(150, anomalous=True, seed=6)


@pytest.fixture(scope="module")
def clr(data):
    return JetCLR(**SMALL).fit(data[0])


@pytest.fixture(scope="module")
def anomclr(data):
    return AnomCLR(**SMALL).fit(data[0])


def test_losses_reward_aligned_views_and_penalise_anomalous_ones():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=g)
    assert nt_xent(z, z) < nt_xent(z, torch.randn(16, 8, generator=g))
    assert anomclr_loss(z, z, -z) < anomclr_loss(z, z, z)
    assert anomclr_loss(z, z, -z, plus=True) == pytest.approx(-2 / 0.1)  # -(s+ - s-)/T with s+ = 1, s- = -1


def test_pt_reweighting_keeps_the_jet_sum_pt_and_the_order():
    jets = toy_jets(5)
    c, m = pt_reweight(jets.constituents, jets.mask, np.random.default_rng(0))
    np.testing.assert_allclose(c[..., 0].sum(1), jets.constituents[..., 0].sum(1), rtol=1e-5)
    assert (np.diff(c[..., 0], axis=1) <= 1e-4).all() and (m == jets.mask).all()


def test_contrastive_validation_loss_decreases(clr, anomclr):
    for det in (clr, anomclr):
        crit = det.history_["logs"]["criterion"]
        assert min(crit[-3:]) < crit[0] - 0.2, crit


def test_representation_is_pre_projection_with_one_row_per_jet(clr, data):
    z = clr.representation(data[1])
    assert z.shape == (150, 32) and np.isfinite(z).all()
    assert clr.representation(data[1], layer="head1").shape == (150, 32)
    assert clr.representation(data[1], layer="projection").shape == (150, clr.proj_dim)


def test_augmentations_move_a_jet_less_than_swapping_it_for_another(clr, data):
    report = clr.invariance_report(data[1], np.random.default_rng(3))
    for name in ("rotate", "translate", "collinear_split", "smear_soft", "all_physical"):
        assert report[name] < 0.5 * report["random_swap"], report
    assert report["translate"] < 1e-6  # jets are centred on their own axis at inference


def test_both_detectors_find_obvious_toy_anomalies(clr, anomclr, data):
    _, bkg, sig = data
    for det in (clr, anomclr):
        s_b, s_s = det.scores(bkg), det.scores(sig)
        assert all(np.isfinite(v).all() for v in (*s_b.values(), *s_s.values()))
        aucs = {k: auc(s_s[k], s_b[k]) for k in s_b}
        assert max(aucs.values()) > 0.6, (det.name, aucs)
    assert clr.score_kind == "mahalanobis" and anomclr.score_kind == "norm"


def test_save_load_and_same_seed_give_identical_scores(clr, data, tmp_path):
    bkg = data[1]
    clr.fit_nae(data[0])
    before = clr.scores(bkg)
    assert set(before) == {"norm", "mahalanobis", "nae"}
    loaded = Detector.load(clr.save(tmp_path / "clr.pt"))
    for k, v in loaded.scores(bkg).items():
        np.testing.assert_allclose(v, before[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.score(bkg), before["mahalanobis"], rtol=1e-5)
    again = JetCLR(**SMALL).fit(data[0])
    np.testing.assert_allclose(again.score(bkg), before["mahalanobis"], rtol=1e-5, atol=1e-6)


def test_representation_ignores_constituent_order_and_padding(clr, data):
    bkg = data[1][:50]
    z = clr.representation(bkg)
    perm = np.random.default_rng(0).permutation(bkg.n_constituents)
    shuffled = JetSample.from_constituents(bkg.constituents[:, perm], bkg.mask[:, perm], jets=bkg.jets)
    np.testing.assert_allclose(clr.representation(shuffled), z, atol=1e-5)
    padded = JetSample.from_constituents(np.pad(bkg.constituents, [(0, 0), (0, 10), (0, 0)]),
                                         np.pad(bkg.mask, [(0, 0), (0, 10)]), jets=bkg.jets)
    np.testing.assert_allclose(clr.representation(padded), z, atol=1e-5)
    # the network itself (no pT sorting in front): permuted and longer padded inputs
    x = torch.as_tensor(clr._model_inputs(bkg, "toy"))
    np.testing.assert_allclose(clr._represent(x[:, torch.randperm(x.shape[1])]), z, atol=1e-5)
    np.testing.assert_allclose(clr._represent(torch.nn.functional.pad(x, (0, 0, 0, 8))), z, atol=1e-5)


def test_linear_probe_separates_the_toy_classes(clr):
    # with JetCLR's 0.5 log pT attention bias the toy probe reaches ~0.70 (0.81 without it: the toy's classes
    # differ most in their soft, wide constituents, which the bias attends to less)
    for layer in ("pooled", "head1"):
        probe = linear_probe_auc(*(clr.representation(toy_jets(100, s % 2 == 1, seed=s), layer=layer)
                                   for s in (7, 8, 9, 10)))
        assert probe["auc"] > 0.65 and probe["inverse_mistag_50"] > 2.5, (layer, probe)


def _collinear_change(pt_input: str, bias: float, train: JetSample, jets: JetSample) -> float:
    """Max |z(jet) - z(jet with one constituent split collinearly)| / max |z| after one epoch of training."""
    det = JetCLR(n_constituents=24, dim=16, epochs=1, batch_size=64, patience=1, seed=1, pt_input=pt_input,
                 pt_attention_bias=bias).fit(train)
    c, m = collinear_split(jets.constituents, jets.mask, np.random.default_rng(0), n_split=1,
                           p_out=jets.n_constituents + 1)
    assert (m.sum(1) == jets.mask.sum(1) + 1).all()
    z, z_split = det.representation(jets), det.representation(JetSample.from_constituents(c, m, jets=jets.jets))
    return float(np.abs(z - z_split).max() / np.abs(z).max())


def test_pt_attention_bias_one_makes_a_pt_free_encoder_exactly_collinear_safe(data):
    """Attention weight ~ pT_j^b exp(q.k_j): for b = 1 the two collinear pieces of a constituent sum to the
    parent's weight, so with no pT input column (the pieces' inputs equal the parent's) and pT-weighted pooling
    the representation does not change; JetCLR's b = 0.5 is in between."""
    train, jets = data[0][:128], data[1][:40]
    change = {b: _collinear_change("none", b, train, jets) for b in (0.0, 0.5, 1.0)}
    assert change[1.0] < 1e-5, change
    assert change[0.0] > 100 * change[1.0] and change[0.5] < change[0.0], change


def test_biased_attention_matches_torch_attention_with_a_float_key_mask():
    torch.manual_seed(0)
    model = ConstituentTransformer(3, 16, 2, 4, 8, 0.1, pt_bias=0.5).eval()
    mask = torch.arange(6)[None] < torch.tensor([[3], [6], [1], [0]])
    w = torch.rand(4, 6) * mask
    w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
    h, bias = model.embed(torch.randn(4, 6, 3)), attention_key_bias(mask, w, 0.5)
    open_slot = torch.zeros_like(mask)
    open_slot[3, 0] = True  # the jet without constituents keeps one slot open
    assert torch.isinf(bias[~mask & ~open_slot]).all() and torch.isfinite(bias[mask | open_slot]).all()
    reference = model.encoder(h, src_key_padding_mask=bias)  # torch's (non-fused, grad-enabled) path
    torch.testing.assert_close(biased_encoder(model.encoder, h, bias), reference, atol=1e-5, rtol=1e-5)


def _views(augment_views: str, jets: JetSample) -> list[tuple[np.ndarray, np.ndarray]]:
    det = JetCLR(augment_views=augment_views)
    augs = det.view_augmentations()
    return [aug(jets.constituents, jets.mask, np.random.default_rng(i)) for i, aug in enumerate(augs)]


def test_one_view_scheme_splits_and_smears_only_the_second_view():
    """JetCLR's code: both views rotated and translated; only the second collinearly split and smeared."""
    jets = toy_jets(30)  # <= 20 constituents in 40 slots: room for splits
    jets = JetSample.from_constituents(np.pad(jets.constituents, [(0, 0), (0, 20), (0, 0)]),
                                       np.pad(jets.mask, [(0, 0), (0, 20)]), jets=jets.jets)
    n, sum_pt = jets.mask.sum(1), jets.constituents[..., 0].sum(1)
    (c1, m1), (c2, m2) = _views("one", jets)
    assert (m1.sum(1) == n).all()
    np.testing.assert_allclose(c1[..., 0], jets.constituents[..., 0], rtol=1e-5)  # pT untouched

    def distances(c: np.ndarray) -> np.ndarray:  # (eta, phi) distance of the two leading constituents
        return np.hypot(c[:, 0, 1] - c[:, 1, 1], (c[:, 0, 2] - c[:, 1, 2] + np.pi) % (2 * np.pi) - np.pi)
    np.testing.assert_allclose(distances(c1), distances(jets.constituents), atol=1e-4)  # rigid motion only
    assert (m2.sum(1) > n).all()  # every toy jet has padding to split into
    np.testing.assert_allclose(c2[..., 0].sum(1), sum_pt, rtol=1e-4)
    (c1, m1), (c2, m2) = _views("both", jets)
    assert (m1.sum(1) > n).all() and (m2.sum(1) > n).all()


def test_bad_jetclr_options_are_refused(clr, data):
    for bad in (-0.5, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="pt_attention_bias"):
            JetCLR(pt_attention_bias=bad)
    with pytest.raises(ValueError, match="augment_views"):
        JetCLR(augment_views="two")
    with pytest.raises(ValueError, match="layer"):
        clr.representation(data[1], layer="encoder")


def test_feature_inputs_are_refused(data):
    with pytest.raises(ValueError, match="constituents"):
        JetCLR(inputs={"kind": "features", "features": ("pt",)}, epochs=1).fit(data[0])
