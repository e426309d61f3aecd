"""The classifiers of the weakly supervised searches: boosted trees, a small MLP, and an ensemble of either.

Weak supervision trains on mixed samples (signal region vs sidebands, data vs flow samples): with no signal the
best classifier is the constant class prior. A single classifier keeps its best validation epoch or iteration
only when its log-likelihood gain over that constant is significant (`min_validation_gain` nats).
`ClassifierEnsemble` averages `n_ensemble` such models trained on different validation splits (CATHODE,
2109.00546, averages its 10 best epochs; the boosted-tree ensembles of 2309.13111 average models on different
splits) and makes the same test once, out of bag, on most training events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jetad.searches.boosted_trees import TreeEnsemble

__all__ = ["CLASSIFIERS", "CLASSIFIER_TYPES", "ENSEMBLE_MEMBER_DEFAULTS", "BoostedClassifier", "ClassifierEnsemble",
           "NeuralClassifier", "balanced_weights", "fit_classifier", "validation_split"]

CLASSIFIERS = ("hgb", "mlp")
#: Member settings of `ClassifierEnsemble` (before the user's `member_params`): the ensemble makes the one
#: significance test; boosted members are small, slow and regularized trees (7 leaves of >= 100 events, learning
#: rate 0.03, L2 1) that stop after 30 iterations without a better validation loss. A single default tree model
#: (31 leaves, rate 0.1, patience 10) kept 3-29 trees on a real CATHODE signal (issue 14); these members keep
#: 20-270, and on that box raise the SR AUC of the ensemble from 0.81 to 0.84 (docs/benchmarks/lhco.md).
ENSEMBLE_MEMBER_DEFAULTS: dict[str, dict[str, Any]] = {
    "hgb": {"min_validation_gain": None, "n_iter_no_change": 30, "max_iter": 1000, "learning_rate": 0.03,
            "max_leaf_nodes": 7, "min_samples_leaf": 100, "l2_regularization": 1.0},
    "mlp": {"min_validation_gain": None}}


def balanced_weights(y: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Per-event weights (`weight`, default 1) rescaled per class so both classes have the same total weight
    (mean weight 1)."""
    y = np.asarray(y)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, np.float64).copy()
    for c in (0, 1):
        total = w[y == c].sum()
        w[y == c] *= len(y) / (2.0 * total) if total > 0 else 1.0
    return w


