"""The one conversion of jetad values to what JSON holds: used by metrics files, bump hunts and ONNX metadata."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["json_safe"]


def json_safe(obj: Any) -> Any:
    """`obj` with numpy arrays and scalars as lists and numbers, tuples as lists, dict keys as strings, and
    inf/nan floats (background rejection can be infinite) as the strings 'inf', '-inf', 'nan'."""
    if isinstance(obj, np.ndarray | np.generic):
        obj = obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj
