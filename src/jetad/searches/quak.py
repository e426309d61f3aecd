"""QUAK, quasi anomalous knowledge: the losses of several autoencoders as coordinates of a "loss space" (2011.03550).

One autoencoder learns background-like data (here the sidebands, or all events); optional signal-prior
autoencoders learn simulated signal hypotheses. An event's coordinates are its (log) reconstruction losses under
each; background sits at low background loss and high signal losses, a signal resembling a prior at high
background loss and low loss under that prior. With priors the search is semi-supervised: sensitivity to
signals like the priors improves while a background-only coordinate keeps it open to anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from jetad.data.sample import JetSample
from jetad.detectors.autoencoder import Autoencoder
from jetad.detectors.estimator import register
from jetad.searches.base import DijetView, ResonantSearch
from jetad.searches.inputs import feature_sample, search_features

__all__ = ["QUAK", "QUAK_AE"]

QUAK_AE: dict[str, Any] = {"hidden": (32, 16), "latent_dim": 2, "epochs": 40, "batch_size": 256, "patience": 5}
BACKGROUND_REGIONS = ("sidebands", "all")


@register
class QUAK(ResonantSearch):
    """QUAK (Park et al., 2011.03550) on the dijet features; background AE k-fold cross-fitted.

    Loss space: u_0 = log L_bkg (AE trained on `background_region` events of the data), u_i = log L_i (AE on
    signal prior i, given to `fit`). Score = u_0 - min_i u_i: large when the event is badly reconstructed as
    background and well as some signal hypothesis (a log ratio of losses; the paper cuts on regions of this
    space); without priors, score = u_0 (a plain background autoencoder). `loss_space_` holds the out-of-fold
    coordinates of the fitted events, `loss_space(sample)` those of any sample.

    Arguments:
        background_region: 'sidebands' (background-like: the SR is never trained on) or 'all' events.
        ae_params: overrides of `QUAK_AE` (any Autoencoder/TorchDetector option), for every autoencoder.
        **kwargs: `ResonantSearch` options (signal_region, sideband_width=200 GeV, features, n_folds, seed, ...).

    Example:
        search = QUAK().fit(data, signal_priors=[wprime_sim])
        scores = search.score(data)
    """

    name: ClassVar[str] = "quak"

    def __init__(self, background_region: str = "sidebands", ae_params: dict[str, Any] | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if background_region not in BACKGROUND_REGIONS:
            raise ValueError(f"background_region must be one of {BACKGROUND_REGIONS}, got {background_region!r}")
        self.background_region = background_region
        self.ae_params = ae_params

    def _needs_sidebands(self) -> bool:
        return self.background_region == "sidebands"

    def _autoencoder(self, x: np.ndarray, mjj: np.ndarray | None, seed: int, what: str) -> Autoencoder:
        inputs = {"kind": "features", "features": self.features, "scaling": "standard"}
        ae = Autoencoder(inputs=inputs, seed=seed, **(QUAK_AE | (self.ae_params or {})))
        return ae.fit(feature_sample(x, self.features, mjj, source=what))

    def fit(self, data: JetSample, signal_priors: Sequence[JetSample] = ()) -> QUAK:
        """Train the background AE on the data (cross-fitted) and one AE per signal-prior sample."""
        self.prior_autoencoders_ = [
            self._autoencoder(search_features(prior, self.features), prior.event.get("mjj"), self.seed + 100 + i,
                              f"{prior.describe(f'signal prior {i}')}")
            for i, prior in enumerate(signal_priors)
        ]
        super().fit(data)
        self.loss_space_ = self.outputs_
        return self

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        return np.where(view.sb, 0, -1) if self.background_region == "sidebands" else np.zeros(len(view.mjj), int)

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> Any:
        return self._autoencoder(view.x[rows], view.mjj[rows], self.seed + k,
                                 f"{view.source} [{self.background_region}, fold {k}]")

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        events = feature_sample(view.x[rows], self.features)
        losses = [ae.score(events) for ae in (model, *self.prior_autoencoders_)]
        return np.log(np.maximum(np.stack(losses, axis=1), 1e-12))

    def _combine(self, outputs: np.ndarray) -> np.ndarray:
        if outputs.shape[1] == 1:
            return outputs[:, 0]
        return outputs[:, 0] - outputs[:, 1:].min(axis=1)

    def loss_space(self, sample: JetSample) -> np.ndarray:
        """(N, 1 + n_priors) log losses (background AE first; out-of-fold for the fitted sample)."""
        return self._outputs_for(self._fitted_view(sample))
