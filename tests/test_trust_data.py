"""Files you can trust: no code runs from a data file, bad input is a clear error, nothing half-made reads as done."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pandas as pd
import pytest

from jetad.data import (
    SampleWriter,
    SchemaError,
    add_columns,
    iter_samples,
    read_sample,
    sample_info,
    write_manifest,
    write_sample,
)
from jetad.data.formats import convert
from jetad.generate import production
from jetad.generate.processes import default_config
from jetad.physics.feature_files import write_features
from jetad.physics.features import compute_features_for
from test_formats import _lhco_frame, lhco_events, nanoaod_events, toptag_frame, write_frame, write_root
from test_store import toy_sample

# ------------------------------------------------------------------------------- 1. productions and manifests


def _readers(path: Path) -> dict:
    return {
        "read_sample": lambda: read_sample(path),
        "iter_samples": lambda: list(iter_samples(path, chunk_size=2)),
        "sample_info": lambda: sample_info(path),
    }


def _seeds(directory: Path) -> list[int]:
    seeds = []
    for path in sorted(directory.glob("*.h5")):
        with h5py.File(path, "r") as h5:
            seeds.append(int(h5.attrs["seed"]))
    return seeds


def test_a_reseeded_production_killed_after_one_shard_is_refused_until_it_is_rerun(tmp_path, monkeypatch):
    cfg, out = default_config("wz", n_constituents=20), tmp_path / "D"
    production.produce(cfg, 4, seed=3, out=out, shard_size=2, features=False)
    make_shard = production._make_shard

    def killed_after_shard_0(cfg, rows, seed, shard, path, *args, **kwargs):
        if shard > 0:
            raise KeyboardInterrupt("killed")
        return make_shard(cfg, rows, seed, shard, path, *args, **kwargs)

    monkeypatch.setattr(production, "_make_shard", killed_after_shard_0)
    with pytest.raises(KeyboardInterrupt):
        production.produce(cfg, 4, seed=4, out=out, shard_size=2, features=False)
    assert _seeds(out) == [4, 3]  # what a reader must not take for a finished seed-4 production
    for name, read in _readers(out).items():
        with pytest.raises(SchemaError, match=r"unfinished production.*shards 001\.h5 are not yet made") as err:
            read()
        assert str(out) in str(err.value) and "--seed 4" in str(err.value), name

    monkeypatch.undo()  # rerun the same command: finished shard 0 is kept, shards 1-2 are redone
    mtime = (out / "000.h5").stat().st_mtime_ns
    production.produce(cfg, 4, seed=4, out=out, shard_size=2, features=False)
    assert (out / "000.h5").stat().st_mtime_ns == mtime
    assert len(read_sample(out)) == 4 and sample_info(out).attrs["seed"] == 4 and _seeds(out) == [4, 4]


def _shard_directory(path: Path, shard_tags: list[tuple[str, int]], manifest_tag: tuple[str, int]) -> Path:
    shards = []
    for i, (tag, seed) in enumerate(shard_tags):
        write_sample(path / f"{i:03d}.h5", toy_sample(4, seed=i), {"production_hash": tag, "seed": seed})
        shards.append({"file": f"{i:03d}.h5", "n_jets": 4, "shard": i})
    attrs = {"production_hash": manifest_tag[0], "seed": manifest_tag[1], "process": "qcd", "n_jets": 12,
             "shard_size": 4}
    write_manifest(path, shards, attrs)
    return path


def test_a_directory_mixing_two_productions_is_refused_naming_the_shards_and_the_fix(tmp_path):
    mixed = _shard_directory(tmp_path / "mixed", [("bbbb", 4), ("aaaa", 3), ("aaaa", 3)], ("bbbb", 4))
    for read in _readers(mixed).values():
        with pytest.raises(SchemaError, match=r"shards 001\.h5 .*002\.h5 .*do not match manifest\.json") as err:
            read()
        assert "mixed" in str(err.value) and "re-run 'jetad generate qcd -n 12 --shard-size 4 --seed 4" in str(
            err.value)
    good = _shard_directory(tmp_path / "good", [("aaaa", 3)] * 3, ("aaaa", 3))
    assert len(read_sample(good)) == 12


def test_an_unfinished_manifest_and_wrong_row_counts_are_refused(tmp_path):
    path = _shard_directory(tmp_path / "prod", [("aaaa", 3)] * 2, ("aaaa", 3))
    shards = [{"file": "000.h5", "n_jets": 4}, {"file": "001.h5", "n_jets": 4}]
    write_manifest(path, shards, {"production_hash": "aaaa", "seed": 3}, complete=False)
    with pytest.raises(SchemaError, match=r"unfinished production.*every shard exists"):
        read_sample(path)
    write_manifest(path, [{"file": "000.h5", "n_jets": 4}, {"file": "001.h5", "n_jets": 5}], {})
    with pytest.raises(SchemaError, match=r"001\.h5.*4 jets.*do not match"):
        sample_info(path)
    write_manifest(path, [{"file": "../outside.h5", "n_jets": 4}], {})
    with pytest.raises(SchemaError, match="expected a file name inside"):
        sample_info(path)


# --------------------------------------------------------------------------- 2. LHCO: nothing is unpickled


class _CreatesMarker:
    """Unpickling this object creates a file: the proof that code from a data file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_lhco(path: Path, where: str, marker: Path) -> Path:
    df = _lhco_frame()
    evil = _CreatesMarker(marker)
    fmt = "fixed"
    if where == "column labels":
        df.columns = pd.Index([evil, *df.columns[1:]], dtype=object)
    elif where == "row index":
        df.index = pd.Index([evil, 1, 2], dtype=object)
    elif where == "column values":
        df = df.astype(object)
        df.iloc[0, 0] = evil
    elif where == "table attribute":
        fmt = "table"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTables warns that it will pickle the object nodes
        df.to_hdf(path, key="df", format=fmt)
    if where == "table attribute":  # PyTables unpickles any attribute that looks like a pickle
        with h5py.File(path, "a") as h5:
            h5["df"].attrs["non_index_axes"] = np.bytes_(pickle.dumps(evil, protocol=0))
    return path


