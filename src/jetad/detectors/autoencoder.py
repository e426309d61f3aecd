"""Autoencoders and beta-VAEs on jet features (dense) or jet images (convolutional).

Score = reconstruction error (1808.08992, 1808.08979); for the beta-VAE, reconstruction + beta KL or either
term alone (the jet-metrics reference in DESIGN.md found the beta-VAE on top/QCD images matching an EMD-to-medoids
score at beta ~ 1e-7).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any, ClassVar, Self

import torch
from torch import nn

from jetad.data.sample import JetSample
from jetad.detectors.base import TorchDetector, register
from jetad.detectors.estimator import Progress

__all__ = ["Autoencoder", "BetaVAE", "build_autoencoder"]


class DenseCoder(nn.Module):
    """MLP encoder/decoder pair: in -> hidden... -> latent (x2 for a VAE) -> ...hidden -> in."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], latent: int, variational: bool):
        super().__init__()
        dims = (n_in, *hidden)
        enc: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            enc += [nn.Linear(a, b), nn.SiLU()]
        enc.append(nn.Linear(dims[-1], latent * (2 if variational else 1)))
        dec: list[nn.Module] = []
        rdims = (latent, *reversed(hidden))
        for a, b in itertools.pairwise(rdims):
            dec += [nn.Linear(a, b), nn.SiLU()]
        dec.append(nn.Linear(rdims[-1], n_in))
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)


class ConvCoder(nn.Module):
    """Convolutional encoder/decoder for (1, S, S) jet images (S divisible by 4, e.g. 40 or 48)."""

    def __init__(self, size: int, channels: tuple[int, ...], latent: int, variational: bool):
        super().__init__()
        c1, c2 = channels[0], channels[-1]
        s4 = -(-size // 4)
        self.size, self.s4, self.c2 = size, s4, c2
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2, ceil_mode=True),
            nn.Conv2d(c1, c2, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2, ceil_mode=True),
            nn.Flatten(), nn.Linear(c2 * s4 * s4, 64), nn.SiLU(), nn.Linear(64, latent * (2 if variational else 1)),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, 64), nn.SiLU(), nn.Linear(64, c2 * s4 * s4), nn.SiLU(),
            nn.Unflatten(1, (c2, s4, s4)),
            nn.Upsample(scale_factor=2), nn.Conv2d(c2, c1, 3, padding=1), nn.SiLU(),
            nn.Upsample(scale_factor=2), nn.Conv2d(c1, 1, 3, padding=1),
            _Crop(size),
            nn.ReLU(),  # pixel intensities are non-negative
        )


class _Crop(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : self.size, : self.size]


def build_autoencoder(input_shape: tuple[int, ...], hidden: tuple[int, ...], latent: int,
                      variational: bool = False, channels: tuple[int, ...] = (8, 16)) -> DenseCoder | ConvCoder:
    """Dense coder (`hidden` widths) for feature vectors, convolutional coder (`channels`) for images."""
    if len(input_shape) == 1:
        return DenseCoder(input_shape[0], tuple(hidden), latent, variational)
    if len(input_shape) == 3:
        return ConvCoder(input_shape[-1], tuple(channels), latent, variational)
    raise ValueError(f"autoencoders take feature vectors or images, got input shape {input_shape}")


