"""CATHODE's classifier: one early-stopped boosted-tree model per fold vs a per-fold ensemble, vs the reference.

    nice -n 5 .venv/bin/python benchmarks/cathode_ensemble.py --production /work/cache/lhco_null/qcd_seed11 \\
        --signal /work/cache/cathode/sig.h5 --seeds 1,2,3 --reference

The box: the first --n-bkg QCD events of a production plus signal events (a seeded subset of --signal, added
until --sr-signal of them lie in the SR, 3.3-3.7 TeV), shuffled; the empty box is the same QCD alone. For each
seed one `CathodeSearch` (flow, samples, folds) is fitted with the classifier 'before' (n_ensemble=1: one
BoostedClassifier per fold, patience 10, the 3-nat fallback; the code before issue 14) and its flow, samples
and folds are reused for 'after' (the default `ClassifierEnsemble` of 10) and for 'reference': the public
CATHODE classifier (github.com/HEPML-AnomalyDetection/CATHODE, 2109.00546: 3 x 64 MLP, 100 epochs,
class-balanced BCE, mean of the 10 epochs of lowest validation loss), trained by the reference's own
`train_n_models` on the same fold data (20% of it validating) and run in its own interpreter
(--reference-venv; its packages come from a .pth file naming the installed torch/numpy/scikit-learn, so no
second torch is downloaded; the reference never imports jetad, jetad never imports it).

Reported per (box, seed, variant): SR truth AUC and max SIC (SIC floor 25 background events), the fraction of
SR scores shared with another SR event (ties), the local Z of the 3.5 TeV window after keeping 10% and 1% of
events (default `bump_hunt`, window +-5%), the fraction of SR events passing a cut that keeps 10% of the 200
GeV sidebands, and for the ensemble the members' trees and how many folds fell back to the constant.
Rows go to OUT/results.jsonl (resumable: a finished cell is skipped), the table to OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from jetad.data import concatenate, read_sample
from jetad.evaluate.bumphunt import bump_hunt
from jetad.evaluate.metrics import auc, max_sic
from jetad.searches import make_search
from jetad.searches.base import ResonantSearch

SIGNAL_REGION = (3300.0, 3700.0)
SIDEBANDS = ((3100.0, 3300.0), (3700.0, 3900.0))
#: CATHODE's flow scaled to the CPU, as in benchmarks/lhco_injection.py (CATHODE: 15 blocks of 128, 100 epochs).
STUDY_FLOW = {"transforms": 8, "hidden": (64,), "epochs": 40, "lr": 1e-3, "patience": 5}
VARIANTS = {"before": {"n_ensemble": 1}, "after": {}}
REFERENCE_REPO = "https://github.com/HEPML-AnomalyDetection/CATHODE"


def build_box(production: Path, signal: Path | None, n_bkg: int, sr_signal: int, seed: int,
              constituents: bool = False):
    """(sample, truth) with the first n_bkg QCD events and signal events until sr_signal lie in the SR."""
    bkg = read_sample(production, 0, n_bkg, constituents=constituents)
    truth = np.zeros(len(bkg), bool)
    if signal is None or sr_signal == 0:
        return bkg, truth
    sig = read_sample(signal, constituents=constituents)
    order = np.random.default_rng(seed).permutation(len(sig))
    in_sr = (sig.event["mjj"][order] >= SIGNAL_REGION[0]) & (sig.event["mjj"][order] < SIGNAL_REGION[1])
    if in_sr.sum() < sr_signal:
        raise ValueError(f"{signal}: only {int(in_sr.sum())} signal events in the SR, --sr-signal {sr_signal}")
    take = order[: int(np.searchsorted(np.cumsum(in_sr), sr_signal)) + 1]
    box = concatenate([bkg, sig[take]])
    truth = np.r_[truth, np.ones(len(take), bool)]
    shuffle = np.random.default_rng([seed, 1]).permutation(len(box))
    return box[shuffle], truth[shuffle]


def reuse_flow(search: ResonantSearch, fitted: ResonantSearch) -> ResonantSearch:
    """Make `search` use `fitted`'s flow and samples (same seed: the same folds), so only the classifier differs.

    A benchmark-only shortcut through the search's shared-state hook, to fit one flow per seed, not three.
    """
    def shared(view: Any) -> None:
        search.background_flow_ = fitted.background_flow_  # type: ignore[attr-defined]
        search.samples_, search.sample_mjj_ = fitted.samples_, fitted.sample_mjj_  # type: ignore[attr-defined]

    search._fit_shared = shared  # type: ignore[method-assign]
    return search


def tied_fraction(scores: np.ndarray) -> float:
    """Fraction of the scores equal to at least one other score."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    return float(np.mean(counts[inverse] > 1))


