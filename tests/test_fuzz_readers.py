"""Fuzzing the readers: random structural damage to small valid files gives a clean jetad error or a valid sample.

Each example copies a tiny valid file (made once per module, no Pythia), applies one to three random mutations
(delete a node, change a dtype or a shape, write NaN/inf/huge values, set or delete an attribute, turn a
dataset into a group, truncate the bytes, damage the manifest) and reads it. The property: a `SchemaError`
naming the file, a `FileNotFoundError` naming it, or a result that passes validation; never another exception
and never a hang (each example runs under an alarm).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import signal
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jetad.data import JetSample, SchemaError, iter_samples, read_sample, sample_info, write_manifest, write_sample
from jetad.data.formats import convert
from jetad.data.formats.pandas_hdf import literal_pickle

#: Examples per test; JETAD_FUZZ_EXAMPLES=5000 for a longer hunt.
EXAMPLES = int(os.environ.get("JETAD_FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SECONDS_PER_EXAMPLE = 20


@contextlib.contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    """Fail an example that hangs instead of hanging the suite."""

    def hung(signum, frame):
        raise TimeoutError(f"a reader ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _expect_clean(read: Callable[[], object], path: Path) -> object | None:
    """Run `read`; a SchemaError / FileNotFoundError must name `path` (file or directory) in one line."""
    with _alarm(SECONDS_PER_EXAMPLE), warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning from damaged numbers is not a clean error either
        try:
            return read()
        except (SchemaError, FileNotFoundError) as err:
            assert path.name in str(err), f"error does not name {path.name}: {err}"
            assert "\n" not in str(err), f"error is not one line: {err!r}"
            return None


# ---------------------------------------------------------------------------------------------- base files


def _tiny_sample(n: int, seed: int) -> JetSample:
    rng = np.random.default_rng(seed)
    p = 4
    pt = np.sort(rng.exponential(20.0, (n, p)), axis=1)[:, ::-1] + 1.0
    eta, phi = rng.normal(0, 0.3, (n, p)), rng.normal(0, 0.3, (n, p))
    mask = np.arange(p)[None, :] < rng.integers(1, p + 1, n)[:, None]
    cons = np.stack([pt, eta, phi, pt * np.cosh(eta)], -1) * mask[..., None]
    return JetSample.from_constituents(
        cons, mask, label=rng.integers(0, 2, n), features={"tau21": rng.random(n).astype(np.float32)},
        event={"mjj": (rng.random(n) * 1000).astype(np.float32)},
        attrs={"process": "toy", "seed": seed, "settings": ["a = 1"], "label_names": {"0": "bkg", "1": "sig"}},
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz_base")
    jetad_file = write_sample(root / "sample.h5", _tiny_sample(6, seed=1))
    shards = root / "prod"
    for i in range(2):
        write_sample(shards / f"{i:03d}.h5", _tiny_sample(3, seed=i), {"production_hash": "abcd", "seed": 7})
    write_manifest(shards, [{"file": f"{i:03d}.h5", "n_jets": 3, "shard": i} for i in range(2)],
                   {"production_hash": "abcd", "seed": 7, "process": "toy", "n_jets": 6, "shard_size": 3})
    values = np.zeros((3, 3 * 4 + 1))
    values[:, 0:6] = [500.0, 0.0, 0.0, 400.0, 0.1, 3.0]
    values[:, -1] = [0, 1, 0]
    frame = pd.DataFrame(values)
    lhco = {"lhco_fixed": {"format": "fixed"}, "lhco_table": {"format": "table"},
            "lhco_blosc": {"format": "table", "complevel": 1, "complib": "blosc:lz4"},
            "lhco_blosc2": {"format": "fixed", "complevel": 1, "complib": "blosc2:lz4"}}
    for name, options in lhco.items():
        frame.to_hdf(root / f"{name}.h5", key="df", **options)
    return {"jetad": jetad_file, "shards": shards, **{name: root / f"{name}.h5" for name in lhco}}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_work")


def _fresh(src: Path, work: Path) -> Path:
    """A private copy of a base file or directory, replacing the previous example's."""
    dst = work / src.name
    if dst.is_dir():
        shutil.rmtree(dst)
    elif dst.exists():
        dst.unlink()
    for leftover in work.glob("*"):
        if leftover.is_file():
            leftover.unlink()
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst


# ---------------------------------------------------------------------------------------------- mutations

_DTYPES = ["int8", "uint8", "int64", "float16", "float32", "float64", "bool", "S4", "compound", "vlen"]
_FLOATS = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 1e30, -1e30, 50.0, 1e308])
_ATTR_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.binary(max_size=40),
    st.text(alphabet="json:[]{}\"',.0123456789abcNaI- ", max_size=40),
    st.builds(lambda t: "json:" + t, st.text(alphabet="[]{}\"',.:0123456789abnultrue ", max_size=30)),
    st.sampled_from(["jetad.JetSample", "frame", "frame_table", "table", b"N.", b"(lp0\n.",
                     b"cos\nsystem\n(S'x'\ntR."]),
    st.builds(lambda n: np.arange(n, dtype=np.int64), st.integers(0, 5)),
)


