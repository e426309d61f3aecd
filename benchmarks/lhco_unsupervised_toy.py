"""The unsupervised LHC Olympics searches (2101.08320) on the toy dijets: SR truth AUC and mass sculpting.

For every search configuration (each with and without its mass decorrelation) and seed:

* ``auc``: fit on an injected toy (tests/test_weak_supervision.py `toy_dijets(n_bkg, n_sig, seed)`, narrow 3.5
  TeV signal) and report the truth AUC of signal vs background among the signal-region events (out-of-fold
  scores, the labels only grade);
* ``dcor``: fit on a background-only toy and report the distance correlation of the out-of-fold score with mjj
  (the mass-sculpting figure; about 1/sqrt(N) for an independent score, so a seeded uniform random score is
  printed as the floor) and the pull of the SR fraction among the top 10% of scores;
* ``dcor_massive``: the same on a background-only toy whose jet masses are multiplied by mjj / 3.5 TeV (jet
  mass ~ pT, a strong feature-mjj dependence the plain toy lacks).

Results go to OUT/results.jsonl (one line per configuration, seed and study; resumable); a markdown table of
mean +- standard deviation over the seeds is printed.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/lhco_unsupervised_toy.py --out /work/cache/h1/unsup
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from jetad.data.sample import JetSample
from jetad.evaluate.distance_correlation import distance_correlation
from jetad.evaluate.metrics import auc
from jetad.searches.gan_ae import GANAESearch
from jetad.searches.latent_vae import LatentVAESearch
from jetad.searches.pca import PCASearch
from jetad.searches.regularized_likelihood import RegularizedLikelihoodSearch
from test_weak_supervision import toy_dijets  # the toy lives with the tests (path set above)

#: Settings without the detrending (the default of latent_vae and regularized_likelihood is detrend_mjj=True).
RAW: dict[str, Any] = {"detrend_mjj": False}
LATENT: dict[str, Any] = {"score_kind": "latent"}
#: (label, search class, parameters): each strategy without, then with, its mass decorrelation.
CONFIGS: list[tuple[str, type, dict[str, Any]]] = [
    ("pca k=2", PCASearch, {"n_components": 2} | RAW),
    ("pca k=2 detrend_mjj", PCASearch, {"n_components": 2, "detrend_mjj": True}),
    ("pca k=3", PCASearch, {"n_components": 3} | RAW),
    ("gan_ae alpha=0", GANAESearch, {"alpha": 0.0} | RAW),
    ("gan_ae alpha=10", GANAESearch, {"alpha": 10.0} | RAW),
    ("gan_ae alpha=50", GANAESearch, {"alpha": 50.0} | RAW),
    ("gan_ae alpha=10 detrend_mjj", GANAESearch, {"alpha": 10.0, "detrend_mjj": True}),
    ("latent_vae plain, elbo", LatentVAESearch, {"condition_mjj": False, "disco_lambda": 0.0} | RAW),
    ("latent_vae plain, latent", LatentVAESearch, {"condition_mjj": False, "disco_lambda": 0.0} | RAW | LATENT),
    ("latent_vae cond, elbo", LatentVAESearch, {"condition_mjj": True, "disco_lambda": 0.0} | RAW),
    ("latent_vae cond+disco10, elbo", LatentVAESearch, {"condition_mjj": True, "disco_lambda": 10.0} | RAW),
    ("latent_vae plain detrend_mjj, elbo", LatentVAESearch, {"condition_mjj": False, "disco_lambda": 0.0,
                                                             "detrend_mjj": True}),
    ("latent_vae cond+disco10 detrend_mjj, elbo", LatentVAESearch, {"condition_mjj": True, "disco_lambda": 10.0,
                                                                    "detrend_mjj": True}),
    ("latent_vae cond+disco1, latent", LatentVAESearch, {"condition_mjj": True, "disco_lambda": 1.0} | RAW | LATENT),
    ("latent_vae cond+disco10, latent", LatentVAESearch, {"condition_mjj": True, "disco_lambda": 10.0} | RAW | LATENT),
    ("reg_likelihood p(x), GeV", RegularizedLikelihoodSearch, {"condition_mjj": False} | RAW),
    ("reg_likelihood p(x|mjj), GeV", RegularizedLikelihoodSearch, {"condition_mjj": True} | RAW),
    ("reg_likelihood p(x), detrended", RegularizedLikelihoodSearch, {"condition_mjj": False, "detrend_mjj": True}),
    ("reg_likelihood p(x|mjj), detrended", RegularizedLikelihoodSearch, {"condition_mjj": True, "detrend_mjj": True}),
    ("reg_likelihood L_AE/p(x|mjj), detrended", RegularizedLikelihoodSearch, {"score_kind": "ratio",
                                                                              "detrend_mjj": True}),
]


def massive(sample: JetSample) -> JetSample:
    """The toy with both jet masses multiplied by mjj / 3500 GeV (a strong feature-mjj correlation)."""
    scale = sample.event["mjj"] / 3500.0
    event = dict(sample.event, j1_m=sample.event["j1_m"] * scale, j2_m=sample.event["j2_m"] * scale)
    jets = sample.jets.copy()
    jets[:, 3] = event["j1_m"]
    return dataclasses.replace(sample, event=event, jets=jets)


def sr_pull(scores: np.ndarray, sr: np.ndarray, efficiency: float = 0.1) -> float:
    """Pull of the SR fraction among the top `efficiency` of scores from the overall SR fraction (binomial)."""
    top = scores > np.quantile(scores, 1 - efficiency)
    p, n = sr.mean(), top.sum()
    return float((sr[top].mean() - p) / np.sqrt(p * (1 - p) / n))


def run_one(label: str, cls: type, params: dict[str, Any], study: str, seed: int, args: argparse.Namespace
            ) -> dict[str, Any]:
    search = cls(seed=seed, n_folds=args.folds, **params)
    t0 = time.time()
    if study == "auc":
        data = toy_dijets(args.n_bkg, args.n_sig, seed=100 + seed)
        search.fit(data)
        sr = search.signal_region_
        y, s = data.label[sr], search.scores_[sr]
        value = {"auc": auc(s[y == 1], s[y == 0])}
    else:
        data = toy_dijets(args.n_bkg, 0, seed=200 + seed)
        data = massive(data) if study == "dcor_massive" else data
        search.fit(data)
        value = {"dcor": distance_correlation(search.scores_, data.event["mjj"]),
                 "pull": sr_pull(search.scores_, search.signal_region_)}
    return {"config": label, "study": study, "seed": seed, **value, "seconds": round(time.time() - t0, 1)}


def random_floor(args: argparse.Namespace) -> list[float]:
    """dCor of a seeded uniform random score with mjj on the background-only toys (the finite-N floor)."""
    return [distance_correlation(np.random.default_rng(seed).uniform(size=args.n_bkg),
                                 toy_dijets(args.n_bkg, 0, seed=200 + seed).event["mjj"]) for seed in args.seeds]


def table(rows: list[dict[str, Any]], floor: list[float]) -> str:
    def cell(config: str, study: str, key: str) -> str:
        vals = [r[key] for r in rows if r["config"] == config and r["study"] == study]
        return f"{np.mean(vals):.3f} +- {np.std(vals):.3f}" if vals else "-"

    lines = ["| search | SR AUC (injected) | dCor(score, mjj), bkg | SR pull top 10%, bkg | dCor, massive bkg "
             "| SR pull, massive bkg |", "|---|---|---|---|---|---|"]
    for label, _, _ in CONFIGS:
        name = label.replace("|", "\\|")  # p(x|mjj) inside a markdown cell
        lines.append(f"| {name} | {cell(label, 'auc', 'auc')} | {cell(label, 'dcor', 'dcor')} | "
                     f"{cell(label, 'dcor', 'pull')} | {cell(label, 'dcor_massive', 'dcor')} | "
                     f"{cell(label, 'dcor_massive', 'pull')} |")
    lines.append(f"| uniform random score | - | {np.mean(floor):.3f} +- {np.std(floor):.3f} | - | - | - |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-bkg", type=int, default=10_000)
    parser.add_argument("--n-sig", type=int, default=300)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", default=None, help="config labels to run (default all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = {(r["config"], r["study"], r["seed"]) for r in rows}
    for label, cls, params in CONFIGS:
        if args.only and label not in args.only:
            continue
        for seed in args.seeds:
            for study in ("auc", "dcor", "dcor_massive"):
                if (label, study, seed) in done:
                    continue
                row = run_one(label, cls, params, study, seed, args)
                rows.append(row)
                with path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print(f"\ntoy: {args.n_bkg} background (+ {args.n_sig} signal for the AUC), {args.folds} folds, "
          f"seeds {args.seeds}\n")
    print(table(rows, random_floor(args)))


if __name__ == "__main__":
    main()
