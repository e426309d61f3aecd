"""The particle-level LHCO searches (graph AE, EMD AE, VRNN, Lund LDA) on the constituent toy: SR AUC, train time.

The toy is `toy_particle_dijets` of tests/test_particle_searches.py (one-prong background jets; signal jets with
two or three hard prongs from a 3.5 TeV resonance). Each search is fitted on an injected toy per seed (data
seed = search seed) and graded by the truth AUC of its out-of-fold scores in the SR [3.3, 3.7] TeV; a
background-only toy gives the pull of the SR fraction among the 10% highest scores (no fake bump: |pull| < ~3).
Numbers go to docs/benchmarks/lhco_particles.md.

    OMP_NUM_THREADS=1 python benchmarks/lhco_particles_toy.py --seeds 0 1 2 --out /tmp/lhco_particles.json
    python benchmarks/lhco_particles_toy.py --summarize /tmp/lhco_particles.json   # the markdown table
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from jetad.evaluate.metrics import auc
from jetad.searches.emd_ae import EMDAutoencoder
from jetad.searches.graph_ae import ParticleGraphAE
from jetad.searches.lund_lda import LundLDA
from jetad.searches.vrnn import ParticleVRNN
from test_particle_searches import toy_particle_dijets

#: The settings measured: defaults but for fewer particles / epochs so that a seed takes about a minute per search.
CONFIGS = {
    "graph_ae": (ParticleGraphAE, {"n_particles": 20, "epochs": 15}),
    "emd_ae": (EMDAutoencoder, {"n_particles": 20, "epochs": 15}),
    "vrnn": (ParticleVRNN, {"n_particles": 20, "epochs": 15}),
    "vrnn_all": (ParticleVRNN, {"n_particles": 20, "epochs": 15, "train_region": "all"}),
    "lund_lda": (LundLDA, {}),
}


def sr_pull(search, scores: np.ndarray) -> float:
    """Pull of the SR fraction among the top-10% scores against the SR fraction of all events."""
    top = scores > np.quantile(scores, 0.9)
    p = search.signal_region_.mean()
    return float((search.signal_region_[top].mean() - p) / np.sqrt(p * (1 - p) / top.sum()))


def measure(name: str, seed: int, n_bkg: int, n_sig: int, null: bool) -> dict:
    cls, params = CONFIGS[name]
    data = toy_particle_dijets(n_bkg, n_sig, seed=seed)
    start = time.perf_counter()
    search = cls(seed=seed, **params).fit(data)
    seconds = time.perf_counter() - start
    sr = search.signal_region_
    y, s = data.label[sr], search.scores_[sr]
    row = {"search": name, "seed": seed, "n_bkg": n_bkg, "n_sig": n_sig, "sr_signal": int(y.sum()),
           "sr_background": int((1 - y).sum()), "sr_auc": auc(s[y == 1], s[y == 0]), "fit_s": seconds,
           "n_parameters": search.n_parameters(), "params": params}
    if null:
        background = cls(seed=seed, **params).fit(toy_particle_dijets(n_bkg, 0, seed=1000 + seed))
        row["null_pull"] = sr_pull(background, background.scores_)
    return row


def summarize(path: Path) -> str:
    """Markdown table: per search, SR AUC and fit time as mean +- std over seeds, and the null pulls."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = ["| search | settings | seeds | SR AUC | fit time [s] | parameters | null pulls |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["search"] for r in rows):
        mine = [r for r in rows if r["search"] == name]
        aucs, times = np.array([r["sr_auc"] for r in mine]), np.array([r["fit_s"] for r in mine])
        pulls = ", ".join(f"{r['null_pull']:+.2f}" for r in mine if "null_pull" in r)
        settings = ", ".join(f"{k}={v}" for k, v in mine[0]["params"].items()) or "defaults"
        lines.append(f"| {name} | {settings} | {len(mine)} | {aucs.mean():.3f} +- {aucs.std():.3f} | "
                     f"{times.mean():.0f} +- {times.std():.0f} | {mine[0]['n_parameters']} | {pulls} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-bkg", type=int, default=6000)
    parser.add_argument("--n-sig", type=int, default=200)
    parser.add_argument("--no-null", action="store_true", help="skip the background-only fits")
    parser.add_argument("--out", type=Path, help="JSON lines, one row per search and seed (appended)")
    parser.add_argument("--summarize", type=Path, help="print the markdown table of a --out file and stop")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(args.summarize))
        return
    if args.out is None:
        parser.error("--out is required (or --summarize)")
    with threadpool_limits(limits=1), args.out.open("a") as out:
        for name in args.searches:
            for seed in args.seeds:
                row = measure(name, seed, args.n_bkg, args.n_sig, null=not args.no_null)
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(f"{name:9s} seed {seed}: SR AUC {row['sr_auc']:.3f}  fit {row['fit_s']:.1f} s  "
                      f"null pull {row.get('null_pull', float('nan')):+.2f}", flush=True)


if __name__ == "__main__":
    main()
