"""LHC Olympics 2020 R&D / black-box event files -> anti-kT R=1.0 dijet samples (2101.08320).

Layout: a pandas DataFrame written with ``df.to_hdf(path, key="df")`` (fixed format; ``format="table"`` is
read too). One row per event: up to 700 particles as ``[pT1, eta1, phi1, pT2, ...]`` (GeV), zero-padded,
then optionally a label column (1 signal, 0 background) - 2100 or 2101 columns in the public files; any
3 * n (+ 1) columns are accepted. Column names are ignored, only their order matters.

Particles are taken massless (E = pT cosh eta) and clustered with `cluster_jets`; the leading jet becomes the
sample's jet and the second one is kept in event columns, with mjj and the missing transverse momentum.
Events with fewer than two jets are dropped and counted (attrs ``n_events_without_two_jets``); an event with
no particle at all is a malformed file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jetad.data.clustering import cluster_jets, dijet_rows
from jetad.data.formats.pandas_hdf import PandasHDFFrame
from jetad.data.formats.reader import FormatReader
from jetad.data.formats.source import MAX_ABS_ETA, MAX_ABS_PHI, MAX_ENERGY_GEV, check_physical
from jetad.data.sample import JetSample, SchemaError

__all__ = ["LHCOReader", "read_lhco"]


class LHCOReader(FormatReader):
    """LHCO R&D / black-box HDF5 events as one row per event: leading jet + second jet, mjj, MET.

    Arguments:
        path: the ``.h5`` file.
        key: the DataFrame key (default: the only one, or 'df').
        n_constituents: P, leading constituents kept per jet.
        jet_r: anti-kT radius (1.0 in the LHCO papers).
        jet_min_pt: inclusive-jet pT threshold [GeV] before the two leading jets are taken.
        label: a constant label for every event, overriding the file's label column (e.g. 0 for a
            background-only black box); by default the file's column, or 0 when it has none.
    """

    format = "lhco"

    def __init__(
        self,
        path: str | Path,
        *,
        key: str | None = None,
        n_constituents: int = 200,
        jet_r: float = 1.0,
        jet_min_pt: float = 20.0,
        label: int | None = None,
    ):
        super().__init__(path)
        self.frame = PandasHDFFrame(self.path, key, prefer=("df",))
        self.layout = f"pandas {self.frame.layout} key='{self.frame.key}'"
        self.n_rows = self.frame.n_rows
        ncols = len(self.frame.columns)
        try:
            if ncols % 3 == 2 or ncols < 3:
                raise SchemaError(
                    f"{self.path}: {ncols} columns; LHCO rows are 3 x n particle columns (pT, eta, phi), "
                    "optionally + 1 label column (2100 or 2101 in the public files)"
                )
            self.frame.require_numeric(self.frame.columns)
        except SchemaError:
            self.close()
            raise
        self.n_particles = ncols // 3
        self.has_label = ncols % 3 == 1
        self.label = label
        if label is not None:
            self.label_source = "option"
        elif self.has_label:
            self.label_source = f"file column '{self.frame.columns[-1]}'"
        self.options = {
            "key": self.frame.key,
            "n_constituents": int(n_constituents),
            "jet_r": float(jet_r),
            "jet_min_pt": float(jet_min_pt),
            "label": label,
        }
        self.jet_attrs = {
            "jet_algorithm": "antikt",
            "jet_r": float(jet_r),
            "jet_min_pt": float(jet_min_pt),
            "jet_definition": f"anti-kT R={jet_r:g} (FastJet) on massless particles, inclusive pT > "
            f"{jet_min_pt:g} GeV; jets = leading jet, event/j2_* = second jet",
            "max_particles": self.n_particles,
        }

    def _convert(self, start: int, stop: int) -> tuple[JetSample, dict[str, int]]:
        values = self.frame.rows(start, stop)
        n = len(values)
        particles = values[:, : 3 * self.n_particles].reshape(n, self.n_particles, 3)
        pt, eta, phi = particles[..., 0], particles[..., 1], particles[..., 2]
        real = pt > 0
        rows = np.arange(start, stop)[:, None]
        for k, what, quantity, bad, rule in (
            (0, "particle pT", pt, (pt < 0) | (pt > MAX_ENERGY_GEV), f"0 <= pT <= {MAX_ENERGY_GEV:g} GeV"),
            (1, "particle eta", eta, real & (np.abs(eta) > MAX_ABS_ETA), f"|eta| <= {MAX_ABS_ETA:g}"),
            (2, "particle phi", phi, real & (np.abs(phi) > MAX_ABS_PHI), "|phi| <= 2 pi"),
        ):
            def column(flat: int, k: int = k) -> str:
                """The source column of flat entry `flat` of this quantity."""
                return self.frame.columns[3 * (flat % self.n_particles) + k]

            check_physical(self.path, what, quantity, bad, rows, rule, column=column)
        counts = real.sum(axis=1)
        if (counts == 0).any():
            row = start + int(np.flatnonzero(counts == 0)[0])
            raise SchemaError(f"{self.path}: row {row} has no particles (all pT are 0)")

        if self.label is not None:
            label = np.full(n, self.label, dtype=np.int64)
        elif self.has_label:
            raw = values[:, -1]
            bad = (raw != 0) & (raw != 1)
            if bad.any():
                row = start + int(np.flatnonzero(bad)[0])
                raise SchemaError(f"{self.path}: row {row} has label {raw[row - start]:g}, expected 0 or 1 "
                                  f"({int(bad.sum())} such rows, column '{self.frame.columns[-1]}')")
            label = raw.astype(np.int64)
        else:
            label = np.zeros(n, dtype=np.int64)

        clustered = cluster_jets(
            pt[real],
            eta[real],
            phi[real],
            pt[real] * np.cosh(eta[real]),
            counts,
            r=self.options["jet_r"],
            min_pt=self.options["jet_min_pt"],
            n_jets=2,
            n_constituents=self.options["n_constituents"],
        )
        met = np.hypot((pt * np.cos(phi)).sum(axis=1), (pt * np.sin(phi)).sum(axis=1))
        keep = clustered.valid[:, 1]
        sample = dijet_rows(clustered, keep, label, {
            "met": met.astype(np.float32), "source_row": np.arange(start, stop, dtype=np.int64),
        })
        sample.validate(f"{self.path}[{start}:{stop}]")
        return sample, {"n_events_read": n, "n_events_without_two_jets": int(n - keep.sum())}

    def close(self) -> None:
        """Close the HDF5 file."""
        self.frame.close()


def read_lhco(path: str | Path, start: int = 0, stop: int | None = None, **options) -> JetSample:
    """Events ``start:stop`` of an LHCO HDF5 file as an in-memory dijet sample (options: `LHCOReader`)."""
    with LHCOReader(path, **options) as reader:
        sample = reader.read(start, stop)
        sample.attrs = reader.provenance()
    return sample
