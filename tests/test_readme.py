"""The README's code examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from jetad.data import JetSample
from jetad.detectors import REGISTRY, Detector

README = Path(__file__).resolve().parents[1] / "README.md"


def section_code(title: str) -> str:
    """The first ```python block under the README heading `title`."""
    text = README.read_text()
    body = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", body, re.S).group(1)


def toy(n: int, shift: float, seed: int) -> JetSample:
    rng = np.random.default_rng(seed)
    feats = {k: rng.normal(1 + shift, 0.2, n) for k in ("tau21", "tau32", "sd_mass")}
    jets = np.zeros((n, 4), np.float32)
    jets[:, 0] = 600
    return JetSample(constituents=np.zeros((n, 0, 4)), mask=np.zeros((n, 0), bool), jets=jets,
                     label=np.zeros(n, int), weight=np.ones(n), features=feats)


def test_the_adding_a_detector_example_runs_and_registers(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"qcd": toy(300, 0.0, 1), "top": toy(50, 1.0, 2)}
    try:
        exec(compile(section_code("Adding a detector"), "README.md", "exec"), namespace)
        det = Detector.load(tmp_path / "mahalanobis.pt")
        assert det.name == "mahalanobis" and det.get_params()["shrinkage"] == 1e-3
        bkg = det.score(toy(50, 0.0, 3))
        assert np.median(det.score(namespace["top"])) > 10 * np.median(bkg)  # a shifted sample is anomalous
        assert "[" in capsys.readouterr().out
    finally:
        REGISTRY.pop("mahalanobis", None)  # keep the zoo test's registry as the package defines it
