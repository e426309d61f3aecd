"""Named benchmark tasks: which jets train and test, which signals, which detectors apply, at two sizes.

A task is pure data: `jetad.tasks.benchmark.run_benchmark` runs it. Sizes are "small" (tens to hundreds of
jets, a minute or two per task on a laptop) and "full" (thousands). `task_hash(task, size)` fingerprints the
definition at one size, so results and samples are reused only when nothing that determines them changed.

Rows of a sample: the first n_test rows test, the next n_train rows train (background only), so every training
size of a learning curve is scored on the same test jets and the training sets are nested. `MIN_TRAIN` declares
the training size below which a method's result is marked "below minimum size" in the leaderboards.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from jetad.detectors.inputs import CMS_WNAE_FEATURES

__all__ = ["MIN_TRAIN", "SIZES", "SPLIT", "TASKS", "SampleSpec", "Task", "sample_counts", "task_definition",
           "task_hash", "train_counts"]

SIZES = ("small", "full")
#: How a sample's rows split (part of every task hash): test rows first, then training rows.
SPLIT = "test-first"

#: Training jets (background, total over a task's background samples) below which a method's result is marked
#: "below minimum size". A declared judgement, not a measurement: the references trained on 1e5-1e6 jets; the
#: feature networks (8 inputs, ~1e3-1e4 weights) need about a thousand jets, the energy-based models with an
#: MCMC sampler a few thousand, the image and constituent networks (1e5+ weights) ten thousand; the EMD score
#: learns no weights and needs only its reference jets. Replace a value by the knee of a measured learning
#: curve (docs/benchmarks/leaderboard.md) when one exists.
MIN_TRAIN: dict[str, int] = {
    "ae": 1000,
    "vae": 1000,
    "flow": 1000,
    "nae": 3000,
    "wnae": 3000,
    "emd": 100,
    "clr": 10000,
    "anomclr": 10000,
    "nurd": 10000,
}


@dataclass(frozen=True)
class SampleSpec:
    """One generated sample: `default_config(process, **overrides)`, `n[size] = (n_train, n_test)` jets, a seed.

    The first n_train rows train (background only), the next n_test rows test. Signals have n_train = 0.
    """

    name: str
    process: str
    n: dict[str, tuple[int, int]]
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """A benchmark: train on `background` train splits, test on background test splits vs each signal.

    Arguments:
        detectors: applicable detector name -> {"small": params, "full": params} (constructor arguments).
        not_applicable: detector name -> why it does not apply to this task.
        observer: score-table observer used for sculpting (JSD, dCor): 'sd_mass', 'mass', 'mjj', ...
        signal_grid: names of the signal parameters when signals form a grid (for tables and plots).
        match_pt: evaluate with the background test jets weighted to each signal's jet-pT spectrum
            (`jetad.detectors.reweighting.matched_weights`), so that a detector cannot win by pT alone.
    """

    name: str
    description: str
    background: tuple[SampleSpec, ...]
    signals: dict[str, tuple[SampleSpec, ...]]
    inputs: str
    detectors: dict[str, dict[str, dict[str, Any]]]
    not_applicable: dict[str, str] = field(default_factory=dict)
    observer: str = "sd_mass"
    signal_grid: tuple[str, ...] = ()
    match_pt: bool = False

    def signals_for(self, size: str) -> tuple[SampleSpec, ...]:
        """The signal samples at `size` ('small' may test a subset of the 'full' grid)."""
        _check_size(size)
        return self.signals.get(size, self.signals.get("full", ()))

    def params_for(self, method: str, size: str) -> dict[str, Any]:
        """Constructor parameters of `method` at `size`; KeyError when the method is not configured here."""
        _check_size(size)
        return dict(self.detectors[method][size])


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")


def sample_counts(spec: SampleSpec, size: str, n_scale: float = 1.0, n_train: int | None = None,
                  n_test: int | None = None) -> tuple[int, int]:
    """(n_train, n_test) of a sample at `size`, scaled by `n_scale` (tests use tiny fractions; >= 5 when > 0).

    `n_train` / `n_test`, when given, replace the scaled counts (a signal keeps n_train = 0).
    """
    _check_size(size)
    train, test = (0 if k == 0 else max(5, round(k * n_scale)) for k in spec.n[size])
    if n_train is not None and train:
        train = _positive(n_train, "n_train")
    if n_test is not None:
        test = _positive(n_test, "n_test")
    return train, test


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name}: need a positive whole number of jets, got {value!r}")
    return int(value)


def train_counts(task: Task, size: str, n_train: int | None = None, n_scale: float = 1.0) -> tuple[int, ...]:
    """Training jets per background sample: the task's counts at `size`, or `n_train` in total split in their
    proportions (largest remainders, so the counts sum to `n_train`; each >= 1)."""
    declared = [sample_counts(s, size, n_scale)[0] for s in task.background]
    if n_train is None:
        return tuple(declared)
    total = _positive(n_train, "n_train")
    if total < len(declared):
        raise ValueError(f"n_train: {task.name} trains on {len(declared)} background samples; need at least "
                         f"{len(declared)} jets, got {total}")
    shares = [total * k / sum(declared) for k in declared]
    counts = [max(1, int(x)) for x in shares]
    for i in sorted(range(len(counts)), key=lambda i: int(shares[i]) - shares[i])[: max(0, total - sum(counts))]:
        counts[i] += 1
    return tuple(counts)


def task_definition(task: Task, size: str, n_scale: float = 1.0, n_train: int | None = None,
                    n_test: int | None = None) -> dict[str, Any]:
    """Everything that determines a task's results at one size (and training size), as JSON-ready data."""
    def spec(s: SampleSpec, train: int | None) -> dict[str, Any]:
        d = asdict(s)
        d["n"] = sample_counts(s, size, n_scale, train, n_test)
        return d

    trains = train_counts(task, size, n_train, n_scale)
    return {
        "name": task.name,
        "size": size,
        "split": SPLIT,
        "background": [spec(s, k) for s, k in zip(task.background, trains, strict=True)],
        "signals": [spec(s, None) for s in task.signals_for(size)],
        "observer": task.observer,
        "match_pt": task.match_pt,
    }


