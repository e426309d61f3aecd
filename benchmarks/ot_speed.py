"""Optimal-transport speed, side by side in one run: jetad's exact solver vs the `wasserstein` C++ library
(Komiske-Metodiev-Thaler, 1902.02346) vs POT; the streamed pairwise matrix; the approximate solvers.

    nice -n 5 .venv/bin/python benchmarks/ot_speed.py exact              # item 1: pairs/s, ratios, agreement
    nice -n 5 .venv/bin/python benchmarks/ot_speed.py stream --jets 10000 --threads 2   # item 2
    nice -n 5 .venv/bin/python benchmarks/ot_speed.py approx --qcd Q.h5 --top T.h5      # item 3
    nice -n 5 .venv/bin/python benchmarks/ot_speed.py wnae --jets 8000                  # item 4
    nice -n 5 .venv/bin/python benchmarks/ot_speed.py features --qcd Q.h5 --top T.h5    # item 5 (vs ccde5c1)

The reference `wasserstein` pins numpy < 2, so it never enters jetad's environment: the script finds or
creates a separate virtual environment (``--reference-venv``, default bench-out/ot-reference-venv, made with
``python -m venv`` and ``pip install "numpy<2" wasserstein``) and runs the reference there in a subprocess on
the same jets (saved to an .npz). Each timing is repeated (``--repeats``) alternating jetad and reference,
and the best rate of each is compared; CPU-time rates (robust on a shared machine) are printed beside the
wall-clock ones. Random jets: P particles, pT ~ Exp(1), (eta, phi) ~ N(0, 0.3), ground distance dR / R,
R = 0.8, normalized weights (jet level); events: P particles over |eta| < 2.5, phi uniform (periodic),
unnormalized GeV EMD with R = 1 (event level, 1902.02346).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REFERENCE = '''
import json, sys, time
import numpy as np
import wasserstein
d = np.load(sys.argv[1])
cfg = json.loads(sys.argv[2])
w, x, off = d["w"], d["x"], d["off"]
events = [np.ascontiguousarray(np.column_stack([w[off[i]:off[i + 1]], x[off[i]:off[i + 1]]]))
          for i in range(len(off) - 1)]
cls = wasserstein.PairwiseEMDYPhi if cfg["periodic"] else wasserstein.PairwiseEMD
out = []
for rep in range(cfg["repeats"]):
    pe = cls(R=cfg["R"], beta=cfg["p"], norm=cfg["norm"], num_threads=cfg["threads"], print_every=0, verbose=0)
    t, c = time.perf_counter(), time.process_time()
    pe(events)
    out.append((time.perf_counter() - t, time.process_time() - c))
    if rep == 0:
        np.save(sys.argv[3], pe.emds())
print(json.dumps(out))
'''


def reference_python(venv: Path) -> Path:
    """The python of a numpy<2 environment holding `wasserstein`; created with pip on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        subprocess.run([str(python), "-m", "ensurepip", "-q"], check=True)
    probe = subprocess.run([str(python), "-c", "import wasserstein, numpy; print(numpy.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy<2", "wasserstein"], check=True)
    return python


def random_jets(n: int, particles: int, seed: int, event: bool) -> np.ndarray:
    """(n, P, 3) (pT, eta, phi): jets (a Gaussian blob) or events (|eta| < 2.5, phi uniform)."""
    rng = np.random.default_rng(seed)
    pt = rng.exponential(1.0, (n, particles)) + 1e-3
    if event:
        return np.stack([pt * 10, rng.uniform(-2.5, 2.5, pt.shape), rng.uniform(-np.pi, np.pi, pt.shape)], -1)
    return np.stack([pt, rng.normal(0, 0.3, pt.shape), rng.normal(0, 0.3, pt.shape)], -1)


