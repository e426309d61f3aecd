"""Readers of public formats: tiny files written in each exact layout, read back into the JetSample schema."""

from __future__ import annotations

import warnings
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pandas as pd
import pytest
import uproot

from jetad.data import SchemaError, read_sample
from jetad.data.clustering import pair_mass
from jetad.data.formats import convert, detect_format, open_reader
from jetad.data.formats.lhco import read_lhco
from jetad.data.formats.nanoaod import read_nanoaod
from jetad.data.formats.toptag import read_toptag

N_PARTICLES = 700  # the public LHCO width: 2100 particle columns (+ label)


# ------------------------------------------------------------------------------------------------ writers


def write_frame(path: Path, df: pd.DataFrame, key: str, fmt: str = "fixed") -> Path:
    """DataFrame.to_hdf as the public files were written (integer/object column names warn: expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        df.to_hdf(path, key=key, format=fmt)
    return path


def lhco_events(n_random: int = 7, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(events, labels): event 0 a hand-made dijet, the last a one-particle event, the rest two sprays."""
    rng = np.random.default_rng(seed)
    events = np.zeros((n_random + 2, N_PARTICLES, 3))
    # Back-to-back dijet (1000 and 900 GeV) plus a 50 GeV particle far from both (a third jet, and the MET).
    events[0, :3] = [[1000.0, 0.5, 0.0], [900.0, -0.3, np.pi], [50.0, 0.0, np.pi / 2]]
    for i in range(1, n_random + 1):
        n = rng.integers(20, 60)
        axis = rng.choice(2, n)
        events[i, :n, 0] = rng.exponential(40.0, n) + 1.0
        events[i, :n, 1] = np.where(axis, 1.0, -0.5) + rng.normal(0, 0.2, n)
        events[i, :n, 2] = np.where(axis, 0.3, 0.3 - np.pi) + rng.normal(0, 0.2, n)
    events[-1, 0] = [300.0, 0.1, 1.0]  # one particle: one jet, dropped
    labels = np.arange(len(events)) % 2
    return events, labels


def write_lhco(path: Path, with_label: bool = True, fmt: str = "fixed") -> Path:
    events, labels = lhco_events()
    values = events.reshape(len(events), -1)
    if with_label:
        values = np.concatenate([values, labels[:, None].astype(float)], axis=1)
    return write_frame(path, pd.DataFrame(values), "df", fmt)


