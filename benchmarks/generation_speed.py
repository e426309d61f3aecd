"""Generation throughput: bare Pythia next() vs the full jetad pipeline, in one run, as a ratio.

    .venv/bin/python benchmarks/generation_speed.py --events 600 --process qcd

Stages timed per batch of events: Pythia (nextBatch), detector emulation, FastJet clustering + selection,
substructure features. Bare Pythia is a `pythia.next()` loop with the same card and no output at all.
Also measures pairwise EMD throughput of jetad.physics.emd next to a plain POT `ot.emd2` loop.
Peak memory (max RSS) is printed at the end.

``--baseline REV`` also times the features of the same selected jets with the substructure.py of git
revision REV (e.g. the commit before a speed-up), in the same run, and reports the pipeline / bare ratio the
pipeline would have had with it. The compiled reclustering is loaded (numba cache) or compiled once per
process before the timing; that one-time cost is reported apart (``features_first_call_s``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from jetad.data import concatenate
from jetad.generate.pipeline import reconstruct, select_rows
from jetad.generate.processes import default_config, process_card
from jetad.generate.pythia_events import make_pythia, next_batch
from jetad.physics import features as feat
from jetad.physics.features import compute_features, compute_features_for


def bare_pythia(settings: list[str], n: int, seed: int) -> float:
    pythia = make_pythia(settings, seed)
    t = time.perf_counter()
    for _ in range(n):
        pythia.next()
    return n / (time.perf_counter() - t)


def baseline_substructure(rev: str):
    """The substructure module of git revision `rev` (it imports numpy only)."""
    src = subprocess.run(["git", "show", f"{rev}:src/jetad/physics/substructure.py"], capture_output=True,
                         text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "substructure_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("substructure_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pipeline(process: str, n: int, seed: int, batch: int, baseline=None) -> dict[str, float]:
    cfg = default_config(process)
    card = process_card(cfg)
    pythia = make_pythia(card.settings, seed)
    rng = np.random.default_rng(seed)
    times = dict.fromkeys(("pythia", "detector", "cluster+select", "features"), 0.0)
    rows, kept = 0, []
    for _ in range(n // batch):
        t0 = time.perf_counter()
        b = next_batch(pythia, batch)
        t1 = time.perf_counter()
        parts = reconstruct(b, cfg, rng)
        t2 = time.perf_counter()
        sample = select_rows(parts, b, cfg, card)
        t3 = time.perf_counter()
        kept.append(sample)
        rows += len(sample)
        for k, dt in zip(("pythia", "detector", "cluster+select"), (t1 - t0, t2 - t1, t3 - t2), strict=True):
            times[k] += dt
    t = time.perf_counter()
    compute_features_for(np.ones((2, 8, 4), np.float32), np.ones((2, 8), bool))  # numba: load or compile once
    first_call = time.perf_counter() - t
    jets = concatenate(kept)
    t = time.perf_counter()  # features once per shard, as production does
    values = compute_features(jets, r=cfg.jet_r)
    times["features"] = time.perf_counter() - t
    total = sum(times.values())
    out = {"events_per_s": (n // batch) * batch / total, "rows": rows, "features_first_call_s": first_call,
           **{f"s_{k}": v for k, v in times.items()}}
    if baseline is not None:
        current, feat.sub = feat.sub, baseline
        try:
            t = time.perf_counter()
            old_values = compute_features(jets, r=cfg.jet_r)
            out["s_features_baseline"] = time.perf_counter() - t
        finally:
            feat.sub = current
        out["features_identical_to_baseline"] = all(np.array_equal(values[k], old_values[k]) for k in values)
        out["events_per_s_with_baseline_features"] = (n // batch) * batch / (
            total - times["features"] + out["s_features_baseline"])
    return out


def emd_throughput(n_jets: int, n_particles: int, seed: int) -> dict[str, float]:
    import ot

    from jetad.physics.emd import pairwise_emd

    rng = np.random.default_rng(seed)
    pt = rng.exponential(1.0, (n_jets, n_particles))
    eta, phi = rng.normal(0, 0.3, (n_jets, n_particles)), rng.normal(0, 0.3, (n_jets, n_particles))
    cons = np.stack([pt, eta, phi, pt * np.cosh(eta)], -1).astype(np.float32)
    n_pairs = n_jets * (n_jets - 1) // 2
    pairwise_emd(cons[:5], center=False)  # warm-up (imports, first calls)
    t = time.perf_counter()
    pairwise_emd(cons, center=False)
    ours = n_pairs / (time.perf_counter() - t)
    w = pt / pt.sum(1, keepdims=True)
    xy = np.stack([eta, phi], -1)
    ot.emd2(w[0], w[1], ot.dist(xy[0], xy[1], metric="euclidean"))  # warm-up
    t = time.perf_counter()
    for i in range(n_jets):
        for j in range(i + 1, n_jets):
            ot.emd2(w[i], w[j], ot.dist(xy[i], xy[j], metric="euclidean") / 0.8)
    ref = n_pairs / (time.perf_counter() - t)
    return {"particles": n_particles, "jetad_pairs_per_s": ours, "pot_loop_pairs_per_s": ref, "ratio": ours / ref}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--process", default="qcd")
    ap.add_argument("--events", type=int, default=600)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--emd-jets", type=int, default=60)
    ap.add_argument("--baseline", help="git revision whose substructure.py is also timed on the same jets")
    args = ap.parse_args()
    card = process_card(default_config(args.process))
    bare = bare_pythia(card.settings, args.events, args.seed)
    baseline = baseline_substructure(args.baseline) if args.baseline else None
    full = pipeline(args.process, args.events, args.seed, args.batch, baseline)
    result = {
        "process": args.process,
        "events": args.events,
        "bare_pythia_events_per_s": bare,
        "pipeline_events_per_s": full["events_per_s"],
        "ratio_pipeline_to_bare": full["events_per_s"] / bare,
        "time_split_s": {k[2:]: round(v, 2) for k, v in full.items() if k.startswith("s_")},
        "features_ms_per_jet": 1e3 * full["s_features"] / max(full["rows"], 1),
        "features_first_call_s": full["features_first_call_s"],
        "rows_selected": full["rows"],
        **({"baseline": args.baseline,
            "features_ms_per_jet_baseline": 1e3 * full["s_features_baseline"] / max(full["rows"], 1),
            "features_speedup": full["s_features_baseline"] / full["s_features"],
            "features_identical_to_baseline": full["features_identical_to_baseline"],
            "ratio_pipeline_to_bare_with_baseline_features": full["events_per_s_with_baseline_features"] / bare}
           if baseline is not None else {}),
        "emd": [emd_throughput(args.emd_jets, p, args.seed) for p in (30, 60)],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
