"""Does the NAE's negative phase act? AE vs NAE vs WNAE on the CMS-like task, mass correlation, stopping.

    nice -n 5 .venv/bin/python benchmarks/nae_mechanism.py --seeds 1 2 3
    nice -n 5 .venv/bin/python benchmarks/nae_mechanism.py --detectors WNAE "WNAE (reference options)" --seeds 1 2 3
    nice -n 5 .venv/bin/python benchmarks/nae_mechanism.py --batch-size 64 --detectors AE NAE WNAE \
        "WNAE (reference options)" --monitor --tag regime_b64 --plot ""       # where the AE fails
    nice -n 5 .venv/bin/python benchmarks/nae_mechanism.py --detectors "WNAE + ReLU" "WNAE + box (-3, 3)" \
        "WNAE + plateau" --monitor --tag ablation_b256 --plot ""              # one reference option at a time
    nice -n 5 .venv/bin/python benchmarks/nae_mechanism.py --from-json bench-out/nae_mechanism/results_*.json \
        --plot "" --stopping-plot docs/benchmarks/img/wnae_stopping.png       # tables and plots only, no training

The commands that made each table of docs/benchmarks/nae.md are written there.

Samples: inclusive ttbar jets (pT > 300 GeV, |eta| < 2.4, no truth matching) and the 4 x 4 semivisible-jet grid
of `benchmarks/wnae_svj_grid.py`, read from its workdir (`--samples`, default bench-out/wnae_svj_small: 4500
ttbar jets, the first `--n-train` train (20% of them validate), the rest test; 300 jets per SVJ point).
Inputs: the 8 CMS features, quantile-scaled. Reported per detector and seed: the AUC at m_Phi = 2 TeV,
r_inv = 0.3 and the mean AUC over the 16 points, each with its statistical error from the test size (bootstrap
over the test jets, background and signal resampled together), the distance correlation (Szekely et al. 2007)
of the score with the jet mass on the background test jets, the selected epoch, and per epoch the positive,
negative and chain-start energies and the selection criterion. With `--monitor` the two AUCs are also logged
per epoch (`fit(monitor=...)`: logged, never used for selection), to compare the criterion's choice with the
best monitored epoch (the stopping plot).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from jetad.data import JetSample, read_sample
from jetad.detectors import CMS_WNAE_FEATURES, make_detector
from jetad.detectors.base import TorchDetector
from jetad.evaluate.metrics import auc, distance_correlation

INPUTS = {"kind": "features", "features": list(CMS_WNAE_FEATURES), "scaling": "quantile"}
M_PHI, R_INV = (1000, 2000, 3000, 4000), (0.1, 0.3, 0.5, 0.7)
POINT = (2000, 0.3)
#: Bootstrap replicas of the test sets for the AUCs' statistical errors.
N_BOOTSTRAP = 300
#: The chain the NAE used before issue #11 (input-space PCD from N(0, 1), noise 0.2, step_size / T = 0.4).
OLD_CHAIN = {"sampling": "x", "step_size": 0.02, "noise": 0.2, "temperature": 0.05}
#: The WNAE reference's example choices (activation, box, schedule).
REFERENCE_OPTIONS = {"activation": "relu", "sampling_box": (-3.0, 3.0), "lr_schedule": "plateau"}
#: Today's WNAE defaults, explicit (so the rows keep their meaning if the defaults change).
WNAE_OLD_DEFAULTS = {"activation": "silu", "sampling_box": None, "lr_schedule": "none"}
DETECTORS: dict[str, tuple[str, dict[str, Any]]] = {
    "AE": ("ae", {}),
    "NAE": ("nae", {}),
    "NAE (old chain)": ("nae", OLD_CHAIN),
    "WNAE": ("wnae", WNAE_OLD_DEFAULTS),
    "WNAE (reference options)": ("wnae", REFERENCE_OPTIONS),
    # one reference option at a time on top of the old defaults (the ablation)
    "WNAE + ReLU": ("wnae", WNAE_OLD_DEFAULTS | {"activation": "relu"}),
    "WNAE + box (-3, 3)": ("wnae", WNAE_OLD_DEFAULTS | {"sampling_box": (-3.0, 3.0)}),
    "WNAE + plateau": ("wnae", WNAE_OLD_DEFAULTS | {"lr_schedule": "plateau"}),
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


def _auc_ranks(sig: np.ndarray, bkg_sorted: np.ndarray) -> float:
    """AUC = P(s > b) + P(s = b) / 2 against an already sorted background (Mann-Whitney, for the bootstrap)."""
    below = np.searchsorted(bkg_sorted, sig, side="left")
    upto = np.searchsorted(bkg_sorted, sig, side="right")
    return float((below + upto).sum() / (2.0 * sig.size * bkg_sorted.size))


def bootstrap_errors(s_sig: dict[tuple[int, float], np.ndarray], s_bkg: np.ndarray, seed: int) -> tuple[float, float]:
    """Statistical errors (bootstrap std) of the AUC at POINT and of the grid-mean AUC, from the test sizes.

    Every replica resamples the background test jets and each signal sample with replacement; the grid points
    share the background, so the grid mean's error includes their correlation."""
    rng = np.random.default_rng(seed)
    point, mean = [], []
    for _ in range(N_BOOTSTRAP):
        b = np.sort(s_bkg[rng.integers(0, s_bkg.size, s_bkg.size)])
        grid = {k: _auc_ranks(s[rng.integers(0, s.size, s.size)], b) for k, s in s_sig.items()}
        point.append(grid[POINT])
        mean.append(np.mean(list(grid.values())))
    return float(np.std(point, ddof=1)), float(np.std(mean, ddof=1))