def run_reference(python: Path, jets: np.ndarray, p: float, R: float, norm: bool, periodic: bool, threads: int,
                  repeats: int) -> tuple[list[tuple[float, float]], np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        w = jets[..., 0].reshape(-1)
        x = jets[..., 1:3].reshape(-1, 2)
        off = np.arange(0, len(jets) * jets.shape[1] + 1, jets.shape[1])
        if norm:  # the reference normalizes internally; give it the same float64 fractions as jetad
            w = (jets[..., 0] / jets[..., 0].sum(1, keepdims=True)).reshape(-1)
        np.savez(Path(tmp) / "jets.npz", w=w, x=x, off=off)
        script = Path(tmp) / "reference.py"
        script.write_text(REFERENCE)
        cfg = {"p": p, "R": R, "norm": norm, "periodic": periodic, "threads": threads, "repeats": repeats}
        res = subprocess.run([str(python), str(script), str(Path(tmp) / "jets.npz"), json.dumps(cfg),
                              str(Path(tmp) / "emds.npy")], capture_output=True, text=True, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1]), np.load(Path(tmp) / "emds.npy")


def time_jetad(jets: np.ndarray, p: float, R: float, norm: bool, periodic: bool, threads: int,
               solver: str = "exact") -> tuple[tuple[float, float], np.ndarray]:
    from jetad.physics.emd import pairwise_emd

    t, c = time.perf_counter(), time.process_time()
    d = pairwise_emd(jets, p=p, R=R, normalize=norm, center=False, n_jobs=threads, solver=solver)
    return (time.perf_counter() - t, time.process_time() - c), d


def exact(args: argparse.Namespace) -> dict:
    """Item 1: pairs/s of jetad vs the C++ library (1 and --threads threads) and vs a POT loop."""
    from jetad.physics.emd import pairwise_emd

    python = reference_python(args.reference_venv)
    pairwise_emd(random_jets(4, 5, 0, False), center=False)  # compile / load the numba cache
    cases = [("jet", 30, 1.0), ("jet", 30, 0.5), ("jet", 60, 1.0), ("jet", 60, 0.5), ("event", 150, 1.0)]
    rows = []
    for level, particles, p in cases:
        event = level == "event"
        n = args.jets if not event else max(40, args.jets // 4)
        jets = random_jets(n, particles, args.seed + particles, event)
        R, norm = (1.0, False) if event else (0.8, True)
        pairs = n * (n - 1) // 2
        for threads in sorted({1, args.threads}):
            ours, ref = [], []
            for _ in range(args.repeats):  # alternate, keep the best of each
                t, d_ours = time_jetad(jets, p, R, norm, event, threads)
                ours.append(t)
                r, d_ref = run_reference(python, jets, p, R, norm, event, threads, 1)
                ref.append(r[0])
            iu = np.triu_indices(n, 1)
            row = {"level": level, "particles": particles, "p": p, "threads": threads, "pairs": pairs,
                   "jetad_pairs_per_s": pairs / min(t[0] for t in ours),
                   "reference_pairs_per_s": pairs / min(t[0] for t in ref),
                   "jetad_pairs_per_cpu_s": pairs / min(t[1] for t in ours),
                   "reference_pairs_per_cpu_s": pairs / min(t[1] for t in ref),
                   "max_abs_diff_vs_reference": float(np.abs(d_ours[iu] - d_ref[iu]).max())}
            row["ratio_wall"] = row["jetad_pairs_per_s"] / row["reference_pairs_per_s"]
            row["ratio_cpu"] = row["jetad_pairs_per_cpu_s"] / row["reference_pairs_per_cpu_s"]
            if threads == 1:  # POT per pair on a subset, and the agreement with it on every pair of that subset
                sub = jets[: args.pot_jets]
                time_jetad(sub[:2], p, R, norm, event, 1, solver="pot")  # warm-up (POT's first call)
                (t_pot, _), d_pot = time_jetad(sub, p, R, norm, event, 1, solver="pot")
                (t_sub, _), d_sub = time_jetad(sub, p, R, norm, event, 1)
                k = np.triu_indices(len(sub), 1)
                row["pot_pairs_per_s"] = len(k[0]) / t_pot
                row["ratio_vs_pot"] = t_pot / t_sub
                row["max_abs_diff_vs_pot"] = float(np.abs(d_sub[k] - d_pot[k]).max())
                row["pot_pairs_checked"] = len(k[0])
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"exact": rows}


