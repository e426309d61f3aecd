"""The three LHC Olympics black-box kinds (2101.08320): one signal, empty with a mis-modelled background, and a
signal of two decay modes; the generator options they need (lhco-bkg ``tune``, lhco-sig ``decay``) and the key.

Tiny real productions (Pythia -> file, no features): 150 background events per simulation, 30 per signal mode.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from typer.testing import CliRunner

from jetad.cli import app
from jetad.data import SchemaError, read_sample
from jetad.data.formats import convert
from jetad.data.store import sample_info
from jetad.generate import production
from jetad.generate.processes import LHCO_BKG_TUNES, default_config, process_card
from jetad.generate.production import config_hash
from jetad.tasks.blackbox import (
    KEY_SCHEMA_VERSION,
    background_tune,
    blackbox_labels,
    blackbox_modes,
    make_blackbox,
    read_key,
)

runner = CliRunner()
M_WPRIME, M_X, M_Y = 3500.0, 500.0, 100.0
N_BKG = 150


@pytest.fixture(scope="module")
def files(generated):
    """Nominal and mis-modelled (fsr-up) backgrounds at the same seed, and the two decay modes of one W'."""
    masses = {"m_wprime": M_WPRIME, "m_x": M_X, "m_y": M_Y}
    return {
        "nominal": generated("bb-nominal", "lhco-bkg", N_BKG, seed=3, features=False),
        "fsr-up": generated("bb-fsr-up", "lhco-bkg", N_BKG, seed=3, features=False, options={"tune": "fsr-up"}),
        "xy": generated("bb-xy", "lhco-sig", 30, seed=4, features=False, options=masses),
        "qq": generated("bb-qq", "lhco-sig", 30, seed=4, features=False, options=masses | {"decay": "qq"}),
    }


def both_jets(sample, column: str) -> np.ndarray:
    """A per-jet observable of the two leading jets (``multiplicity_full`` or ``m``) of dijet rows."""
    if column == "m":
        return np.concatenate([sample.event["j1_m"], sample.event["j2_m"]]).astype(float)
    return np.concatenate([sample.event[column], sample.event[f"j2_{column}"]]).astype(float)


# ------------------------------------------------------------------------------------------- generator options


def test_nominal_configs_keep_their_hash_and_cache_address(monkeypatch):
    """The options are absent by default, so nominal productions made before they existed are still found."""
    monkeypatch.setattr(production, "FEATURES_VERSION", 2)  # the hashes below were taken at version 2
    bkg, sig = default_config("lhco-bkg"), default_config("lhco-sig")
    assert bkg.options == {} and sig.options == {}
    assert config_hash(bkg, 1, 2000) == "8e96ac39ace4848c"  # recorded before the tune option was added
    assert config_hash(sig, 1, 2000) == "8a121f37144c7e5e"  # and before the decay option
    assert config_hash(default_config("lhco-bkg", options={"tune": "a14"}), 1, 2000) != "8e96ac39ace4848c"
    assert config_hash(default_config("lhco-sig", options={"decay": "qq"}), 1, 2000) != "8a121f37144c7e5e"
    assert process_card(bkg).settings[0] == "Beams:eCM = 13000"  # nominal card unchanged: no tune line first
    assert process_card(default_config("lhco-bkg", options={"tune": "a14"})).settings[0] == "Tune:pp = 21"


@pytest.mark.parametrize(("process", "options", "name"), [("lhco-bkg", {"tune": "herwig7"}, "tune='herwig7'"),
                                                          ("lhco-sig", {"decay": "zz"}, "decay='zz'")])
def test_unknown_tune_or_decay_is_a_value_error_naming_the_option(process, options, name):
    with pytest.raises(ValueError, match=name):
        process_card(default_config(process, options=options))


def test_the_tune_is_recorded_in_the_file_attributes(files):
    attrs = sample_info(files["fsr-up"]).attrs
    assert attrs["process_options"] == {"tune": "fsr-up"}
    assert attrs["pythia_settings"][0] == LHCO_BKG_TUNES["fsr-up"][0]
    assert background_tune(attrs) == "fsr-up"
    assert background_tune(sample_info(files["nominal"]).attrs) == "monash"
    assert background_tune({"format": "lhco"}) is None