def _nodes(h5: h5py.File) -> list[str]:
    names: list[str] = []
    h5.visit(names.append)
    return sorted(names)


def _retyped(data: np.ndarray, kind: str) -> np.ndarray | None:
    if kind == "compound":
        return np.zeros(data.shape, dtype=[("a", "f4"), ("b", "i4")])
    if kind == "vlen":  # how PyTables stores pickled objects, and h5py variable-length strings
        out = np.empty(data.shape, dtype=h5py.string_dtype())
        out[...] = "x"
        return out
    with np.errstate(all="ignore"):
        try:
            return data.astype(kind)
        except (TypeError, ValueError):  # e.g. a compound or string array has no int8 form
            return None


def _mutate_h5(path: Path, draw: st.DataObject) -> None:
    """One random structural mutation of the HDF5 file at `path` (a no-op when it cannot be applied)."""
    op = draw.draw(st.sampled_from(["delete", "retype", "reshape", "poison", "attr", "delattr", "to_group",
                                    "truncate", "chunk"]), label="op")
    if op == "truncate":
        raw = path.read_bytes()
        if raw:
            path.write_bytes(raw[: draw.draw(st.integers(0, len(raw) - 1), label="keep bytes")])
        return
    try:
        h5 = h5py.File(path, "a")
    except OSError:
        return  # an earlier truncation: nothing left to mutate structurally
    with h5:
        nodes = _nodes(h5)
        datasets = [n for n in nodes if isinstance(h5[n], h5py.Dataset)]
        if op in ("attr", "delattr"):
            owner = h5[draw.draw(st.sampled_from(["/", *nodes]), label="attr owner")]
            keys = sorted(owner.attrs)
            if op == "delattr" and keys:
                del owner.attrs[draw.draw(st.sampled_from(keys), label="attr")]
            elif op == "attr":
                key = draw.draw(st.sampled_from([*keys, "new_attr"]), label="attr")
                value = draw.draw(_ATTR_VALUES, label="value")
                with contextlib.suppress(TypeError, ValueError, OSError):
                    owner.attrs[key] = value
            return
        if not datasets:
            return
        name = draw.draw(st.sampled_from(nodes if op == "delete" else datasets), label="node")
        if op == "delete":
            del h5[name]
            return
        if op == "chunk":  # damage the stored (compressed) bytes of one chunk
            ds = h5[name]
            if ds.chunks is None or not ds.size:
                return
            _, raw = ds.id.read_direct_chunk((0,) * ds.ndim)
            damage = draw.draw(st.sampled_from(["flip", "cut", "noise"]), label="chunk damage")
            if damage == "flip" and raw:
                at = draw.draw(st.integers(0, len(raw) - 1), label="byte")
                raw = raw[:at] + bytes([raw[at] ^ draw.draw(st.integers(1, 255), label="xor")]) + raw[at + 1:]
            elif damage == "cut":
                raw = raw[: draw.draw(st.integers(0, len(raw)), label="keep")]
            else:
                raw = draw.draw(st.binary(max_size=64), label="noise")
            ds.id.write_direct_chunk((0,) * ds.ndim, raw or b"\x00")  # HDF5 stores no empty chunk
            return
        ds = h5[name]
        try:
            data = ds[()]
        except (OSError, TypeError, ValueError):
            return
        attrs = dict(ds.attrs)
        if op == "retype":
            new = _retyped(np.asarray(data), draw.draw(st.sampled_from(_DTYPES), label="dtype"))
        elif op == "reshape":
            change = draw.draw(st.sampled_from(["drop axis", "add axis", "fewer rows", "more rows", "scalar"]))
            arr = np.asarray(data)
            new = {
                "drop axis": arr.reshape(-1) if arr.ndim > 1 else arr.reshape(-1, 1),
                "add axis": arr[..., None],
                "fewer rows": arr[:-1] if arr.ndim else arr,
                "more rows": np.concatenate([arr, arr[:1]]) if arr.ndim and len(arr) else arr,
                "scalar": np.asarray(arr.ravel()[0] if arr.size else 0),
            }[change]
        elif op == "poison":
            arr = np.array(data)
            if arr.dtype.kind != "f" or not arr.size:
                return
            with np.errstate(all="ignore"):
                arr.ravel()[draw.draw(st.integers(0, arr.size - 1), label="at")] = draw.draw(_FLOATS, label="value")
            new = arr
        else:  # to_group
            del h5[name]
            h5.create_group(name)
            return
        if new is None:
            return
        del h5[name]
        with contextlib.suppress(TypeError, ValueError, AttributeError, OSError):
            h5.create_dataset(name, data=new)
            h5[name].attrs.update(attrs)


