"""Factorized topics, UCluster and their combination with CWoLa on the toy dijets of the test suite (issue 14).

Two toys (the generators of tests/test_weak_supervision.py and tests/test_topics_combination.py), 10,000
background events each, seeds 1-3 (the search seed equals the toy seed):

* ``standard``: `toy_dijets(10_000, 150)`, a 3.5 TeV resonance to jets of 500 and 100 GeV with tau21 ~ 0.35
  (S/B ~ 6% in the SR): obvious in the masses alone.
* ``complementary``: `complementary_dijets(10_000, 400)`, jets of 300 and 120 GeV (15% wide), tau21 ~ 0.38
  (S/B ~ 16%): a search on the masses alone and one on the tau21s alone each see part of it.
* ``null``: `toy_dijets(10_000, 0)`: no signal; reported is the pull of the SR fraction among the 10% highest
  scores (ties ordered at random), which must stay within a few sigma.

Every stack is run with the default ensemble of 5 classifiers per fold and again with one (``stack_1:``).
Per method: truth AUC of signal vs background among the SR events, and the maximum SIC (eps_s / sqrt(eps_b),
eps_b >= 25 background events), both on the out-of-fold scores. Results are appended to OUT/results.jsonl
(resumable: a finished (toy, seed, method) is not rerun) and printed as a markdown table (mean +- std over seeds).

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/lhco_combination_toy.py \
        --out /work/cache/h4/lhco_combination
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from jetad.evaluate.metrics import auc, max_sic
from jetad.searches import make_search
from jetad.searches import topics as _topics  # noqa: F401  (registers 'topics')
from jetad.searches import ucluster as _ucluster  # noqa: F401  (registers 'ucluster')
from jetad.searches.combined import CombinedSearch
from test_topics_combination import complementary_dijets  # the toys live with the tests (path set above)
from test_weak_supervision import toy_dijets

MASS_ONLY, TAU_ONLY = {"features": ("mj1", "mj2")}, {"features": ("tau21_j1", "tau21_j2")}
#: name -> (registry name, parameters); every search also gets seed = the toy seed and the default 5 folds.
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "cwola": ("cwola", {}),
    "cwola_mass": ("cwola", MASS_ONLY),
    "cwola_tau21": ("cwola", TAU_ONLY),
    "topics_mass": ("topics", {"observables": "mass"}),
    "topics_mass_tau21": ("topics", {"observables": "mass_tau21"}),
    "ucluster_region": ("ucluster", {}),
    "ucluster_mass_bin": ("ucluster", {"proxy": "mass_bin"}),
    "stack:cwola_mass+cwola_tau21": ("combined", {"members": (("cwola", MASS_ONLY), ("cwola", TAU_ONLY))}),
    "rank_mean:cwola_mass+cwola_tau21": ("combined", {"members": (("cwola", MASS_ONLY), ("cwola", TAU_ONLY)),
                                                        "combine": "rank_mean"}),
    "min_p:cwola_mass+cwola_tau21": ("combined", {"members": (("cwola", MASS_ONLY), ("cwola", TAU_ONLY)),
                                                    "combine": "min_p"}),
    "stack:cwola+topics+ucluster": ("combined", {"members": (("cwola", {}), ("topics", {}), ("ucluster", {}))}),
    "stack:topics_mass+cwola_tau21": ("combined", {"members": (("topics", {"observables": "mass"}),
                                                                 ("cwola", TAU_ONLY))}),
}
#: The stacks again with one classifier per fold instead of the default ensemble of 5 ("stack_1:").
METHODS |= {name.replace("stack:", "stack_1:"): (kind, params | {"n_ensemble": 1})
            for name, (kind, params) in list(METHODS.items()) if name.startswith("stack:")}
TOYS: dict[str, Callable[[int], Any]] = {
    "standard": lambda seed: toy_dijets(10_000, 150, seed),
    "complementary": lambda seed: complementary_dijets(10_000, 400, seed),
    "null": lambda seed: toy_dijets(10_000, 0, seed),
}


def top_decile_pull(scores: np.ndarray, sr: np.ndarray, seed: int) -> float:
    """(SR fraction of the 10% highest scores - overall SR fraction) / binomial error; ties in random order."""
    order = np.lexsort((np.random.default_rng(seed).uniform(size=len(scores)), scores))
    top = order[-len(scores) // 10:]
    p = sr.mean()
    return float((sr[top].mean() - p) / np.sqrt(p * (1 - p) / len(top)))


def measure(toy: str, seed: int, method: str) -> dict[str, Any]:
    """Fit one method on one toy; its SR AUC and max SIC (or, on the null toy, the top-decile SR pull)."""
    data = TOYS[toy](seed)
    name, params = METHODS[method]
    start = time.perf_counter()
    search = make_search(name, seed=seed, **params).fit(data)
    row: dict[str, Any] = {"toy": toy, "seed": seed, "method": method, "fit_s": time.perf_counter() - start}
    sr = search.signal_region_
    if toy == "null":  # distinct: 1 = a constant score (the classifiers kept the class prior)
        return row | {"pull": top_decile_pull(search.scores_, sr, seed), "distinct": len(np.unique(search.scores_))}
    y, s = data.label[sr], search.scores_[sr]
    row |= {"auc": auc(s[y == 1], s[y == 0]), "max_sic": max_sic(s[y == 1], s[y == 0])}
    if isinstance(search, CombinedSearch):
        members = search.member_scores_[sr]
        row["member_auc"] = [auc(m[y == 1], m[y == 0]) for m in members.T]
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per toy and method, mean +- std over seeds."""
    lines = ["| toy | method | seeds | SR AUC | max SIC | top-10% SR pull | distinct scores | fit [s] |",
             "|---|---|---|---|---|---|---|---|"]
    for toy in TOYS:
        for method in METHODS:
            got = [r for r in rows if r["toy"] == toy and r["method"] == method]
            if not got:
                continue

            def cell(key: str, digits: int, got: list[dict[str, Any]] = got) -> str:
                values = [r[key] for r in got if key in r]
                return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}" if values else "-"

            distinct = "/".join(str(r["distinct"]) for r in got if "distinct" in r) or "-"
            lines.append(f"| {toy} | {method} | {len(got)} | {cell('auc', 3)} | {cell('max_sic', 2)} | "
                         f"{cell('pull', 2)} | {distinct} | {cell('fit_s', 1)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/work/cache/h4/lhco_combination"))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--toys", default=",".join(TOYS))
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated names of METHODS")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    done = {(r["toy"], r["seed"], r["method"]) for r in rows}
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
    for toy in args.toys.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for method in methods:
                if (toy, seed, method) in done:
                    continue
                row = measure(toy, seed, method)
                rows.append(row)
                with results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
