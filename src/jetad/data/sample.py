"""The one in-memory jet type: `JetSample`, a dataclass of numpy arrays for N jets.

Every stage of jetad (generation, readers, features, detectors, evaluation) speaks this type, so a
detector never needs to know whether its jets came from Pythia or from an LHC Olympics file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CONSTITUENT_FIELDS", "JET_FIELDS", "JetSample", "SchemaError", "check_real_constituents"]

CONSTITUENT_FIELDS = ("pt", "eta", "phi", "e")
JET_FIELDS = ("pt", "eta", "phi", "m")
#: Jet four-vector columns addressable by name in `JetSample.column`.
JET_COLUMNS = {"pt": 0, "eta": 1, "phi": 2, "mass": 3}


class SchemaError(ValueError):
    """A file or array does not follow the JetSample schema; the message names the source and the problem."""


@dataclass
class JetSample:
    """N jets with their constituents, substructure features, labels, weights and provenance.

    Arguments:
        constituents: (N, P, 4) float32, per constituent (pT [GeV], eta, phi, E [GeV]), pT-sorted, zero-padded.
        mask: (N, P) bool, True for a real constituent.
        jets: (N, 4) float32, jet (pT [GeV], eta, phi, m [GeV]).
        label: (N,) int64, 0 background / 1 signal, or a process id (names in ``attrs["label_names"]``).
        weight: (N,) float32 event weights.
        features: named (N,) columns of substructure observables.
        event: named event-level columns, (N,) or (N, ...): mjj, MET, the second jet of a dijet event.
        attrs: provenance (generator settings, seed, jet definition, detector model, versions).
    """

    constituents: np.ndarray
    mask: np.ndarray
    jets: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    event: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.constituents = np.asarray(self.constituents, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=bool)
        self.jets = np.asarray(self.jets, dtype=np.float32)
        self.label = np.asarray(self.label, dtype=np.int64)
        self.weight = np.asarray(self.weight, dtype=np.float32)

    @classmethod
    def from_constituents(
        cls,
        constituents: np.ndarray,
        mask: np.ndarray,
        jets: np.ndarray | None = None,
        label: np.ndarray | int = 0,
        weight: np.ndarray | None = None,
        **kwargs: Any,
    ) -> JetSample:
        """Build a sample, computing jet four-vectors from the constituents when `jets` is not given."""
        constituents = np.asarray(constituents, dtype=np.float32)
        n = len(constituents)
        if jets is None:
            jets = jet_four_vectors(constituents, mask)
        label_arr = np.full(n, label, dtype=np.int64) if np.isscalar(label) else np.asarray(label)
        weight_arr = np.ones(n, dtype=np.float32) if weight is None else weight
        return cls(constituents, mask, jets, label_arr, weight_arr, **kwargs)

    def __len__(self) -> int:
        return len(self.jets)

    def describe(self, default: str = "sample") -> str:
        """How errors name this sample: the file it was read from, else `default`."""
        return str(self.attrs.get("source", default))

    @property
    def n_constituents(self) -> int:
        """P, the padded number of constituents per jet."""
        return self.constituents.shape[1]

    def subset(self, index: np.ndarray | slice) -> JetSample:
        """The jets selected by a slice, an integer index array or a boolean mask."""
        return JetSample(
            constituents=self.constituents[index],
            mask=self.mask[index],
            jets=self.jets[index],
            label=self.label[index],
            weight=self.weight[index],
            features={k: v[index] for k, v in self.features.items()},
            event={k: v[index] for k, v in self.event.items()},
            attrs=dict(self.attrs),
        )

    __getitem__ = subset

    def column(self, name: str, source: str | None = None) -> np.ndarray:
        """(N,) float64 values of a named column: jet 'pt'/'eta'/'phi'/'mass', else a feature or event column."""
        source = source or self.describe()
        if name in JET_COLUMNS:
            col = self.jets[:, JET_COLUMNS[name]]
        elif name in self.features:
            col = self.features[name]
        elif name in self.event:
            col = self.event[name]
        else:
            raise SchemaError(f"{source}: column {name!r} not found in jets {tuple(JET_COLUMNS)}, features "
                              f"{sorted(self.features)} or event {sorted(self.event)}")
        col = np.asarray(col, dtype=np.float64)
        if col.shape != (len(self),):
            raise SchemaError(f"{source}: column {name!r} has shape {col.shape}; need one value per jet")
        bad = ~np.isfinite(col)
        if bad.any():
            raise SchemaError(f"{source}: column {name!r} has {int(bad.sum())} NaN/inf values")
        return col

    def feature_matrix(self, names: list[str] | tuple[str, ...], source: str = "sample") -> np.ndarray:
        """(N, len(names)) float32 matrix of feature columns; a missing column is a clear error."""
        missing = [n for n in names if n not in self.features]
        if missing:
            looks_like_file = source.split("[")[0].endswith(".h5") or "/" in source
            hint = f"; run 'jetad features {source.split('[')[0]}'" if looks_like_file else ""
            raise SchemaError(f"{source}: features {missing} missing (have {sorted(self.features)}){hint}")
        return np.stack([self.features[n] for n in names], axis=1).astype(np.float32)

    def validate(self, source: str = "sample") -> JetSample:
        """Check shapes, dtypes and finiteness; raise SchemaError naming `source` and the problem."""
        n = len(self.jets)
        checks = {
            "constituents": (self.constituents, 3),
            "mask": (self.mask, 2),
            "jets": (self.jets, 2),
            "label": (self.label, 1),
            "weight": (self.weight, 1),
        }
        for name, (arr, ndim) in checks.items():
            if arr.ndim != ndim:
                raise SchemaError(f"{source}: {name} has {arr.ndim} dimensions, expected {ndim}")
            if len(arr) != n:
                raise SchemaError(f"{source}: {name} has {len(arr)} rows but jets has {n}")
        if self.constituents.shape[2] != 4:
            raise SchemaError(
                f"{source}: constituents has shape {self.constituents.shape}, expected (N, P, 4) "
                f"with columns {CONSTITUENT_FIELDS}"
            )
        if self.jets.shape[1] != 4:
            raise SchemaError(f"{source}: jets has shape {self.jets.shape}, expected (N, 4) {JET_FIELDS}")
        if self.mask.shape != self.constituents.shape[:2]:
            raise SchemaError(
                f"{source}: mask shape {self.mask.shape} does not match constituents {self.constituents.shape}"
            )
        for name, arr in [("constituents", self.constituents), ("jets", self.jets), ("weight", self.weight)]:
            _check_finite(arr, f"{source}: {name}")
        for group, cols in (("features", self.features), ("event", self.event)):
            for key, arr in cols.items():
                if len(arr) != n:
                    raise SchemaError(f"{source}: {group}/{key} has {len(arr)} rows but jets has {n}")
                if np.issubdtype(np.asarray(arr).dtype, np.floating):
                    _check_finite(arr, f"{source}: {group}/{key}")
        if n and self.mask.shape[1] and not self.mask.any(axis=1).all():
            empty = np.flatnonzero(~self.mask.any(axis=1))
            raise SchemaError(f"{source}: {len(empty)} jets have no constituents (first at row {empty[0]})")
        check_real_constituents(self.constituents, self.mask, f"{source}: constituents")
        if "j2_constituents" in self.event and "j2_mask" in self.event:
            j2, j2_mask = np.asarray(self.event["j2_constituents"]), np.asarray(self.event["j2_mask"], dtype=bool)
            if j2.ndim != 3 or j2.shape[2:] != (4,) or j2_mask.shape != j2.shape[:2]:
                raise SchemaError(f"{source}: event/j2_constituents {j2.shape} and event/j2_mask {j2_mask.shape} "
                                  "must be (N, P, 4) and (N, P)")
            check_real_constituents(j2, j2_mask, f"{source}: event/j2_constituents")
        _check_labels(self.label, self.attrs.get("label_names"), source)
        return self


def check_real_constituents(
    constituents: np.ndarray, mask: np.ndarray, what: str,
    fix: str = "the file is inconsistent: regenerate or reconvert it",
) -> None:
    """A constituent marked real (mask True) must have pT > 0 (and E >= 0); else a SchemaError naming `what`.

    An all-zero constituent counted as real makes multiplicity and shapes contradict the jet four-vector.
    """
    if not constituents.size:
        return
    bad = mask & ~((constituents[..., 0] > 0) & (constituents[..., 3] >= 0))
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise SchemaError(
            f"{what}: {int(bad.sum())} constituents in {len(rows)} jets are marked real (mask True) but have "
            f"pT <= 0 or E < 0 (first in row {rows[0]}); {fix}"
        )


def _check_labels(label: np.ndarray, names: Any, source: str) -> None:
    """Labels are 0/1 or process ids >= 0, and when the file has a name table, ids from that table."""
    if not label.size:
        return
    if (label < 0).any():
        rows = np.flatnonzero(label < 0)
        raise SchemaError(f"{source}: label has {len(rows)} negative values (first {label[rows[0]]} in row "
                          f"{rows[0]}); labels are 0 background, 1 signal or a process id >= 0")
    if not isinstance(names, dict) or not names:
        return
    try:
        known = np.array(sorted(int(k) for k in names), dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise SchemaError(f"{source}: attribute 'label_names' has non-integer ids {sorted(map(str, names))}; "
                          "expected {'0': 'qcd', ...}") from err
    unknown = ~np.isin(label, known)
    if unknown.any():
        rows = np.flatnonzero(unknown)
        raise SchemaError(f"{source}: label has {len(rows)} values not in label_names {known.tolist()} (first "
                          f"{label[rows[0]]} in row {rows[0]}); the labels and the name table disagree: "
                          "regenerate the file or fix its label_names")


def _check_finite(arr: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        row = np.unravel_index(np.flatnonzero(bad)[0], arr.shape)[0]
        raise SchemaError(f"{what} has {int(bad.sum())} NaN/inf values (first in row {row})")


def jet_four_vectors(constituents: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, 4) jet (pT, eta, phi, m) from the sum of masked constituent four-momenta (pT, eta, phi, E)."""
    pt, eta, phi, e = (constituents[..., i].astype(np.float64) for i in range(4))
    w = mask.astype(np.float64)
    px = (w * pt * np.cos(phi)).sum(1)
    py = (w * pt * np.sin(phi)).sum(1)
    pz = (w * pt * np.sinh(eta)).sum(1)
    en = (w * e).sum(1)
    return np.stack(ptetaphim(px, py, pz, en), axis=1).astype(np.float32)