def validation_split(y: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """(N,) split id in [0, n_splits) per event, stratified by class and seeded (split i validates member i)."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    split = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        split[rows] = (np.arange(len(rows)) + rng.integers(n_splits)) % n_splits
    return split


def fit_classifier(x: np.ndarray, y: np.ndarray, kind: str = "hgb", params: dict[str, Any] | None = None,
                   seed: int = 0, what: str = "classifier", n_ensemble: int = 1,
                   sample_weight: np.ndarray | None = None) -> Any:
    """A binary classifier with `predict_proba`, trained class-balanced on (x, y) (with event weights
    `sample_weight`, rescaled per class to equal totals, when given).

    'hgb': `BoostedClassifier` (sklearn gradient boosting, best validation iteration); 'mlp': `NeuralClassifier`
    (CATHODE's 3 x 64 network). `params` override their defaults. With `n_ensemble` > 1, a `ClassifierEnsemble`
    of that many such models: `params` then override the members' defaults, except `min_validation_gain`, which
    is the ensemble's out-of-bag threshold. Raises ValueError when y has one class.
    """
    y = np.asarray(y, dtype=np.int64)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"{what}: the training events all have label {classes.tolist()}; a classifier needs both "
                         "classes (use fewer folds, a wider sideband or more data)")
    if kind not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {kind!r}")
    if n_ensemble < 1:
        raise ValueError(f"n_ensemble must be >= 1, got {n_ensemble}")
    if n_ensemble > 1:  # the fold's significance threshold is the ensemble's (its members make no test)
        member = dict(params or {})
        gain = {"min_validation_gain": member.pop("min_validation_gain")} if "min_validation_gain" in member else {}
        model: Any = ClassifierEnsemble(kind, n_ensemble=n_ensemble, member_params=member or None, seed=seed, **gain)
    else:
        model = (BoostedClassifier if kind == "hgb" else NeuralClassifier)(**(params or {}), seed=seed)
    return model.fit(x, y, sample_weight=balanced_weights(y, sample_weight))


def _significant(gain_per_event: float, n_val: float, min_validation_gain: float | None) -> bool:
    """Whether a validation log-likelihood gain over the constant classifier, n_val * gain [nats], is real
    (always, for `min_validation_gain` None)."""
    return min_validation_gain is None or gain_per_event * n_val >= min_validation_gain


def _log_likelihood(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Weighted Bernoulli log-likelihood [nats] of labels y under P(1) = p."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(np.sum(w * (y * np.log(p) + (1 - y) * np.log1p(-p))))


def _child_seed(*keys: int) -> int:
    """A 32-bit seed derived from integer keys (any sign), distinct per key tuple."""
    return int(np.random.SeedSequence([k & 0xFFFFFFFF for k in keys]).generate_state(1)[0])


def _split_fit(model: Any, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, fraction: float,
               seed: int) -> Any:
    """`model.fit_split` on a seeded train/validation split of (x, y, weights), `fraction` of each class validating."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {fraction}")
    x, y = np.asarray(x), np.asarray(y)
    w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    rng = np.random.default_rng(seed)
    val = np.zeros(len(y), bool)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        val[rows[:max(1, round(fraction * len(rows)))]] = True
    return model.fit_split(x[~val], y[~val], w[~val], x[val], y[val], w[val])


class BoostedClassifier:
    """sklearn HistGradientBoostingClassifier that predicts with its best validation iteration.

    Weak supervision must not invent a signal: the iteration with the best validation log-loss is kept only
    if its gain over the constant (class-prior) classifier is significant, n_val * gain >= `min_validation_gain`
    nats (a likelihood-ratio test; 3 nats ~ 2.5 sigma for one parameter); otherwise the classifier is the
    constant prior (every event scores the same). None keeps the best iteration whatever its gain (an
    ensemble member: `ClassifierEnsemble` tests the ensemble). The validation events are a seeded stratified
    `validation_fraction`; training stops after `n_iter_no_change` iterations without a better validation loss.
    Other keyword arguments go to sklearn.
    """

    def __init__(self, max_iter: int = 200, validation_fraction: float = 0.2, n_iter_no_change: int = 10,
                 min_validation_gain: float | None = 3.0, seed: int = 0, **params: Any):
        self.max_iter, self.validation_fraction, self.n_iter_no_change = max_iter, validation_fraction, n_iter_no_change
        self.min_validation_gain, self.seed, self.params = min_validation_gain, seed, params

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as stored."""
        return {"max_iter": self.max_iter, "validation_fraction": self.validation_fraction,
                "n_iter_no_change": self.n_iter_no_change, "min_validation_gain": self.min_validation_gain,
                "seed": self.seed, **self.params}

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> BoostedClassifier:
        return _split_fit(self, x, y, sample_weight, self.validation_fraction, self.seed)

    def fit_split(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                  w_val: np.ndarray) -> BoostedClassifier:
        """Fit on (x, y, w), choosing the number of trees on the validation events (x_val, y_val, w_val)."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.prior_ = float(np.sum(w * y) / np.sum(w))
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter, early_stopping=True, n_iter_no_change=self.n_iter_no_change,
            random_state=self.seed, **self.params,
        ).fit(x, y, sample_weight=w, X_val=x_val, y_val=y_val, sample_weight_val=w_val)
        val = model.validation_score_  # -log-loss per event (weighted mean); entry 0 = before the first tree
        best = int(np.argmax(val))
        n_val = float(np.sum(w_val) / np.mean(w))  # validation events in units of the mean training weight
        self.best_iteration_ = best if _significant(val[best] - val[0], n_val, self.min_validation_gain) else 0
        #: The trees up to the best iteration as arrays (what predicts, and what a saved search stores).
        self.trees_ = TreeEnsemble.from_sklearn(model, self.best_iteration_)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.best_iteration_ == 0:
            return np.tile([1 - self.prior_, self.prior_], (len(x), 1))
        return self.trees_.predict_proba(x)

    def get_state(self) -> dict[str, Any]:
        """Learned state as arrays and numbers (for the model file)."""
        return {"prior": self.prior_, "best_iteration": self.best_iteration_, "trees": self.trees_.to_state()}

    def set_state(self, state: dict[str, Any], where: str = "classifier") -> BoostedClassifier:
        """Inverse of `get_state`."""
        self.prior_, self.best_iteration_ = float(state["prior"]), int(state["best_iteration"])
        self.trees_ = TreeEnsemble.from_state(state["trees"], where)
        return self


