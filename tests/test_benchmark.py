"""The benchmark runner: named tasks x detectors into a resumable SQLite database, CSV and leaderboard."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jetad.tasks.benchmark import run_benchmark
from jetad.tasks.registry import TASKS, sample_counts, task_hash
from jetad.tasks.results_db import query_results

#: top-vs-qcd at 0.1 of "small": 30 train + 20 test QCD jets, 20 top jets.
TINY = 0.1
FAST = {"ae": {"epochs": 3, "batch_size": 16, "patience": 3}, "emd": {"n_reference": 10, "k": 3, "n_constituents": 20}}


@pytest.fixture(scope="module", autouse=True)
def _sample_cache(tmp_path_factory):
    """The module's samples go to one temporary cache (shared by its tests), not to ~/.cache/jetad."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JETAD_CACHE", str(tmp_path_factory.mktemp("sample-cache")))
        yield


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bench")
    rows = run_benchmark(["top-vs-qcd"], ["ae", "emd", "nurd"], size="small", workdir=workdir, params=FAST,
                         n_scale=TINY)
    return workdir, rows


def test_every_task_hashes_both_sizes_and_tiny_scale_gives_tiny_samples():
    for task in TASKS.values():
        assert task_hash(task, "small") != task_hash(task, "full")
    qcd = TASKS["top-vs-qcd"].background[0]
    assert sample_counts(qcd, "small", TINY) == (30, 20)
    assert len(TASKS["svj-grid-vs-ttbar"].signals_for("full")) == 16
    assert all(v.startswith("a jet-level") for v in TASKS["lhco-box"].not_applicable.values())


def test_applicable_detectors_run_and_nurd_is_not_applicable(first_run):
    workdir, rows = first_run
    by_method = {r["method"]: r for r in rows}
    for method in ("ae", "emd"):
        assert by_method[method]["status"] == "ok", by_method[method]["status"]
        assert 0.0 <= by_method[method]["auc"] <= 1.0
        assert by_method[method]["n_train"] == 30 and by_method[method]["n_test"] == 40
        assert by_method[method]["infer_jets_per_s"] > 0
        assert (workdir / "top-vs-qcd" / method / "metrics.json").is_file()
    assert by_method["nurd"]["status"].startswith("not applicable: needs two background classes")
    assert (workdir / "results.csv").is_file() and "| top-vs-qcd |" in (workdir / "results.md").read_text()
    stored = query_results(workdir / "results.sqlite", task="top-vs-qcd")
    assert {r["method"] for r in stored} == {"ae", "emd", "nurd"}
    assert len(query_results(workdir / "results.sqlite", method="ae")) == 1


def test_second_identical_run_reuses_every_ok_cell(first_run):
    workdir, first = first_run
    rows = run_benchmark(["top-vs-qcd"], ["ae", "emd"], size="small", workdir=workdir, params=FAST, n_scale=TINY)
    assert [r["status"] for r in rows] == ["reused", "reused"]
    assert [r["train_s"] for r in rows] == [r["train_s"] for r in first if r["method"] in ("ae", "emd")]


def test_a_failing_detector_is_stored_as_failed(first_run):
    workdir, _ = first_run
    rows = run_benchmark(["top-vs-qcd"], ["emd"], size="small", workdir=workdir,
                         params={"emd": {"reference": "nonsense"}}, n_scale=TINY)
    assert rows[0]["status"].startswith("failed: ValueError") and "reference" in rows[0]["status"]
    assert any(r["status"].startswith("failed") for r in query_results(workdir / "results.sqlite", method="emd"))


def test_cli_benchmark_lists_not_applicable_cells_and_unknown_tasks(tmp_path):
    from typer.testing import CliRunner

    from jetad.cli import app

    res = CliRunner().invoke(app, ["benchmark", "--tasks", "lhco-box", "--methods", "ae,emd", "--workdir",
                                   str(tmp_path), "--no-report"])
    assert res.exit_code == 0, res.output
    assert "not applicable" in res.output
    res = CliRunner().invoke(app, ["benchmark", "--tasks", "no-such-task", "--workdir", str(tmp_path)])
    assert res.exit_code == 1 and "no-such-task" in res.output


