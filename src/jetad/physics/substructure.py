"""Jet substructure observables on padded constituent arrays, vectorized over jets.

Every function takes plain (N, P) numpy arrays (pT [GeV], eta, phi, E [GeV], mask) and returns (N,) arrays,
so it works on any source of jets. Masked (padding) entries never contribute; an empty jet gives 0, never NaN.

Conventions. Angular distances dR are in (eta, phi) with phi differences wrapped into [-pi, pi), except where
a jet is reclustered (soft drop, n-subjettiness axes): there, as in FastJet, positions are rapidities of the
E-scheme four-vectors (equal to eta for massless constituents). The reclustering engine (exclusive
generalized-kT, checked against FastJet in the tests) is `jetad.physics.reclustering`; energy correlation
functions and energy flow polynomials are `jetad.physics.correlators`.
"""

from __future__ import annotations

import numpy as np

from jetad.physics.reclustering import (
    cluster,
    follow_harder_branch,
    in_chunks,
    leaves_under,
    pt_rap_phi,
)

__all__ = [
    "SUBJETTINESS_AXES",
    "axes",
    "jet_mass",
    "multiplicity",
    "n_subjettiness",
    "pt_d",
    "soft_drop_constituents",
    "soft_drop_mass",
    "subjettiness_ratios",
]

_TWO_PI = 2.0 * np.pi


def _wrap(dphi: np.ndarray) -> np.ndarray:
    """Angle difference wrapped into [-pi, pi)."""
    return (dphi + np.pi) % _TWO_PI - np.pi


def _masked(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, np.asarray(x, dtype=np.float64), 0.0)


