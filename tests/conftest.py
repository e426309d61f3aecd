"""Session fixtures: tiny fixed-seed samples generated once through the real pipeline (Pythia -> file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jetad.data import read_sample
from jetad.generate.processes import default_config
from jetad.generate.production import produce


@pytest.fixture(scope="session", autouse=True)
def private_sample_cache(tmp_path_factory):
    """Every test uses a fresh sample cache of its session (never the user's ~/.cache/jetad)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JETAD_CACHE", str(tmp_path_factory.mktemp("sample-cache")))
        yield


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    """Make (or reuse within the session) a generated file: generated(name, process, n, seed, **cfg)."""
    root = tmp_path_factory.mktemp("generated")
    cache: dict[str, Path] = {}

    def make(name: str, process: str, n: int, seed: int = 1, features: bool = True, **overrides) -> Path:
        if name not in cache:
            cfg = default_config(process, **overrides)
            cache[name] = produce(cfg, n, seed, root / f"{name}.h5", features=features)
        return cache[name]

    return make


@pytest.fixture(scope="session")
def qcd(generated):
    return read_sample(generated("qcd", "qcd", 200, seed=11))


@pytest.fixture(scope="session")
def top(generated):
    return read_sample(generated("top", "top", 150, seed=12))


@pytest.fixture(scope="session")
def wz(generated):
    return read_sample(generated("wz", "wz", 150, seed=13))


@pytest.fixture(scope="session", autouse=True)
def _single_thread_torch():
    """Small networks train faster on one thread, and a 2-core CI box has no cores to spare."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