def per_jet_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared reconstruction error per jet, (B,)."""
    return ((x - y) ** 2).flatten(1).mean(1)


@register
class Autoencoder(TorchDetector):
    """Autoencoder; score = per-jet mean squared reconstruction error.

    Arguments:
        hidden: hidden layer widths (feature inputs).
        channels: the two convolution channel counts (image inputs).
        latent_dim: bottleneck size.
    """

    name: ClassVar[str] = "ae"
    model_: DenseCoder | ConvCoder

    def __init__(self, hidden: tuple[int, ...] = (64, 32, 16), latent_dim: int = 4,
                 channels: tuple[int, int] = (8, 16), **kwargs: Any):
        super().__init__(**kwargs)
        self.hidden = tuple(hidden)
        self.channels = tuple(channels)
        self.latent_dim = latent_dim

    def build_model(self, input_shape: tuple[int, ...]) -> DenseCoder | ConvCoder:
        return build_autoencoder(input_shape, self.hidden, self.latent_dim, channels=self.channels)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.model_.decoder(self.model_.encoder(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent representation (B, latent_dim)."""
        return self.model_.encoder(x)[:, : self.latent_dim]

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction error per jet, (B,): the score, and the NAE/WNAE energy."""
        return per_jet_mse(x, self.reconstruct(x))

    def loss(self, batch):
        e = self.energy(batch)
        return e.mean(), {}

    def score_batch(self, batch):
        return self.energy(batch)


@register
class BetaVAE(Autoencoder):
    """beta-VAE; loss = reconstruction + beta KL(q(z|x) || N(0, 1)).

    beta's scale depends on how the reconstruction term is normalised (here the per-pixel mean of images scaled
    by the input spec's `pixel_scale`), so betas of different codes compare only through the unit-free ratio
    R = beta * KL / reconstruction. The history logs, per epoch, the mean terms and R in training (`reco`, `kl`,
    `ratio`: batch averages) and on the validation set (`val_reco`, `val_kl`, `val_ratio`: whole-set means).

    Arguments:
        beta: KL weight (0 gives a plain AE with a noisy bottleneck; 2301.04660 scans 1e-10 .. 1e-4).
        score_kind: 'loss' (reconstruction + beta KL), 'reco' (reconstruction only) or 'kl'.
    """

    name: ClassVar[str] = "vae"

    def __init__(self, beta: float = 1e-3, score_kind: str = "loss", **kwargs: Any):
        super().__init__(**kwargs)
        if score_kind not in ("loss", "reco", "kl"):
            raise ValueError(f"score_kind must be loss, reco or kl, got {score_kind!r}")
        self.beta = beta
        self.score_kind = score_kind
        self._val_terms: dict[str, float] = {}  # the last criterion call's validation terms

    def build_model(self, input_shape: tuple[int, ...]) -> DenseCoder | ConvCoder:
        return build_autoencoder(input_shape, self.hidden, self.latent_dim, variational=True, channels=self.channels)

    def _terms(self, x: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.model_.encoder(x)
        mu, logvar = h[:, : self.latent_dim], h[:, self.latent_dim:].clamp(-12, 12)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        reco = per_jet_mse(x, self.model_.decoder(z))
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        return reco, kl

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model_.encoder(x)[:, : self.latent_dim]

    def term_logs(self, reco: torch.Tensor, kl: torch.Tensor) -> dict[str, float]:
        """Means of the per-jet terms and R = beta * mean KL / mean reconstruction (inf if the latter is 0)."""
        r, k = float(reco.detach().mean()), float(kl.detach().mean())
        return {"reco": r, "kl": k, "ratio": self.beta * k / r if r > 0 else math.inf}

    def loss(self, batch):
        reco, kl = self._terms(batch, sample=self.model_.training)
        return (reco + self.beta * kl).mean(), self.term_logs(reco, kl)

    def criterion(self, x_val: torch.Tensor) -> float:
        """Mean validation loss (as TorchDetector's); keeps the validation terms for this epoch's history entry."""
        total, recos, kls = 0.0, [], []
        with torch.no_grad():
            for i in range(0, len(x_val), 4096):
                reco, kl = self._terms(x_val[i:i + 4096], sample=self.model_.training)
                total += float((reco + self.beta * kl).mean()) * len(reco)
                recos.append(reco)
                kls.append(kl)
        self._val_terms = {f"val_{k}": v for k, v in self.term_logs(torch.cat(recos), torch.cat(kls)).items()}
        return total / max(len(x_val), 1)

    def fit(self, train: JetSample, val: JetSample | None = None, progress: Progress | None = None,
            monitor: Callable[[Any], dict[str, float]] | None = None) -> Self:
        """TorchDetector.fit; each epoch's history entry also holds `val_reco`, `val_kl` and `val_ratio`."""
        def with_terms(detector: Any) -> dict[str, float]:
            return {**self._val_terms, **(monitor(detector) if monitor else {})}

        return super().fit(train, val, progress=progress, monitor=with_terms)

    def score_batch(self, batch):
        reco, kl = self._terms(batch, sample=False)
        return {"loss": reco + self.beta * kl, "reco": reco, "kl": kl}[self.score_kind]
