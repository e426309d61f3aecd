"""GAN-AE: an autoencoder trained against a discriminator, decorrelated from mjj with DisCo.

The LHC Olympics entry of Vaslin, Barnard, Basdevant et al. (2101.08320 Sec. 3; the method paper is
2305.15179): an autoencoder (the generator) reconstructs the event's features while a discriminator learns to
tell original events from reconstructions. The generator's loss is

    L_G = BCE(D(G(x)), real) + eps * mean ||x - G(x)||_2 + alpha * DisCo(||x - G(x)||_2, mjj),

the adversarial term making reconstructions realistic, the Euclidean term faithful, the distance correlation
(2001.05310, `jetad.detectors.disco`) keeping the reconstruction distance - the anomaly score - independent
of mjj so that a cut on it does not sculpt a bump. The discriminator minimizes the usual BCE of real vs
reconstructed. Events are unlabelled: the bulk of the data is background, which the autoencoder learns.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from jetad.detectors.autoencoder import DenseCoder, build_autoencoder
from jetad.detectors.disco import distance_correlation_sq
from jetad.detectors.estimator import register
from jetad.detectors.training import torch_threads, training_threads
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

__all__ = ["GANAESearch", "reconstruct", "reconstruction_distance"]

#: Events of the validation split used for the (O(n^2)) distance correlation of the selection criterion.
_MAX_DCOR_EVENTS = 2000


def reconstruction_distance(z: torch.Tensor, reco: torch.Tensor) -> torch.Tensor:
    """(B,) Euclidean distance ||z - G(z)||_2 of standardized events z to their reconstructions G(z)."""
    return ((z - reco).square().sum(1) + 1e-12).sqrt()


def reconstruct(generator: DenseCoder, z: torch.Tensor) -> torch.Tensor:
    """G(z): the autoencoder's reconstruction of standardized events."""
    return generator.decoder(generator.encoder(z))