def task_hash(task: Task, size: str, n_scale: float = 1.0, n_train: int | None = None,
              n_test: int | None = None) -> str:
    """sha256 (16 hex digits) of the task definition at `size`; detector parameters are hashed per result."""
    payload = json.dumps(task_definition(task, size, n_scale, n_train, n_test), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ detector settings

_CMS_INPUTS = {"kind": "features", "features": list(CMS_WNAE_FEATURES), "scaling": "quantile"}


def _torch(small_epochs: int, full_epochs: int, **extra: Any) -> dict[str, dict[str, Any]]:
    """Small runs: small batches and few epochs; full runs: the usual batch size and patience."""
    return {"small": {"epochs": small_epochs, "batch_size": 32, "patience": small_epochs, **extra},
            "full": {"epochs": full_epochs, "batch_size": 256, "patience": 10, **extra}}


def _jet_detectors(inputs: dict[str, Any] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """The background-trained jet-level zoo with per-size settings (inputs override where given)."""
    extra = {} if inputs is None else {"inputs": inputs}
    return {
        "ae": _torch(30, 100, **extra),
        "vae": _torch(30, 100, **extra),
        "nae": _torch(20, 60, **extra),
        "wnae": _torch(20, 60, **extra),
        "flow": _torch(30, 100, **extra),
        "emd": {"small": {"n_reference": 50, "k": 5}, "full": {"n_reference": 300, "k": 10}},
        "clr": _torch(5, 40),
        "anomclr": _torch(5, 40),
    }


_NURD_NEEDS = ("needs two background classes to learn (e.g. QCD and W/Z); only wz-bkg-top-anomaly "
               "trains on two background processes")
_TOP_JETS: dict[str, float] = {}  # default_config's R=0.8, pT 550-650 GeV, |eta| < 2
_WIDE_JETS = {"pt_min": 300.0, "pt_max": float("inf"), "eta_max": 2.4}
_SVJ_M = (1000, 2000, 3000, 4000)
_SVJ_RINV = (0.1, 0.3, 0.5, 0.7)


def _svj(m: int, r_inv: float, n: dict[str, tuple[int, int]], seed: int) -> SampleSpec:
    return SampleSpec(f"svj_m{m}_rinv{r_inv:g}", "svj", n, seed,
                      {**_WIDE_JETS, "options": {"m_med": float(m), "r_inv": r_inv, "m_dark": 20.0}})


def _svj_grid(n: dict[str, tuple[int, int]], seed: int) -> tuple[SampleSpec, ...]:
    return tuple(_svj(m, r, n, seed + 10 * i + j) for i, m in enumerate(_SVJ_M) for j, r in enumerate(_SVJ_RINV))


_SIG_N = {"small": (0, 200), "full": (0, 2000)}
_BKG_N = {"small": (300, 200), "full": (5000, 2000)}

TASKS: dict[str, Task] = {
    "top-vs-qcd": Task(
        name="top-vs-qcd",
        description="Boosted top jets vs QCD jets, anti-kT R=0.8, pT 550-650 GeV; train on QCD only.",
        background=(SampleSpec("qcd", "qcd", _BKG_N, 101, _TOP_JETS),),
        signals={"full": (SampleSpec("top", "top", _SIG_N, 102, _TOP_JETS),)},
        inputs="substructure features (8 by default), jet images or constituents, per detector",
        detectors=_jet_detectors(),
        not_applicable={"nurd": _NURD_NEEDS},
        match_pt=True,
    ),
    "wz-bkg-top-anomaly": Task(
        name="wz-bkg-top-anomaly",
        description="Background is QCD + W/Z jets (two known classes), anomaly is top; R=0.8, pT 550-650 GeV.",
        background=(SampleSpec("qcd", "qcd", _BKG_N, 201, _TOP_JETS), SampleSpec("wz", "wz", _BKG_N, 202, _TOP_JETS)),
        signals={"full": (SampleSpec("top", "top", _SIG_N, 203, _TOP_JETS),)},
        inputs="as top-vs-qcd; NuRD uses 50x50 images, the background labels (qcd 0, wz 2) and the jet mass",
        detectors={**_jet_detectors(), "nurd": _torch(5, 30)},
        match_pt=True,
    ),
    "svj-grid-vs-ttbar": Task(
        name="svj-grid-vs-ttbar",
        description="Semivisible jets over m_Phi x r_inv vs unmatched ttbar jets, pT > 300 GeV, |eta| < 2.4 "
                    "(the CMS WNAE setting); 'small' tests m_Phi 2000, r_inv 0.3 only, 'full' the 4x4 grid.",
        background=(SampleSpec("ttbar", "top", {"small": (300, 200), "full": (4000, 2000)}, 301,
                               {"match": False, **_WIDE_JETS}),),
        signals={"small": (_svj(2000, 0.3, _SIG_N, 311),),
                 "full": _svj_grid({"small": (0, 200), "full": (0, 1000)}, 320)},
        inputs="the 8 CMS WNAE features, quantile-scaled (constituent detectors: constituents)",
        detectors=_jet_detectors(_CMS_INPUTS),
        not_applicable={"nurd": _NURD_NEEDS},
        signal_grid=("m_med", "r_inv"),
        match_pt=True,
    ),
    "svj-vs-qcd": Task(
        name="svj-vs-qcd",
        description="Semivisible jets (m_Phi 2000 GeV, r_inv 0.3) vs QCD jets, pT > 300 GeV, |eta| < 2.4.",
        background=(SampleSpec("qcd", "qcd", _BKG_N, 401, _WIDE_JETS),),
        signals={"full": (_svj(2000, 0.3, _SIG_N, 402),)},
        inputs="substructure features (8 by default), jet images or constituents, per detector",
        detectors=_jet_detectors(),
        not_applicable={"nurd": _NURD_NEEDS},
        match_pt=True,
    ),
    "lhco-box": Task(
        name="lhco-box",
        description="LHC Olympics-style dijet resonance search: QCD dijets vs W' -> X Y. A resonant search over "
                    "mjj, run by 'jetad search' (CWoLa, CATHODE, Tag N' Train, QUAK) and 'jetad bumphunt'.",
        background=(SampleSpec("lhco-bkg", "lhco-bkg", {"small": (300, 200), "full": (20000, 10000)}, 501),),
        signals={"full": (SampleSpec("lhco-sig", "lhco-sig", {"small": (0, 100), "full": (0, 2000)}, 502),)},
        inputs="dijet events: mjj, both jets' masses and tau ratios",
        detectors={},
        not_applicable={name: "a jet-level detector; the resonant search lives in 'jetad search' and "
                              "'jetad bumphunt'" for name in (*_jet_detectors(), "nurd")},
        observer="mjj",
    ),
}
