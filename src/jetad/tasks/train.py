"""Fit a detector on background files and save it: what `jetad train`, the demo and the benchmark all do.

The detector is built (and its hyper-parameters checked) before any data are read; the training files are
concatenated, their label-name tables merged; a neural detector writes a checkpoint next to the model file
after every epoch, so a killed `train_detector` with the same arguments resumes, and the checkpoint is removed
once the model file is written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetad.data import concatenate, read_sample
from jetad.data.sample import JetSample, SchemaError
from jetad.detectors import make_detector
from jetad.detectors.base import Detector, Progress, TorchDetector

__all__ = ["TrainedDetector", "read_training_files", "train_detector"]


@dataclass
class TrainedDetector:
    """A fitted, saved detector and how its training went."""

    detector: Detector
    path: Path
    n_train: int
    seconds: float

    @property
    def history(self) -> dict[str, Any]:
        return getattr(self.detector, "history_", None) or {}


def read_training_files(files: Sequence[str | Path], constituents: bool, n_max: int | None = None) -> JetSample:
    """The jets of `files` as one sample (at most `n_max` from each), label-name tables merged."""
    parts = [read_sample(f, stop=n_max, constituents=constituents) for f in files]
    for f, part in zip(files, parts, strict=True):
        if len(part) == 0:
            raise SchemaError(f"{f}: no jets (an empty sample); give a file with jets")
    if len(parts) == 1:
        return parts[0]
    train = concatenate(parts)
    train.attrs |= {"source": " + ".join(map(str, files)),
                    "label_names": {k: v for p in parts for k, v in p.attrs.get("label_names", {}).items()}}
    return train


def train_detector(method: str | Detector, train_files: Sequence[str | Path], out: str | Path,
                   val_file: str | Path | None = None, params: dict[str, Any] | None = None,
                   inputs: dict[str, Any] | None = None, n_max: int | None = None,
                   progress: Progress | None = None) -> TrainedDetector:
    """Fit detector `method` (a registry name with constructor `params` and input-spec overrides `inputs`, or an
    unfitted detector) on `train_files` (at most `n_max` jets of each); save it to `out`.

    Raises ValueError for unknown methods or parameters before reading any file.
    """
    out = Path(out)
    if isinstance(method, Detector):
        det = method
    else:
        params = dict(params or {})
        spec = dict(params.pop("inputs", None) or {}) | dict(inputs or {})
        det = make_detector(method, **params, **({"inputs": spec} if spec else {}))
    neural = det if isinstance(det, TorchDetector) and det.checkpoint is None else None  # resumable training
    if neural is not None:
        neural.checkpoint = str(out) + ".ckpt"
    constituents = det.input_spec().kind != "features"
    train = read_training_files(train_files, constituents, n_max)
    val = read_sample(val_file, stop=n_max, constituents=constituents) if val_file else None
    t0 = time.perf_counter()
    det.fit(train, val, progress=progress)
    seconds = time.perf_counter() - t0
    if neural is not None:
        neural.checkpoint = None
    det.save(out)
    Path(str(out) + ".ckpt").unlink(missing_ok=True)
    return TrainedDetector(detector=det, path=out, n_train=len(train), seconds=seconds)
