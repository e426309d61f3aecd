"""The standard table of jet substructure features, computed once and cached in `JetSample.features`.

The set covers what the references feed their detectors: the CMS WNAE inputs (tau2, tau3, EFP1, C2^(0.5), axis
major/minor, pT^D, soft-drop mass; CMS-PAS-MLG-24-002), the LHCO/CATHODE inputs (mass, tau21; 2109.00546) and
the usual tagging observables. Every column is float32, one value per jet.
"""

from __future__ import annotations

import numpy as np

from jetad.data.sample import JetSample, check_real_constituents, jet_four_vectors
from jetad.physics import correlators as corr
from jetad.physics import substructure as sub

__all__ = ["FEATURES_VERSION", "FEATURE_DESCRIPTIONS", "FEATURE_NAMES", "FULL_MULTIPLICITY", "compute_features",
           "compute_features_for"]

#: Bumped whenever a feature's definition changes (2: WTA N-subjettiness axes, correlators on every constituent,
#: multiplicity before truncation); part of a production's content hash.
FEATURES_VERSION = 2

EFP_NAMES = tuple(corr.EFP_GRAPHS)

FEATURE_DESCRIPTIONS: dict[str, str] = {
    "mass": "jet invariant mass [GeV]",
    "pt": "jet transverse momentum [GeV]",
    "eta": "jet pseudorapidity",
    "multiplicity": "number of constituents of the whole jet (before truncation to P where the file records it)",
    "sd_mass": "soft-drop groomed mass, z_cut 0.1, beta 0, R0 = jet R [GeV] (1402.2657)",
    "tau1": "1-subjettiness, WTA exclusive-kT axis, beta 1, normalized by pT R (1011.2268, 1401.2158)",
    "tau2": "2-subjettiness, WTA exclusive-kT axes, beta 1 (1011.2268, 1401.2158)",
    "tau3": "3-subjettiness, WTA exclusive-kT axes, beta 1 (1011.2268, 1401.2158)",
    "tau21": "tau2/tau1 (<= 1: nested WTA axes), small for two-prong (W/Z/H) jets",
    "tau32": "tau3/tau2 (<= 1: nested WTA axes), small for three-prong (top) jets",
    "c2_b1": "C2 = e3/e2^2 energy correlation ratio, beta 1 (1305.0007)",
    "d2_b1": "D2 = e3/e2^3 energy correlation ratio, beta 1 (1409.6298)",
    "c2_b05": "C2 = e3/e2^2 energy correlation ratio, beta 0.5 (1305.0007)",
    "d2_b05": "D2 = e3/e2^3 energy correlation ratio, beta 0.5 (1409.6298)",
    "efp1": "energy flow polynomial of one edge, sum_ij z_i z_j dR_ij (1712.07124); alias of efp_d1",
    **{name: f"energy flow polynomial, {graph} (1712.07124)" for name, graph in corr.EFP_GRAPHS.items()},
    "ptd": "pT^D = sqrt(sum pT_i^2)/sum pT_i, 1 for a single particle",
    "axis_major": "major axis: sqrt of the larger eigenvalue of the pT^2-weighted (deta, dphi) covariance",
    "axis_minor": "minor axis: sqrt of the smaller eigenvalue of the pT^2-weighted (deta, dphi) covariance",
}

FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DESCRIPTIONS)

#: Event column holding each jet's constituent count before truncation to P (written by `jetad generate`).
FULL_MULTIPLICITY = "multiplicity_full"
#: (jets x width^2) per chunk of the correlators: 512 jets of 100 constituents, whatever the padding.
_CHUNK_PAIRS = 512 * 100 * 100
#: Padding is cut to the longest jet, never below this width (files padded to <= 100 keep their values bit
#: for bit).
_MIN_WIDTH = 100


def compute_features_for(
    constituents: np.ndarray,
    mask: np.ndarray,
    r: float = 0.8,
    jets: np.ndarray | None = None,
    chunk_size: int = 512,
    k: int | None = None,
) -> dict[str, np.ndarray]:
    """Named float32 (N,) columns (FEATURE_NAMES) from (N, P, 4) constituents (pT, eta, phi, E) and a mask.

    A constituent with mask True must have pT > 0 (else SchemaError): a zero constituent counted as real would
    make the features contradict the jet four-vector.

    Arguments:
        constituents: (N, P, 4) per constituent pT [GeV], eta, phi, E [GeV].
        mask: (N, P) True for a real constituent.
        r: jet radius, used as R0 of soft drop and of the n-subjettiness normalization.
        jets: optional (N, 4) jet (pT, eta, phi, m); when given, mass/pt/eta come from it (e.g. when the
            constituents are truncated), else from the constituent four-momentum sum.
        chunk_size: jets per chunk at P <= 100; wider jets get smaller chunks, so that memory stays about
            chunk_size * 100^2 * 50 bytes. Padding beyond the longest jet is cut first (not below 100).
        k: leading constituents entering the energy correlators and EFPs (None, the default: all).
    """
    constituents = np.asarray(constituents)
    mask = np.asarray(mask, dtype=bool)
    if constituents.ndim != 3 or constituents.shape[2] != 4 or mask.shape != constituents.shape[:2]:
        raise ValueError(
            f"compute_features_for: constituents {constituents.shape} and mask {mask.shape} must be "
            "(N, P, 4) and (N, P)"
        )
    check_real_constituents(constituents, mask, "compute_features_for", "their features would contradict the jet: "
                            "set mask = pT > 0")
    n = len(constituents)
    if jets is None:
        jets = jet_four_vectors(constituents, mask)
    out = {name: np.zeros(n, dtype=np.float32) for name in FEATURE_NAMES}
    for sl, width in _chunks(mask, chunk_size, k):
        for name, col in _chunk_features(constituents[sl, :width], mask[sl, :width], r, k).items():
            out[name][sl] = col
    jets = np.asarray(jets, dtype=np.float32)
    out["pt"], out["eta"], out["mass"] = jets[:, 0].copy(), jets[:, 1].copy(), jets[:, 3].copy()
    return out


