"""Specification of jetad.physics.substructure and jetad.physics.features on hand-made and seeded toy jets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from jetad.data.sample import JetSample
from jetad.physics import correlators as corr
from jetad.physics import reclustering
from jetad.physics import substructure as sub
from jetad.physics.features import FEATURE_DESCRIPTIONS, FEATURE_NAMES, compute_features, compute_features_for

# ----------------------------------------------------------------------------------------------------
# toy jets


def particles(rows: list[tuple[float, float, float]]) -> np.ndarray:
    """(n, 4) massless constituents (pT, eta, phi, E) from (pT, eta, phi) rows, pT-sorted."""
    arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
    arr = arr[np.argsort(-arr[:, 0], kind="stable")]
    return np.column_stack([arr, arr[:, 0] * np.cosh(arr[:, 1])])


def prong_jet(
    rng: np.random.Generator, prongs: list[tuple[float, float, float]], n: int = 8, spread: float = 0.02
):
    """Each prong (pT, eta, phi) split into n collinear particles within `spread`, plus soft noise."""
    rows = []
    for pt, eta, phi in prongs:
        frac = rng.dirichlet(np.ones(n))
        rows += [(pt * f, eta + rng.normal(0, spread), phi + rng.normal(0, spread)) for f in frac]
    rows += [(0.5, rng.normal(0, 0.3), rng.normal(0, 0.3)) for _ in range(4)]
    return particles(rows)


def batch(jets: list[np.ndarray], n_pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded (N, P, 4) float32 constituents and mask from a list of (n_i, 4) jets."""
    p = max(len(j) for j in jets) + n_pad
    cons = np.zeros((len(jets), p, 4), dtype=np.float32)
    mask = np.zeros((len(jets), p), dtype=bool)
    for i, j in enumerate(jets):
        cons[i, : len(j)] = j
        mask[i, : len(j)] = True
    return cons, mask


