"""CATHODE and ANODE: a conditional density of the background learned in the sidebands, interpolated into the SR.

CATHODE (2109.00546): a normalizing flow p_bkg(x | mjj) is trained on sideband events; background-like events
are sampled from it at signal-region mjj values (drawn from a KDE of the SR data's mjj); a classifier of SR data
versus these samples approximates p_data / p_bkg in the SR, the optimal anomaly score. ANODE (2001.04990)
instead trains a second conditional flow p_data(x | mjj) on SR data and scores R = p_data / p_bkg directly.
Both reuse `jetad.detectors.flow.FlowDensity` (conditioned on "mjj").
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from jetad.detectors.estimator import register
from jetad.detectors.flow import FlowDensity
from jetad.searches.base import DijetView, ResonantSearch
from jetad.searches.classifiers import fit_classifier
from jetad.searches.inputs import feature_sample

__all__ = ["CATHODE_FLOW", "CathodeSearch"]

#: CATHODE's density model: MAF with 15 MADE blocks of one 128-node hidden layer, Adam lr 1e-4, batch 256,
#: 100 epochs (2109.00546, Sec. 3); the best epoch by sideband validation likelihood is kept.
CATHODE_FLOW: dict[str, Any] = {"flow": "maf", "transforms": 15, "hidden": (128,), "epochs": 100,
                                "batch_size": 256, "lr": 1e-4, "patience": 10}
MJJ_SAMPLING = ("kde", "data")


@register
class CathodeSearch(ResonantSearch):
    """CATHODE (2109.00546), or ANODE (2001.04990) with ``anode=True``; score on SR data is out-of-fold.

    CATHODE: flow on the sidebands -> `oversampling` x N_SR samples at SR mjj -> classifier of SR data
    (label 1) vs samples (label 0), class-balanced, k-fold over the SR data (all samples in every fold); the
    score is P(data | x). ANODE: a per-fold conditional flow on the SR data of the other folds; the score is
    log p_data(x | mjj) - log p_bkg(x | mjj). Events outside the SR are scored by one seeded random fold model
    each, like the SR events (for ANODE an extrapolation of the SR flow, meaningful only inside the SR).

    Arguments:
        anode: score with the ANODE density ratio instead of the CATHODE classifier.
        oversampling: background samples per SR data event (CATHODE used 400k samples, about 4x).
        mjj_sampling: 'kde' (Gaussian KDE of the SR data's mjj, as CATHODE) or 'data' (resample SR mjj values).
        flow_params: overrides of `CATHODE_FLOW` (any FlowDensity/TorchDetector option: flow, transforms,
            hidden, epochs, batch_size, lr, patience, device, ...).
        flow_scaling: the flows' input scaling; None = 'quantile' for CATHODE (Gaussianized features, like
            CATHODE's logit preprocessing; samples stay inside the sidebands' feature range) and 'standard' for
            ANODE (its density ratio needs the scaling's Jacobian, which only 'standard'/'none' restore).
        classifier, classifier_params: as in `CWoLaHunting` ('hgb' default, or CATHODE's 'mlp').
        n_ensemble: classifiers per fold (`ClassifierEnsemble`: different validation splits, mean probability,
            one out-of-bag test against the constant prior); 1 = a single classifier (files saved before the
            option load with 1). CATHODE itself averages the 10 best epochs of one network.
        **kwargs: `ResonantSearch` options; here sideband_width defaults to None (all events outside the SR).

    Example:
        search = CathodeSearch(flow_params={"epochs": 50}).fit(data)
        sr = search.signal_region_; scores = search.scores_[sr]
    """

    name: ClassVar[str] = "cathode"
    params_before: ClassVar[dict[str, Any]] = {"n_ensemble": 1}  # files from before the per-fold ensemble

    def __init__(self, anode: bool = False, oversampling: float = 4.0, mjj_sampling: str = "kde",
                 flow_params: dict[str, Any] | None = None, flow_scaling: str | None = None, classifier: str = "hgb",
                 classifier_params: dict[str, Any] | None = None, n_ensemble: int = 10, **kwargs: Any):
        kwargs.setdefault("sideband_width", None)
        super().__init__(**kwargs)
        if mjj_sampling not in MJJ_SAMPLING:
            raise ValueError(f"mjj_sampling must be one of {MJJ_SAMPLING}, got {mjj_sampling!r}")
        if oversampling <= 0:
            raise ValueError(f"oversampling must be positive, got {oversampling}")
        if n_ensemble < 1:
            raise ValueError(f"n_ensemble must be >= 1 (classifiers per fold), got {n_ensemble}")
        if "mjj" in self.features:
            raise ValueError("mjj is the conditioning variable of the flow; remove it from features")
        if anode and flow_scaling not in (None, "standard", "none"):
            raise ValueError(f"ANODE compares two flows' densities in raw units; flow_scaling={flow_scaling!r} "
                             "does not keep its Jacobian: use 'standard' or 'none'")
        self.anode = anode
        self.oversampling = oversampling
        self.mjj_sampling = mjj_sampling
        self.flow_params = flow_params
        self.flow_scaling = flow_scaling
        self.classifier = classifier
        self.classifier_params = classifier_params
        self.n_ensemble = n_ensemble

    def _flow(self, seed: int) -> FlowDensity:
        params = CATHODE_FLOW | (self.flow_params or {})
        scaling = self.flow_scaling or ("standard" if self.anode else "quantile")
        inputs = {"kind": "features", "features": self.features, "scaling": scaling}
        return FlowDensity(condition="mjj", inputs=inputs, seed=seed, **params)

    def _rows_sample(self, view: DijetView, rows: np.ndarray, what: str):
        return feature_sample(view.x[rows], self.features, view.mjj[rows], source=f"{view.source} [{what}]")

    def sample_mjj(self, sr_mjj: np.ndarray, n: int, seed: int) -> np.ndarray:
        """n mjj values [GeV] in the SR: from a Gaussian KDE of `sr_mjj` (rejecting draws outside the SR) or
        resampled from `sr_mjj`, per `mjj_sampling`."""
        rng = np.random.default_rng(seed)
        if self.mjj_sampling == "data":
            return rng.choice(sr_mjj, size=n, replace=True)
        from scipy.stats import gaussian_kde

        kde, lo, hi = gaussian_kde(sr_mjj), *self.signal_region
        out: list[np.ndarray] = []
        while sum(len(o) for o in out) < n:
            m = kde.resample(2 * n, seed=rng)[0]
            out.append(m[(m >= lo) & (m < hi)])
        return np.concatenate(out)[:n]

    def _fit_shared(self, view: DijetView) -> None:
        self.background_flow_ = self._flow(self.seed).fit(self._rows_sample(view, np.flatnonzero(view.sb), "SB"))
        if self.anode:
            return
        sr_mjj = view.mjj[view.sr]
        n = max(1, round(self.oversampling * len(sr_mjj)))
        mjj = self.sample_mjj(sr_mjj, n, self.seed + 1)
        samples = self.background_flow_.sample(n, context=mjj, seed=self.seed + 2)
        ok = np.isfinite(samples).all(axis=1)
        self.samples_, self.sample_mjj_ = samples[ok], mjj[ok]

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        return np.where(view.sr, 0, -1)

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> Any:
        if self.anode:
            return self._flow(self.seed + 10 + k).fit(self._rows_sample(view, rows, f"SR fold {k}"))
        x = np.concatenate([view.x[rows], self.samples_])
        y = np.r_[np.ones(len(rows), int), np.zeros(len(self.samples_), int)]
        return fit_classifier(x, y, self.classifier, self.classifier_params, seed=self.seed + k,
                              what=f"{view.source}: CATHODE fold {k} (SR data vs flow samples)",
                              n_ensemble=self.n_ensemble)

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        if self.anode:
            events = self._rows_sample(view, rows, "scored")
            return model.log_prob(events) - self.background_flow_.log_prob(events)
        return model.predict_proba(view.x[rows])[:, 1]
