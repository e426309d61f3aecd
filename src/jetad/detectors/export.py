"""ONNX export of fitted neural detectors: one graph from the model input to the anomaly score, (B,).

The input preprocessing (feature scaling, jet images, constituent ordering; `InputSpec`) stays in Python:
`onnx_inputs(det, sample)` gives exactly the array the exported graph eats. Learned constants of the score
(NuRD class means and precisions, the JetCLR representation mean and precision) are folded into the graph,
so the ONNX output is the same number `det.score(sample)` returns. `onnx_latency` times the graph with
onnxruntime (CPU, one intra-op thread) next to the PyTorch model.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from jetad import __version__
from jetad.data.json_values import json_safe
from jetad.data.sample import JetSample
from jetad.detectors.base import Detector, TorchDetector

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ScoreBatch", "export_onnx", "onnx_inputs", "onnx_latency", "onnx_metadata",
           "score_module"]

log = logging.getLogger(__name__)

INPUT_NAME = "inputs"
OUTPUT_NAME = "score"


class ScoreBatch(nn.Module):
    """forward(x) = det.score_batch(x); the network is registered so its weights become graph initializers."""

    def __init__(self, det: TorchDetector):
        super().__init__()
        self.det = [det]  # a list: not a submodule, not traversed
        self.model = det.model_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.det[0].score_batch(x)


@contextmanager
def _mha_fastpath(enabled: bool) -> Iterator[None]:
    """Switch the fused transformer kernels (no ONNX symbolic) off while tracing."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def score_module(det: Detector) -> nn.Module:
    """A torch module, forward(model inputs) -> anomaly score (B,), equal to `det.score`; eval mode, on CPU.

    The module is the detector's own `score_module()` (default: `ScoreBatch`, forward = `score_batch`).
    Moves the detector's network to the CPU (`det.device_` follows). Raises NotImplementedError for detectors
    whose score is not one forward pass of a network.
    """
    det = _neural(det)
    det._check_fitted()
    if getattr(det, "_score_needs_grad", False):
        raise NotImplementedError(f"{det.name}: the score needs input gradients; not exportable as a forward pass")
    module = det.score_module()
    det.model_.to("cpu")
    det.device_ = torch.device("cpu")
    return module.to("cpu").eval()


def _neural(det: Detector) -> TorchDetector:
    """`det` as a TorchDetector; NotImplementedError for detectors whose score is not a network."""
    if not isinstance(det, TorchDetector):
        raise NotImplementedError(
            f"{det.name or type(det).__name__}: the score is not a neural network forward pass (e.g. 'emd' solves "
            "an optimal-transport problem per jet pair); ONNX export covers the neural detectors only")
    return det


def onnx_inputs(det: Detector, sample: JetSample) -> np.ndarray:
    """Exactly what the exported ONNX graph eats for `sample` (the detector's model inputs, float32)."""
    return np.ascontiguousarray(det._inputs_for(sample, sample.describe()), dtype=np.float32)


def _score_definition(det: Detector) -> str:
    doc = (type(det).__doc__ or "").strip().splitlines()
    kind = getattr(det, "score_kind", None)
    return (doc[0] if doc else det.name) + (f" [score_kind={kind}]" if kind is not None else "") + \
        "; higher = more anomalous"


