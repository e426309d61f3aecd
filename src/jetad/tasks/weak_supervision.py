"""Weakly supervised resonant searches on dijet data (LHC Olympics strategies, 2101.08320): the shared base.

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

The strategies live in one module each: `jetad.tasks.cwola.CWoLaHunting`, `jetad.tasks.cathode.CathodeSearch`
(also ANODE), `jetad.tasks.tag_n_train.TagNTrain`, `jetad.tasks.quak.QUAK`; `make_search(name, **params)`
builds one by name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from jetad import __version__
from jetad.data.sample import JetSample, SchemaError
from jetad.detectors.base import check_model_format, read_model_payload, write_model_payload
from jetad.tasks.blackbox import dijet_features

__all__ = [
    "DEFAULT_SEARCH_FEATURES",
    "SEARCHES",
    "BoostedClassifier",
    "DijetView",
    "MLPClassifier",
    "ResonantSearch",
    "assign_folds",
    "balanced_weights",
    "feature_sample",
    "fit_classifier",
    "is_search_file",
    "load_model",
    "load_search",
    "make_search",
    "search_features",
]

#: The CATHODE (2109.00546) classifier inputs: lighter jet mass, jet mass difference [GeV], both tau21s.
DEFAULT_SEARCH_FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")
#: Registry name -> "module:class" (imported on demand by `make_search`).
SEARCHES = {
    "cwola": "jetad.tasks.cwola:CWoLaHunting",
    "cathode": "jetad.tasks.cathode:CathodeSearch",
    "tag_n_train": "jetad.tasks.tag_n_train:TagNTrain",
    "quak": "jetad.tasks.quak:QUAK",
}
CLASSIFIERS = ("hgb", "mlp")
SEARCH_FORMAT = "jetad.search"
SEARCH_FORMAT_VERSION = 1
#: Learned attributes kept for audits of the fitted sample only, not saved (CATHODE's samples can be large).
_AUDIT_ONLY = ("training_rows_", "samples_", "sample_mjj_")


def make_search(name: str, **params: Any) -> ResonantSearch:
    """A search by registry name ('cwola', 'cathode', 'tag_n_train', 'quak') with constructor parameters."""
    if name not in SEARCHES:
        raise ValueError(f"unknown search {name!r}; choose one of {', '.join(SEARCHES)}")
    module, cls = SEARCHES[name].split(":")
    return getattr(importlib.import_module(module), cls)(**params)


# ------------------------------------------------------------------------------------------------ features


def search_features(sample: JetSample, names: tuple[str, ...] | list[str], source: str | None = None) -> np.ndarray:
    """(N, len(names)) float32 search inputs: feature/event columns, else the derived LHCO dijet features.

    Derived (from `jetad.tasks.blackbox.dijet_features`, jets ordered by mass): mjj, mj1, delta_mj,
    tau21_j1, tau21_j2 (and tau32/sd_mass pairs when present), plus ``mj2`` = mj1 + delta_mj [GeV].
    A column found nowhere is a SchemaError naming it.
    """
    source = source or sample.describe()
    derived: dict[str, np.ndarray] | None = None
    cols = []
    for name in names:
        if name in sample.features or (name in sample.event and np.ndim(sample.event[name]) == 1):
            cols.append(sample.column(name, source))
            continue
        if derived is None:
            derived = _derived_features(sample)
        if name not in derived:
            raise SchemaError(
                f"{source}: feature column {name!r} not found in features {sorted(sample.features)}, event "
                f"{sorted(sample.event)} or the derived dijet features {sorted(derived)}; run 'jetad features' "
                "or choose other features"
            )
        col = np.asarray(derived[name], dtype=np.float64)
        if not np.isfinite(col).all():
            raise SchemaError(f"{source}: derived feature {name!r} has NaN/inf values")
        cols.append(col)
    return np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((len(sample), 0), np.float32)


def _derived_features(sample: JetSample) -> dict[str, np.ndarray]:
    taus = "tau21" in sample.features and "j2_tau21" in sample.features
    try:
        out = dijet_features(sample, taus=taus)
    except SchemaError:
        return {}
    out["mj2"] = out["mj1"] + out["delta_mj"]
    return out


def feature_sample(x: np.ndarray, names: tuple[str, ...], mjj: np.ndarray | None = None,
                   source: str = "search inputs") -> JetSample:
    """A constituent-free JetSample whose features are the columns of `x` (and event mjj), for detectors."""
    n = len(x)
    event = {} if mjj is None else {"mjj": np.asarray(mjj, dtype=np.float64)}
    return JetSample(
        constituents=np.zeros((n, 0, 4), np.float32), mask=np.zeros((n, 0), bool), jets=np.zeros((n, 4), np.float32),
        label=np.zeros(n, np.int64), weight=np.ones(n, np.float32),
        features={name: x[:, i] for i, name in enumerate(names)}, event=event, attrs={"source": source},
    )


# ------------------------------------------------------------------------------------------- cross-fitting


def assign_folds(strata: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """(N,) fold id in [0, n_folds) per event with stratum >= 0 (stratified, seeded); -1 for stratum < 0."""
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    fold = np.full(len(strata), -1, dtype=np.int64)
    for s in np.unique(strata[strata >= 0]):
        rows = rng.permutation(np.flatnonzero(strata == s))
        fold[rows] = (np.arange(len(rows)) + rng.integers(n_folds)) % n_folds
    return fold


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-event weights giving both classes the same total weight (mean weight 1)."""
    y = np.asarray(y)
    n1, n0 = int(y.sum()), int((1 - y).sum())
    return np.where(y == 1, len(y) / (2.0 * max(n1, 1)), len(y) / (2.0 * max(n0, 1)))