def sideband_cut_pass(mjj: np.ndarray, scores: np.ndarray, seed: int, eps: float = 0.1) -> float:
    """Fraction of SR events above the score cut that keeps `eps` of the sideband events (ties at random)."""
    u = np.random.default_rng(seed).random(len(scores))
    rank = np.empty(len(scores))
    rank[np.lexsort((u, scores))] = np.arange(len(scores))  # ties broken at random, seeded
    sb = np.zeros(len(mjj), bool)
    for lo, hi in SIDEBANDS:
        sb |= (mjj >= lo) & (mjj < hi)
    sr = (mjj >= SIGNAL_REGION[0]) & (mjj < SIGNAL_REGION[1])
    return float(np.mean(rank[sr] > np.quantile(rank[sb], 1 - eps)))


def metrics(mjj: np.ndarray, truth: np.ndarray, scores: np.ndarray, seed: int) -> dict[str, Any]:
    sr = (mjj >= SIGNAL_REGION[0]) & (mjj < SIGNAL_REGION[1])
    row: dict[str, Any] = {"tied_sr": tied_fraction(scores[sr]),
                           "sr_pass_at_sb10": sideband_cut_pass(mjj, scores, seed)}
    if truth[sr].any():
        s, b = scores[sr & truth], scores[sr & ~truth]
        row |= {"auc_sr": auc(s, b), "max_sic": max_sic(s, b)}
    hunt = bump_hunt(mjj, scores, efficiencies=(0.1, 0.01), centers=(3500.0,), seed=seed)
    for eps in (0.1, 0.01):
        row[f"z_eps{eps:g}"] = float(hunt[eps].z[0]) if eps in hunt.results else None
    row["skipped"] = {f"{e:g}": why for e, why in hunt.skipped.items()}
    return row


def classifier_summary(search: ResonantSearch) -> dict[str, Any]:
    """Trees per member (or per fold model) and the folds whose classifier is the constant prior."""
    trees, constant = [], 0
    for model in search.models_:
        members = getattr(model, "members_", [model])
        trees += [int(getattr(m, "best_iteration_", -1)) for m in members]
        constant += int(getattr(model, "constant_", getattr(model, "best_iteration_", 1) == 0))
    return {"trees_min": min(trees), "trees_median": float(np.median(trees)), "trees_max": max(trees),
            "constant_folds": constant, "oob_gain": [round(float(getattr(m, "oob_gain_", np.nan)), 1)
                                                     for m in search.models_]}


# ------------------------------------------------------------------------------------------- reference
_DRIVER = r'''
import json, sys, os
import numpy as np, torch
ref, work, n_folds = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, ref)
torch.set_num_threads(1)
import sklearn.utils.class_weight as cw
_ccw = cw.compute_class_weight
def _positional(class_weight, *args, **kwargs):  # the reference calls it positionally (sklearn < 1.0)
    return _ccw(class_weight, classes=args[0], y=args[1]) if args else _ccw(class_weight, **kwargs)
cw.compute_class_weight = _positional
from classifier_training_utils import train_n_models
from evaluation_utils import minimum_validation_loss_models
out = {}
for k in range(n_folds):
    d = np.load(os.path.join(work, f"fold{k}.npz"))
    fold_dir = os.path.join(work, f"fold{k}")
    os.makedirs(fold_dir)  # as the reference's run_classifier_training.py does before training
    train_n_models(1, os.path.join(ref, "classifier.yml"), int(d["epochs"]), d["train"], d["train"][:, -2],
                   d["val"], d["val"][:, -2], X_val=d["val"], use_class_weights=True, verbose=False,
                   savedir=fold_dir, save_model=os.path.join(fold_dir, "model"))
    paths = minimum_validation_loss_models(fold_dir, n_epochs=10)[0]
    models = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]  # its own pickles
    out[k] = np.mean([m.predict(d["test"]).ravel() for m in models], axis=0).tolist()
json.dump(out, open(os.path.join(work, "predictions.json"), "w"))
'''


