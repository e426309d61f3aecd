"""Generation from first principles: the physics the samples must show, determinism, shards, errors."""

from __future__ import annotations

import numpy as np
import pytest

from jetad.data import read_sample, sample_info
from jetad.data.clustering import cluster_jets
from jetad.data.sample import JetSample
from jetad.data.store import write_sample
from jetad.evaluate.inspect import summarize
from jetad.generate.detector import delphes_like, particle_level
from jetad.generate.pipeline import generate_sample
from jetad.generate.processes import default_config, process_card
from jetad.generate.production import produce
from jetad.generate.pythia_events import make_pythia, next_batch
from jetad.physics.features import FEATURE_NAMES, compute_features


def test_top_jets_have_soft_drop_mass_near_the_top_mass(top):
    assert 550 <= top.jets[:, 0].min() and top.jets[:, 0].max() < 650
    assert 160 <= np.median(top.features["sd_mass"]) <= 185


def test_top_jets_have_lower_tau32_than_qcd(top, qcd):
    assert np.median(top.features["tau32"]) < np.median(qcd.features["tau32"]) - 0.1


def test_wz_jets_have_soft_drop_mass_near_the_boson_masses(wz):
    assert 75 <= np.median(wz.features["sd_mass"]) <= 95


def test_wz_jets_have_lower_tau21_than_qcd(wz, qcd):
    assert np.median(wz.features["tau21"]) < np.median(qcd.features["tau21"]) - 0.1


def test_qcd_jets_are_light_and_in_the_pt_window(qcd):
    assert np.median(qcd.features["sd_mass"]) < 80
    assert ((qcd.jets[:, 0] >= 550) & (qcd.jets[:, 0] < 650)).all()
    assert (np.abs(qcd.jets[:, 1]) < 2.0).all()


def test_lhco_signal_has_the_x_and_y_masses_and_mjj_near_the_wprime(generated):
    s = read_sample(generated("lhco-sig", "lhco-sig", 80, seed=14))
    m_lo = np.minimum(s.event["j1_m"], s.event["j2_m"])
    m_hi = np.maximum(s.event["j1_m"], s.event["j2_m"])
    assert 3000 < np.median(s.event["mjj"]) < 3700
    assert 80 < np.median(m_lo) < 160  # Y (100 GeV) plus the radiation an R = 1.0 jet collects
    assert 430 < np.median(m_hi) < 560  # X (500 GeV)
    assert "j2_constituents" in s.event and s.event["j2_constituents"].shape[1:] == s.constituents.shape[1:]


def test_lhco_background_mjj_falls(generated):
    s = read_sample(generated("lhco-bkg", "lhco-bkg", 150, seed=15))
    assert (s.jets[:, 0] > 1200).all()
    counts, _ = np.histogram(s.event["mjj"], bins=[2500, 3000, 3500, 4000, 4500])
    assert counts[0] > counts[1] > counts[3]


def test_larger_r_inv_gives_more_missing_pt_and_softer_visible_jets(generated):
    kw = {"pt_min": 100.0, "eta_max": 2.4}
    lo = read_sample(generated("svj-lo", "svj", 120, seed=16, options={"m_med": 2000, "r_inv": 0.1}, **kw))
    hi = read_sample(generated("svj-hi", "svj", 120, seed=16, options={"m_med": 2000, "r_inv": 0.7}, **kw))
    assert np.median(hi.event["met"]) > 1.5 * np.median(lo.event["met"])
    assert np.median(hi.jets[:, 0]) < np.median(lo.jets[:, 0])


def test_same_seed_gives_identical_arrays_and_different_seeds_differ():
    cfg = default_config("qcd")
    a, b = generate_sample(cfg, 20, seed=5), generate_sample(cfg, 20, seed=5)
    c = generate_sample(cfg, 20, seed=6)
    np.testing.assert_array_equal(a.constituents, b.constituents)
    np.testing.assert_array_equal(a.event["met"], b.event["met"])
    assert not np.array_equal(a.jets, c.jets)


def test_provenance_records_every_pythia_setting_and_the_jet_definition(top):
    attrs = top.attrs
    card = process_card(default_config("top"))
    assert attrs["pythia_settings"] == card.settings
    assert "Top:gg2ttbar = on" in attrs["pythia_settings"]
    assert attrs["generator"] == "pythia8mc" and attrs["generator_version"] == "8.317.2"
    assert attrs["jet_algorithm"] == "anti-kt" and attrs["jet_r"] == 0.8
    assert attrs["detector"] == "delphes-like" and attrs["seed"] == 12 and "pythia_seed" in attrs


def test_detector_changes_multiplicity_and_resolution_and_nothing_else():
    cfg = default_config("top")
    pythia = make_pythia(process_card(cfg).settings, seed=3)
    batch = next_batch(pythia, 60)
    truth = particle_level(batch.visible)
    reco = delphes_like(batch.visible, np.random.default_rng(0))
    jets = [cluster_jets(p.pt, p.eta, p.phi, p.e, p.counts, r=0.8, min_pt=300, n_jets=1) for p in (truth, reco)]
    both = jets[0].valid[:, 0] & jets[1].valid[:, 0]
    t, r = jets[0].jets[both, 0], jets[1].jets[both, 0]
    assert both.sum() > 20
    assert np.mean(jets[1].multiplicity[both, 0]) < 0.8 * np.mean(jets[0].multiplicity[both, 0])
    pt_ratio = r[:, 0] / t[:, 0]
    assert 0.95 < np.median(pt_ratio) < 1.05  # energy scale preserved
    assert np.median(np.abs(r[:, 1] - t[:, 1])) < 0.02  # direction preserved
    mass_shift = np.abs(r[:, 3] - t[:, 3]) / t[:, 3]
    assert 0.005 < np.median(mass_shift) < 0.2  # a resolution, not a bias or nonsense
    assert reco.pt.sum() == pytest.approx(truth.pt[np.abs(truth.eta) < 4.9].sum(), rel=0.1)