def fit_classifier(x: np.ndarray, y: np.ndarray, kind: str = "hgb", params: dict[str, Any] | None = None,
                   seed: int = 0, what: str = "classifier") -> Any:
    """A binary classifier with `predict_proba`, trained class-balanced on (x, y).

    'hgb': `BoostedClassifier` (sklearn gradient boosting, best validation iteration); 'mlp': `MLPClassifier`
    (CATHODE's 3 x 64 network). `params` override their defaults. Raises ValueError when y has one class.
    """
    y = np.asarray(y, dtype=np.int64)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"{what}: the training events all have label {classes.tolist()}; a classifier needs both "
                         "classes (use fewer folds, a wider sideband or more data)")
    if kind not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {kind!r}")
    cls = BoostedClassifier if kind == "hgb" else MLPClassifier
    return cls(**(params or {}), seed=seed).fit(x, y, sample_weight=balanced_weights(y))


def _significant(gain_per_event: float, n_val: float, min_validation_gain: float) -> bool:
    """Whether a validation log-likelihood gain over the constant classifier, n_val * gain [nats], is real."""
    return gain_per_event * n_val >= min_validation_gain


class BoostedClassifier:
    """sklearn HistGradientBoostingClassifier that predicts with its best validation iteration.

    Weak supervision must not invent a signal: the iteration with the best validation log-loss is kept only
    if its gain over the constant (class-prior) classifier is significant, n_val * gain >= `min_validation_gain`
    nats (a likelihood-ratio test; 3 nats ~ 2.5 sigma for one parameter); otherwise the classifier is the
    constant prior (every event scores the same). Other keyword arguments go to sklearn.
    """

    def __init__(self, max_iter: int = 200, validation_fraction: float = 0.2, n_iter_no_change: int = 10,
                 min_validation_gain: float = 3.0, seed: int = 0, **params: Any):
        self.max_iter, self.validation_fraction, self.n_iter_no_change = max_iter, validation_fraction, n_iter_no_change
        self.min_validation_gain, self.seed, self.params = min_validation_gain, seed, params

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> BoostedClassifier:
        from sklearn.ensemble import HistGradientBoostingClassifier

        w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        self.prior_ = float(np.sum(w * y) / np.sum(w))
        self.model_ = HistGradientBoostingClassifier(
            max_iter=self.max_iter, early_stopping=True, validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change, random_state=self.seed, **self.params,
        ).fit(x, y, sample_weight=w)
        val = self.model_.validation_score_  # -log-loss per event; entry 0 = before the first tree
        best = int(np.argmax(val))
        n_val = self.validation_fraction * len(x)
        self.best_iteration_ = best if _significant(val[best] - val[0], n_val, self.min_validation_gain) else 0
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.best_iteration_ == 0:
            return np.tile([1 - self.prior_, self.prior_], (len(x), 1))
        for i, p in enumerate(self.model_.staged_predict_proba(x), 1):
            if i == self.best_iteration_:
                return p
        raise RuntimeError("best iteration beyond the fitted trees")  # unreachable


