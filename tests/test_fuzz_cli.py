"""Fuzzed inputs to the validation layer: a clean jetad error or a valid result, never another exception or a hang.

Two surfaces: the `--set key=value` parser with the constructor check of every registered detector and search,
and the score-file reader under random structural damage. Bounded: about 50 examples each, a few seconds.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jetad.cli import parse_settings
from jetad.data.sample import SchemaError
from jetad.data.scores import ScoreTable, read_scores, write_scores
from jetad.detectors import REGISTRY, check_params, constructor_params, make_detector
from jetad.searches import SEARCHES

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ESTIMATORS: dict[str, type] = {**{f"detector {k}": v for k, v in REGISTRY.items()},
                               **{f"search {k}": v for k, v in SEARCHES.items()}}
#: JSON-like values of every type a --set value parses to (NaN and infinities included, as json.loads gives them).
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def build(kind: str, params: dict[str, Any]) -> Any:
    """Check `params`, then build the estimator, as the CLI does before reading any data (a TypeError escaping the
    check would be a gap in it: the constructor's own ValueErrors are clean refusals)."""
    what, name = kind.split()
    if what == "detector":
        return make_detector(name, **params)
    check_params(SEARCHES[name], params, name)
    return SEARCHES[name](**params)


def clean(kind: str, pairs: list[str]) -> str:
    """'ok', or the kind of clean refusal: a bad --set (BadParameter) or a ValueError from the check/constructor."""
    try:
        build(kind, parse_settings(pairs))
    except typer.BadParameter:
        return "syntax"
    except ValueError:  # ParameterError, or the constructor's own check
        return "refused"
    return "ok"


PARAMETER_NAMES = sorted({p for cls in ESTIMATORS.values() for p in constructor_params(cls)})
KEYS = st.sampled_from(PARAMETER_NAMES) | st.from_regex(r"[a-z_]{1,10}", fullmatch=True)
VALUES = st.text(max_size=12) | st.from_regex(r"-?[0-9]{1,4}(\.[0-9]*)?|\[[0-9, ]*\]|true|null|NaN", fullmatch=True)
#: Anything at all, and key=value pairs with real or made-up names and JSON-ish or arbitrary values.
SET_STRINGS = st.text(max_size=20) | st.builds(lambda k, v: f"{k}={v}", KEYS, VALUES)


@FUZZ
@given(kind=st.sampled_from(sorted(ESTIMATORS)), pairs=st.lists(SET_STRINGS, max_size=4))
def test_random_set_strings_give_a_clean_error_or_an_estimator(kind, pairs, fuzz_counts):
    fuzz_counts["set strings"] += 1
    assert clean(kind, pairs) in ("ok", "syntax", "refused")


def like(default: Any) -> st.SearchStrategy[Any]:
    """Values of the default's own type, over ranges that include the impossible ones (0, negative, huge)."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-3, 10**4)
    if isinstance(default, float):
        return st.floats(-10.0, 1e4, allow_nan=False)
    if isinstance(default, tuple):
        return st.lists(like(default[0]) if default else JSON_VALUES, max_size=4)
    if isinstance(default, str):
        return st.text(max_size=8)
    return JSON_VALUES


@st.composite
def real_parameter(draw: st.DrawFn) -> tuple[str, str, Any]:
    kind = draw(st.sampled_from(sorted(ESTIMATORS)))
    params = constructor_params(ESTIMATORS[kind])
    name = draw(st.sampled_from(sorted(params)))
    return kind, name, draw(JSON_VALUES | like(params[name].default))


@FUZZ
@given(case=real_parameter())
def test_random_types_for_real_parameter_names_give_a_clean_error_or_an_estimator(case, fuzz_counts):
    fuzz_counts["typed parameters"] += 1
    kind, name, value = case
    outcome = clean(kind, [f"{name}={json.dumps(value)}"])
    assert outcome in ("ok", "refused")
    if outcome == "ok" and isinstance(value, float) and not math.isfinite(value):
        pytest.fail(f"{kind}: {name}={value} accepted")  # NaN/inf never pass the check


# ------------------------------------------------------------------------------------------ score files


def valid_table(n: int = 12) -> ScoreTable:
    rng = np.random.default_rng(0)
    return ScoreTable(score=rng.normal(size=n), label=np.arange(n) % 2, weight=np.ones(n, np.float32),
                      source=(np.arange(n) % 2).astype(np.int16), sources=["a.h5", "b.h5"],
                      observers={"mass": rng.uniform(10, 100, n).astype(np.float32)}, attrs={"detector": "toy"})


COLUMNS = ("score", "label", "weight", "source", "observers/mass", "observers")
MUTATIONS = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(COLUMNS)),
    st.tuples(st.just("resize"), st.sampled_from(COLUMNS[:5]), st.integers(0, 20)),
    st.tuples(st.just("dtype"), st.sampled_from(COLUMNS[:5]), st.sampled_from(["S3", "f2", "c8", "bool", "2d", "0d"])),
    st.tuples(st.just("nan"), st.sampled_from(COLUMNS[:5]), st.sampled_from([np.nan, np.inf, -np.inf])),
    st.tuples(st.just("attr"), st.sampled_from(["schema", "sources", "detector"]),
              st.sampled_from([None, "json:{broken", "json:[1, 2]", "json:[]", "a.h5", 7, b"\xff\xfe"])),
    st.tuples(st.just("source index"), st.integers(-3, 5)),
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
)


def mutate(path: Path, mutation: tuple) -> None:
    """Apply one structural mutation to the score file at `path`."""
    what = mutation[0]
    if what in ("truncate", "flip"):
        data = bytearray(path.read_bytes())
        if what == "truncate":
            data = data[: int(mutation[1] * len(data))]
        elif data:
            data[mutation[1] % len(data)] ^= mutation[2]
        path.write_bytes(bytes(data))
        return
    with h5py.File(path, "a") as f:
        if what == "attr":
            if mutation[2] is None:
                f.attrs.pop(mutation[1], None)
            else:
                f.attrs[mutation[1]] = np.void(mutation[2]) if isinstance(mutation[2], bytes) else mutation[2]
            return
        if what == "source index":
            if "source" in f and f["source"].ndim == 1 and len(f["source"]):
                f["source"][0] = mutation[1]
            return
        name = mutation[1]
        if name not in f:
            return
        if what == "delete":
            del f[name]
            return
        if not isinstance(f[name], h5py.Dataset):
            return
        old = f[name][()]
        del f[name]
        if what == "resize":
            f[name] = np.resize(old, mutation[2]) if np.ndim(old) else old
        elif what == "nan":
            arr = np.asarray(old, dtype=np.float64)
            if arr.ndim and len(arr):
                arr[0] = mutation[2]
            f[name] = arr
        elif mutation[2] == "2d":
            f[name] = np.stack([old, old], 1) if np.ndim(old) else old
        elif mutation[2] == "0d":
            f[name] = np.asarray(old).ravel()[0] if np.size(old) else 0
        else:
            f[name] = np.asarray(old).astype(mutation[2])


@FUZZ
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3))
def test_damaged_score_files_are_read_or_refused_naming_the_file(mutations, fuzz_counts):
    fuzz_counts["score files"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = write_scores(Path(tmp) / "fuzz.h5", valid_table())
        for m in mutations:
            try:
                mutate(path, m)
            except Exception:
                break  # the file is already too damaged for h5py to edit: read what there is
        try:
            table = read_scores(path)
        except SchemaError as err:
            assert "fuzz.h5" in str(err)
            return
        n = len(table.score)  # a valid result is internally consistent
        assert n > 0 and np.isfinite(table.score).all()
        columns = (table.label, table.weight, table.source, *table.observers.values())
        assert all(len(np.asarray(c)) == n for c in columns)
        assert table.source.min() >= 0 and table.source.max() < len(table.sources)


@pytest.fixture(scope="module")
def fuzz_counts() -> Iterator[Counter[str]]:
    """How many inputs each fuzz test tried (printed at the end of the module: run with -s to see it)."""
    counts: Counter[str] = Counter()
    yield counts
    print(f"\nfuzzed inputs: {dict(counts)} ({sum(counts.values())} in all)")
