"""Null study of the bump hunt: is the local Z at a fixed signal region N(0, 1) on background-only boxes?

For signal regions (SR) centred at 2.5, 3, 3.5, 4 and 4.5 TeV (windows +-5%), the default `bump_hunt` (fit
range chosen above the trigger turn-on by itself) is run on background-only boxes of two kinds:

* ``pythia``: one QCD production (``jetad generate lhco-bkg``, leading-jet pT > 1.2 TeV) split into
  `--pythia-boxes` disjoint boxes (event i goes to box i mod K); real Pythia shapes, small boxes.
* ``pythia-all``: the whole production as one box (the pythia boxes' mean Z is about its Z / sqrt(K)).
* ``toy``: `--toys` boxes of `--toy-events` events drawn from a smooth parametric fit to the whole production
  (the dijet function times an erf turn-on, Poisson-likelihood fit; its chi2/ndf is printed). It tests the fit
  range choice and the fit at the statistics of a real box, not Pythia's exact tail shape.

Score cases: ``none`` (no cut) and a score that carries no information (uniform random, seeded) cut at
eps = 0.1 and 0.01; cases that keep fewer than 50 events are reported as not run. Optionally (``--cwola``)
CWoLa hunting with small settings on a few disjoint Pythia boxes at the 3.5 TeV SR.
Every result is cached in OUT/results.jsonl (resumable); the script prints a markdown table of mean, width
and |Z| >= 3 rate of the local Z per SR, box kind and case.

    nice .venv/bin/jetad generate lhco-bkg -n 24000 --seed 11 --shard-size 2000 --workers 2 \
        -o /work/cache/lhco_null/qcd_seed11
    nice .venv/bin/python benchmarks/lhco_null.py --production /work/cache/lhco_null/qcd_seed11
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import erf

from jetad.evaluate.bumphunt import (
    FIT_START_MARGIN,
    SQRT_S_GEV,
    bump_hunt,
    dijet_function,
    sample_dijet_spectrum,
    scan_windows,
)

SR_CENTERS = (2500.0, 3000.0, 3500.0, 4000.0, 4500.0)
CASES = (("none", 1.0), ("random", 0.1), ("random", 0.01))
GEN_RANGE = (1500.0, 9000.0)


def production_mjj(path: Path, cache: Path) -> np.ndarray:
    """mjj [GeV] of every event of a production (file or shard directory), cached as .npy."""
    if cache.exists():
        return np.load(cache)
    from jetad.data import read_sample

    mjj = np.asarray(read_sample(path, constituents=False).event["mjj"], dtype=np.float64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, mjj)
    return mjj


def _turn_on_density(theta: np.ndarray, m: np.ndarray) -> np.ndarray:
    log_p0, p1, p2, p3, m50, width = theta
    return dijet_function(m / SQRT_S_GEV, np.exp(log_p0), p1, p2, p3) * 0.5 * (1 + erf((m - m50) / width))


def fit_generator(mjj: np.ndarray, bin_gev: float = 50.0) -> tuple[np.ndarray, float]:
    """Poisson-likelihood fit of dijet function x erf turn-on to the whole spectrum; (theta, deviance/ndf)."""
    edges = np.arange(GEN_RANGE[0], GEN_RANGE[1] + bin_gev, bin_gev)
    counts = np.histogram(mjj, edges)[0]
    centres = 0.5 * (edges[1:] + edges[:-1])

    def deviance(theta: np.ndarray) -> float:
        mu = np.maximum(_turn_on_density(theta, centres) * bin_gev, 1e-300)
        return float(2 * np.sum(mu - counts + np.where(counts > 0, counts * np.log(np.maximum(counts, 1) / mu), 0)))

    best = None
    for start in ((10.0, 5.0, 0.0, 2400.0, 200.0), (5.0, 7.0, 0.5, 2300.0, 300.0), (15.0, 4.0, -0.2, 2500.0, 150.0)):
        shape = _turn_on_density(np.array([0.0, *start]), centres).sum() * bin_gev
        theta0 = np.array([np.log(len(mjj) / shape), *start])
        res = minimize(deviance, theta0, method="Nelder-Mead", options={"maxiter": 40_000, "maxfev": 40_000,
                                                                        "xatol": 1e-6, "fatol": 1e-6})
        if best is None or res.fun < best.fun:
            best = res
    used = counts > 0
    assert best is not None
    return best.x, float(best.fun / max(int(used.sum()) - 6, 1))


def toy_box(theta: np.ndarray, n_events: int, rng: np.random.Generator) -> np.ndarray:
    """n_events masses [GeV] from the fitted turn-on x dijet density."""
    _, p1, p2, p3, m50, width = theta
    return sample_dijet_spectrum((1.0, p1, p2, p3), GEN_RANGE, rng, n=n_events, turn_on=(m50, width))


def local_z_at(mjj: np.ndarray, scores: np.ndarray | None, eps: float, center: float, seed: int,
               margin: float = FIT_START_MARGIN) -> dict:
    """The default bump hunt's local Z at the SR window centred at `center`, or why it could not be run."""
    try:
        hunt = bump_hunt(mjj, scores, efficiencies=(eps,), centers=[center], seed=seed, fit_start_margin=margin)
    except (ValueError, RuntimeError) as err:
        return {"z": None, "why": str(err).split(";")[0][:160]}
    res = hunt[eps]
    return {"z": float(res.z[0]), "fit_start": hunt.fit_start.start_gev, "n_events": res.n_events,
            "chi2_ndf": res.fits[0].chi2_ndf}


