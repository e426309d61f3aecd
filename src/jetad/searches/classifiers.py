"""The classifiers of the weakly supervised searches: boosted trees and a small MLP, both refusing to invent a signal.

Weak supervision trains on mixed samples (signal region vs sidebands, data vs flow samples): with no signal the
best classifier is the constant class prior. Both classifiers keep their best validation epoch or iteration
only when its log-likelihood gain over that constant is significant (`min_validation_gain` nats).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jetad.searches.boosted_trees import TreeEnsemble

__all__ = ["CLASSIFIERS", "CLASSIFIER_TYPES", "BoostedClassifier", "NeuralClassifier", "balanced_weights",
           "fit_classifier"]

CLASSIFIERS = ("hgb", "mlp")


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-event weights giving both classes the same total weight (mean weight 1)."""
    y = np.asarray(y)
    n1, n0 = int(y.sum()), int((1 - y).sum())
    return np.where(y == 1, len(y) / (2.0 * max(n1, 1)), len(y) / (2.0 * max(n0, 1)))


def fit_classifier(x: np.ndarray, y: np.ndarray, kind: str = "hgb", params: dict[str, Any] | None = None,
                   seed: int = 0, what: str = "classifier") -> Any:
    """A binary classifier with `predict_proba`, trained class-balanced on (x, y).

    'hgb': `BoostedClassifier` (sklearn gradient boosting, best validation iteration); 'mlp': `NeuralClassifier`
    (CATHODE's 3 x 64 network). `params` override their defaults. Raises ValueError when y has one class.
    """
    y = np.asarray(y, dtype=np.int64)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"{what}: the training events all have label {classes.tolist()}; a classifier needs both "
                         "classes (use fewer folds, a wider sideband or more data)")
    if kind not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {kind!r}")
    cls = BoostedClassifier if kind == "hgb" else NeuralClassifier
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

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as stored."""
        return {"max_iter": self.max_iter, "validation_fraction": self.validation_fraction,
                "n_iter_no_change": self.n_iter_no_change, "min_validation_gain": self.min_validation_gain,
                "seed": self.seed, **self.params}

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> BoostedClassifier:
        from sklearn.ensemble import HistGradientBoostingClassifier

        w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        self.prior_ = float(np.sum(w * y) / np.sum(w))
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter, early_stopping=True, validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change, random_state=self.seed, **self.params,
        ).fit(x, y, sample_weight=w)
        val = model.validation_score_  # -log-loss per event; entry 0 = before the first tree
        best = int(np.argmax(val))
        n_val = self.validation_fraction * len(x)
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
                 lr: float = 1e-3, val_fraction: float = 0.2, patience: int = 10, min_validation_gain: float = 3.0,
                 seed: int = 0):
        self.hidden, self.epochs, self.batch_size, self.lr = tuple(hidden), epochs, batch_size, lr
        self.val_fraction, self.patience, self.seed = val_fraction, patience, seed
        self.min_validation_gain = min_validation_gain

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as stored."""
        return {"hidden": self.hidden, "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "val_fraction": self.val_fraction, "patience": self.patience,
                "min_validation_gain": self.min_validation_gain, "seed": self.seed}

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> NeuralClassifier:
        import torch

        from jetad.detectors.training import train_loop

        x = np.asarray(x, np.float64)
        self.mean_, self.std_ = x.mean(0), x.std(0) + 1e-8
        w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        self.prior_ = float(np.sum(w * y) / np.sum(w))
        perm = np.random.default_rng(self.seed).permutation(len(x))
        n_val = max(1, int(self.val_fraction * len(x)))
        z = ((x - self.mean_) / self.std_).astype(np.float32)
        yf, wf = np.asarray(y, np.float32), w.astype(np.float32)
        val, train = perm[:n_val], perm[n_val:]
        xv, yv, wv = (torch.as_tensor(a[val]) for a in (z, yf, wf))
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
        history = train_loop(self.model_, batch_step, criterion, (z[train], yf[train], wf[train]), epochs=self.epochs,
                             batch_size=self.batch_size, lr=self.lr, patience=self.patience, seed=self.seed,
                             device=torch.device("cpu"))
        constant = float(bce(torch.full((n_val,), float(np.log(self.prior_ / (1 - self.prior_)))), yv, wv))
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


#: The classifiers a saved search may hold, by class name (rebuilt from their parameters and arrays).
CLASSIFIER_TYPES: dict[str, type[BoostedClassifier] | type[NeuralClassifier]] = {
    "BoostedClassifier": BoostedClassifier, "NeuralClassifier": NeuralClassifier}
