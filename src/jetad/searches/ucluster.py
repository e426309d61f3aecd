"""UCluster: clustering in the embedding of a network trained on a proxy classification task (2010.07106).

Mikuni & Canelli train ABCNet on the particles of an event with two losses: a classification loss on a task
whose labels need no truth (for anomaly detection: the jet mass, in bins), which shapes an embedding in which
events of similar physics lie close, and a k-means loss on that embedding (soft assignments to trainable
centroids, as in deep k-means, 1806.10069), which groups them into clusters. A resonance then concentrates in
one cluster, which is over-populated in the signal region of mjj; the search bump-hunts that cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from jetad.detectors.estimator import register
from jetad.searches.base import DijetView, ResonantSearch
from jetad.searches.classifiers import balanced_weights, validation_split

__all__ = ["PROXIES", "UCluster", "kmeans_centroids", "membership_log_odds"]

#: Proxy tasks: 'region' = SR (1) vs sidebands (0), CWoLa's label; 'mass_bin' = quantile bin of a jet mass.
PROXIES = ("region", "mass_bin")


def kmeans_centroids(z: np.ndarray, n_clusters: int, seed: int, n_iter: int = 20) -> np.ndarray:
    """(n_clusters, d) k-means centroids of z: seeded k-means++ start, then Lloyd iterations."""
    rng = np.random.default_rng(seed)
    centroids = [z[rng.integers(len(z))]]
    for _ in range(1, n_clusters):
        d2 = np.min([np.sum((z - c) ** 2, axis=1) for c in centroids], axis=0)
        centroids.append(z[rng.choice(len(z), p=d2 / d2.sum())] if d2.sum() > 0 else z[rng.integers(len(z))])
    mu = np.array(centroids)
    for _ in range(n_iter):
        nearest = np.argmin(((z[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
        mu = np.array([z[nearest == j].mean(0) if np.any(nearest == j) else mu[j] for j in range(n_clusters)])
    return mu


def _embed(model: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The encoder's embedding (numpy forward pass of the stored ReLU MLP) of raw inputs x."""
    h = (np.asarray(x, np.float64) - model["mean"]) / model["std"]
    layers = list(zip(model["weights"], model["biases"], strict=True))
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def _memberships(z: np.ndarray, centroids: np.ndarray, temperature: float) -> np.ndarray:
    """(n, K) soft cluster assignments softmax_j(-|z - mu_j|^2 / temperature)."""
    logits = -((z[:, None, :] - centroids[None]) ** 2).sum(-1) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def membership_log_odds(z: np.ndarray, centroids: np.ndarray, temperature: float, cluster: int) -> np.ndarray:
    """(n,) log(pi_c / (1 - pi_c)) of the soft assignment to `cluster`: the membership without its saturation
    (pi itself rounds to exactly 0 or 1 far from the boundary, which would tie many scores)."""
    logits = -((z[:, None, :] - centroids[None]) ** 2).sum(-1) / temperature
    others = np.delete(logits, cluster, axis=1)
    return logits[:, cluster] - np.logaddexp.reduce(others, axis=1)


