"""PCA reconstruction error: the simplest unsupervised baseline of the LHC Olympics review (2101.08320).

Principal component analysis of the standardized high-level features of the training folds; an event is
anomalous when much of it lies outside the `n_components` leading directions (the linear autoencoder's
reconstruction error). No labels and no region label: the model describes the bulk of the data, which is
background.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from jetad.detectors.estimator import register
from jetad.searches.base import DijetView
from jetad.searches.unsupervised import UnsupervisedSearch, detrended, identity_trend, mjj_trend, standardization

__all__ = ["PCASearch"]


@register
class PCASearch(UnsupervisedSearch):
    """PCA reconstruction error (the baseline of 2101.08320), numpy only, k-fold cross-fitted.

    Per fold: standardize the features of the training rows, take the `n_components` leading principal
    directions V_k (SVD); score = ||z||^2 - ||V_k^T z||^2, the squared distance of the standardized event z to
    the leading subspace. Simplification: one global linear model; the review's entry used it as a baseline.

    Mass decorrelation (`detrend_mjj`): before standardizing, each feature's least-squares line in log(mjj)
    (fitted on the training rows) is subtracted and the residual divided by the line of its absolute value in
    log(mjj), so the score follows neither the mean nor the width of the features' drift with mjj (first-order
    location and scale only; a non-linear dependence or a changing correlation survives).

    Arguments:
        n_components: leading components kept, 1 <= k < number of features.
        detrend_mjj: remove each feature's linear location and scale trends in log(mjj) first.
        **kwargs: `UnsupervisedSearch` options (train_region='all', signal_region, sideband_width, features,
            n_folds, seed, ...).

    Example:
        search = PCASearch(n_components=2, detrend_mjj=True).fit(data)
        scores = search.score(data)
    """

    name: ClassVar[str] = "pca"

    def __init__(self, n_components: int = 2, detrend_mjj: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if not isinstance(n_components, (int, np.integer)) or not 1 <= n_components < len(self.features):
            raise ValueError(f"n_components must be an integer in [1, {len(self.features) - 1}] (fewer than the "
                             f"{len(self.features)} features), got {n_components!r}")
        self.n_components = int(n_components)
        self.detrend_mjj = bool(detrend_mjj)

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> dict[str, np.ndarray]:
        x, log_m = view.x[rows].astype(np.float64), np.log(view.mjj[rows])
        trend = mjj_trend(x, log_m) if self.detrend_mjj else identity_trend(x.shape[1])
        residual = detrended(x, log_m, trend)
        mean, std = standardization(residual)
        _, _, vt = np.linalg.svd((residual - mean) / std, full_matrices=False)
        return trend | {"mean": mean, "std": std, "components": vt[: self.n_components]}

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        x = detrended(view.x[rows].astype(np.float64), np.log(view.mjj[rows]), model)
        z = (x - model["mean"]) / model["std"]
        kept = z @ model["components"].T
        return np.maximum((z**2).sum(1) - (kept**2).sum(1), 0.0)
