"""The Detector contract, checked on every registered detector (the zoo test), plus the CLI train/score/evaluate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from jetad.cli import app
from jetad.data import JetSample, SchemaError, write_sample
from jetad.detectors import REGISTRY, Detector, make_detector
from jetad.detectors.base import MODEL_FORMAT_VERSION
from jetad.evaluate.metrics import auc

FEATURES = ("f0", "f1", "f2", "f3")
FAST = {"epochs": 3, "batch_size": 64, "patience": 3}
ZOO = {
    "ae": FAST,
    "vae": FAST | {"beta": 1e-3},
    "flow": FAST | {"transforms": 2, "hidden": (16, 16)},
    "emd": {"n_reference": 20, "k": 3, "n_constituents": 12},
    "nae": FAST | {"mcmc_steps": 3, "buffer_size": 256},
    "wnae": FAST | {"mcmc_steps": 3, "buffer_size": 256, "distance": "sliced"},
    "nurd": FAST | {"representation_dim": 8, "critic_hidden": (32, 32)},
    "clr": FAST | {"n_constituents": 16, "dim": 32},
    "anomclr": FAST | {"n_constituents": 16, "dim": 32, "score_kind": "mahalanobis"},
}


def toy_jets(n: int, anomalous: bool = False, seed: int = 0, p: int = 16) -> JetSample:
    """Background: correlated features, two-prong-free jets; anomalies: shifted features, wide jets."""
    rng = np.random.default_rng(seed + 1000 * anomalous)
    z = rng.normal(size=(n, 2))
    f = np.stack([z[:, 0], z[:, 0] + 0.3 * z[:, 1], z[:, 1], z[:, 0] ** 2], 1)
    if anomalous:
        f = f + 3.0
    width = 0.4 if anomalous else 0.1
    pt = np.sort(rng.exponential(20.0, (n, p)), axis=1)[:, ::-1] + 1.0
    eta, phi = rng.normal(0, width, (n, p)), rng.normal(0, width, (n, p))
    mask = np.ones((n, p), dtype=bool)
    cons = np.stack([pt, eta, phi, pt * np.cosh(eta)], -1)
    return JetSample.from_constituents(
        cons, mask, label=int(anomalous), features={k: f[:, i].astype(np.float32) for i, k in enumerate(FEATURES)},
        attrs={"jet_r": 0.8},
    )


def build(name: str) -> Detector:
    params = dict(ZOO[name])
    if name not in ("emd", "clr", "anomclr"):  # these read constituents
        params["inputs"] = {"kind": "features", "features": FEATURES}
    return make_detector(name, seed=1, **params)


@pytest.fixture(scope="module")
def data():
    return toy_jets(300), toy_jets(60, seed=5), toy_jets(60, anomalous=True, seed=6)


def test_every_registered_detector_is_in_the_zoo():
    assert set(REGISTRY) == set(ZOO), sorted(REGISTRY)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_detector_contract(name, data, tmp_path):
    if name not in REGISTRY:
        pytest.skip(f"{name} not registered")
    train, bkg, sig = data
    if name == "nurd":  # needs two labelled background classes
        train = train.subset(slice(None))
        train.label = train.label.copy()
        train.label[::2] = 2
    det = build(name)
    assert det.fit(train) is det
    s_b, s_s = det.score(bkg), det.score(sig)
    assert s_b.shape == (60,) and np.isfinite(s_b).all() and np.isfinite(s_s).all()
    assert auc(s_s, s_b) > 0.7, "obvious anomalies must score higher"
    path = det.save(tmp_path / f"{name}.pt")
    np.testing.assert_allclose(Detector.load(path).score(bkg), s_b, rtol=1e-5, atol=1e-6)
    again = build(name).fit(train)
    np.testing.assert_allclose(again.score(bkg), s_b, rtol=1e-5, atol=1e-6)  # same seed, same model
    with pytest.raises(SchemaError):
        det.score(bkg[:0])


def test_missing_feature_nan_inputs_and_unfitted_use_fail_clearly(data):
    train, bkg, _ = data
    det = build("ae").fit(train)
    no_f3 = bkg.subset(slice(None))
    del no_f3.features["f3"]
    with pytest.raises(SchemaError, match=r"\['f3'\] missing"):
        det.score(no_f3)
    nan = bkg.subset(slice(None))
    nan.features["f1"] = nan.features["f1"].copy()
    nan.features["f1"][3] = np.nan
    with pytest.raises(SchemaError, match="f1 has 1 NaN"):
        det.score(nan)
    with pytest.raises(RuntimeError, match="not fitted"):
        build("ae").score(bkg)
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("isolation-forest")


def test_image_model_refuses_images_of_another_size(data, tmp_path):
    train, bkg, _ = data
    det = make_detector("ae", inputs={"kind": "images", "image_size": 16}, **FAST).fit(train)
    assert det.score(bkg).shape == (60,)
    det.spec_.image_size = 20  # a model whose network expects 16x16 fed 20x20 images
    with pytest.raises(SchemaError, match=r"\(1, 20, 20\) per jet, but this model was trained on \(1, 16, 16\)"):
        det.score(bkg)


def test_a_model_file_from_another_version_is_refused(data, tmp_path):
    det = build("ae").fit(data[0])
    path = det.save(tmp_path / "m.pt")
    payload = torch.load(path, weights_only=False)
    payload["format_version"] = MODEL_FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(SchemaError, match="retrain"):
        Detector.load(path)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(SchemaError, match=r"junk\.pt"):
        Detector.load(tmp_path / "junk.pt")


def test_killed_training_resumes_from_its_checkpoint(data, tmp_path):
    train = data[0]
    ckpt = tmp_path / "ae.ckpt"
    full = make_detector("ae", inputs={"features": FEATURES}, epochs=6, patience=99, seed=2).fit(train)

    calls = []

    def kill_after_three(epoch, epochs, logs):
        calls.append(epoch)
        if epoch == 3:
            raise KeyboardInterrupt

    killed = make_detector("ae", inputs={"features": FEATURES}, epochs=6, patience=99, seed=2, checkpoint=str(ckpt))
    with pytest.raises(KeyboardInterrupt):
        killed.fit(train, progress=kill_after_three)
    assert ckpt.exists()
    resumed = make_detector("ae", inputs={"features": FEATURES}, epochs=6, patience=99, seed=2,
                            checkpoint=str(ckpt)).fit(train, progress=lambda e, n, logs: calls.append(e))
    assert calls == [1, 2, 3, 4, 5, 6]  # epochs 1-3 before the kill, 4-6 after: nothing redone
    np.testing.assert_allclose(resumed.history_["logs"]["loss"], full.history_["logs"]["loss"], rtol=1e-5)


def test_cli_train_score_evaluate(tmp_path, data):
    train, bkg, sig = data
    write_sample(tmp_path / "train.h5", train)
    write_sample(tmp_path / "bkg.h5", bkg)
    write_sample(tmp_path / "sig.h5", sig)
    runner = CliRunner()
    res = runner.invoke(app, ["train", "ae", "--train", str(tmp_path / "train.h5"), "--features", ",".join(FEATURES),
                              "--set", "epochs=3", "-o", str(tmp_path / "ae.pt")])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "ae.pt.ckpt").exists()
    res = runner.invoke(app, ["score", str(tmp_path / "ae.pt"), str(tmp_path / "bkg.h5"), str(tmp_path / "sig.h5"),
                              "-o", str(tmp_path / "scores.h5")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", str(tmp_path / "scores.h5"), "--signal", "sig", "--background", "bkg",
                              "-o", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    assert "auc" in res.output
    for png in ("roc.png", "sic.png", "scores.png", "sculpting.png"):
        assert (tmp_path / "eval" / png).stat().st_size > 5000
    res = runner.invoke(app, ["train", "ae", "--train", str(tmp_path / "train.h5"), "--features", "nope",
                              "-o", str(tmp_path / "x.pt")])
    assert res.exit_code == 1 and "nope" in res.output and "jetad features" in res.output


def test_disco_decorrelates_the_score_from_the_jet_mass():
    from jetad.evaluate.metrics import distance_correlation

    rng = np.random.default_rng(4)
    n = 1500
    mass = rng.uniform(20, 200, n)
    f = np.stack([rng.normal(size=n) * mass / 50, rng.normal(size=n), rng.normal(size=n)], 1)  # width grows with m
    sample = toy_jets(n)
    sample.jets[:, 3] = mass
    sample.features = {f"g{i}": f[:, i].astype(np.float32) for i in range(3)}
    spec = {"features": ("g0", "g1", "g2")}
    kw = {"inputs": spec, "epochs": 30, "batch_size": 64, "lr": 3e-3, "seed": 1, "hidden": (16,), "latent_dim": 1}
    plain = make_detector("ae", **kw).fit(sample)
    disco = make_detector("ae", disco_lambda=20.0, **kw).fit(sample)
    d_plain = distance_correlation(plain.score(sample), mass)
    d_disco = distance_correlation(disco.score(sample), mass)
    assert "disco_dcor2" in disco.history_["logs"]
    assert d_disco < 0.5 * d_plain, (d_plain, d_disco)  # measured 0.158 -> 0.031


def test_mass_reweighting_flattens_training_and_reduces_sculpting():
    from jetad.detectors.reweighting import flat_weights
    from jetad.evaluate.metrics import distance_correlation

    rng = np.random.default_rng(5)
    n = 1500
    mass = 20 + rng.exponential(30, n)  # a falling spectrum: the AE sees few heavy jets
    span = tuple(np.quantile(mass, [0.005, 0.995]))
    raw = np.histogram(mass, bins=10, range=span)[0]
    folded = np.clip(mass, *span)  # the tails count in the edge bins
    flat = np.histogram(folded, bins=10, range=span, weights=flat_weights(mass, bins=10, max_weight=1e3))[0]
    assert raw.max() / raw.min() > 20 and flat.max() / flat.min() < 1.01, (raw, flat)
    gen_w = rng.uniform(0.5, 2.0, n) * (1 + mass / 50)  # generator weights correlated with the mass
    both = flat_weights(mass, bins=10, max_weight=1e3, sample_weight=gen_w)
    flat_w = np.histogram(folded, bins=10, range=span, weights=both)[0]
    assert flat_w.max() / flat_w.min() < 1.01, flat_w
    w = flat_weights(mass, bins=10)  # default clip: no event outweighs 10 average ones
    assert w.mean() == pytest.approx(1.0) and w.max() == pytest.approx(10.0)
    sample = toy_jets(n)
    sample.jets[:, 3] = mass
    sample.features = {"m": (mass / 30).astype(np.float32), "g1": rng.normal(size=n).astype(np.float32),
                       "g2": rng.normal(size=n).astype(np.float32)}
    kw = {"inputs": {"features": ("m", "g1", "g2"), "scaling": "none"}, "epochs": 25, "batch_size": 64, "lr": 3e-3,
          "seed": 1, "hidden": (16,), "latent_dim": 1}
    plain = make_detector("ae", **kw).fit(sample)
    flat = make_detector("ae", reweight_observer="mass", reweight_bins=10, **kw).fit(sample)
    assert flat.history_["training_weights"]["observer"] == "mass"
    d_plain = distance_correlation(plain.score(sample), mass)
    d_flat = distance_correlation(flat.score(sample), mass)
    assert d_flat < 0.5 * d_plain, (d_plain, d_flat)  # measured 0.207 -> 0.055
    with pytest.raises(SchemaError, match="nope"):
        make_detector("ae", reweight_observer="nope", **kw).fit(sample)
    with pytest.raises(ValueError, match="do not apply"):
        make_detector("nurd", reweight_observer="mass")
    sample.weight = -np.ones(n, np.float32)  # ignored unless asked for; then a clear error
    make_detector("ae", **(kw | {"epochs": 1})).fit(sample)
    with pytest.raises(ValueError, match="negative"):
        make_detector("ae", use_sample_weights=True, **(kw | {"epochs": 1})).fit(sample)


def test_matched_weights_give_the_background_the_signal_pt_spectrum():
    from jetad.detectors.reweighting import matched_weights

    rng = np.random.default_rng(4)
    bkg = 300 + rng.exponential(120, 20000)  # a falling QCD-like spectrum
    sig = rng.normal(520, 80, 5000).clip(300)  # a harder, peaked one
    w = matched_weights(bkg, sig)
    assert w.mean() == pytest.approx(1.0) and w.min() >= 0 and w.max() <= 10 + 1e-9
    edges = np.quantile(sig, np.linspace(0.05, 0.95, 10))
    want = np.histogram(sig, edges)[0] / len(sig)
    before = np.histogram(bkg, edges)[0] / len(bkg)
    after = np.histogram(bkg, edges, weights=w)[0] / w.sum()
    assert np.abs(after - want).max() < 0.01 < np.abs(before - want).max()
    assert np.average(bkg, weights=w) == pytest.approx(sig.mean(), rel=0.02)
    with pytest.raises(ValueError, match="max_weight"):
        matched_weights(bkg, sig, max_weight=1.0)


def test_substructure_tasks_compare_at_the_same_pt():
    from jetad.tasks.registry import TASKS

    assert all(TASKS[t].match_pt for t in ("top-vs-qcd", "svj-vs-qcd", "svj-grid-vs-ttbar", "wz-bkg-top-anomaly"))
