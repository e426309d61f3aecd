"""Contrastive representations (JetCLR, AnomCLR/DarkCLR) as anomaly detectors, against autoencoder baselines.

Tasks (representations trained on QCD only, never on signal):
  top: top vs QCD, anti-kT R=0.8, 550 < pT < 650 GeV, |eta| < 2 (the JetCLR setting, 2108.04253);
  svj: semivisible jets (m_med 2 TeV, r_inv 0.3, m_dark 20 GeV) vs QCD, both pT > 300 GeV, |eta| < 2.4
       (the DarkCLR setting, 2312.03067).
Reports per task: AUC of every score kind (norm, mahalanobis, nae) of 'clr' and 'anomclr', of an AE on jet
features and of an AE on 40x40 jet images; the linear-probe AUC and inverse mistag at 50% signal efficiency
(uses labels: a representation-quality check only); the invariance report; training seconds per epoch.

    nice -n 5 .venv/bin/python benchmarks/clr_anomalies.py              # defaults: see --help
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jetad.data import read_sample
from jetad.detectors import make_detector
from jetad.evaluate.metrics import auc
from jetad.evaluate.probe import linear_probe_auc
from jetad.generate.processes import default_config
from jetad.generate.production import produce

SVJ_JETS = {"pt_min": 300.0, "pt_max": float("inf"), "eta_max": 2.4}


def samples(task: str, work: Path) -> tuple[Path, Path]:
    """(QCD, signal) files for a task, generated once and cached under `work` (produce() skips done files)."""
    if task == "top":
        return (produce(default_config("qcd"), 4000, 1, work / "qcd_pt550-650_n4000_s1.h5"),
                produce(default_config("top"), 1000, 2, work / "top_pt550-650_n1000_s2.h5"))
    svj = default_config("svj", options={"m_med": 2000.0, "r_inv": 0.3, "m_dark": 20.0}, **SVJ_JETS)
    return (produce(default_config("qcd", **SVJ_JETS), 2500, 11, work / "qcd_pt300_n2500_s11.h5"),
            produce(svj, 1000, 12, work / "svj_m2000_r0.3_pt300_n1000_s12.h5"))


def run_task(task: str, args: argparse.Namespace) -> dict:
    qcd_path, sig_path = samples(task, Path(args.workdir))
    qcd, sig = read_sample(qcd_path), read_sample(sig_path)
    if len(qcd) < args.n_train + args.n_test or len(sig) < args.n_test + args.n_probe:
        raise SystemExit(f"{task}: files too small for these sizes ({len(qcd)} QCD, {len(sig)} signal jets)")
    train, test_b = qcd[: args.n_train], qcd[args.n_train: args.n_train + args.n_test]
    test_s, probe_s, probe_b = sig[: args.n_test], sig[args.n_test: args.n_test + args.n_probe], train[: args.n_probe]
    out: dict = {"auc": {}, "probe": {}, "invariance": {}, "s_per_epoch": {}, "stopped": {}}
    for name in ("clr", "anomclr"):
        det = make_detector(name, epochs=args.epochs, patience=args.epochs, seed=args.seed)
        t = time.perf_counter()
        det.fit(train, progress=lambda e, n, logs, lab=name: print(
            f"  [{task}] {lab} epoch {e}/{n} " + " ".join(f"{k}={v:.4g}" for k, v in logs.items() if k != "epoch"),
            flush=True))
        n_epochs = len(det.history_["logs"]["loss"])
        out["s_per_epoch"][name] = (time.perf_counter() - t) / n_epochs
        out["stopped"][name] = f"{det.history_['stopped']}, best epoch {det.history_['best_epoch']}"
        det.fit_nae(det._split(train, None)[0])
        s_b, s_s = det.scores(test_b), det.scores(test_s)
        out["auc"] |= {f"{name}/{k}": auc(s_s[k], s_b[k]) for k in s_b}
        out["probe"][name] = linear_probe_auc(*(det.representation(s) for s in (probe_s, probe_b, test_s, test_b)))
        out["invariance"][name] = det.invariance_report(test_b, np.random.default_rng(args.seed))
        print(f"  [{task}] {name}: {json.dumps({k: round(v, 3) for k, v in out['auc'].items() if k.startswith(name)})}"
              f" probe {out['probe'][name]}", flush=True)
    for label, inputs, epochs in (("ae/features", None, 3 * args.epochs),
                                  ("ae/images", {"kind": "images", "image_size": 40}, args.epochs)):
        params = {"epochs": epochs, "patience": epochs, "seed": args.seed} | ({"inputs": inputs} if inputs else {})
        t = time.perf_counter()
        ae = make_detector("ae", **params).fit(train)
        out["s_per_epoch"][label] = (time.perf_counter() - t) / len(ae.history_["logs"]["loss"])
        out["auc"][label] = auc(ae.score(test_s), ae.score(test_b))
        print(f"  [{task}] {label}: AUC {out['auc'][label]:.3f}", flush=True)
    return out


def markdown(results: dict, args: argparse.Namespace, command: str, wall: float) -> str:
    md = [f"Command: `{command}`", "",
          f"Sizes: {args.n_train} QCD train (20% validation), {args.n_test} + {args.n_test} test, "
          f"probe trained on {args.n_probe} + {args.n_probe}; seed {args.seed}; {args.epochs} epochs; "
          f"wall time {wall:.0f} s", ""]
    for task, r in results.items():
        md += [f"### {task}", "", "| detector / score | AUC |", "|---|---|"]
        md += [f"| {k} | {v:.3f} |" for k, v in r["auc"].items()]
        md += ["", "| representation | probe AUC | 1/eps_b at eps_s=0.5 | s/epoch | training |", "|---" * 5 + "|"]
        md += [f"| {k} | {p['auc']:.3f} | {p['inverse_mistag_50']:.1f} | {r['s_per_epoch'][k]:.1f} | "
               f"{r['stopped'][k]} |" for k, p in r["probe"].items()]
        keys = list(next(iter(r["invariance"].values())))
        md += ["", "| 1 - cos | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        md += [f"| {k} | " + " | ".join(f"{v[c]:.4f}" for c in keys) + " |" for k, v in r["invariance"].items()]
        md.append("")
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="top,svj")
    ap.add_argument("--n-train", type=int, default=2000, help="QCD training jets (20%% validate)")
    ap.add_argument("--n-test", type=int, default=500, help="test jets per class")
    ap.add_argument("--n-probe", type=int, default=500, help="linear-probe training jets per class")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", default="bench-out/clr")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    command = "python benchmarks/clr_anomalies.py " + " ".join(sys.argv[1:])
    results = {task: run_task(task, args) for task in args.tasks.split(",")}
    wall = time.perf_counter() - t0
    out = Path(args.workdir)
    (out / "results.md").write_text(markdown(results, args, command, wall))
    (out / "results.json").write_text(json.dumps({"command": command, "args": vars(args), "wall_s": wall,
                                                  "results": results}, indent=1))
    print(markdown(results, args, command, wall))


if __name__ == "__main__":
    main()
