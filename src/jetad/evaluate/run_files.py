"""What a run directory holds, gathered for the report: evaluations (metrics.json), their score files and
models (training history read from the model file's JSON, no detector imported), and the samples' provenance.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

__all__ = [
    "load_evaluations",
    "load_model",
    "metric_value",
    "model_history",
    "nearby",
    "sample_infos",
    "score_file_attrs",
    "sortable",
    "training_logs",
]

log = logging.getLogger(__name__)


def metric_value(value: Any) -> float | None:
    """A metric as a float (metrics.json stores inf/nan as strings), or None when absent or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def sortable(value: Any) -> float:
    """A metric for sorting: missing or NaN sorts last."""
    x = metric_value(value)
    return -math.inf if x is None or math.isnan(x) else x


def load_evaluations(run_dir: Path) -> list[dict[str, Any]]:
    """Every readable metrics.json below `run_dir`, with its directory; unreadable ones are logged and skipped."""
    evals = []
    for path in sorted(run_dir.rglob("metrics.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("%s: skipped, not readable JSON (%s)", path, err)
            continue
        if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
            log.warning("%s: skipped, no 'metrics' dictionary", path)
            continue
        data["_dir"] = path.parent
        evals.append(data)
    evals.sort(key=lambda d: -sortable(d["metrics"].get("auc")))
    return evals


def nearby(ev_dir: Path, run_dir: Path, name: str) -> Path | None:
    """A file `name` next to the evaluation directory or in the run directory."""
    for folder in (ev_dir.parent, run_dir):
        if (folder / name).is_file():
            return folder / name
    return None


def score_file_attrs(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from jetad.data.scores import read_scores

    try:
        return read_scores(path).attrs
    except (OSError, ValueError) as err:
        log.warning("%s: score file not read (%s)", path, err)
        return {}


def load_model(path: Path | None) -> dict[str, Any] | None:
    """The payload of a model file (history and parameter count are all the report reads; no detector is built).

    Read with the safe model-file reader: a file that is not arrays + JSON is refused, logged and skipped.
    """
    if path is None:
        return None
    from jetad.data.model_file import read_model_payload

    try:
        return read_model_payload(path)
    except (OSError, ValueError) as err:  # a report should survive a model it cannot read (other version, crafted)
        log.warning("%s: model not read (%s)", path, err)
        return None


def model_history(model: dict[str, Any] | None) -> dict[str, Any]:
    history = model.get("history") if isinstance(model, dict) else None
    return history if isinstance(history, dict) else {}


def training_logs(model: dict[str, Any] | None) -> dict[str, list[float]]:
    logs = model_history(model).get("logs")
    if not isinstance(logs, dict):
        return {}
    # "epoch" is the x axis, not a curve; the criterion is what early stopping watches, on validation jets.
    names = {"criterion": "validation criterion"}
    return {names.get(str(k), str(k)): list(v) for k, v in logs.items()
            if k != "epoch" and isinstance(v, list | tuple) and len(v) > 0}


def sample_infos(run_dir: Path) -> list[Any]:
    """jetad samples directly in `run_dir` (files and shard directories); everything else is skipped silently."""
    from jetad.data.sample import SchemaError
    from jetad.data.store import MANIFEST, sample_info

    candidates = sorted(run_dir.glob("*.h5")) + sorted(p for p in run_dir.iterdir() if (p / MANIFEST).is_file())
    infos = []
    for path in candidates:
        try:
            infos.append(sample_info(path))
        except (SchemaError, OSError, KeyError):
            continue
    return infos
