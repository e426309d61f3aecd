"""Contrastive representations (JetCLR, AnomCLR/DarkCLR) as anomaly detectors, against autoencoder baselines.

Tasks (representations trained on QCD only, never on signal):
  top: top vs QCD, anti-kT R=0.8, 550 < pT < 650 GeV, |eta| < 2 (the JetCLR setting, 2108.04253);
  svj: semivisible jets (m_med 2 TeV, r_inv 0.3, m_dark 20 GeV) vs QCD, both pT > 300 GeV, |eta| < 2.4
       (the DarkCLR setting, 2312.03067).
Reports per task: AUC of every score kind (norm, mahalanobis, nae) of 'clr' and 'anomclr', of an AE on jet
features and of an AE on 40x40 jet images; the linear-probe AUC and inverse mistag at 50% signal efficiency
(uses labels: a representation-quality check only); the invariance report; training seconds per epoch.

    nice -n 5 .venv/bin/python benchmarks/clr_anomalies.py              # defaults: see --help

`--study jetclr` (issue 11): JetCLR's attention bias and one-view augmentation against the earlier scheme
(no bias, both views fully augmented), each representation trained (a) on a 1:1 top/QCD mixture (JetCLR's
setting, its linear probe gave 0.98) and (b) on QCD only (the anomaly-detection setting); per run the linear
probe (pooled and first-head-layer representations), the anomaly-score AUCs, the collinear-split invariance
and Spearman correlations of the score with multiplicity, jet pT and jet mass. One seed per call (run seeds in
parallel), then `--aggregate` writes mean +- std tables:

    nice -n 5 .venv/bin/python benchmarks/clr_anomalies.py --study jetclr --seed 1 --workdir /work/cache/clr
    nice -n 5 .venv/bin/python benchmarks/clr_anomalies.py --study jetclr --aggregate --workdir /work/cache/clr

`--study leaderboard`: the small `top-vs-qcd` leaderboard cell of 'clr' (jetad.tasks.benchmark) for both
schemes, several seeds and training sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jetad.data import JetSample, read_sample
from jetad.data.sample import concatenate
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


#: The two schemes compared: JetCLR's (the defaults now) and the one measured before issue 11.
SCHEMES: dict[str, dict] = {"jetclr": {"pt_attention_bias": 0.5, "augment_views": "one"},
                            "before": {"pt_attention_bias": 0.0, "augment_views": "both"},
                            # reference: the JetCLR encoder at its random initialisation (one epoch at lr 1e-12)
                            "random-init": {"pt_attention_bias": 0.5, "epochs": 1, "patience": 1, "lr": 1e-12}}
QCD_FILES = ("/work/main/bench-out/ot/qcd-n2000-seed1.h5", "/work/cache/clr/qcd-n3000-seed4.h5")
TOP_FILES = ("/work/main/bench-out/ot/top-n1000-seed2.h5", "/work/cache/clr/top-n2000-seed3.h5")


def pooled_sample(paths: tuple[str, ...], label: int) -> JetSample:
    """The jets of several files (550 < pT < 650 GeV, default_config) as one constituent-only sample."""
    parts = [read_sample(p) for p in paths]
    return concatenate([JetSample.from_constituents(s.constituents, s.mask, jets=s.jets, label=label)
                        for s in parts])


def jetclr_splits(args: argparse.Namespace) -> dict[str, JetSample]:
    """Disjoint splits: 'qcd' (n_train QCD), 'mixture' (n_train / 2 QCD + n_train / 2 top, shuffled), and probe
    / test sets of each class. The top jets of the mixture are never in the probe or test sets."""
    qcd, top = pooled_sample(QCD_FILES, 0), pooled_sample(TOP_FILES, 1)
    n, half, n_p, n_t = args.n_train, args.n_train // 2, args.n_probe, args.n_test
    if len(qcd) < n + n_p + n_t or len(top) < half + n_p + n_t:
        raise SystemExit(f"jetclr study: {len(qcd)} QCD / {len(top)} top jets are too few for these sizes")
    mixture = concatenate([qcd[:half], top[:half]])
    return {"qcd": qcd[:n], "mixture": mixture[np.random.default_rng(0).permutation(len(mixture))],
            "probe_qcd": qcd[n:n + n_p], "probe_top": top[half:half + n_p],
            "test_qcd": qcd[n + n_p:n + n_p + n_t], "test_top": top[half + n_p:half + n_p + n_t]}


def observables(sample: JetSample) -> dict[str, np.ndarray]:
    """What an anomaly score may track instead of substructure: multiplicity, jet pT, jet mass."""
    return {"multiplicity": sample.mask.sum(1).astype(float), "pt": sample.jets[:, 0], "mass": sample.jets[:, 3]}


def score_correlations(scores: np.ndarray, sample: JetSample) -> dict[str, float]:
    from scipy.stats import spearmanr

    return {k: float(spearmanr(scores, v).statistic) for k, v in observables(sample).items()}


def jetclr_run(scheme: str, train_on: str, data: dict[str, JetSample], args: argparse.Namespace) -> dict:
    """One representation: fit, probe both layers, anomaly AUCs, invariance, correlations."""
    det = make_detector("clr", **({"epochs": args.epochs, "patience": args.epochs, "seed": args.seed}
                                  | SCHEMES[scheme]))
    t = time.perf_counter()
    det.fit(data[train_on])
    out: dict = {"s_per_epoch": (time.perf_counter() - t) / len(det.history_["logs"]["loss"]),
                 "best_epoch": det.history_["best_epoch"], "probe": {}}
    for layer in ("pooled", "head1"):
        reps = [det.representation(data[k], layer=layer) for k in ("probe_top", "probe_qcd", "test_top", "test_qcd")]
        out["probe"][layer] = linear_probe_auc(*reps)
    s_t, s_q = det.scores(data["test_top"]), det.scores(data["test_qcd"])
    out["auc"] = {k: auc(s_t[k], s_q[k]) for k in s_q}
    out["corr_qcd"] = score_correlations(s_q[det.score_kind], data["test_qcd"])
    out["corr_top"] = score_correlations(s_t[det.score_kind], data["test_top"])
    inv = det.invariance_report(data["test_qcd"][:500], np.random.default_rng(args.seed))
    out["invariance"] = {k: inv[k] for k in ("collinear_split", "all_physical", "random_swap")}
    print(f"  {scheme}/{train_on}/seed {args.seed}: {json.dumps(out, default=float)}", flush=True)
    return out


def jetclr_study(args: argparse.Namespace) -> None:
    data = jetclr_splits(args)
    out = {"args": vars(args), "observable_auc": {k: auc(v, observables(data["test_qcd"])[k])
                                                  for k, v in observables(data["test_top"]).items()},
           "runs": {f"{scheme}/{train_on}": jetclr_run(scheme, train_on, data, args)
                    for scheme in args.schemes.split(",") for train_on in ("mixture", "qcd")}}
    tag = "" if args.schemes == "jetclr,before" else "_" + args.schemes.replace(",", "_")
    (Path(args.workdir) / f"jetclr_seed{args.seed}{tag}.json").write_text(json.dumps(out, indent=1, default=float))


def auc_error(n_sig: int, n_bkg: int, a: float) -> float:
    """Hanley-McNeil standard error of an AUC from the test sizes (exponential approximation)."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return float(np.sqrt((a * (1 - a) + (n_sig - 1) * (q1 - a * a) + (n_bkg - 1) * (q2 - a * a)) / (n_sig * n_bkg)))


