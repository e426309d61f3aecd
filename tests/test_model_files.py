"""Model files, checkpoints and saved searches hold arrays and JSON only: opening a crafted one runs nothing.

Each entry point that opens a model file (score, export, report, train-resume, load of a search) gets a file
whose pickle would create a marker file when unpickled; the payload must not run and the error must name the
file. Older (format 1, pickled) files get a clear "older jetad" error.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from jetad.cli import app
from jetad.data.model_file import decode, encode, read_model_payload, write_model_payload
from jetad.data.sample import JetSample, SchemaError
from jetad.detectors import Detector, make_detector

runner = CliRunner()


class _Payload:
    """Unpickling this calls os.system: a stand-in for any code a crafted file could carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted(path, marker, fmt="jetad.detector"):
    """A torch.save'd model file whose payload runs `touch marker` when loaded with weights_only=False."""
    torch.save({"format": fmt, "format_version": 2, "detector": "ae", "params": {}, "state": _Payload(marker)}, path)
    return path


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    assert not path.exists(), "the crafted payload ran"


def feature_jets(n: int, seed: int, shift: float = 0.0) -> JetSample:
    """Jets with the default detector features only (no constituents), Gaussian toys."""
    rng = np.random.default_rng(seed)
    jets = np.zeros((n, 4), np.float32)
    jets[:, 0], jets[:, 3] = 600, rng.uniform(10, 200, n)
    from jetad.detectors.inputs import DEFAULT_FEATURES

    feats = {name: rng.normal(1.0 + shift, 0.2, n) for name in DEFAULT_FEATURES}
    return JetSample(constituents=np.zeros((n, 0, 4)), mask=np.zeros((n, 0), bool), jets=jets,
                     label=np.zeros(n, int), weight=np.ones(n), features=feats, attrs={"source": f"toy({seed})"})


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    from jetad.data import write_sample

    path = tmp_path_factory.mktemp("toy") / "toy.h5"
    write_sample(path, feature_jets(300, 1))
    return path


# ------------------------------------------------------------------------------------------- the format


def test_payload_round_trip_keeps_types_and_values(tmp_path):
    payload = {"a": np.arange(6, dtype=np.uint64).reshape(2, 3), "t": (1, 2.5, "x", None), "s": np.array(["ab", "c"]),
               "e": np.zeros((0, 3), np.float32), "b": np.array([True, False]), 7: [np.float32(2.0), {"x": 1}],
               "tensor": torch.arange(3.0), "rng": np.random.default_rng(1).bit_generator.state}
    back = read_model_payload(write_model_payload(tmp_path / "m.pt", payload))
    assert back["a"].dtype == np.uint64 and back["a"].shape == (2, 3) and back["a"][1, 2] == 5
    assert back["t"] == (1, 2.5, "x", None) and back["s"].tolist() == ["ab", "c"] and back[7] == [2.0, {"x": 1}]
    assert back["e"].shape == (0, 3) and back["b"].tolist() == [True, False]
    assert torch.equal(back["tensor"], torch.arange(3.0)) and back["rng"] == payload["rng"]
    assert not (tmp_path / "m.pt.tmp").exists()


@pytest.mark.parametrize("value", [np.array([object()], dtype=object), {"k": _Payload("x")}, {(1, 2): 3}, print])
def test_values_without_a_safe_form_cannot_be_written(value, tmp_path):
    with pytest.raises(TypeError, match="cannot be stored"):
        write_model_payload(tmp_path / "m.pt", {"v": value})
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.pt.tmp").exists()


def test_forged_array_records_are_schema_errors():
    raw = encode({"a": np.arange(4.0)})
    raw["a"]["shape"] = [5]
    with pytest.raises(SchemaError, match="bytes"):
        decode(raw)
    raw["a"]["dtype"] = "O"
    with pytest.raises(SchemaError, match="not allowed"):
        decode(raw)
    with pytest.raises(SchemaError, match="unknown stored value"):
        decode({"__jetad__": "pickle"})


