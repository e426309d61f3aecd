"""The sample cache: content-addressed productions, made once, extended shard by shard, resumed, listed, cleared."""

from __future__ import annotations

import hashlib
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

import jetad.generate.production as production
from jetad.data import read_sample
from jetad.data.sample import SchemaError
from jetad.generate.cache import (
    cache_dir,
    cached_rows,
    cached_sample,
    clear_cache,
    entry_path,
    list_cache,
    read_cached,
    sample_key,
)
from jetad.generate.processes import default_config

CFG = default_config("qcd", mpi=False)  # MPI off: three times faster, the same code paths
SHARD = 10


@pytest.fixture
def shard_calls(monkeypatch):
    """(rows, shard) of every shard the productions generate in this test."""
    calls: list[tuple[int, int]] = []
    real = production.generate_sample

    def counting(cfg, n, seed, shard=0, **kwargs):
        calls.append((n, shard))
        return real(cfg, n, seed, shard, **kwargs)

    monkeypatch.setattr(production, "generate_sample", counting)
    return calls


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A cache holding 24 QCD jets of seed 5 in shards of 10 (10 + 10 + 4), made once for the module."""
    cache = tmp_path_factory.mktemp("cache")
    path = cached_sample(CFG, 24, 5, cache=cache, shard_size=SHARD)
    return cache, path, read_sample(path)


@pytest.fixture
def cache(made, tmp_path):
    """A private copy of the module's cache (entries are addressed by content, not by folder)."""
    root, _, _ = made
    shutil.copytree(root, tmp_path / "cache")
    return tmp_path / "cache"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_request_twice_generates_nothing_the_second_time(made, cache, shard_calls):
    _, _, first = made
    path = cached_sample(CFG, 24, 5, cache=cache, shard_size=SHARD)
    assert shard_calls == []
    assert path == entry_path(CFG, 5, cache, SHARD) and sorted(p.name for p in path.glob("*.h5")) == [
        "000.h5", "001.h5", "002.h5"]
    again = read_cached(CFG, 24, 5, cache=cache, shard_size=SHARD)
    np.testing.assert_array_equal(again.constituents, first.constituents)
    assert len(again) == 24 and cached_rows(CFG, 5, cache, SHARD) == 24


def test_fewer_rows_read_the_first_rows_of_the_production(made, cache, shard_calls):
    _, _, first = made
    head = read_cached(CFG, 15, 5, cache=cache, shard_size=SHARD)
    middle = read_cached(CFG, 20, 5, start=12, cache=cache, shard_size=SHARD)
    assert shard_calls == []
    np.testing.assert_array_equal(head.jets, first.jets[:15])
    np.testing.assert_array_equal(middle.jets, first.jets[12:20])


def test_a_larger_request_extends_with_new_shards_and_keeps_the_old_ones(made, cache, shard_calls):
    _, path, first = made
    full_shards = {name: _digest(cache / "samples" / path.name / name) for name in ("000.h5", "001.h5")}
    bigger = read_cached(CFG, 36, 5, cache=cache, shard_size=SHARD)
    assert sorted(shard_calls, key=lambda c: c[1]) == [(10, 2), (6, 3)]  # the partial shard grows, one is new
    assert {n: _digest(cache / "samples" / path.name / n) for n in full_shards} == full_shards
    assert len(bigger) == 36
    np.testing.assert_array_equal(bigger.constituents[:24], first.constituents)
    np.testing.assert_array_equal(bigger.features["tau32"][:24], first.features["tau32"])
    (entry,) = list_cache(cache)
    assert entry.complete and entry.n_jets == 36 and entry.seed == 5 and entry.process == "qcd"


def test_a_different_seed_or_setting_is_a_different_entry(cache, shard_calls):
    assert sample_key(CFG, 5, SHARD) != sample_key(CFG, 6, SHARD)
    assert sample_key(CFG, 5, SHARD) != sample_key(default_config("qcd"), 5, SHARD)
    assert sample_key(CFG, 5, SHARD) != sample_key(CFG, 5, SHARD, features=False)
    assert sample_key(CFG, 5, SHARD) != sample_key(CFG, 5, 2 * SHARD)
    cached_sample(CFG, 4, 6, cache=cache, shard_size=SHARD)
    assert shard_calls == [(4, 0)]
    entries = list_cache(cache)
    assert sorted((e.seed, e.n_jets) for e in entries) == [(5, 24), (6, 4)]
    assert all(e.complete and e.current and e.size_bytes > 0 and "R=0.8" in e.settings for e in entries)


def test_an_interrupted_production_is_not_complete_and_resumes(cache, shard_calls):
    cfg = default_config("qcd", mpi=False, n_constituents=50)

    def stop_after_first_shard(done, total, logs):  # killed in the middle of the second shard
        if done > SHARD:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        cached_sample(cfg, 25, 7, cache=cache, shard_size=SHARD, progress=stop_after_first_shard)
    (entry,) = [e for e in list_cache(cache) if e.seed == 7]
    assert not entry.complete and entry.n_jets == 0 and entry.n_planned == 25
    with pytest.raises(SchemaError, match="unfinished"):
        read_sample(entry.path)
    shard_calls.clear()
    sample = read_cached(cfg, 12, 7, cache=cache, shard_size=SHARD)  # resumes the 25 it planned, redoing no shard
    assert sorted(s for _, s in shard_calls) == [1, 2] and len(sample) == 12
    assert cached_rows(cfg, 7, cache, SHARD) == 25


def test_cache_folder_argument_beats_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JETAD_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("JETAD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "jetad"


def test_clear_removes_by_process_and_age_and_refuses_bad_input(cache):
    assert clear_cache(cache, process="top") == []
    assert clear_cache(cache, older_than=timedelta(days=1)) == []
    removed = clear_cache(cache, process="qcd")
    assert [e.seed for e in removed] == [5] and list_cache(cache) == []
    with pytest.raises(ValueError, match="older_than"):
        clear_cache(cache, older_than=-1)
    with pytest.raises(ValueError, match="n: need a positive"):
        cached_sample(CFG, 0, 5, cache=cache)


def test_the_cache_commands_list_and_clear_what_the_library_made(made, cache):
    from typer.testing import CliRunner

    from jetad.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "list", "--cache", str(cache)])
    assert listed.exit_code == 0, listed.output
    assert "qcd" in listed.output and f"{len(list_cache(cache))} entries" in listed.output
    where = runner.invoke(app, ["cache", "path", "--cache", str(cache)])
    assert where.exit_code == 0 and where.output.strip() == str(cache)
    bad = runner.invoke(app, ["cache", "clear", "--cache", str(cache), "--older-than", "-1"])
    assert bad.exit_code == 2 and list_cache(cache)  # a usage error removes nothing


@pytest.mark.parametrize("option, value", [("--seeds", "1,x"), ("--seeds", "-1"), ("--n-train", "0"),
                                           ("--n-train", ",")])
def test_benchmark_axes_are_checked_before_anything_runs(option, value, tmp_path):
    from typer.testing import CliRunner

    from jetad.cli import app

    result = CliRunner().invoke(app, ["benchmark", "--workdir", str(tmp_path / "w"), option, value])
    assert result.exit_code == 2 and option in result.output
    assert not (tmp_path / "w" / "results.sqlite").exists()
