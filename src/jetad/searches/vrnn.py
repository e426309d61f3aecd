"""Variational recurrent neural network on jet constituents: a jet as a sequence of particles (2105.09274).

The LHC Olympics VRNN entry (2101.08320, section 3; the method paper is Kahn et al., "Anomalous Jet Identification
via Sequence Modeling", 2105.09274) models each jet as a sequence of its constituents in pT order with a VRNN (Chung
et al., 1506.02216): at every step a recurrent state h_{t-1} gives a prior p(z_t | h_{t-1}), an encoder the
posterior q(z_t | x_t, h_{t-1}), a decoder reconstructs x_t from (z_t, h_{t-1}), and h_t = GRU([phi(x_t), phi(z_t)],
h_{t-1}). The loss is the reconstruction error plus the weighted KL divergence of posterior and prior; the jet's
anomaly score is 1 - exp(-mean_t D_KL), the mean over its constituents (as the LHCO review states), and the event's
the max (or sum) over its two jets.

Simplified here: particles are (pT fraction, d_eta, d_phi) relative to the jet axis (the paper boosts every jet
to one reference mass and energy), a GRU cell, deterministic posterior means when scoring, trained on the
sidebands by default (the paper trains on the whole, contaminated data set: `train_region='all'`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from jetad.detectors.estimator import register
from jetad.searches.particle_view import TorchParticleSearch

__all__ = ["ParticleVRNN", "SequenceVRNN"]


def _net(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class SequenceVRNN(nn.Module):
    """VRNN (1506.02216) over a masked sequence of particles; returns per-step reconstruction error and KL."""

    def __init__(self, hidden: int = 32, latent_dim: int = 2, scale: float = 0.5):
        super().__init__()
        self.hidden, self.scale = hidden, scale
        self.phi_x = nn.Sequential(_net(3, hidden, hidden), nn.ReLU())
        self.phi_z = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU())
        self.prior, self.encoder = _net(hidden, hidden, 2 * latent_dim), _net(2 * hidden, hidden, 2 * latent_dim)
        self.decoder = _net(2 * hidden, hidden, 3)
        self.cell = nn.GRUCell(2 * hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P) squared reconstruction errors and (B, P) KL(q || p) per particle (0 at padding)."""
        x = torch.cat([x[..., :1], x[..., 1:] / self.scale], dim=-1)
        h = x.new_zeros(len(x), self.hidden)
        errors, kls = [], []
        for t in range(x.shape[1]):
            fx = self.phi_x(x[:, t])
            mu_p, logvar_p = self.prior(h).chunk(2, dim=-1)
            mu_q, logvar_q = self.encoder(torch.cat([fx, h], dim=-1)).chunk(2, dim=-1)
            z = mu_q + torch.exp(0.5 * logvar_q) * torch.randn_like(mu_q) if self.training else mu_q
            fz = self.phi_z(z)
            x_hat = self.decoder(torch.cat([fz, h], dim=-1))
            errors.append(((x_hat - x[:, t]) ** 2).sum(dim=-1))
            kls.append(0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1)
                       .sum(dim=-1))
            h = torch.where(mask[:, t, None], self.cell(torch.cat([fx, fz], dim=-1), h), h)
        m = mask.to(x.dtype)
        return torch.stack(errors, dim=1) * m, torch.stack(kls, dim=1) * m


def _mean_over_particles(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values.sum(dim=1) / mask.sum(dim=1).clamp_min(1)


@register
class ParticleVRNN(TorchParticleSearch):
    """VRNN anomaly score on both jets' constituent sequences (2105.09274; LHCO entry in 2101.08320), cross-fitted.

    Per fold one `SequenceVRNN` learns the jets of the `train_region` events of the other folds (loss = mean
    over particles of reconstruction error + `kl_weight` * KL). Jet score = 1 - exp(-mean_t KL_t); event score
    = max (or sum) over the two jets.

    Arguments:
        hidden: width of the feature extractors, prior, encoder, decoder and of the GRU state.
        latent_dim: size of z_t.
        kl_weight: weight of the KL term in the loss.
        scale: angular scale dividing d_eta and d_phi.
        **kwargs: `TorchParticleSearch` options (combine, epochs, ...) and `ParticleSearch` ones (n_particles=20
            here: the sequence length, train_region, signal_region, n_folds, seed, ...).
    """

    name: ClassVar[str] = "vrnn"

    def __init__(self, hidden: int = 32, latent_dim: int = 2, kl_weight: float = 1.0, scale: float = 0.2,
                 n_particles: int = 20, **kwargs: Any):
        super().__init__(n_particles=n_particles, **kwargs)
        for option, value in (("hidden", hidden), ("latent_dim", latent_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{option} must be a positive integer, got {value!r}")
        if not kl_weight > 0:
            raise ValueError(f"kl_weight must be positive (the score is the KL term), got {kl_weight!r}")
        if not scale > 0:
            raise ValueError(f"scale must be positive (an angle), got {scale!r}")
        self.hidden, self.latent_dim, self.kl_weight, self.scale = hidden, latent_dim, kl_weight, scale

    def _network_config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "latent_dim": self.latent_dim, "scale": float(self.scale)}

    def _build(self, config: dict[str, Any]) -> nn.Module:
        return SequenceVRNN(**config)

    def _jet_loss(self, network: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        errors, kls = network(x, mask)
        return _mean_over_particles(errors + self.kl_weight * kls, mask)

    def _jet_score(self, network: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return 1 - torch.exp(-_mean_over_particles(network(x, mask)[1], mask))
