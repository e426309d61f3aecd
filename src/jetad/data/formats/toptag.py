"""The top-tagging reference data set (Kasieczka et al., 1902.09914) -> jet samples.

Layout: a pandas DataFrame written with ``df.to_hdf(path, key="table", format="table")`` (the fixed format
is read too). One row per jet: columns ``E_i, PX_i, PY_i, PZ_i`` for i = 0..199 (GeV; the leading 200
constituents, pT-sorted, zero-padded), then ``truth_E, truth_PX, truth_PY, truth_PZ`` (the top parton, zero
for QCD), ``ttv`` (0 train, 1 test, 2 validation) and ``is_signal_new`` (1 top, 0 QCD). Only the
constituent columns and ``is_signal_new`` are required; the others, when present, become event columns.

Jets: anti-kT R=0.8, pT in [550, 650] GeV, |eta| < 2, Delphes ATLAS card; the jet four-vector is the sum of
the stored constituents.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from jetad.data.formats.pandas_hdf import PandasHDFFrame
from jetad.data.formats.reader import FormatReader
from jetad.data.formats.source import MAX_ABS_ETA, MAX_ENERGY_GEV, check_physical
from jetad.data.sample import JetSample, SchemaError, jet_four_vectors

__all__ = ["TopTagReader", "read_toptag"]

_COMPONENTS = ("E", "PX", "PY", "PZ")
_LABEL = "is_signal_new"
#: Float32 four-momenta of massless particles give m^2 = E^2 - p^2 of order 1e-7 E^2 either side of 0.
_MASS2_ROUNDING = 1e-4
_EXTRA = {
    "truth_E": "truth_e",
    "truth_PX": "truth_px",
    "truth_PY": "truth_py",
    "truth_PZ": "truth_pz",
    "ttv": "ttv",
}


class TopTagReader(FormatReader):
    """Top-tagging reference HDF5 as one row per jet, constituents as (pT, eta, phi, E).

    Arguments:
        path: the ``.h5`` file (train.h5, val.h5, test.h5).
        key: the DataFrame key (default 'table').
        n_constituents: P, leading constituents kept (default: all in the file, 200); the jet four-vector
            is always the sum of all stored constituents.
    """

    format = "toptag"

    def __init__(self, path: str | Path, *, key: str | None = None, n_constituents: int | None = None):
        super().__init__(path)
        self.frame = PandasHDFFrame(self.path, key, prefer=("table",))
        try:
            self._layout_columns(n_constituents)
        except SchemaError:
            self.close()
            raise
        self.layout = f"pandas {self.frame.layout} key='{self.frame.key}'"
        self.n_rows = self.frame.n_rows
        self.label_source = f"file column '{_LABEL}'"
        self.options = {"key": self.frame.key, "n_constituents": self.n_constituents}
        self.jet_attrs = {
            "jet_algorithm": "antikt",
            "jet_r": 0.8,
            "jet_definition": "anti-kT R=0.8, pT 550-650 GeV, |eta| < 2, Delphes ATLAS card (1902.09914); "
            "jet four-vector = sum of the stored constituents",
        }

    def _layout_columns(self, n_constituents: int | None) -> None:
        columns = self.frame.columns
        where = {c: i for i, c in enumerate(columns)}
        indices = sorted({int(m.group(1)) for c in columns if (m := re.fullmatch(r"E_(\d+)", c))})
        if not indices:
            raise SchemaError(
                f"{self.path}: no constituent columns E_0, PX_0, PY_0, PZ_0, ... (top-tagging layout)"
            )
        n_file = indices[-1] + 1
        needed = [f"{c}_{i}" for i in range(n_file) for c in _COMPONENTS]
        missing = [c for c in [*needed, _LABEL] if c not in where]
        if missing:
            raise SchemaError(
                f"{self.path}: columns missing: {missing[:8]}{' ...' if len(missing) > 8 else ''}"
            )
        self.extra = {name: where[c] for c, name in _EXTRA.items() if c in where}
        self.frame.require_numeric([*needed, _LABEL, *[c for c in _EXTRA if c in where]])
        self.n_file = n_file
        self.n_constituents = n_file if n_constituents is None else int(n_constituents)
        self._four = np.array([where[c] for c in needed]).reshape(n_file, 4)
        self._label = where[_LABEL]

    def _convert(self, start: int, stop: int) -> tuple[JetSample, dict[str, int]]:
        values = self.frame.rows(start, stop)
        e, px, py, pz = (values[:, self._four[:, k]] for k in range(4))
        rows = np.arange(start, stop)[:, None]
        column = {k: (lambda flat, k=k: self.frame.columns[self._four[flat % self.n_file, k]]) for k in range(4)}
        check_physical(self.path, "constituent E", e, (e < 0) | (e > MAX_ENERGY_GEV), rows,
                       f"0 <= E <= {MAX_ENERGY_GEV:g} GeV", column[0])
        big = np.abs(np.stack([px, py, pz])) > MAX_ENERGY_GEV
        check_physical(self.path, "constituent momentum", np.stack([px, py, pz]), big, rows[None],
                       f"|p_i| <= {MAX_ENERGY_GEV:g} GeV")
        m2 = e**2 - px**2 - py**2 - pz**2
        check_physical(self.path, "constituent mass^2 (E^2 - p^2)", m2, (e > 0) & (m2 < -_MASS2_ROUNDING * e**2 - 1e-6),
                       rows, "m^2 >= 0 up to rounding", column[0])
        mask = e > 0
        if not mask.any(axis=1).all():
            row = start + int(np.flatnonzero(~mask.any(axis=1))[0])
            raise SchemaError(f"{self.path}: row {row} has no constituents (all E are 0)")
        pt = np.hypot(px, py)
        eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
        phi = np.arctan2(py, px)
        check_physical(self.path, "constituent eta", eta, mask & (np.abs(eta) > MAX_ABS_ETA), rows,
                       f"|eta| <= {MAX_ABS_ETA:g}", column[3])
        constituents = np.stack([pt, eta, phi, e], axis=-1) * mask[..., None]
        jets = jet_four_vectors(constituents, mask)

        # pT-sort (the file is sorted already; this guarantees the schema) and keep the leading P.
        order = np.argsort(np.where(mask, -pt, np.inf), axis=1, kind="stable")[:, : self.n_constituents]
        constituents = np.take_along_axis(constituents, order[..., None], axis=1)
        mask = np.take_along_axis(mask, order, axis=1)

        raw = values[:, self._label]
        bad = (raw != 0) & (raw != 1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SchemaError(f"{self.path}: row {start + row} has {_LABEL} = {raw[row]}, expected 0 or 1")
        for name, i in self.extra.items():
            col = values[:, i]
            bad = ~np.isin(col, (0, 1, 2)) if name == "ttv" else np.abs(col) > MAX_ENERGY_GEV
            rule = "ttv in {0, 1, 2}" if name == "ttv" else f"|{name}| <= {MAX_ENERGY_GEV:g} GeV"
            check_physical(self.path, f"column '{self.frame.columns[i]}'", col, bad, rows[:, 0], rule)
        event = {
            name: values[:, i].astype(np.int64 if name == "ttv" else np.float32)
            for name, i in self.extra.items()
        }
        event["source_row"] = np.arange(start, stop, dtype=np.int64)
        sample = JetSample(
            constituents=constituents,
            mask=mask,
            jets=jets,
            label=raw.astype(np.int64),
            weight=np.ones(len(values), dtype=np.float32),
            event=event,
        )
        sample.validate(f"{self.path}[{start}:{stop}]")
        return sample, {"n_jets_read": len(values)}

    def close(self) -> None:
        """Close the HDF5 file."""
        self.frame.close()


def read_toptag(path: str | Path, start: int = 0, stop: int | None = None, **options) -> JetSample:
    """Jets ``start:stop`` of a top-tagging HDF5 file as an in-memory sample (options: `TopTagReader`)."""
    with TopTagReader(path, **options) as reader:
        sample = reader.read(start, stop)
        sample.attrs = reader.provenance()
    return sample