def export_onnx(det: Detector, out: str | Path, opset: int = 17, check_sample: JetSample | None = None,
                rtol: float = 1e-4) -> Path:
    """Write the fitted detector's score graph (input `inputs` (B, ...) float32 -> output `score` (B,)) to `out`.

    The batch axis is dynamic. Metadata (`metadata_props`, read back by `onnx_metadata`): detector, jetad_version,
    input_spec (JSON), input_shape (JSON), score_definition, score_dtype, params. Preprocessing stays in Python:
    see `onnx_inputs`. With `check_sample`, ONNX Runtime scores those jets before the file is renamed into place:
    a relative difference to `det.score` above `rtol` anywhere is a RuntimeError and no file is written; the
    largest difference and the number of jets checked are kept in the metadata (check_max_rel_diff, check_n_jets).
    """
    import onnx

    module = score_module(det)
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    out = final.with_name(final.name + ".tmp")  # written here, renamed when complete and checked
    shape = tuple(_neural(det).input_shape_)
    example = torch.zeros((2, *shape), dtype=torch.float32)
    if det.spec_.kind == "constituents":  # a masked-everything jet is a corner case of the graph; use real-looking rows
        example[..., 0], example[..., 3], example[..., 4] = 10.0, 10.0, 1.0
    with torch.no_grad():
        expected = module(example)
    try:
        with warnings.catch_warnings(record=True) as caught, torch.no_grad(), _mha_fastpath(False):
            warnings.simplefilter("always")
            torch.onnx.export(
                module, (example,), str(out), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=opset,
                dynamo=False,  # the dynamo exporter needs onnxscript
            )
        for w in caught:
            log.debug("onnx export warning: %s", w.message)
    except Exception as err:
        out.unlink(missing_ok=True)
        reason = (str(err).strip().splitlines() or [""])[0][:300]
        raise NotImplementedError(f"{det.name}: torch.onnx.export failed ({type(err).__name__}: {reason}); "
                                  "this detector's score cannot be exported to ONNX") from err
    try:
        model = onnx.load(str(out))
        onnx.checker.check_model(model)
        checked = _check_against_torch(det, out, check_sample, rtol) if check_sample is not None else {}
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    meta = {
        "detector": det.name,
        "jetad_version": __version__,
        "input_spec": json.dumps(json_safe(det.spec_.to_dict())),
        "input_shape": json.dumps(list(shape)),
        "input_name": INPUT_NAME,
        "score_definition": _score_definition(det),
        "score_dtype": str(expected.dtype).removeprefix("torch."),
        "params": json.dumps(json_safe(det.get_params()), default=str),
        **checked,
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.doc_string = "jetad", meta["score_definition"]
    try:
        onnx.save(model, str(out))
        os.replace(out, final)
    finally:
        out.unlink(missing_ok=True)
    return final


def _check_against_torch(det: Detector, path: Path, sample: JetSample, rtol: float) -> dict[str, str]:
    """ONNX Runtime's scores of `sample` against the detector's own; the metadata entries of the check."""
    import onnxruntime as ort

    if len(sample) == 0:
        raise ValueError("check_sample has no jets; give jets to check the exported graph on")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: onnx_inputs(det, sample)})[0]
    want = np.asarray(det.score(sample))
    diff = float(np.max(np.abs(got - want) / (np.abs(want) + 1e-6)))
    if not diff <= rtol:
        raise RuntimeError(f"{det.name}: the exported graph scores {len(sample)} check jets up to {diff:.2g} "
                           f"(relative) away from the detector (tolerance {rtol:g}); no ONNX file written")
    return {"check_max_rel_diff": repr(diff), "check_n_jets": str(len(sample))}


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The jetad metadata of an exported graph (see `export_onnx`), as strings (JSON where noted there)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _median_seconds(fn, x: np.ndarray, repeats: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def onnx_latency(path: str | Path, x: np.ndarray, batch_sizes: tuple[int, ...] = (1, 1024), repeats: int = 20,
                 det: Detector | None = None) -> dict[str, dict[int, dict[str, float]]]:
    """Median time per call of the ONNX graph (onnxruntime CPU, one intra-op thread), and of the PyTorch
    score module when `det` is given (one thread), on batches of `x` (rows repeated if `x` is short).

    Returns {'onnxruntime': {b: {'latency_ms_per_jet': ..., 'throughput_jets_per_s': ...}}, 'torch': {...}}.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    runners = {"onnxruntime": lambda b: session.run(None, {name: b})}
    if det is not None:
        module = score_module(det)

        def run_torch(b: np.ndarray) -> None:
            with torch.no_grad():
                module(torch.from_numpy(b))

        runners["torch"] = run_torch
    x = np.asarray(x, dtype=np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report: dict[str, dict[int, dict[str, float]]] = {}
        for engine, run in runners.items():
            report[engine] = {}
            for b in batch_sizes:
                batch = np.ascontiguousarray(np.resize(x, (b, *x.shape[1:])))
                t = max(_median_seconds(run, batch, repeats), 1e-9)
                report[engine][b] = {"latency_ms_per_jet": 1e3 * t / b, "throughput_jets_per_s": b / t}
    finally:
        torch.set_num_threads(threads)
    return report