def _mutate_manifest(directory: Path, draw: st.DataObject) -> None:
    path = directory / "manifest.json"
    op = draw.draw(st.sampled_from(["truncate", "delete file", "set key", "drop key", "shard entry", "not json",
                                    "unfinished", "drop shard file"]), label="manifest op")
    text = path.read_text()
    body = json.loads(text)
    json_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 10), st.text("abc./", max_size=8),
                            st.lists(st.integers(0, 3), max_size=3), st.just({"file": "000.h5"}))
    if op == "truncate":
        path.write_text(text[: draw.draw(st.integers(0, max(0, len(text) - 1)))])
    elif op == "delete file":
        path.unlink()
    elif op == "not json":
        path.write_bytes(draw.draw(st.binary(max_size=30)))
    elif op == "set key":
        body[draw.draw(st.sampled_from(["schema", "shards", "attrs", "complete"]))] = draw.draw(json_values)
        path.write_text(json.dumps(body))
    elif op == "drop key":
        body.pop(draw.draw(st.sampled_from(["schema", "shards", "attrs", "complete"])), None)
        path.write_text(json.dumps(body))
    elif op == "shard entry":
        entry = body["shards"][draw.draw(st.integers(0, 1))]
        entry[draw.draw(st.sampled_from(["file", "n_jets", "shard"]))] = draw.draw(
            st.one_of(json_values, st.sampled_from(["../sample.h5", "", "001.h5", "nosuch.h5", "/etc/passwd"])))
        path.write_text(json.dumps(body))
    elif op == "unfinished":
        body["complete"] = False
        path.write_text(json.dumps(body))
    else:
        (directory / "001.h5").unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- properties


def _check_jetad(path: Path) -> None:
    info = _expect_clean(lambda: sample_info(path), path)
    sample = _expect_clean(lambda: read_sample(path), path)
    chunks = _expect_clean(lambda: list(iter_samples(path, chunk_size=4)), path)
    light = _expect_clean(lambda: read_sample(path, constituents=False), path)
    if sample is not None:
        assert isinstance(sample, JetSample)
        sample.validate("re-validated")
        assert info is not None and len(sample) == info.n_jets
        assert chunks is not None and sum(len(c) for c in chunks) == len(sample)
        assert light is not None and len(light) == len(sample)


@FUZZ
@given(data=st.data())
def test_fuzzed_jetad_file_reads_cleanly(base, work, data):
    path = _fresh(base["jetad"], work)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        _mutate_h5(path, data)
    _check_jetad(path)


@FUZZ
@given(data=st.data())
def test_fuzzed_shard_directory_reads_cleanly(base, work, data):
    directory = _fresh(base["shards"], work)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if data.draw(st.booleans(), label="damage the manifest"):
            if (directory / "manifest.json").exists():
                with contextlib.suppress(ValueError, KeyError, IndexError, TypeError, AttributeError):
                    _mutate_manifest(directory, data)  # an earlier mutation may have left no JSON to edit
        elif (shard := directory / data.draw(st.sampled_from(["000.h5", "001.h5"]), label="shard")).exists():
            _mutate_h5(shard, data)
    _check_jetad(directory)


@FUZZ
@given(data=st.data(), layout=st.sampled_from(["lhco_fixed", "lhco_table", "lhco_blosc", "lhco_blosc2"]))
def test_fuzzed_lhco_file_converts_cleanly(base, work, data, layout):
    path = _fresh(base[layout], work)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        _mutate_h5(path, data)
    out, fmt = work / "converted.h5", data.draw(st.sampled_from([None, "lhco"]), label="format (None: detect)")
    result = _expect_clean(lambda: convert(path, out, fmt=fmt), path)
    assert not out.with_name(out.name + ".tmp").exists()
    if result is not None:
        assert len(read_sample(out)) >= 1


_LITERALS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text("abcE_0", max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.text("xyz", max_size=3), inner, max_size=3)),
    max_leaves=10,
)


@FUZZ
@given(value=_LITERALS, protocol=st.integers(0, pickle.HIGHEST_PROTOCOL), noise=st.binary(max_size=40))
def test_literal_pickle_round_trips_literals_and_refuses_everything_else(value, protocol, noise):
    raw = pickle.dumps(value, protocol=protocol)
    assert literal_pickle(raw, "meta") == value
    for bad in (noise, raw[: len(raw) // 2], pickle.dumps(Path("x"), protocol=protocol), noise + raw):
        with contextlib.suppress(SchemaError):
            decoded = literal_pickle(bad, "meta")
            assert not isinstance(decoded, Path)  # only plain literals ever come back
