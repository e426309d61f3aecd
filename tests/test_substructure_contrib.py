"""jetad's soft drop, energy correlators and n-subjettiness against FastJet contrib, jet by jet, on generated jets.

The reference is scikit-hep `fastjet` (FastJet 3.5 with fjcontrib): SoftDrop through
`exclusive_jets_softdrop_grooming`, EnergyCorrelator through `exclusive_jets_energy_correlator`, Nsubjettiness
through `njettiness`, each on the single exclusive jet of a Cambridge/Aachen clustering with R = 1000 (every
constituent in one jet). The jets are the session's Pythia + Delphes-like QCD and top jets (tests/conftest.py).

Conventions. Soft drop and n-subjettiness run on the constituents' four-vectors (rapidity, as FastJet). jetad's
correlators use (pseudorapidity, phi) distances and contrib's pt_R measure uses (rapidity, phi): they agree
exactly on massless inputs, which is what the correlator comparison feeds FastJet (the same pT, eta, phi).
Tolerances: float64 sums in a different order, 1e-9 relative (soft-drop mass 1e-6 relative with 1e-5 GeV, as
the existing random-jet test; the groomed mass of a two-particle pair is a difference of large numbers).

Ties. Neutral constituents sit at the centres of 0.1 x 0.1 towers, so different pairs can have the same
distance; jetad then merges the lowest index first and FastJet in its own order (1 QCD/top jet in 350 gets a
different C/A tree and a soft-drop mass 0.6% apart). The jets are therefore moved by a seeded 1e-7 in
(eta, phi), a millionth of a tower, which makes every clustering unique; both codes see the same jets.
"""

from __future__ import annotations

import numpy as np
import pytest

from jetad.physics import correlators as corr
from jetad.physics import substructure as sub
from jetad.physics.features import compute_features_for

fastjet = pytest.importorskip("fastjet")
ak = pytest.importorskip("awkward")

RTOL = 1e-9


def columns(sample) -> tuple[np.ndarray, ...]:
    return tuple(sample.constituents[..., i].astype(np.float64) for i in range(4))


def one_jet_per_event(p4: np.ndarray, mask: np.ndarray):
    """A FastJet C/A R=1000 clustering of each jet's constituents: exclusive_jets(1) is the whole jet."""
    counts = mask.sum(axis=1)
    events = ak.zip({k: ak.unflatten(p4[..., i][mask], counts) for i, k in enumerate(("px", "py", "pz", "E"))})
    return fastjet.ClusterSequence(events, fastjet.JetDefinition(fastjet.cambridge_algorithm, 1000.0))


def massless_p4(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, P, 4) massless four-vectors with the constituents' (pT, eta, phi): rapidity = eta."""
    return sub._four_momenta(pt, eta, phi, np.zeros_like(pt), mask)  # E raised to |p|


@pytest.fixture(scope="module")
def jets(qcd, top):
    """(pt, eta, phi, e, mask) of the QCD and top jets, one array each, tower-grid ties broken (see above)."""
    pt, eta, phi, e = (np.concatenate(x) for x in zip(columns(qcd), columns(top), strict=True))
    mask = np.concatenate([qcd.mask, top.mask])
    rng = np.random.default_rng(0)
    eta, phi = (np.where(mask, x + rng.normal(0.0, 1e-7, x.shape), 0.0) for x in (eta, phi))
    return pt, eta, phi, e, mask


@pytest.mark.parametrize(("z_cut", "beta"), [(0.1, 0.0), (0.2, 1.0)])
def test_soft_drop_mass_and_groomed_constituents_match_fastjet_contrib_jet_by_jet(jets, z_cut, beta):
    pt, eta, phi, e, mask = jets
    p4 = sub._four_momenta(pt, eta, phi, e, mask)
    ref = one_jet_per_event(p4, mask).exclusive_jets_softdrop_grooming(njets=1, beta=beta, symmetry_cut=z_cut, R0=0.8)
    np.testing.assert_allclose(sub.soft_drop_mass(pt, eta, phi, e, mask, z_cut, beta, 0.8),
                               np.asarray(ref.msoftdrop), rtol=1e-6, atol=1e-5)
    kept = sub.soft_drop_constituents(pt, eta, phi, e, mask, z_cut, beta, 0.8)
    assert (kept <= mask).all() and (kept.sum(axis=1) < mask.sum(axis=1)).any()  # grooming removed something
    groomed = np.where(kept[..., None], p4, 0.0).sum(axis=1)
    np.testing.assert_allclose(np.hypot(groomed[:, 0], groomed[:, 1]), np.asarray(ref.ptsoftdrop), rtol=RTOL)
    ref_pt = ak.to_list(np.hypot(ref.constituents.px, ref.constituents.py))
    for i, want in enumerate(ref_pt):  # the same constituents, jet by jet
        got = np.hypot(p4[i, kept[i], 0], p4[i, kept[i], 1])
        np.testing.assert_allclose(np.sort(got), np.sort(want), rtol=RTOL, err_msg=f"jet {i}")


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_energy_correlators_match_fastjet_contrib_jet_by_jet(jets, beta):
    pt, eta, phi, _, mask = jets
    cs = one_jet_per_event(massless_p4(pt, eta, phi, mask), mask)

    def contrib(func: str, npoint: int = 0) -> np.ndarray:
        return np.asarray(cs.exclusive_jets_energy_correlator(njets=1, beta=beta, npoint=npoint, angles=-1, func=func))

    e2, e3 = corr.energy_correlation_functions(pt, eta, phi, mask, beta=beta)
    np.testing.assert_allclose(e2, contrib("generalized", 2), rtol=RTOL)
    np.testing.assert_allclose(e3, contrib("generalized", 3), rtol=RTOL)
    cons = np.stack([pt, eta, phi, np.hypot(pt, pt * np.sinh(eta))], axis=-1)
    f = compute_features_for(cons, mask)  # the feature columns (float32)
    tag = "b1" if beta == 1.0 else "b05"
    np.testing.assert_allclose(f[f"c2_{tag}"], contrib("c2"), rtol=1e-6)
    np.testing.assert_allclose(f[f"d2_{tag}"], contrib("d2"), rtol=1e-6)


@pytest.mark.parametrize(("axes", "axes_definition"), [("wta_kt", "WTA_KT_Axes"), ("kt", "KT_Axes")])
def test_n_subjettiness_matches_fastjet_contrib_jet_by_jet(jets, axes, axes_definition):
    pt, eta, phi, e, mask = jets
    cs = one_jet_per_event(sub._four_momenta(pt, eta, phi, e, mask), mask)
    ref = np.asarray(cs.njettiness(njets=[1, 2, 3], beta=1.0, R0=0.8, axes_definition=axes_definition))
    ours = sub.n_subjettiness(pt, eta, phi, e, mask, axes=axes)
    np.testing.assert_allclose(ours, ref.reshape(-1, 3), rtol=1e-6, atol=1e-12)