def test_mismodelled_background_has_more_constituents_than_nominal_at_the_same_seed(files):
    """A harder final-state shower (alphaS at pT/2) makes busier jets; the two halves of nominal agree."""
    nominal, variant = read_sample(files["nominal"]), read_sample(files["fsr-up"])
    n_nom, n_var = both_jets(nominal, "multiplicity_full"), both_jets(variant, "multiplicity_full")
    assert mannwhitneyu(n_var, n_nom, alternative="greater").pvalue < 0.01
    assert n_var.mean() > 1.05 * n_nom.mean()
    half = len(nominal) // 2
    first, second = (both_jets(nominal.subset(r), "multiplicity_full") for r in
                     (np.arange(half), np.arange(half, len(nominal))))
    assert mannwhitneyu(first, second).pvalue > 0.001


def test_qq_signal_peaks_at_the_resonance_mass_and_its_jets_are_light(files):
    qq, xy = read_sample(files["qq"]), read_sample(files["xy"])
    mjj = np.asarray(qq.event["mjj"], float)
    assert abs(np.median(mjj) - M_WPRIME) < 0.1 * M_WPRIME
    heavy_qq = np.maximum(qq.event["j1_m"], qq.event["j2_m"])
    heavy_xy = np.maximum(xy.event["j1_m"], xy.event["j2_m"])
    assert np.median(heavy_qq) < 0.6 * M_X  # quark jets: mass from the shower only
    assert abs(np.median(heavy_xy) - M_X) < 0.25 * M_X  # the X -> q q jet carries the X mass
    assert abs(np.median(xy.event["mjj"]) - M_WPRIME) < 0.1 * M_WPRIME


# ------------------------------------------------------------------------------------------------- box kinds


def test_two_modes_box_records_each_events_mode(files, tmp_path):
    box = make_blackbox(files["nominal"], [files["xy"], files["qq"]], n_bkg=40, n_sig=24, out=tmp_path / "b3.h5",
                        seed=5, kind="two-modes", mode_fraction=0.25)
    key = read_key(tmp_path / "b3.key.json")
    assert key["kind"] == "two-modes" and key["schema_version"] == KEY_SCHEMA_VERSION
    assert [(m["name"], m["n_sig"]) for m in key["modes"]] == [("xy", 6), ("qq", 18)]
    assert key["modes"][1]["process_options"]["decay"] == "qq"
    assert sorted(key["mode_rows"]["xy"] + key["mode_rows"]["qq"]) == key["signal_rows"]
    modes = blackbox_modes(key)
    assert (modes == "qq").sum() == 18 and (modes == "background").sum() == 40
    assert np.array_equal(modes != "background", blackbox_labels(key) == 1)
    jets = read_sample(convert(box, tmp_path / "b3_jets.h5"))
    truth = blackbox_modes(key, jets.event["source_row"])
    heavy = np.maximum(jets.event["j1_m"], jets.event["j2_m"])
    assert np.median(heavy[truth == "xy"]) > 1.5 * np.median(heavy[truth == "qq"])  # the key matches the physics


def test_empty_mismodelled_box_holds_only_the_mismodelled_background(files, tmp_path):
    make_blackbox(files["fsr-up"], None, n_bkg=30, n_sig=0, out=tmp_path / "b2.h5", seed=1,
                  kind="empty-mismodelled")
    key = read_key(tmp_path / "b2.key.json")
    assert key["kind"] == "empty-mismodelled" and key["background_tune"] == "fsr-up"
    assert key["n_sig"] == 0 and key["modes"] == [] and set(blackbox_modes(key)) == {"background"}
    assert key["sources"]["background"]["process_options"] == {"tune": "fsr-up"}
    with pytest.raises(ValueError, match=r"bb-nominal\.h5: is the nominal background simulation"):
        make_blackbox(files["nominal"], None, n_bkg=30, n_sig=0, out=tmp_path / "x.h5", kind="empty-mismodelled")
    with pytest.raises(ValueError, match="holds no signal"):
        make_blackbox(files["fsr-up"], files["qq"], n_bkg=30, n_sig=3, out=tmp_path / "x.h5",
                      kind="empty-mismodelled")
    assert not (tmp_path / "x.h5").exists()


