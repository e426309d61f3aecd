"""CMS NanoAOD / PFNano ROOT files -> one row per selected fat jet with its PF-candidate constituents.

Layout (TTree ``Events``, NanoAOD branch naming, one entry per event):

- ``nFatJet``; ``FatJet_pt``, ``FatJet_eta``, ``FatJet_phi``, ``FatJet_mass`` (jagged, GeV);
- ``nPFCands``; ``PFCands_pt``, ``PFCands_eta``, ``PFCands_phi``, ``PFCands_mass`` (jagged);
- ``nFatJetPFCands``; ``FatJetPFCands_jetIdx`` (index of the fat jet in the event) and
  ``FatJetPFCands_pFCandsIdx`` (index into PFCands), one entry per (jet, constituent) pair, as in PFNano.

The jet four-vector is the stored FatJet one; constituents are (pT, eta, phi, E) with
E = sqrt((pT cosh eta)^2 + m^2), pT-sorted and zero-padded to P. Labels are not in the file: give one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from jetad.data.formats.reader import FormatReader
from jetad.data.formats.source import MAX_ABS_ETA, MAX_ENERGY_GEV, ROOT_SIGNATURE, _signature, check_physical
from jetad.data.sample import JetSample, SchemaError

__all__ = ["BRANCHES", "NanoAODReader", "read_nanoaod"]

_JET = ("FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass")
_CAND = ("PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass")
_MAP = ("FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx")
BRANCHES = (*_JET, *_CAND, *_MAP)
#: NanoAOD stores masses with a reduced mantissa; anything below -10 MeV is not rounding.
_MASS_ROUNDING = 0.01


def _one_line(err: BaseException) -> str:
    """uproot's messages span lines; errors here are one line."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


