"""A fitted binary gradient-boosted tree ensemble as plain arrays: stored safely, evaluated in numpy.

scikit-learn's `HistGradientBoostingClassifier` is a Python object (pickled by joblib, which runs code when
loaded). Its prediction is simple: raw = baseline + sum over trees of the value of the leaf each event reaches,
going left where ``x[feature] <= threshold`` (a NaN goes the tree's missing-value side), and P(1) =
sigmoid(raw). `TreeEnsemble` keeps exactly those numbers, so a saved search holds arrays only and predicts
the same probabilities as sklearn's `staged_predict_proba` at the same iteration (tested to 1e-12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from jetad.data.sample import SchemaError

__all__ = ["TreeEnsemble"]

_NODE_DTYPES = {"feature": np.int64, "threshold": np.float64, "left": np.int64, "right": np.int64, "is_leaf": bool,
                "value": np.float64, "missing_left": bool}
_NODE_FIELDS = tuple(_NODE_DTYPES)


@dataclass
class TreeEnsemble:
    """Trees of a binary boosted classifier, node arrays concatenated; tree t's nodes start at ``roots[t]``.

    Arguments:
        baseline: raw (log-odds) prediction before the first tree.
        roots: (T,) index of each tree's root node.
        feature, threshold, left, right, is_leaf, value, missing_left: (n_nodes,) per-node arrays; children
            are global node indices.
        depth: the largest tree depth (the number of steps that reach every leaf).
        n_features: input columns the trees were fitted on.
    """

    baseline: float
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    missing_left: np.ndarray
    depth: int
    n_features: int

    @classmethod
    def from_sklearn(cls, model: Any, n_trees: int) -> TreeEnsemble:
        """The first `n_trees` iterations of a fitted binary `HistGradientBoostingClassifier`."""
        predictors = [iteration[0] for iteration in model._predictors[:n_trees]]
        columns: dict[str, list[np.ndarray]] = {k: [] for k in _NODE_FIELDS}
        roots, offset, depth = [], 0, 0
        for p in predictors:
            nodes = p.nodes
            if nodes["is_categorical"].any():
                raise ValueError("TreeEnsemble supports numeric features only (no categorical splits)")
            roots.append(offset)
            columns["feature"].append(nodes["feature_idx"].astype(np.int64))
            columns["threshold"].append(nodes["num_threshold"].astype(np.float64))
            columns["left"].append(nodes["left"].astype(np.int64) + offset)
            columns["right"].append(nodes["right"].astype(np.int64) + offset)
            columns["is_leaf"].append(nodes["is_leaf"].astype(bool))
            columns["value"].append(nodes["value"].astype(np.float64))
            columns["missing_left"].append(nodes["missing_go_to_left"].astype(bool))
            depth = max(depth, int(nodes["depth"].max()))
            offset += len(nodes)
        arrays = {k: np.concatenate(v) if v else np.zeros(0, _NODE_DTYPES[k]) for k, v in columns.items()}
        return cls(baseline=float(np.ravel(model._baseline_prediction)[0]), roots=np.asarray(roots, np.int64),
                   depth=depth, n_features=int(model.n_features_in_), **arrays)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """(N,) log-odds: baseline plus the reached leaf value of every tree, summed in tree order."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"tree ensemble fitted on {self.n_features} features, got inputs of shape {x.shape}")
        rows = np.arange(len(x))[:, None]
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        for _ in range(self.depth):  # one step down every tree at once for all events
            leaf = self.is_leaf[node]
            if leaf.all():
                break
            v = x[rows, self.feature[node]]
            go_left = np.where(np.isnan(v), self.missing_left[node], v <= self.threshold[node])
            node = np.where(leaf, node, np.where(go_left, self.left[node], self.right[node]))
        raw = np.full(len(x), self.baseline)
        for t in range(len(self.roots)):  # sklearn's summation order, so the sums agree to the last bit
            raw += self.value[node[:, t]]
        return raw

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, 2) class probabilities."""
        p = expit(self.raw(x))
        return np.stack([1 - p, p], axis=1)

    def to_state(self) -> dict[str, Any]:
        """Arrays and numbers only (for the model file)."""
        return {"baseline": self.baseline, "roots": self.roots, "depth": self.depth,
                "n_features": self.n_features, **{k: getattr(self, k) for k in _NODE_FIELDS}}

    @classmethod
    def from_state(cls, state: dict[str, Any], where: str = "tree ensemble") -> TreeEnsemble:
        """Inverse of `to_state`, with the index checks that keep evaluation inside the arrays."""
        try:
            nodes = {k: np.asarray(state[k]).astype(dtype, casting="same_kind") for k, dtype in _NODE_DTYPES.items()}
            trees = cls(baseline=float(state["baseline"]), roots=np.asarray(state["roots"], np.int64),
                        depth=int(state["depth"]), n_features=int(state["n_features"]), **nodes)
        except (KeyError, TypeError, ValueError) as err:  # includes a cast across kinds (float -> int)
            raise SchemaError(f"{where}: malformed tree ensemble ({err})") from None
        n = len(trees.feature)
        if any(len(getattr(trees, k)) != n for k in _NODE_FIELDS) or trees.depth < 0:
            raise SchemaError(f"{where}: tree ensemble arrays of different lengths")
        for k in ("roots", "left", "right"):
            idx = getattr(trees, k)
            inner = idx if k == "roots" else idx[~trees.is_leaf]
            if len(inner) and (inner.min() < 0 or inner.max() >= n):
                raise SchemaError(f"{where}: tree ensemble node index out of range in {k!r}")
        split_features = trees.feature[~trees.is_leaf]
        if len(split_features) and (split_features.min() < 0 or split_features.max() >= trees.n_features):
            raise SchemaError(f"{where}: tree ensemble feature index out of range")
        return trees
