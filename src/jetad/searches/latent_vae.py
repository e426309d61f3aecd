"""Bump hunting in latent space (BuHuLaSpa, 2103.06595): a VAE whose anomaly latent space is agnostic to mjj.

Bortolato, Dillon, Kamenik and Smolkovic embed physical observables (the dijet invariant mass) directly into
the VAE's latent space while the anomaly score is computed from the other latent coordinates, so that a cut on
it does not depend on mjj and a bump can be hunted in mjj after the cut. Here the embedding is the decoder's
conditioning input: the decoder reads (z, mjj), so the encoder's z need not carry the mass, and optionally a
DisCo penalty (2001.05310) lambda * dCor^2(mu(x), mjj) pushes the posterior means to be independent of it.
Score: the squared latent distance ||mu(x)||^2 of the event's posterior mean from the prior's centre
('latent'), or the event's -ELBO at z = mu ('elbo': reconstruction + KL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from jetad.detectors.autoencoder import DenseCoder, build_autoencoder
from jetad.detectors.disco import distance_correlation_sq
from jetad.detectors.estimator import register
from jetad.detectors.training import train_loop
from jetad.searches.base import DijetView
from jetad.searches.unsupervised import (
    UnsupervisedSearch,
    check_training_options,
    detrended,
    identity_trend,
    mjj_trend,
    module_state,
    standardization,
)

__all__ = ["SCORE_KINDS", "LatentVAESearch", "MassConditionedVAE"]

SCORE_KINDS = ("latent", "elbo")


class MassConditionedVAE(nn.Module):
    """VAE on standardized features: encoder x -> (mu, log var) of z; decoder (z[, m]) -> x, m = standardized
    log(mjj) when `condition_mjj` (the mass embedded as a fixed latent coordinate, BuHuLaSpa's idea)."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], latent_dim: int, condition_mjj: bool):
        super().__init__()
        coder = build_autoencoder((n_in,), hidden, latent_dim, variational=True)
        decoding = build_autoencoder((n_in,), hidden, latent_dim + int(condition_mjj))
        assert isinstance(coder, DenseCoder) and isinstance(decoding, DenseCoder)
        self.encoder, self.decoder = coder.encoder, decoding.decoder
        self.latent_dim, self.condition_mjj = latent_dim, condition_mjj

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log variance) of q(z | x), each (B, latent_dim)."""
        h = self.encoder(x)
        return h[:, : self.latent_dim], h[:, self.latent_dim:].clamp(-12, 12)

    def terms(self, x: torch.Tensor, m: torch.Tensor, sample: bool) -> tuple[torch.Tensor, ...]:
        """(mu, reconstruction -log p(x | z) up to a constant, KL(q || N(0, 1))) per event; z ~ q if `sample`."""
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        reco = self.decoder(torch.cat([z, m[:, None]], 1) if self.condition_mjj else z)
        nll = 0.5 * (x - reco).square().sum(1)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)
        return mu, nll, kl


@register
class LatentVAESearch(UnsupervisedSearch):
    """BuHuLaSpa-style latent-space VAE search (2103.06595), k-fold cross-fitted.

    Per fold: a VAE on the standardized features, loss = mean(reco + beta KL) + disco_lambda * dCor^2(mu, mjj),
    trained with jetad's `train_loop` (best epoch by the validation loss); score = ||mu||^2 ('latent') or
    -ELBO at z = mu ('elbo'). Mass decorrelation: `condition_mjj` (decoder conditioned on log mjj) and/or
    `disco_lambda` > 0, on top of `detrend_mjj` (the features' location and scale lines in log mjj removed
    first); all off gives the plain VAE.

    Simplifications: the paper embeds the observables in dedicated latent coordinates (with the decoder and
    a classifier reading them) and studies the latent space itself; here the mass enters only the decoder, the
    anomaly latent is a few Gaussian coordinates and the score is one number per event (the bump hunt then
    runs in mjj after a cut, as for every jetad search). No extra regression of the mass from the latent.

    Arguments:
        latent_dim: anomaly latent coordinates.
        hidden: encoder (and mirrored decoder) widths.
        beta: KL weight.
        condition_mjj: feed standardized log(mjj) to the decoder.
        disco_lambda: DisCo weight on dCor^2(mu, log mjj) (0 = none).
        score_kind: 'latent' (||mu||^2) or 'elbo' (reconstruction + KL at z = mu).
        epochs, batch_size, lr, patience, val_fraction: training.
        detrend_mjj: remove each feature's location and scale lines in log(mjj) first (`PCASearch`'s option;
            on by default: without it neither `condition_mjj` nor DisCo on mu keeps the 'elbo' score from
            following mjj when the feature scales do, docs/benchmarks/lhco_unsupervised.md).
        **kwargs: `UnsupervisedSearch` options (train_region='all', signal_region, features, n_folds, seed, ...).

    Example:
        search = LatentVAESearch(condition_mjj=True, disco_lambda=10.0).fit(data)
    """

    name: ClassVar[str] = "latent_vae"

    def __init__(self, latent_dim: int = 2, hidden: tuple[int, ...] = (32, 16), beta: float = 1.0,
                 condition_mjj: bool = True, disco_lambda: float = 10.0, score_kind: str = "elbo",
                 epochs: int = 30, batch_size: int = 256, lr: float = 1e-3, patience: int = 5,
                 val_fraction: float = 0.2, detrend_mjj: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        check_training_options(latent_dim=latent_dim, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                        val_fraction=val_fraction)
        if score_kind not in SCORE_KINDS:
            raise ValueError(f"score_kind must be one of {SCORE_KINDS}, got {score_kind!r}")
        if beta <= 0:
            raise ValueError(f"beta must be positive (the KL weight), got {beta}")
        if disco_lambda < 0:
            raise ValueError(f"disco_lambda must be >= 0 (0 = no DisCo), got {disco_lambda}")
        self.latent_dim, self.hidden, self.beta = int(latent_dim), tuple(hidden), float(beta)
        self.condition_mjj, self.disco_lambda, self.score_kind = bool(condition_mjj), float(disco_lambda), score_kind
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.patience, self.val_fraction = int(patience), float(val_fraction)
        self.detrend_mjj = bool(detrend_mjj)

    def _network(self) -> MassConditionedVAE:
        return MassConditionedVAE(len(self.features), self.hidden, self.latent_dim, self.condition_mjj)

    def _loss(self, vae: MassConditionedVAE, x: torch.Tensor, m: torch.Tensor
              ) -> tuple[torch.Tensor, dict[str, float]]:
        mu, nll, kl = vae.terms(x, m, sample=vae.training)
        loss = (nll + self.beta * kl).mean()
        logs = {"reco": float(nll.detach().mean()), "kl": float(kl.detach().mean())}
        if self.disco_lambda > 0 and len(x) > 1:
            dcor = distance_correlation_sq(mu, m)
            loss = loss + self.disco_lambda * dcor.to(loss.dtype)
            logs["disco_dcor2"] = float(dcor.detach())
        return loss, logs

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> dict[str, Any]:
        x, log_m = view.x[rows].astype(np.float64), np.log(view.mjj[rows])
        trend = mjj_trend(x, log_m) if self.detrend_mjj else identity_trend(x.shape[1])
        x = detrended(x, log_m, trend)
        mean, std = standardization(x)
        m_mean, m_std = float(log_m.mean()), float(log_m.std()) or 1.0
        z = ((x - mean) / std).astype(np.float32)
        m = ((log_m - m_mean) / m_std).astype(np.float32)
        perm = np.random.default_rng(self.seed + k).permutation(len(rows))
        n_val = max(2, int(self.val_fraction * len(rows)))
        val, train = perm[:n_val], perm[n_val:]
        torch.manual_seed(self.seed + k)
        vae = self._network()
        xv, mv = torch.as_tensor(z[val][:2000]), torch.as_tensor(m[val][:2000])  # DisCo is O(n^2): a capped set

        def criterion() -> float:
            with torch.no_grad():
                return float(self._loss(vae, xv, mv)[0])

        def step(xb: torch.Tensor, mb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
            return self._loss(vae, xb, mb)

        batch_step: Callable[..., tuple[torch.Tensor, dict[str, float]]] = step  # called as step(x, m)
        history = train_loop(vae, batch_step, criterion, (z[train], m[train]),
                             epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                             seed=self.seed + k, device=torch.device("cpu"))
        return {"vae": module_state(vae.eval()), "trend": trend, "mean": mean, "std": std, "mjj_log_mean": m_mean,
                "mjj_log_std": m_std, "best_epoch": history.best_epoch}

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        vae = self._network()
        vae.load_state_dict(model["vae"])
        x = torch.as_tensor((detrended(view.x[rows].astype(np.float64), np.log(view.mjj[rows]), model["trend"])
                             - model["mean"]) / model["std"], dtype=torch.float32)
        m = torch.as_tensor((np.log(view.mjj[rows]) - model["mjj_log_mean"]) / model["mjj_log_std"],
                            dtype=torch.float32)
        with torch.no_grad():
            mu, nll, kl = vae.eval().terms(x, m, sample=False)
            score = mu.square().sum(1) if self.score_kind == "latent" else nll + self.beta * kl
        return score.numpy().astype(np.float64)