def stream(args: argparse.Namespace) -> dict:
    """Item 2: all N(N-1)/2 pairs of N random jets streamed into k-NN + histogram handlers (no N^2 matrix),
    resumable through a checkpoint, with a progress bar on stderr."""
    from jetad.physics.emd import pairwise_emd
    from jetad.physics.emd_stream import DistanceHistogram, KNearest

    jets = random_jets(args.jets, args.particles, args.seed, False)
    checkpoint = args.workdir / f"stream_n{args.jets}_p{args.particles}.ckpt.npz"
    t0, cpu0 = time.perf_counter(), time.process_time()
    shown = [-1]

    def bar(done: int, total: int, logs: dict) -> None:
        pct = int(100 * done / total)
        if pct != shown[0]:
            shown[0] = pct
            rate = done / max(time.perf_counter() - t0, 1e-9)
            print(f"\r[{'#' * (pct // 2):<50}] {pct:3d}% {done}/{total} pairs, {rate:.0f} pairs/s this run",
                  end="", file=sys.stderr, flush=True)

    knn, hist = pairwise_emd(jets, center=False, n_jobs=args.threads, handler=[KNearest(10), DistanceHistogram(
        np.linspace(0, 1.5, 151))], checkpoint=checkpoint, progress=bar)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(file=sys.stderr)
    pairs = args.jets * (args.jets - 1) // 2
    row = {"jets": args.jets, "particles": args.particles, "threads": args.threads, "pairs": pairs,
           "wall_s": wall, "cpu_s": cpu, "pairs_per_s": pairs / wall, "pairs_per_cpu_s": pairs / max(cpu, 1e-9),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "histogram_total": int(hist["counts"].sum() + hist["underflow"] + hist["overflow"]),
           "mean_nearest_distance": float(knn[0][:, 0].mean()), "checkpoint": str(checkpoint),
           "hour_budget_ratio": 3600 / wall}
    print(json.dumps(row), flush=True)
    return {"stream": row}


def sinkhorn_pairs(a_w, a_x, b_w, b_x, p: float, R: float, eps: float, n_iter: int, device: str) -> np.ndarray:
    """Batched log-domain Sinkhorn over padded pairs (torch), transport cost <plan, C>: the comparison
    candidate for the approximate mode (weights 0 on padding)."""
    import torch

    aw, ax, bw, bx = (torch.as_tensor(v, device=device) for v in (a_w, a_x, b_w, b_x))
    c = (torch.cdist(ax, bx) / R) ** p
    la, lb = torch.log(aw.clamp_min(1e-300)), torch.log(bw.clamp_min(1e-300))
    f, g = torch.zeros_like(aw), torch.zeros_like(bw)
    for _ in range(n_iter):
        f = -eps * torch.logsumexp(lb[:, None, :] + (g[:, None, :] - c) / eps, dim=2)
        g = -eps * torch.logsumexp(la[:, :, None] + (f[:, :, None] - c) / eps, dim=1)
    plan = torch.exp(la[:, :, None] + lb[:, None, :] + (f[:, :, None] + g[:, None, :] - c) / eps)
    return (plan * c).sum((1, 2)).cpu().numpy()


def sliced_pairs(a_w, a_x, b_w, b_x, p: float, R: float, n_proj: int, seed: int) -> np.ndarray:
    """Sliced W_p (the mean over random directions of 1D W_p, via quantile functions): the other candidate."""
    rng = np.random.default_rng(seed)
    ang = rng.uniform(0, np.pi, n_proj)
    dirs = np.stack([np.cos(ang), np.sin(ang)])
    out = np.zeros(len(a_w))
    for d in dirs.T:
        pa, pb = a_x @ d, b_x @ d
        oa, ob = np.argsort(pa, 1), np.argsort(pb, 1)
        pa, pb = np.take_along_axis(pa, oa, 1), np.take_along_axis(pb, ob, 1)
        ca, cb = np.cumsum(np.take_along_axis(a_w, oa, 1), 1), np.cumsum(np.take_along_axis(b_w, ob, 1), 1)
        levels = np.sort(np.concatenate([ca, cb], 1), 1)
        dl = np.diff(np.concatenate([np.zeros((len(levels), 1)), levels], 1), axis=1)
        ia = np.minimum((ca[:, None, :] < levels[:, :, None] - 1e-12).sum(2), pa.shape[1] - 1)
        ib = np.minimum((cb[:, None, :] < levels[:, :, None] - 1e-12).sum(2), pb.shape[1] - 1)
        gap = np.abs(np.take_along_axis(pa, ia, 1) - np.take_along_axis(pb, ib, 1)) / R
        out += (dl * gap**p).sum(1)
    return out / n_proj


