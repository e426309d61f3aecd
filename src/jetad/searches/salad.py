"""SALAD: simulation assisted likelihood-free anomaly detection (2001.05001).

Andreassen, Nachman and Shih: a classifier of data against simulated background in the sidebands, with mjj as an
input, gives weights w(x, mjj) = p / (1 - p) that morph the simulation into the data (DCTR, 1907.08209); the
weights are evaluated at SR mjj (interpolated), and a CWoLa classifier of SR data against the reweighted SR
simulation learns p_data / p_bkg there. The simulation supplies the SR background shape, the sidebands correct
its mis-modelling, and features correlated with mjj are allowed (the SR reference has the SR mjj).

What this simplifies: both classifiers are those of `jetad.searches.classifiers` (the reweighter CATHODE's 3 x 64
MLP, early-stopped, instead of the paper's larger network; 'hgb' trees interpolate mjj piecewise constantly and
on the toy leave 2-3 times the residual mis-modelling, docs/benchmarks/lhco_weak.md), weights are clipped at
`max_weight`, and the SR classifier (boosted trees by default) is cross-fitted over the SR data.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from jetad.data.sample import JetSample
from jetad.detectors.estimator import register
from jetad.searches.base import DijetView, ResonantSearch
from jetad.searches.classifiers import CLASSIFIERS, fit_classifier

__all__ = ["SaladSearch"]


@register
class SaladSearch(ResonantSearch):
    """SALAD (2001.05001): sideband-reweighted simulation as the SR reference of a CWoLa classifier.

    1. Reweighter (shared by the folds): data (label 1) vs simulation (label 0) in the sidebands on (x, mjj),
       class-balanced; w = p / (1 - p), clipped to `max_weight`, normalized to mean 1 over the SR simulation.
    2. Per fold (k-fold over the SR data, all the SR simulation in every fold): classifier of SR data (1) vs
       SR simulation weighted by w (0) on x; score = P(data | x). Events outside the SR are scored by one
       seeded random fold model each.

    `fit(data, simulation=sim)` needs the simulated background sample (its labels are not read).

    Arguments:
        reweight: False skips step 1 (plain data vs simulation: the comparison that shows what it fixes).
        reweighter, reweighter_params: classifier of step 1 ('mlp' default: smooth in mjj; or 'hgb') and its
            overrides.
        max_weight: upper clip of the weights (the paper uses none; a few sideband outliers can dominate).
        classifier, classifier_params, n_ensemble: the SR classifier, as in `CathodeSearch`.
        **kwargs: `ResonantSearch` options (signal_region, sideband_width=200 GeV, features, n_folds, seed, ...).

    Example:
        search = SaladSearch().fit(data, simulation=qcd_simulation)
        w = search.simulation_weights(qcd_simulation)
    """

    name: ClassVar[str] = "salad"

    def __init__(self, reweight: bool = True, reweighter: str = "mlp", reweighter_params: dict[str, Any] | None = None,
                 max_weight: float = 20.0, classifier: str = "hgb", classifier_params: dict[str, Any] | None = None,
                 n_ensemble: int = 5, **kwargs: Any):
        super().__init__(**kwargs)
        for option, kind in (("reweighter", reweighter), ("classifier", classifier)):
            if kind not in CLASSIFIERS:
                raise ValueError(f"{option} must be one of {CLASSIFIERS}, got {kind!r}")
        if not max_weight > 1:
            raise ValueError(f"max_weight must be > 1, got {max_weight}")
        if n_ensemble < 1:
            raise ValueError(f"n_ensemble must be >= 1 (classifiers per fold), got {n_ensemble}")
        if "mjj" in self.features:
            raise ValueError("mjj is an input of the reweighter only; remove it from features")
        self.reweight = reweight
        self.reweighter = reweighter
        self.reweighter_params = reweighter_params
        self.max_weight = max_weight
        self.classifier = classifier
        self.classifier_params = classifier_params
        self.n_ensemble = n_ensemble

    def fit(self, data: JetSample, simulation: JetSample | None = None) -> SaladSearch:
        """Reweight `simulation` to `data` in the sidebands, then CWoLa of SR data vs reweighted SR simulation."""
        if simulation is None:
            raise ValueError("salad: fit(data, simulation=...) needs a simulated background sample (SALAD reweights "
                             "it to the data in the sidebands); on the command line pass --simulation sim.h5")
        sim = self._view(simulation, checked=False)
        for region, mask, need in (("signal region", sim.sr, 10 * self.n_folds),
                                   ("sidebands", sim.sb, self.min_sideband_events)):
            if mask.sum() < need:
                raise ValueError(f"{sim.source}: {int(mask.sum())} simulated events in the {region}; need at least "
                                 f"{need} (simulate more, or widen the sidebands)")
        self._simulation = sim
        try:
            super().fit(data)
        finally:  # the simulation and its weighted SR part are needed while fitting only
            self.__dict__.pop("_simulation", None)
            self.__dict__.pop("_reference", None)
        return self

    def _reweighter_inputs(self, view: DijetView, rows: np.ndarray) -> np.ndarray:
        return np.column_stack([view.x[rows], np.log(view.mjj[rows])])

    def _weights(self, view: DijetView, rows: np.ndarray) -> np.ndarray:
        """Raw DCTR weights p / (1 - p) of simulated events, clipped to [1 / max_weight, max_weight]."""
        if self.reweighter_ is None:
            return np.ones(len(rows))
        p = self.reweighter_.predict_proba(self._reweighter_inputs(view, rows))[:, 1]
        return np.clip(p / np.maximum(1 - p, 1e-12), 1 / self.max_weight, self.max_weight)

    def simulation_weights(self, simulation: JetSample) -> np.ndarray:
        """(N,) weights morphing `simulation` into the data (raw p / (1 - p), clipped; 1 without reweighting)."""
        self._check_fitted()
        view = self._view(simulation, checked=False)
        return self._weights(view, np.arange(len(view.mjj)))

    def _fit_shared(self, view: DijetView) -> None:
        sim = self._simulation
        #: The sideband classifier of data vs simulation on (x, log mjj), or None with reweight=False.
        self.reweighter_ = None
        if self.reweight:
            x = np.concatenate([self._reweighter_inputs(view, np.flatnonzero(view.sb)),
                                self._reweighter_inputs(sim, np.flatnonzero(sim.sb))])
            y = np.r_[np.ones(int(view.sb.sum()), int), np.zeros(int(sim.sb.sum()), int)]
            self.reweighter_ = fit_classifier(x, y, self.reweighter, self.reweighter_params, seed=self.seed + 500,
                                              what=f"{view.source}: SALAD sideband reweighter")
        rows = np.flatnonzero(sim.sr)
        w = self._weights(sim, rows)
        self._reference = (sim.x[rows], w / w.mean())  # the weighted SR simulation (not saved)

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        return np.where(view.sr, 0, -1)

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> Any:
        x_ref, w_ref = self._reference
        x = np.concatenate([view.x[rows], x_ref])
        y = np.r_[np.ones(len(rows), int), np.zeros(len(x_ref), int)]
        w = np.r_[np.ones(len(rows)), w_ref]
        return fit_classifier(x, y, self.classifier, self.classifier_params, seed=self.seed + k,
                              what=f"{view.source}: SALAD fold {k} (SR data vs reweighted simulation)",
                              n_ensemble=self.n_ensemble, sample_weight=w)

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        return model.predict_proba(view.x[rows])[:, 1]