def test_grid_task_gets_an_auc_heatmap_and_neural_cells_onnx_timing(tmp_path):
    from jetad.tasks.registry import TASKS, SampleSpec

    base = TASKS["svj-vs-qcd"]
    sig = base.signals_for("small")[0]
    grid = [SampleSpec(f"svj_m{m}_r{r}", sig.process, {"small": (0, 12)}, sig.seed + i,
                       {**sig.overrides, "options": {**sig.overrides.get("options", {}), "m_med": m, "r_inv": r}})
            for i, (m, r) in enumerate([(1500, 0.3), (1500, 0.6), (2500, 0.3), (2500, 0.6)])]
    bkg = [SampleSpec(b.name, b.process, {"small": (30, 15)}, b.seed, b.overrides) for b in base.background]
    task = dataclasses.replace(base, name="tiny-grid", background=tuple(bkg),
                               signals={"small": tuple(grid), "full": tuple(grid)})
    rows = run_benchmark([task], ["ae"], size="small", workdir=tmp_path, params={"ae": {"epochs": 2}})
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert (tmp_path / "tiny-grid" / "ae" / "auc_grid.png").stat().st_size > 5000
    assert rows[0]["onnx_ms_per_jet_b1"] > 0 and rows[0]["onnx_jets_per_s_b1024"] > 0


def test_results_database_accepts_a_sqlite_url_and_refuses_other_servers(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared' / 'results.sqlite'}"
    rows = run_benchmark(["lhco-box"], ["ae"], workdir=tmp_path / "w", db=url)
    assert rows[0]["status"].startswith("not applicable")
    assert len(query_results(tmp_path / "shared" / "results.sqlite", task="lhco-box")) == 1
    with pytest.raises(ValueError, match="only SQLite"):
        run_benchmark(["lhco-box"], ["ae"], workdir=tmp_path / "w", db="postgresql://host/db")


# --------------------------------------------------------------------------- seeds and sizes as axes, leaderboard


@pytest.fixture(scope="module")
def axes_run(first_run):
    """emd at two training sizes x two seeds, on the samples first_run cached (20 test + 30 train QCD jets)."""
    workdir, _ = first_run
    out = workdir.parent / "axes"
    rows = run_benchmark(["top-vs-qcd"], ["emd"], size="small", workdir=out, params=FAST, n_scale=TINY,
                         seeds=(1, 2), n_train=(10, 20))
    return out, rows


def test_every_cell_is_task_method_n_train_seed_and_shares_the_test_jets(axes_run):
    _, rows = axes_run
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert sorted((r["n_train"], r["seed"]) for r in rows) == [(10, 1), (10, 2), (20, 1), (20, 2)]
    assert {(r["n_bkg"], r["n_sig"]) for r in rows} == {(20, 20)}
    assert all(0 < r["auc_stat_err"] < 0.2 for r in rows)


def test_the_leaderboard_aggregates_seeds_and_marks_small_training_sizes(axes_run):
    from jetad.tasks.leaderboard import leaderboard

    workdir, rows = axes_run
    board = leaderboard(rows)
    assert [(b["n_train"], b["n_seeds"], b["seeds"]) for b in board] == [(10, 2, "1,2"), (20, 2, "1,2")]
    for b in board:
        aucs = [r["auc"] for r in rows if r["n_train"] == b["n_train"]]
        assert b["auc_mean"] == pytest.approx(sum(aucs) / 2)
        assert "below minimum size (emd needs >= 100" in b["flags"]
    text = (workdir / "leaderboard.md").read_text()
    assert text.count("| top-vs-qcd | top | emd |") == 2 and "below minimum size" in text
    assert "n_train,n_seeds" in (workdir / "leaderboard.csv").read_text()
    assert (workdir / "top-vs-qcd" / "learning_curves.png").stat().st_size > 5000
    assert all("±" in line for line in (workdir / "results.md").read_text().splitlines() if "| ok |" in line)


def test_more_seeds_run_only_the_new_cells(axes_run):
    workdir, _ = axes_run
    rows = run_benchmark(["top-vs-qcd"], ["emd"], size="small", workdir=workdir, params=FAST, n_scale=TINY,
                         seeds=(1, 2, 3), n_train=(10, 20))
    assert sorted((r["seed"], r["status"]) for r in rows) == [(1, "reused")] * 2 + [(2, "reused")] * 2 + [
        (3, "ok")] * 2


def test_bad_axes_are_refused_before_anything_runs(tmp_path):
    for kwargs, option in (({"seeds": (1, -1)}, "seeds"), ({"n_train": (0,)}, "n_train"), ({"n_train": 100}, "n_train"),
                           ({"n_test": 0}, "n_test"), ({"seeds": ()}, "seeds")):
        with pytest.raises(ValueError, match=option):
            run_benchmark(["top-vs-qcd"], ["emd"], workdir=tmp_path, **kwargs)
    assert not (tmp_path / "results.sqlite").exists()


def test_training_sizes_split_over_background_samples_in_their_proportions():
    from jetad.tasks.registry import train_counts

    task = TASKS["wz-bkg-top-anomaly"]
    assert train_counts(task, "small") == (300, 300)
    assert train_counts(task, "small", 1001) == (501, 500) or train_counts(task, "small", 1001) == (500, 501)
    assert sum(train_counts(task, "full", 7)) == 7
    assert task_hash(task, "small", n_train=1000) != task_hash(task, "small", n_train=3000)
    with pytest.raises(ValueError, match="n_train"):
        train_counts(task, "small", 1)


def test_auc_statistical_error_matches_the_null_distribution_of_random_scores():
    from scipy.stats import rankdata

    from jetad.tasks.leaderboard import auc_stat_error

    n_s, n_b = 200, 150
    # Mann-Whitney U under the null: var(AUC) = (n_s + n_b + 1) / (12 n_s n_b)
    assert auc_stat_error(0.5, n_s, n_b) == pytest.approx(((n_s + n_b + 1) / (12 * n_s * n_b)) ** 0.5, rel=1e-3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, n_s + n_b))
    x[:, :n_s] += 1.0  # a separating score: AUC near 0.76
    ranks = rankdata(x, axis=1)[:, :n_s].sum(1)
    aucs = (ranks - n_s * (n_s + 1) / 2) / (n_s * n_b)
    assert auc_stat_error(float(aucs.mean()), n_s, n_b) == pytest.approx(aucs.std(), rel=0.1)
    assert np.isnan(auc_stat_error(None, n_s, n_b)) and np.isnan(auc_stat_error(0.7, 0, n_b))