def cwola_z(mjj_path: Path, rows: np.ndarray, eps: float, seed: int) -> dict:
    """CWoLa hunting (small settings) on the production events `rows`, SR 3.3-3.7 TeV; local Z at 3.5 TeV."""
    from jetad.data import read_sample
    from jetad.searches import make_search

    data = read_sample(mjj_path, constituents=False).subset(np.sort(rows))
    search = make_search("cwola", signal_region=(3325.0, 3675.0), sideband_width=200.0, n_folds=3, seed=seed,
                         min_sideband_events=50)
    scores = search.fit_score(data)
    return local_z_at(np.asarray(data.event["mjj"], np.float64), scores, eps, 3500.0, seed)


def before_and_after(mjj: np.ndarray) -> str:
    """The scan of the whole production with the fit from its lowest mass (the old default) and the new default."""
    old = scan_windows(mjj, range=(float(mjj.min()), None))
    new = bump_hunt(mjj, None)
    r, b, ob = new[1.0], new[1.0].best, old.best
    return (f"fit from the lowest mass ({mjj.min():.0f} GeV): best window {old.lo[ob]:.0f}-{old.hi[ob]:.0f} GeV, "
            f"local Z {old.max_z:.1f}, full-range chi2/ndf {old.global_fit.chi2_ndf:.1f}\n"
            f"default: {new.fit_start.describe()}; best of {len(r.centers)} windows {r.lo[b]:.0f}-{r.hi[b]:.0f} "
            f"GeV, local Z {r.max_z:.2f}, full-range chi2/ndf {r.global_fit.chi2_ndf:.2f} "
            f"(p = {r.global_fit.chi2_pvalue:.2f})")


def run(args: argparse.Namespace) -> list[dict]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "results.jsonl"
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            done[row["key"]] = row
    mjj = production_mjj(Path(args.production), out / "production_mjj.npy")
    theta, dev_ndf = fit_generator(mjj)
    print(f"production: {len(mjj)} events; toy generator (dijet x erf turn-on) deviance/ndf = {dev_ndf:.2f}, "
          f"turn-on m50 = {theta[4]:.0f} GeV, width {theta[5]:.0f} GeV")

    def record(key: str, row: dict) -> None:
        done[key] = row = {"key": key, **row}
        with cache.open("a") as f:
            f.write(json.dumps(row) + "\n")

    print(before_and_after(mjj))
    k = args.pythia_boxes
    boxes = [("pythia", i, mjj[i::k]) for i in range(k)] + [("pythia-all", 0, mjj)]
    boxes += [("toy", i, toy_box(theta, args.toy_events, np.random.default_rng([args.seed, i])))
              for i in range(args.toys)]
    for kind, i, box in boxes:
        scores = np.random.default_rng([args.seed, 1000 + i]).random(len(box))
        for center in SR_CENTERS:
            for case, eps in CASES:
                key = f"{kind}/{i}/{center:g}/{case}/{eps:g}"
                if key not in done:
                    record(key, {"kind": kind, "box": i, "sr": center, "case": case, "eps": eps, "n_box": len(box),
                                 **local_z_at(box, None if case == "none" else scores, eps, center, args.seed,
                                              args.margin)})
    for i in range(args.cwola):
        rows = np.arange(i, len(mjj), args.cwola)
        key = f"cwola/{i}/3500/0.1"
        if key not in done:
            record(key, {"kind": "pythia", "box": i, "sr": 3500.0, "case": "cwola", "eps": 0.1, "n_box": len(rows),
                         **cwola_z(Path(args.production), rows, 0.1, args.seed)})
    return list(done.values())


def table(rows: list[dict]) -> str:
    """Markdown: per box kind, case and SR, the number of boxes, mean and width of local Z, and |Z| >= 3 rate."""
    lines = ["| boxes | case | SR [TeV] | run / boxes | mean Z | width | \\|Z\\| >= 3 | fit start [GeV] | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["case"], r["eps"], r["sr"]), []).append(r)
    for (kind, case, eps, sr), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[0][2], kv[0][3])):
        z = np.array([r["z"] for r in rs if r["z"] is not None])
        label = "no cut" if case == "none" else f"{case} eps={eps:g}"
        size = f"{kind} ({rs[0]['n_box']} ev.)"
        if len(z) == 0:
            lines.append(f"| {size} | {label} | {sr / 1000:g} | 0 / {len(rs)} | - | - | - | - | {rs[0]['why']} |")
            continue
        starts = [r["fit_start"] for r in rs if r["z"] is not None]
        width = f"{np.std(z, ddof=1):.2f}" if len(z) > 1 else "-"
        note = "" if len(z) == len(rs) else next(r["why"] for r in rs if r["z"] is None)
        lines.append(f"| {size} | {label} | {sr / 1000:g} | {len(z)} / {len(rs)} | {np.mean(z):+.2f} | {width} | "
                     f"{np.mean(np.abs(z) >= 3):.0%} | {np.min(starts):.0f}-{np.max(starts):.0f} | {note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--production", required=True, help="lhco-bkg production (file or shard directory)")
    parser.add_argument("--out", default="bench-out/lhco_null", help="cache and results directory")
    parser.add_argument("--pythia-boxes", type=int, default=20, help="disjoint boxes the production is split into")
    parser.add_argument("--toys", type=int, default=30, help="parametric toy boxes")
    parser.add_argument("--toy-events", type=int, default=100_000, help="events per toy box")
    parser.add_argument("--cwola", type=int, default=0, help="CWoLa on this many disjoint Pythia boxes (0: none)")
    parser.add_argument("--margin", type=float, default=FIT_START_MARGIN,
                        help="fit start above the spectrum's peak (bump_hunt's fit_start_margin)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(table(run(args)))


if __name__ == "__main__":
    main()
