"""The template combination's stackers side by side on the strategy study's boxes, the members fitted once.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/lhco_template_stackers.py --box-seeds 21,22 \\
        --sr-signals 96,193 --out bench-out/lhco_strategies/template_fixed

Per box (`lhco_strategies.py`'s boxes; the empty box once, it does not depend on the box seed): the
`combined:template_linear` search of STRATEGIES is fitted (its members CATHODE, LaCATHODE, CWoLa, topics and
the template), then only its combination stage is refitted for every other stacker, and every member's own
out-of-fold scores are evaluated as well (each member is the standalone search at the same seed and folds).
Rows go to OUT/results.jsonl in `lhco_strategies.py`'s format (strategy `combined:template_<stacker>` and
`member:<name>`), so `lhco_strategies.py --merge` tabulates them.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from cathode_ensemble import build_box, metrics
from lhco_strategies import STRATEGIES, add_box_arguments, done_rows, search_for, significance_in_sr, write_table

STACKERS = ("linear", "tail", "trees")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_box_arguments(ap, sr_signals=[96, 193])
    ap.add_argument("--stackers", type=lambda s: s.split(","), default=list(STACKERS[:2]))
    ap.add_argument("--out", type=Path, default=Path("bench-out/lhco_strategies/template_fixed"))
    ap.add_argument("--no-empty", action="store_true",
                    help="skip the empty box (its rows do not depend on --signal: reuse another run's)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    done = done_rows([results])
    cells = [] if args.no_empty else [(args.box_seeds[0], "empty", 0)]
    cells += [(s, f"signal{k}", k) for s in args.box_seeds for k in args.sr_signals]
    for box_seed, label, k in cells:
        names = [f"combined:template_{st}" for st in args.stackers]
        if all((n, label, box_seed) in done for n in names):
            continue
        box, truth = build_box(args.production, args.signal if k else None, args.n_bkg, k, box_seed)
        base = {"box": "signal" if k else "empty", "sr_signal": k, "box_seed": box_seed,
                "s_sqrt_b": significance_in_sr(box, truth)}
        search = search_for("combined:template_linear", args.seed)
        t = time.perf_counter()
        search.fit(box)
        fit_s = time.perf_counter() - t
        rows = []
        for i, member in enumerate(search.members_):
            name = f"member:{search.members[i][0]}"
            rows.append({"strategy": name, **base, **metrics(box.event["mjj"], truth, member.scores_, args.seed)})
        for stacker in args.stackers:
            if stacker != "linear":
                search.stacker = stacker
                t = time.perf_counter()
                search.fit_combination(box)  # the combination stage only: members and template kept
                stage_s = time.perf_counter() - t
            else:
                stage_s = fit_s
            row = {"strategy": f"combined:template_{stacker}", **base,
                   "params": STRATEGIES["combined:template_linear"] | {"stacker": stacker},
                   **metrics(box.event["mjj"], truth, search.scores_, args.seed), "fit_s": stage_s,
                   "weights": None if stacker == "trees" else [np.round(m["weights"], 3).tolist()
                                                               for m in search.models_],
                   "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            rows.append(row)
        with results.open("a") as f:
            for row in rows:
                f.write(json.dumps(row, default=str) + "\n")
                done[(row["strategy"], label, box_seed)] = row
                print(json.dumps(row, default=str), flush=True)
        write_table(done, args.out / "results.md")


if __name__ == "__main__":
    main()
