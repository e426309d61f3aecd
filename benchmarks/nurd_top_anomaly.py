"""NuRD on jet images: trained on QCD + W/Z jets (labels = background type, nuisance = jet mass), top jets as the
anomaly; a scan over penalties x lambdas x training seeds (optionally next to a plain convolutional AE).

    nice -n 5 .venv/bin/python benchmarks/nurd_top_anomaly.py --penalty critic dcor --seeds 1 2 3 \\
        --lams 0 0.001 0.1 1 10 --n-train 1500 --n-test 3000 --n-test-wz 1500 --no-ae --results scan

Jets: default_config('qcd' / 'wz' / 'top') (anti-kT R=0.8, pT 550-650 GeV); 50x50 images (jetad.physics.images,
normalised to unit sum). Every `{process}-n{N}-seed{S}.h5` in --workdir is reused (concatenated in seed order);
only the missing rows are generated, into a new seed. QCD rows: train, then test; W/Z rows: train, then the
held-out W/Z jets of the post-hoc probe. Per run: AUC top vs QCD with its Hanley-McNeil error, Pearson and
distance correlation of the score with the QCD jet mass, and the post-hoc probes of the frozen r_X of held-out
jets per class (`jetad.evaluate.nuisance.nuisance_dependence`: ridge R^2 of the mass, AUC of a converged critic
telling real from shuffled mass; 0 and 0.5 = independent). lambda = 0 is one run shared by both penalties
(the penalty then changes neither the training nor the selection). Each run is written to
--workdir/--results/runs/<key>.json and skipped when present (resumable); the table is mean ± std over seeds.
Model selection is background-only (NuRD: weighted validation cross-entropy + lambda x penalty; AE: MSE).
Reference (DESIGN.md, NuRD paragraph): AUC 0.94 (lambda 0.001), 0.83 (lambda 1), AE 0.88, score-mass corr. 0.012.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jetad.data import JetSample, concatenate, read_sample
from jetad.detectors import make_detector, nurd  # nurd: registers 'nurd'; PENALTIES
from jetad.evaluate.metrics import auc, distance_correlation
from jetad.evaluate.nuisance import nuisance_dependence
from jetad.generate.processes import default_config
from jetad.generate.production import produce
from jetad.tasks.leaderboard import auc_stat_error

IMAGES = {"kind": "images", "image_size": 50}
BASE_SEEDS = {"qcd": 1, "wz": 2, "top": 3}
GOAL = {"auc": 0.90, "pearson": 0.05, "r2": 0.1}  # issue #11: at some lambda, all three at once


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n-train", type=int, default=1500, help="training jets per background class (QCD, W/Z)")
    ap.add_argument("--n-test", type=int, default=500, help="test jets: QCD and top each")
    ap.add_argument("--n-test-wz", type=int, default=500, help="held-out W/Z jets for the post-hoc probe")
    ap.add_argument("--lams", type=float, nargs="+", default=[0.0, 0.001, 1.0], help="NuRD lambda values")
    ap.add_argument("--penalty", nargs="+", choices=nurd.PENALTIES, default=["critic"],
                    help="NuRD dependence penalties to scan")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    ap.add_argument("--critic-steps", type=int, default=1, help="critic Adam steps per classifier step")
    ap.add_argument("--critic-every", type=int, default=1, help="refresh the critic every k classifier steps")
    ap.add_argument("--critic-refits", type=int, default=2, help="converged critic re-fits per epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--representation-dim", type=int, default=20, help="size of NuRD's r_X")
    ap.add_argument("--dcor-weights", choices=("perp", "none"), default="perp",
                    help="diagnostic: 'none' computes the dcor penalty without the p_perp weights (CE keeps them)")
    ap.add_argument("--dcor-on", choices=nurd.DCOR_SPACES, default="representation",
                    help="what the dcor penalty decorrelates from the mass: r_X, whitened r_X, or the score")
    ap.add_argument("--no-ae", action="store_true", help="skip the autoencoder baseline")
    ap.add_argument("--table-only", action="store_true", help="train nothing: tabulate the runs already written")
    ap.add_argument("--results", default="results", help="stem of the result files/folder in --workdir")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--workdir", type=Path, default=Path("bench-out/nurd"))
    args = ap.parse_args(argv)
    for name in ("n_train", "n_test", "n_test_wz", "epochs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if any(lam < 0 for lam in args.lams):
        ap.error(f"--lams must be >= 0, got {args.lams}")
    return args


# ------------------------------------------------------------------------------------------------ samples


def process_rows(workdir: Path, proc: str, n: int) -> JetSample:
    """The first `n` jets of `proc` from the files in `workdir` (seed order), generating the missing rows."""
    pattern = re.compile(rf"{proc}-n(\d+)-seed(\d+)\.h5")
    files = sorted((int(m[2]), p) for p in workdir.glob(f"{proc}-n*-seed*.h5") if (m := pattern.fullmatch(p.name)))
    parts, have = [], 0
    for _, path in files:
        if have >= n:
            break
        parts.append(read_sample(path))
        have += len(parts[-1])
        print(f"  {path}: {len(parts[-1])} jets", flush=True)
    if have < n:
        seed = max([s for s, _ in files], default=BASE_SEEDS[proc] - 1) + 1
        path = workdir / f"{proc}-n{n - have}-seed{seed}.h5"
        t = time.perf_counter()
        produce(default_config(proc), n - have, seed, path, features=False)
        print(f"  {path} generated ({time.perf_counter() - t:.0f} s)", flush=True)
        parts.append(read_sample(path))
    sample = concatenate(parts) if len(parts) > 1 else parts[0]
    sample.attrs = dict(parts[0].attrs)
    return sample[:n]


def samples(args: argparse.Namespace) -> dict[str, JetSample]:
    """train (QCD + W/Z), qcd_test, wz_test (post-hoc probe) and top (test)."""
    qcd = process_rows(args.workdir, "qcd", args.n_train + args.n_test)
    wz = process_rows(args.workdir, "wz", args.n_train + args.n_test_wz)
    top = process_rows(args.workdir, "top", args.n_test)
    train = concatenate([qcd[: args.n_train], wz[: args.n_train]])
    train.attrs = dict(qcd.attrs)
    return {"train": train, "qcd_test": qcd[args.n_train:], "wz_test": wz[args.n_train:], "top": top}


# ------------------------------------------------------------------------------------------------ runs


def run_specs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run key -> {label, group, seed, detector spec}; lambda 0 once per seed (no penalty acts)."""
    common = {"inputs": IMAGES, "epochs": args.epochs, "patience": args.patience, "batch_size": args.batch_size}
    critic = {"critic_steps": args.critic_steps, "critic_every": args.critic_every,
              "critic_refits": args.critic_refits}
    tag = "".join(f", {k}={v}" for k, v in critic.items() if v != {"critic_refits": 2}.get(k, 1))
    tag_all = f", batch {args.batch_size}" if args.batch_size != 128 else ""
    tag_all += f", r_X dim {args.representation_dim}" if args.representation_dim != 20 else ""
    dcor_tag = ", unweighted dCor" if args.dcor_weights == "none" else ""
    dcor_tag += f" of the {args.dcor_on} r_X" if args.dcor_on == "whitened" else \
        " of the score" if args.dcor_on == "score" else ""
    specs = {}
    for seed in args.seeds:
        for lam in args.lams:
            for penalty in (["none"] if lam == 0 else args.penalty):
                group = "NuRD lambda=0 (no penalty)" if lam == 0 else f"NuRD {penalty}, lambda={lam:g}"
                group += (tag if penalty == "critic" else dcor_tag if penalty == "dcor" else "") + tag_all
                key = re.sub(r"[^A-Za-z0-9.=_-]+", "_", f"{group}-seed{seed}")
                spec = {"name": "nurd", "lam": lam, "penalty": "dcor" if penalty == "none" else penalty,
                        "seed": seed, **critic, **common}
                if args.representation_dim != 20:
                    spec["representation_dim"] = args.representation_dim
                if penalty == "dcor" and args.dcor_on != "representation":
                    spec["dcor_on"] = args.dcor_on
                if penalty == "dcor" and args.dcor_weights == "none":
                    spec["dcor_weights"] = "none"
                specs[key] = {"group": group, "seed": seed, "spec": spec}
        if not args.no_ae:
            specs[f"AE_conv-seed{seed}"] = {"group": "AE (conv)", "seed": seed,
                                            "spec": {"name": "ae", "seed": seed, **common}}
    return specs