def ptetaphim(px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, ...]:
    """(pT, eta, phi, m) from Cartesian four-momenta [GeV]; eta = 0 where pT = 0, m clipped at 0."""
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    return pt, eta, np.arctan2(py, px), np.sqrt(np.clip(e**2 - px**2 - py**2 - pz**2, 0.0, None))


def concatenate(samples: list[JetSample]) -> JetSample:
    """One sample holding the jets of several, padding constituents to the largest P."""
    if not samples:
        raise SchemaError("concatenate: no samples given")
    p = max(s.n_constituents for s in samples)

    def pad(arr: np.ndarray) -> np.ndarray:
        extra = p - arr.shape[1]
        return np.pad(arr, [(0, 0), (0, extra)] + [(0, 0)] * (arr.ndim - 2)) if extra else arr

    feature_keys = set.intersection(*(set(s.features) for s in samples))
    event_keys = set.intersection(*(set(s.event) for s in samples))
    return JetSample(
        constituents=np.concatenate([pad(s.constituents) for s in samples]),
        mask=np.concatenate([pad(s.mask) for s in samples]),
        jets=np.concatenate([s.jets for s in samples]),
        label=np.concatenate([s.label for s in samples]),
        weight=np.concatenate([s.weight for s in samples]),
        features={k: np.concatenate([s.features[k] for s in samples]) for k in sorted(feature_keys)},
        event={k: np.concatenate([s.event[k] for s in samples]) for k in sorted(event_keys)},
        attrs=dict(samples[0].attrs),
    )
