"""Dijet event features of the LHC Olympics (2101.08320): the dijet mass, and the two jets ordered by mass.

These are the inputs of the weakly supervised resonant searches (CATHODE 2109.00546 uses mjj, mJ1,
mJ2 - mJ1 and both tau21s) and of the black-box readers.
"""

from __future__ import annotations

import numpy as np

from jetad.data.sample import JetSample, SchemaError

__all__ = ["DIJET_FEATURES", "dijet_features"]

#: The CATHODE feature set with the conditioning mass: mjj, lighter jet mass, mass difference [GeV], tau21s.
DIJET_FEATURES = ("mjj", "mj1", "delta_mj", "tau21_j1", "tau21_j2")


def dijet_features(sample: JetSample, taus: bool = True) -> dict[str, np.ndarray]:
    """The LHCO high-level features per event, jets ordered by mass: J1 the lighter, J2 the heavier.

    Returns float32 columns ``mjj``, ``mj1`` (lighter jet mass), ``delta_mj`` (mJ2 - mJ1) [GeV], and with
    `taus` ``tau21_j1``, ``tau21_j2``; plus ``tau32_j1/_j2`` and ``sd_mass_j1/_j2`` when the features exist
    (2101.08320, CATHODE 2109.00546). Masses come from event ``j1_m`` / ``j2_m`` (the leading jet's from
    ``sample.jets`` when ``j1_m`` is absent); taus from features ``tau21`` / ``j2_tau21``.
    """
    where = sample.describe()
    if "mjj" not in sample.event or "j2_m" not in sample.event:
        raise SchemaError(f"{where}: event/mjj or event/j2_m missing; not a dijet sample")
    m_lead = np.asarray(sample.event.get("j1_m", sample.jets[:, 3]), dtype=np.float64)
    m_sub = np.asarray(sample.event["j2_m"], dtype=np.float64)
    lead_lighter = m_lead <= m_sub
    out = {
        "mjj": np.asarray(sample.event["mjj"]),
        "mj1": np.minimum(m_lead, m_sub),
        "delta_mj": np.abs(m_sub - m_lead),
    }
    pairs = {"tau21": taus, "tau32": False, "sd_mass": False}
    for name, required in pairs.items():
        have = name in sample.features and f"j2_{name}" in sample.features
        if not have:
            if required:
                raise SchemaError(
                    f"{where}: features {name} / j2_{name} missing; run 'jetad features' on the file "
                    "(or pass taus=False)"
                )
            continue
        lead, sub = np.asarray(sample.features[name]), np.asarray(sample.features[f"j2_{name}"])
        out[f"{name}_j1"] = np.where(lead_lighter, lead, sub)
        out[f"{name}_j2"] = np.where(lead_lighter, sub, lead)
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
