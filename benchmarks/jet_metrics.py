"""Jet metrics: beta-VAE on jet images against EMD / W_p scores (top vs QCD), and latent distance vs EMD.

    nice -n 5 .venv/bin/python benchmarks/jet_metrics.py                 # defaults: ~20 min on 2 cores
    .venv/bin/python benchmarks/jet_metrics.py --n-train 600 --n-test 200 --n-sig 200 --epochs 3  # smoke test

1. beta-VAE (40x40 images, score = reconstruction + beta KL) for each beta of --betas, trained on QCD only,
   next to training-free W_1 / W_{1/2} distances to k QCD medoids and W_1 to the average QCD jet; scored on
   held-out QCD and top. ROC, SIC, AUC, rejection at eps_S = 0.3 and 0.5.
2. For the best beta (highest AUC: chosen with signal, as the reference's "optimal beta"), the Euclidean
   distance of the VAE means encode(x) against W_1 and W_{1/2} for all pairs of --n-pairs QCD test jets
   (EMD here on centred, rotated and flipped jets: the frame the images are drawn in): Pearson, Spearman.
3. The beta scan in a unit-free quantity (issue 11, item 5): for every beta and training seed (--train-seeds)
   the ratio R = beta * KL / reconstruction of the kept epoch on the validation set (and in training), the AUC
   with its statistical error from the test size, dCor(score, jet mass) on the QCD test jets, and the latent /
   W_p correlations; --scan-plot writes AUC vs R (log x) with the EMD-to-medoids AUC as the reference line.
   beta in other loss units: with images scaled by s = pixel_scale (1 / pixel std of the unit-sum training
   images) our reconstruction is s^2 times the per-pixel mean squared error of unit-sum images, so
   beta_ref = beta / s^2 for a reference that averages over pixels and S^2 beta / s^2 (S x S pixels) for one
   that sums; R is the same in every convention.

    nice -n 5 .venv/bin/python benchmarks/jet_metrics.py --qcd-files A.h5,B.h5 --top-files C.h5 \
        --betas 0,1e-3,1e-2 --train-seeds 0,1 --emd-scores w1-medoids --scan-plot scan.png

Samples are generated with jetad.generate.production.produce (default configs of 'qcd' and 'top': anti-kT
R=0.8, pT 550-650 GeV) into --workdir and reused when complete, or read from --qcd-files / --top-files
(concatenated in order: the first --n-train QCD rows train, the next --n-test test). Everything is seeded.
Writes results.json, results.md, roc.png, sic.png, latent_vs_emd.png in --workdir.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import pearsonr, spearmanr

from jetad.data import JetSample, concatenate, read_sample
from jetad.detectors import make_detector
from jetad.evaluate.metrics import evaluate_scores, roc_curve, sic_curve
from jetad.evaluate.plots import plot_roc, plot_sic
from jetad.generate.processes import default_config
from jetad.generate.production import produce
from jetad.physics.emd import pairwise_emd
from jetad.tasks.leaderboard import auc_stat_error

EPS_S = (0.3, 0.5)
EMD_SCORES = {"w1-medoids": ("EMD W1 to medoids", {"reference": "medoids", "p": 1.0}),
              "w12-medoids": ("EMD W1/2 to medoids", {"reference": "medoids", "p": 0.5}),
              "w1-average": ("EMD W1 to average jet", {"reference": "average", "p": 1.0})}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=3000, help="QCD jets to train on (20%% of them validate)")
    ap.add_argument("--n-test", type=int, default=1000, help="held-out QCD jets to score")
    ap.add_argument("--n-sig", type=int, default=1000, help="top jets to score")
    ap.add_argument("--betas", default="0,1e-10,1e-8,1e-6,1e-4", help="comma-separated KL weights")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--latent-dim", type=int, default=4)
    ap.add_argument("--k", type=int, default=10, help="QCD medoids")
    ap.add_argument("--n-reference", type=int, default=300, help="QCD jets the medoids/average are built from")
    ap.add_argument("--n-constituents", type=int, default=50, help="leading constituents in the EMD")
    ap.add_argument("--n-pairs", type=int, default=300, help="QCD jets whose pairs enter the correlation")
    ap.add_argument("--seed", type=int, default=0, help="training, medoid and subset seed")
    ap.add_argument("--train-seeds", default=None, help="comma-separated VAE training seeds (default: --seed)")
    ap.add_argument("--gen-seed", type=int, default=1, help="Pythia seed of QCD; top uses gen-seed + 1")
    ap.add_argument("--qcd-files", default=None, help="comma-separated QCD files to read instead of generating")
    ap.add_argument("--top-files", default=None, help="comma-separated top files to read instead of generating")
    ap.add_argument("--emd-scores", default=",".join(EMD_SCORES), help=f"comma-separated, of {', '.join(EMD_SCORES)}")
    ap.add_argument("--scan-plot", type=Path, default=None, help="PNG of AUC vs R = beta KL / reco (log x)")
    ap.add_argument("--from-results", default=None, help="comma-separated results.json of earlier runs: merge "
                    "their scans, redraw --scan-plot, no training")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest on shared cores)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for EMD computations")
    ap.add_argument("--workdir", type=Path, default=Path("bench-out/jet_metrics"))
    args = ap.parse_args(argv)
    args.train_seeds = [int(v) for v in (args.train_seeds or str(args.seed)).split(",")]
    args.emd_scores = [v for v in args.emd_scores.split(",") if v]
    unknown = sorted(set(args.emd_scores) - set(EMD_SCORES))
    if unknown:
        ap.error(f"--emd-scores: unknown {unknown}; choose from {', '.join(EMD_SCORES)}")
    if (args.qcd_files is None) != (args.top_files is None):
        ap.error("--qcd-files and --top-files go together")
    return args


def generate(args: argparse.Namespace) -> tuple[Path, Path]:
    """QCD (train + test rows) and top files; produce() returns at once for a complete file."""
    paths = []
    for proc, n, seed in (("qcd", args.n_train + args.n_test, args.gen_seed), ("top", args.n_sig, args.gen_seed + 1)):
        out = args.workdir / f"{proc}-n{n}-seed{seed}.h5"
        t = time.perf_counter()
        produce(default_config(proc), n, seed, out, features=True,
                progress=lambda d, tot, logs, p=proc, t=t: print(
                    f"\r  {p}: {d}/{tot} jets, {time.perf_counter() - t:.0f} s", end="", flush=True))
        print(f"\n  {out} ready ({time.perf_counter() - t:.0f} s)")
        paths.append(out)
    return paths[0], paths[1]


def read_files(paths: str, stop: int, what: str) -> JetSample:
    """The first `stop` jets of the comma-separated files, concatenated in order."""
    sample = concatenate([read_sample(Path(f)) for f in paths.split(",")])
    if len(sample) < stop:
        raise SystemExit(f"--{what}-files hold {len(sample)} jets, need {stop}")
    return sample[:stop]


def load_samples(args: argparse.Namespace) -> tuple[JetSample, JetSample, JetSample, float]:
    """(QCD train, QCD test, top test, generation seconds): generated into --workdir or read from files."""
    t0 = time.perf_counter()
    if args.qcd_files is not None:
        qcd = read_files(args.qcd_files, args.n_train + args.n_test, "qcd")
        train, bkg = qcd[: args.n_train], qcd[args.n_train:]
        return train, bkg, read_files(args.top_files, args.n_sig, "top"), 0.0
    qcd_path, top_path = generate(args)
    t_gen = time.perf_counter() - t0
    train = read_sample(qcd_path, 0, args.n_train)
    bkg = read_sample(qcd_path, args.n_train, args.n_train + args.n_test)
    return train, bkg, read_sample(top_path, 0, args.n_sig), t_gen


def latent_means(vae, sample) -> np.ndarray:
    """VAE means mu(x) (the encoder's first latent_dim outputs) for every jet of `sample`."""
    x = torch.as_tensor(vae.spec_.transform(sample, "latent sample"))
    vae.model_.eval()
    with torch.no_grad():
        return vae.encode(x).numpy().astype(np.float64)


def pair_emds(jets, args) -> dict[str, np.ndarray]:
    """W_1 and W_{1/2} over all pairs (upper triangle) of `jets`, centred, rotated and flipped (the image frame)."""
    iu = np.triu_indices(len(jets), k=1)
    cons = jets.constituents[:, : args.n_constituents]
    return {name: pairwise_emd(cons, p=p, R=0.8, align=True, n_jobs=args.jobs)[iu]
            for name, p in (("W1", 1.0), ("W1/2", 0.5))}


def correlations(vae, jets, emds: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Pearson/Spearman of latent Euclidean distance vs each W_p of `emds` over all pairs; values for the plot."""
    z = latent_means(vae, jets)
    dz = np.linalg.norm(z[:, None] - z[None], axis=-1)[np.triu_indices(len(z), k=1)]
    out = {name: {"pearson": float(pearsonr(dz, d)[0]), "spearman": float(spearmanr(dz, d)[0]), "n_pairs": len(d)}
           for name, d in emds.items()}
    return out, {"latent": dz, **emds}


def loss_terms(vae, beta: float, pixel_scale: float, image_size: int) -> dict[str, float]:
    """The kept epoch's loss terms and R = beta KL / reco (validation and training), and beta in other units."""
    logs, k = vae.history_["logs"], vae.history_["best_epoch"]
    at = {key: logs[key][k] for key in ("reco", "kl", "ratio", "val_reco", "val_kl", "val_ratio")}
    return {**at, "val_ratio_last": logs["val_ratio"][-1], "best_epoch": k, "epochs_run": len(logs["val_ratio"]),
            "beta_ref_pixel_mean": beta / pixel_scale**2, "beta_ref_pixel_sum": beta * image_size**2 / pixel_scale**2}


def plot_latent(values: dict, corr: dict, out: Path, caption: str) -> None:
    fig = Figure(figsize=(13, 5.8), layout="constrained")
    for ax, name in zip(fig.subplots(1, 2), ("W1", "W1/2"), strict=True):
        hb = ax.hexbin(values[name], values["latent"], gridsize=45, bins="log", mincnt=1, cmap="viridis")
        fig.colorbar(hb, ax=ax, label="pairs")
        c = corr[name]
        ax.set_title(f"{name}: Pearson {c['pearson']:.3f}, Spearman {c['spearman']:.3f}", fontsize=11)
        ax.set_xlabel(f"{name} between jets (centred, rotated, flipped)")
        ax.set_ylabel("latent distance |mu_i - mu_j|")
    fig.suptitle(caption, fontsize=9)
    fig.savefig(out, dpi=80)


def plot_ratio_scan(scan: list[dict], reference: dict[str, dict], out: Path, caption: str) -> None:
    """Left: AUC (statistical error bars) against R = beta KL / reco on a log axis, points joined in beta order,
    the training-free EMD scores as bands, beta = 0 (R = 0, off the axis) dotted. Right: R against beta."""
    fig = Figure(figsize=(14, 6), layout="constrained")
    ax, ax_r = fig.subplots(1, 2, width_ratios=(1.6, 1))
    seeds = sorted({r["seed"] for r in scan})
    for seed, marker in zip(seeds, "osD^v<>", strict=False):
        rows = sorted((r for r in scan if r["seed"] == seed and r["beta"] > 0), key=lambda r: r["beta"])
        ratio, auc = [r["val_ratio"] for r in rows], [r["auc"] for r in rows]
        ax.errorbar(ratio, auc, [r["auc_err"] for r in rows], marker=marker, ls="-", capsize=3,
                    label=f"beta-VAE, training seed {seed} (joined in beta order)")
        for r in rows if seed == seeds[0] else ():  # one seed's labels keep the plot readable
            ax.annotate(f"beta={r['beta']:g}", (r["val_ratio"], r["auc"]), textcoords="offset points",
                        xytext=(4, -11), fontsize=7, color="0.35")
        ax_r.plot([r["beta"] for r in rows], ratio, marker=marker, label=f"seed {seed}")
        for r in (r for r in scan if r["seed"] == seed and r["beta"] == 0):
            ax.axhline(r["auc"], color="0.5", ls=":", lw=1, label=f"beta = 0 (R = 0), seed {seed}: {r['auc']:.3f}")
    for (name, m), color in zip(reference.items(), ("k", "tab:red", "tab:purple"), strict=False):
        ax.axhspan(m["auc"] - m["auc_err"], m["auc"] + m["auc_err"], color=color, alpha=0.15, lw=0)
        ax.axhline(m["auc"], color=color, lw=1.5, label=f"{name} (no training): {m['auc']:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("R = beta * KL / reconstruction (validation set, kept epoch)")
    ax.set_ylabel("AUC, top vs QCD (bars / bands: statistical error)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, 0.9))
    ax_r.set(xscale="log", yscale="log", xlabel="beta (our loss units)", ylabel="R (validation, kept epoch)")
    ax_r.legend(fontsize=8)
    ax_r.grid(alpha=0.3)
    fig.suptitle(caption, fontsize=8)
    fig.savefig(out, dpi=80)


def scan_lines(results: dict) -> list[str]:
    """The beta-scan table: beta in our and the reference's units, R, loss terms, AUC, dCor, latent/EMD."""
    lines = [f"beta scan (pixel_scale s = {results['pixel_scale']:.4g}; beta_ref = beta / s^2 per-pixel mean, "
             f"x {results['image_size'] ** 2} for a pixel sum):", "",
             "| beta (ours) | beta / s^2 | seed | R val (kept) | R train | reco val | KL val | best epoch | AUC | "
             "dCor(score, m) | W1 Pearson / Spearman | W1/2 Pearson / Spearman |", "|" + "---|" * 12]
    for r in results["scan"]:
        c = r["latent_vs_emd"]
        lines.append(f"| {r['beta']:g} | {r['beta_ref_pixel_mean']:.2g} | {r['seed']} | {r['val_ratio']:.3g} | "
                     f"{r['ratio']:.3g} | {r['val_reco']:.4g} | {r['val_kl']:.4g} | {r['best_epoch']} | "
                     f"{r['auc']:.3f} +- {r['auc_err']:.3f} | {r['dcor_score_mass']:.3f} | "
                     f"{c['W1']['pearson']:.3f} / {c['W1']['spearman']:.3f} | "
                     f"{c['W1/2']['pearson']:.3f} / {c['W1/2']['spearman']:.3f} |")
    return lines


def markdown(results: dict) -> str:
    lines = [f"command: `{results['command']}`", "",
             "| score | AUC | 1/eps_B @ eps_S=0.3 | 1/eps_B @ eps_S=0.5 | max SIC | dCor(score, m) QCD |",
             "|---|---|---|---|---|---|"]
    for name, m in results["scores"].items():
        lines.append(f"| {name} | {m['auc']:.3f} +- {m['auc_err']:.3f} | {m['rejection_at_eps_s_0.3']:.1f} | "
                     f"{m['rejection_at_eps_s_0.5']:.1f} | {m['max_sic']:.2f} | {m['dcor_score_mass']:.3f} |")
    lines += ["", *scan_lines(results)]
    lines += ["", f"latent (best: {results['best']}) vs EMD, {results['n_pair_jets']} QCD jets:", "",
              "| metric | pairs | Pearson | Spearman |", "|---|---|---|---|"]
    for name, c in results["latent_vs_emd"].items():
        lines.append(f"| {name} | {c['n_pairs']} | {c['pearson']:.3f} | {c['spearman']:.3f} |")
    return "\n".join(lines) + "\n"


def merge_results(args: argparse.Namespace, command: str) -> dict:
    """One scan from several runs' results.json (same samples and settings), sorted by beta and seed; the scan
    plot against the EMD-to-medoids scores of the first run that has them."""
    runs = [json.loads(Path(f).read_text()) for f in args.from_results.split(",")]
    scan = sorted((r for run in runs for r in run["scan"]), key=lambda r: (r["beta"], r["seed"]))
    reference = next({n: m for n, m in run["scores"].items() if "medoids" in n} for run in runs
                     if any("medoids" in n for n in run["scores"]))
    merged = {"command": command, "sources": [run["command"] for run in runs], "scan": scan,
              "reference": reference, "pixel_scale": runs[0]["pixel_scale"], "image_size": runs[0]["image_size"]}
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.scan_plot is not None:
        caption = textwrap.fill(f"top vs QCD, R=0.8, pT 550-650 GeV; train {runs[0]['n_train']} QCD, test "
                                f"{runs[0]['n_bkg_test']} QCD + {runs[0]['n_sig_test']} top; merged from "
                                f"{len(runs)} runs; {command}", 95)
        plot_ratio_scan(scan, reference, args.scan_plot, caption)
    (args.workdir / "scan.json").write_text(json.dumps(merged, indent=2))
    print("\n".join(scan_lines(merged)))
    return merged


def fit_vae(args: argparse.Namespace, train: JetSample, beta: float, seed: int):
    vae = make_detector("vae", inputs={"kind": "images", "image_size": 40}, beta=beta, epochs=args.epochs,
                        batch_size=args.batch_size, latent_dim=args.latent_dim, seed=seed, device="cpu")
    return vae.fit(train)


def with_errors(m: dict) -> dict:
    """evaluate_scores' numbers plus the AUC's statistical error from the test size (Hanley & McNeil)."""
    return {**m, "auc_err": auc_stat_error(m["auc"], m["n_sig"], m["n_bkg"])}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    command = "python " + shlex.join(["benchmarks/jet_metrics.py", *(sys.argv[1:] if argv is None else argv)])
    if args.from_results is not None:
        return merge_results(args, command)
    args.workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train, bkg, sig, t_gen = load_samples(args)
    mass_bkg = bkg.column("mass")
    caption = textwrap.fill(f"top vs QCD, R=0.8, pT 550-650 GeV; train {len(train)} QCD, test {len(bkg)} QCD + "
                            f"{len(sig)} top; seeds {args.train_seeds}; {command}", 95)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    pair_jets = bkg[np.sort(np.random.default_rng(args.seed).choice(len(bkg), min(args.n_pairs, len(bkg)), False))]
    emds = pair_emds(pair_jets, args)
    timings["pairwise EMD"] = time.perf_counter() - t
    scores, scan, vaes = {}, [], {}
    for beta in (float(b) for b in args.betas.split(",")):
        for seed in args.train_seeds:
            t = time.perf_counter()
            vae = fit_vae(args, train, beta, seed)
            name = f"VAE beta={beta:g}" + (f" seed {seed}" if len(args.train_seeds) > 1 else "")
            scores[name] = (vae.score(sig), vae.score(bkg))
            m = with_errors(evaluate_scores(*scores[name], mass_bkg=mass_bkg, eps_s=EPS_S))
            corr, _ = correlations(vae, pair_jets, emds)
            pixel_scale = float(vae.spec_.state["pixel_scale"])
            scan.append({"beta": beta, "seed": seed, "name": name, "auc": m["auc"], "auc_err": m["auc_err"],
                         "dcor_score_mass": m["dcor_score_mass"], "latent_vs_emd": corr,
                         **loss_terms(vae, beta, pixel_scale, 40)})
            vaes[name] = vae
            timings[name] = time.perf_counter() - t
            print(f"{name}: best epoch {vae.history_['best_epoch']}, R = {scan[-1]['val_ratio']:.3g}, "
                  f"AUC {m['auc']:.3f}, {timings[name]:.0f} s", flush=True)
    for key in args.emd_scores:
        name, params = EMD_SCORES[key]
        t = time.perf_counter()
        det = make_detector("emd", k=args.k, n_reference=args.n_reference, n_constituents=args.n_constituents,
                            n_jobs=args.jobs, seed=args.seed, **params).fit(train)
        scores[name] = (det.score(sig), det.score(bkg))
        timings[name] = time.perf_counter() - t
        print(f"{name}: {timings[name]:.0f} s", flush=True)
    metrics = {n: with_errors(evaluate_scores(s, b, mass_bkg=mass_bkg, eps_s=EPS_S)) for n, (s, b) in scores.items()}
    best = max(vaes, key=lambda n: metrics[n]["auc"])
    corr, values = correlations(vaes[best], pair_jets, emds)
    plot_roc({n: roc_curve(s, b)[:2] for n, (s, b) in scores.items()}, args.workdir / "roc.png", caption)
    plot_sic({n: sic_curve(s, b) for n, (s, b) in scores.items()}, args.workdir / "sic.png", caption)
    plot_latent(values, corr, args.workdir / "latent_vs_emd.png", f"latent ({best}) vs EMD, {len(pair_jets)} "
                f"QCD test jets, all pairs;\n{caption}")
    if args.scan_plot is not None:
        reference = {EMD_SCORES[k][0]: metrics[EMD_SCORES[k][0]] for k in args.emd_scores if "medoids" in k}
        plot_ratio_scan(scan, reference, args.scan_plot, caption)
    ru_self, ru_child = (resource.getrusage(w).ru_maxrss / 1024 for w in
                         (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    results = {
        "command": command, "task": "top vs QCD (default qcd/top configs)", "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "n_train": len(train), "n_bkg_test": len(bkg), "n_sig_test": len(sig), "n_pair_jets": len(pair_jets),
        "scores": metrics, "scan": scan, "best": best, "best_beta": next(r["beta"] for r in scan if r["name"] == best),
        "pixel_scale": float(vaes[best].spec_.state["pixel_scale"]),
        "image_size": 40, "latent_vs_emd": corr,
        "vae_best_epochs": {n: v.history_["best_epoch"] for n, v in vaes.items()},
        "seconds": {"total": time.perf_counter() - t0, "generation": t_gen, **timings},
        "cpu_seconds": sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime
                           for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)),
        "peak_rss_mb": {"main": ru_self, "largest_child": ru_child},
    }
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2))
    (args.workdir / "results.md").write_text(markdown(results))
    print(markdown(results))
    print(f"wall {results['seconds']['total']:.0f} s (generation {t_gen:.0f} s), CPU {results['cpu_seconds']:.0f} s; "
          f"peak RSS {ru_self:.0f} MB (largest child {ru_child:.0f} MB); outputs in {args.workdir}")
    return results


if __name__ == "__main__":
    main()
