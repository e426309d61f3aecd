"""Every registered LHC Olympics strategy on the same boxes: a signal box at two signal seeds and the empty box.

    nice -n 5 .venv/bin/python benchmarks/lhco_strategies.py --production /work/cache/lhco_null/qcd_seed11 \\
        --signal /work/cache/cathode/sig.h5 --box-seeds 21,22 --out bench-out/lhco_strategies

The box (as `benchmarks/cathode_ensemble.py`): the first --n-bkg QCD events of an lhco-bkg production plus
W'(3.5 TeV) -> X(500) Y(100) signal events, a seeded subset of --signal, added until --sr-signal of them lie in
the SR 3.3-3.7 TeV (193 of 20,000: S/sqrt(B) = 3.7 in the SR, about the LHCO R&D black box's 1:1000 after the
trigger); the empty box is the same QCD alone. Searches needing simulation (SALAD, the supervised ensemble) get
the production's events after the box's (--n-sim of them: another sample of the same simulation; the
supervised ensemble's signal library is the rest of --signal not put in the box at hand: the optimistic,
right-prior case). Every search runs with the settings in STRATEGIES (scaled to this CPU), seed 1, 5 folds.

Per (strategy, box, box seed): SR truth AUC and max SIC, the fraction of SR events passing a cut that keeps 10%
of the sidebands (10% = no sculpting), and the local Z of the 3.5 TeV window after keeping 10% / 1% of the
events (`bump_hunt`, fit start above the turn-on). Rows go to OUT/results.jsonl (resumable), the table to
OUT/results.md. Fit wall time and peak RSS are recorded per row.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from jetad.data import read_sample
from jetad.evaluate.plots import plot_sensitivity
from jetad.searches import SEARCHES, make_search

sys.path.insert(0, str(Path(__file__).parent))
from cathode_ensemble import STUDY_FLOW, build_box, metrics

#: Settings per strategy (registry name -> parameters), scaled to a 2-core CPU; searches not listed run with
#: their defaults. Nested flows use CATHODE's study flow.
STRATEGIES: dict[str, dict[str, Any]] = {
    "cwola": {"n_ensemble": 10},
    "cathode": {"flow_params": STUDY_FLOW},
    "lacathode": {"flow_params": STUDY_FLOW | {"epochs": 20}},
    "gan_ae": {"epochs": 20},
    "combined": {"members": (("cwola", {"n_ensemble": 5}), ("topics", {}))},
    "combined:rank_mean": {"members": (("cwola", {"n_ensemble": 5}), ("topics", {})), "combine": "rank_mean"},
    "combined:template": {"members": (("cathode", {"flow_params": STUDY_FLOW}),
                                      ("lacathode", {"flow_params": STUDY_FLOW | {"epochs": 20}}),
                                      ("cwola", {"n_ensemble": 5}), ("topics", {})), "combine": "template"},
    "combined:template_linear": {"members": (("cathode", {"flow_params": STUDY_FLOW}),
                                             ("lacathode", {"flow_params": STUDY_FLOW | {"epochs": 20}}),
                                             ("cwola", {"n_ensemble": 5}), ("topics", {})), "combine": "template",
                                 "stacker": "linear"},
    "combined:template_tail": {"members": (("cathode", {"flow_params": STUDY_FLOW}),
                                           ("lacathode", {"flow_params": STUDY_FLOW | {"epochs": 20}}),
                                           ("cwola", {"n_ensemble": 5}), ("topics", {})), "combine": "template",
                               "stacker": "tail"},
    "lund_lda:all": {"train_region": "all"},
    "graph_ae": {"n_particles": 20, "epochs": 15},
    "emd_ae": {"n_particles": 20, "epochs": 15},
    "vrnn": {"n_particles": 20, "epochs": 15},
}
#: fit() arguments per strategy beyond the data (filled from --n-sim / --signal).
NEEDS = {"salad": ("simulation",), "supervised": ("simulation", "signal_library")}


def fit_arguments(name: str, sim, library) -> dict[str, Any]:
    args = {"simulation": sim, "signal_library": [library]}
    return {k: args[k] for k in NEEDS.get(name, ())}


def unused_signal(library, boxes: list) -> Any:
    """The signal events in no box (matched by their exact mjj), so a supervised library never holds box events."""
    used = np.concatenate([b.event["mjj"] for b in boxes])
    return library[~np.isin(library.event["mjj"], used)]


def done_rows(paths: list[Path]) -> dict[tuple, dict]:
    """(strategy, box label, box seed) -> row, from results files (rows before --sr-signals: 'signal' = 193)."""
    out = {}
    for path in paths:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    label = f"signal{r.get('sr_signal', 193)}" if r["box"] == "signal" else r["box"]
                    out[(r["strategy"], label, r["box_seed"])] = r
    return out


def search_for(strategy: str, seed: int):
    """The search of a strategy key: a registry name, or 'name:variant' for a second setting in STRATEGIES."""
    return make_search(strategy.split(":")[0], seed=seed, **STRATEGIES.get(strategy, {}))


def run_cell(strategy: str, box, truth, sim, library, seed: int) -> dict[str, Any]:
    search = search_for(strategy, seed)
    t = time.perf_counter()
    scores = search.fit(box, **fit_arguments(search.name, sim, library)).scores_
    fit_s = time.perf_counter() - t
    row = metrics(box.event["mjj"], truth, scores, seed)
    return row | {"fit_s": fit_s, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def significance_in_sr(box, truth) -> float:
    mjj = box.event["mjj"]
    sr = (mjj >= 3300.0) & (mjj < 3700.0)
    return float((sr & truth).sum() / np.sqrt((sr & ~truth).sum()))


def write_table(done: dict[tuple, dict], path: Path) -> None:
    """One row per (strategy, box seed): per injection AUC, SIC, Z 10% / 1%; the empty box's Z and SR pass."""
    def cell(r: dict | None, key: str, fmt: str = ".2f") -> str:
        v = None if r is None else r.get(key)
        return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:{fmt}}"

    labels = sorted({k[1] for k in done if k[1] != "empty"}, key=lambda b: int(b.removeprefix("signal")))
    z = {b: next((r["s_sqrt_b"] for k, r in done.items() if k[1] == b and "s_sqrt_b" in r), None) for b in labels}
    head = [f"S/sqrt(B) {z[b]:.1f}: AUC / SIC / Z 10% / Z 1%" if z[b] else f"{b}: AUC / SIC / Z 10% / Z 1%"
            for b in labels]
    md = ["| strategy | box seed | " + " | ".join(head) + " | empty box: Z 10% / Z 1% | SR pass at 10% SB cut (empty) "
          "| fit s |", "|---|---|" + "---|" * len(labels) + "---|---|---|"]
    for name in dict.fromkeys(k[0] for k in done):
        for s in sorted({k[2] for k in done if k[0] == name}):
            sig = [done.get((name, b, s)) for b in labels]
            emp = done.get((name, "empty", s))
            cells = [f"{cell(r, 'auc_sr', '.3f')} / {cell(r, 'max_sic', '.1f')} / {cell(r, 'z_eps0.1', '.1f')} / "
                     f"{cell(r, 'z_eps0.01', '.1f')}" for r in sig]
            fit = next((r["fit_s"] for r in [*sig, emp] if r is not None and r.get("fit_s") is not None), None)
            md.append(f"| {name} | {s} | " + " | ".join(cells) + f" | {cell(emp, 'z_eps0.1', '.1f')} / "
                      f"{cell(emp, 'z_eps0.01', '.1f')} | {cell(emp, 'sr_pass_at_sb10', '.3f')} | "
                      f"{'-' if fit is None else f'{fit:.0f}'} |")
    path.write_text("\n".join(md) + "\n")


