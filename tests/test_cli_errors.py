"""Every bad input to every `jetad` command is one line on stderr: exit 2 for a bad command line, 1 for bad data.

Each case names the file or option and the problem, leaves no traceback (unless -v) and no partial output.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from jetad.cli import app
from jetad.data import JetSample, SchemaError, write_sample
from jetad.data.scores import ScoreTable, read_scores, write_scores
from jetad.evaluate.bumphunt import sample_dijet_spectrum

runner = CliRunner()


def fails(args: list[str], code: int, *names: str) -> str:
    """Run `jetad args`; assert exit `code`, nothing on stdout, one 'error:' line on stderr naming `names`."""
    res = runner.invoke(app, [str(a) for a in args])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    assert isinstance(res.exception, SystemExit), res.exception  # a clean exit, not an escaped exception
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output and res.stdout == ""
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def dijet_sample(n: int, seed: int) -> JetSample:
    """Back-to-back dijet events (two sprays of 10 massless particles), as `jetad generate lhco-*` stores them."""
    rng = np.random.default_rng(seed)
    cons = []
    for eta0, phi0 in ((0.3, 0.0), (-0.4, np.pi)):
        pt = -np.sort(-rng.dirichlet(np.ones(10), n) * 1300.0, axis=1)
        eta, phi = eta0 + rng.normal(0, 0.05, (n, 10)), phi0 + rng.normal(0, 0.05, (n, 10))
        cons.append(np.stack([pt, eta, phi, pt * np.cosh(eta)], -1).astype(np.float32))
    mask = np.ones((n, 10), bool)
    jets = np.tile(np.float32([1300.0, 0.3, 0.0, 80.0]), (n, 1))
    event = {"mjj": np.full(n, 2800.0, np.float32), "j2_m": np.full(n, 90.0, np.float32),
             "j2_constituents": cons[1], "j2_mask": mask}
    return JetSample(cons[0], mask, jets, np.zeros(n), np.ones(n), event=event, attrs={"jet_r": 1.0})


@pytest.fixture(scope="module")
def files(generated, tmp_path_factory) -> dict[str, Path]:
    """Valid inputs (jets, a model, jet and dijet score files), damaged copies, and a file to park outputs under."""
    from jetad.data import read_sample
    from jetad.detectors import make_detector

    d = tmp_path_factory.mktemp("cli_errors")
    qcd = generated("qcd", "qcd", 200, seed=11)
    model = make_detector("ae", epochs=1, seed=1).fit(read_sample(qcd)).save(d / "ae.pt")
    shutil.copy(qcd, d / "zero.h5")
    with h5py.File(d / "zero.h5", "a") as f:  # the same file with every per-jet dataset cut to 0 rows
        f.visititems(lambda _, obj: obj.resize(0, axis=0) if isinstance(obj, h5py.Dataset) else None)
    rng = np.random.default_rng(0)
    n = 60
    write_scores(d / "scores.h5", ScoreTable(
        score=rng.normal(size=n), label=np.r_[np.zeros(40), np.ones(20)].astype(int), weight=np.ones(n, np.float32),
        source=np.r_[np.zeros(40), np.ones(20)].astype(np.int16), sources=["qcd.h5", "top.h5"],
        observers={"mass": rng.uniform(20, 200, n).astype(np.float32), "pt": np.full(n, 600, np.float32)},
        attrs={"detector": "toy"}))
    mjj = sample_dijet_spectrum((1.0, 10.0, 5.0, 0.2), (2500.0, 7000.0), rng, n=5000)
    write_scores(d / "dijet_scores.h5", ScoreTable(
        score=rng.random(len(mjj)), label=np.zeros(len(mjj), int), weight=np.ones(len(mjj), np.float32),
        source=np.zeros(len(mjj), np.int16), sources=["box.h5"], observers={"mjj": mjj.astype(np.float32)}))
    for name, damage in (("no_label", "label"), ("no_score", "score"), ("no_sources", "sources"),
                         ("short_label", "short")):
        for stem in ("scores", "dijet_scores"):
            shutil.copy(d / f"{stem}.h5", d / f"{stem}_{name}.h5")
            with h5py.File(d / f"{stem}_{name}.h5", "a") as f:
                if damage == "sources":
                    del f.attrs["sources"]
                elif damage == "short":
                    label = f["label"][:-10]
                    del f["label"]
                    f["label"] = label
                else:
                    del f[damage]
    with h5py.File(d / "foreign.h5", "w") as f:
        f["x"] = np.zeros(3)
    write_sample(d / "dijets.h5", dijet_sample(30, seed=4))
    (d / "a_dir").mkdir()
    return {"qcd": qcd, "model": model, "dir": d, **{p.stem: p for p in d.glob("*.h5")}}


# ------------------------------------------------------------------------------ the cases measured before


@pytest.mark.parametrize("width", ["0", "-0.1", "1"])
def test_bumphunt_window_width_outside_0_1_is_refused_at_once(files, width):
    t0 = time.perf_counter()
    fails(["bumphunt", files["dijet_scores"], f"--width={width}", "-o", files["dir"] / "bh"], 2, "--width", width)
    assert time.perf_counter() - t0 < 5 and not (files["dir"] / "bh").exists()  # it used to loop forever


@pytest.mark.parametrize("option", [["--bins", "0"], ["--cut", "0"], ["--cut", "1.5"], ["--toys", "-1"],
                                    ["--mjj-min", "-5"], ["--mjj-min", "5000", "--mjj-max", "4000"]])
def test_bumphunt_counts_and_ranges_are_checked_as_options(files, option):
    fails(["bumphunt", files["dijet_scores"], *option, "-o", files["dir"] / "bh"], 2, option[0])


def test_evaluate_refuses_a_sample_against_itself(files):
    fails(["evaluate", files["scores"], "--signal", "top", "--background", "top", "-o", files["dir"] / "ev"], 2,
          "--background", "'top'")
    line = fails(["evaluate", files["scores"], "--signal", "1", "--background", "top", "-o", files["dir"] / "ev"], 1)
    assert "share 20 jets" in line  # label 1 is the top file: overlapping selections
    assert not (files["dir"] / "ev").exists()


def test_evaluate_unknown_observer_names_it_and_the_available_ones(files):
    line = fails(["evaluate", files["scores"], "--signal", "top", "--background", "qcd", "--mass", "nosuch", "-o",
                  files["dir"] / "ev"], 1, "scores.h5", "'nosuch'")
    assert "mass, pt" in line


def test_score_file_with_a_short_label_column_is_bad_data(files):
    fails(["evaluate", files["scores_short_label"], "--signal", "top", "--background", "qcd", "-o",
           files["dir"] / "ev"], 1, "scores_short_label.h5", "label has 50 entries but score has 60")


@pytest.mark.parametrize("damage", ["no_label", "no_score", "no_sources", "short_label"])
@pytest.mark.parametrize("command", ["evaluate", "bumphunt"])
def test_damaged_score_files_name_the_file_and_the_missing_part(files, damage, command):
    stem = "scores" if command == "evaluate" else "dijet_scores"
    extra = ["--signal", "top", "--background", "qcd"] if command == "evaluate" else ["--cut", "1"]
    missing = {"no_label": "'label'", "no_score": "'score'", "no_sources": "'sources'", "short_label": "label"}
    fails([command, files[f"{stem}_{damage}"], *extra, "-o", files["dir"] / "out"], 1, f"{stem}_{damage}.h5",
          missing[damage])


def test_scoring_a_zero_jet_file_names_it(files):
    fails(["score", files["model"], files["zero"], "-o", files["dir"] / "z.h5"], 1, "zero.h5", "no jets")
    assert not list(files["dir"].glob("z.h5*"))


@pytest.mark.parametrize(("setting", "problem"), [
    ("epochs=abc", "epochs takes int, got 'abc'"),
    ("nonexistent=1", "no parameter 'nonexistent'"),
    ("batch_size=0", "batch_size must be >= 1"),
    ("lr=-1", "lr must be > 0"),
    ("hidden=[8,0]", "hidden [1] must be >= 1"),
    ("epoch=3", "did you mean 'epochs'"),
    ("nokey", "expected key=value"),
])
def test_set_hyper_parameters_are_checked_before_any_data_are_read(files, setting, problem):
    # foreign.h5 would be an error of its own (exit 1) if it were read first
    fails(["train", "ae", "--train", files["foreign"], "--set", setting, "-o", files["dir"] / "m.pt"], 2, "--set",
          problem)


def test_search_parameters_are_checked_against_the_search(files):
    fails(["search", "cwola", files["foreign"], "--set", "n_folds=abc", "-o", files["dir"] / "s.h5"], 2, "--set",
          "n_folds takes int")
    fails(["search", "cwola", files["foreign"], "--set", "seed=3", "-o", files["dir"] / "s.h5"], 2, "--set", "seed")
    fails(["search", "cwola", files["foreign"], "--sr-low", "4000", "--sr-high", "3000", "-o", files["dir"] / "s.h5"],
          2, "--sr-low")


@pytest.mark.parametrize("command", [["score", "MODEL", "QCD", "-o", "x.h5"], ["features", "QCD", "-o", "f.h5"],
                                     ["convert", "FOREIGN", "-o", "c.h5"]])
def test_chunk_size_must_be_positive(files, command):
    args = [{"MODEL": files["model"], "QCD": files["qcd"], "FOREIGN": files["foreign"]}.get(a, a) for a in command]
    fails([*args, "--chunk-size", "0"], 2, "--chunk-size")


@pytest.mark.parametrize("option", [["--jet-r", "-1"], ["--jet-r", "0"], ["-n", "0"], ["--pt-min", "700"],
                                    ["--eta-max", "0"], ["--detector", "cms"], ["--n-constituents", "0"],
                                    ["--shard-size", "0"], ["--workers", "0"], ["--r-inv", "1.5"]])
def test_generate_options_are_checked_before_pythia_starts(files, option):
    out = files["dir"] / "g.h5"
    fails(["generate", "qcd" if option[0] != "--r-inv" else "svj", *option, "-o", out], 2, option[0])
    assert not out.exists() and not out.with_name("g.h5.tmp").exists()


def test_generate_signal_masses_must_fit_in_the_wprime(files):
    fails(["generate", "lhco-sig", "-n", "5", "--m-x", "3000", "--m-y", "600", "-o", files["dir"] / "g.h5"], 2,
          "--m-wprime")


@pytest.mark.parametrize("where", ["/proc/x.h5", "PARENT_IS_A_FILE", "A_DIRECTORY"])
@pytest.mark.parametrize("command", ["score", "train", "generate", "convert", "search"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(files, where, command):
    if where == "/proc/x.h5" and not Path("/proc").is_dir():
        pytest.skip("needs Linux /proc")
    out = {"PARENT_IS_A_FILE": files["qcd"] / "x.h5", "A_DIRECTORY": files["dir"] / "a_dir"}.get(where, Path(where))
    args = {"score": ["score", files["model"], files["qcd"]], "train": ["train", "ae", "--train", files["qcd"]],
            "generate": ["generate", "qcd", "-n", "5"], "convert": ["convert", files["foreign"]],
            "search": ["search", "cwola", files["dijets"]]}[command]
    fails([*args, "-o", out], 1, str(out), "--out")


@pytest.mark.parametrize("command", ["evaluate", "bumphunt"])
def test_an_output_directory_that_is_a_file_is_refused(files, command):
    extra = ["--signal", "top", "--background", "qcd"] if command == "evaluate" else []
    fails([command, files["scores"], *extra, "-o", files["qcd"]], 1, "qcd.h5", "--out takes a directory")


def test_an_output_that_is_also_an_input_is_refused(files):
    fails(["score", files["model"], files["qcd"], "-o", files["qcd"]], 2, "--out", "also an input")
    fails(["export", files["model"], "--onnx", files["model"]], 2, "--onnx", "also an input")


def test_convert_unknown_format_lists_the_formats(files):
    fails(["convert", files["foreign"], "-o", files["dir"] / "c.h5", "--format", "nosuch"], 2, "--format",
          "lhco, toptag, nanoaod")


def test_blackbox_prints_the_key_path_it_wrote(files, tmp_path):
    box = tmp_path / "box_raw.h5"
    res = runner.invoke(app, ["blackbox", str(files["dijets"]), "--n-bkg", "20", "-o", str(box)])
    assert res.exit_code == 0, res.output
    key = tmp_path / "box_raw.key.json"
    assert key.exists() and json.loads(key.read_text())["n_bkg"] == 20
    assert str(key) in " ".join(res.stdout.split())  # rich may wrap the line


def test_blackbox_counts_are_checked(files):
    fails(["blackbox", files["dijets"], "--n-bkg", "5", "--n-sig", "abc", "-o", files["dir"] / "b.h5"], 2, "--n-sig")
    fails(["blackbox", files["dijets"], "--n-bkg", "-5", "-o", files["dir"] / "b.h5"], 2, "--n-bkg")
    fails(["blackbox", files["dijets"], "--n-bkg", "5", "--n-sig", "3", "-o", files["dir"] / "b.h5"], 1,
          "no signal file")


def test_bumphunt_mjj_min_alone_sets_the_fit_range(files, tmp_path):
    res = runner.invoke(app, ["bumphunt", str(files["dijet_scores"]), "--cut", "1", "--mjj-min", "3000", "-o",
                              str(tmp_path / "lo")])
    assert res.exit_code == 0, res.output
    low = json.loads((tmp_path / "lo" / "bumphunt.json").read_text())["1"]
    assert low["fit_range_gev"][0] == pytest.approx(3000.0)
    assert min(w["center"] for w in low["windows"]) > 3000.0
    res = runner.invoke(app, ["bumphunt", str(files["dijet_scores"]), "--cut", "1", "--mjj-max", "5000", "-o",
                              str(tmp_path / "hi")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "hi" / "bumphunt.json").read_text())["1"]["fit_range_gev"][1] == pytest.approx(5000)


# -------------------------------------------------------------------- the same classes, every command


MISSING = "missing.h5"


@pytest.mark.parametrize("args", [
    ["generate", "higgs", "-n", "5", "-o", "OUT/g.h5"],
    ["features", MISSING],
    ["convert", MISSING, "-o", "OUT/c.h5"],
    ["inspect", MISSING],
    ["search", "cwola", MISSING, "-o", "OUT/s.h5"],
    ["search", "nosuch", "DIJETS", "-o", "OUT/s.h5"],
    ["bumphunt", MISSING],
    ["blackbox", MISSING, "--n-bkg", "5", "-o", "OUT/b.h5"],
    ["export", MISSING, "--onnx", "OUT/m.onnx"],
    ["export", "MODEL", "--onnx", "OUT/m.onnx", "--sample", MISSING],
    ["benchmark", "--tasks", "no-such-task", "--workdir", "OUT/bench"],
    ["report", MISSING],
    ["train", "nosuch", "--train", "QCD", "-o", "OUT/m.pt"],
    ["train", "ae", "--train", MISSING, "-o", "OUT/m.pt"],
    ["train", "ae", "--train", "QCD", "--val", MISSING, "-o", "OUT/m.pt"],
    ["score", MISSING, "QCD", "-o", "OUT/x.h5"],
    ["score", "MODEL", MISSING, "-o", "OUT/x.h5"],
    ["evaluate", MISSING, "--signal", "top", "--background", "qcd"],
])
def test_missing_files_and_unknown_names_are_bad_data(files, args, tmp_path):
    names = {"QCD": files["qcd"], "MODEL": files["model"], "DIJETS": files["dijets"]}
    args = [str(names.get(a, a)).replace("OUT", str(tmp_path)) for a in args]
    line = fails(args, 1)
    assert (MISSING in args and f"{MISSING}: no such file" in line) or "unknown" in line
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("args", [
    ["score", "DIR", "QCD", "-o", "OUT/x.h5"],
    ["export", "DIR", "--onnx", "OUT/m.onnx"],
    ["evaluate", "DIR", "--signal", "top", "--background", "qcd"],
    ["bumphunt", "DIR"],
    ["convert", "DIR", "-o", "OUT/c.h5"],
    ["report", "QCD"],
    ["inspect", "DIR"],
    ["train", "ae", "--train", "DIR", "-o", "OUT/m.pt"],
])
def test_a_directory_where_a_file_is_needed_and_the_reverse(files, args, tmp_path):
    names = {"QCD": files["qcd"], "DIR": files["dir"] / "a_dir"}
    line = fails([str(names.get(a, a)).replace("OUT", str(tmp_path)) for a in args], 1)
    assert "a_dir" in line or "qcd.h5" in line


@pytest.mark.parametrize("args", [
    ["demo", "-n", "0"], ["benchmark", "--workers", "0"], ["benchmark", "--size", "huge"],
    ["train", "ae", "--train", "QCD", "--n-max", "0", "-o", "m.pt"], ["train", "ae", "--train", "QCD", "--inputs",
                                                                       "pixels", "-o", "m.pt"],
    ["search", "cwola", "QCD", "--sr-low", "0", "-o", "s.h5"], ["nosuchcommand"], ["score"],
])
def test_bad_counts_choices_and_usage_are_bad_arguments(files, args, tmp_path):
    fails([str({"QCD": files["qcd"]}.get(a, a)) for a in args], 2)


def test_wrong_kind_of_file_is_bad_data_naming_it(files):
    fails(["score", files["model"], files["scores"], "-o", files["dir"] / "x.h5"], 1, "scores.h5", "not a jetad")
    fails(["evaluate", files["qcd"], "--signal", "top", "--background", "qcd"], 1, "qcd.h5", "not a jetad score")
    fails(["train", "ae", "--train", files["zero"], "-o", files["dir"] / "m.pt"], 1, "zero.h5")
    fails(["score", files["qcd"], files["qcd"], "-o", files["dir"] / "x.h5"], 1, "qcd.h5")


# --------------------------------------------------------------------------------- the mechanism itself


def test_verbose_shows_the_traceback_instead(files):
    res = runner.invoke(app, ["-v", "evaluate", str(files["scores_no_label"]), "--signal", "top", "--background",
                              "qcd", "-o", str(files["dir"] / "ev")])
    assert res.exit_code == 1 and isinstance(res.exception, SchemaError)


def test_an_unexpected_exception_is_one_line_too(files, monkeypatch):
    import jetad.data.scores

    def broken(path):
        raise KeyError("boom")

    monkeypatch.setattr(jetad.data.scores, "read_scores", broken)
    fails(["evaluate", files["scores"], "--signal", "top", "--background", "qcd"], 1, "unexpected KeyError", "-v")


def test_a_failed_score_file_write_leaves_no_partial_file(files, tmp_path, monkeypatch):
    import jetad.data.scores

    table = read_scores(files["scores"])
    table.observers["mass"] = table.observers["mass"][:-1]
    with pytest.raises(SchemaError, match="observers/mass has 59 entries"):
        write_scores(tmp_path / "bad.h5", table)

    def no_rename(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(jetad.data.scores.os, "replace", no_rename)
    with pytest.raises(OSError):
        write_scores(tmp_path / "full.h5", read_scores(files["scores"]))
    assert not list(tmp_path.iterdir())
