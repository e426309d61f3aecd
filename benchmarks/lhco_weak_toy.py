"""GIS, LaCATHODE, SALAD and the supervised baseline on the toy dijets of tests/test_weak_supervision.py.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/lhco_weak_toy.py --out /work/cache/h2/lhco_weak \\
        --seeds 1,2,3 --n-bkg 20000 --injections 0,80,300

The box for (injection K, seed s): `toy_dijets(n_bkg, K, seed=100 * s + K)` (falling mjj on 2.9-4.3 TeV, a
3.5 TeV resonance to 100 and 500 GeV jets with low tau21; SR 3.3-3.7 TeV, 200 GeV sidebands). Simulation for
SALAD and the supervised baseline: a background-only toy of another seed (`simulation` seed 10_000 + s), for
SALAD with both jets' tau21 shifted by --tau21-shift (mis-modelled; the data's spread is 0.15). Signal library of
the supervised baseline: 'right' = a toy signal of another seed, 'wrong' = that signal with jet masses x2.5 and
tau21 + 0.4 (a hypothesis unlike the injected signal), 'both' = the two. CWoLa hunting is the reference.

Reported per (method, K, seed): SR truth AUC, max SIC (background floor 25 events) and, for every box, the pull
of the SR fraction among the top 10% of scores (a fake bump > 0; statistical error 1). Rows go to
OUT/results.jsonl (resumable), the summary (mean +- std over seeds) to OUT/results.md and stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from jetad.data.sample import JetSample
from jetad.evaluate.metrics import auc, max_sic
from jetad.searches import gis, lacathode, make_search, salad, supervised  # noqa: F401  (register the searches)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
toy_dijets = importlib.import_module("test_weak_supervision").toy_dijets  # the toy of the tests

#: CATHODE-style flow scaled to the CPU (benchmarks/cathode_ensemble.py uses 8 x 64, 40 epochs on LHCO).
TOY_FLOW = {"transforms": 4, "hidden": (64,), "epochs": 20, "lr": 1e-3, "patience": 5}
#: method label -> (registry name, constructor parameters, which extra fit inputs).
METHODS: dict[str, tuple[str, dict[str, Any], str]] = {
    "cwola": ("cwola", {}, "none"),
    "gis": ("gis", {}, "none"),
    "lacathode": ("lacathode", {"flow_params": TOY_FLOW, "n_ensemble": 5}, "none"),
    "salad": ("salad", {}, "mismodelled"),
    "salad_no_reweighting": ("salad", {"reweight": False}, "mismodelled"),
    "salad_true_simulation": ("salad", {}, "simulation"),
    "supervised_right_library": ("supervised", {}, "right"),
    "supervised_wrong_library": ("supervised", {}, "wrong"),
    "supervised_both": ("supervised", {}, "both"),
}


def shifted(sample: JetSample, tau21: float = 0.0, mass_factor: float = 1.0, what: str = "shifted") -> JetSample:
    """`sample` with both jets' tau21 shifted and jet masses scaled (mis-modelled simulation, other hypotheses)."""
    out = sample.subset(slice(None))
    out.features = {k: v + tau21 if k in ("tau21", "j2_tau21") else v for k, v in sample.features.items()}
    out.event = {k: v * mass_factor if k in ("j1_m", "j2_m") else v for k, v in sample.event.items()}
    out.attrs = {**sample.attrs, "source": f"{what} {sample.describe()}"}
    return out


def fit_inputs(kind: str, seed: int, n_bkg: int, tau21_shift: float) -> dict[str, Any]:
    """The extra fit arguments of a method (simulation and signal library) for one seed."""
    if kind == "none":
        return {}
    sim = toy_dijets(n_bkg, 0, seed=10_000 + seed)
    if kind in ("simulation", "mismodelled"):
        return {"simulation": shifted(sim, tau21_shift, what="mismodelled") if kind == "mismodelled" else sim}
    right = toy_dijets(0, 2000, seed=20_000 + seed)
    wrong = shifted(right, tau21=0.4, mass_factor=2.5, what="wrong hypothesis")
    library = {"right": [right], "wrong": [wrong], "both": [right, wrong]}[kind]
    return {"simulation": sim, "signal_library": library}


