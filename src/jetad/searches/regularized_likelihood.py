"""Regularized likelihood: a normalizing-flow density of the features with the mjj dependence divided out.

An unsupervised LHC Olympics strategy (2101.08320, the "regularized likelihoods" entry): low density of the
event features under a flow fitted to the (mostly background) data is anomalous. The raw density p(x) follows
the features' mjj dependence and sculpts mjj after a cut, so it is regularized by the density of mjj:
p(x, mjj) / p(mjj) = p(x | mjj), learned directly by a flow conditioned on mjj (MAF, 1705.07057, as in ANODE
2001.04990), so no separate KDE of mjj is needed. Optionally the density is combined with an autoencoder's
reconstruction error L_AE(x): R = L_AE(x) / p(x | mjj), large for events badly reconstructed and improbable
(the form issue #14 gives for the review's "R"; the review's own text was not checked here).
Reuses `jetad.detectors.flow.FlowDensity` and `jetad.detectors.autoencoder.Autoencoder`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from jetad.detectors.autoencoder import Autoencoder
from jetad.detectors.estimator import register
from jetad.detectors.flow import FlowDensity
from jetad.searches.base import DijetView
from jetad.searches.inputs import feature_sample
from jetad.searches.quak import QUAK_AE
from jetad.searches.unsupervised import UnsupervisedSearch, detrended, identity_trend, mjj_trend

__all__ = ["LIKELIHOOD_FLOW", "LIKELIHOOD_SCORES", "RegularizedLikelihoodSearch"]

#: The density model: MAF of 5 transforms of (64, 64), Adam 1e-3, batch 256, best epoch by validation NLL.
LIKELIHOOD_FLOW: dict[str, Any] = {"flow": "maf", "transforms": 5, "hidden": (64, 64), "epochs": 30,
                                   "batch_size": 256, "lr": 1e-3, "patience": 5}
LIKELIHOOD_SCORES = ("density", "ratio")


@register
class RegularizedLikelihoodSearch(UnsupervisedSearch):
    """Regularized-likelihood search (2101.08320): score = -log p(x | mjj), or log L_AE(x) - log p(x | mjj).

    Per fold: a FlowDensity on the standardized features of the training rows, conditioned on mjj
    (`condition_mjj`, the mass regularization) or not (the plain likelihood -log p(x)); with
    score_kind='ratio' also an Autoencoder (QUAK's small one), DisCo-decorrelated from mjj by default when
    `condition_mjj` (disco_lambda 1 on the 'mjj' observer; `ae_params` overrides it).

    Coordinates: a density is not invariant under a change of variables (2209.06225). If a feature's scale
    follows mjj, x = s(mjj) x0, then p(x | mjj) = p0(x0) / s(mjj) and -log p(x | mjj) rises by log s(mjj):
    conditioning alone still sculpts (measured in docs/benchmarks/lhco_unsupervised.md, jet masses ~ mjj).
    With `detrend_mjj` the models read (x - a(mjj)) / s(mjj), each feature's location and scale lines in
    log(mjj) fitted on the training folds (`jetad.searches.pca.mjj_trend`), where such a drift is gone and
    the conditional flow removes what is left. The general cure, a score in the latent space of the
    conditional flow (LaCATHODE, 2210.14924), needs a latent transform that FlowDensity does not expose.

    Simplifications: p(mjj) is divided out by conditioning (one conditional flow) instead of a joint flow over
    a KDE of mjj - the same quantity for a perfect density model; one flow per fold, no ensembling; the
    features are jetad's dijet features, not the entry's own set.

    Arguments:
        condition_mjj: condition the flow on mjj (the regularization); False = the raw likelihood p(x).
        score_kind: 'density' (-log p) or 'ratio' (log of the AE error over the density).
        detrend_mjj: model the features after removing their linear location and scale trends in log(mjj).
        flow_params: overrides of `LIKELIHOOD_FLOW` (any FlowDensity/TorchDetector option).
        ae_params: overrides of the autoencoder settings (`QUAK_AE`, any Autoencoder/TorchDetector option).
        **kwargs: `UnsupervisedSearch` options (train_region='all', signal_region, features, n_folds, seed, ...).

    Example:
        search = RegularizedLikelihoodSearch(score_kind="ratio").fit(data)
    """

    name: ClassVar[str] = "regularized_likelihood"

    def __init__(self, condition_mjj: bool = True, score_kind: str = "density",
                 detrend_mjj: bool = True, flow_params: dict[str, Any] | None = None,
                 ae_params: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if score_kind not in LIKELIHOOD_SCORES:
            raise ValueError(f"score_kind must be one of {LIKELIHOOD_SCORES}, got {score_kind!r}")
        if "mjj" in self.features:
            raise ValueError("features must not contain mjj: the likelihood is regularized by mjj (it conditions "
                             "the flow); remove it from features")
        for option, value in (("flow_params", flow_params), ("ae_params", ae_params)):
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{option} must be a dict of options or None, got {type(value).__name__}")
        self.condition_mjj = bool(condition_mjj)
        self.detrend_mjj = bool(detrend_mjj)
        self.score_kind = score_kind
        self.flow_params = flow_params
        self.ae_params = ae_params

    def _coordinates(self, view: DijetView, rows: np.ndarray, trend: dict[str, np.ndarray]) -> np.ndarray:
        """The models' inputs: the features of `rows` with the mjj trend removed (`PCASearch`'s detrending)."""
        return detrended(view.x[rows].astype(np.float64), np.log(view.mjj[rows]), trend).astype(np.float32)

    def _inputs(self) -> dict[str, Any]:
        return {"kind": "features", "features": self.features, "scaling": "standard"}

    def _flow(self, seed: int) -> FlowDensity:
        condition = "mjj" if self.condition_mjj else None
        return FlowDensity(condition=condition, inputs=self._inputs(), seed=seed,
                           **(LIKELIHOOD_FLOW | (self.flow_params or {})))

    def _autoencoder(self, seed: int) -> Autoencoder:
        disco = {"disco_lambda": 1.0, "disco_observer": "mjj"} if self.condition_mjj else {}
        return Autoencoder(inputs=self._inputs(), seed=seed, **(QUAK_AE | disco | (self.ae_params or {})))

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> dict[str, Any]:
        x, log_m = view.x[rows].astype(np.float64), np.log(view.mjj[rows])
        trend = mjj_trend(x, log_m) if self.detrend_mjj else identity_trend(x.shape[1])
        events = feature_sample(self._coordinates(view, rows, trend), self.features, view.mjj[rows],
                                source=f"{view.source} [{self.train_region}, fold {k}]")
        model: dict[str, Any] = {"trend": trend, "flow": self._flow(self.seed + k).fit(events)}
        if self.score_kind == "ratio":
            model["autoencoder"] = self._autoencoder(self.seed + 100 + k).fit(events)
        return model

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        events = feature_sample(self._coordinates(view, rows, model["trend"]), self.features, view.mjj[rows])
        score = -model["flow"].log_prob(events)
        if self.score_kind == "ratio":
            score = score + np.log(np.maximum(model["autoencoder"].score(events), 1e-12))
        return score