def _four_momenta(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, e: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """(N, P, 4) float64 (px, py, pz, E), zero where masked; E raised to |p| when below it (rounding, E=0)."""
    pt, eta, phi = _masked(pt, mask), _masked(eta, mask), _masked(phi, mask)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    en = np.maximum(_masked(e, mask), np.sqrt(px**2 + py**2 + pz**2))
    return np.stack([px, py, pz, en], axis=-1)


def _mass(p4: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(p4[..., 3] ** 2 - (p4[..., :3] ** 2).sum(-1), 0.0, None))


def jet_mass(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, e: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Invariant mass [GeV] of the sum of the constituent four-momenta."""
    return _mass(_four_momenta(pt, eta, phi, e, mask).sum(axis=1))


def multiplicity(mask: np.ndarray) -> np.ndarray:
    """Number of constituents per jet."""
    return np.asarray(mask, dtype=bool).sum(axis=1)


def pt_d(pt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """pT^D = sqrt(sum pT_i^2) / sum pT_i: 1 for one particle, 1/sqrt(n) for n equal ones (CMS, 1209.6086)."""
    pt = _masked(pt, mask)
    total = pt.sum(axis=1)
    return np.divide(np.sqrt((pt**2).sum(axis=1)), total, out=np.zeros_like(total), where=total > 0)


def axes(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(axis_major, axis_minor): sqrt of the eigenvalues of the pT^2-weighted (deta, dphi) covariance.

    Deviations are taken from the pT-weighted centroid, phi differences wrapped (CMS quark/gluon jet shapes,
    CMS-PAS-JME-13-002). Units: radians (dimensionless in eta).
    """
    pt, eta, phi = _masked(pt, mask), _masked(eta, mask), _masked(phi, mask)
    lead = np.argmax(pt, axis=1)[:, None]
    dphi = np.where(mask, _wrap(phi - np.take_along_axis(phi, lead, axis=1)), 0.0)
    sum_pt = pt.sum(axis=1, keepdims=True)
    safe = np.where(sum_pt > 0, sum_pt, 1.0)
    deta = np.where(mask, eta - (pt * eta).sum(axis=1, keepdims=True) / safe, 0.0)
    dphi = np.where(mask, dphi - (pt * dphi).sum(axis=1, keepdims=True) / safe, 0.0)
    w = pt**2
    sum_w = w.sum(axis=1)
    norm = np.where(sum_w > 0, sum_w, 1.0)
    a = (w * deta**2).sum(axis=1) / norm
    b = (w * deta * dphi).sum(axis=1) / norm
    c = (w * dphi**2).sum(axis=1) / norm
    half_trace = 0.5 * (a + c)
    root = np.sqrt(np.maximum(0.25 * (a - c) ** 2 + b**2, 0.0))
    return np.sqrt(np.maximum(half_trace + root, 0.0)), np.sqrt(np.maximum(half_trace - root, 0.0))


def soft_drop_mass(
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    e: np.ndarray,
    mask: np.ndarray,
    z_cut: float = 0.1,
    beta: float = 0.0,
    r0: float = 0.8,
) -> np.ndarray:
    """Soft-drop groomed jet mass [GeV] (Larkoski, Marzani, Soyez, Thaler, 1402.2657).

    The jet is reclustered with Cambridge/Aachen and declustered along the harder branch until
    min(pT1, pT2)/(pT1 + pT2) > z_cut (dR12/r0)^beta; the mass of that subjet is returned (the last
    constituent's mass if no splitting passes). beta = 0 is the modified mass-drop tagger; matches FastJet
    contrib SoftDrop with symmetry measure scalar_z.
    """
    p4 = _four_momenta(pt, eta, phi, e, mask)
    return in_chunks(
        lambda p, m: _soft_drop_mass_chunk(p, m, z_cut, beta, r0), p4, np.asarray(mask, dtype=bool)
    )


def soft_drop_constituents(
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    e: np.ndarray,
    mask: np.ndarray,
    z_cut: float = 0.1,
    beta: float = 0.0,
    r0: float = 0.8,
) -> np.ndarray:
    """(N, P) bool: the constituents the soft-drop grooming of `soft_drop_mass` keeps (1402.2657).

    Their four-momentum sum is the groomed jet; FastJet contrib's SoftDrop returns the same constituents.
    """
    p4 = _four_momenta(pt, eta, phi, e, mask)
    n_part = np.shape(mask)[1]

    def chunk(p: np.ndarray, m: np.ndarray) -> np.ndarray:
        _, children, current = _soft_drop_node(p, m, z_cut, beta, r0)
        kept = leaves_under(children, current, m.shape[1])
        return np.pad(kept, ((0, 0), (0, n_part - m.shape[1])))

    return in_chunks(chunk, p4, np.asarray(mask, dtype=bool))


def _soft_drop_mass_chunk(
    p4: np.ndarray, mask: np.ndarray, z_cut: float, beta: float, r0: float
) -> np.ndarray:
    node_p4, _, current = _soft_drop_node(p4, mask, z_cut, beta, r0)
    groomed = node_p4[np.arange(len(current)), np.maximum(current, 0)]
    return np.where(current >= 0, _mass(groomed), 0.0)


def _soft_drop_node(
    p4: np.ndarray, mask: np.ndarray, z_cut: float, beta: float, r0: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(node four-vectors, children, (N,) node reached by the soft-drop declustering; -1 for an empty jet)."""
    node_p4, children, root, _ = cluster(p4, mask, kt_power=0)
    n_jets, n_part = np.shape(mask)
    # the soft-drop condition of every splitting at once (elementwise: the same values as along the walk)
    made = children[..., 0] >= 0
    jet = np.broadcast_to(np.arange(n_jets)[:, None], made.shape)[made]
    a, b = children[..., 0][made], children[..., 1][made]
    pt_a, rap_a, phi_a = pt_rap_phi(node_p4[jet, a])
    pt_b, rap_b, phi_b = pt_rap_phi(node_p4[jet, b])
    dr = np.hypot(rap_a - rap_b, _wrap(phi_a - phi_b))
    z = np.minimum(pt_a, pt_b) / np.maximum(pt_a + pt_b, 1e-300)
    passed = np.zeros(made.shape, dtype=bool)
    passed[made] = z > z_cut * (dr / r0) ** beta
    harder = np.full(made.shape, -1, dtype=np.int64)
    harder[made] = np.where(pt_a >= pt_b, a, b)
    return node_p4, children, follow_harder_branch(root, passed, harder, n_part)


#: n-subjettiness axes: exclusive-kT clustering with winner-take-all (default) or E-scheme recombination.
SUBJETTINESS_AXES = {"wta_kt": "wta", "kt": "E"}


def n_subjettiness(
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    e: np.ndarray,
    mask: np.ndarray,
    n_max: int = 3,
    beta: float = 1.0,
    r0: float = 0.8,
    axes: str = "wta_kt",
) -> np.ndarray:
    """(N, n_max) normalized n-subjettiness tau_1..tau_n_max (Thaler, Van Tilburg, 1011.2268).

    tau_N = sum_i pT_i min_k dR_ik^beta / (sum_i pT_i r0^beta), dR in (rapidity, phi), the axes being the
    exclusive N jets of a kT reclustering: "wta_kt" (default) with winner-take-all recombination
    (1401.2158; FastJet contrib Nsubjettiness WTA_KT_Axes), "kt" with E-scheme recombination (KT_Axes); both
    with NormalizedMeasure(beta, r0). WTA axes are nested (the N axes are among the N + 1 axes: a WTA merging
    keeps the harder direction), so tau_(N+1) <= tau_N exactly and tau21, tau32 <= 1; E-scheme kT axes are not,
    and give tau21 > 1 on a few percent of QCD jets. tau_N = 0 for jets with <= N constituents.
    """
    if axes not in SUBJETTINESS_AXES:
        raise ValueError(f"n_subjettiness: axes {axes!r} is not one of {', '.join(SUBJETTINESS_AXES)}")
    p4 = _four_momenta(pt, eta, phi, e, mask)
    return in_chunks(
        lambda p, m: _n_subjettiness_chunk(p, m, n_max, beta, r0, axes), p4, np.asarray(mask, dtype=bool)
    )


def _n_subjettiness_chunk(
    p4: np.ndarray, mask: np.ndarray, n_max: int, beta: float, r0: float, axes: str = "wta_kt"
) -> np.ndarray:
    _, _, _, snaps = cluster(p4, mask, kt_power=1, snapshots=tuple(range(1, n_max + 1)),
                             recombination=SUBJETTINESS_AXES[axes])
    ppt, prap, pphi = pt_rap_phi(p4)
    ppt = np.where(mask, ppt, 0.0)
    denom = ppt.sum(axis=1) * r0**beta
    n_const = mask.sum(axis=1)
    taus = np.zeros((len(ppt), n_max))
    for n in range(1, n_max + 1):
        axes_p4, valid = snaps[n]
        _, arap, aphi = pt_rap_phi(axes_p4)
        dr2 = (prap[:, :, None] - arap[:, None, :]) ** 2 + _wrap(pphi[:, :, None] - aphi[:, None, :]) ** 2
        dr2 = np.where(valid[:, None, :], dr2, np.inf).min(axis=2)
        dr2 = np.where(np.isfinite(dr2), dr2, 0.0)
        num = (ppt * dr2 ** (0.5 * beta)).sum(axis=1)
        # exactly 0 when every constituent is an axis (not the roundoff of the frame rotation)
        taus[:, n - 1] = np.divide(num, denom, out=np.zeros_like(num), where=(denom > 0) & (n_const > n))
    return taus


def subjettiness_ratios(taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tau21, tau32) from an (N, >=3) tau array; 0 where the denominator is 0 (below 1e-12)."""
    tau21 = np.divide(taus[:, 1], taus[:, 0], out=np.zeros(len(taus)), where=taus[:, 0] > 1e-12)
    tau32 = np.divide(taus[:, 2], taus[:, 1], out=np.zeros(len(taus)), where=taus[:, 1] > 1e-12)
    return tau21, tau32
