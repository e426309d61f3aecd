"""The main job on a small default: generate -> features -> train detectors on QCD -> score -> evaluate top vs QCD
-> an HTML report.

Every step goes through the same files and functions a user calls by hand, so the demo is also an end-to-end
check of the toolkit. Samples come from the sample cache (`jetad.generate.cache`: made once, reused by every
later demo, benchmark and script asking for the same jets) and are copied into the output folder, so that the
folder holds everything its report shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jetad.data.store import write_sample
from jetad.detectors import make_detector
from jetad.detectors.scoring import score_files
from jetad.evaluate.inspect import plot_distributions, summarize
from jetad.evaluate.report import write_report
from jetad.evaluate.report_files import evaluate_score_table
from jetad.generate.cache import read_cached
from jetad.generate.processes import default_config
from jetad.tasks.train import train_detector

__all__ = ["DEMO_DETECTORS", "DemoResult", "run_demo"]

#: (registry name, constructor parameters) of the detectors the demo trains.
DEMO_DETECTORS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ae", {"epochs": 60, "batch_size": 32, "patience": 15}),  # small samples: small batches, enough steps
    ("flow", {"epochs": 60, "batch_size": 32, "patience": 15}),
    ("emd", {"n_reference": 150, "k": 8}),
)


@dataclass
class DemoResult:
    """Where everything went, and the headline numbers."""

    samples: dict[str, Path]
    distributions: Path
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    evaluations: dict[str, Path] = field(default_factory=dict)
    report: Path | None = None


def run_demo(out: str | Path, n: int = 400, seed: int = 1, step: Callable[[str], None] | None = None,
             cache: str | Path | None = None) -> DemoResult:
    """Generate QCD (2n jets: half to train, half to test), top and W/Z (n each), inspect, train, evaluate."""
    out = Path(out)
    say = step or (lambda msg: None)
    sizes = {"qcd_train": ("qcd", n), "qcd_test": ("qcd", n), "top": ("top", n), "wz": ("wz", n)}
    samples = {}
    for i, (name, (process, size)) in enumerate(sizes.items()):
        say(f"generate {name} ({size} jets, seed {seed + i})")
        jets = read_cached(default_config(process), size, seed + i, cache=cache)
        samples[name] = write_sample(out / f"{name}.h5", jets)
    say("inspect")
    dist = plot_distributions([summarize(p) for p in samples.values()], out / "distributions.png",
                              title=f"jetad demo: {n} jets per sample, seeds {seed}..{seed + 3}")
    result = DemoResult(samples=samples, distributions=dist)
    for name, params in DEMO_DETECTORS:
        say(f"train {name} on {n} QCD jets")
        det = train_detector(make_detector(name, seed=seed, **params), [samples["qcd_train"]],
                             out / f"{name}.pt").detector
        table = score_files(det, [samples["qcd_test"], samples["top"]], out / f"scores_{name}.h5")
        ev = evaluate_score_table(table, "top", "qcd_test", out / f"eval_{name}", path=out / f"scores_{name}.h5")
        result.metrics[name] = ev["metrics"]
        result.evaluations[name] = out / f"eval_{name}"
    say("report")
    result.report = write_report(out, title=f"jetad demo: top vs QCD, {n} jets per sample",
                                 command=f"jetad demo -o {out} -n {n} --seed {seed}")
    return result