@pytest.mark.parametrize("where", ["column labels", "row index", "column values", "table attribute"])
def test_a_crafted_lhco_file_runs_no_code_and_is_refused_naming_the_file(tmp_path, where):
    marker = tmp_path / "code_ran"
    path = _crafted_lhco(tmp_path / "crafted.h5", where, marker)
    assert not marker.exists()
    with pytest.raises(SchemaError, match="refusing to unpickle") as err:
        convert(path, tmp_path / "out.h5", fmt="lhco")
    assert not marker.exists(), "converting the file ran code from it"
    assert "crafted.h5" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SchemaError, match="refusing to unpickle"):
        convert(path, tmp_path / "out.h5")  # format detection reads nothing pickled either
    assert not marker.exists() and not (tmp_path / "out.h5").exists()


def test_the_object_typed_node_is_named(tmp_path):
    path = _crafted_lhco(tmp_path / "labels.h5", "column labels", tmp_path / "marker")
    with pytest.raises(SchemaError, match=r"labels\.h5: object-typed axis 'axis0' \(column labels\)"):
        convert(path, tmp_path / "out.h5")


@pytest.mark.parametrize("fmt", ["fixed", "table"])
def test_blosc_compressed_lhco_files_read_without_pytables(tmp_path, fmt):
    """PyTables' default Blosc compressor is not in h5py's HDF5; its chunks are decoded with python-blosc2."""
    events, _ = lhco_events()
    df = pd.DataFrame(np.concatenate([events.reshape(len(events), -1), np.zeros((len(events), 1))], axis=1))
    plain = write_frame(tmp_path / "plain.h5", df, "df", fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        df.to_hdf(tmp_path / "blosc.h5", key="df", format=fmt, complevel=1, complib="blosc:lz4")
    a = read_sample(convert(plain, tmp_path / "a.h5", chunk_size=4))
    b = read_sample(convert(tmp_path / "blosc.h5", tmp_path / "b.h5", chunk_size=4))
    np.testing.assert_array_equal(a.constituents, b.constituents)
    np.testing.assert_array_equal(a.event["mjj"], b.event["mjj"])


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (4, 50.0, r"particle eta breaks \|eta\| <= 10 in 1 rows \(first: row 1, column 'c4', value 50\)"),
        (5, 50.0, r"particle phi breaks \|phi\| <= 2 pi in 1 rows \(first: row 1, column 'c5'"),
        (3, -5.0, r"particle pT breaks 0 <= pT <= 100000 GeV in 1 rows \(first: row 1, column 'c3', value -5\)"),
        (3, 1e7, r"particle pT breaks 0 <= pT <= 100000 GeV in 1 rows \(first: row 1, column 'c3', value 1e\+07\)"),
        (4, np.inf, r"NaN/inf.*row 1, column 'c4'"),
    ],
)
def test_unphysical_lhco_values_are_refused_naming_file_column_and_rows(tmp_path, column, value, message):
    df = _lhco_frame()
    df.iloc[1, column] = value
    path = write_frame(tmp_path / "unphysical.h5", df, "df")
    with pytest.raises(SchemaError, match=message) as err:
        convert(path, tmp_path / "out.h5", chunk_size=1)
    assert "unphysical.h5" in str(err.value)
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.h5.tmp").exists()