def test_a_crafted_file_is_refused_before_anything_runs(tmp_path, marker):
    with pytest.raises(SchemaError, match=r"evil\.pt: refused.*nothing in it was run"):
        read_model_payload(crafted(tmp_path / "evil.pt", marker))


def test_an_older_pickled_model_file_says_retrain(tmp_path):
    torch.save({"format": "jetad.detector", "format_version": 1, "inputs": {"state": {"mean": np.zeros(3)}}},
               tmp_path / "old.pt")
    with pytest.raises(SchemaError, match=r"old\.pt.*older jetad.*retrain"):
        Detector.load(tmp_path / "old.pt")
    write_model_payload(tmp_path / "v1.pt", {"format": "jetad.detector", "format_version": 1, "jetad_version": "0.1"})
    with pytest.raises(SchemaError, match=r"v1\.pt: model format version 1.*older jetad.*retrain"):
        Detector.load(tmp_path / "v1.pt")


def test_a_payload_with_a_missing_or_unknown_key_is_named(tmp_path):
    det = make_detector("ae", epochs=1, seed=1).fit(feature_jets(200, 2))
    payload = det.to_payload()
    for name, bad in (("missing", {k: v for k, v in payload.items() if k != "state"}),
                      ("unknown", payload | {"surprise": 1})):
        write_model_payload(tmp_path / f"{name}.pt", bad)
        with pytest.raises(SchemaError, match=rf"{name}\.pt: malformed model file \({name} \['(state|surprise)'\]"):
            Detector.load(tmp_path / f"{name}.pt")
    write_model_payload(tmp_path / "params.pt", payload | {"params": payload["params"] | {"latent_dim": "four"}})
    with pytest.raises(SchemaError, match=r"params\.pt: saved ae does not match"):
        Detector.load(tmp_path / "params.pt")


def test_a_file_from_before_a_new_parameter_loads_as_it_was_trained():
    spec = {"kind": "features", "features": sorted(feature_jets(2, 0).features)}
    det = make_detector("nae", epochs=1, pretrain_epochs=0, mcmc_steps=2, latent_steps=2, seed=1, inputs=spec)
    det.fit(feature_jets(120, 3))
    payload = det.to_payload()
    older = payload | {"params": {k: v for k, v in payload["params"].items() if k != "sampling"}}
    loaded = Detector.from_payload(older, "older.pt")
    assert loaded.sampling == "x" != make_detector("nae").sampling  # not today's default
    np.testing.assert_allclose(loaded.score(feature_jets(50, 4)), det.score(feature_jets(50, 4)), rtol=1e-6)


def test_tree_ensemble_predicts_like_sklearn():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from jetad.searches.boosted_trees import TreeEnsemble

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + rng.normal(0, 0.5, 3000) > 0.5).astype(int)
    x[::50, 2] = np.nan  # missing values take the trained side
    model = HistGradientBoostingClassifier(max_iter=40, random_state=1).fit(x, y)
    x_new = rng.normal(size=(500, 4))
    x_new[::7, 1] = np.nan
    for i, expected in enumerate(model.staged_predict_proba(x_new), 1):
        if i in (1, 17, 40):
            np.testing.assert_allclose(TreeEnsemble.from_sklearn(model, i).predict_proba(x_new), expected,
                                       rtol=0, atol=1e-12)
    trees = TreeEnsemble.from_sklearn(model, 40)
    state = encode(trees.to_state())
    np.testing.assert_array_equal(TreeEnsemble.from_state(decode(state)).raw(x_new), trees.raw(x_new))
    broken = trees.to_state() | {"left": trees.left + 10**6}
    with pytest.raises(SchemaError, match="node index out of range"):
        TreeEnsemble.from_state(broken)


# ------------------------------------------------------------------------------------------ entry points