def test_an_auc_below_one_half_always_carries_its_error_and_a_flag():
    from jetad.tasks.leaderboard import cell_flags

    assert cell_flags("ae", 5000, 0.8, 0.01) == []
    (noise,) = cell_flags("wnae", 5000, 0.472, 0.03)
    assert "0.9 sigma" in noise and "consistent with no separation" in noise
    (inverted,) = cell_flags("emd", 5000, 0.30, 0.02)
    assert "ranks background above signal" in inverted
    small, low = cell_flags("clr", 300, 0.43, 0.03)
    assert small.startswith("below minimum size (clr needs >= 10,000") and low.startswith("AUC < 0.5")


def test_every_detector_declares_a_minimum_training_size():
    from jetad.detectors import REGISTRY
    from jetad.tasks.registry import MIN_TRAIN

    assert set(MIN_TRAIN) == set(REGISTRY) and all(v > 0 for v in MIN_TRAIN.values())


def test_an_older_results_database_is_read_and_its_cells_are_rerun_not_reused(first_run, tmp_path):
    import hashlib
    import json
    import sqlite3

    from jetad.tasks.registry import task_definition

    old_columns = ("run_id", "task", "task_hash", "size", "method", "params_json", "seed", "status", "signal", "auc",
                   "n_train")
    db = tmp_path / "old.sqlite"
    task = TASKS["top-vs-qcd"]
    old_definition = {k: v for k, v in task_definition(task, "small", TINY).items() if k != "split"}
    old_hash = hashlib.sha256(json.dumps(old_definition, sort_keys=True, default=str).encode()).hexdigest()[:16]
    params = json.dumps({**task.params_for("emd", "small"), **FAST["emd"]}, sort_keys=True, default=str)
    with sqlite3.connect(db) as con:
        con.execute(f"CREATE TABLE results (id INTEGER PRIMARY KEY AUTOINCREMENT, {', '.join(old_columns)})")
        con.execute(f"INSERT INTO results ({', '.join(old_columns)}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    ("old", "top-vs-qcd", old_hash, "small", "emd", params, 0, "ok", "top", 0.9, 30))
    rows = run_benchmark(["top-vs-qcd"], ["emd"], size="small", workdir=tmp_path / "w", db=db, params=FAST,
                         n_scale=TINY)
    assert [r["status"] for r in rows] == ["ok"]
    stored = query_results(db, method="emd")
    assert [r["run_id"] for r in stored][:1] == ["old"] and stored[0]["auc_stat_err"] is None and len(stored) == 2


@pytest.mark.parametrize(("manifest", "have", "said"), [
    (True, 0, "resume an unfinished production (its finished shards are kept) to 12"),
    (False, 0, "12 more qcd jets (to 12)"),
    (True, 5, "7 more qcd jets (to 12)"),
])
def test_the_generation_message_says_what_happens_to_an_unfinished_entry(manifest, have, said, tmp_path, monkeypatch):
    from jetad.tasks import benchmark

    if manifest:
        (tmp_path / "manifest.json").write_text("{}")
    monkeypatch.setattr(benchmark, "cached_rows", lambda *a, **k: have)
    monkeypatch.setattr(benchmark, "entry_path", lambda *a, **k: tmp_path)
    monkeypatch.setattr(benchmark, "read_cached", lambda *a, **k: type("S", (), {"subset": lambda self, s: s})())
    spec = TASKS["top-vs-qcd"].background[0]
    lines: list[str] = []
    benchmark._load(spec, 10, 10, benchmark.SampleRequest("small", n_test=2), lines.append)
    assert lines and said in lines[0] and str(tmp_path) in lines[0]
