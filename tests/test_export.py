"""ONNX export: the exported graph scores jets as the detector does, with a dynamic batch and its metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jetad.data import JetSample
from jetad.data.sample import concatenate
from jetad.detectors import make_detector
from jetad.detectors.export import export_onnx, onnx_inputs, onnx_latency, onnx_metadata

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

torch.set_num_threads(1)

FEATURES = ("f0", "f1", "f2", "f3")
FAST = {"epochs": 2, "batch_size": 64, "patience": 2}
ON_FEATURES = {"inputs": {"kind": "features", "features": FEATURES}}
EXPORTABLE = {
    "ae": ("ae", FAST | ON_FEATURES),
    "vae": ("vae", FAST | ON_FEATURES | {"beta": 1e-3}),
    "ae_images": ("ae", FAST | {"inputs": {"kind": "images", "image_size": 16}}),
    "wnae": ("wnae", FAST | ON_FEATURES | {"mcmc_steps": 2, "buffer_size": 128, "distance": "sliced",
                                           "pretrain_epochs": 1}),
    "nurd": ("nurd", FAST | {"representation_dim": 8, "critic_hidden": (16,), "inputs": {"kind": "images",
                                                                                          "image_size": 16}}),
    "clr": ("clr", FAST | {"n_constituents": 20, "dim": 16, "n_layers": 1, "proj_dim": 8}),  # 16 jets' slots padded
    "flow": ("flow", FAST | ON_FEATURES | {"transforms": 2, "hidden": (16, 16)}),
}


def toy_jets(n: int, anomalous: bool = False, seed: int = 0, p: int = 16) -> JetSample:
    """Correlated features and narrow jets for background; shifted features and wide jets for anomalies."""
    rng = np.random.default_rng(seed + 1000 * anomalous)
    z = rng.normal(size=(n, 2))
    f = np.stack([z[:, 0], z[:, 0] + 0.3 * z[:, 1], z[:, 1], z[:, 0] ** 2], 1) + 3.0 * anomalous
    width = 0.4 if anomalous else 0.1
    pt = np.sort(rng.exponential(20.0, (n, p)), axis=1)[:, ::-1] + 1.0
    eta, phi = rng.normal(0, width, (n, p)), rng.normal(0, width, (n, p))
    cons = np.stack([pt, eta, phi, pt * np.cosh(eta)], -1)
    return JetSample.from_constituents(
        cons, np.ones((n, p), dtype=bool), label=int(anomalous),
        features={k: f[:, i].astype(np.float32) for i, k in enumerate(FEATURES)}, attrs={"jet_r": 0.8})


@pytest.fixture(scope="module")
def train():
    sample = toy_jets(200)
    sample.label = sample.label.copy()
    sample.label[::2] = 2  # two background classes for NuRD; the others ignore labels
    return sample


@pytest.fixture(scope="module")
def jets():
    return concatenate([toy_jets(30, seed=5), toy_jets(7, anomalous=True, seed=6)])


def ort_scores(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("case", sorted(EXPORTABLE))
def test_onnx_graph_scores_jets_as_the_detector_does(case, train, jets, tmp_path):
    name, params = EXPORTABLE[case]
    det = make_detector(name, seed=1, **params).fit(train)
    try:
        path = export_onnx(det, tmp_path / f"{case}.onnx")
    except NotImplementedError as err:
        if case in ("ae", "vae", "ae_images", "wnae", "nurd"):
            raise
        pytest.skip(f"{case} not exportable: {err}")
    x = onnx_inputs(det, jets)
    assert x.dtype == np.float32 and x.shape == (len(jets), *det.input_shape_)
    expected = det.score(jets)
    np.testing.assert_allclose(ort_scores(path, x), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ort_scores(path, x[:1]), expected[:1], rtol=1e-4, atol=1e-5)  # dynamic batch

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["detector"] == name and meta["jetad_version"]
    assert json.loads(meta["input_shape"]) == list(det.input_shape_)
    assert json.loads(meta["input_spec"])["kind"] == det.spec_.kind
    assert "anomalous" in meta["score_definition"]


def test_emd_is_refused_with_a_reason(train, tmp_path):
    det = make_detector("emd", n_reference=10, k=2, n_constituents=8)  # refused before any fitting
    with pytest.raises(NotImplementedError, match="optimal-transport"):
        export_onnx(det, tmp_path / "emd.onnx")
    assert not (tmp_path / "emd.onnx").exists()


def test_clr_with_an_nae_score_is_refused(train, tmp_path):
    det = make_detector("clr", seed=1, **EXPORTABLE["clr"][1])
    det.fit(train)
    det.score_kind = "nae"
    with pytest.raises(NotImplementedError, match="score_kind 'nae'"):
        export_onnx(det, tmp_path / "clr.onnx")


def test_latency_report_has_positive_numbers_for_both_engines(train, jets, tmp_path):
    det = make_detector("ae", seed=1, **EXPORTABLE["ae"][1]).fit(train)
    path = export_onnx(det, tmp_path / "ae.onnx")
    report = onnx_latency(path, onnx_inputs(det, jets), batch_sizes=(1, 64), repeats=3, det=det)
    for engine in ("onnxruntime", "torch"):
        for b in (1, 64):
            assert report[engine][b]["latency_ms_per_jet"] > 0
            assert report[engine][b]["throughput_jets_per_s"] > 0


def test_cli_export_checks_onnx_against_pytorch(train, jets, tmp_path):
    from typer.testing import CliRunner

    from jetad.cli import app
    from jetad.data import write_sample

    det = make_detector("ae", inputs={"features": FEATURES}, epochs=2, seed=0).fit(train)
    det.save(tmp_path / "ae.pt")
    write_sample(tmp_path / "jets.h5", jets)
    res = CliRunner().invoke(app, ["export", str(tmp_path / "ae.pt"), "--onnx", str(tmp_path / "ae.onnx"),
                                   "--sample", str(tmp_path / "jets.h5")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ae.onnx").exists() and "onnxruntime" in res.output


def test_check_sample_records_the_agreement_and_refuses_a_graph_that_disagrees(train, jets, tmp_path):
    det = make_detector("ae", seed=1, **EXPORTABLE["ae"][1]).fit(train)
    path = export_onnx(det, tmp_path / "ae.onnx", check_sample=jets)
    meta = onnx_metadata(path)
    assert int(meta["check_n_jets"]) == len(jets) and 0 <= float(meta["check_max_rel_diff"]) <= 1e-4

    honest = det.score
    det.score = lambda sample: honest(sample) + 1.0  # the Python side no longer matches the graph
    with pytest.raises(RuntimeError, match="check jets"):
        export_onnx(det, tmp_path / "bad.onnx", check_sample=jets)
    assert not (tmp_path / "bad.onnx").exists() and not list(tmp_path.glob("bad.onnx*"))
