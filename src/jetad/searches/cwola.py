"""CWoLa hunting: a classifier of signal region versus sidebands in mjj (1805.02664, 1902.02634).

Classification without labels (1708.02949): the optimal classifier of two mixtures of the same two classes is
the optimal signal/background classifier. With features uncorrelated with mjj the sidebands hold background
only, the SR background plus any resonance, so a classifier of "event in the SR" learns the signal where
there is one and nothing (AUC ~ 0.5 on signal) where there is none. Score = the classifier's P(SR | x).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from jetad.detectors.estimator import register
from jetad.searches.base import DijetView, ResonantSearch
from jetad.searches.classifiers import fit_classifier

__all__ = ["CWoLaHunting"]


@register
class CWoLaHunting(ResonantSearch):
    """CWoLa hunting (1805.02664): classifier of SR (label 1) versus sidebands (label 0), k-fold cross-fitted.

    SR and sideband events are split into `n_folds` folds (stratified by region); each fold is scored by the
    classifier trained on the others, class-balanced. Events beyond the sidebands are scored by one seeded
    random fold classifier each (never the fold mean: its narrower distribution would sculpt mjj).

    Arguments:
        classifier: 'hgb' (sklearn HistGradientBoostingClassifier, default) or 'mlp' (torch 3 x 64).
        classifier_params: overrides of the classifier's defaults (of the members' with an ensemble).
        n_ensemble: classifiers per fold (`ClassifierEnsemble`, as in `CathodeSearch`); 1 = one classifier.
        **kwargs: `ResonantSearch` options (signal_region=(3300, 3700) GeV, sideband_width=200 GeV, features,
            n_folds=5, seed, min_sideband_events=100).

    Example:
        search = CWoLaHunting(signal_region=(3300, 3700), sideband_width=200).fit(data)
        results = bump_hunt(data.event["mjj"], search.score(data), efficiencies=(1.0, 0.1, 0.01))
    """

    name: ClassVar[str] = "cwola"

    def __init__(self, classifier: str = "hgb", classifier_params: dict[str, Any] | None = None, n_ensemble: int = 1,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if n_ensemble < 1:
            raise ValueError(f"n_ensemble must be >= 1 (classifiers per fold), got {n_ensemble}")
        self.classifier = classifier
        self.classifier_params = classifier_params
        self.n_ensemble = n_ensemble

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        return np.where(view.sr, 1, np.where(view.sb, 0, -1))

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> Any:
        return fit_classifier(view.x[rows], view.sr[rows].astype(int), self.classifier, self.classifier_params,
                              seed=self.seed + k, what=f"{view.source}: CWoLa fold {k} (SR vs sidebands)",
                              n_ensemble=self.n_ensemble)

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        return model.predict_proba(view.x[rows])[:, 1]