def measure(search: Any, data: JetSample) -> dict[str, float]:
    """SR truth AUC and max SIC (NaN without signal) and the SR-fraction pull of a 10% score cut."""
    scores, sr = search.scores_, search.signal_region_
    y, s = data.label[sr], scores[sr]
    out = {"auc": float("nan"), "max_sic": float("nan")}
    if y.any():
        out = {"auc": auc(s[y == 1], s[y == 0]), "max_sic": max_sic(s[y == 1], s[y == 0])}
    p = sr.mean()
    top = scores > np.quantile(scores, 0.9)
    out["sr_pull"] = 0.0 if not top.any() else float((sr[top].mean() - p) / np.sqrt(p * (1 - p) / top.sum()))
    out["constant"] = bool(np.ptp(scores) == 0)
    return out


def run_cell(method: str, injection: int, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    name, params, kind = METHODS[method]
    data = toy_dijets(args.n_bkg, injection, seed=100 * seed + injection)
    start = time.time()
    search = make_search(name, seed=seed, **params).fit(data, **fit_inputs(kind, seed, args.n_bkg, args.tau21_shift))
    row = {"method": method, "injection": injection, "seed": seed, **measure(search, data),
           "n_sr": int(search.signal_region_.sum()), "s_sr": int(data.label[search.signal_region_].sum()),
           "seconds": round(time.time() - start, 1)}
    if name == "salad":
        row["weighted_tau21_bias"] = salad_bias(search, data, fit_inputs(kind, seed, args.n_bkg, args.tau21_shift))
    return row


def salad_bias(search: Any, data: JetSample, inputs: dict[str, Any]) -> float:
    """Mean tau21 (jet 1) of the weighted SR simulation minus that of the SR background data."""
    sim = inputs["simulation"]
    sr_sim = search.regions(sim.event["mjj"])[0]
    w = search.simulation_weights(sim)[sr_sim]
    data_sr = data.features["tau21"][search.signal_region_ & (data.label == 0)].mean()
    return float(np.average(sim.features["tau21"][sr_sim], weights=w) - data_sr)


def summary(rows: list[dict[str, Any]]) -> str:
    """Markdown table: mean +- std over seeds per (method, injection)."""
    lines = ["| method | K | S/B in SR | SR AUC | max SIC | SR-fraction pull (10% cut) | seeds | s/fit |",
             "|---|---|---|---|---|---|---|---|"]

    def fmt(values: list[float], digits: int) -> str:
        v = np.asarray(values, float)
        if np.isnan(v).all():
            return "-"
        return f"{np.nanmean(v):.{digits}f} ± {np.nanstd(v):.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"

    for method in METHODS:
        for k in sorted({r["injection"] for r in rows}):
            cell = [r for r in rows if r["method"] == method and r["injection"] == k]
            if not cell:
                continue
            sb = np.mean([r["s_sr"] / (r["n_sr"] - r["s_sr"]) for r in cell])
            lines.append(f"| {method} | {k} | {100 * sb:.1f}% | {fmt([r['auc'] for r in cell], 3)} | "
                         f"{fmt([r['max_sic'] for r in cell], 1)} | {fmt([r['sr_pull'] for r in cell], 1)} | "
                         f"{len(cell)} | {np.mean([r['seconds'] for r in cell]):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--n-bkg", type=int, default=20_000)
    parser.add_argument("--injections", default="0,80,300")
    parser.add_argument("--tau21-shift", type=float, default=-0.1)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = {(r["method"], r["injection"], r["seed"]) for r in rows}
    with threadpool_limits(limits=1):
        for method in args.methods.split(","):
            for k in (int(v) for v in args.injections.split(",")):
                for seed in (int(v) for v in args.seeds.split(",")):
                    if (method, k, seed) in done:
                        continue
                    row = run_cell(method, k, seed, args)
                    rows.append(row)
                    with path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
    table = summary(rows)
    (args.out / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