def sensitivity_curves(done: dict[tuple, dict], key: str = "z_eps0.01") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per strategy: (S/sqrt(B) of each box, mean over box seeds of the local Z after the cut); empty box = 0."""
    level = {label: round(r["s_sqrt_b"], 2) for (_, label, _), r in done.items() if "s_sqrt_b" in r}
    curves = {}
    for name in dict.fromkeys(k[0] for k in done):
        points: dict[float, list[float]] = {}
        for (n, label, _), r in done.items():
            if n == name and r.get(key) is not None and label in level:  # rows before s_sqrt_b: by their box
                points.setdefault(level[label], []).append(r[key])
        x = np.array(sorted(points))
        if len(x):
            curves[name] = (x, np.array([np.mean(points[v]) for v in x]))
    return curves


def summary_table(done: dict[tuple, dict]) -> list[str]:
    """Mean over box seeds per strategy: per injection the SR AUC, max SIC and local Z after the 1% cut; the
    empty box's largest |Z| (10% and 1% cuts) and SR pass fraction at the 10% sideband cut."""
    def mean(rows: list[dict | None], key: str) -> float | None:
        v = [r[key] for r in rows if r is not None and r.get(key) is not None and not np.isnan(r[key])]
        return float(np.mean(v)) if v else None

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else f"{v:{fmt}}"

    labels = sorted({k[1] for k in done if k[1] != "empty"}, key=lambda b: int(b.removeprefix("signal")))
    md = ["| strategy | seeds | " + " | ".join(f"{b.removeprefix('signal')} in SR: AUC / SIC / Z 1%" for b in labels)
          + " | empty: max abs Z | empty: SR pass |", "|---|---|" + "---|" * len(labels) + "---|---|"]
    for name in dict.fromkeys(k[0] for k in done):
        seeds = sorted({k[2] for k in done if k[0] == name})
        cells = []
        for b in labels:
            rs = [done.get((name, b, s)) for s in seeds]
            cells.append(f"{f(mean(rs, 'auc_sr'), '.3f')} / {f(mean(rs, 'max_sic'), '.1f')} / "
                         f"{f(mean(rs, 'z_eps0.01'), '.1f')}")
        empty = [done.get((name, "empty", s)) for s in seeds]
        z = [abs(r[k]) for r in empty if r is not None for k in ("z_eps0.1", "z_eps0.01") if r.get(k) is not None]
        md.append(f"| {name} | {len(seeds)} | " + " | ".join(cells) + f" | {f(max(z) if z else None, '.1f')} | "
                  f"{f(mean(empty, 'sr_pass_at_sb10'), '.3f')} |")
    return md