def random_jets(
    rng: np.random.Generator, n: int, p: int, massive: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded toy jets with 1..p constituents, exponential pT, Gaussian (eta, phi) around a random axis."""
    pt = -np.sort(-rng.exponential(20.0, (n, p)), axis=1)
    eta = rng.uniform(-2, 2, (n, 1)) + rng.normal(0, 0.25, (n, p))
    phi = rng.uniform(-np.pi, np.pi, (n, 1)) + rng.normal(0, 0.25, (n, p))
    e = pt * np.cosh(eta) * (1.0 + (rng.uniform(0, 0.01, (n, p)) if massive else 0.0))
    cons = np.stack([pt, eta, sub._wrap(phi), e], axis=-1).astype(np.float32)
    mask = np.arange(p)[None] < rng.integers(1, p + 1, n)[:, None]
    return np.where(mask[..., None], cons, 0.0).astype(np.float32), mask


def cols(cons: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(cons[..., i].astype(np.float64) for i in range(4))


def four_vectors(c: np.ndarray) -> np.ndarray:
    pt, eta, phi, e = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    return np.column_stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), e])


# ----------------------------------------------------------------------------------------------------
# slow, obviously-correct references


def dphi(a: float, b: float) -> float:
    return (a - b + math.pi) % (2 * math.pi) - math.pi


def kin(v: np.ndarray) -> tuple[float, float, float]:
    pt = math.hypot(v[0], v[1])
    return pt, 0.5 * math.log((v[3] + v[2]) / (v[3] - v[2])), math.atan2(v[1], v[0])


def mass(v: np.ndarray) -> float:
    return math.sqrt(max(v[3] ** 2 - v[0] ** 2 - v[1] ** 2 - v[2] ** 2, 0.0))


def reference_soft_drop_mass(c: np.ndarray, z_cut: float, beta: float, r0: float) -> float:
    """Plain-python Cambridge/Aachen clustering (O(n^3)) followed by soft-drop declustering."""
    nodes = [(v, None) for v in four_vectors(c)]  # (four-vector, (child_a, child_b))
    live = list(range(len(nodes)))
    while len(live) > 1:
        best = None
        for a, b in itertools.combinations(live, 2):
            _, ya, pa = kin(nodes[a][0])
            _, yb, pb = kin(nodes[b][0])
            d = (ya - yb) ** 2 + dphi(pa, pb) ** 2
            if best is None or d < best[0]:
                best = (d, a, b)
        _, a, b = best
        nodes.append((nodes[a][0] + nodes[b][0], (a, b)))
        live = [x for x in live if x not in (a, b)] + [len(nodes) - 1]
    current = live[0]
    while nodes[current][1] is not None:
        a, b = nodes[current][1]
        pta, ya, pa = kin(nodes[a][0])
        ptb, yb, pb = kin(nodes[b][0])
        dr = math.hypot(ya - yb, dphi(pa, pb))
        if min(pta, ptb) / (pta + ptb) > z_cut * (dr / r0) ** beta:
            break
        current = a if pta >= ptb else b
    return mass(nodes[current][0])


def reference_dr(c: np.ndarray, i: int, j: int) -> float:
    return math.hypot(c[i, 1] - c[j, 1], dphi(c[i, 2], c[j, 2]))


def reference_ecf(c: np.ndarray, beta: float) -> tuple[float, float]:
    z = c[:, 0] / c[:, 0].sum()
    n = len(c)
    e2 = sum(z[i] * z[j] * reference_dr(c, i, j) ** beta for i in range(n) for j in range(i + 1, n))
    e3 = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            for k in range(j + 1, n):
                angles = reference_dr(c, i, j) * reference_dr(c, i, k) * reference_dr(c, j, k)
                e3 += z[i] * z[j] * z[k] * angles**beta
    return e2, e3


EFP_EDGES = {  # graph as an edge list on vertices 0..V-1
    "efp_d1": [(0, 1)],
    "efp_d2_chain": [(0, 1), (1, 2)],
    "efp_d2_double": [(0, 1), (0, 1)],
    "efp_d3_triangle": [(0, 1), (1, 2), (2, 0)],
    "efp_d3_chain": [(0, 1), (1, 2), (2, 3)],
    "efp_d3_star": [(0, 1), (0, 2), (0, 3)],
    "efp_d3_triple": [(0, 1), (0, 1), (0, 1)],
    "efp_d3_double_single": [(0, 1), (0, 1), (1, 2)],
}


def reference_efp(c: np.ndarray, edges: list[tuple[int, int]]) -> float:
    z = c[:, 0] / c[:, 0].sum()
    n_vertices = 1 + max(max(e) for e in edges)
    total = 0.0
    for idx in itertools.product(range(len(c)), repeat=n_vertices):
        term = math.prod(z[i] for i in idx)
        for a, b in edges:
            term *= reference_dr(c, idx[a], idx[b])
        total += term
    return total


# ----------------------------------------------------------------------------------------------------
# simple observables


def test_pencil_jet_has_zero_tau1_one_constituent_and_unit_ptd():
    cons, mask = batch([particles([(500.0, 0.3, 1.0)])], n_pad=3)
    f = compute_features_for(cons, mask)
    assert f["multiplicity"][0] == 1
    assert f["tau1"][0] == 0 and f["tau2"][0] == 0 and f["tau21"][0] == 0
    assert f["ptd"][0] == pytest.approx(1.0)
    assert f["axis_major"][0] == pytest.approx(0.0, abs=1e-6)
    assert f["sd_mass"][0] == pytest.approx(0.0, abs=1e-3)
    assert f["efp1"][0] == pytest.approx(0.0, abs=1e-9)


def test_mass_equals_the_four_vector_mass():
    rng = np.random.default_rng(3)
    cons, mask = random_jets(rng, 20, 30, massive=True)
    expected = [
        mass(four_vectors(c[m].astype(np.float64)).sum(axis=0)) for c, m in zip(cons, mask, strict=True)
    ]
    np.testing.assert_allclose(sub.jet_mass(*cols(cons), mask), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(compute_features_for(cons, mask)["mass"], expected, rtol=1e-4, atol=1e-3)


def test_ptd_and_axes_of_equal_particles():
    cons, mask = batch([particles([(10.0, -0.1, 0.0), (10.0, 0.1, 0.0), (10.0, 0.0, 0.0), (10.0, 0.0, 0.0)])])
    assert sub.pt_d(cons[..., 0], mask)[0] == pytest.approx(0.5)
    major, minor = sub.axes(*cols(cons)[:3], mask)
    assert major[0] == pytest.approx(math.sqrt(0.02 / 4))  # variance of (-0.1, 0.1, 0, 0) along eta
    assert minor[0] == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------------------------------
# n-subjettiness


def test_two_prong_jet_has_small_tau21_and_larger_tau1_than_one_prong():
    rng = np.random.default_rng(0)
    one = prong_jet(rng, [(500.0, 0.0, 0.0)], n=16, spread=0.05)
    two = prong_jet(rng, [(300.0, 0.0, 0.2), (200.0, 0.0, -0.2)])
    f = compute_features_for(*batch([one, two]))
    assert f["tau21"][1] < 0.3
    assert f["tau21"][1] < f["tau21"][0]
    assert f["tau1"][1] > 2 * f["tau1"][0]


def test_three_prong_jet_has_smaller_tau32_than_two_prong():
    rng = np.random.default_rng(1)
    two = prong_jet(rng, [(300.0, 0.0, 0.2), (200.0, 0.0, -0.2)])
    three = prong_jet(rng, [(250.0, 0.0, 0.25), (150.0, 0.2, -0.15), (100.0, -0.25, -0.1)])
    f = compute_features_for(*batch([two, three]))
    assert f["tau32"][1] < 0.3
    assert f["tau32"][1] < f["tau32"][0]


@pytest.mark.parametrize(("axes", "axes_definition"), [("kt", "KT_Axes"), ("wta_kt", "WTA_KT_Axes")])
def test_n_subjettiness_matches_fastjet_contrib_with_kt_axes(axes, axes_definition):
    fastjet = pytest.importorskip("fastjet")
    ak = pytest.importorskip("awkward")
    rng = np.random.default_rng(5)
    cons, mask = random_jets(rng, 60, 25)
    pt, eta, phi, e = cols(cons)
    ours = sub.n_subjettiness(pt, eta, phi, e, mask, n_max=3, beta=1.0, r0=0.8, axes=axes)
    p4 = sub._four_momenta(pt, eta, phi, e, mask)
    counts = mask.sum(axis=1)
    events = ak.zip(
        {k: ak.unflatten(p4[..., i][mask], counts) for i, k in enumerate(("px", "py", "pz", "E"))}
    )
    cs = fastjet.ClusterSequence(events, fastjet.JetDefinition(fastjet.cambridge_algorithm, 1000.0))
    taus = cs.njettiness(njets=[1, 2, 3], beta=1.0, R0=0.8, axes_definition=axes_definition)
    np.testing.assert_allclose(ours, np.asarray(taus).reshape(-1, 3), rtol=1e-6, atol=1e-9)


def test_wta_axes_are_nested_so_tau_n_never_grows_with_n():
    rng = np.random.default_rng(13)
    cons, mask = random_jets(rng, 200, 40)
    taus = sub.n_subjettiness(*cols(cons), mask, n_max=4)
    assert (np.diff(taus, axis=1) <= 0).all()  # exactly: the N WTA axes are among the N + 1 axes
    tau21, tau32 = sub.subjettiness_ratios(taus)
    assert tau21.max() <= 1 and tau32.max() <= 1
    with pytest.raises(ValueError, match="axes 'onepass' is not one of"):
        sub.n_subjettiness(*cols(cons), mask, axes="onepass")


# ----------------------------------------------------------------------------------------------------
# soft drop


def test_soft_drop_removes_soft_wide_angle_particle_and_keeps_two_hard_prongs():
    prongs = [(200.0, 0.0, 0.15), (150.0, 0.0, -0.15)]
    jet = particles([*prongs, (3.0, 0.6, 0.3)])
    cons, mask = batch([jet])
    pt, eta, phi, e = cols(cons)
    groomed = sub.soft_drop_mass(pt, eta, phi, e, mask, z_cut=0.1, beta=0.0, r0=0.8)[0]
    two_prongs = mass(four_vectors(particles(prongs)).sum(axis=0))
    assert groomed == pytest.approx(two_prongs, rel=1e-6)
    assert sub.jet_mass(pt, eta, phi, e, mask)[0] > 1.05 * two_prongs


@pytest.mark.parametrize(("z_cut", "beta"), [(0.1, 0.0), (0.2, 1.0)])
def test_soft_drop_matches_plain_python_declustering(z_cut, beta):
    rng = np.random.default_rng(7)
    cons, mask = random_jets(rng, 6, 12)
    pt, eta, phi, e = cols(cons)
    ours = sub.soft_drop_mass(pt, eta, phi, e, mask, z_cut=z_cut, beta=beta, r0=0.8)
    expected = [
        reference_soft_drop_mass(c[m], z_cut, beta, 0.8)
        for c, m in zip(cons.astype(np.float64), mask, strict=True)
    ]
    # float32 inputs: E can round below |p|; the library raises E to |p|, the reference clips m^2
    np.testing.assert_allclose(ours, expected, rtol=2e-5, atol=1e-5)


def test_soft_drop_matches_fastjet_contrib():
    fastjet = pytest.importorskip("fastjet")
    ak = pytest.importorskip("awkward")
    rng = np.random.default_rng(11)
    cons, mask = random_jets(rng, 100, 40)
    pt, eta, phi, e = cols(cons)
    p4 = sub._four_momenta(pt, eta, phi, e, mask)
    counts = mask.sum(axis=1)
    events = ak.zip(
        {k: ak.unflatten(p4[..., i][mask], counts) for i, k in enumerate(("px", "py", "pz", "E"))}
    )
    cs = fastjet.ClusterSequence(events, fastjet.JetDefinition(fastjet.cambridge_algorithm, 1000.0))
    groomed = cs.exclusive_jets_softdrop_grooming(njets=1, beta=0.0, symmetry_cut=0.1, R0=0.8)
    ours = sub.soft_drop_mass(pt, eta, phi, e, mask, z_cut=0.1, beta=0.0, r0=0.8)
    np.testing.assert_allclose(ours, np.asarray(groomed.msoftdrop), rtol=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# energy correlators and energy flow polynomials


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_c2_d2_match_brute_force_triple_loop(beta):
    rng = np.random.default_rng(2)
    jet = particles([(rng.uniform(5, 100), rng.normal(0, 0.3), rng.normal(3.0, 0.3)) for _ in range(5)])
    cons, mask = batch([jet], n_pad=2)
    e2, e3 = corr.energy_correlation_functions(*cols(cons)[:3], mask, beta=beta)
    ref_e2, ref_e3 = reference_ecf(cons[0, :5].astype(np.float64), beta)
    assert e2[0] == pytest.approx(ref_e2, rel=1e-5)
    assert e3[0] == pytest.approx(ref_e3, rel=1e-5)
    f = compute_features_for(cons, mask)
    tag = "b1" if beta == 1.0 else "b05"
    assert f[f"c2_{tag}"][0] == pytest.approx(ref_e3 / ref_e2**2, rel=1e-4)
    assert f[f"d2_{tag}"][0] == pytest.approx(ref_e3 / ref_e2**3, rel=1e-4)


def test_efps_match_brute_force_sums_over_graph_vertices():
    rng = np.random.default_rng(4)
    jet = particles([(rng.uniform(5, 100), rng.normal(0, 0.3), rng.normal(-3.0, 0.3)) for _ in range(5)])
    cons, mask = batch([jet], n_pad=1)
    efps = corr.energy_flow_polynomials(*cols(cons)[:3], mask)
    assert set(efps) == set(corr.EFP_GRAPHS) == set(EFP_EDGES)
    c = cons[0, :5].astype(np.float64)
    for name, edges in EFP_EDGES.items():
        assert efps[name][0] == pytest.approx(reference_efp(c, edges), rel=1e-5), name
    e2, _ = corr.energy_correlation_functions(*cols(cons)[:3], mask, beta=1.0)
    assert efps["efp_d1"][0] == pytest.approx(2 * e2[0], rel=1e-9)


def test_leading_k_truncation_only_drops_the_softest_constituents():
    rng = np.random.default_rng(6)
    cons, mask = random_jets(rng, 5, 30)
    mask[:] = True
    cons[:, 10:, 0] *= 1e-6  # negligible tail
    full = corr.energy_flow_polynomials(*cols(cons)[:3], mask, k=None)
    cut = corr.energy_flow_polynomials(*cols(cons)[:3], mask, k=10)
    for name in full:
        np.testing.assert_allclose(cut[name], full[name], rtol=1e-4)


# ----------------------------------------------------------------------------------------------------
# invariances and robustness


def assert_same_features(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], rtol: float, atol: float
) -> None:
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)


def test_features_are_invariant_under_phi_rotation_and_wrap_around_pi():
    rng = np.random.default_rng(8)
    cons, mask = random_jets(rng, 40, 30)
    cons[..., 2] = np.where(mask, sub._wrap(cons[..., 2] - cons[:, :1, 2]), 0.0)  # jets centred at phi = 0
    base = compute_features_for(cons, mask)
    for shift in (1.0, np.pi, -np.pi + 0.05):
        moved = cons.copy()
        moved[..., 2] = np.where(mask, sub._wrap(moved[..., 2].astype(np.float64) + shift), 0.0)
        assert_same_features(compute_features_for(moved, mask), base, rtol=2e-3, atol=2e-4)


def test_padding_does_not_change_any_feature():
    rng = np.random.default_rng(9)
    cons, mask = random_jets(rng, 30, 20)
    padded = np.concatenate([cons, rng.normal(5, 1, (30, 7, 4)).astype(np.float32)], axis=1)  # junk, masked
    padded_mask = np.concatenate([mask, np.zeros((30, 7), dtype=bool)], axis=1)
    padded[:, :20] = np.where(mask[..., None], cons, rng.normal(5, 1, cons.shape).astype(np.float32))
    assert_same_features(
        compute_features_for(padded, padded_mask), compute_features_for(cons, mask), 1e-6, 1e-7
    )


def test_features_are_finite_float32_and_zero_for_an_empty_jet():
    rng = np.random.default_rng(10)
    cons, mask = random_jets(rng, 50, 40)
    mask[0] = False
    cons[0] = 0.0
    mask[1, 1:] = False
    f = compute_features_for(cons, mask, chunk_size=16)
    assert tuple(f) == FEATURE_NAMES
    for name, col in f.items():
        assert col.dtype == np.float32 and col.shape == (50,), name
        assert np.isfinite(col).all(), name
        assert col[0] == 0, name


def test_compute_features_reads_jet_r_and_adds_second_jet_columns():
    rng = np.random.default_rng(12)
    cons, mask = random_jets(rng, 10, 15)
    cons2, mask2 = random_jets(rng, 10, 12)
    sample = JetSample.from_constituents(
        cons, mask, event={"j2_constituents": cons2, "j2_mask": mask2}, attrs={"jet_r": 1.0}
    )
    f = compute_features(sample)
    assert set(f) == set(FEATURE_NAMES) | {f"j2_{n}" for n in FEATURE_NAMES}
    assert set(FEATURE_DESCRIPTIONS) == set(FEATURE_NAMES)
    np.testing.assert_allclose(f["tau1"], compute_features_for(cons, mask, r=1.0)["tau1"])
    np.testing.assert_allclose(f["j2_tau1"], compute_features_for(cons2, mask2, r=1.0)["tau1"])
    assert not np.allclose(f["tau1"], compute_features_for(cons, mask, r=0.8)["tau1"])
    np.testing.assert_allclose(f["pt"], sample.jets[:, 0])


@pytest.mark.parametrize("p", [40, 200])
def test_trimmed_chunks_give_the_untrimmed_values_bit_for_bit(p):
    """The multiplicity-sorted, padding-trimmed evaluation equals the plain padded one jet by jet (pT-sorted,
    zero-padded jets as the schema stores them; P = 200 exercises numpy's two-level pairwise sums)."""
    rng = np.random.default_rng(11)
    c, mask = random_jets(rng, 60, p)
    pt, eta, phi, e = (c[..., i].astype(np.float64) for i in range(4))
    p4 = sub._four_momenta(pt, eta, phi, e, mask)
    np.testing.assert_array_equal(sub.soft_drop_mass(pt, eta, phi, e, mask),
                                  sub._soft_drop_mass_chunk(p4, mask, 0.1, 0.0, 0.8))
    for axes in ("wta_kt", "kt"):
        np.testing.assert_array_equal(sub.n_subjettiness(pt, eta, phi, e, mask, axes=axes),
                                      sub._n_subjettiness_chunk(p4, mask, 3, 1.0, 0.8, axes))
    z, dr = corr._leading(pt, eta, phi, mask, 100)
    for beta in (1.0, 0.5):
        theta = dr**beta
        np.testing.assert_array_equal(corr._triangle(z, theta), corr._triangle_dense(z, theta))


# ----------------------------------------------------------------------------------------------------
# the compiled reclustering and the trimmed correlators equal the plain vectorized numpy evaluation bit for bit


def numpy_cluster(p4, mask, kt_power, snapshots=(), recombination="E"):
    """The vectorized numpy engine that `reclustering.cluster` replaced (one numpy step per merging over all
    jets), kept as the bit-for-bit reference: same nearest-neighbour bookkeeping, same numpy expressions.
    recombination "wta": pT sum and the harder pseudojet's position; axes are the winning inputs."""
    wta = recombination == "wta"
    def angle2(y_a, phi_a, y_b, phi_b):
        dphi = np.abs(phi_a - phi_b)
        dphi = np.minimum(dphi, 2.0 * np.pi - dphi)
        return (y_a - y_b) ** 2 + dphi**2

    n_jets, n_part = mask.shape
    jet = p4.sum(axis=1)
    jet_phi = np.arctan2(jet[:, 1], jet[:, 0])
    v = reclustering._rotate(np.asarray(p4, dtype=np.float64), -jet_phi)
    active = mask.copy()
    count = active.sum(axis=1)
    pt, rap, phi = reclustering.pt_rap_phi(v)
    w = np.where(active, pt ** (2 * kt_power), 1.0) if kt_power else np.ones_like(pt)
    dist = angle2(rap[:, :, None], phi[:, :, None], rap[:, None, :], phi[:, None, :])
    dist[~(active[:, :, None] & active[:, None, :])] = np.inf
    dist[:, np.arange(n_part), np.arange(n_part)] = np.inf
    nn_j = np.argmin(dist, axis=2)
    nn_d = np.take_along_axis(dist, nn_j[..., None], axis=2)[..., 0]
    node = np.broadcast_to(np.arange(n_part), (n_jets, n_part)).copy()
    node_p4 = np.zeros((n_jets, 2 * n_part - 1, 4))
    node_p4[:, :n_part] = v
    children = np.full((n_jets, max(n_part - 1, 1), 2), -1, dtype=np.int64)
    root = np.where(count > 0, np.argmax(active, axis=1), -1)
    root = np.where(count >= 2, n_part + count - 2, root)
    snaps = {n: (np.zeros((n_jets, n, 4)), np.zeros((n_jets, n), dtype=bool)) for n in snapshots}
    winner = np.broadcast_to(np.arange(n_part), (n_jets, n_part)).copy()
    source = np.asarray(p4, dtype=np.float64)

    def take_snapshot(rows, n):
        order = np.argsort(~active[rows], axis=1, kind="stable")[:, :n]
        if wta:
            leaves = np.take_along_axis(winner[rows], order, axis=1)
            snaps[n][0][rows, : order.shape[1]] = source[rows[:, None], leaves]
        else:
            snaps[n][0][rows, : order.shape[1]] = np.take_along_axis(v[rows], order[..., None], axis=1)
        snaps[n][1][rows, : order.shape[1]] = np.take_along_axis(active[rows], order, axis=1)

    for n in snapshots:
        take_snapshot(np.flatnonzero(count <= n), n)
    for step in range(n_part - 1):
        g = np.flatnonzero(count >= 2)
        if g.size == 0:
            break
        rows = np.arange(g.size)
        i = np.argmin(w[g] * nn_d[g] if kt_power else nn_d[g], axis=1)
        j = nn_j[g, i]
        children[g, step, 0], children[g, step, 1] = node[g, i], node[g, j]
        merged = v[g, i] + v[g, j]
        v[g, i] = merged
        node_p4[g, n_part + step] = merged
        node[g, i] = n_part + step
        active[g, j] = False
        nn_d[g, j] = np.inf
        count[g] -= 1
        if wta:
            hard = np.where(pt[g, i] >= pt[g, j], i, j)
            pt_i, rap_i, phi_i = pt[g, i] + pt[g, j], rap[g, hard], phi[g, hard]
            winner[g, i] = winner[g, hard]
        else:
            pt_i, rap_i, phi_i = reclustering.pt_rap_phi(merged)
        pt[g, i], rap[g, i], phi[g, i] = pt_i, rap_i, phi_i
        w[g, i] = pt_i ** (2 * kt_power) if kt_power else np.ones_like(pt_i)
        act = active[g]
        drow = angle2(rap[g], phi[g], rap_i[:, None], phi_i[:, None])
        drow[~act] = np.inf
        drow[rows, i] = np.inf
        old_nn, old_d = nn_j[g], nn_d[g]
        better = drow < old_d
        nn_d[g] = np.where(better, drow, old_d)
        nn_j[g] = np.where(better, i[:, None], old_nn)
        nn_j[g, i] = np.argmin(drow, axis=1)
        nn_d[g, i] = drow[rows, nn_j[g, i]]
        stale = act & ((old_nn == i[:, None]) | (old_nn == j[:, None]))
        stale[rows, i] = False
        gb, kk = np.nonzero(stale)
        if gb.size:
            bb = g[gb]
            full = angle2(rap[bb, kk][:, None], phi[bb, kk][:, None], rap[bb], phi[bb])
            full[~active[bb]] = np.inf
            full[np.arange(bb.size), kk] = np.inf
            nn_j[bb, kk] = np.argmin(full, axis=1)
            nn_d[bb, kk] = full[np.arange(bb.size), nn_j[bb, kk]]
        for n in snapshots:
            take_snapshot(g[count[g] == n], n)
    node_p4 = reclustering._rotate(node_p4, jet_phi)
    if wta:
        return node_p4, children, root, snaps
    return node_p4, children, root, {n: (reclustering._rotate(p, jet_phi), ok) for n, (p, ok) in snaps.items()}


def numpy_soft_drop_mass_chunk(p4, mask, z_cut, beta, r0):
    """Soft-drop declustering one numpy step per depth over all jets (the reference of `follow_harder_branch`)."""
    node_p4, children, root, _ = numpy_cluster(p4, mask, kt_power=0)
    n_jets, n_part = mask.shape
    current = root.copy()
    done = current < n_part
    for _ in range(n_part):
        g = np.flatnonzero(~done)
        if g.size == 0:
            break
        a, b = children[g, current[g] - n_part, 0], children[g, current[g] - n_part, 1]
        pt_a, rap_a, phi_a = reclustering.pt_rap_phi(node_p4[g, a])
        pt_b, rap_b, phi_b = reclustering.pt_rap_phi(node_p4[g, b])
        dr = np.hypot(rap_a - rap_b, sub._wrap(phi_a - phi_b))
        passed = np.minimum(pt_a, pt_b) / np.maximum(pt_a + pt_b, 1e-300) > z_cut * (dr / r0) ** beta
        current[g] = np.where(passed, current[g], np.where(pt_a >= pt_b, a, b))
        done[g] = passed | (current[g] < n_part)
    groomed = node_p4[np.arange(n_jets), np.maximum(current, 0)]
    return np.where(current >= 0, sub._mass(groomed), 0.0)


def dense_leading(pt, eta, phi, mask, k):
    """`corr._leading` with every (K, K) distance filled."""
    pt, eta, phi = sub._masked(pt, mask), sub._masked(eta, mask), sub._wrap(sub._masked(phi, mask))
    total = pt.sum(axis=1, keepdims=True)
    if k is not None and pt.shape[1] > k:
        order = np.argsort(-pt, axis=1, kind="stable")[:, :k]
        pt, eta, phi = (np.take_along_axis(x, order, axis=1) for x in (pt, eta, phi))
    return np.divide(pt, total, out=np.zeros_like(pt), where=total > 0), corr._distances(eta, phi)


def dense_ecf(z, dr, beta):
    theta = dr if beta == 1.0 else dr**beta
    return 0.5 * np.einsum("bi,bij,bj->b", z, theta, z), corr._triangle_dense(z, theta) / 6.0


def tied_jets(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Jets on a 0.1 x 0.1 tower grid with repeated pTs: many exactly equal pair distances."""
    rng = np.random.default_rng(21)
    cons, mask = random_jets(rng, n, 30)
    cons[..., 1:3] = np.round(cons[..., 1:3], 1)
    cons[..., 0] = np.round(cons[..., 0] / 5) * 5 + 1
    cons[..., 3] = cons[..., 0] * np.cosh(cons[..., 1])
    return np.where(mask[..., None], cons, 0.0).astype(np.float32), mask


def jet_sets(qcd, top):
    rng = np.random.default_rng(20)
    yield "qcd", qcd.constituents, qcd.mask
    yield "top", top.constituents, top.mask
    yield "random P=40", *random_jets(rng, 80, 40, massive=True)
    yield "random P=200", *random_jets(rng, 30, 200)
    yield "ties", *tied_jets(60)


def test_compiled_reclustering_equals_the_vectorized_numpy_engine_bit_for_bit(qcd, top):
    for name, c, mask in jet_sets(qcd, top):
        p4 = sub._four_momenta(*cols(c), mask)
        for kt_power, snapshots, scheme in ((0, (), "E"), (1, (1, 2, 3), "E"), (1, (1, 2, 3), "wta")):
            got = reclustering.cluster(p4, mask, kt_power, snapshots, recombination=scheme)
            want = numpy_cluster(p4, mask, kt_power, snapshots, recombination=scheme)
            for a, b in zip(got[:3], want[:3], strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{name}, p = {kt_power}, {scheme}")
            for n in snapshots:
                np.testing.assert_array_equal(got[3][n][0], want[3][n][0], err_msg=f"{name}, {n} axes, {scheme}")
                np.testing.assert_array_equal(got[3][n][1], want[3][n][1], err_msg=f"{name}, {n} axes, {scheme}")


def float64_observables(c: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    pt, eta, phi, e = cols(c)
    z, dr = corr._leading(pt, eta, phi, mask, 100)
    out = {"sd_mass": sub.soft_drop_mass(pt, eta, phi, e, mask), "taus": sub.n_subjettiness(pt, eta, phi, e, mask),
           "taus_kt": sub.n_subjettiness(pt, eta, phi, e, mask, axes="kt")}
    for beta in (1.0, 0.5):
        out[f"e2_e3_b{beta}"] = np.stack(corr._ecf(z, dr, beta))
    return out | corr._efp(z, dr)


def test_features_equal_the_plain_numpy_evaluation_jet_by_jet_on_qcd_and_top_jets(qcd, top, monkeypatch):
    """Every column of compute_features_for and the float64 observables behind them, bit for bit, against the
    evaluation without compiled reclustering, without multiplicity trimming of the correlators and with every
    (K, K) distance filled."""
    sets = list(jet_sets(qcd, top))
    fast = [(compute_features_for(c, mask), float64_observables(c, mask)) for _, c, mask in sets]
    monkeypatch.setattr(sub, "cluster", numpy_cluster)
    monkeypatch.setattr(sub, "_soft_drop_mass_chunk", numpy_soft_drop_mass_chunk)
    monkeypatch.setattr(corr, "_leading", dense_leading)
    monkeypatch.setattr(corr, "_ecf", dense_ecf)
    monkeypatch.setattr(corr, "_efp", lambda z, dr: dict(zip(corr.EFP_GRAPHS, corr._efp_dense(z, dr), strict=True)))
    monkeypatch.setattr(corr, "_triangle_by_width", corr._triangle_dense)
    for (name, c, mask), (got, got64) in zip(sets, fast, strict=True):
        want, want64 = compute_features_for(c, mask), float64_observables(c, mask)
        for column in FEATURE_NAMES:
            np.testing.assert_array_equal(got[column], want[column], err_msg=f"{name}: {column}")
        for key in want64:
            np.testing.assert_array_equal(got64[key], want64[key], err_msg=f"{name}: {key} (float64)")