def reference_python(venv: Path) -> Path:
    """The interpreter of the reference's environment: a venv whose packages are the installed torch & co."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        from importlib.util import find_spec

        packages = ("torch", "sklearn", "yaml", "scipy", "matplotlib")
        site = {str(Path(str(getattr(find_spec(name), "origin", ""))).parents[1]) for name in packages}
        (next((venv / "lib").glob("python*")) / "site-packages" / "installed.pth").write_text("\n".join(site) + "\n")
    return python


def reference_scores(search: ResonantSearch, box_x: np.ndarray, mjj: np.ndarray, ref_dir: Path, venv: Path,
                     epochs: int, seed: int) -> np.ndarray:
    """Scores of every event from the reference classifier of fold `score_fold_`, on the search's fold data."""
    samples = search.samples_  # type: ignore[attr-defined]
    mean, std = samples.mean(0), samples.std(0) + 1e-8  # standardized inputs (the reference standardizes too)

    def layout(x: np.ndarray, m: np.ndarray, label: np.ndarray) -> np.ndarray:
        """The reference's column layout: mjj [TeV], features, label (data = 1), truth (unused here)."""
        return np.column_stack([m / 1000, (x - mean) / std, label, np.zeros(len(x))]).astype(np.float32)

    rng = np.random.default_rng([seed, 7])
    with tempfile.TemporaryDirectory() as work:
        for k, rows in enumerate(search.training_rows_):
            data = layout(box_x[rows], mjj[rows], np.ones(len(rows)))
            fake = layout(samples, search.sample_mjj_, np.zeros(len(samples)))  # type: ignore[attr-defined]
            both = np.concatenate([data, fake])
            val = np.zeros(len(both), bool)
            for c in (0, 1):  # 20% of each class validates (picks the epochs), as the ensemble members
                idx = rng.permutation(np.flatnonzero(both[:, -2] == c))
                val[idx[: round(0.2 * len(idx))]] = True
            test = np.flatnonzero(search.score_fold_ == k)
            np.savez(Path(work) / f"fold{k}.npz", train=both[~val], val=both[val],
                     test=layout(box_x[test], mjj[test], np.ones(len(test)))[:, 1:-2], epochs=epochs)
        driver = Path(work) / "driver.py"
        driver.write_text(_DRIVER)
        run_ = subprocess.run([str(reference_python(venv.resolve())), str(driver), str(ref_dir.resolve()), work,
                               str(search.n_folds)], capture_output=True, text=True, cwd=work)
        if run_.returncode:
            raise RuntimeError(f"reference classifier failed:\n{(run_.stdout + run_.stderr)[-3000:]}")
        preds = json.loads((Path(work) / "predictions.json").read_text())
    scores = np.full(len(mjj), np.nan)
    for k in range(search.n_folds):
        scores[search.score_fold_ == k] = preds[str(k)]
    return scores


# ------------------------------------------------------------------------------------------- study
def done_cells(path: Path) -> dict[tuple, dict]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["box"], r["seed"], r["variant"]): r for r in rows}


def run(args: argparse.Namespace) -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # one BLAS/OpenMP thread per fit: the machine is shared
        study(args)


