"""The supervised baseline of the LHC Olympics review: classifiers of simulated background vs a signal library.

"Just training" (2101.08320, Sec. 2 and the supervised reference curves of every weakly supervised entry): with
simulated background and a library of simulated signal hypotheses, a classifier learns p_library / p_bkg and is
the best possible tagger for signals in the library - and blind to signals unlike any of them (its prior
dependence). Here a deep ensemble (1612.01474: several networks from different seeds and data splits, mean
probability) is trained on SR background simulation (label 0) against the pooled library (label 1), every
hypothesis with the same total weight, so the score is the ensemble's P(signal | x) for the mixture of hypotheses.

What this simplifies: the ensemble is `jetad.searches.classifiers.ClassifierEnsemble` (members differ in seed
and validation split); the data are never trained on, so nothing is cross-fitted: the fold models are empty and
every event is scored by the one ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from jetad.data.sample import JetSample
from jetad.detectors.estimator import register
from jetad.searches.base import DijetView, ResonantSearch
from jetad.searches.classifiers import CLASSIFIERS, fit_classifier
from jetad.searches.inputs import search_features

__all__ = ["BACKGROUND_REGIONS", "SupervisedSearch"]

BACKGROUND_REGIONS = ("signal_region", "all")


@register
class SupervisedSearch(ResonantSearch):
    """Supervised deep ensemble, simulated background vs a signal library (the prior-dependent baseline of 2101.08320).

    `fit(data, simulation=bkg_sim, signal_library=[sig_a, sig_b, ...])`: the ensemble is trained on the
    simulation only (labels of the samples are not read: `simulation` is background, each library sample one
    signal hypothesis); `data` sets the regions and gets the scores. Score = P(signal | x).

    Arguments:
        classifier: ensemble members, 'mlp' (CATHODE's 3 x 64 network, a deep ensemble) or 'hgb' (boosted trees).
        classifier_params: overrides of the members' settings.
        n_ensemble: members of the ensemble (>= 1).
        background_region: simulated background events trained on: 'signal_region' (default; the background
            the signal competes with) or 'all'.
        **kwargs: `ResonantSearch` options (signal_region, features, n_folds, seed, ...; no sidebands needed).

    Example:
        search = SupervisedSearch().fit(data, simulation=qcd_sim, signal_library=[wprime_500_100, wprime_300_300])
    """

    name: ClassVar[str] = "supervised"

    def __init__(self, classifier: str = "mlp", classifier_params: dict[str, Any] | None = None, n_ensemble: int = 5,
                 background_region: str = "signal_region", **kwargs: Any):
        super().__init__(**kwargs)
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
        if n_ensemble < 1:
            raise ValueError(f"n_ensemble must be >= 1 (ensemble members), got {n_ensemble}")
        if background_region not in BACKGROUND_REGIONS:
            raise ValueError(f"background_region must be one of {BACKGROUND_REGIONS}, got {background_region!r}")
        self.classifier = classifier
        self.classifier_params = classifier_params
        self.n_ensemble = n_ensemble
        self.background_region = background_region

    def fit(self, data: JetSample, simulation: JetSample | None = None,
            signal_library: Sequence[JetSample] = ()) -> SupervisedSearch:
        """Train the ensemble on `simulation` vs `signal_library`, then score `data`."""
        if simulation is None:
            raise ValueError("supervised: fit(data, simulation=..., signal_library=[...]) needs simulated background; "
                             "on the command line pass --simulation bkg.h5")
        if isinstance(signal_library, JetSample) or not len(signal_library):
            raise ValueError("supervised: signal_library must be a non-empty list of simulated signal samples (one per "
                             "hypothesis); on the command line pass --signal sig.h5 (repeatable)")
        self._training = self._training_set(simulation, signal_library)
        try:
            super().fit(data)
        finally:  # the simulation is needed while fitting only
            self.__dict__.pop("_training", None)
        #: Signal hypotheses trained on.
        self.n_hypotheses_ = len(signal_library)
        return self

    def _training_set(self, simulation: JetSample, library: Sequence[JetSample]) -> tuple[np.ndarray, ...]:
        """(x, y, w): background simulation (0) and the library (1), each hypothesis of equal total weight."""
        bkg = self._view(simulation, checked=False)
        rows = bkg.sr if self.background_region == "signal_region" else np.ones(len(bkg.mjj), bool)
        if rows.sum() < 10:
            raise ValueError(f"{bkg.source}: {int(rows.sum())} simulated background events in the "
                             f"{self.background_region}; need at least 10")
        xs, ys, ws = [bkg.x[rows]], [np.zeros(int(rows.sum()), int)], [np.full(int(rows.sum()), 1.0 / rows.sum())]
        for i, sample in enumerate(library):
            x = search_features(sample, self.features, sample.describe(f"signal hypothesis {i}"))
            if len(x) < 10:
                raise ValueError(f"{sample.describe(f'signal hypothesis {i}')}: {len(x)} events; need at least 10")
            xs.append(x)
            ys.append(np.ones(len(x), int))
            ws.append(np.full(len(x), 1.0 / (len(library) * len(x))))
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)

    def _needs_sidebands(self) -> bool:
        return False

    def _fit_shared(self, view: DijetView) -> None:
        x, y, w = self._training
        #: The ensemble of background-vs-library classifiers (scores every event).
        self.ensemble_ = fit_classifier(x, y, self.classifier, self.classifier_params, seed=self.seed,
                                        what=f"{view.source}: supervised ensemble", n_ensemble=self.n_ensemble,
                                        sample_weight=w)

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        return np.full(len(view.mjj), -1)  # the data train nothing: no fold population

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> Any:
        return None

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        return self.ensemble_.predict_proba(view.x[rows])[:, 1]