def _chunks(mask: np.ndarray, chunk_size: int, k: int | None) -> list[tuple[slice, int]]:
    """(rows, width) chunks: the width cut to the longest jet (not below `_MIN_WIDTH`), rows bounded by
    `_CHUNK_PAIRS` / width^2 so that the (jets, width, width) correlator arrays keep their size."""
    n, p = mask.shape
    last = np.where(mask.any(axis=0), np.arange(1, p + 1), 0)  # columns up to the last real constituent
    longest = int(last.max(initial=0))
    width = max(longest, min(p, _MIN_WIDTH))
    pairs = min(width, k or width) ** 2
    step = max(1, min(chunk_size, _CHUNK_PAIRS // max(pairs, 1) if width > _MIN_WIDTH else chunk_size))
    return [(slice(start, min(start + step, n)), width) for start in range(0, n, step)]


def _chunk_features(
    constituents: np.ndarray, mask: np.ndarray, r: float, k: int | None
) -> dict[str, np.ndarray]:
    pt, eta, phi, e = (constituents[..., i].astype(np.float64) for i in range(4))
    taus = sub.n_subjettiness(pt, eta, phi, e, mask, n_max=3, beta=1.0, r0=r)
    tau21, tau32 = sub.subjettiness_ratios(taus)
    major, minor = sub.axes(pt, eta, phi, mask)
    cols: dict[str, np.ndarray] = {
        "multiplicity": sub.multiplicity(mask),
        "sd_mass": sub.soft_drop_mass(pt, eta, phi, e, mask, z_cut=0.1, beta=0.0, r0=r),
        "tau1": taus[:, 0],
        "tau2": taus[:, 1],
        "tau3": taus[:, 2],
        "tau21": tau21,
        "tau32": tau32,
        "ptd": sub.pt_d(pt, mask),
        "axis_major": major,
        "axis_minor": minor,
    }
    z, dr = corr._leading(pt, eta, phi, mask, k)  # shared by the correlators and the EFPs
    for beta, tag in ((1.0, "b1"), (0.5, "b05")):
        e2, e3 = corr._ecf(z, dr, beta)
        cols[f"c2_{tag}"] = np.divide(e3, e2**2, out=np.zeros_like(e3), where=e2 > 0)
        cols[f"d2_{tag}"] = np.divide(e3, e2**3, out=np.zeros_like(e3), where=e2 > 0)
    efps = corr._efp(z, dr)
    cols.update(efps)
    cols["efp1"] = efps["efp_d1"]
    return cols


def compute_features(
    sample: JetSample, r: float | None = None, chunk_size: int = 512
) -> dict[str, np.ndarray]:
    """FEATURE_NAMES columns of a sample; with "j2_constituents"/"j2_mask" in `sample.event` also "j2_*" ones.

    `r` defaults to ``sample.attrs["jet_r"]`` (0.8 if absent). Jet mass, pT and eta come from `sample.jets`
    (and from ``event["j2_jets"]`` for the second jet when present); `multiplicity` from the event column
    FULL_MULTIPLICITY (``j2_`` + it for the second jet) when the file records the count before truncation.
    """
    if r is None:
        r = float(sample.attrs.get("jet_r", 0.8))
    out = compute_features_for(sample.constituents, sample.mask, r=r, jets=sample.jets, chunk_size=chunk_size)
    _true_multiplicity(out, sample.event.get(FULL_MULTIPLICITY))
    if "j2_constituents" in sample.event and "j2_mask" in sample.event:
        j2 = compute_features_for(
            sample.event["j2_constituents"],
            sample.event["j2_mask"],
            r=r,
            jets=sample.event.get("j2_jets"),
            chunk_size=chunk_size,
        )
        _true_multiplicity(j2, sample.event.get(f"j2_{FULL_MULTIPLICITY}"))
        out.update({f"j2_{name}": col for name, col in j2.items()})
    return out


def _true_multiplicity(columns: dict[str, np.ndarray], full: np.ndarray | None) -> None:
    """Replace the counted multiplicity by the recorded pre-truncation one (never below the count)."""
    if full is not None:
        columns["multiplicity"] = np.maximum(columns["multiplicity"], np.asarray(full, dtype=np.float32))