def test_toptag_constituent_lighter_than_its_momentum_allows_is_refused(tmp_path):
    df, _ = toptag_frame(3)
    df.loc[1, "E_0"] = 0.5 * df.loc[1, "E_0"]  # E < |p|: an imaginary mass
    path = write_frame(tmp_path / "tachyon.h5", df, "table", "table")
    with pytest.raises(SchemaError, match=r"tachyon\.h5: constituent mass\^2.*in 1 rows \(first: row 1, column 'E_0'"):
        convert(path, tmp_path / "out.h5")


def test_nanoaod_candidate_at_eta_50_is_refused(tmp_path):
    events = nanoaod_events()
    eta = ak.Array([[0.4, 50.0, 0.6, -1.0, -1.1], [0.0, 0.0], [2.6], [0.0, 0.1, 1.0, 1.1]])
    events["PFCands"] = ak.with_field(events["PFCands"], ak.values_astype(eta, np.float32), "eta")
    path = write_root(tmp_path / "nano.root", events)
    with pytest.raises(SchemaError, match=r"nano\.root: branch PFCands_eta breaks \|eta\| <= 10 in 1 rows"):
        convert(path, tmp_path / "out.h5")


# ------------------------------------------------------------------------------- 3. clear errors for bad files


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.999])
def test_a_truncated_root_file_is_named_as_truncated(tmp_path, keep):
    raw = write_root(tmp_path / "full.root", nanoaod_events()).read_bytes()
    path = tmp_path / "cut.root"
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(SchemaError, match=r"cut\.root: truncated or corrupt ROOT file") as err:
        convert(path, tmp_path / "out.h5")
    assert "\n" not in str(err.value)


def test_an_unknown_format_option_is_refused_before_reading_naming_the_option_and_choices(tmp_path):
    for src in (write_frame(tmp_path / "l.h5", _lhco_frame(), "df"), tmp_path / "missing.h5"):
        with pytest.raises(SchemaError, match=r"unknown format 'nosuch' \(option --format.*lhco, toptag, nanoaod"):
            convert(src, tmp_path / "out.h5", fmt="nosuch")
    with pytest.raises(SchemaError, match="--chunk-size"):
        convert(tmp_path / "l.h5", tmp_path / "out.h5", chunk_size=0)


def test_a_malformed_json_attribute_names_the_file_and_the_attribute(tmp_path):
    path = write_sample(tmp_path / "damaged.h5", toy_sample(5))
    with h5py.File(path, "a") as h5:
        h5.attrs["settings"] = "json:[1, 2"
    for read in _readers(path).values():
        with pytest.raises(SchemaError, match=r"damaged\.h5: attribute 'settings' is not valid"):
            read()


@pytest.mark.parametrize(
    ("label", "names", "message"),
    [
        (-1, None, "label has 1 negative values"),
        (7, {"0": "qcd", "1": "top"}, r"label has 1 values not in label_names \[0, 1\]"),
    ],
)
def test_labels_out_of_range_are_refused_naming_the_file(tmp_path, label, names, message):
    sample = toy_sample(6)
    sample.label[3] = label
    if names:
        sample.attrs["label_names"] = names
    path = write_sample(tmp_path / "labels.h5", sample)
    with pytest.raises(SchemaError, match=rf"labels\.h5\[0:6\]: {message}.*row 3"):
        read_sample(path)