def toptag_frame(n_jets: int = 6, seed: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    """A top-tagging-layout frame and the (n, 200, 3) massless (pT, eta, phi) it was made from."""
    rng = np.random.default_rng(seed)
    ptetaphi = np.zeros((n_jets, 200, 3))
    for i in range(n_jets):
        n = 5 + 7 * i
        ptetaphi[i, :n, 0] = np.sort(rng.exponential(30.0, n) + 0.5)[::-1]
        ptetaphi[i, :n, 1] = rng.normal(0.2, 0.3, n)
        ptetaphi[i, :n, 2] = rng.uniform(-np.pi, np.pi, n)
    pt, eta, phi = ptetaphi[..., 0], ptetaphi[..., 1], ptetaphi[..., 2]
    cols = {}
    for j in range(200):
        cols[f"E_{j}"] = pt[:, j] * np.cosh(eta[:, j])
        cols[f"PX_{j}"] = pt[:, j] * np.cos(phi[:, j])
        cols[f"PY_{j}"] = pt[:, j] * np.sin(phi[:, j])
        cols[f"PZ_{j}"] = pt[:, j] * np.sinh(eta[:, j])
    for c in ("truth_E", "truth_PX", "truth_PY", "truth_PZ"):
        cols[c] = rng.normal(size=n_jets)
    cols["ttv"] = np.zeros(n_jets, dtype=np.int64)
    cols["is_signal_new"] = np.arange(n_jets) % 2
    return pd.DataFrame(cols), ptetaphi


def nanoaod_events() -> dict[str, ak.Array]:
    """Four events: a selected + a soft jet; no jet; a forward jet; two selected jets, mapping interleaved."""
    f32 = np.float32
    fatjet = ak.zip(
        {
            "pt": ak.values_astype(ak.Array([[400.0, 150.0], [], [300.0], [500.0, 250.0]]), f32),
            "eta": ak.values_astype(ak.Array([[0.5, -1.0], [], [2.6], [0.0, 1.0]]), f32),
            "phi": ak.values_astype(ak.Array([[0.1, 2.0], [], [1.0], [-1.0, 2.0]]), f32),
            "mass": ak.values_astype(ak.Array([[90.0, 20.0], [], [50.0], [170.0, 30.0]]), f32),
        }
    )
    pfcands = ak.zip(
        {
            "pt": ak.values_astype(
                ak.Array([[10.0, 50.0, 30.0, 5.0, 20.0], [3.0, 4.0], [40.0], [7.0, 8.0, 9.0, 6.0]]), f32
            ),
            "eta": ak.values_astype(
                ak.Array([[0.4, 0.5, 0.6, -1.0, -1.1], [0.0, 0.0], [2.6], [0.0, 0.1, 1.0, 1.1]]), f32
            ),
            "phi": ak.values_astype(
                ak.Array([[0.1, 0.2, 0.0, 2.0, 2.1], [0.0, 1.0], [1.0], [-1.0, -1.1, 2.0, 2.1]]), f32
            ),
            "mass": ak.values_astype(
                ak.Array([[0.14, 0.0, 0.14, 0.0, 0.0], [0.0, 0.0], [0.0], [0.0, 0.5, 0.0, 0.0]]), f32
            ),
        }
    )
    mapping = ak.zip(
        {
            "jetIdx": ak.values_astype(ak.Array([[0, 0, 0, 1, 1], [], [0], [1, 0, 1, 0]]), np.int32),
            "pFCandsIdx": ak.values_astype(ak.Array([[0, 1, 2, 3, 4], [], [0], [0, 1, 2, 3]]), np.int32),
        }
    )
    return {"FatJet": fatjet, "PFCands": pfcands, "FatJetPFCands": mapping}


def write_root(path: Path, data: dict, n_entries: int | None = None) -> Path:
    """A TTree 'Events' with NanoAOD naming (nFatJet, FatJet_pt, ...) from awkward records."""
    with uproot.recreate(path) as f:
        types = {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in data.items()}
        tree = f.mktree("Events", types)
        if n_entries != 0:
            tree.extend(data)
    return path


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("formats")
    frame, _ = toptag_frame()
    return {
        "lhco": write_lhco(d / "events_anomalydetection.h5"),
        "lhco_table": write_lhco(d / "lhco_table.h5", fmt="table"),
        "lhco_nolabel": write_lhco(d / "blackbox.h5", with_label=False),
        "toptag": write_frame(d / "test.h5", frame, "table", "table"),
        "toptag_fixed": write_frame(d / "test_fixed.h5", frame, "table", "fixed"),
        "nanoaod": write_root(d / "nano.root", nanoaod_events()),
    }


# ------------------------------------------------------------------------------------------------ LHCO


def test_lhco_back_to_back_dijet_has_hand_computed_mjj_met_and_constituents(files):
    sample = read_lhco(files["lhco"], 0, 1)
    expected_mjj = np.sqrt(2 * 1000.0 * 900.0 * (np.cosh(0.8) + 1.0))
    np.testing.assert_allclose(sample.event["mjj"], [expected_mjj], rtol=1e-5)
    np.testing.assert_allclose(sample.event["met"], [np.hypot(1000.0 - 900.0, 50.0)], rtol=1e-5)
    np.testing.assert_allclose(sample.constituents[0, 0], [1000.0, 0.5, 0.0, 1000 * np.cosh(0.5)], rtol=1e-5)
    np.testing.assert_allclose(sample.jets[0], [1000.0, 0.5, 0.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(sample.event["j2_constituents"][0, 0, :3], [900.0, -0.3, np.pi], rtol=1e-5)
    assert sample.mask[0].sum() == 1 and sample.event["j2_mask"][0].sum() == 1
    assert sample.n_constituents == 200


def test_lhco_events_with_one_jet_are_dropped_and_counted(files):
    out = convert(files["lhco"], files["lhco"].parent / "lhco_converted.h5")
    sample = read_sample(out)
    events, labels = lhco_events()
    assert len(sample) == len(events) - 1
    np.testing.assert_array_equal(sample.event["source_row"], np.arange(len(events) - 1))
    np.testing.assert_array_equal(sample.label, labels[:-1])
    assert sample.attrs["n_events_read"] == len(events)
    assert sample.attrs["n_events_without_two_jets"] == 1
    assert sample.attrs["source_file"] == "events_anomalydetection.h5"
    assert sample.attrs["source_format"] == "lhco" and sample.attrs["jet_r"] == 1.0
    assert sample.attrs["conversion_options"]["n_constituents"] == 200
    assert sample.attrs["label_source"].startswith("file column")
    # The leading jet really leads, and mjj agrees with the stored jets.
    assert (sample.event["j1_pt"] >= sample.event["j2_pt"]).all()
    j2 = np.stack([sample.event[f"j2_{f}"] for f in ("pt", "eta", "phi", "m")], axis=1)
    np.testing.assert_allclose(sample.event["mjj"], pair_mass(sample.jets, j2), rtol=1e-5)


def test_lhco_chunked_conversion_equals_unchunked_and_table_format_equals_fixed(files, tmp_path):
    calls = []
    whole = read_sample(convert(files["lhco"], tmp_path / "a.h5", chunk_size=100))
    chunked = read_sample(
        convert(
            files["lhco"],
            tmp_path / "b.h5",
            chunk_size=2,
            progress=lambda done, total, logs: calls.append((done, total)),
        )
    )
    table = read_sample(convert(files["lhco_table"], tmp_path / "c.h5", chunk_size=3))
    for other in (chunked, table):
        np.testing.assert_array_equal(whole.constituents, other.constituents)
        np.testing.assert_array_equal(whole.label, other.label)
        for key in whole.event:
            np.testing.assert_array_equal(whole.event[key], other.event[key])
    assert calls[0] == (0, 9) and calls[-1] == (9, 9) and len(calls) == 6
    assert chunked.attrs["n_events_without_two_jets"] == 1


def test_lhco_without_label_column_is_background_with_label_source_none(files):
    sample = read_lhco(files["lhco_nolabel"])
    assert (sample.label == 0).all() and sample.attrs["label_source"] == "none"
    assert (read_lhco(files["lhco_nolabel"], label=1).label == 1).all()


# ------------------------------------------------------------------------------------------------ top tagging


def test_toptag_constituents_round_trip_pt_eta_phi_and_label(files):
    _, ptetaphi = toptag_frame()
    for name in ("toptag", "toptag_fixed"):
        sample = read_toptag(files[name])
        assert sample.constituents.shape == (6, 200, 4)
        np.testing.assert_array_equal(sample.mask, ptetaphi[..., 0] > 0)
        m = sample.mask
        np.testing.assert_allclose(sample.constituents[..., :3][m], ptetaphi[m], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(sample.label, np.arange(6) % 2)
        assert sample.attrs["jet_r"] == 0.8
        assert {"truth_e", "truth_px", "ttv", "source_row"} <= set(sample.event)


def test_toptag_truncation_keeps_leading_constituents_but_jet_uses_all(files, tmp_path):
    full = read_toptag(files["toptag"])
    cut = read_toptag(files["toptag"], n_constituents=8)
    np.testing.assert_array_equal(cut.constituents, full.constituents[:, :8])
    np.testing.assert_array_equal(cut.jets, full.jets)
    a = read_sample(convert(files["toptag"], tmp_path / "a.h5", chunk_size=4))
    b = read_sample(convert(files["toptag"], tmp_path / "b.h5", chunk_size=1))
    np.testing.assert_array_equal(a.constituents, b.constituents)
    np.testing.assert_array_equal(a.jets, full.jets)


# ------------------------------------------------------------------------------------------------ NanoAOD


def test_nanoaod_selects_fat_jets_and_maps_pt_sorted_constituents(files):
    sample = read_nanoaod(files["nanoaod"], label=1)
    np.testing.assert_array_equal(sample.event["source_entry"], [0, 3, 3])
    np.testing.assert_array_equal(sample.event["fatjet_index"], [0, 0, 1])
    np.testing.assert_allclose(sample.jets[:, 0], [400.0, 500.0, 250.0])
    np.testing.assert_allclose(sample.constituents[0, :3, 0], [50.0, 30.0, 10.0])
    np.testing.assert_allclose(sample.constituents[1, :2, 0], [8.0, 6.0])  # jet 0 of entry 3: cands 1, 3
    np.testing.assert_allclose(sample.constituents[2, :2, 0], [9.0, 7.0])
    np.testing.assert_array_equal(sample.mask.sum(1), [3, 2, 2])
    assert sample.n_constituents == 100 and (sample.label == 1).all()
    e = sample.constituents[0, 2]  # the 10 GeV pion: E includes its mass
    np.testing.assert_allclose(e[3], np.sqrt((10 * np.cosh(0.4)) ** 2 + 0.14**2), rtol=1e-5)
    assert sample.attrs["label_source"] == "option"


def test_nanoaod_chunked_equals_unchunked_and_options_apply(files, tmp_path):
    a = read_sample(convert(files["nanoaod"], tmp_path / "a.h5", chunk_size=100))
    b = read_sample(convert(files["nanoaod"], tmp_path / "b.h5", chunk_size=1))
    np.testing.assert_array_equal(a.constituents, b.constituents)
    np.testing.assert_array_equal(a.event["source_entry"], b.event["source_entry"])
    assert b.attrs["n_events_read"] == 4 and b.attrs["n_fatjets_selected"] == 3
    loose = read_nanoaod(files["nanoaod"], pt_min=100.0, eta_max=3.0, n_constituents=2)
    assert len(loose) == 5 and loose.n_constituents == 2
    np.testing.assert_allclose(loose.constituents[0, :, 0], [50.0, 30.0])


# ------------------------------------------------------------------------------------------------ detection


def test_format_is_detected_from_content(files, tmp_path):
    assert detect_format(files["lhco"]) == "lhco"
    assert detect_format(files["lhco_table"]) == "lhco"
    assert detect_format(files["toptag"]) == "toptag"
    assert detect_format(files["nanoaod"]) == "nanoaod"
    renamed = tmp_path / "nano.dat"
    renamed.write_bytes(files["nanoaod"].read_bytes())
    assert detect_format(renamed) == "nanoaod"
    text = tmp_path / "notes.txt"
    text.write_text("pt eta phi\n1 2 3\n")
    with pytest.raises(SchemaError, match=r"notes\.txt.*neither an HDF5 nor a ROOT"):
        detect_format(text)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as h5:
        h5["jets"] = np.zeros((2, 4))
    with pytest.raises(SchemaError, match=r"plain\.h5: an HDF5 file without a pandas DataFrame"):
        detect_format(plain)
    with pytest.raises(SchemaError, match="already a jetad file"):
        detect_format(convert(files["toptag"], tmp_path / "converted.h5"))
    with pytest.raises(ValueError, match="unknown format"):
        open_reader(files["lhco"], fmt="delphes")


# ------------------------------------------------------------------------------------------------ malformed


def _lhco_frame(n_events: int = 3) -> pd.DataFrame:
    values = np.zeros((n_events, 3 * 4 + 1))
    values[:, 0:6] = [500.0, 0.0, 0.0, 400.0, 0.1, 3.0]
    return pd.DataFrame(values, columns=[f"c{i}" for i in range(13)])


def _malformed_lhco(path: Path, case: str) -> Path:
    df = _lhco_frame()
    if case == "columns":
        df["extra"] = 1.0
    elif case == "strings":
        df["c3"] = "x"
    elif case == "nan":
        df.iloc[1, 4] = np.nan
    elif case == "empty":
        df = df.iloc[:0]
    elif case == "no_particles":
        df.iloc[1, :12] = 0.0
    elif case == "label":
        df.iloc[2, 12] = 0.5
    return write_frame(path, df, "df")


def _malformed_toptag(path: Path, case: str) -> Path:
    df, _ = toptag_frame(3)
    if case == "no_label":
        df = df.drop(columns="is_signal_new")
    elif case == "missing_px":
        df = df.drop(columns="PX_7")
    elif case == "strings":
        df["E_3"] = "x"
    elif case == "inf":
        df.loc[1, "PZ_0"] = np.inf
    elif case == "label":
        df.loc[2, "is_signal_new"] = 2
    elif case == "empty_jet":
        df.loc[1, [c for c in df.columns if c[:2] in ("E_", "PX", "PY", "PZ")]] = 0.0
    return write_frame(path, df, "table", "table")


def _malformed_nanoaod(path: Path, case: str) -> Path:
    data = nanoaod_events()
    if case == "missing_branch":
        data["PFCands"] = data["PFCands"][["pt", "eta", "phi"]]
    elif case == "nan":
        data["FatJet"] = ak.with_field(data["FatJet"], data["FatJet"].pt * np.float32(np.nan), "pt")
    elif case == "index":
        data["FatJetPFCands"] = ak.with_field(
            data["FatJetPFCands"], data["FatJetPFCands"].pFCandsIdx + 3, "pFCandsIdx"
        )
    elif case == "flat":
        data["FatJet_pt"] = np.ones(4, dtype=np.float32)
        data["FatJet"] = data["FatJet"][["eta", "phi", "mass"]]
    elif case == "empty":
        return write_root(path, data, n_entries=0)
    elif case == "no_constituents":
        data["FatJetPFCands"] = data["FatJetPFCands"][data["FatJetPFCands"].jetIdx == 1]
    return write_root(path, data)


MALFORMED = [
    ("lhco", "columns", "13 columns|14 columns"),
    ("lhco", "strings", "column 'c3'"),
    ("lhco", "nan", "NaN/inf.*row 1"),
    ("lhco", "empty", "no rows"),
    ("lhco", "no_particles", "row 1 has no particles"),
    ("lhco", "label", "row 2 has label"),
    ("toptag", "no_label", "is_signal_new"),
    ("toptag", "missing_px", "PX_7"),
    ("toptag", "strings", "E_3"),
    ("toptag", "inf", "NaN/inf.*row 1"),
    ("toptag", "label", "row 2 has is_signal_new"),
    ("toptag", "empty_jet", "row 1 has no constituents"),
    ("nanoaod", "missing_branch", "PFCands_mass"),
    ("nanoaod", "nan", "FatJet_pt.*NaN"),
    ("nanoaod", "index", "pFCandsIdx out of range"),
    ("nanoaod", "flat", "FatJet_pt"),
    ("nanoaod", "empty", "no entries"),
    ("nanoaod", "no_constituents", "fat jet 0 of entry 0"),
]


@pytest.mark.parametrize(("fmt", "case", "message"), MALFORMED, ids=[f"{f}-{c}" for f, c, _ in MALFORMED])
def test_malformed_file_raises_schema_error_naming_file(tmp_path, fmt, case, message):
    ext = "root" if fmt == "nanoaod" else "h5"
    writer = {"lhco": _malformed_lhco, "toptag": _malformed_toptag, "nanoaod": _malformed_nanoaod}[fmt]
    path = writer(tmp_path / f"bad_{case}.{ext}", case)
    with pytest.raises(SchemaError, match=message) as err:
        convert(path, tmp_path / "out.h5", fmt=fmt)
    assert f"bad_{case}.{ext}" in str(err.value)
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.h5.tmp").exists()


@pytest.mark.parametrize("source", ["lhco", "toptag", "nanoaod"])
@pytest.mark.parametrize("damage", ["truncated", "zero_bytes", "garbage"])
def test_damaged_file_raises_schema_error_naming_file(files, tmp_path, source, damage):
    raw = files[source].read_bytes()
    path = tmp_path / f"damaged{files[source].suffix}"
    content = {"truncated": raw[: len(raw) // 2], "zero_bytes": b"", "garbage": b"\x00not a file" * 50}[
        damage
    ]
    path.write_bytes(content)
    for fmt in (None, source):
        with pytest.raises(SchemaError, match=path.name):
            convert(path, tmp_path / "out.h5", fmt=fmt)
