"""Pythia 8 event batches as columnar arrays: visible final-state particles, invisible momentum, hard partons.

`Pythia.nextBatch(n)` returns an Awkward array of whole events, so nothing here loops over particles in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from jetad.generate.detector import FlatParticles

__all__ = ["EventBatch", "make_pythia", "next_batch", "pythia_seed", "pythia_version"]

_MAX_PYTHIA_SEED = 900_000_000


def pythia_version() -> str:
    """The installed pythia8mc version."""
    from importlib.metadata import version

    return version("pythia8mc")


def pythia_seed(seed: int, shard: int = 0) -> int:
    """A Pythia seed in [1, 9e8] derived from (seed, shard) alone, so shards do not depend on worker count."""
    ss = np.random.SeedSequence([int(seed), int(shard)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] % (_MAX_PYTHIA_SEED - 1)) + 1


def make_pythia(settings: list[str], seed: int) -> Any:
    """An initialized, quiet Pythia instance; a setting Pythia does not accept is a ValueError naming it."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in [*settings, "Random:setSeed = on", f"Random:seed = {seed}"]:
        if not pythia.readString(line):
            raise ValueError(f"Pythia rejected the setting {line!r} (typo, or not in pythia8mc {pythia_version()})")
    if not pythia.init():
        raise RuntimeError("Pythia initialization failed; check the process settings")
    return pythia


@dataclass
class EventBatch:
    """One batch of events in columns.

    Arguments:
        visible: visible final-state particles (charge and pid filled).
        met_truth: (E,) |vector sum of invisible pT| [GeV] (neutrinos, dark hadrons).
        partons: hard-process partons per event (Awkward: id, status, pt, eta, phi), for truth matching.
    """

    visible: FlatParticles
    met_truth: np.ndarray
    partons: ak.Array

    def __len__(self) -> int:
        return len(self.met_truth)


def _is_invisible(abs_id: np.ndarray) -> np.ndarray:
    """Neutrinos, Hidden Valley stable dark hadrons (51-53) and every 49xxxxx dark-sector particle."""
    return (
        (abs_id == 12) | (abs_id == 14) | (abs_id == 16)
        | ((abs_id >= 51) & (abs_id <= 53))
        | ((abs_id >= 4_900_000) & (abs_id < 5_000_000))
    )


_CHARGE_OFFSET = 1_000_000
#: One table per process for |id| < 1e6 (SM particles and hadrons), whose charges do not depend on the Pythia
#: instance; larger codes (SUSY 1xxxxxx, Hidden Valley 49xxxxx) are always asked of the instance's ParticleData.
_charge_table: np.ndarray | None = None


def _charge_of(pythia: Any, ids: np.ndarray) -> np.ndarray:
    """Electric charge per particle id: a dense lookup table, filled from Pythia's ParticleData on first sight."""
    global _charge_table
    if _charge_table is None:  # made once: an 8 MB temporary per batch grew the heap of long workers by GBs
        _charge_table = np.full(2 * _CHARGE_OFFSET, np.nan, np.float32)
    table = _charge_table
    inside = np.abs(ids) < _CHARGE_OFFSET
    charge = np.zeros(len(ids), dtype=np.float32)
    charge[inside] = table[ids[inside] + _CHARGE_OFFSET]
    unknown = ~inside | np.isnan(charge)
    if unknown.any():
        for pid in np.unique(ids[unknown]):
            q = pythia.particleData.charge(int(pid))
            charge[ids == pid] = q
            if abs(pid) < _CHARGE_OFFSET:
                table[pid + _CHARGE_OFFSET] = q
    return charge


def next_batch(pythia: Any, n_events: int) -> EventBatch:
    """Generate `n_events` events (failed ones are skipped by Pythia) and return them in columns.

    The Awkward event record is flattened once into numpy columns; all selections are flat boolean masks.
    """
    prt = pythia.nextBatch(n_events).prt
    counts = ak.to_numpy(ak.num(prt.id))
    event = np.repeat(np.arange(len(counts)), counts)

    def flat(field: ak.Array) -> np.ndarray:
        return ak.to_numpy(ak.flatten(field))

    pid, status = flat(prt.id), flat(prt.status)
    px, py, pz, e = (flat(prt.p[f]) for f in ("px", "py", "pz", "e"))
    abs_id = np.abs(pid)
    final = status > 0
    invisible = final & _is_invisible(abs_id)
    visible = final & ~invisible

    n = len(counts)
    inv_event = event[invisible]
    met_truth = np.hypot(np.bincount(inv_event, px[invisible], n), np.bincount(inv_event, py[invisible], n))
    vx, vy, vz = px[visible], py[visible], pz[visible]
    pt = np.hypot(vx, vy)
    flat_visible = FlatParticles(
        pt, np.arcsinh(np.divide(vz, pt, out=np.zeros_like(vz), where=pt > 0)), np.arctan2(vy, vx), e[visible],
        np.bincount(event[visible], minlength=n), charge=_charge_of(pythia, pid[visible]), pid=pid[visible],
    )
    hard = (np.abs(status) == 22) | (np.abs(status) == 23)
    h_pt = np.hypot(px[hard], py[hard])
    partons = ak.unflatten(
        ak.zip({"id": pid[hard], "status": np.abs(status[hard]), "pt": h_pt,
                "eta": np.arcsinh(pz[hard] / np.maximum(h_pt, 1e-9)), "phi": np.arctan2(py[hard], px[hard])}),
        np.bincount(event[hard], minlength=n),
    )
    return EventBatch(visible=flat_visible, met_truth=met_truth, partons=partons)