class NeuralClassifier:
    """Small torch MLP classifier (CATHODE 2109.00546: 3 x 64 ReLU, Adam, weighted BCE), trained by `train_loop`.

    Inputs are standardized with training statistics; the epoch with the lowest validation loss (on a seeded
    `val_fraction` of the training events) is kept if its gain over the constant classifier is significant
    (see `BoostedClassifier`), else the constant class prior is predicted.
    """

    def __init__(self, hidden: tuple[int, ...] = (64, 64, 64), epochs: int = 50, batch_size: int = 128,
                 lr: float = 1e-3, val_fraction: float = 0.2, patience: int = 10,
                 min_validation_gain: float | None = 3.0, seed: int = 0):
        self.hidden, self.epochs, self.batch_size, self.lr = tuple(hidden), epochs, batch_size, lr
        self.val_fraction, self.patience, self.seed = val_fraction, patience, seed
        self.min_validation_gain = min_validation_gain

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as stored."""
        return {"hidden": self.hidden, "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "val_fraction": self.val_fraction, "patience": self.patience,
                "min_validation_gain": self.min_validation_gain, "seed": self.seed}

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> NeuralClassifier:
        return _split_fit(self, x, y, sample_weight, self.val_fraction, self.seed)

    def fit_split(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                  w_val: np.ndarray) -> NeuralClassifier:
        """Fit on (x, y, w), choosing the epoch on the validation events (x_val, y_val, w_val)."""
        import torch

        from jetad.detectors.training import train_loop

        x = np.asarray(x, np.float64)
        self.mean_, self.std_ = x.mean(0), x.std(0) + 1e-8
        self.prior_ = float(np.sum(w * y) / np.sum(w))

        def tensors(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
            return tuple(np.asarray(a, np.float32) for a in arrays)

        z, yf, wf = tensors((x - self.mean_) / self.std_, y, w)
        xv, yv, wv = (torch.as_tensor(a) for a in tensors((np.asarray(x_val, np.float64) - self.mean_) / self.std_,
                                                             y_val, w_val))
        torch.manual_seed(self.seed)
        self.model_ = self._network(x.shape[1])

        def bce(logits: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yb, reduction="none")
            return (loss * wb).sum() / wb.sum()

        def step(xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
            return bce(self.model_(xb).squeeze(1), yb, wb), {}

        def criterion() -> float:
            with torch.no_grad():
                return float(bce(self.model_(xv).squeeze(1), yv, wv))

        batch_step: Callable[..., tuple[torch.Tensor, dict[str, float]]] = step  # called as step(*batches)
        history = train_loop(self.model_, batch_step, criterion, (z, yf, wf), epochs=self.epochs,
                             batch_size=self.batch_size, lr=self.lr, patience=self.patience, seed=self.seed,
                             device=torch.device("cpu"))
        constant = float(bce(torch.full((len(yv),), float(np.log(self.prior_ / (1 - self.prior_)))), yv, wv))
        n_val = float(np.sum(w_val) / np.mean(w))
        self.constant_ = not _significant(constant - history.best_criterion, n_val, self.min_validation_gain)
        return self

    def _network(self, n_features: int):
        from torch import nn

        layers: list[nn.Module] = []
        width = n_features
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        return nn.Sequential(*layers, nn.Linear(width, 1))

    def get_state(self) -> dict[str, Any]:
        """Learned state as arrays and tensors (for the model file)."""
        return {"mean": self.mean_, "std": self.std_, "prior": self.prior_, "constant": self.constant_,
                "model": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}}

    def set_state(self, state: dict[str, Any], where: str = "classifier") -> NeuralClassifier:
        """Inverse of `get_state`."""
        self.mean_, self.std_ = np.asarray(state["mean"], np.float64), np.asarray(state["std"], np.float64)
        self.prior_, self.constant_ = float(state["prior"]), bool(state["constant"])
        self.model_ = self._network(len(self.mean_))
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        import torch

        if self.constant_:
            return np.tile([1 - self.prior_, self.prior_], (len(x), 1))
        with torch.no_grad():
            z = torch.as_tensor((np.asarray(x, np.float64) - self.mean_) / self.std_, dtype=torch.float32)
            p = torch.sigmoid(self.model_(z).squeeze(1)).numpy().astype(np.float64)
        return np.stack([1 - p, p], axis=1)


class ClassifierEnsemble:
    """`n_ensemble` classifiers of one kind on different train/validation splits; P(1) = the mean of their P(1).

    One classifier early-stopped on a few thousand weakly labelled events is noisy: it keeps few trees (its
    scores take few values) or falls back to the prior on a real signal. Averaging models fitted on different
    splits lowers that variance (CATHODE 2109.00546 averages its 10 best epochs; 2309.13111 averages boosted
    trees) and unties the scores. Member i trains on all but part i mod n_splits of a seeded stratified
    partition into n_splits = round(1 / validation_fraction) parts (a fresh partition every n_splits members).
    One (seeded) half of that part stops its training (the number of trees or epochs); the member never sees
    the other half, so its predictions there are out of bag (OOB) and not biased by the stopping choice (a
    member stopped and tested on the same events gains several nats on pure noise). Every training event is
    OOB for n_ensemble / (2 n_splits) members on average (1 for 10 members and 5 parts; 3/4 of the events
    for at least one). The ensemble is
    replaced by the constant class prior only when the OOB log-likelihood gain of the members over the
    constant, summed over the OOB events (weights of mean 1), is below `min_validation_gain` nats: the test
    of `BoostedClassifier`, made once on most training events instead of a fifth, so a real signal
    passes it and a region where data and reference are indistinguishable does not.

    Arguments:
        kind: member classifier, 'hgb' (`BoostedClassifier`) or 'mlp' (`NeuralClassifier`).
        n_ensemble: number of members (>= 1).
        validation_fraction: fraction of the training events each member does not train on (half of it stops
            the member, half is its out-of-bag test).
        min_validation_gain: OOB gain [nats] below which the ensemble is the constant prior; None never.
        member_params: overrides of the members' settings (`ENSEMBLE_MEMBER_DEFAULTS`, then the member's own).
        seed: seeds the partitions and (with the member index) every member.
    """

    def __init__(self, kind: str = "hgb", n_ensemble: int = 10, validation_fraction: float = 0.2,
                 min_validation_gain: float | None = 3.0, member_params: dict[str, Any] | None = None, seed: int = 0):
        if kind not in CLASSIFIERS:
            raise ValueError(f"classifier kind must be one of {CLASSIFIERS}, got {kind!r}")
        if n_ensemble < 1:
            raise ValueError(f"n_ensemble must be >= 1, got {n_ensemble}")
        if not 0 < validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
        self.kind, self.n_ensemble, self.validation_fraction = kind, n_ensemble, validation_fraction
        self.min_validation_gain, self.member_params, self.seed = min_validation_gain, member_params, seed

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as stored."""
        return {"kind": self.kind, "n_ensemble": self.n_ensemble, "validation_fraction": self.validation_fraction,
                "min_validation_gain": self.min_validation_gain, "member_params": self.member_params,
                "seed": self.seed}

    def _member(self, i: int) -> BoostedClassifier | NeuralClassifier:
        params = ENSEMBLE_MEMBER_DEFAULTS[self.kind] | (self.member_params or {})
        seed = _child_seed(self.seed, 0, i)
        return (BoostedClassifier if self.kind == "hgb" else NeuralClassifier)(**params, seed=seed)

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> ClassifierEnsemble:
        x, y = np.asarray(x), np.asarray(y, dtype=np.int64)
        w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        self.prior_ = float(np.sum(w * y) / np.sum(w))
        n_splits = max(2, round(1 / self.validation_fraction))
        oob_sum, oob_n = np.zeros(len(x)), np.zeros(len(x))
        self.members_: list[BoostedClassifier | NeuralClassifier] = []
        for i in range(self.n_ensemble):
            if i % n_splits == 0:  # a fresh partition, and a fresh halving of its parts, every n_splits members
                split = validation_split(y, n_splits, _child_seed(self.seed, 1, i // n_splits))
                half = validation_split(y, 2, _child_seed(self.seed, 2, i // n_splits)) == 0
            held = split == i % n_splits
            stop, oob = held & half, held & ~half
            member = self._member(i).fit_split(x[~held], y[~held], w[~held], x[stop], y[stop], w[stop])
            oob_sum[oob] += member.predict_proba(x[oob])[:, 1]
            oob_n[oob] += 1
            self.members_.append(member)
        seen = oob_n > 0
        p_oob, ys, ws = oob_sum[seen] / oob_n[seen], y[seen], w[seen] / np.mean(w)
        #: OOB log-likelihood gain [nats] of the ensemble over the constant prior (what the constant test uses).
        self.oob_gain_ = _log_likelihood(p_oob, ys, ws) - _log_likelihood(np.full(len(ys), self.prior_), ys, ws)
        self.constant_ = not _significant(self.oob_gain_, 1.0, self.min_validation_gain)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.constant_:
            return np.tile([1 - self.prior_, self.prior_], (len(x), 1))
        return np.mean([m.predict_proba(x) for m in self.members_], axis=0)

    def get_state(self) -> dict[str, Any]:
        """Learned state as arrays and numbers: every member's parameters and state (for the model file)."""
        return {"prior": self.prior_, "constant": self.constant_, "oob_gain": self.oob_gain_,
                "members": [{"params": m.get_params(), "state": m.get_state()} for m in self.members_]}

    def set_state(self, state: dict[str, Any], where: str = "classifier") -> ClassifierEnsemble:
        """Inverse of `get_state`."""
        member_type = BoostedClassifier if self.kind == "hgb" else NeuralClassifier
        self.prior_, self.constant_ = float(state["prior"]), bool(state["constant"])
        self.oob_gain_ = float(state["oob_gain"])
        self.members_ = [member_type(**m["params"]).set_state(m["state"], f"{where} member {i}")
                         for i, m in enumerate(state["members"])]
        return self


#: The classifiers a saved search may hold, by class name (rebuilt from their parameters and arrays).
CLASSIFIER_TYPES: dict[str, type[BoostedClassifier] | type[NeuralClassifier] | type[ClassifierEnsemble]] = {
    "BoostedClassifier": BoostedClassifier, "NeuralClassifier": NeuralClassifier,
    "ClassifierEnsemble": ClassifierEnsemble}
