"""CMS WNAE task on generated equivalents: AE, NAE and WNAE trained on ttbar jets, tested on a grid of
semivisible-jet signals (m_Phi x r_inv). Prints and writes AUC grids and training curves.

    .venv/bin/python benchmarks/wnae_svj_grid.py                      # defaults: see --help
    .venv/bin/python benchmarks/wnae_svj_grid.py --n-train 16000 --n-signal 2000   # 4x more data
    .venv/bin/python benchmarks/wnae_svj_grid.py --detectors WNAE "WNAE (committed)" --seeds 1 2 3
                                                   # today's WNAE against the committed one (issue #13), 3 seeds

Inputs: the 8 jet features of CMS-PAS-MLG-24-002 (tau2, tau3, EFP1, C2^(0.5), axis major/minor, pT^D, soft-drop
mass), quantile-transformed to a standard normal on the training jets. Jets: anti-kT R=0.8, pT > 300 GeV,
|eta| < 2.4, delphes-like detector. Background: every such jet of hadronic ttbar events (no truth matching,
as an inclusive ttbar selection). Signal: jets matched to a dark quark in s-channel Z' -> dark-quark events.
The AUC training curve monitors one signal point and is never used for model selection (the WNAE selection
criterion is the background-only positive-negative Wasserstein distance).
"WNAE (committed)" is the WassersteinNAE as committed before issue #13's speed-ups (autograd chain, POT's
ot.emd2; benchmarks/ot_speed.py `wnae_variants`); with several --seeds every detector is trained once per seed
on the same samples (the samples use the first seed) and the AUC grids are summarized as mean and spread.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from jetad.data import read_sample
from jetad.detectors import CMS_WNAE_FEATURES, make_detector
from jetad.evaluate.metrics import auc
from jetad.evaluate.plots import plot_auc_grids, plot_training_curves
from jetad.generate.processes import default_config
from jetad.generate.production import produce

M_PHI = (1000, 2000, 3000, 4000)
R_INV = (0.1, 0.3, 0.5, 0.7)
JETS = {"pt_min": 300.0, "pt_max": float("inf"), "eta_max": 2.4}
INPUTS = {"kind": "features", "features": CMS_WNAE_FEATURES, "scaling": "quantile"}


def detectors(epochs: int, seed: int) -> dict[str, dict]:
    common = {"inputs": INPUTS, "epochs": epochs, "patience": epochs, "seed": seed, "batch_size": 256}
    return {
        "AE": {"name": "ae", **common},
        "NAE": {"name": "nae", **common},
        "WNAE": {"name": "wnae", **common},
        "WNAE (committed)": {"name": "wnae-committed", **common},
    }


def make(params: dict):
    params = dict(params)
    name = params.pop("name")
    if name == "wnae-committed":
        sys.path.insert(0, str(Path(__file__).parent))
        from ot_speed import wnae_variants

        return next(iter(wnae_variants().values()))(**params)
    return make_detector(name, **params)


def samples(args) -> tuple[Path, dict[tuple[int, float], Path]]:
    work = Path(args.workdir)
    bkg = produce(default_config("top", match=False, **JETS), args.n_train + args.n_test, args.seed,
                  work / f"ttbar_{args.n_train + args.n_test}_s{args.seed}.h5")
    sig = {}
    for i, m in enumerate(M_PHI):
        for j, r in enumerate(R_INV):
            cfg = default_config("svj", options={"m_med": m, "r_inv": r, "m_dark": 20.0}, **JETS)
            seed = args.seed + 100 + 10 * i + j
            sig[m, r] = produce(cfg, args.n_signal, seed, work / f"svj_m{m}_r{r}_{args.n_signal}_s{seed}.h5")
            print(f"  signal m_Phi={m} r_inv={r}: {sig[m, r].name}", flush=True)
    return bkg, sig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=4000, help="ttbar jets for training (20%% of them validate)")
    ap.add_argument("--n-test", type=int, default=2000, help="held-out ttbar jets for the AUCs")
    ap.add_argument("--n-signal", type=int, default=500, help="jets per signal point")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: --seed)")
    ap.add_argument("--detectors", nargs="+", default=["AE", "NAE", "WNAE"], choices=list(detectors(1, 1)))
    ap.add_argument("--workdir", default="bench-out/wnae_svj")
    args = ap.parse_args()
    seeds = args.seeds or [args.seed]
    t0 = time.perf_counter()
    out = Path(args.workdir)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/wnae_svj_grid.py " + " ".join(sys.argv[1:])
    print("generating (cached under the workdir)", flush=True)
    bkg_path, sig_paths = samples(args)
    bkg = read_sample(bkg_path, constituents=False)
    train, test = bkg[: args.n_train], bkg[args.n_train:]
    sig = {k: read_sample(p, constituents=False) for k, p in sig_paths.items()}
    monitor_point = (2000, 0.3)
    grids, curves, timing = {}, {}, {}
    for seed in seeds:
        for name in args.detectors:
            label = name if len(seeds) == 1 else f"{name} seed {seed}"
            det = make(detectors(args.epochs, seed)[name])
            t = time.perf_counter()

            def monitor(d, s=sig[monitor_point]):
                return {"auc_monitor": auc(d.score(s), d.score(test))}

            det.fit(train, monitor=monitor, progress=lambda e, n, logs, lab=label: print(
                f"  {lab} epoch {e}/{n} " + " ".join(f"{k}={v:.4g}" for k, v in logs.items() if k != "epoch"),
                flush=True))
            timing[label] = time.perf_counter() - t
            s_bkg = det.score(test)
            grids[label] = np.array([[auc(det.score(sig[m, r]), s_bkg) for r in R_INV] for m in M_PHI])
            curves[label] = det.history_
            print(f"{label}: trained in {timing[label]:.0f} s ({det.history_['stopped']}, best epoch "
                  f"{det.history_['best_epoch']})\n{np.round(grids[label], 3)}", flush=True)
    summary = {}
    if len(seeds) > 1:  # mean and spread over seeds of each detector's grid, and of the grid mean
        for name in args.detectors:
            stack = np.stack([grids[f"{name} seed {seed}"] for seed in seeds])
            summary[name] = {"mean": stack.mean(0).tolist(), "std": stack.std(0, ddof=1).tolist(),
                             "grid_mean_per_seed": stack.mean((1, 2)).tolist(),
                             "train_s_per_seed": [timing[f"{name} seed {seed}"] for seed in seeds]}
            print(f"{name}: grid-mean AUC per seed {np.round(stack.mean((1, 2)), 4)}; mean over seeds\n"
                  f"{np.round(stack.mean(0), 3)}\nstd over seeds\n{np.round(stack.std(0, ddof=1), 3)}", flush=True)

    caption = (f"ttbar train {args.n_train} / test {args.n_test}, {args.n_signal} jets per SVJ point, "
               f"seeds {seeds}: {command}")
    plot_auc_grids({k: v for k, v in grids.items()}, [m / 1000 for m in M_PHI], list(R_INV),
                   out / "auc_grids.png", r"$m_\Phi$ [TeV]", r"$r_{inv}$", caption=caption)
    for label, hist in curves.items():
        logs = {k: v for k, v in hist["logs"].items() if k in ("loss", "criterion", "wasserstein", "auc_monitor")}
        plot_training_curves(logs, out / f"training_{label.replace(' ', '_')}.png", caption=f"{label}: {caption}")
    md = [f"Command: `{command}`", "", f"Wall time {time.perf_counter() - t0:.0f} s; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", ""]
    for label, g in grids.items():
        md += [f"### {label} (trained {timing[label]:.0f} s, {curves[label]['stopped']}, best epoch "
               f"{curves[label]['best_epoch']})", "", "| m_Phi \\ r_inv | " + " | ".join(map(str, R_INV)) + " |",
               "|---" * (len(R_INV) + 1) + "|"]
        md += [f"| {m / 1000:g} TeV | " + " | ".join(f"{v:.3f}" for v in row) + " |" for m, row in zip(M_PHI, g,
                                                                                                     strict=True)]
        md.append("")
    (out / "results.md").write_text("\n".join(md))
    (out / "results.json").write_text(json.dumps({
        "command": command, "args": vars(args), "m_phi": M_PHI, "r_inv": R_INV,
        "auc": {k: v.tolist() for k, v in grids.items()}, "train_s": timing, "seed_summary": summary,
        "history": curves, "wall_s": time.perf_counter() - t0,
    }, indent=1, default=str))
    print("\n".join(md))


if __name__ == "__main__":
    main()