@register
class UCluster(ResonantSearch):
    """UCluster (Mikuni & Canelli, 2010.07106) on the dijet features; k-fold cross-fitted over SR and sidebands.

    Per fold: an MLP encoder (features -> `embedding_dim`) with a linear head is trained on the proxy task
    (class-balanced cross-entropy, `pretrain_epochs`), centroids start from k-means on the embedding, then
    encoder, head and centroids train on cross-entropy + `cluster_weight` x the soft k-means loss
    sum_j pi_j |z - mu_j|^2 (pi = softmax(-|z - mu|^2 / temperature)). The signal cluster is the one whose
    share of the fold's SR events most exceeds its share of the sideband events; score = the log-odds of an
    event's soft membership pi of that cluster, log(pi / (1 - pi)). Epochs are chosen on a seeded validation
    fifth of the fold's events.

    Simplified: an MLP on the few dijet features instead of ABCNet on particles; one embedding per event, not
    per jet; the proxy task 'region' (SR vs sidebands) is CWoLa's label, so the embedding is that of a CWoLa
    classifier and the clustering only groups it; 'mass_bin' (the paper's idea: quantile bins of the
    `mass_feature` column, an input here, so the task is easy) shapes the embedding without any region label.
    The paper bump-hunts the over-populated cluster; here its membership is the score that the bump hunt cuts.

    Arguments:
        proxy: 'region' or 'mass_bin' (see above).
        mass_feature, n_mass_bins: the column and quantile bins of the 'mass_bin' task (the column must be one
            of `features`).
        n_clusters: centroids (>= 2).
        embedding_dim, hidden: embedding width and the encoder's hidden layers.
        cluster_weight: weight of the k-means loss (>= 0); temperature: of the soft assignments (> 0).
        pretrain_epochs, epochs, batch_size, lr, patience: training (classification only, then joint).
        **kwargs: `ResonantSearch` options (signal_region, sideband_width=200 GeV, features, n_folds, seed, ...).
    """

    name: ClassVar[str] = "ucluster"

    def __init__(self, proxy: str = "region", mass_feature: str = "mj1", n_mass_bins: int = 10, n_clusters: int = 2,
                 embedding_dim: int = 4, hidden: tuple[int, ...] = (32, 32), cluster_weight: float = 0.5,
                 temperature: float = 1.0, pretrain_epochs: int = 20, epochs: int = 20, batch_size: int = 256,
                 lr: float = 1e-3, patience: int = 5, **kwargs: Any):
        super().__init__(**kwargs)
        if proxy not in PROXIES:
            raise ValueError(f"proxy must be one of {PROXIES}, got {proxy!r}")
        if proxy == "mass_bin" and mass_feature not in self.features:
            raise ValueError(f"mass_feature {mass_feature!r} must be one of features {self.features}")
        for option, value, least in (("n_mass_bins", n_mass_bins, 2), ("n_clusters", n_clusters, 2),
                                     ("embedding_dim", embedding_dim, 1), ("pretrain_epochs", pretrain_epochs, 1),
                                     ("epochs", epochs, 1), ("batch_size", batch_size, 1)):
            if int(value) != value or value < least:
                raise ValueError(f"{option} must be an integer >= {least}, got {value!r}")
        if cluster_weight < 0:
            raise ValueError(f"cluster_weight must be >= 0, got {cluster_weight}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.proxy, self.mass_feature, self.n_mass_bins = proxy, mass_feature, n_mass_bins
        self.n_clusters, self.embedding_dim, self.hidden = n_clusters, embedding_dim, tuple(hidden)
        self.cluster_weight, self.temperature = cluster_weight, temperature
        self.pretrain_epochs, self.epochs, self.batch_size, self.lr, self.patience = (
            pretrain_epochs, epochs, batch_size, lr, patience)

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        return np.where(view.sr, 1, np.where(view.sb, 0, -1))

    def _targets(self, view: DijetView, rows: np.ndarray) -> np.ndarray:
        """Proxy-task labels of the rows (no truth: the region, or the bin of a jet mass)."""
        if self.proxy == "region":
            return view.sr[rows].astype(np.int64)
        mass = view.x[rows, self.features.index(self.mass_feature)]
        edges = np.unique(np.quantile(mass, np.linspace(0, 1, self.n_mass_bins + 1)[1:-1]))
        return np.searchsorted(edges, mass, side="right").astype(np.int64)

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> dict[str, Any]:
        x = view.x[rows].astype(np.float64)
        mean, std = x.mean(0), x.std(0) + 1e-8
        y = self._targets(view, rows)
        n_classes = self.n_mass_bins if self.proxy == "mass_bin" else 2
        val = validation_split(y, 5, self.seed + 100 + k) == 0
        z = ((x - mean) / std).astype(np.float32)
        w = balanced_weights(y) if self.proxy == "region" else np.ones(len(y))
        torch.manual_seed(self.seed + k)
        net = _Network(x.shape[1], self.hidden, self.embedding_dim, n_classes, self.n_clusters)
        xv, yv, wv = (torch.as_tensor(a) for a in (z[val], y[val], w[val].astype(np.float32)))
        self._train(net, (z[~val], y[~val], w[~val].astype(np.float32)), (xv, yv, wv), 0.0, self.pretrain_epochs, k)
        with torch.no_grad():
            embedded = net.encoder(torch.as_tensor(z[~val])).numpy().astype(np.float64)
        net.centroids.data = torch.as_tensor(kmeans_centroids(embedded, self.n_clusters, self.seed + 200 + k),
                                             dtype=torch.float32)
        self._train(net, (z[~val], y[~val], w[~val].astype(np.float32)), (xv, yv, wv), self.cluster_weight,
                    self.epochs, k)
        model = net.arrays() | {"mean": mean, "std": std}
        nearest = np.argmax(_memberships(_embed(model, x), model["centroids"], self.temperature), axis=1)
        return model | {"signal_cluster": self._enriched_cluster(nearest, view.sr[rows])}

    def _train(self, net: _Network, train: tuple[np.ndarray, ...], val: tuple[Any, ...], cluster_weight: float,
               epochs: int, k: int) -> None:
        """Cross-entropy (+ cluster_weight x soft k-means loss) by `train_loop`, best validation epoch kept."""
        from jetad.detectors.training import train_loop

        def loss(xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
            emb = net.encoder(xb)
            ce = torch.nn.functional.cross_entropy(net.head(emb), yb, reduction="none")
            total = (ce * wb).sum() / wb.sum()
            if cluster_weight > 0:
                d2 = ((emb[:, None, :] - net.centroids[None]) ** 2).sum(-1)
                total = total + cluster_weight * (torch.softmax(-d2 / self.temperature, 1) * d2).sum(1).mean()
            return total

        def step(xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
            return loss(xb, yb, wb), {}

        def criterion() -> float:
            with torch.no_grad():
                return float(loss(*val))

        batch_step: Callable[..., tuple[torch.Tensor, dict[str, float]]] = step
        train_loop(net, batch_step, criterion, train, epochs=epochs, batch_size=self.batch_size, lr=self.lr,
                   patience=self.patience, seed=self.seed + 300 + k, device=torch.device("cpu"))

    def _enriched_cluster(self, nearest: np.ndarray, sr: np.ndarray) -> int:
        """The cluster whose share of the SR events most exceeds its share of the sideband events (+1 smoothed)."""
        n_sr = np.bincount(nearest[sr], minlength=self.n_clusters) + 1.0
        n_sb = np.bincount(nearest[~sr], minlength=self.n_clusters) + 1.0
        return int(np.argmax((n_sr / n_sr.sum()) / (n_sb / n_sb.sum())))

    def _predict(self, model: dict[str, Any], view: DijetView, rows: np.ndarray) -> np.ndarray:
        z = _embed(model, view.x[rows])
        return membership_log_odds(z, model["centroids"], self.temperature, int(model["signal_cluster"]))

    def n_parameters(self) -> int:
        """Weights, biases and centroids of the fold networks (the proxy heads are not kept)."""
        self._check_fitted()
        return sum(sum(a.size for a in m["weights"] + m["biases"]) + m["centroids"].size for m in self.models_)


class _Network(nn.Module):
    """MLP encoder to the embedding, a linear proxy-task head, and trainable cluster centroids."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], dim: int, n_classes: int, n_clusters: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.encoder = nn.Sequential(*layers, nn.Linear(width, dim))
        self.head = nn.Linear(dim, n_classes)
        self.centroids = nn.Parameter(torch.zeros(n_clusters, dim))

    def arrays(self) -> dict[str, Any]:
        """The encoder's weights and biases and the centroids as float64 numpy arrays (the stored fold model)."""
        linear = [m for m in self.encoder if isinstance(m, nn.Linear)]
        return {"weights": [m.weight.detach().numpy().astype(np.float64) for m in linear],
                "biases": [m.bias.detach().numpy().astype(np.float64) for m in linear],
                "centroids": self.centroids.detach().numpy().astype(np.float64)}
