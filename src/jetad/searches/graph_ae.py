"""Particle graph autoencoder: jets as particle clouds, an EdgeConv encoder, a Chamfer reconstruction loss.

The LHC Olympics "particle graph autoencoder" entry (2101.08320, section 3; the method paper is Tsan et al.,
"Particle Graph Autoencoders and Differentiable, Learned Energy Mover's Distance", 2111.12849): each jet is a graph
of its particles, an EdgeConv network (Wang et al., 1801.07829) encodes it to a small latent vector, a decoder
outputs a particle cloud, and the reconstruction loss is permutation invariant - the Chamfer distance between the
input and output clouds. Trained on background-like events, a jet unlike them (two or three hard prongs) is
reconstructed worse; the event score is the larger (or the sum) of its two jets' losses.

Simplified here: a static k-nearest-neighbour graph in (d_eta, d_phi) for both EdgeConv layers (the dynamic
graph recomputes neighbours in feature space), a dense decoder to exactly `n_particles` points, and particles
described by (pT fraction, d_eta, d_phi) only; trained on the sidebands by default (a search here learns from
the data alone).
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import torch
from torch import nn

from jetad.detectors.estimator import register
from jetad.searches.particle_view import TorchParticleSearch

__all__ = ["CloudAutoencoder", "EdgeConv", "ParticleGraphAE", "chamfer_distance", "knn_graph"]


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def knn_graph(coords: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (B, P, k) of each particle's k nearest real neighbours in `coords` (B, P, D), and their validity."""
    dist = torch.cdist(coords, coords)
    eye = torch.eye(coords.shape[1], dtype=torch.bool, device=coords.device)
    dist = dist.masked_fill(~mask[:, None, :] | eye, float("inf"))
    d, idx = dist.topk(min(k, coords.shape[1] - 1), dim=-1, largest=False)
    return idx, torch.isfinite(d) & mask[..., None]


class EdgeConv(nn.Module):
    """EdgeConv (1801.07829) with a one-layer edge function: h_i' = max_j ReLU(theta h_i + phi (h_j - h_i)).

    theta h_i + phi (h_j - h_i) = (theta - phi) h_i + phi h_j: both terms are computed per particle and only
    gathered per edge, so the cost is per particle, not per edge. A particle without neighbours gets 0.
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.theta, self.phi = nn.Linear(n_in, n_out), nn.Linear(n_in, n_out, bias=False)

    def forward(self, h: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, p, _ = idx.shape
        to_j = self.phi(h)
        rows = idx + p * torch.arange(b, device=idx.device)[:, None, None]
        e = torch.relu((self.theta(h) - to_j)[:, :, None] + to_j.reshape(b * p, -1)[rows])
        out = e.masked_fill(~valid[..., None], float("-inf")).max(dim=2).values
        return torch.where(valid.any(dim=2, keepdim=True), out, torch.zeros_like(out))


class CloudAutoencoder(nn.Module):
    """EdgeConv encoder (two layers, masked mean pooling) to `latent_dim`, dense decoder to `n_particles` x 3."""

    def __init__(self, n_particles: int, hidden: int = 32, latent_dim: int = 4, k: int = 8, scale: float = 1.0):
        super().__init__()
        self.n_particles, self.k, self.scale = n_particles, k, scale
        self.edge1, self.edge2 = EdgeConv(3, hidden), EdgeConv(hidden, hidden)
        self.to_latent = _mlp([hidden, hidden, latent_dim])
        self.decoder = _mlp([latent_dim, hidden, 2 * hidden, 3 * n_particles])

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        """(pT fraction, d_eta / scale, d_phi / scale): the space the loss is measured in."""
        return torch.cat([x[..., :1], x[..., 1:] / self.scale], dim=-1)

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xs = self.scaled(x)
        idx, valid = knn_graph(xs[..., 1:], mask, self.k)
        h = self.edge2(self.edge1(xs, idx, valid), idx, valid) * mask[..., None]
        pooled = h.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1)
        return self.to_latent(pooled)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, n_particles, 3) reconstructed cloud in the scaled space."""
        return self.decoder(self.encode(x, mask)).view(len(x), self.n_particles, 3)


def chamfer_distance(x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) Chamfer distance: mean over real x of min_y |x - y|^2 plus mean over y of min over real x."""
    d = torch.cdist(x, y) ** 2
    to_y = (d.min(dim=2).values * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)
    to_x = d.masked_fill(~mask[..., None], float("inf")).min(dim=1).values.mean(dim=1)
    return to_y + torch.where(mask.any(dim=1), to_x, torch.zeros_like(to_x))


@register
class ParticleGraphAE(TorchParticleSearch):
    """Particle graph autoencoder (2111.12849; LHCO entry in 2101.08320), k-fold cross-fitted.

    Per fold, one `CloudAutoencoder` learns the jets (both jets of each training event, as separate clouds)
    of the `train_region` events of the other folds; a jet's score is its Chamfer reconstruction loss, the
    event's the max (or sum) over its two jets.

    Arguments:
        hidden: width of the EdgeConv and dense layers.
        latent_dim: size of the bottleneck.
        k: neighbours per particle in the (d_eta, d_phi) graph.
        scale: angular scale dividing d_eta and d_phi (about the jet radius; pT fractions are unscaled).
        **kwargs: `TorchParticleSearch` options (combine, epochs, batch_size, lr, patience) and
            `ParticleSearch` ones (n_particles=30, train_region='sidebands', signal_region, n_folds, seed, ...).

    Example:
        search = ParticleGraphAE(signal_region=(3300, 3700)).fit(data)
        scores = search.score(data)
    """

    name: ClassVar[str] = "graph_ae"

    def __init__(self, hidden: int = 32, latent_dim: int = 4, k: int = 8, scale: float = 0.5, **kwargs: Any):
        super().__init__(**kwargs)
        for option, value in (("hidden", hidden), ("latent_dim", latent_dim), ("k", k)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{option} must be a positive integer, got {value!r}")
        if not scale > 0:
            raise ValueError(f"scale must be positive (an angle), got {scale!r}")
        self.hidden, self.latent_dim, self.k, self.scale = hidden, latent_dim, k, scale

    def _network_config(self) -> dict[str, Any]:
        return {"n_particles": self.n_particles, "hidden": self.hidden, "latent_dim": self.latent_dim, "k": self.k,
                "scale": float(self.scale)}

    def _build(self, config: dict[str, Any]) -> nn.Module:
        return CloudAutoencoder(**config)

    def _jet_loss(self, network: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert isinstance(network, CloudAutoencoder)
        return chamfer_distance(network.scaled(x), mask, network(x, mask))