def _discriminator(n_in: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """MLP real-vs-reconstructed classifier, one logit per event."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise((n_in, *hidden)):
        layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers, nn.Linear((n_in, *hidden)[-1], 1))


@register
class GANAESearch(UnsupervisedSearch):
    """GAN-assisted autoencoder with DisCo (Vaslin et al., 2101.08320 / 2305.15179), k-fold cross-fitted.

    Per fold: standardize the features, alternate one discriminator step and one generator step per batch
    (Adam), keep the epoch with the lowest validation `eps * mean distance + alpha * dCor^2(distance, mjj)`
    (no labels; the discriminator's term is left out of the selection, it has no fixed optimum). Score = the
    reconstruction distance. Stored per fold: the generator's state dict and the scaling (the discriminator
    only trains it).

    Simplifications: small dense networks on the high-level features (the entry used larger networks on its
    own feature set), one discriminator step per generator step, no dropout, DisCo on log(mjj) per batch.

    Arguments:
        eps: weight of the mean Euclidean reconstruction distance.
        alpha: DisCo weight (0 = no mass decorrelation).
        hidden, latent_dim: the autoencoder's hidden widths and bottleneck.
        discriminator_hidden: the discriminator's hidden widths.
        epochs, batch_size, lr, patience, val_fraction: training (early stopping on the criterion above).
        detrend_mjj: remove each feature's location and scale lines in log(mjj) first (`PCASearch`'s option;
            not part of the entry, which decorrelates with DisCo alone).
        **kwargs: `UnsupervisedSearch` options (train_region='all', signal_region, features, n_folds, seed, ...).

    Example:
        search = GANAESearch(alpha=10.0).fit(data)
        scores = search.score(data)
    """

    name: ClassVar[str] = "gan_ae"

    def __init__(self, eps: float = 1.0, alpha: float = 10.0, hidden: tuple[int, ...] = (32, 16),
                 latent_dim: int = 2, discriminator_hidden: tuple[int, ...] = (32, 32), epochs: int = 30,
                 batch_size: int = 256, lr: float = 1e-3, patience: int = 5, val_fraction: float = 0.2,
                 detrend_mjj: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        check_training_options(eps=eps, alpha=alpha, latent_dim=latent_dim, epochs=epochs, batch_size=batch_size,
                               lr=lr, patience=patience, val_fraction=val_fraction)
        if eps <= 0:
            raise ValueError(f"eps must be positive (weight of the reconstruction distance), got {eps}")
        self.eps, self.alpha = float(eps), float(alpha)
        self.hidden, self.latent_dim = tuple(hidden), int(latent_dim)
        self.discriminator_hidden = tuple(discriminator_hidden)
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.patience, self.val_fraction = int(patience), float(val_fraction)
        self.detrend_mjj = bool(detrend_mjj)

    def _generator(self) -> DenseCoder:
        net = build_autoencoder((len(self.features),), self.hidden, self.latent_dim)
        assert isinstance(net, DenseCoder)  # feature vectors give the dense coder
        return net

    def _criterion(self, generator: DenseCoder, z: torch.Tensor, m: torch.Tensor) -> float:
        with torch.no_grad():
            d = reconstruction_distance(z, reconstruct(generator, z))
            value = self.eps * float(d.mean())
            if self.alpha > 0:
                n = min(len(d), _MAX_DCOR_EVENTS)
                value += self.alpha * float(distance_correlation_sq(d[:n], m[:n]))
        return value

    def _generator_loss(self, generator: DenseCoder, disc: nn.Module, z: torch.Tensor,
                        m: torch.Tensor) -> torch.Tensor:
        reco = reconstruct(generator, z)
        d = reconstruction_distance(z, reco)
        logits = disc(reco).squeeze(1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)) + self.eps * d.mean()
        if self.alpha > 0:
            loss = loss + self.alpha * distance_correlation_sq(d, m).to(loss.dtype)
        return loss

    def _adversarial_step(self, gen: DenseCoder, disc: nn.Module, opt_g: torch.optim.Optimizer,
                          opt_d: torch.optim.Optimizer, zb: torch.Tensor, mb: torch.Tensor) -> None:
        """One discriminator step (real vs reconstructed, BCE), then one generator step (`_generator_loss`)."""
        with torch.no_grad():
            fake = reconstruct(gen, zb)
        logits = disc(torch.cat([zb, fake])).squeeze(1)
        target = torch.cat([torch.ones(len(zb)), torch.zeros(len(zb))])
        opt_d.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
        opt_d.step()
        opt_g.zero_grad()
        self._generator_loss(gen, disc, zb, mb).backward()
        opt_g.step()

    def _train(self, z: np.ndarray, m: np.ndarray, seed: int) -> tuple[DenseCoder, dict[str, Any]]:
        """Adversarial training on standardized rows z with log(mjj) m; the best generator and its history."""
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(z))
        n_val = max(2, int(self.val_fraction * len(z)))
        zt, mt, zv, mv = (torch.as_tensor(a, dtype=torch.float32) for a in
                          (z[perm[n_val:]], m[perm[n_val:]], z[perm[:n_val]], m[perm[:n_val]]))
        torch.manual_seed(seed)
        gen, disc = self._generator(), _discriminator(z.shape[1], self.discriminator_hidden)
        opt_g, opt_d = torch.optim.Adam(gen.parameters(), lr=self.lr), torch.optim.Adam(disc.parameters(), lr=self.lr)
        shuffle = torch.Generator().manual_seed(seed)
        best, best_state, bad, logs = np.inf, module_state(gen), 0, []
        for _ in range(self.epochs):
            for idx in torch.randperm(len(zt), generator=shuffle).split(self.batch_size):
                if len(idx) < 2:
                    continue
                self._adversarial_step(gen, disc, opt_g, opt_d, zt[idx], mt[idx])
            value = self._criterion(gen, zv, mv)
            logs.append(value)
            if value < best:
                best, best_state, bad = value, module_state(gen), 0
            elif (bad := bad + 1) >= self.patience:
                break
        gen.load_state_dict(best_state)
        return gen.eval(), {"criterion": logs, "best_criterion": float(best)}

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> dict[str, Any]:
        x, log_m = view.x[rows].astype(np.float64), np.log(view.mjj[rows])
        trend = mjj_trend(x, log_m) if self.detrend_mjj else identity_trend(x.shape[1])
        x = detrended(x, log_m, trend)
        mean, std = standardization(x)
        z = (x - mean) / std
        probe = self._generator()
        with torch_threads(training_threads(probe, torch.device("cpu"))):
            gen, history = self._train(z, np.log(view.mjj[rows]), self.seed + k)
        return {"generator": module_state(gen), "trend": trend, "mean": mean, "std": std,
                "best_criterion": history["best_criterion"], "epochs_run": len(history["criterion"])}

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        gen = self._generator()
        gen.load_state_dict(model["generator"])
        x = detrended(view.x[rows].astype(np.float64), np.log(view.mjj[rows]), model["trend"])
        z = torch.as_tensor((x - model["mean"]) / model["std"], dtype=torch.float32)
        with torch.no_grad():
            return reconstruction_distance(z, reconstruct(gen.eval(), z)).numpy().astype(np.float64)