class MLPClassifier:
    """Small torch MLP classifier (CATHODE 2109.00546: 3 x 64 ReLU, Adam, weighted BCE).

    Inputs are standardized with training statistics; the epoch with the lowest validation loss (on a seeded
    `val_fraction` of the training events) is kept if its gain over the constant classifier is significant
    (see `BoostedClassifier`), else the constant class prior is predicted.
    """

    def __init__(self, hidden: tuple[int, ...] = (64, 64, 64), epochs: int = 50, batch_size: int = 128,
                 lr: float = 1e-3, val_fraction: float = 0.2, patience: int = 10, min_validation_gain: float = 3.0,
                 seed: int = 0):
        self.hidden, self.epochs, self.batch_size, self.lr = tuple(hidden), epochs, batch_size, lr
        self.val_fraction, self.patience, self.seed = val_fraction, patience, seed
        self.min_validation_gain = min_validation_gain

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> MLPClassifier:
        import torch
        from torch import nn

        x = np.asarray(x, np.float64)
        self.mean_, self.std_ = x.mean(0), x.std(0) + 1e-8
        w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        self.prior_ = float(np.sum(w * y) / np.sum(w))
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(len(x))
        n_val = max(1, int(self.val_fraction * len(x)))
        xt = torch.as_tensor((x - self.mean_) / self.std_, dtype=torch.float32)
        yt, wt = torch.as_tensor(y, dtype=torch.float32), torch.as_tensor(w, dtype=torch.float32)
        val, train = torch.as_tensor(perm[:n_val]), torch.as_tensor(perm[n_val:])
        torch.manual_seed(self.seed)
        layers: list[nn.Module] = []
        width = x.shape[1]
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.model_ = nn.Sequential(*layers, nn.Linear(width, 1))
        opt = torch.optim.Adam(self.model_.parameters(), lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)

        def bce(rows: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
            logits = self.model_(xt[rows]).squeeze(1) if logits is None else logits
            loss = nn.functional.binary_cross_entropy_with_logits(logits, yt[rows], reduction="none")
            return (loss * wt[rows]).sum() / wt[rows].sum()

        prior_logit = float(np.log(self.prior_ / (1 - self.prior_)))
        constant = float(bce(val, torch.full((len(val),), prior_logit)))
        best, best_state, bad = np.inf, None, 0
        for _ in range(self.epochs):
            self.model_.train()
            train = train[torch.randperm(len(train), generator=gen)]
            for i in range(0, len(train), self.batch_size):
                loss = bce(train[i: i + self.batch_size])
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.model_.eval()
            with torch.no_grad():
                v = float(bce(val))
            if v < best:
                best, bad = v, 0
                best_state = {k: t.clone() for k, t in self.model_.state_dict().items()}
            else:
                bad += 1
                if bad >= self.patience:
                    break
        self.model_.load_state_dict(best_state)
        self.constant_ = not _significant(constant - best, n_val, self.min_validation_gain)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        import torch

        if self.constant_:
            return np.tile([1 - self.prior_, self.prior_], (len(x), 1))
        with torch.no_grad():
            z = torch.as_tensor((np.asarray(x, np.float64) - self.mean_) / self.std_, dtype=torch.float32)
            p = torch.sigmoid(self.model_(z).squeeze(1)).numpy().astype(np.float64)
        return np.stack([1 - p, p], axis=1)


# -------------------------------------------------------------------------------------------------- base


@dataclass
class DijetView:
    """One dijet sample as a search reads it: inputs x (N, F), mjj [GeV], and the SR / sideband masks."""

    x: np.ndarray
    mjj: np.ndarray
    sr: np.ndarray
    sb: np.ndarray
    source: str


class ResonantSearch:
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

    name: ClassVar[str] = ""
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
        outputs: np.ndarray | None = None
        for k, model in enumerate(self.models_):
            rows = np.flatnonzero(self.score_fold_ == k)
            out = np.asarray(self._predict(model, view, rows), dtype=np.float64)
            if outputs is None:
                outputs = np.full((len(view.mjj), *out.shape[1:]), np.nan)
            outputs[rows] = out
        self.outputs_ = outputs
        self.scores_ = np.asarray(self._combine(outputs), dtype=np.float64)
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

    def _fitted_view(self, data: JetSample) -> DijetView:
        if not hasattr(self, "models_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(data) first")
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
    def save(self, path: str | Path) -> Path:
        """Write the fitted search (parameters and every fold model) atomically; `load_search` reads it back."""
        if not hasattr(self, "models_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(data) before save()")
        return write_model_payload(path, {
            "format": SEARCH_FORMAT, "format_version": SEARCH_FORMAT_VERSION, "jetad_version": __version__,
            "search": self.name, "params": self.get_params(),
            "state": {k: v for k, v in self._fitted_state().items() if k not in _AUDIT_ONLY},
        })

    def _fitted_state(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as stored."""
        import inspect

        params: dict[str, Any] = {}
        for cls in type(self).__mro__[:-1]:
            for p in list(inspect.signature(cls.__init__).parameters)[1:]:
                if p != "kwargs" and hasattr(self, p):
                    params.setdefault(p, getattr(self, p))
        return params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


def is_search_file(path: str | Path) -> bool:
    """Whether `path` holds a saved search (as opposed to a detector); False for unreadable files."""
    try:
        return read_model_payload(path).get("format") == SEARCH_FORMAT
    except (SchemaError, FileNotFoundError):
        return False


def load_search(path: str | Path) -> ResonantSearch:
    """A search saved with `ResonantSearch.save`; `score(sample)` then works on new events (fold-model mean)."""
    return _search_from_payload(read_model_payload(path), path)


def load_model(path: str | Path) -> Any:
    """A saved detector or a saved search, whichever the file holds (read once); both have `score(sample)`."""
    from jetad.detectors.base import Detector

    payload = read_model_payload(path)
    if payload.get("format") == SEARCH_FORMAT:
        return _search_from_payload(payload, path)
    return Detector.from_payload(payload, path)


def _search_from_payload(payload: dict[str, Any], path: str | Path) -> ResonantSearch:
    check_model_format(payload, path, SEARCH_FORMAT, SEARCH_FORMAT_VERSION, "search", "rerun 'jetad search'")
    try:
        search = make_search(payload["search"], **payload["params"])
    except (TypeError, ValueError) as err:
        raise SchemaError(f"{path}: saved search {payload.get('search')!r} does not match this jetad ({err})") from err
    for k, v in payload["state"].items():  # fold detectors pick this machine's device as they are unpickled
        setattr(search, k, v)
    return search


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