def auc_monitor(test: JetSample, signals: dict[tuple[int, float], JetSample]) -> Callable[[Any], dict[str, float]]:
    """`fit(monitor=...)`: the AUC at POINT and the grid mean on the test jets, logged per epoch, not selected on."""
    def monitor(det: Any) -> dict[str, float]:
        s_bkg = det.score(test)
        grid = {k: auc(det.score(s), s_bkg) for k, s in signals.items()}
        return {"monitor_auc_point": grid[POINT], "monitor_auc_grid_mean": float(np.mean(list(grid.values())))}
    return monitor


def stopping_summary(history: dict) -> dict[str, float]:
    """The criterion's choice against the monitored AUC: AUC at the selected epoch, the best and the last."""
    logs, best = history["logs"], history["best_epoch"]
    if "monitor_auc_grid_mean" not in logs:
        return {}
    a = np.array(logs["monitor_auc_grid_mean"])
    crit = np.array(logs["criterion"])
    return {"selected_auc": float(a[best]), "best_monitored_auc": float(a.max()),
            "best_monitored_epoch": int(a.argmax()), "last_auc": float(a[-1]),
            "spearman_criterion_auc": float(spearmanr(crit, a).statistic)}


def run_one(name: str, seed: int, args, train, test, signals) -> dict:
    kind, extra = DETECTORS[name]
    det = make_detector(kind, inputs=INPUTS, epochs=args.epochs, batch_size=args.batch_size, patience=args.epochs,
                        seed=seed, **extra)
    assert isinstance(det, TorchDetector)  # fit(monitor=...) and history_
    t = time.perf_counter()
    det.fit(train, monitor=auc_monitor(test, signals) if args.monitor else None)
    seconds = time.perf_counter() - t
    s_bkg = det.score(test)
    s_sig = {k: det.score(s) for k, s in signals.items()}
    grid = np.array([[auc(s_sig[m, r], s_bkg) for r in R_INV] for m in M_PHI])
    err_point, err_mean = bootstrap_errors(s_sig, s_bkg, seed)
    logs = det.history_["logs"]
    keep = ("positive_energy", "negative_energy", "start_energy", "criterion", "wasserstein", "lr",
            "monitor_auc_point", "monitor_auc_grid_mean")
    return {"auc_2tev_0.3": float(grid[1, 1]), "auc_grid_mean": float(grid.mean()), "grid": grid.tolist(),
            "stat_err_2tev_0.3": err_point, "stat_err_grid_mean": err_mean,
            "dcor_mass_bkg": distance_correlation(s_bkg, test.column("mass")),
            "best_epoch": det.history_["best_epoch"], "train_s": seconds, "test_scores": s_bkg.tolist(),
            "stopping": stopping_summary(det.history_),
            "energies": {k: logs[k] for k in keep if k in logs}}