def test_labels_in_the_name_table_are_accepted(tmp_path):
    sample = toy_sample(6)
    sample.label[:] = [0, 10, 11, 0, 10, 11]
    sample.attrs["label_names"] = {"0": "qcd", "10": "lhco-bkg", "11": "lhco-sig"}
    np.testing.assert_array_equal(read_sample(write_sample(tmp_path / "ok.h5", sample)).label, sample.label)


def test_a_zero_jet_file_reads_as_an_empty_sample(tmp_path):
    s = toy_sample(4)
    with h5py.File(tmp_path / "zero.h5", "w") as h5:
        for name in ("constituents", "mask", "jets", "label", "weight"):
            h5[name] = getattr(s, name)[:0]
        h5.create_group("features")["tau21"] = np.zeros(0)
        h5.attrs.update({"schema": "jetad.JetSample", "schema_version": 1})
    sample = read_sample(tmp_path / "zero.h5")
    assert len(sample) == 0 and sample.constituents.shape == (0, 8, 4) and "tau21" in sample.features
    assert list(iter_samples(tmp_path / "zero.h5")) == [] and sample_info(tmp_path / "zero.h5").n_jets == 0


# --------------------------------------------------------------------------- 4. features cannot contradict jets


def test_constituents_marked_real_without_energy_are_an_inconsistent_file(tmp_path):
    sample = toy_sample(6)
    sample.mask[2] = True
    sample.constituents[2] = 0.0  # the jets row still says ~100 GeV
    path = write_sample(tmp_path / "zeros.h5", sample)
    with pytest.raises(SchemaError, match=r"zeros\.h5\[0:6\]: constituents: 8 constituents in 1 jets are marked real"):
        read_sample(path)
    with pytest.raises(SchemaError, match=r"marked real.*row 2.*set mask = pT > 0"):
        compute_features_for(sample.constituents, sample.mask)


# ------------------------------------------------------------------------------------ 5. no half-written output


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("cannot encode")


def _fail_rename(monkeypatch):
    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)


def test_every_writer_removes_its_tmp_when_writing_fails(tmp_path, monkeypatch):
    lhco = write_frame(tmp_path / "events.h5", _lhco_frame(), "df")
    source = write_sample(tmp_path / "source.h5", toy_sample(5))
    before = source.read_bytes()
    writers = {
        "write_sample": lambda: write_sample(tmp_path / "a.h5", toy_sample(5)),
        "write_manifest": lambda: write_manifest(tmp_path, [{"file": "source.h5", "n_jets": 5}], {}),
        "add_columns": lambda: add_columns(source, "features", {"new": np.ones(5)}),
        "convert": lambda: convert(lhco, tmp_path / "b.h5"),
        "write_features": lambda: write_features(source, tmp_path / "c.h5"),
    }
    _fail_rename(monkeypatch)
    for name, write in writers.items():
        with pytest.raises(OSError, match="disk full"):
            write()
        assert not list(tmp_path.glob("*.tmp")), name
    monkeypatch.undo()
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.h5", "source.h5"]


def test_a_writer_failing_at_close_or_empty_leaves_no_tmp(tmp_path):
    with pytest.raises(RuntimeError, match="cannot encode"):
        write_sample(tmp_path / "x.h5", toy_sample(5), {"bad": _Unprintable()})
    with pytest.raises(SchemaError, match="0 jets"), SampleWriter(tmp_path / "e.h5"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_add_columns_failing_half_way_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = write_sample(tmp_path / "toy.h5", toy_sample(5))
    before = path.read_bytes()
    create = h5py.Group.create_dataset

    def fails_on_second(self, name, *args, **kwargs):
        if name == "second":
            raise RuntimeError("killed half-way")
        return create(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", fails_on_second)
    with pytest.raises(RuntimeError, match="half-way"):
        add_columns(path, "features", {"first": np.ones(5), "second": np.ones(5)})
    monkeypatch.undo()
    assert path.read_bytes() == before and not path.with_name("toy.h5.tmp").exists()
    assert set(read_sample(path).features) == {"tau21"}
    with pytest.raises(SchemaError, match="numbers only"):
        add_columns(path, "features", {"names": np.array(["a"] * 5)})