class UnweightedDCorNuRD(nurd.NuRD):
    """Diagnostic: NuRD whose per-class dCor^2 penalty ignores the p_perp weights (the cross-entropy keeps them).

    The weights depend on (Y, Z) only, so r_X is independent of Z given Y under p exactly when it is under
    p_perp; the unweighted estimate tests the same independence with the whole batch instead of its heavily
    weighted jets (Kish effective size of the QCD test jets' weights: 63% of the jets).
    """

    def _dcor(self, r: torch.Tensor, y: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return super()._dcor(r, y, z, torch.ones_like(w))


def representations(det, sample: JetSample) -> np.ndarray:
    """The frozen r_X of every jet of `sample` (NuRD's penultimate layer)."""
    return det._represent(torch.as_tensor(det._inputs_for(sample, sample.describe()), device=det.device_)).cpu().numpy()


def evaluate_nurd(det, data: dict[str, JetSample], seed: int) -> dict[str, Any]:
    """Post-hoc probes of r_X on held-out QCD and W/Z jets; per-class distances vs top and vs mass."""
    qcd, wz, top = data["qcd_test"], data["wz_test"], data["top"]
    held = concatenate([qcd, wz])
    r = representations(det, held)
    probe = nuisance_dependence(r, held.label, held.jets[:, 3], seed=seed, names={0: "qcd", 2: "wz"})
    d_qcd, d_top = det.distances(qcd), det.distances(top)
    mass = qcd.jets[:, 3].astype(np.float64)
    per_class = {name: {"auc_top_vs_qcd": auc(d_top[:, i], d_qcd[:, i]),
                        "pearson_mass_qcd": float(np.corrcoef(d_qcd[:, i], mass)[0, 1])}
                 for i, name in enumerate(det.class_names_)}
    r_qcd = r[: len(qcd)]
    y, z = det._targets(qcd, qcd.describe())
    w = det.weighting_.weights(y, z).astype(np.float64)  # the p_perp weights NuRD's loss and penalty use
    s_qcd = det.score(qcd)
    cw = np.cov(s_qcd, mass, aweights=w)
    weighted = {"pearson_mass": float(cw[0, 1] / np.sqrt(cw[0, 0] * cw[1, 1])),
                "dcor_mass": distance_correlation(s_qcd, mass, w), "kish_fraction": float(w.sum() ** 2 / (w @ w)
                                                                                           / len(w))}
    return {"probe": probe, "per_class_distance": per_class, "weighting": det.weighting_report_,
            "qcd_test_weighted": weighted,
            "n_critic_parameters": det.n_critic_parameters_,
            "pearson_rx_mass_qcd": [float(np.corrcoef(r_qcd[:, j], mass)[0, 1]) for j in range(r.shape[1])]}


def one_run(key: str, run: dict[str, Any], data: dict[str, JetSample]) -> dict[str, Any]:
    """Fit one detector, score the test jets, measure the mass dependence."""
    params = dict(run["spec"])
    name = params.pop("name")
    det = UnweightedDCorNuRD(**params) if params.pop("dcor_weights", "perp") == "none" else \
        make_detector(name, **params)
    t = time.perf_counter()
    det.fit(data["train"], progress=lambda e, n, logs: print(
        f"  {key} epoch {e}/{n} " + " ".join(f"{k}={v:.4g}" for k, v in logs.items() if k != "epoch"), flush=True))
    fit_s = time.perf_counter() - t
    qcd, top = data["qcd_test"], data["top"]
    s_qcd, s_top = det.score(qcd), det.score(top)
    mass = qcd.jets[:, 3].astype(np.float64)
    a = auc(s_top, s_qcd)
    logs = det.history_["logs"]
    row = {"key": key, "group": run["group"], "seed": run["seed"], "spec": run["spec"], "auc": a,
           "auc_stat_error": auc_stat_error(a, len(top), len(qcd)),
           "pearson_mass": float(np.corrcoef(s_qcd, mass)[0, 1]), "dcor_mass": distance_correlation(s_qcd, mass),
           "n_parameters": det.n_parameters(), "fit_s": fit_s, "epochs": len(logs["epoch"]),
           "best_epoch": det.history_["best_epoch"], "history": logs}
    det.save(run["model_path"])
    if run["spec"]["name"] == "nurd":
        row |= evaluate_nurd(det, {"qcd_test": qcd, "wz_test": data["wz_test"], "top": top}, run["seed"])
    return row


# ------------------------------------------------------------------------------------------------ tables


def _ms(values: list[float], fmt: str = ".3f") -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():{fmt}}" if len(v) == 1 else f"{v.mean():{fmt}} ± {v.std(ddof=1):{fmt.lstrip('+')}}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Mean ± std (over seeds, sample std) per group; the AUC's statistical error is the mean Hanley-McNeil one."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    md = ["| detector | seeds | AUC top vs QCD | AUC stat. err. | Pearson(score, m_QCD) | dCor(score, m_QCD) | "
          "post-hoc critic AUC QCD | W/Z | R^2(m from r_X) QCD | W/Z | epochs (best) | s / fit |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for group, rs in groups.items():
        cells = [group, str(len(rs)), _ms([r["auc"] for r in rs]), f"{np.mean([r['auc_stat_error'] for r in rs]):.3f}",
                 _ms([r["pearson_mass"] for r in rs], "+.3f"), _ms([r["dcor_mass"] for r in rs])]
        if "probe" in rs[0]:
            cells += [_ms([r["probe"][c][q] for r in rs]) for q in ("critic_auc", "r2") for c in ("qcd", "wz")]
        else:
            cells += ["-"] * 4
        cells += [" / ".join(f"{r['epochs']} ({r['best_epoch']})" for r in rs),
                  f"{np.mean([r['fit_s'] for r in rs]):.0f}"]
        md.append("| " + " | ".join(cells) + " |")
    return md


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Which NuRD groups meet the issue's goal on the seed means (AUC, |Pearson|, post-hoc R^2 of QCD and W/Z)."""
    out = []
    for group in dict.fromkeys(r["group"] for r in rows if "probe" in r):
        rs = [r for r in rows if r["group"] == group]
        a, p = np.mean([r["auc"] for r in rs]), abs(np.mean([r["pearson_mass"] for r in rs]))
        r2 = max(np.mean([r["probe"][c]["r2"] for r in rs]) for c in ("qcd", "wz"))
        ok = a >= GOAL["auc"] and p <= GOAL["pearson"] and r2 <= GOAL["r2"]
        out.append(f"- {group}: AUC {a:.3f} (goal >= {GOAL['auc']}), |Pearson| {p:.3f} (<= {GOAL['pearson']}), "
                   f"max R^2 {r2:.3f} (<= {GOAL['r2']}): {'goal met' if ok else 'goal not met'}")
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    t0 = time.perf_counter()
    args.workdir.mkdir(parents=True, exist_ok=True)
    runs_dir = args.workdir / args.results / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    data = samples(args)
    sizes = {k: len(v) for k, v in data.items()}
    print(f"jets {sizes}; generation/reading {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for key, run in run_specs(args).items():
        path = runs_dir / f"{key}.json"
        if path.exists():
            row = json.loads(path.read_text())
            if row.get("sizes") != sizes or row["spec"] != run["spec"]:
                raise SystemExit(f"{path}: made with other sizes or settings ({row.get('sizes')}); "
                                 f"choose another --results")
            print(f"  {key}: done before, skipped", flush=True)
        elif args.table_only:
            continue
        else:
            row = one_run(key, run | {"model_path": runs_dir / f"{key}.pt"}, data) | {"sizes": sizes,
                                                                                       "command": command}
            path.write_text(json.dumps(row, indent=1, default=str))
            print(json.dumps({k: v for k, v in row.items() if k not in ("history", "weighting", "spec")},
                             default=str), flush=True)
        rows.append(row)
    rows.sort(key=lambda r: (r["spec"]["name"] != "nurd", r["spec"].get("lam", 0) > 0, r["spec"].get("penalty", ""),
                             r["spec"].get("lam", 0), r["seed"]))
    md = [f"Command: `{command}`", "",
          f"Train {args.n_train} QCD + {args.n_train} W/Z jets (20% held out for validation); test "
          f"{sizes['qcd_test']} QCD + {sizes['top']} top; post-hoc probe on the test QCD and {sizes['wz_test']} "
          f"held-out W/Z jets; training seeds {args.seeds}; {args.threads} torch thread(s); wall time "
          f"{time.perf_counter() - t0:.0f} s (this invocation; runs done before were read back)", "",
          *table(rows), "", *goal_lines(rows)]
    (args.workdir / f"{args.results}.md").write_text("\n".join(md) + "\n")
    (args.workdir / f"{args.results}.json").write_text(json.dumps({"command": command, "args": vars(args),
                                                                   "rows": rows}, indent=1, default=str))
    print("\n".join(md))


if __name__ == "__main__":
    main()