def approx(args: argparse.Namespace) -> dict:
    """Item 3: the approximate solvers against exact, on generated QCD / top jets: AUC of the EMD-medoid score
    (detector defaults), Spearman with exact W_p on all pairs of QCD jets, and the speed ratios."""
    import torch
    from scipy.stats import spearmanr

    from jetad.data import read_sample
    from jetad.detectors import make_detector
    from jetad.evaluate.metrics import auc
    from jetad.physics.emd import _prepare, pairwise_emd
    from jetad.physics.linearized_ot import lot_reference

    qcd, top = read_sample(args.qcd), read_sample(args.top)
    n_train = len(qcd) // 2
    train, bkg, sig = qcd[:n_train], qcd[n_train:], top[: len(qcd) - n_train]
    rows: list[dict] = []
    make_detector("emd", n_reference=20, k=2, solver="lot").fit(train[:40]).score(bkg[:5])  # compile / cache
    configs = {"exact": {"solver": "exact"}, "lot32": {"solver": "lot", "lot_points": 32},
               "lot64": {"solver": "lot", "lot_points": 64}}
    for p in (1.0, 0.5):
        res: dict[str, dict] = {name: {"fit_s": math.inf, "score_s": math.inf} for name in configs}
        for _ in range(args.repeats):  # alternating, best of --repeats (single pieces take 0.05-5 s)
            for name, cfg in configs.items():
                det = make_detector("emd", p=p, n_jobs=args.threads, seed=args.seed, **cfg)
                t = time.perf_counter()
                det.fit(train)
                t_fit = time.perf_counter() - t
                s_sig, s_bkg = det.score(sig), det.score(bkg)
                t_score = time.perf_counter() - t - t_fit
                value = auc(s_sig, s_bkg)
                if res[name].setdefault("auc", value) != value:
                    raise RuntimeError(f"{name}: AUC {value} differs between repeats ({res[name]['auc']})")
                res[name]["fit_s"] = min(res[name]["fit_s"], t_fit)
                res[name]["score_s"] = min(res[name]["score_s"], t_score)
        row = {"what": "EMD-medoid detector (k=10, n_reference=300, 50 constituents)", "p": p,
               "threads": args.threads, "repeats": args.repeats, "train": len(train),
               "test": f"{len(sig)} top + {len(bkg)} QCD",
               **{f"{k}_{q}": v for k, r in res.items() for q, v in r.items()}}
        for name in ("lot32", "lot64"):
            row[f"{name}_auc_change"] = row[f"{name}_auc"] - row["exact_auc"]
            row[f"{name}_speedup_fit"] = row["exact_fit_s"] / row[f"{name}_fit_s"]
            row[f"{name}_speedup_score"] = row["exact_score_s"] / row[f"{name}_score_s"]
            row[f"{name}_speedup_total"] = ((row["exact_fit_s"] + row["exact_score_s"])
                                            / (row[f"{name}_fit_s"] + row[f"{name}_score_s"]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    # rank correlation with exact distances on all pairs of QCD test jets; pairwise speed
    jets = bkg.constituents[: args.jets, :50]
    iu = np.triu_indices(len(jets), 1)
    flat = _prepare(jets, True, False, True)
    width = int(np.diff(flat.off).max())
    pad_w = np.zeros((len(jets), width))
    pad_x = np.zeros((len(jets), width, 2))
    for i in range(len(jets)):
        w, x = flat.jet(i)
        pad_w[i, : len(w)], pad_x[i, : len(w)] = w, x
    ia, ib = iu
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for p in (1.0, 0.5):
        t = time.perf_counter()
        exact_d = pairwise_emd(jets, p=p, n_jobs=args.threads)[iu]
        t_exact = time.perf_counter() - t
        cands = {}
        for m in (32, 64):
            best = math.inf
            for _ in range(args.repeats):
                t = time.perf_counter()
                ref = lot_reference(train.constituents[:300, :50], n_points=m, seed=args.seed)
                vals = pairwise_emd(jets, p=p, n_jobs=args.threads, solver="lot", lot_reference=ref)[iu]
                best = min(best, time.perf_counter() - t)
            cands[f"lot (M={m})"] = (vals, best)
        for device in devices:
            sub = slice(0, min(len(ia), 500))
            for eps in (0.01, 0.003):
                t = time.perf_counter()
                vals = np.concatenate([sinkhorn_pairs(pad_w[ia[k:k + 500]], pad_x[ia[k:k + 500]],
                                                      pad_w[ib[k:k + 500]], pad_x[ib[k:k + 500]], p, 0.8, eps, 100,
                                                      device) for k in range(0, sub.stop, 500)])
                dt = (time.perf_counter() - t) * len(ia) / sub.stop
                cands[f"sinkhorn torch {device} (eps={eps}, 100 iter)"] = (vals, dt, sub)
        t = time.perf_counter()
        sub = slice(0, min(len(ia), 5_000))
        vals = sliced_pairs(pad_w[ia[sub]], pad_x[ia[sub]], pad_w[ib[sub]], pad_x[ib[sub]], p, 0.8, 32, args.seed)
        cands["sliced (32 directions)"] = (vals, (time.perf_counter() - t) * len(ia) / sub.stop, sub)
        for name, (vals, dt, *rest) in cands.items():
            sel = rest[0] if rest else slice(None)
            rows.append({"what": f"pairwise distances, {len(jets)} QCD jets ({len(ia)} pairs)", "p": p,
                         "solver": name, "spearman_vs_exact": float(spearmanr(exact_d[sel], vals)[0]),
                         "exact_s": t_exact, "approx_s": dt, "speedup": t_exact / dt,
                         "pairs_evaluated": len(vals)})
            print(json.dumps(rows[-1]), flush=True)
    return {"approx": rows}


def features(args: argparse.Namespace) -> dict:
    """Item 5: substructure features of this tree vs the committed (--baseline) substructure.py, same jets, same
    run: CPU ms per jet (best of --repeats, alternating) and whether every value is identical bit for bit, both
    the float32 feature columns and the float64 observables behind them (soft drop, taus, ECFs, EFPs)."""
    import importlib.util

    from jetad.data import read_sample
    from jetad.physics import correlators as new_corr
    from jetad.physics import features as feat
    from jetad.physics import substructure as new

    old_src = subprocess.run(["git", "show", f"{args.baseline}:src/jetad/physics/substructure.py"],
                             capture_output=True, text=True, check=True).stdout
    path = args.workdir / "substructure_baseline.py"
    path.write_text(old_src)
    spec = importlib.util.spec_from_file_location("substructure_baseline", path)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    feat.compute_features_for(np.ones((4, 10, 4), np.float32), np.ones((4, 10), bool))  # compile (numba cache)

    def float64_values(mod, c: np.ndarray, m: np.ndarray) -> dict[str, np.ndarray]:
        pt, eta, phi, e = (c[..., i].astype(np.float64) for i in range(4))
        cor = new_corr if mod is new else mod  # the correlators left substructure.py after the baseline
        z, dr = cor._leading(pt, eta, phi, m, 100)
        out = {"sd_mass": mod.soft_drop_mass(pt, eta, phi, e, m), "taus": mod.n_subjettiness(pt, eta, phi, e, m)}
        for beta in (1.0, 0.5):
            out[f"e2_e3_b{beta:g}"] = np.stack(cor._ecf(z, dr, beta), axis=1)
        return out | cor._efp(z, dr)

    rows = []
    for file in (args.qcd, args.top):
        smp = read_sample(file)
        c, m = smp.constituents, smp.mask
        times = {"old": [], "new": []}
        values = {}
        for _ in range(args.repeats):
            for name, mod in (("old", old), ("new", new)):
                feat.sub = mod
                t = time.process_time()
                values[name] = feat.compute_features_for(c, m)
                times[name].append(time.process_time() - t)
        feat.sub = new
        for key in values["old"]:  # jet by jet, every column
            np.testing.assert_array_equal(values["new"][key], values["old"][key], err_msg=f"{file}: {key}")
        old64, new64 = float64_values(old, c, m), float64_values(new, c, m)
        for key in old64:
            np.testing.assert_array_equal(new64[key], old64[key], err_msg=f"{file}: {key} (float64)")
        row = {"file": str(file), "jets": len(c), "padded_to": c.shape[1], "mean_constituents": float(m.sum(1).mean()),
               "old_ms_per_jet": 1e3 * min(times["old"]) / len(c), "new_ms_per_jet": 1e3 * min(times["new"]) / len(c),
               "identical": "all float32 columns and float64 observables, bit for bit"}
        row["speedup"] = row["old_ms_per_jet"] / row["new_ms_per_jet"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"features": rows, "baseline": args.baseline}


def wnae_variants() -> dict:
    """WassersteinNAE as committed before issue #13 (git ccde5c1: autograd Langevin chain with create_graph
    and a double backward, POT's `ot.emd2`, energies with a graph) and each change of this issue added in
    turn, as subclasses of today's class; the last is today's class itself."""
    import ot
    import torch

    from jetad.detectors import nae

    def autograd_chain(self, n, gen, create_graph, push, starts=None):
        lower, upper = self.model_.lower, self.model_.upper
        x = self._starts(n, gen).to(self.device_)
        if starts is not None:  # (logging of the start energy, added after ccde5c1)
            starts.append(x)
        x = x.requires_grad_(True)
        for _ in range(self.mcmc_steps):
            (grad,) = torch.autograd.grad(self.energy(x).sum(), x, create_graph=create_graph)
            eta = torch.randn(x.shape, generator=gen).to(x)
            x = torch.clamp(x - self.step_size / self.temperature * grad + self.noise * eta, lower, upper)
            if not create_graph:
                x = x.detach().requires_grad_(True)
        if push and torch.isfinite(x).all():
            self.buffer_ = torch.cat([x.detach().cpu(), self.buffer_])[: self.buffer_size]
        return x if create_graph else x.detach()

    def pot_distance(self, pos, neg, gen):
        cost = torch.cdist(pos.flatten(1), neg.flatten(1)) ** 2
        w = torch.full((len(pos),), 1.0 / len(pos), dtype=pos.dtype)
        return ot.emd2(w, torch.full((len(neg),), 1.0 / len(neg), dtype=neg.dtype), cost, numItermax=1_000_000)

    class Head(nae.WassersteinNAE):
        sample_negatives = autograd_chain
        _distance = pot_distance
        _energies_in_loss = True  # computed with a graph, as the committed loss did

    class Assignment(Head):
        _distance = nae.WassersteinNAE._distance

    class Chain(Assignment):
        sample_negatives = nae.WassersteinNAE.sample_negatives

    return {"committed (autograd chain, POT emd2)": Head, "+ exact OT as assignment (scipy)": Assignment,
            "+ chain written out": Chain, "+ energies without graph, thread policy (today)": nae.WassersteinNAE}


def wnae(args: argparse.Namespace) -> dict:
    """Item 4: WNAE training jets/s of the committed WassersteinNAE and each change (`wnae_variants`), in one
    run, alternating, best of --repeats: with torch set to 1 thread, and with torch's default thread count
    where the committed loop trained on that count and today's picks 1 thread for small networks itself
    (`training_threads`). Synthetic 8-feature jets (benchmarks/detector_speed.py). Wall-clock and CPU-time
    (process time, all threads) ratios against the committed class."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from detector_speed import synthetic

    from jetad.detectors import CMS_WNAE_FEATURES, training

    variants = wnae_variants()

    if args.today_only:
        variants = dict(list(variants.items())[-1:])
    train = synthetic(args.jets, 1)
    kw = {"inputs": {"kind": "features", "features": CMS_WNAE_FEATURES}, "epochs": args.epochs,
          "patience": args.epochs + 1, "device": "cpu", "mcmc_steps": 10, "batch_size": 256,
          "activation": args.activation}
    n_default = torch.get_num_threads()
    policy = training.training_threads
    for cls in variants.values():
        cls(**(kw | {"epochs": 1})).fit(train[:600])  # warm-up (imports, numba cache)
    rows = []
    for threads in [n_default] if args.today_only else sorted({1, n_default}):
        times: dict[str, list] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, cls in variants.items():
                torch.set_num_threads(threads)
                # the committed train_loop had no thread policy: it trained on whatever torch was set to
                training.training_threads = policy if name.endswith("(today)") else (lambda *a, **k: None)
                det = cls(**kw)
                t, c = time.perf_counter(), time.process_time()
                det.fit(train)
                times[name].append((time.perf_counter() - t, time.process_time() - c))
                training.training_threads = policy
        n = len(train) * (1 - 0.2) * args.epochs
        head = next(iter(times))
        for name in variants:
            row = {"variant": name, "activation": args.activation, "torch_threads_set": threads,
                   "threads_used": 1 if name.endswith("(today)") else threads,
                   "train_jets": int(len(train) * 0.8), "epochs": args.epochs,
                   "jets_per_s": n / min(w for w, _ in times[name]), "cpu_s": min(c for _, c in times[name])}
            row["ratio_wall"] = row["jets_per_s"] * min(w for w, _ in times[head]) / n
            row["ratio_cpu"] = min(c for _, c in times[head]) / row["cpu_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    torch.set_num_threads(n_default)
    return {"wnae": rows, "default_torch_threads": n_default}


def markdown_exact(rows: list[dict]) -> str:
    lines = ["| level | P | p | threads | jetad pairs/s | C++ `wasserstein` pairs/s | ratio (wall) | ratio (CPU) |"
             " max abs diff vs C++ | POT loop pairs/s | ratio vs POT | max abs diff vs POT (pairs) |",
             "|---" * 12 + "|"]
    for r in rows:
        pot = (f"{r['pot_pairs_per_s']:.0f} | {r['ratio_vs_pot']:.2f} | {r['max_abs_diff_vs_pot']:.1e} "
               f"({r['pot_pairs_checked']})") if "pot_pairs_per_s" in r else " | | "
        lines.append(f"| {r['level']} | {r['particles']} | {r['p']:g} | {r['threads']} | {r['jetad_pairs_per_s']:.0f}"
                     f" | {r['reference_pairs_per_s']:.0f} | **{r['ratio_wall']:.2f}** | {r['ratio_cpu']:.2f} | "
                     f"{r['max_abs_diff_vs_reference']:.1e} | {pot} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["exact", "stream", "approx", "features", "wnae"])
    ap.add_argument("--jets", type=int, default=200, help="jets (exact: all pairs; stream: N)")
    ap.add_argument("--particles", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pot-jets", type=int, default=80, help="jets whose pairs are also solved by POT")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reference-venv", type=Path, default=Path("bench-out/ot-reference-venv"))
    ap.add_argument("--workdir", type=Path, default=Path("bench-out/ot"))
    ap.add_argument("--qcd", type=Path, help="QCD jets (h5) for the approximate-mode quality")
    ap.add_argument("--top", type=Path, help="top jets (h5) for the approximate-mode AUC")
    ap.add_argument("--baseline", default="ccde5c1",
                    help="git revision of the substructure.py to compare with (ccde5c1: before issue #13)")
    ap.add_argument("--epochs", type=int, default=2, help="wnae: training epochs")
    ap.add_argument("--activation", choices=["silu", "relu"], default="silu",
                    help="wnae: the coder's activation (the WNAE reference uses ReLU)")
    ap.add_argument("--today-only", action="store_true", help="wnae: time today's class alone (long runs)")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    command = "python " + shlex.join(["benchmarks/ot_speed.py", *(sys.argv[1:] if argv is None else argv)])
    t0 = time.perf_counter()
    if args.what == "exact":
        result = exact(args)
        print(markdown_exact(result["exact"]))
    elif args.what == "stream":
        result = stream(args)
    elif args.what == "features":
        result = features(args)
    elif args.what == "wnae":
        result = wnae(args)
    else:
        result = approx(args)
    result |= {"command": command, "wall_s": time.perf_counter() - t0, "cpus": os.cpu_count(),
               "load_average": os.getloadavg(),
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    (args.workdir / f"{args.what}.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"command: {command}; wall {result['wall_s']:.0f} s; peak RSS {result['peak_rss_mib']:.0f} MiB; "
          f"load average {result['load_average']}")


if __name__ == "__main__":
    main()