def test_sharded_production_resumes_and_matches_any_worker_count(tmp_path):
    cfg = default_config("wz", n_constituents=30)
    out = produce(cfg, 30, seed=2, out=tmp_path / "wz", shard_size=10, features=False)
    assert sorted(p.name for p in out.iterdir()) == ["000.h5", "001.h5", "002.h5", "manifest.json"]
    first = read_sample(out)
    # Interrupt: drop the manifest and a shard, leave a half-written temp file; re-running redoes only that.
    (out / "manifest.json").unlink()
    (out / "001.h5").unlink()
    (out / "001.h5.tmp").write_bytes(b"half")
    mtime = (out / "000.h5").stat().st_mtime_ns
    produce(cfg, 30, seed=2, out=out, shard_size=10, features=False)
    assert (out / "000.h5").stat().st_mtime_ns == mtime and not (out / "001.h5.tmp").exists()
    np.testing.assert_array_equal(read_sample(out).constituents, first.constituents)
    parallel = produce(cfg, 30, seed=2, out=tmp_path / "wz2", shard_size=10, features=False, workers=2)
    np.testing.assert_array_equal(read_sample(parallel).constituents, first.constituents)
    assert sample_info(parallel).n_jets == 30


def test_production_runs_on_an_existing_dask_scheduler(tmp_path):
    from dask.distributed import LocalCluster

    cfg = default_config("wz", n_constituents=20)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0") as cluster:
        out = produce(cfg, 8, seed=4, out=tmp_path / "wz", shard_size=4, features=False,
                      scheduler=cluster.scheduler_address)
    inline = produce(cfg, 8, seed=4, out=tmp_path / "wz_inline", shard_size=4, features=False)
    np.testing.assert_array_equal(read_sample(out).constituents, read_sample(inline).constituents)


def test_bad_requests_fail_clearly():
    with pytest.raises(ValueError, match="unknown process"):
        process_card(default_config("higgs"))
    with pytest.raises(ValueError, match="rejected the setting"):
        make_pythia(["Beams:eCM = 13000", "HardQCD:al = on"], seed=1)
    with pytest.raises(RuntimeError, match="passed the selection"):
        generate_sample(default_config("qcd", pt_min=3000.0, pt_max=3001.0), 5, seed=1, max_events=200)


def test_wta_axes_give_tau21_and_tau32_at_most_one_on_generated_jets(qcd, top, wz):
    for sample in (qcd, top, wz):
        assert sample.features["tau21"].max() <= 1.0 and sample.features["tau32"].max() <= 1.0
        assert (sample.features["tau2"] <= sample.features["tau1"]).all()


def test_default_constituent_caps_truncate_no_jet_of_the_processes_we_generate(qcd, top, wz, generated):
    svj = read_sample(generated("svj-lo", "svj", 120, seed=16, options={"m_med": 2000, "r_inv": 0.1},
                                pt_min=100.0, eta_max=2.4))  # the sample of test_larger_r_inv_... (cached)
    lhco = [read_sample(generated("lhco-sig", "lhco-sig", 80, seed=14)),
            read_sample(generated("lhco-bkg", "lhco-bkg", 150, seed=15))]
    for s in (qcd, top, wz, svj, *lhco):
        assert (s.event["multiplicity_full"] <= s.n_constituents).all(), s.attrs["process"]
        np.testing.assert_array_equal(s.features["multiplicity"], s.mask.sum(axis=1))
    assert svj.n_constituents == 300 and svj.event["multiplicity_full"].max() > 100  # P = 100 would truncate
    for s in lhco:
        assert (s.event["j2_multiplicity_full"] <= s.n_constituents).all()


def test_features_and_multiplicity_come_from_the_full_jet_before_truncation():
    cut = generate_sample(default_config("wz", n_constituents=12), 20, seed=3, features=True)
    full = generate_sample(default_config("wz"), 20, seed=3, features=True)
    assert cut.n_constituents == 12 and cut.attrs["features_constituents"] == "all"
    counts = full.mask.sum(axis=1)
    assert (counts > 12).mean() > 0.5
    np.testing.assert_array_equal(cut.event["multiplicity_full"], counts)
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(cut.features[name], full.features[name], rtol=1e-6, atol=1e-7, err_msg=name)
    truncated = compute_features(cut)  # the same jets seen through their leading 12 constituents
    np.testing.assert_array_equal(truncated["multiplicity"], counts)  # the recorded count, not 12
    assert not np.allclose(truncated["sd_mass"], full.features["sd_mass"])


def test_inspect_reports_the_fraction_of_truncated_jets(tmp_path):
    path = produce(default_config("wz", n_constituents=30), 20, seed=5, out=tmp_path / "wz.h5")
    s = read_sample(path)
    summary = summarize(path)
    t = summary.truncation["jet"]
    assert t.exact and t.n_jets == 20
    assert t.fraction == pytest.approx(np.mean(s.event["multiplicity_full"] > 30))
    assert 0 < t.fraction < 1
    # a file without the recorded counts (older files): an upper bound from jets at P
    old = JetSample.from_constituents(s.constituents, s.mask, features={"multiplicity": s.mask.sum(axis=1)})
    write_sample(tmp_path / "old.h5", old)
    bound = summarize(tmp_path / "old.h5").truncation["jet"]
    assert not bound.exact and bound.fraction == pytest.approx(np.mean(s.event["multiplicity_full"] >= 30))