def _cell(res: list[dict], *path: str) -> str:
    """mean +- std over seeds of the value at `path` in each result file."""
    values = []
    for r in res:
        for key in path:
            r = r[key]
        values.append(float(r))
    v = np.array(values)
    return f"{v.mean():.3f} +- {v.std():.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def jetclr_markdown(workdir: Path) -> str:
    res = [json.loads(f.read_text()) for f in sorted(workdir.glob("jetclr_seed*.json")) if f.stem.count("_") == 1]
    for r in res:  # runs of other schemes written by later calls with --schemes (jetclr_seedS_<scheme>.json)
        for extra in sorted(workdir.glob(f"jetclr_seed{r['args']['seed']}_*.json")):
            r["runs"] |= json.loads(extra.read_text())["runs"]
    a = res[0]["args"]
    n_t = a["n_test"]
    md = [f"Seeds {[r['args']['seed'] for r in res]} (mean +- std over seeds); {a['n_train']} training jets, "
          f"{a['epochs']} epochs; probe trained on {a['n_probe']} + {a['n_probe']}, probe and scores tested on "
          f"{n_t} top + {n_t} QCD jets (statistical error of one AUC: {auc_error(n_t, n_t, 0.5):.3f} at 0.5, "
          f"{auc_error(n_t, n_t, 0.9):.3f} at 0.9).", "",
          "| scheme / trained on | probe AUC (pooled) | 1/eps_b (pooled) | probe AUC (head1) | mahalanobis AUC | "
          "norm AUC | 1-cos split | 1-cos swap | best epoch | s/epoch |", "|---" * 10 + "|"]
    columns = (("probe", "pooled", "auc"), ("probe", "pooled", "inverse_mistag_50"), ("probe", "head1", "auc"),
               ("auc", "mahalanobis"), ("auc", "norm"), ("invariance", "collinear_split"),
               ("invariance", "random_swap"), ("best_epoch",), ("s_per_epoch",))
    for run in res[0]["runs"]:
        md.append(f"| {run} | " + " | ".join(_cell(res, "runs", run, *c) for c in columns) + " |")
    obs = ("multiplicity", "pt", "mass")
    md += ["", "Spearman correlation of the Mahalanobis score with jet observables (test jets), and each "
           "observable's own AUC (top vs QCD, higher value = more top-like):", "",
           "| scheme / trained on | class | multiplicity | pT | mass |", "|---" * 5 + "|"]
    for run in res[0]["runs"]:
        for cls in ("qcd", "top"):
            md.append(f"| {run} | {cls} | " + " | ".join(_cell(res, "runs", run, f"corr_{cls}", k) for k in obs) + " |")
    md.append("| observable alone | AUC | " + " | ".join(_cell(res, "observable_auc", k) for k in obs) + " |")
    return "\n".join(md)


