"""LHC-Olympics-style resonant search vs injected signal: which method finds W'(3.5 TeV) -> X(500) Y(100) at which S/B.

    .venv/bin/python benchmarks/lhco_injection.py --n-bkg 100000 --injections 0,180,360,540,720,1090,1450 --workers 2

The QCD dijet background (lhco-bkg, leading jet pT > 1.2 TeV) and a pool of signal events (lhco-sig) are
generated once (sharded, resumable) and cached in --workdir. For each injection count K the first K signal
events are mixed in (seeded shuffle) and every method scores all events with no labels:

- cwola, cathode, tag_n_train: the weakly supervised searches (`jetad.tasks`), k-fold out-of-fold scores;
- quak: QUAK with the background AE alone (trained on sidebands); quak_prior: QUAK with two signal priors of
  the same topology at the wrong masses (X, Y = 300, 200 and 700, 150 GeV), as the QUAK paper's prior set;
- ae: a plain autoencoder on the same four features trained on all events (unsupervised cut); ae_flat and
  ae_disco: the same decorrelated from mjj by mass reweighting (flat mjj) or DisCo (lambda 10);
- supervised: a truth-label boosted classifier (k-fold), the idealized upper reference;
- none: no selection (the bump hunt on the raw mjj spectrum).

Reported per (K, method): S/B and S/sqrt(B) in the signal region (3.3-3.7 TeV), truth AUC and max SIC of the
out-of-fold scores on the SR events, the local significance of the window at 3.5 TeV from the bump hunt
(dijet-function fit on 3.0-6.5 TeV) after keeping the most signal-like 10% and 1% of events, and the
sculpting of the background mjj spectrum by the 10% cut (Jensen-Shannon divergence; for 'none' a random 10%).
Scores are cached per cell (`scores/`), so an interrupted or repeated run only redoes the fits and plots.
The LHC Olympics R&D set has 1M background events; the default here is scaled down (--n-bkg): at fixed
S/sqrt(B) the S/B is sqrt(1M / n_bkg) times larger than at LHCO size, so results are compared in S/sqrt(B).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from jetad.data import concatenate, read_sample
from jetad.detectors import make_detector
from jetad.evaluate.bumphunt import bump_hunt
from jetad.evaluate.metrics import auc, mass_sculpting, max_sic, sic_curve
from jetad.generate.processes import default_config
from jetad.generate.production import produce
from jetad.searches import make_search
from jetad.searches.base import assign_folds
from jetad.searches.classifiers import fit_classifier
from jetad.searches.inputs import DEFAULT_SEARCH_FEATURES as FEATURES
from jetad.searches.inputs import feature_sample, search_features

SIGNAL_REGION = (3300.0, 3700.0)
FIT_RANGE = (3000.0, 6500.0)  # above the trigger turn-on (leading jet pT > 1.2 TeV: the spectrum peaks at 2.6 TeV)
PRIORS = ((300, 200), (700, 150))
METHODS = ("cwola", "cathode", "tag_n_train", "quak", "quak_prior", "ae", "ae_flat", "ae_disco", "supervised", "none")
#: The decorrelated autoencoders: flat-mjj training weights, or DisCo with lambda dCor^2(score, mjj).
AE_DECORRELATION = {"ae": {}, "ae_flat": {"reweight_observer": "mjj"},
                    "ae_disco": {"disco_lambda": 10.0, "disco_observer": "mjj"}}
#: CATHODE's flow scaled to the CPU: 8 MAF blocks of 64 (CATHODE: 15 of 128, 100 epochs at lr 1e-4).
STUDY_FLOW = {"transforms": 8, "hidden": (64,), "epochs": 40, "lr": 1e-3, "patience": 5}
QUICK_FLOW = {"epochs": 3, "transforms": 2, "hidden": (16,)}


def produced(process: str, n: int, seed: int, work: Path, workers: int, **options) -> Path:
    """A cached sample in `work`: bkg_N_sS, sig_N_sS, or prior_xMX_yMY_N_sS for signal priors."""
    if options:
        tag = "".join(f"_{k.removeprefix('m_')}{v}" for k, v in options.items())
        return produce(default_config(process, options=options), n, seed, work / f"prior{tag}_{n}_s{seed}",
                       shard_size=2000, workers=workers)
    name = {"lhco-bkg": "bkg", "lhco-sig": "sig"}[process]
    return produce(default_config(process), n, seed, work / f"{name}_{n}_s{seed}", shard_size=2000, workers=workers)


def supervised_scores(data, seed: int) -> np.ndarray:
    """Out-of-fold P(signal) of a truth-label boosted classifier (5 folds): the idealized reference."""
    x, y = search_features(data, FEATURES), (data.label == 11).astype(np.int64)
    fold = assign_folds(y, 5, seed)
    out = np.zeros(len(y))
    for k in range(5):
        train = fold != k
        out[fold == k] = fit_classifier(x[train], y[train], seed=seed).predict_proba(x[fold == k])[:, 1]
    return out


def method_scores(method: str, data, priors: list, seed: int, quick: bool) -> np.ndarray:
    if method == "none":
        return np.zeros(len(data))
    if method == "supervised":
        return supervised_scores(data, seed)
    if method in AE_DECORRELATION:  # unsupervised: an autoencoder on the same features, trained on all events
        fs = feature_sample(search_features(data, FEATURES), FEATURES, mjj=data.event["mjj"])
        det = make_detector("ae", inputs={"features": FEATURES}, epochs=5 if quick else 50, patience=5, seed=seed,
                            **AE_DECORRELATION[method])
        return det.fit(fs).score(fs)
    params = {"signal_region": SIGNAL_REGION, "seed": seed}
    if quick:
        params["min_sideband_events"] = 20
    if method == "cathode":
        params["flow_params"] = QUICK_FLOW if quick else STUDY_FLOW
    if method.startswith("quak"):
        search = make_search("quak", **params)
        return search.fit(data, signal_priors=priors if method == "quak_prior" else ()).scores_.copy()
    return make_search(method, **params).fit_score(data)


def significance_row(mjj: np.ndarray, scores: np.ndarray, method: str, quick: bool) -> dict:
    """Local Z of the 3.5 TeV window (and the scan maximum) per selection efficiency; failures are recorded."""
    row, notes = {}, []
    for eps in (1.0,) if method == "none" else (0.1, 0.01):
        try:  # each cut on its own: too few events at 1% must not hide the 10% result
            res = bump_hunt(mjj, None if method == "none" else scores, efficiencies=(eps,), bins=35, range=FIT_RANGE,
                            min_events=20 if quick else 50)[eps]
        except (ValueError, RuntimeError) as err:
            notes.append(f"eps {eps:g}: {str(err).split(';')[0]}")
            continue
        i = int(np.argmin(np.abs(res.centers - 3500.0)))
        row[f"z_3500_eps{eps:g}"] = float(res.z[i])
        row[f"max_z_eps{eps:g}"] = float(res.max_z)
    row["status"] = "ok" + (f" ({'; '.join(notes)})" if notes else "")
    return row


def plot_study(rows: list[dict], curves: dict, out: Path, caption: str) -> None:
    from jetad.evaluate.plots import CMS_COLOURS, _figure, plot_sic

    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]  # colours fixed by METHODS order
    with _figure(out / "significance_vs_injection.png", ncols=3, size=(7.0, 6.0), caption=caption) as (_, axes):
        for ax, key, title in zip(axes[0], ("z_3500_eps0.1", "z_3500_eps0.01", "auc_sr"),
                                  (r"local Z at 3.5 TeV, $\varepsilon_B$ = 10%", r"local Z, $\varepsilon_B$ = 1%",
                                   "truth AUC in the SR"), strict=True):
            for m in methods:
                col = "z_3500_eps1" if m == "none" and key != "auc_sr" else key  # no cut: the raw-spectrum Z
                pts = sorted((r["s_over_sqrt_b"], r[col]) for r in rows if r["method"] == m and col in r)
                if pts:
                    colour = "k" if m == "none" else CMS_COLOURS[METHODS.index(m)]  # as plot_sic's cycle
                    style = {"color": colour, "ls": "--" if m == "none" else "-", "marker": "" if m == "none" else "o"}
                    ax.plot(*zip(*pts, strict=True), lw=2, label=m, **style)
            ax.set_xlabel("injected S/√B in the SR", fontsize=16)
            ax.set_title(title, fontsize=14)
            ax.axhline(0.5 if key == "auc_sr" else 0.0, color="grey", lw=1)
            if key != "auc_sr":
                ax.axhline(3.0, color="grey", lw=1, ls=":")
        axes[0, 0].legend(fontsize=11)
    for k, per_method in curves.items():
        plot_sic(per_method, out / f"sic_sr_injected{k}.png", caption=f"{caption}; {k} signal events injected")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-bkg", type=int, default=20_000)
    ap.add_argument("--n-sig-pool", type=int, default=3000, help="signal events generated (injections draw from it)")
    ap.add_argument("--injections", default="0,100,200,400,800")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--sic-at", default="", help="injections whose SR SIC curves are plotted (default: all > 0)")
    ap.add_argument("--seed", type=int, default=1, help="generation seed (background seed, signal seed + 1)")
    ap.add_argument("--search-seed", type=int, default=None,
                    help="seed of the signal subsets, shuffles, folds and networks (default: --seed); a repeat of the "
                         "study on the same background with other subsets and folds")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    ap.add_argument("--workdir", default="bench-out/lhco")
    args = ap.parse_args()
    injections = [int(k) for k in args.injections.split(",")]
    seed = args.seed if args.search_seed is None else args.search_seed
    if max(injections) > args.n_sig_pool:
        ap.error(f"injection {max(injections)} exceeds --n-sig-pool {args.n_sig_pool}")
    t0 = time.perf_counter()
    work = Path(args.workdir)
    repeat = f"_r{seed}" if seed != args.seed else ""
    out = work / f"study_{args.n_bkg}_s{args.seed}{repeat}{'_quick' if args.quick else ''}"
    (out / "scores").mkdir(parents=True, exist_ok=True)
    bkg = read_sample(produced("lhco-bkg", args.n_bkg, args.seed, work, args.workers), constituents=False)
    sig = read_sample(produced("lhco-sig", args.n_sig_pool, args.seed + 1, work, args.workers), constituents=False)
    methods = args.methods.split(",")
    priors = []
    if "quak_prior" in methods:
        n_prior = 200 if args.quick else 2000
        priors = [read_sample(produced("lhco-sig", n_prior, args.seed + 4, work, args.workers, m_x=mx, m_y=my),
                              constituents=False) for mx, my in PRIORS]
    sic_at = {int(k) for k in args.sic_at.split(",") if k} or {k for k in injections if k}
    rows, curves = [], {}
    for k in injections:
        # the first K signal events (a repeat: a random K of the pool), then a seeded shuffle
        chosen = np.arange(k) if not repeat else np.sort(np.random.default_rng(seed).permutation(len(sig))[:k])
        data = concatenate([bkg, sig[chosen]]) if k else bkg
        data = data[np.random.default_rng(seed + k).permutation(len(data))]
        mjj = data.event["mjj"]
        sr = (mjj >= SIGNAL_REGION[0]) & (mjj < SIGNAL_REGION[1])
        is_sig = data.label == 11
        s_sr, b_sr = int((sr & is_sig).sum()), int((sr & ~is_sig).sum())
        for method in methods:
            if method == "supervised" and not k:
                continue
            row = {"injected": k, "s_sr": s_sr, "b_sr": b_sr, "s_over_b": s_sr / max(b_sr, 1),
                   "s_over_sqrt_b": s_sr / max(np.sqrt(b_sr), 1), "method": method}
            cache = out / "scores" / f"{method}_injected{k}.npy"
            t = time.perf_counter()
            try:
                if cache.exists():
                    scores = np.load(cache)
                    row["seconds"] = json.loads(cache.with_suffix(".json").read_text())["seconds"]
                else:
                    scores = method_scores(method, data, priors, seed, args.quick)
                    row["seconds"] = time.perf_counter() - t
                    np.save(cache.with_name(cache.stem + ".tmp.npy"), scores)
                    cache.with_suffix(".json").write_text(json.dumps({"seconds": row["seconds"]}))
                    cache.with_name(cache.stem + ".tmp.npy").replace(cache)
                if s_sr and method != "none":
                    s_sig, s_bkg = scores[sr & is_sig], scores[sr & ~is_sig]
                    row["auc_sr"], row["max_sic_sr"] = auc(s_sig, s_bkg), max_sic(s_sig, s_bkg)
                    if k in sic_at:
                        curves.setdefault(k, {})[method] = sic_curve(s_sig, s_bkg)
                row |= significance_row(mjj, scores, method, args.quick)
                # sculpting of the background mjj by a 10% cut (JSD vs all background; 'none': a random 10%,
                # the statistical floor)
                cut = np.random.default_rng(seed).uniform(size=len(mjj)) if method == "none" else scores
                row["sculpt_jsd_eps0.1"] = mass_sculpting(cut[~is_sig], mjj[~is_sig], eps_b=0.1, bins=35,
                                                          mass_range=FIT_RANGE)[0.1]
            except (ValueError, RuntimeError) as err:
                row["status"] = f"failed: {err}"
            rows.append(row)
            print(json.dumps(row, default=float), flush=True)
    command = "python benchmarks/lhco_injection.py " + " ".join(sys.argv[1:])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    caption = f"{args.n_bkg} QCD dijet events + W'(3.5 TeV)->X(500)Y(100), seed {args.seed}, search seed {seed}"
    plot_study(rows, curves, out, caption)
    cols = ("injected", "s_sr", "b_sr", "s_over_b", "s_over_sqrt_b", "method", "auc_sr", "max_sic_sr", "z_3500_eps1",
            "z_3500_eps0.1", "z_3500_eps0.01", "max_z_eps0.1", "sculpt_jsd_eps0.1", "seconds", "status")
    md = [f"Command: `{command}`", "", f"{args.n_bkg} background events, signal pool {args.n_sig_pool}, seed "
          f"{args.seed}, search seed {seed}; wall {time.perf_counter() - t0:.0f} s (cached cells count their first "
          f"run); peak RSS {peak:.0f} MiB", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        md.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols)
                  + " |")
    (out / "results.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1, default=float))
    print("\n".join(md))


if __name__ == "__main__":
    main()