def add_box_arguments(ap: argparse.ArgumentParser, sr_signals: list[int]) -> None:
    """The box options both LHCO study scripts take: production, signal, sizes, injections, box and search seeds."""
    ap.add_argument("--production", type=Path, default=Path("/work/cache/lhco_null/qcd_seed11"))
    ap.add_argument("--signal", type=Path, default=Path("/work/cache/cathode/sig.h5"))
    ap.add_argument("--n-bkg", type=int, default=20_000)
    ap.add_argument("--sr-signals", type=lambda s: [int(v) for v in s.split(",")], default=sr_signals,
                    help="signal events in the SR, one signal box each (193 of 20k: S/sqrt(B) 3.7)")
    ap.add_argument("--box-seeds", type=lambda s: [int(v) for v in s.split(",")], default=[21, 22])
    ap.add_argument("--seed", type=int, default=1, help="search seed")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_box_arguments(ap, sr_signals=[193])
    ap.add_argument("--n-sim", type=int, default=4_000, help="simulation events after the box's (SALAD etc.)")
    ap.add_argument("--sim-production", type=Path, default=None,
                    help="take the simulation from this production's first --n-sim events instead (default: "
                         "--production, after the box's events)")
    ap.add_argument("--strategies", type=lambda s: s.split(","), default=None,
                    help="registry names or 'name:variant' keys of STRATEGIES; default: every registered search")
    ap.add_argument("--out", type=Path, default=Path("bench-out/lhco_strategies"))
    ap.add_argument("--merge", type=lambda s: [Path(v) for v in s.split(",")], default=None,
                    help="train nothing: the table of the results.jsonl in these folders, written to --out")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        merged = done_rows([d / "results.jsonl" for d in args.merge])
        write_table(merged, args.out / "results.md")
        (args.out / "summary.md").write_text("\n".join(summary_table(merged)) + "\n")
        curves = sensitivity_curves(merged)
        if curves:
            plot_sensitivity(curves, args.out / "sensitivity.png",
                             caption="LHCO strategies, QCD + W'(3.5 TeV) boxes: mean over box seeds, 1% cut")
        else:
            print("no local Z after the 1% cut in these rows (every such cut skipped): no sensitivity plot")
        print((args.out / "summary.md").read_text())
        return
    names = args.strategies or sorted(SEARCHES)
    unknown = sorted({n for n in names if n.split(":")[0] not in SEARCHES or (":" in n and n not in STRATEGIES)})
    if unknown:
        ap.error(f"--strategies: unknown {unknown}; registered: {sorted(SEARCHES)}, variants: "
                 f"{sorted(k for k in STRATEGIES if ':' in k)}")
    results = args.out / "results.jsonl"
    done = done_rows([results])
    sim = (read_sample(args.production, args.n_bkg, args.n_bkg + args.n_sim, constituents=False)
           if args.sim_production is None else read_sample(args.sim_production, 0, args.n_sim, constituents=False))
    particles = any(SEARCHES[n.split(":")[0]].reads_constituents for n in names)  # constituents only when needed
    kinds = [("empty", 0)] + [(f"signal{k}", k) for k in args.sr_signals]
    boxes = {(s, label): build_box(args.production, args.signal if k else None, args.n_bkg, k, s,
                                   constituents=particles) for s in args.box_seeds for label, k in kinds}
    signal = read_sample(args.signal, constituents=False)
    for (box_seed, label), (box, truth) in boxes.items():
        k = dict(kinds)[label]
        library = unused_signal(signal, [box])
        print(f"box {label} seed {box_seed}: simulation {len(sim)} events, signal library {len(library)} events "
              "(the signal events not in this box)", flush=True)
        for name in names:
            if (name, label, box_seed) in done:
                continue
            print(f"{name} / {label} box / seed {box_seed}: {len(box)} events", flush=True)
            row = {"strategy": name, "box": "signal" if k else "empty", "sr_signal": k, "box_seed": box_seed,
                   "s_sqrt_b": significance_in_sr(box, truth), "params": STRATEGIES.get(name, {}),
                   **run_cell(name, box, truth, sim, library, args.seed)}
            with results.open("a") as f:
                f.write(json.dumps(row, default=str) + "\n")
            done[(name, label, box_seed)] = row
            print(json.dumps(row, default=str), flush=True)
            write_table(done, args.out / "results.md")
    write_table(done, args.out / "results.md")
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
