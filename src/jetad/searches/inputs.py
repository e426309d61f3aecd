"""What a resonant search reads of a dijet sample: feature columns, else the derived LHCO dijet features."""

from __future__ import annotations

import numpy as np

from jetad.data.sample import JetSample, SchemaError
from jetad.physics.dijet import dijet_features

__all__ = ["DEFAULT_SEARCH_FEATURES", "feature_sample", "search_features"]

#: The CATHODE (2109.00546) classifier inputs: lighter jet mass, jet mass difference [GeV], both tau21s.
DEFAULT_SEARCH_FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")


def search_features(sample: JetSample, names: tuple[str, ...] | list[str], source: str | None = None) -> np.ndarray:
    """(N, len(names)) float32 search inputs: feature/event columns, else the derived LHCO dijet features.

    Derived (from `jetad.physics.dijet.dijet_features`, jets ordered by mass): mjj, mj1, delta_mj,
    tau21_j1, tau21_j2 (and tau32/sd_mass pairs when present), plus ``mj2`` = mj1 + delta_mj [GeV].
    A column found nowhere is a SchemaError naming it.
    """
    source = source or sample.describe()
    derived: dict[str, np.ndarray] | None = None
    cols = []
    for name in names:
        if name in sample.features or (name in sample.event and np.ndim(sample.event[name]) == 1):
            cols.append(sample.column(name, source))
            continue
        if derived is None:
            derived = _derived_features(sample)
        if name not in derived:
            raise SchemaError(
                f"{source}: feature column {name!r} not found in features {sorted(sample.features)}, event "
                f"{sorted(sample.event)} or the derived dijet features {sorted(derived)}; run 'jetad features' "
                "or choose other features"
            )
        col = np.asarray(derived[name], dtype=np.float64)
        if not np.isfinite(col).all():
            raise SchemaError(f"{source}: derived feature {name!r} has NaN/inf values")
        cols.append(col)
    return np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((len(sample), 0), np.float32)


def _derived_features(sample: JetSample) -> dict[str, np.ndarray]:
    taus = "tau21" in sample.features and "j2_tau21" in sample.features
    try:
        out = dijet_features(sample, taus=taus)
    except SchemaError:
        return {}
    out["mj2"] = out["mj1"] + out["delta_mj"]
    return out


def feature_sample(x: np.ndarray, names: tuple[str, ...], mjj: np.ndarray | None = None,
                   source: str = "search inputs") -> JetSample:
    """A constituent-free JetSample whose features are the columns of `x` (and event mjj), for detectors."""
    n = len(x)
    event = {} if mjj is None else {"mjj": np.asarray(mjj, dtype=np.float64)}
    return JetSample(
        constituents=np.zeros((n, 0, 4), np.float32), mask=np.zeros((n, 0), bool), jets=np.zeros((n, 4), np.float32),
        label=np.zeros(n, np.int64), weight=np.ones(n, np.float32),
        features={name: x[:, i] for i, name in enumerate(names)}, event=event, attrs={"source": source},
    )
