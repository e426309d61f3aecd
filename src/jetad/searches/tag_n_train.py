"""Tag N' Train: one jet tags signal-rich and signal-poor events, the other jet learns from them (2002.12376).

An event with two jets has two nearly independent views of the same resonance. A weak, unsupervised tagger on
jet 1 (an autoencoder trained on the data: high reconstruction loss = unusual) splits the events into a
signal-rich and a signal-poor sample; a classifier on jet 2's features trained on that split (CWoLa: mixed
samples suffice) is stronger than the tagger; the roles are then swapped. Here the dijet-search variant of the
paper, combined with CWoLa hunting: signal-rich = SR events whose tagging jet is in the top `tag_fraction` of
autoencoder losses; signal-poor = sideband events below that loss threshold.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from jetad.detectors.autoencoder import Autoencoder
from jetad.detectors.estimator import register
from jetad.searches.base import DijetView, ResonantSearch
from jetad.searches.classifiers import fit_classifier
from jetad.searches.inputs import feature_sample

__all__ = ["TAG_AE", "TagNTrain"]

#: The jet autoencoders: a small dense AE on the few jet features (the paper used jet images).
TAG_AE: dict[str, Any] = {"hidden": (32, 16), "latent_dim": 1, "epochs": 30, "batch_size": 256, "patience": 5}
COMBINE = ("product", "sum")


@register
class TagNTrain(ResonantSearch):
    """Tag N' Train (Amram & Mantilla Suarez, 2002.12376), one round, CWoLa-hunting variant; k-fold cross-fitted.

    1. Autoencoders AE1 on jet-1 features and AE2 on jet-2 features, trained on all events of the data.
    2. Per fold (SR and sideband events of the other folds): tag with AE1's loss -> train classifier C2 on
       jet-2 features; tag with AE2's loss -> train C1 on jet-1 features (class-balanced).
    3. Score = C1(jet 1) * C2(jet 2) ('product': both jets must look like signal, the paper's selection of
       events where both jets pass) or C1 + C2 ('sum').

    The autoencoders see every event (they are unsupervised and never see a region label); the classifiers are
    cross-fitted like every other search here.

    Arguments:
        jet1_features, jet2_features: per-jet inputs, jets ordered by mass (J1 the lighter; ``mj2`` = mj1 +
            delta_mj is derived).
        tag_fraction: fraction of events (SR and sidebands) with the highest tagger loss called signal-like.
        combine: 'product' or 'sum' of the two classifier outputs.
        ae_params: overrides of `TAG_AE` (any Autoencoder/TorchDetector option).
        classifier, classifier_params: as in `CWoLaHunting`.
        **kwargs: `ResonantSearch` options except `features` (the union of the jet features).
    """

    name: ClassVar[str] = "tag_n_train"

    def __init__(self, jet1_features: tuple[str, ...] = ("mj1", "tau21_j1"),
                 jet2_features: tuple[str, ...] = ("mj2", "tau21_j2"), tag_fraction: float = 0.2,
                 combine: str = "product", ae_params: dict[str, Any] | None = None, classifier: str = "hgb",
                 classifier_params: dict[str, Any] | None = None, **kwargs: Any):
        jet1_features, jet2_features = tuple(jet1_features), tuple(jet2_features)
        features = kwargs.pop("features", None)
        if features is not None and tuple(features) != jet1_features + jet2_features:
            raise ValueError("TagNTrain reads jet1_features and jet2_features; do not pass features")
        super().__init__(features=jet1_features + jet2_features, **kwargs)
        if not 0 < tag_fraction < 1:
            raise ValueError(f"tag_fraction must be in (0, 1), got {tag_fraction}")
        if combine not in COMBINE:
            raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
        self.jet1_features, self.jet2_features = jet1_features, jet2_features
        self.tag_fraction = tag_fraction
        self.combine = combine
        self.ae_params = ae_params
        self.classifier = classifier
        self.classifier_params = classifier_params

    def _jet(self, view: DijetView, rows: np.ndarray, jet: int) -> np.ndarray:
        n1 = len(self.jet1_features)
        return view.x[rows, :n1] if jet == 1 else view.x[rows, n1:]

    def _fit_shared(self, view: DijetView) -> None:
        everything = np.arange(len(view.mjj))
        self.autoencoders_, losses = [], []
        for jet, names in ((1, self.jet1_features), (2, self.jet2_features)):
            events = feature_sample(self._jet(view, everything, jet), names, view.mjj,  # mjj: for decorrelation
                                    source=f"{view.source} [jet {jet}]")
            inputs = {"kind": "features", "features": names, "scaling": "standard"}
            ae = Autoencoder(inputs=inputs, seed=self.seed + jet, **(TAG_AE | (self.ae_params or {}))).fit(events)
            self.autoencoders_.append(ae)
            losses.append(ae.score(events))
        #: (N, 2) autoencoder losses of jet 1 and jet 2 of the fitted events (the taggers' outputs).
        self.tag_losses_ = np.stack(losses, axis=1)

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        return np.where(view.sr, 1, np.where(view.sb, 0, -1))

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> Any:
        classifiers = []
        for trained, tagger in ((1, 2), (2, 1)):
            loss = self.tag_losses_[rows, tagger - 1]
            threshold = np.quantile(loss, 1 - self.tag_fraction)
            rich, poor = view.sr[rows] & (loss >= threshold), view.sb[rows] & (loss < threshold)
            keep = rich | poor
            x = self._jet(view, rows[keep], trained)
            classifiers.append(fit_classifier(
                x, rich[keep].astype(int), self.classifier, self.classifier_params, seed=self.seed + 2 * k + trained,
                what=f"{view.source}: Tag N' Train fold {k} (jet {trained} tagged by jet {tagger})"))
        return classifiers

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        c1, c2 = model
        return np.stack([c1.predict_proba(self._jet(view, rows, 1))[:, 1],
                         c2.predict_proba(self._jet(view, rows, 2))[:, 1]], axis=1)

    def _combine(self, outputs: np.ndarray) -> np.ndarray:
        return outputs.prod(axis=1) if self.combine == "product" else outputs.sum(axis=1)