def test_jetad_score_refuses_a_crafted_model(tmp_path, marker, toy_file):
    res = runner.invoke(app, ["score", str(crafted(tmp_path / "evil.pt", marker)), str(toy_file),
                              "-o", str(tmp_path / "s.h5")])
    assert res.exit_code == 1 and "evil.pt" in res.output and "refused" in res.output
    assert not (tmp_path / "s.h5").exists()


def test_jetad_score_refuses_a_crafted_search(tmp_path, marker, toy_file):
    res = runner.invoke(app, ["score", str(crafted(tmp_path / "evil.pt", marker, fmt="jetad.search")),
                              str(toy_file), "-o", str(tmp_path / "s.h5")])
    assert res.exit_code == 1 and "evil.pt" in res.output
    from jetad.searches import is_search_file, load_search

    assert not is_search_file(tmp_path / "evil.pt")
    with pytest.raises(SchemaError, match=r"evil\.pt: refused"):
        load_search(tmp_path / "evil.pt")


def test_jetad_export_refuses_a_crafted_model(tmp_path, marker):
    res = runner.invoke(app, ["export", str(crafted(tmp_path / "evil.pt", marker)), "--onnx", str(tmp_path / "x.onnx")])
    assert res.exit_code == 1 and "evil.pt" in res.output and not (tmp_path / "x.onnx").exists()


def test_jetad_report_skips_a_crafted_model_and_still_writes_the_page(tmp_path, marker, caplog):
    run = tmp_path / "run"
    (run / "eval_ae").mkdir(parents=True)
    (run / "eval_ae" / "metrics.json").write_text(json.dumps({"detector": "ae", "metrics": {"auc": 0.7}}))
    crafted(run / "ae.pt", marker)
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert "0.700" in (run / "report.html").read_text()
    assert any("ae.pt" in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)


def test_jetad_train_sets_a_planted_checkpoint_aside_without_running_it(tmp_path, marker, toy_file, caplog):
    out = tmp_path / "ae.pt"
    crafted(tmp_path / "ae.pt.ckpt", marker)
    res = runner.invoke(app, ["train", "ae", "--train", str(toy_file), "--set", "epochs=1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert Detector.load(out).name == "ae" and (tmp_path / "ae.pt.ckpt.corrupt").exists()
    assert any("set aside" in r.getMessage() for r in caplog.records)


def test_a_truncated_checkpoint_is_set_aside_and_training_starts_afresh(tmp_path, caplog):
    ckpt = tmp_path / "run.ckpt"
    train = feature_jets(200, 3)
    make_detector("ae", epochs=2, seed=1, checkpoint=str(ckpt)).fit(train)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    det = make_detector("ae", epochs=2, seed=1, checkpoint=str(ckpt)).fit(train)
    assert det.history_["best_epoch"] >= 0 and len(det.history_["logs"]["loss"]) == 2
    assert (tmp_path / "run.ckpt.corrupt").exists()
    assert any("truncated or corrupt" in r.getMessage() and "afresh" in r.getMessage() for r in caplog.records)


def test_a_resumed_checkpoint_is_read_safely_and_continues(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    train = feature_jets(200, 3)
    full = make_detector("ae", epochs=3, seed=1).fit(train)
    make_detector("ae", epochs=2, seed=1, checkpoint=str(ckpt)).fit(train)
    assert read_model_payload(ckpt)["epoch"] == 1
    resumed = make_detector("ae", epochs=3, seed=1, checkpoint=str(ckpt)).fit(train)
    np.testing.assert_allclose(resumed.history_["logs"]["loss"], full.history_["logs"]["loss"], rtol=1e-6)


def test_model_files_hold_no_pickled_objects(tmp_path):
    """Every saved detector and search loads with PyTorch's restricted unpickler alone."""
    det = make_detector("flow", epochs=1, seed=1, transforms=1, hidden=(8,)).fit(feature_jets(200, 4))
    path = det.save(tmp_path / "flow.pt")
    torch.load(path, weights_only=True)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(crafted(tmp_path / "evil.pt", tmp_path / "never"), weights_only=True)
