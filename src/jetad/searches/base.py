"""The base of the weakly supervised resonant searches (LHC Olympics strategies, 2101.08320): regions and
cross-fitting, on the estimator contract of the detectors.

A search sees one dijet sample - signal and background mixed, no labels - and a signal region (SR) in mjj.
It learns from the data alone and returns a per-event anomaly score (higher = more signal-like) that feeds
`jetad.evaluate.bumphunt.bump_hunt` (scan of mjj after a score cut) and, on simulation, `sic_curve`/`auc`.

Every learned model is cross-fitted: the events that train models (the fold population, e.g. SR and
sidebands for CWoLa) are split into `n_folds` seeded folds and fold k is scored by the model trained on the
other folds. Events outside the population get a seeded random fold and are scored by that one model too, so
every event's score comes from a single model that never saw it. (Scoring them by the mean of the fold
models instead would give them a narrower score distribution than the out-of-fold events, and a cut on the
score would then prefer signal-region events: a fake bump. Measured on 100k QCD events: local Z = 11 at the
SR for CATHODE with no signal.) `score(data)` on the fitted sample returns these out-of-fold scores; on any
other sample the mean of the fold models (consistent within that sample).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from jetad.data.sample import JetSample, SchemaError
from jetad.detectors.estimator import Estimator
from jetad.searches.classifiers import CLASSIFIER_TYPES
from jetad.searches.inputs import DEFAULT_SEARCH_FEATURES, search_features

__all__ = ["DijetView", "ResonantSearch", "assign_folds"]

#: Learned attributes kept for audits of the fitted sample only, not saved (CATHODE's samples can be large).
_AUDIT_ONLY = ("training_rows_", "samples_", "sample_mjj_", "template_scores_")


def assign_folds(strata: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """(N,) fold id in [0, n_folds) per event with stratum >= 0 (stratified, seeded); -1 for stratum < 0."""
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    fold = np.full(len(strata), -1, dtype=np.int64)
    for s in np.unique(strata[strata >= 0]):
        rows = rng.permutation(np.flatnonzero(strata == s))
        fold[rows] = (np.arange(len(rows)) + rng.integers(n_folds)) % n_folds
    return fold


@dataclass
class DijetView:
    """One dijet sample as a search reads it: inputs x (N, F), mjj [GeV], and the SR / sideband masks."""

    x: np.ndarray
    mjj: np.ndarray
    sr: np.ndarray
    sb: np.ndarray
    source: str


class ResonantSearch(Estimator):
    """Base of the weakly supervised resonant searches: regions, checks, cross-fitting, scoring.

    Subclasses set `name`, implement `_fold_strata(view)` (which events train the fold models, and their
    strata for stratified folds), `_fit_fold(view, rows, k)` and `_predict(model, view, rows)` (the model's
    outputs, (n,) or (n, C)), may learn state shared by all folds in `_fit_shared(view)`, and may turn outputs
    into a score in `_combine(outputs)` (default: the outputs themselves). Fold outputs are averaged before
    `_combine` where several models score an event.

    Arguments:
        signal_region: (low, high) mjj [GeV] of the signal region; it must lie inside the data's mjj range.
        sideband_width: width [GeV] of each sideband next to the SR; None = all events outside the SR.
        features: input columns (see `search_features`); default the CATHODE set.
        n_folds: cross-fitting folds (>= 2).
        seed: seeds every split, sample and network; the same seed gives the same scores.
        min_sideband_events: fewer sideband events than this is an error.

    Learned: `scores_` (out-of-fold scores of the fitted sample), `outputs_` (the out-of-fold model outputs
    behind them), `fold_` (training fold per event, -1 = in no training set), `score_fold_` (the fold whose
    model scored the event), `training_rows_` (per fold, the rows its model was trained on - for audits),
    `signal_region_`, `sideband_`, `models_`.
    """

    kind: ClassVar[str] = "search"
    remedy: ClassVar[str] = "rerun 'jetad search'"
    #: Searches read jet kinematics and features only (`jetad.detectors.scoring` then skips constituents).
    reads_constituents: ClassVar[bool] = False

    def __init__(self, signal_region: tuple[float, float] = (3300.0, 3700.0), sideband_width: float | None = 200.0,
                 features: tuple[str, ...] = DEFAULT_SEARCH_FEATURES, n_folds: int = 5, seed: int = 0,
                 min_sideband_events: int = 100):
        lo, hi = (float(v) for v in signal_region)
        if not lo < hi:
            raise ValueError(f"signal_region {signal_region}: need low < high [GeV]")
        if sideband_width is not None and sideband_width <= 0:
            raise ValueError(f"sideband_width must be positive or None, got {sideband_width}")
        if n_folds < 2:
            raise ValueError(f"n_folds must be >= 2 (cross-fitting), got {n_folds}")
        self.signal_region = (lo, hi)
        self.sideband_width = sideband_width
        self.features = tuple(features)
        self.n_folds = n_folds
        self.seed = seed
        self.min_sideband_events = min_sideband_events

    # -- regions -------------------------------------------------------------------------------------
    def regions(self, mjj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boolean (signal region, sidebands) masks for mjj values [GeV]; SR = [low, high)."""
        lo, hi = self.signal_region
        sr = (mjj >= lo) & (mjj < hi)
        if self.sideband_width is None:
            return sr, ~sr
        w = self.sideband_width
        return sr, ((mjj >= lo - w) & (mjj < lo)) | ((mjj >= hi) & (mjj < hi + w))

    def _view(self, sample: JetSample, checked: bool) -> DijetView:
        source = sample.describe("data")
        if len(sample) == 0:
            raise SchemaError(f"{source}: empty sample")
        mjj = sample.column("mjj", source)
        x = search_features(sample, self.features, source)
        sr, sb = self.regions(mjj)
        if checked:
            lo, hi = self.signal_region
            if not mjj.min() < lo < hi < mjj.max():
                raise ValueError(
                    f"{source}: signal region [{lo:g}, {hi:g}] GeV is not inside the data's mjj range "
                    f"[{mjj.min():.0f}, {mjj.max():.0f}] GeV; choose an SR with data on both sides"
                )
            if self._needs_sidebands() and sb.sum() < self.min_sideband_events:
                raise ValueError(
                    f"{source}: {int(sb.sum())} sideband events (sideband_width={self.sideband_width} GeV around "
                    f"[{lo:g}, {hi:g}]), fewer than min_sideband_events={self.min_sideband_events}; widen the "
                    "sidebands or use more data"
                )
            if sr.sum() < 10 * self.n_folds:
                raise ValueError(f"{source}: {int(sr.sum())} events in the signal region [{lo:g}, {hi:g}] GeV; need "
                                 f"at least {10 * self.n_folds} for {self.n_folds} folds")
        return DijetView(x=x, mjj=mjj, sr=sr, sb=sb, source=source)

    # -- subclass hooks ------------------------------------------------------------------------------
    def _needs_sidebands(self) -> bool:
        """Whether fitting uses sideband events (then at least `min_sideband_events` are required)."""
        return True

    def _combine(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs -> anomaly score (default: the outputs, which must then be (N,))."""
        return outputs

    def _fit_shared(self, view: DijetView) -> None:
        """Learn state shared by all folds (default: none)."""

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        raise NotImplementedError

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> Any:
        raise NotImplementedError

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- contract ------------------------------------------------------------------------------------
    def fit(self, data: JetSample) -> ResonantSearch:
        """Learn from the data itself (no labels); cross-fitted, see the module docstring."""
        view = self._view(data, checked=True)
        self.signal_region_, self.sideband_ = view.sr, view.sb
        self._fit_shared(view)
        self.fold_ = assign_folds(self._fold_strata(view), self.n_folds, self.seed)
        self.models_, self.training_rows_ = [], []
        for k in range(self.n_folds):
            rows = np.flatnonzero((self.fold_ >= 0) & (self.fold_ != k))
            self.training_rows_.append(rows)
            self.models_.append(self._fit_fold(view, rows, k))
        self.score_fold_ = self.fold_.copy()
        rest = self.fold_ < 0
        self.score_fold_[rest] = np.random.default_rng([self.seed, 1]).integers(self.n_folds, size=int(rest.sum()))
        self.outputs_ = self._outputs_by_fold(view, self.score_fold_)
        self.scores_ = np.asarray(self._combine(self.outputs_), dtype=np.float64)
        keys = _event_keys(view)
        self.key_order_ = np.argsort(keys, kind="stable")
        self.sorted_keys_ = keys[self.key_order_]
        return self

    def _ensemble(self, view: DijetView, rows: np.ndarray) -> np.ndarray:
        return np.mean([np.asarray(self._predict(m, view, rows), np.float64) for m in self.models_], axis=0)

    def score(self, data: JetSample) -> np.ndarray:
        """(N,) anomaly score per event, higher = more signal-like.

        Events of the fitted sample (recognised one by one, so any chunk or subset of it works) get their
        out-of-fold score; other events the mean over the fold models. The fold mean has a narrower
        distribution than single-model scores, so a threshold taken on the fitted sample does not carry over
        to new data: choose cuts by efficiency on the sample being cut.
        """
        return np.asarray(self._combine(self._outputs_for(self._fitted_view(data))), dtype=np.float64)

    def single_model_scores(self, data: JetSample, seed: int) -> np.ndarray:
        """(N,) scores of new events, each by one fold model drawn at random (seeded), as the fitted sample's
        out-of-fold scores are: the same spread, so a cut placed on these (e.g. on a background template)
        passes the same fraction of the fitted sample's background. `score` uses the fold mean instead, whose
        distribution is narrower."""
        view = self._fitted_view(data)
        fold = np.random.default_rng(seed).integers(len(self.models_), size=len(view.mjj))
        return np.asarray(self._combine(self._outputs_by_fold(view, fold)), dtype=np.float64)

    def _outputs_by_fold(self, view: DijetView, fold: np.ndarray) -> np.ndarray:
        """Model outputs of every event of `view` by the fold model `fold[i]` (one model per event)."""
        outputs: np.ndarray | None = None
        for k, model in enumerate(self.models_):
            rows = np.flatnonzero(fold == k)
            out = np.asarray(self._predict(model, view, rows), dtype=np.float64)
            if outputs is None:
                outputs = np.full((len(view.mjj), *out.shape[1:]), np.nan)
            outputs[rows] = out
        assert outputs is not None  # a fitted search has n_folds >= 2 models
        return outputs

    def _fitted_view(self, data: JetSample) -> DijetView:
        self._check_fitted()
        return self._view(data, checked=False)

    def _outputs_for(self, view: DijetView) -> np.ndarray:
        """Model outputs per event: out-of-fold for events of the fitted sample, else the fold-model mean."""
        keys = _event_keys(view)
        pos = np.minimum(np.searchsorted(self.sorted_keys_, keys), len(self.sorted_keys_) - 1)
        known = self.sorted_keys_[pos] == keys
        outputs = np.empty((len(keys), *self.outputs_.shape[1:]))
        outputs[known] = self.outputs_[self.key_order_[pos[known]]]
        new = np.flatnonzero(~known)
        if len(new):
            outputs[new] = self._ensemble(view, new)
        return outputs

    def fit_score(self, data: JetSample) -> np.ndarray:
        """`fit(data)` then the out-of-fold scores of `data`."""
        return self.fit(data).scores_.copy()

    def n_parameters(self) -> int:
        """Trainable parameters of every network the search fitted (fold models, flows, prior AEs; 0 for trees)."""
        return sum(d.n_parameters() for d in _detectors_in(self._fitted_state()))

    # -- persistence ---------------------------------------------------------------------------------
    def is_fitted(self) -> bool:
        return hasattr(self, "models_")

    def _fitted_state(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def _get_state(self) -> dict[str, Any]:
        """Every fitted attribute but the audit-only ones; fold detectors as their model-file payloads,
        classifiers as their parameters and arrays (`BoostedClassifier` as a `TreeEnsemble`)."""
        return {k: _stored(v) for k, v in self._fitted_state().items() if k not in _AUDIT_ONLY and k != "history_"}

    def _restore(self, payload: dict[str, Any], path: str | Path) -> None:
        state = payload["state"]
        missing = sorted(set(_REQUIRED_STATE) - set(state))
        bad = sorted(str(k) for k in state if not (isinstance(k, str) and _STATE_NAME.fullmatch(k)))
        if missing or bad:
            raise SchemaError(f"{path}: malformed search file (state{' missing ' + str(missing) if missing else ''}"
                              f"{' unknown ' + str(bad) if bad else ''}); {self.remedy}")
        for k, v in state.items():
            setattr(self, k, _rebuilt(v, f"{path}: state {k}"))
        self.history_ = payload["history"]

    @classmethod
    def _fill_registry(cls) -> None:
        import jetad.searches  # noqa: F401  (its modules register the searches)


#: Fitted attributes every saved search holds (the cross-fitting and the out-of-fold scores).
_REQUIRED_STATE = ("models_", "scores_", "outputs_", "fold_", "score_fold_", "key_order_", "sorted_keys_",
                   "signal_region_", "sideband_")
_STATE_NAME = re.compile(r"[a-z][a-z0-9_]*_")
#: Marker key of a stored object inside a search's state (a fold detector or classifier).
_OBJECT = "jetad_object"


def _stored(value: Any) -> Any:
    """A fitted attribute with every detector / classifier in it replaced by its arrays + config."""
    from jetad.detectors.base import Detector

    if isinstance(value, Detector):
        return {_OBJECT: "detector", "payload": value.to_payload()}
    if type(value).__name__ in CLASSIFIER_TYPES and isinstance(value, CLASSIFIER_TYPES[type(value).__name__]):
        return {_OBJECT: type(value).__name__, "params": value.get_params(), "state": value.get_state()}
    if isinstance(value, list):
        return [_stored(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_stored(v) for v in value)
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items()}
    return value


def _rebuilt(value: Any, where: str) -> Any:
    """Inverse of `_stored`: rebuild the detectors and classifiers (SchemaError for unknown objects)."""
    from jetad.detectors.base import Detector

    if isinstance(value, list):
        return [_rebuilt(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(_rebuilt(v, f"{where}[{i}]") for i, v in enumerate(value))
    if not isinstance(value, dict):
        return value
    if _OBJECT not in value:
        return {k: _rebuilt(v, f"{where}.{k}") for k, v in value.items()}
    kind = value[_OBJECT]
    if kind == "detector" and isinstance(value.get("payload"), dict):
        return Detector.from_payload(value["payload"], where)
    if kind in CLASSIFIER_TYPES and isinstance(value.get("params"), dict) and isinstance(value.get("state"), dict):
        try:
            return CLASSIFIER_TYPES[kind](**value["params"]).set_state(value["state"], where)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise SchemaError(f"{where}: malformed {kind} ({type(err).__name__}: {str(err)[:200]})") from None
    raise SchemaError(f"{where}: unknown stored object {kind!r}")


def _event_keys(view: DijetView) -> np.ndarray:
    """(N,) uint64 key per event from the bits of its inputs and mjj (FNV-1a over 64-bit words, vectorized)."""
    cols = np.ascontiguousarray(np.column_stack([view.x.astype(np.float64), view.mjj.astype(np.float64)]))
    words = cols.view(np.uint64)
    h = np.full(len(cols), 14695981039346656037, dtype=np.uint64)
    for j in range(words.shape[1]):  # a handful of columns; each step is vectorized over events
        h = (h ^ words[:, j]) * np.uint64(1099511628211)
    return h


def _detectors_in(value: Any) -> list:
    """Every jetad Detector inside a (nested) list/tuple/dict of fitted models."""
    from jetad.detectors.base import Detector

    if isinstance(value, Detector):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [d for v in value for d in _detectors_in(v)]
    return []