class NanoAODReader(FormatReader):
    """NanoAOD-like ROOT events as one row per fat jet with pT > `pt_min` and |eta| < `eta_max`.

    Arguments:
        path: the ``.root`` file.
        tree: the TTree name.
        pt_min: fat-jet pT threshold [GeV].
        eta_max: fat-jet |eta| bound.
        n_constituents: P, leading PF candidates kept per jet.
        label: the label of every jet (the file has none); 0 if not given (attrs label_source='none').
    """

    format = "nanoaod"

    def __init__(
        self,
        path: str | Path,
        *,
        tree: str = "Events",
        pt_min: float = 200.0,
        eta_max: float = 2.4,
        n_constituents: int = 100,
        label: int | None = None,
    ):
        import uproot

        super().__init__(path)
        if _signature(self.path)[:4] != ROOT_SIGNATURE:
            raise SchemaError(f"{self.path}: not a ROOT file (no 'root' signature)")
        try:
            self._file = uproot.open(self.path)
        except Exception as err:  # uproot raises OSError, ValueError, KeyError, struct.error, ... on damage
            raise SchemaError(f"{self.path}: truncated or corrupt ROOT file (cannot be opened: {_one_line(err)})") \
                from err
        try:
            size, end = self.path.stat().st_size, int(self._file.file.fEND)
            if size < end:
                raise SchemaError(f"{self.path}: truncated or corrupt ROOT file ({size} bytes, its header says "
                                  f"{end}); copy or download it again")
            self._tree = self._open_tree(tree)
        except SchemaError:
            self.close()
            raise
        except Exception as err:  # a damaged directory, TTree or branch header
            self.close()
            raise SchemaError(f"{self.path}: truncated or corrupt ROOT file ({_one_line(err)})") from err
        self.n_rows = int(self._tree.num_entries)
        self.layout = f"ROOT TTree '{tree}'"
        self.label = label
        self.label_source = "option" if label is not None else "none"
        self.options = {
            "tree": tree,
            "pt_min": float(pt_min),
            "eta_max": float(eta_max),
            "n_constituents": int(n_constituents),
            "label": label,
        }
        self.jet_attrs = {
            "jet_algorithm": "antikt",
            "jet_r": 0.8,
            "jet_definition": f"CMS FatJet (anti-kT R=0.8, PUPPI) with pT > {pt_min:g} GeV, "
            f"|eta| < {eta_max:g}; constituents from FatJetPFCands",
        }

    def _open_tree(self, name: str) -> Any:
        keys = [k.split(";")[0] for k in self._file.keys(recursive=False)]
        if name not in keys:
            raise SchemaError(f"{self.path}: no tree '{name}' (has {keys}); pass tree=... to choose one")
        try:
            tree = self._file[name]
            names = set(tree.keys()) if hasattr(tree, "keys") else set()
        except Exception as err:  # the key is listed, so the object itself is damaged
            raise SchemaError(f"{self.path}: truncated or corrupt ROOT file ('{name}' is listed but cannot be read: "
                              f"{_one_line(err)})") from err
        if not hasattr(tree, "num_entries") or not hasattr(tree, "keys"):
            raise SchemaError(f"{self.path}: '{name}' is not a TTree")
        missing = [b for b in BRANCHES if b not in names]
        if missing:
            raise SchemaError(
                f"{self.path}: branches missing from '{name}': {missing} (NanoAOD/PFNano naming)"
            )
        for b in BRANCHES:
            interp = getattr(tree[b], "interpretation", None)
            content = getattr(interp, "content", None)
            dtype = getattr(content, "to_dtype", None)
            if dtype is None or np.dtype(dtype).kind not in "fiub":
                raise SchemaError(
                    f"{self.path}: branch '{b}' is {getattr(tree[b], 'typename', interp)}, expected a jagged "
                    "array of numbers (one value per object)"
                )
        if tree.num_entries == 0:
            raise SchemaError(f"{self.path}: tree '{name}' has no entries")
        return tree

    def _arrays(self, start: int, stop: int) -> ak.Array:
        try:
            return self._tree.arrays(BRANCHES, entry_start=start, entry_stop=stop, library="ak")
        except Exception as err:
            raise SchemaError(
                f"{self.path}: truncated or corrupt ROOT file (entries {start}:{stop} cannot be read: {_one_line(err)})"
            ) from err

    def _convert(self, start: int, stop: int) -> tuple[JetSample, dict[str, int]]:
        return self._convert_arrays(self._arrays(start, stop), start)

    def chunks(self, chunk_size: int = 10_000) -> Iterator[tuple[int, JetSample]]:
        """Yield (entries done, sample) for `chunk_size` entries at a time (uproot step_size)."""
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive number of entries, got {chunk_size}")
        self.stats = {}
        start = 0
        batches = self._tree.iterate(BRANCHES, step_size=int(chunk_size), library="ak")
        while True:
            try:
                arrays = next(batches)
            except StopIteration:
                return
            except Exception as err:
                raise SchemaError(
                    f"{self.path}: truncated or corrupt ROOT file (entries from {start} cannot be read: "
                    f"{_one_line(err)})"
                ) from err
            sample, counts = self._convert_arrays(arrays, start)
            for key, value in counts.items():
                self.stats[key] = self.stats.get(key, 0) + int(value)
            start += len(arrays)
            yield start, sample

    def _flat(self, arrays: ak.Array, name: str, start: int) -> np.ndarray:
        flat = ak.to_numpy(ak.flatten(arrays[name], axis=None))
        if flat.dtype.kind == "f" and not np.isfinite(flat).all():
            counts = ak.to_numpy(ak.num(arrays[name], axis=1))
            entry = start + int(
                np.searchsorted(np.cumsum(counts), np.flatnonzero(~np.isfinite(flat))[0], "right")
            )
            raise SchemaError(f"{self.path}: branch '{name}' has NaN/inf values (first in entry {entry})")
        return flat

    def _counts(self, arrays: ak.Array, names: tuple[str, ...], start: int) -> np.ndarray:
        counts = [ak.to_numpy(ak.num(arrays[b], axis=1)) for b in names]
        for b, c in zip(names[1:], counts[1:], strict=True):
            if not np.array_equal(c, counts[0]):
                entry = start + int(np.flatnonzero(c != counts[0])[0])
                raise SchemaError(f"{self.path}: '{b}' and '{names[0]}' differ in length at entry {entry}")
        return counts[0].astype(np.int64)

    def _convert_arrays(self, arrays: ak.Array, start: int) -> tuple[JetSample, dict[str, int]]:
        n_events = len(arrays)
        n_jet = self._counts(arrays, _JET, start)
        n_cand = self._counts(arrays, _CAND, start)
        n_map = self._counts(arrays, _MAP, start)
        jpt, jeta, jphi, jm = (self._flat(arrays, b, start) for b in _JET)
        cpt, ceta, cphi, cm = (self._flat(arrays, b, start) for b in _CAND)
        for prefix, n, pt, eta, mass in (("FatJet", n_jet, jpt, jeta, jm), ("PFCands", n_cand, cpt, ceta, cm)):
            entries = start + np.repeat(np.arange(n_events), n)
            check_physical(self.path, f"branch {prefix}_pt", pt, (pt < 0) | (pt > MAX_ENERGY_GEV), entries,
                           f"0 <= pT <= {MAX_ENERGY_GEV:g} GeV")
            check_physical(self.path, f"branch {prefix}_eta", eta, np.abs(eta) > MAX_ABS_ETA, entries,
                           f"|eta| <= {MAX_ABS_ETA:g}")
            check_physical(self.path, f"branch {prefix}_mass", mass,
                           (mass < -_MASS_ROUNDING) | (mass > MAX_ENERGY_GEV), entries, "mass >= 0 up to rounding")
        jet_idx, cand_idx = (self._flat(arrays, b, start).astype(np.int64) for b in _MAP)

        # Event-local indices of the mapping -> global indices into this chunk's flat jet / candidate arrays.
        map_event = np.repeat(np.arange(n_events), n_map)
        for idx, n, what in ((jet_idx, n_jet, "jetIdx"), (cand_idx, n_cand, "pFCandsIdx")):
            bad = (idx < 0) | (idx >= n[map_event])
            if bad.any():
                entry = start + int(map_event[np.flatnonzero(bad)[0]])
                raise SchemaError(f"{self.path}: FatJetPFCands_{what} out of range in entry {entry}")
        jet_first = np.cumsum(n_jet) - n_jet
        global_jet = jet_first[map_event] + jet_idx
        global_cand = (np.cumsum(n_cand) - n_cand)[map_event] + cand_idx

        selected = (jpt > self.options["pt_min"]) & (np.abs(jeta) < self.options["eta_max"])
        row_of_jet = np.cumsum(selected) - 1  # output row of each selected jet
        n_out, p = int(selected.sum()), self.options["n_constituents"]
        keep = selected[global_jet]
        gjet, gcand = global_jet[keep], global_cand[keep]

        # Constituents grouped by jet, pT-descending inside each jet; position = rank inside its jet.
        order = np.lexsort((-cpt[gcand], gjet))
        gjet, gcand = gjet[order], gcand[order]
        first = np.flatnonzero(np.r_[True, gjet[1:] != gjet[:-1]]) if len(gjet) else np.zeros(0, np.int64)
        rank = np.arange(len(gjet)) - np.repeat(first, np.diff(np.r_[first, len(gjet)]))
        inside = rank < p
        rows, slots, cands = row_of_jet[gjet[inside]], rank[inside], gcand[inside]

        constituents = np.zeros((n_out, p, 4), dtype=np.float32)
        mask = np.zeros((n_out, p), dtype=bool)
        energy = np.sqrt((cpt[cands] * np.cosh(ceta[cands])) ** 2 + cm[cands] ** 2)
        constituents[rows, slots] = np.stack([cpt[cands], ceta[cands], cphi[cands], energy], axis=-1)
        mask[rows, slots] = True
        if n_out and not mask.any(axis=1).all():
            lost = np.flatnonzero(selected)[np.flatnonzero(~mask.any(axis=1))[0]]
            entry = int(np.searchsorted(np.cumsum(n_jet), lost, "right"))
            raise SchemaError(
                f"{self.path}: fat jet {int(lost - jet_first[entry])} of entry {start + entry} passes the "
                "selection but has no FatJetPFCands constituents"
            )

        jet_event = np.repeat(np.arange(n_events), n_jet)
        sel = np.flatnonzero(selected)
        sample = JetSample(
            constituents=constituents,
            mask=mask,
            jets=np.stack([jpt[sel], jeta[sel], jphi[sel], jm[sel]], axis=1),
            label=np.full(n_out, 0 if self.label is None else self.label, dtype=np.int64),
            weight=np.ones(n_out, dtype=np.float32),
            event={
                "source_entry": (start + jet_event[sel]).astype(np.int64),
                "fatjet_index": (sel - jet_first[jet_event[sel]]).astype(np.int64),
            },
        )
        sample.validate(f"{self.path}[{start}:{start + n_events}]")
        return sample, {"n_events_read": n_events, "n_fatjets_read": len(jpt), "n_fatjets_selected": n_out}

    def close(self) -> None:
        """Close the ROOT file."""
        self._file.close()


def read_nanoaod(path: str | Path, start: int = 0, stop: int | None = None, **options) -> JetSample:
    """Fat jets of entries ``start:stop`` of a NanoAOD file, in memory (options: `NanoAODReader`)."""
    with NanoAODReader(path, **options) as reader:
        sample = reader.read(start, stop)
        sample.attrs = reader.provenance()
    return sample