def study(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = done_cells(results)
    boxes = {name: build_box(args.production, args.signal if name == "signal" else None, args.n_bkg,
                             args.sr_signal if name == "signal" else 0, args.box_seed) for name in args.boxes}
    for box_name, (box, truth) in boxes.items():
        mjj = np.asarray(box.event["mjj"], np.float64)
        sr = (mjj >= SIGNAL_REGION[0]) & (mjj < SIGNAL_REGION[1])
        n_s, n_b = int((sr & truth).sum()), int((sr & ~truth).sum())
        print(f"{box_name} box: {len(box)} events, SR S = {n_s}, B = {n_b}, S/sqrt(B) = {n_s / np.sqrt(n_b):.2f}")
        variants = list(VARIANTS) + (["reference"] if args.reference and box_name == "signal" else [])
        for seed in args.seeds:
            if all((box_name, seed, v) in done for v in variants):
                continue
            fitted: ResonantSearch | None = None
            for variant in variants:
                if (box_name, seed, variant) in done:
                    continue
                t0 = time.perf_counter()
                if variant == "reference":
                    assert fitted is not None
                    scores = reference_scores(fitted, fitted._view(box, checked=False).x, mjj, args.reference_dir,
                                              args.reference_venv, args.reference_epochs, seed)
                    extra: dict[str, Any] = {}
                else:
                    search = make_search("cathode", signal_region=SIGNAL_REGION, seed=seed, flow_params=STUDY_FLOW,
                                         **VARIANTS[variant])
                    if fitted is None:  # the first variant fits the flow; the others reuse it
                        fitted = search.fit(box)
                    else:
                        reuse_flow(search, fitted).fit(box)
                    scores, extra = search.scores_, classifier_summary(search)
                row = {"box": box_name, "seed": seed, "variant": variant, "s_sr": n_s, "b_sr": n_b,
                       "seconds": round(time.perf_counter() - t0, 1), **metrics(mjj, truth, scores, seed), **extra}
                print(json.dumps(row))
                with results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                done[(box_name, seed, variant)] = row
    write_table(done, out / "results.md")


def write_table(done: dict[tuple, dict], path: Path) -> None:
    cols = ("auc_sr", "max_sic", "z_eps0.1", "z_eps0.01", "tied_sr", "sr_pass_at_sb10")
    lines = ["| box | variant | seeds | " + " | ".join(cols) + " | trees min/median/max | constant folds |",
             "|---" * (len(cols) + 5) + "|"]
    for box in ("signal", "empty"):
        for variant in (*VARIANTS, "reference"):
            rows = sorted((r for (b, _, v), r in done.items() if b == box and v == variant), key=lambda r: r["seed"])
            if not rows:
                continue
            cells = []
            for c in cols:
                vals = [r[c] for r in rows if r.get(c) is not None]
                cells.append(f"{np.mean(vals):.3f} ({', '.join(f'{v:.2f}' for v in vals)})" if vals else "-")
            trees = "; ".join(f"{r['trees_min']}/{r['trees_median']:g}/{r['trees_max']}" for r in rows
                              if "trees_min" in r) or "-"
            const = ", ".join(str(r["constant_folds"]) for r in rows if "constant_folds" in r) or "-"
            lines.append(f"| {box} | {variant} | {','.join(str(r['seed']) for r in rows)} | " + " | ".join(cells)
                         + f" | {trees} | {const} |")
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--production", type=Path, default=Path("/work/cache/lhco_null/qcd_seed11"))
    ap.add_argument("--signal", type=Path, default=Path("/work/cache/cathode/sig.h5"))
    ap.add_argument("--n-bkg", type=int, default=20_000)
    ap.add_argument("--sr-signal", type=int, default=193, help="signal events in the SR (193: the issue's box)")
    ap.add_argument("--box-seed", type=int, default=21)
    ap.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3])
    ap.add_argument("--boxes", type=lambda s: s.split(","), default=["signal", "empty"],
                    help="signal (QCD + signal) and/or empty (the same QCD alone)")
    ap.add_argument("--reference", action="store_true", help="also the public CATHODE classifier (side by side)")
    ap.add_argument("--reference-dir", type=Path, default=Path("bench-out/cathode-reference"),
                    help=f"a checkout of {REFERENCE_REPO}")
    ap.add_argument("--reference-venv", type=Path, default=Path("bench-out/cathode-reference-venv"))
    ap.add_argument("--reference-epochs", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("bench-out/cathode_ensemble"))
    run(ap.parse_args())


if __name__ == "__main__":
    main()