def test_kind_one_names_its_mode_and_version_1_keys_still_read(files, tmp_path):
    make_blackbox(files["nominal"], files["qq"], n_bkg=20, n_sig=5, out=tmp_path / "b1.h5", seed=2)
    key = read_key(tmp_path / "b1.key.json")
    assert key["kind"] == "one" and key["background_tune"] == "monash" and list(key["mode_rows"]) == ["qq"]
    old = {k: v for k, v in key.items() if k not in ("schema_version", "kind", "background_tune", "modes",
                                                     "mode_rows")}
    (tmp_path / "v1.json").write_text(json.dumps(old))
    upgraded = read_key(tmp_path / "v1.json")
    assert upgraded["kind"] == "one" and upgraded["modes"][0]["name"] == "signal"
    assert np.array_equal(blackbox_modes(upgraded) == "signal", blackbox_labels(upgraded) == 1)
    (tmp_path / "v9.json").write_text(json.dumps(key | {"schema_version": 9}))
    with pytest.raises(SchemaError, match=r"v9\.json: key schema_version 9"):
        read_key(tmp_path / "v9.json")


# ------------------------------------------------------------------------------------------------ command line


def one_line_error(args, code: int, *names: str) -> None:
    res = runner.invoke(app, [str(a) for a in args])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])


def test_blackbox_command_kind_errors_are_one_line_naming_the_option_or_file(files, tmp_path):
    base = ["blackbox", files["nominal"], "--n-bkg", "20", "-o", tmp_path / "c.h5"]
    one_line_error([*base, "--kind", "three"], 2, "--kind", "two-modes")
    one_line_error([*base, "--kind", "empty-mismodelled"], 1, "bb-nominal.h5", "nominal", "tune")
    one_line_error([*base, "--kind", "empty-mismodelled", "--signal", files["qq"], "--n-sig", "2"], 2, "--kind",
                   "--n-sig")
    one_line_error([*base, "--kind", "two-modes", "--signal", files["qq"], "--n-sig", "4"], 2, "--kind",
                   "two --signal files")
    one_line_error([*base, "--signal", files["qq"], "--signal", files["xy"], "--n-sig", "4"], 2, "--kind",
                   "two-modes")
    one_line_error([*base, "--kind", "two-modes", "--signal", files["qq"], "--signal", files["xy"], "--n-sig", "4",
                    "--mode-fraction", "1"], 2, "--mode-fraction")
    assert not (tmp_path / "c.h5").exists()


def test_blackbox_command_makes_a_two_modes_box(files, tmp_path):
    res = runner.invoke(app, ["blackbox", str(files["nominal"]), "--n-bkg", "20", "--n-sig", "10", "--kind",
                              "two-modes", "--signal", str(files["qq"]), "--signal", str(files["xy"]),
                              "--mode-fraction", "0.3", "-o", str(tmp_path / "c.h5")])
    assert res.exit_code == 0, res.output
    key = read_key(tmp_path / "c.key.json")
    assert [(m["name"], m["n_sig"]) for m in key["modes"]] == [("qq", 3), ("xy", 7)]


@pytest.mark.parametrize(("args", "message"), [
    (["qcd", "--tune", "a14"], "applies to lhco-bkg only"),
    (["lhco-bkg", "--tune", "herwig"], "not one of monash"),
    (["lhco-bkg", "--decay", "qq"], "applies to lhco-sig only"),
    (["lhco-sig", "--decay", "ww"], "not one of xy, qq"),
])
def test_generate_takes_the_variants_only_where_they_apply(tmp_path, args, message):
    res = runner.invoke(app, ["generate", *args, "-n", "5", "-o", str(tmp_path / "x.h5")])
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "x.h5").exists()


def test_generate_records_a_variant_only_when_asked():
    from jetad.cli.options import process_options

    nominal = process_options("lhco-bkg", m_wprime=3500.0, m_x=500.0, m_y=100.0, tune=None, decay=None)
    assert nominal == {}  # the nominal background's options (and so its hash) are unchanged
    assert process_options("lhco-bkg", tune="fsr-up", decay=None) == {"tune": "fsr-up"}
    assert process_options("lhco-sig", m_wprime=3500.0, m_x=500.0, m_y=100.0, decay="qq") == \
        {"m_wprime": 3500.0, "decay": "qq"}
