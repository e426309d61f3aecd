"""The event loop: Pythia batch -> detector emulation -> anti-kT clustering -> selection -> JetSample rows.

One call makes one shard's worth of rows from one seed; `production` splits large requests into shards.
Every row records its jets' constituent counts before truncation to P (event columns "multiplicity_full" and,
for dijet rows, "j2_multiplicity_full"); with ``features=True`` the substructure features are computed on the
full constituent lists before they are cut to the leading P.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from jetad import __version__
from jetad.data.clustering import ClusteredJets, cluster_jets, dijet_rows
from jetad.data.progress import Progress
from jetad.data.sample import JetSample, concatenate
from jetad.generate.detector import DETECTORS, FlatParticles, delphes_like, particle_level
from jetad.generate.processes import GenerationConfig, ProcessCard, process_card
from jetad.generate.pythia_events import EventBatch, make_pythia, next_batch, pythia_seed, pythia_version

__all__ = ["MULTIPLICITY_COLUMNS", "PROCESS_IDS", "generate_sample", "provenance", "reconstruct", "select_rows"]

#: Label stored for each process; the name table goes into attrs["label_names"].
PROCESS_IDS = {"qcd": 0, "top": 1, "wz": 2, "svj": 3, "lhco-bkg": 10, "lhco-sig": 11}



def _delta_r(eta1, phi1, eta2, phi2):
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, dphi)


def matched_jets(jets: np.ndarray, partons: ak.Array, card: ProcessCard, r: float) -> np.ndarray:
    """(E, J) bool: jet has a `card.match_ids` parton within R and >= `match_min_partons` hard quarks.

    Hard quarks are the outgoing partons of the hard process and its resonance decays (Pythia status 23);
    for top this asks the b and both W daughters to be inside the jet (a fully merged top).
    """
    if not card.match_ids:
        return np.ones(jets.shape[:2], dtype=bool)
    abs_id = abs(partons.id)
    is_res = np.zeros_like(ak.to_numpy(ak.flatten(abs_id)), dtype=bool)
    for pid in card.match_ids:
        is_res |= ak.to_numpy(ak.flatten(abs_id)) == pid
    res = partons[ak.unflatten(is_res, ak.num(abs_id))]
    quarks = partons[(abs_id <= 5) & (partons.status == 23)]

    def count_within(objs: ak.Array) -> np.ndarray:
        k = max(1, int(ak.max(ak.num(objs.eta), initial=0)))
        eta = ak.to_numpy(ak.fill_none(ak.pad_none(objs.eta, k, clip=True), 1e3))
        phi = ak.to_numpy(ak.fill_none(ak.pad_none(objs.phi, k, clip=True), 0.0))
        dr = _delta_r(jets[:, :, None, 1], jets[:, :, None, 2], eta[:, None, :], phi[:, None, :])
        return (dr < r).sum(-1)

    ok = count_within(res) > 0
    if card.match_min_partons:
        ok &= count_within(quarks) >= card.match_min_partons
    return ok


def reconstruct(batch: EventBatch, cfg: GenerationConfig, rng: np.random.Generator) -> FlatParticles:
    """Detector-level particles of a batch: the chosen emulation, or particle level."""
    if cfg.detector == "none":
        return particle_level(batch.visible)
    if cfg.detector == "delphes-like":
        return delphes_like(batch.visible, rng)
    raise ValueError(f"unknown detector {cfg.detector!r}; choose one of {DETECTORS}")


def _met(parts: FlatParticles) -> np.ndarray:
    """|minus the vector sum of reconstructed pT| per event [GeV]."""
    ev = parts.event_index
    n = len(parts.counts)
    sx = np.bincount(ev, weights=parts.pt * np.cos(parts.phi), minlength=n)
    sy = np.bincount(ev, weights=parts.pt * np.sin(parts.phi), minlength=n)
    return np.hypot(sx, sy)


def _jet_rows(cj: ClusteredJets, keep: np.ndarray, label: int, met: np.ndarray, met_truth: np.ndarray) -> JetSample:
    ev, jet = np.nonzero(keep)
    n = len(ev)
    return JetSample(
        constituents=cj.constituents[ev, jet],
        mask=cj.mask[ev, jet],
        jets=cj.jets[ev, jet],
        label=np.full(n, label),
        weight=np.ones(n, dtype=np.float32),
        event={"met": met[ev].astype(np.float32), "met_truth": met_truth[ev].astype(np.float32),
               "multiplicity_full": cj.multiplicity[ev, jet].astype(np.int32)},
    )


#: Event columns with the constituent counts before truncation (jet rows, and the second jet of dijet rows).
MULTIPLICITY_COLUMNS = ("multiplicity_full", "j2_multiplicity_full")


def select_rows(batch_parts: FlatParticles, batch: EventBatch, cfg: GenerationConfig, card: ProcessCard,
                features: bool = False) -> JetSample:
    """Cluster reconstructed particles and keep the rows the process asks for (leading `cfg.n_constituents`).

    With `features`, the rows' substructure features are computed on every constituent of each jet: the
    batch is clustered again with P = its longest jet when a kept jet has more than `cfg.n_constituents`.
    """
    rows = _select(batch_parts, batch, cfg, card, cfg.n_constituents)
    if features:
        rows.features = _full_jet_features(batch_parts, batch, cfg, card, rows)
    return rows


def _full_jet_features(batch_parts: FlatParticles, batch: EventBatch, cfg: GenerationConfig, card: ProcessCard,
                       rows: JetSample) -> dict[str, np.ndarray]:
    from jetad.physics.features import compute_features

    longest = max(int(np.max(rows.event[c], initial=0)) for c in MULTIPLICITY_COLUMNS if c in rows.event)
    full = rows if longest <= cfg.n_constituents else _select(batch_parts, batch, cfg, card, longest)
    return compute_features(full, r=cfg.jet_r)


def _select(batch_parts: FlatParticles, batch: EventBatch, cfg: GenerationConfig, card: ProcessCard,
            n_constituents: int) -> JetSample:
    """The rows of `select_rows` with P = n_constituents (the selection does not depend on P)."""
    label = PROCESS_IDS[cfg.process]
    met = _met(batch_parts)
    if card.selection == "dijet":
        cj = cluster_jets(batch_parts.pt, batch_parts.eta, batch_parts.phi, batch_parts.e, batch_parts.counts,
                          r=cfg.jet_r, min_pt=20.0, n_jets=2, n_constituents=n_constituents)
        lead = cj.jets[:, 0]
        keep = cj.valid[:, 1] & (lead[:, 0] > cfg.pt_min) & (np.abs(lead[:, 1]) < cfg.eta_max)
        columns = {"met": met.astype(np.float32), "met_truth": batch.met_truth.astype(np.float32),
                   "multiplicity_full": cj.multiplicity[:, 0].astype(np.int32),
                   "j2_multiplicity_full": cj.multiplicity[:, 1].astype(np.int32)}
        return dijet_rows(cj, keep, label, columns)
    cj = cluster_jets(batch_parts.pt, batch_parts.eta, batch_parts.phi, batch_parts.e, batch_parts.counts,
                      r=cfg.jet_r, min_pt=cfg.pt_min, n_jets=2, n_constituents=n_constituents,
                      jet_eta_max=cfg.eta_max)
    pt, eta = cj.jets[..., 0], cj.jets[..., 1]
    keep = cj.valid & (pt >= cfg.pt_min) & (pt < cfg.pt_max) & (np.abs(eta) < cfg.eta_max)
    if cfg.match:
        keep &= matched_jets(cj.jets, batch.partons, card, cfg.jet_r)
    return _jet_rows(cj, keep, label, met, batch.met_truth)


def provenance(cfg: GenerationConfig, card: ProcessCard, seed: int, shard: int) -> dict:
    """Every attribute needed to regenerate the sample by hand."""
    return {
        "generator": "pythia8mc",
        "generator_version": pythia_version(),
        "pythia_settings": card.settings,
        "seed": seed,
        "shard": shard,
        "pythia_seed": pythia_seed(seed, shard),
        "label_names": {str(v): k for k, v in PROCESS_IDS.items()},
        "jetad_version": __version__,
        **cfg.to_attrs(),
    }


def generate_sample(
    cfg: GenerationConfig,
    n: int,
    seed: int,
    shard: int = 0,
    batch_size: int = 100,
    max_events: int | None = None,
    progress: Progress | None = None,
    features: bool = False,
) -> JetSample:
    """Generate exactly `n` rows (jets, or events for dijet processes) for one shard.

    The result depends only on (cfg, n, seed, shard, batch_size). `progress(rows_done, n, {})` is called per batch.
    With `features`, `sample.features` holds the substructure features of the full constituent lists
    (`select_rows`), and ``attrs["features_constituents"] = "all"``.
    Raises RuntimeError if fewer than `n` rows pass the selection within `max_events` events
    (default 200 n + 2000), naming the efficiency reached.
    """
    if n <= 0:
        raise ValueError(f"number of rows must be positive, got {n}")
    card = process_card(cfg)
    pythia = make_pythia(card.settings, pythia_seed(seed, shard))
    rng = np.random.default_rng([int(seed), int(shard), 1])
    max_events = max_events or 200 * n + 2000
    parts: list[JetSample] = []
    rows = events = 0
    while rows < n:
        if events >= max_events:
            raise RuntimeError(
                f"{cfg.process}: only {rows} of {n} rows passed the selection in {events} events "
                f"(efficiency {rows / max(events, 1):.2g}); widen the pT window or check the process options"
            )
        batch = next_batch(pythia, batch_size)
        events += len(batch)
        chunk = select_rows(reconstruct(batch, cfg, rng), batch, cfg, card, features=features)
        if len(chunk):
            parts.append(chunk)
            rows += len(chunk)
            if progress:
                progress(min(rows, n), n, {})
    sample = concatenate(parts)[:n]
    sample.attrs = provenance(cfg, card, seed, shard) | {
        "n_events_generated": events,
        "selection_efficiency": rows / events,
        "sigma_gen_mb": float(pythia.infoPython().sigmaGen()),
    }
    if features:
        sample.attrs["features_constituents"] = "all"
    return sample