def _mean_std(values: list[float]) -> str:
    v = np.array(values)
    return f"{v.mean():.3f} +- {v.std(ddof=1) if v.size > 1 else 0:.3f}"


def print_table(results: dict[str, dict]) -> None:
    """One markdown row per detector: mean +- std over seeds, spread, test-size error, dCor with mass."""
    print("| detector | AUC (2 TeV, 0.3) | spread | stat. err | grid-mean AUC | spread | stat. err "
          "| dCor(score, m) bkg | per seed (2 TeV, 0.3 / grid mean / dCor) | best epochs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, per_seed in results.items():
        rs = list(per_seed.values())
        a = np.array([[r["auc_2tev_0.3"], r["auc_grid_mean"]] for r in rs])
        spread = a.max(0) - a.min(0)
        err = [np.mean([r.get(k, np.nan) for r in rs]) for k in ("stat_err_2tev_0.3", "stat_err_grid_mean")]
        dcor = [r.get("dcor_mass_bkg", np.nan) for r in rs]
        per = " ; ".join(f"{r['auc_2tev_0.3']:.3f} / {r['auc_grid_mean']:.3f} / {d:.2f}" for r, d in zip(rs, dcor,
                                                                                                        strict=True))
        print(f"| {name} | {_mean_std(list(a[:, 0]))} | {spread[0]:.3f} | {err[0]:.3f} | {_mean_std(list(a[:, 1]))} "
              f"| {spread[1]:.3f} | {err[1]:.3f} | {_mean_std(dcor)} | {per} | "
              f"{' / '.join(str(r['best_epoch']) for r in rs)} |")


def print_stopping(results: dict[str, dict]) -> None:
    """Per detector and seed: grid-mean AUC at the criterion's epoch vs the best monitored one."""
    rows = [(n, s, r["best_epoch"], r["stopping"]) for n, v in results.items() for s, r in v.items()
            if r.get("stopping")]
    if not rows:
        return
    print("| detector | seed | selected epoch | AUC there | best monitored AUC (epoch) | last-epoch AUC "
          "| Spearman(criterion, AUC) |")
    print("|---|---|---|---|---|---|---|")
    for name, seed, epoch, st in rows:
        print(f"| {name} | {seed} | {epoch} | {st['selected_auc']:.3f} | {st['best_monitored_auc']:.3f} "
              f"({st['best_monitored_epoch']}) | {st['last_auc']:.3f} | {st['spearman_criterion_auc']:+.2f} |")


def print_rank_correlations(results: dict[str, dict]) -> None:
    """Spearman rank correlation of each detector's test scores with the same seed's AE scores."""
    if "AE" not in results:
        return
    for name, per_seed in results.items():
        if name != "AE":
            rho = [float(spearmanr(r["test_scores"], results["AE"][seed]["test_scores"]).statistic)
                   for seed, r in per_seed.items() if seed in results["AE"]]
            print(f"{name}: Spearman(score, AE score) per seed {' / '.join(f'{v:.3f}' for v in rho)}")


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


def plot_stopping(panels: list[tuple[str, dict]], path: Path, caption: str) -> None:
    """Per WNAE variant: the validation Wasserstein distance (the selection criterion) and the monitored
    grid-mean AUC per epoch, all seeds; a marker at the selected epoch (criterion minimum)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (title, per_seed) in zip(axes.flat, panels, strict=False):
        twin = ax.twinx()
        for i, (seed, r) in enumerate(per_seed.items()):
            e = r["energies"]
            ax.plot(e["criterion"], color=f"C{i}", lw=1.2, label=f"seed {seed}: criterion")
            twin.plot(e["monitor_auc_grid_mean"], color=f"C{i}", ls="--", lw=1, label=f"seed {seed}: AUC")
            b = r["best_epoch"]
            twin.plot(b, e["monitor_auc_grid_mean"][b], "o", color=f"C{i}", ms=6, mfc="none")
        ax.set(title=title, xlabel="epoch", yscale="log")
        ax.title.set_fontsize(9)
        twin.set_ylim(0.45, 0.95)
        ax.set_ylabel("validation Wasserstein distance (solid)", fontsize=8)
        twin.set_ylabel("monitored grid-mean AUC (dashed; o = selected)", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.suptitle(textwrap.fill(caption, 230), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def load_results(paths: list[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """Merge the results of earlier runs (detector name -> seed -> result); `labels` name each run's batch size."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    mixed = len({d.get("batch_size") for d in runs}) > 1
    results: dict[str, dict] = {}
    labels: dict[str, str] = {}
    for d in runs:
        for name, per_seed in d["results"].items():
            key = f"{name}, batch {d.get('batch_size', '?')}" if mixed else name
            results[key] = {int(seed): r for seed, r in per_seed.items()}
            labels[key] = d["command"]
    return results, labels


def train_all(args) -> dict[str, dict]:
    folder = Path(args.samples)
    bkg = read_sample(sorted(folder.glob("ttbar_*.h5"))[0], constituents=False)
    train, test = bkg[: args.n_train], bkg[args.n_train:]
    signals = {k: read_sample(p, constituents=False) for k, p in signal_paths(folder).items()}
    results: dict[str, dict] = {}
    for name in args.detectors:
        for seed in args.seeds:
            r = results.setdefault(name, {})[seed] = run_one(name, seed, args, train, test, signals)
            print(f"{name} seed {seed}: AUC(2 TeV, 0.3) {r['auc_2tev_0.3']:.3f} +- {r['stat_err_2tev_0.3']:.3f}, "
                  f"grid mean {r['auc_grid_mean']:.3f} +- {r['stat_err_grid_mean']:.3f}, "
                  f"dCor(score, m) {r['dcor_mass_bkg']:.3f}, best epoch {r['best_epoch']}, {r['train_s']:.0f} s",
                  flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", default="bench-out/wnae_svj_small")
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--detectors", nargs="+", default=["AE", "NAE", "NAE (old chain)"], choices=list(DETECTORS))
    ap.add_argument("--monitor", action="store_true", help="log the test AUCs per epoch (not used for selection)")
    ap.add_argument("--out", default="bench-out/nae_mechanism")
    ap.add_argument("--tag", default="", help="results_<tag>.json (default: last detector and batch size)")
    ap.add_argument("--plot", default="docs/benchmarks/img/nae_energies.png", help="'' for none")
    ap.add_argument("--stopping-plot", default="", help="PNG of criterion vs monitored AUC for the WNAE runs")
    ap.add_argument("--stopping-panels", nargs="+", default=[], help="detector names to plot (default: all WNAE)")
    ap.add_argument("--from-json", nargs="+", default=[], help="tables / plots from earlier results, no training")
    args = ap.parse_args()
    command = "python benchmarks/nae_mechanism.py " + shlex.join(sys.argv[1:])
    if args.from_json:
        results, _ = load_results(args.from_json)
    else:
        results = train_all(args)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        tag = args.tag or f"{args.detectors[-1].split()[0].lower()}_b{args.batch_size}"
        (out / f"results_{tag}.json").write_text(json.dumps(
            {"command": command, "batch_size": args.batch_size, "results": results}, indent=1))
    print_rank_correlations(results)
    print_table(results)
    print_stopping(results)
    if args.plot and any(n.startswith("NAE") for n in results):
        plot_energies(results, Path(args.plot), f"ttbar train {args.n_train}, batch {args.batch_size}: {command}")
    wanted = args.stopping_panels or [n for n in results if n.startswith("WNAE")]
    panels = [(n, results[n]) for n in wanted
              if all("monitor_auc_grid_mean" in r["energies"] for r in results[n].values())]
    if args.stopping_plot and panels:
        plot_stopping(panels, Path(args.stopping_plot), command)


if __name__ == "__main__":
    main()