def leaderboard_study(args: argparse.Namespace) -> None:
    """The small top-vs-qcd leaderboard cell of 'clr', both schemes, seeds 0.., sizes `--lb-sizes`."""
    from jetad.tasks.benchmark import run_benchmark

    work = Path(args.workdir) / "leaderboard"
    for scheme, params in SCHEMES.items():
        rows = run_benchmark(["top-vs-qcd"], ["clr"], size="small", workdir=work / scheme, params={"clr": params},
                             seeds=list(range(args.lb_seeds)),
                             n_train=[int(n) for n in args.lb_sizes.split(",")], cache=work / "samples")
        for r in rows:
            print(f"  leaderboard {scheme}: n_train {r.get('n_train')} seed {r['seed']} {r['status']} "
                  f"AUC {r.get('auc')} (n_test {r.get('n_test')})", flush=True)


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
    ap.add_argument("--study", default="anomalies", choices=("anomalies", "jetclr", "leaderboard"))
    ap.add_argument("--schemes", default="jetclr,before", help="jetclr study: schemes to run")
    ap.add_argument("--aggregate", action="store_true", help="jetclr study: tables from the per-seed files")
    ap.add_argument("--lb-seeds", type=int, default=3, help="leaderboard study: seeds 0..K-1")
    ap.add_argument("--lb-sizes", default="300", help="leaderboard study: comma-separated training sizes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if args.study == "jetclr":
        if args.aggregate:
            print(jetclr_markdown(Path(args.workdir)))
        else:
            jetclr_study(args)
        return
    if args.study == "leaderboard":
        leaderboard_study(args)
        return
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
