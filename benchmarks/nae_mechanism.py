"""Does the NAE's negative phase act? AE vs NAE (and the WNAE with the reference's options) on the CMS-like task.

    nice -n 5 .venv/bin/python benchmarks/nae_mechanism.py --seeds 1 2 3
    nice -n 5 .venv/bin/python benchmarks/nae_mechanism.py --detectors WNAE "WNAE (reference options)" --seeds 1 2 3

Samples: inclusive ttbar jets (pT > 300 GeV, |eta| < 2.4, no truth matching) and the 4 x 4 semivisible-jet grid
of `benchmarks/wnae_svj_grid.py`, read from its workdir (`--samples`, default bench-out/wnae_svj_small: 4500
ttbar jets, the first `--n-train` train (20% of them validate), the rest test; 300 jets per SVJ point).
Inputs: the 8 CMS features, quantile-scaled. Reported per detector and seed: the AUC at m_Phi = 2 TeV,
r_inv = 0.3, the mean AUC over the 16 points, the selected epoch, and per epoch the positive, negative and
chain-start energies (written to results.json and plotted to docs/benchmarks/img/nae_energies.png).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from jetad.data import read_sample
from jetad.detectors import CMS_WNAE_FEATURES, make_detector
from jetad.evaluate.metrics import auc

INPUTS = {"kind": "features", "features": list(CMS_WNAE_FEATURES), "scaling": "quantile"}
M_PHI, R_INV = (1000, 2000, 3000, 4000), (0.1, 0.3, 0.5, 0.7)
#: The chain the NAE used before issue #11 (input-space PCD from N(0, 1), noise 0.2, step_size / T = 0.4).
OLD_CHAIN = {"sampling": "x", "step_size": 0.02, "noise": 0.2, "temperature": 0.05}
#: The WNAE reference's example choices (activation, box, schedule).
REFERENCE_OPTIONS = {"activation": "relu", "sampling_box": (-3.0, 3.0), "lr_schedule": "plateau"}
DETECTORS = {
    "AE": ("ae", {}),
    "NAE": ("nae", {}),
    "NAE (old chain)": ("nae", OLD_CHAIN),
    "WNAE": ("wnae", {}),
    "WNAE (reference options)": ("wnae", REFERENCE_OPTIONS),
}


def signal_paths(folder: Path) -> dict[tuple[int, float], Path]:
    """The SVJ grid files of a `wnae_svj_grid.py` workdir, by (m_Phi, r_inv)."""
    found = {}
    for m in M_PHI:
        for r in R_INV:
            files = sorted(folder.glob(f"svj_m{m}_r{r}_*.h5"))
            if not files:
                raise SystemExit(f"{folder}: no svj_m{m}_r{r}_*.h5; run benchmarks/wnae_svj_grid.py --workdir {folder}")
            found[m, r] = files[0]
    return found


def run_one(name: str, seed: int, args, train, test, signals) -> dict:
    kind, extra = DETECTORS[name]
    det = make_detector(kind, inputs=INPUTS, epochs=args.epochs, batch_size=args.batch_size, patience=args.epochs,
                        seed=seed, **extra)
    t = time.perf_counter()
    det.fit(train)
    seconds = time.perf_counter() - t
    s_bkg = det.score(test)
    grid = np.array([[auc(det.score(signals[m, r]), s_bkg) for r in R_INV] for m in M_PHI])
    logs = det.history_["logs"]
    return {"auc_2tev_0.3": float(grid[1, 1]), "auc_grid_mean": float(grid.mean()), "grid": grid.tolist(),
            "best_epoch": det.history_["best_epoch"], "train_s": seconds, "test_scores": s_bkg.tolist(),
            "energies": {k: logs[k] for k in ("positive_energy", "negative_energy", "start_energy") if k in logs}}


def plot_energies(results: dict, path: Path, caption: str) -> None:
    """Positive / negative / chain-start energies per epoch, one panel per NAE variant, all seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results if n.startswith("NAE")]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False, sharey=True)
    styles = {"positive_energy": ("C0", "-", "E(data)"), "negative_energy": ("C3", "--", "E(negatives)"),
              "start_energy": ("C2", ":", "E(chain starts)")}
    for ax, name in zip(axes[0], names, strict=True):
        for i, r in enumerate(results[name].values()):
            for key, (color, ls, label) in styles.items():
                if key in r["energies"]:
                    ax.plot(r["energies"][key], color=color, ls=ls, alpha=0.8,
                            label=label if i == 0 else None)
            ax.axvline(r["best_epoch"], color="grey", lw=0.5)
        ax.set(title=name, xlabel="epoch (10 AE pre-training epochs first)", yscale="log")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("energy = per-jet MSE (quantile-scaled features)")
    fig.suptitle(caption, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", default="bench-out/wnae_svj_small")
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--detectors", nargs="+", default=["AE", "NAE", "NAE (old chain)"], choices=list(DETECTORS))
    ap.add_argument("--out", default="bench-out/nae_mechanism")
    ap.add_argument("--plot", default="docs/benchmarks/img/nae_energies.png", help="'' for none")
    args = ap.parse_args()
    folder, out = Path(args.samples), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bkg = read_sample(sorted(folder.glob("ttbar_*.h5"))[0], constituents=False)
    train, test = bkg[: args.n_train], bkg[args.n_train:]
    signals = {k: read_sample(p, constituents=False) for k, p in signal_paths(folder).items()}
    command = "python benchmarks/nae_mechanism.py " + " ".join(sys.argv[1:])
    results: dict[str, dict[int, dict]] = {}
    for name in args.detectors:
        for seed in args.seeds:
            r = results.setdefault(name, {})[seed] = run_one(name, seed, args, train, test, signals)
            print(f"{name} seed {seed}: AUC(2 TeV, 0.3) {r['auc_2tev_0.3']:.3f}, grid mean {r['auc_grid_mean']:.3f}, "
                  f"best epoch {r['best_epoch']}, {r['train_s']:.0f} s", flush=True)
    for name, per_seed in results.items():
        if "AE" in results and name != "AE":  # rank correlation with the same seed's AE scores on the test jets
            rho = [float(spearmanr(r["test_scores"], results["AE"][seed]["test_scores"]).statistic)
                   for seed, r in per_seed.items()]
            print(f"{name}: Spearman(score, AE score) per seed {' / '.join(f'{v:.3f}' for v in rho)}")
        a = np.array([[r["auc_2tev_0.3"], r["auc_grid_mean"]] for r in per_seed.values()])
        spread = a.max(0) - a.min(0)
        print(f"| {name} | {a[:, 0].mean():.3f} +- {a[:, 0].std(ddof=1) if len(a) > 1 else 0:.3f} "
              f"| {spread[0]:.3f} | {a[:, 1].mean():.3f} +- {a[:, 1].std(ddof=1) if len(a) > 1 else 0:.3f} "
              f"| {spread[1]:.3f} | {' / '.join(f'{v:.3f}' for v in a[:, 0])} |")
    tag = f"{args.detectors[-1].split()[0].lower()}_b{args.batch_size}"
    (out / f"results_{tag}.json").write_text(json.dumps({"command": command, "results": results}, indent=1))
    if args.plot and any(n.startswith("NAE") for n in results):
        plot_energies(results, Path(args.plot), f"ttbar train {args.n_train}, batch {args.batch_size}: {command}")


if __name__ == "__main__":
    main()
