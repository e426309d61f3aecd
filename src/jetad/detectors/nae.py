"""Normalized autoencoders: the reconstruction error is an energy, normalized by Langevin-MCMC negatives.

NAE (2105.05735; for jets 2206.14225): p(x) = exp(-E(x)/T) / Omega with E = the autoencoder's reconstruction
error; the loss E(positive) - E(negative) + gamma E(negative)^2 raises the energy where the model puts mass
but the data do not. WNAE (CMS-PAS-MLG-24-002): the loss is the Wasserstein distance between training jets and
negatives, differentiated through the whole chain; the same distance on validation jets is the signal-agnostic
model-selection criterion. Score = E(x), higher = more anomalous.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from jetad.data.sample import JetSample
from jetad.detectors.autoencoder import Autoencoder, build_autoencoder
from jetad.detectors.base import Progress, register
from jetad.detectors.inputs import CMS_WNAE_FEATURES
from jetad.detectors.langevin import dense_layers, langevin_chain
from jetad.detectors.training import TrainingDiverged

__all__ = ["DISTANCES", "NormalizedAutoencoder", "WassersteinNAE", "wasserstein_distance"]

log = logging.getLogger(__name__)

DISTANCES = ("emd", "sinkhorn", "sliced")
#: Added to the criterion of AE pre-training epochs, so that a fine-tuned epoch is always selected.
PRETRAIN_OFFSET = 1e6


def wasserstein_distance(x: torch.Tensor, y: torch.Tensor, kind: str = "emd", *, sinkhorn_reg: float = 0.01,
                         sinkhorn_iter: int = 100, n_projections: int = 128,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Optimal-transport cost between two equal-weight point clouds, squared-Euclidean ground cost (W_2^2).

    'emd': exact; for equal sizes an optimal plan of uniform weights is a permutation / n (Birkhoff-von
    Neumann), so it is the assignment problem (scipy's `linear_sum_assignment`, shortest augmenting paths,
    Crouse 2016), the same value and gradient as POT's `ot.emd2` (the WNAE reference, used for unequal
    sizes) at a fraction of its time (docs/benchmarks/ot.md); 'sinkhorn': entropic plan (log domain,
    epsilon = `sinkhorn_reg` times the mean cost), transport cost <plan, C> with the envelope gradient
    (the plan, as `ot.emd2`), slightly above the exact value; 'sliced': the mean of 1D W_2^2
    over `n_projections` random directions (O(n log n); about W_2^2 / dim). All differentiable in x and y.
    """
    x, y = x.flatten(1), y.flatten(1)
    if kind == "sliced":
        theta = torch.randn(x.shape[1], n_projections, generator=generator).to(x)
        theta = theta / theta.norm(dim=0, keepdim=True)
        px, py = (x @ theta).sort(0).values, (y @ theta).sort(0).values
        return ((px - py) ** 2).mean()
    cost = torch.cdist(x, y) ** 2
    if kind == "emd" and len(x) == len(y):
        return _assignment_cost(cost)
    if kind == "emd":
        import ot

        w = torch.full((len(x),), 1.0 / len(x), dtype=x.dtype, device=x.device)
        return ot.emd2(w, torch.full((len(y),), 1.0 / len(y), dtype=y.dtype, device=y.device), cost,
                       numItermax=1_000_000)
    if kind == "sinkhorn":
        eps = sinkhorn_reg * float(cost.detach().mean().clamp_min(1e-12))
        log_a = torch.full((len(x),), -math.log(len(x)), dtype=x.dtype, device=x.device)
        log_b = torch.full((len(y),), -math.log(len(y)), dtype=y.dtype, device=y.device)
        c = cost.detach()
        f, g = torch.zeros_like(log_a), torch.zeros_like(log_b)
        for _ in range(sinkhorn_iter):  # dual potentials, log domain; the plan is a b exp((f + g - C) / eps)
            f_new = -eps * torch.logsumexp(log_b[None, :] + (g[None, :] - c) / eps, dim=1)
            converged = float((f_new - f).abs().max()) < 1e-3 * eps  # marginals within 0.1%
            f = f_new
            if converged:
                break
            g = -eps * torch.logsumexp(log_a[:, None] + (f[:, None] - c) / eps, dim=0)
        plan = torch.exp(log_a[:, None] + log_b[None, :] + (f[:, None] + g[None, :] - c) / eps)
        return (plan * cost).sum()  # envelope gradient: d/dC = plan, no back-propagation through the loop
    raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")


def _assignment_cost(cost: torch.Tensor) -> torch.Tensor:
    """Exact OT cost of two equal-size uniform clouds, mean_i C[i, sigma(i)] for the optimal permutation.

    Differentiable in the cost: the gradient is the plan (1/n on the permutation), as for `ot.emd2`.
    """
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost.detach().to("cpu", torch.float64).numpy())
    index = torch.as_tensor(rows * cost.shape[1] + cols, device=cost.device)
    return cost.flatten()[index].mean()


@register
class NormalizedAutoencoder(Autoencoder):
    """Normalized autoencoder (2105.05735, jets: 2206.14225): contrastive loss with Langevin negatives.

    Energy E(x) = the per-jet reconstruction error (also the score); the model density is exp(-E/T) / Omega,
    so the temperature T enters the sampler only, as in the reference code. Negatives: persistent
    contrastive divergence in input space. A fraction `replay_ratio` of the chains starts from a replay
    buffer of past negatives, the rest from N(0, 1) ('gaussian') or uniform in the box ('uniform'); each
    step is x <- x - step_size dE/dx / T + noise N(0, 1), clamped to the box: the training range per
    feature, widened by `bounds_padding` times the range. On quantile (unit-normal) inputs the default drift
    coefficient step_size / T = 0.4 is that of the reference example (noise 0.22, step noise^2 / 2, T 0.063).
    The loss is E(pos) - E(neg) + gamma E(neg)^2 (+ l2_positive E(pos)^2), negatives detached.

    Arguments:
        mcmc_steps, step_size, noise, temperature: the Langevin chain (reference: 10-20 steps,
            noise 0.05-0.2, step_size = noise^2 / 2, T 0.05-1).
        gamma: weight of the E(negative)^2 regulariser (keeps the loss bounded below).
        l2_positive: weight of an E(positive)^2 regulariser.
        replay_ratio, buffer_size: persistent chains (reference: 0.95, 10k).
        initial_distribution: 'gaussian' or 'uniform' fresh starts.
        bounds_padding: MCMC box = training min/max per feature, widened by this fraction of the range.
        pretrain_epochs: plain AE epochs before NAE training (2206.14225 pre-trains; input-space PCD from a
            random AE tends to diverge). Their criterion is the reconstruction error plus PRETRAIN_OFFSET.
        distance, sinkhorn_reg, n_projections: the positive-negative Wasserstein distance (see
            `wasserstein_distance`), logged as 'wasserstein' and used as the selection criterion.
        criterion_jets: at most this many validation jets enter the criterion (cost per epoch).
        divergence_threshold: a batch energy above this (or non-finite) stops training as diverged; the best
            epoch so far is kept and `history_['stopped']` says why.
    """

    name: ClassVar[str] = "nae"
    optimizer: ClassVar[str] = "adamw"
    _criterion_needs_grad: ClassVar[bool] = True
    _detach_chain: ClassVar[bool] = True
    #: The loss is a function of E(pos) and E(neg) (else they are only logged, computed without a graph).
    _energies_in_loss: ClassVar[bool] = True

    def __init__(self, mcmc_steps: int = 10, step_size: float = 0.02, noise: float = 0.2,
                 temperature: float = 0.05, gamma: float = 1.0, l2_positive: float = 0.0,
                 replay_ratio: float = 0.95, buffer_size: int = 10_000,
                 initial_distribution: str = "gaussian", bounds_padding: float = 0.1,
                 pretrain_epochs: int = 10, distance: str = "emd",
                 sinkhorn_reg: float = 0.01, n_projections: int = 128, criterion_jets: int = 8192,
                 divergence_threshold: float = 1e6, **kwargs: Any):
        super().__init__(**kwargs)
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if initial_distribution not in ("gaussian", "uniform"):
            raise ValueError(f"initial_distribution: gaussian or uniform, not {initial_distribution!r}")
        self.mcmc_steps, self.step_size, self.noise = mcmc_steps, step_size, noise
        self.temperature, self.gamma, self.l2_positive = temperature, gamma, l2_positive
        self.replay_ratio, self.buffer_size = replay_ratio, buffer_size
        self.initial_distribution = initial_distribution
        self.bounds_padding, self.pretrain_epochs = bounds_padding, pretrain_epochs
        self.distance, self.sinkhorn_reg, self.n_projections = distance, sinkhorn_reg, n_projections
        self.criterion_jets, self.divergence_threshold = criterion_jets, divergence_threshold

    def default_inputs(self) -> dict[str, Any]:
        return {"kind": "features", "features": CMS_WNAE_FEATURES, "scaling": "quantile"}

    # -- training ------------------------------------------------------------------------------------
    def fit(self, train: JetSample, val: JetSample | None = None, progress: Progress | None = None,
            monitor: Callable[[Any], dict[str, float]] | None = None) -> NormalizedAutoencoder:
        """As `TorchDetector.fit`; a diverged training keeps its best epoch, history_['stopped'] says why."""
        self._bounds_sample = self._split(train, val)[0]
        self.steps_per_epoch_ = math.ceil(len(self._bounds_sample) / self.batch_size)
        self._reset_chains()
        self.divergence_ = ""
        try:
            super().fit(train, val, monitor=monitor, progress=progress)
        except TrainingDiverged as err:
            raise TrainingDiverged(f"{type(self).__name__}: {err}; {self.divergence_}") from err
        finally:
            del self._bounds_sample
        if self.divergence_:
            self.history_["stopped"] += f": {self.divergence_}; kept epoch {self.history_['best_epoch']}"
        return self

    def build_model(self, input_shape):
        """The AE, plus the MCMC box (buffers `lower`, `upper`) learned from the training split."""
        model = build_autoencoder(input_shape, self.hidden, self.latent_dim, channels=self.channels)
        lower, upper = torch.zeros(input_shape), torch.zeros(input_shape)
        if getattr(self, "_bounds_sample", None) is not None:
            x = torch.as_tensor(self.spec_.transform(self._bounds_sample, "training sample"))
            lower, upper = x.amin(0), x.amax(0)
            pad = self.bounds_padding * (upper - lower)
            lower, upper = lower - pad, upper + pad
        model.register_buffer("lower", lower)
        model.register_buffer("upper", upper)
        return model

    def _reset_chains(self) -> None:
        """Empty replay buffer, MCMC generator seeded from `seed`, step counter at 0."""
        self.generator_ = torch.Generator().manual_seed(int(self.seed))
        self.buffer_, self.steps_ = torch.empty(0), 0

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self._reset_chains()  # a loaded model can sample again (the buffer lives in training checkpoints only)

    def _pretraining(self) -> bool:
        """True during (and right after the last step of) the AE pre-training epochs."""
        return self.pretrain_epochs > 0 and self.steps_ <= self.pretrain_epochs * self.steps_per_epoch_

    def _bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampling box (buffers of the network: they move with it between devices)."""
        lower, upper = self.model_.lower, self.model_.upper
        assert isinstance(lower, torch.Tensor) and isinstance(upper, torch.Tensor)
        return lower, upper

    def _starts(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Chain starts: replayed negatives with probability `replay_ratio`, fresh ones otherwise."""
        lower, upper = self._bounds()
        lower, upper = lower.cpu(), upper.cpu()
        n_replay = int((torch.rand(n, generator=gen) < self.replay_ratio).sum()) if len(self.buffer_) else 0
        if self.initial_distribution == "gaussian":
            fresh = torch.randn(n - n_replay, *lower.shape, generator=gen)
        else:
            fresh = lower + (upper - lower) * torch.rand(n - n_replay, *lower.shape, generator=gen)
        replayed = self.buffer_[torch.randint(max(len(self.buffer_), 1), (n_replay,), generator=gen)]
        starts = torch.cat([replayed, fresh]) if n_replay else fresh
        return starts.clamp(lower, upper)

    def sample_negatives(self, n: int, gen: torch.Generator, create_graph: bool, push: bool) -> torch.Tensor:
        """Langevin MCMC: x <- clamp(x - step_size dE/dx / T + noise N(0, 1)); with `create_graph` the result
        depends differentiably on the network parameters through every step (WNAE).

        Dense autoencoders run the chain with the gradient and its backward written out
        (`jetad.detectors.langevin`, same values to float32 rounding, about 3x faster on the CPU); other
        models use autograd (`create_graph`: a double backward through the chain)."""
        lower, upper = self._bounds()
        written_out = type(self).energy is Autoencoder.energy and self.mcmc_steps > 0
        layers = dense_layers(self.model_) if written_out else None
        if layers is not None:
            start = self._starts(n, gen).to(self.device_)
            noise = [self.noise * torch.randn(start.shape, generator=gen).to(start) for _ in range(self.mcmc_steps)]
            x = langevin_chain(layers, start, noise, self.step_size / self.temperature, lower, upper, create_graph)
        else:
            x = self._starts(n, gen).to(self.device_).requires_grad_(True)
            for _ in range(self.mcmc_steps):
                (grad,) = torch.autograd.grad(self.energy(x).sum(), x, create_graph=create_graph)
                eta = torch.randn(x.shape, generator=gen).to(x)
                x = torch.clamp(x - self.step_size / self.temperature * grad + self.noise * eta, lower, upper)
                if not create_graph:
                    x = x.detach().requires_grad_(True)
        if push and torch.isfinite(x).all():
            self.buffer_ = torch.cat([x.detach().cpu(), self.buffer_])[: self.buffer_size]
        return x if create_graph else x.detach()

    def _distance(self, pos: torch.Tensor, neg: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return wasserstein_distance(pos, neg, self.distance, sinkhorn_reg=self.sinkhorn_reg,
                                    n_projections=self.n_projections, generator=gen)

    def _diverged(self, *energies: torch.Tensor) -> bool:
        """Energies non-finite or beyond `divergence_threshold` (the NAE run-away); remembers why."""
        for what, e in zip(("positive", "negative"), energies, strict=False):
            worst = float(e.detach().abs().max())
            if not math.isfinite(worst) or worst > self.divergence_threshold:
                self.divergence_ = (f"{what} energy {worst:.3g} beyond divergence_threshold "
                                    f"{self.divergence_threshold:.3g} (lower lr/step_size, raise gamma)")
                log.warning("%s diverged: %s", type(self).__name__, self.divergence_)
                return True
        return False

    def loss(self, batch):
        if self.model_.training:
            self.steps_ += 1
            if self._pretraining():  # plain AE; NaN keeps the NAE logs aligned with the epochs
                loss, _ = super().loss(batch)
                return loss, {"positive_energy": loss.item(), "negative_energy": math.nan, "wasserstein": math.nan}
        with contextlib.nullcontext() if self._energies_in_loss else torch.no_grad():
            pos = self.energy(batch)
        chain_grad = not self._detach_chain
        neg_x = self.sample_negatives(len(batch), self.generator_, create_graph=chain_grad, push=True)
        with contextlib.nullcontext() if self._energies_in_loss else torch.no_grad():
            neg = self.energy(neg_x)
        if self._diverged(pos, neg):
            return torch.tensor(math.nan), {}
        loss, w = self._objective(batch, neg_x, pos, neg)
        logs = {"positive_energy": pos.mean().item(), "negative_energy": neg.mean().item(), "wasserstein": w}
        return loss, logs

    def _objective(self, batch, neg_x, pos, neg) -> tuple[torch.Tensor, float]:
        """NAE: E+ - E- + gamma E-^2 (+ l2 E+^2); the distance is only logged."""
        with torch.no_grad():
            w = float(self._distance(batch, neg_x, self.generator_))
        loss = pos.mean() - neg.mean() + self.gamma * (neg**2).mean() + self.l2_positive * (pos**2).mean()
        return loss, w

    def criterion(self, x_val) -> float:
        """Positive-negative Wasserstein distance on validation jets (background only; lower is better).

        Chains use their own generator, re-seeded each epoch, and do not feed the replay buffer, so epochs
        are compared on the same random numbers."""
        x_val = x_val[: self.criterion_jets]
        if self._pretraining():
            with torch.no_grad():
                return PRETRAIN_OFFSET + float(self.energy(x_val).mean())
        gen = torch.Generator().manual_seed(int(self.seed) + 1)
        total = 0.0
        for i in range(0, len(x_val), self.batch_size):
            pos = x_val[i:i + self.batch_size]
            with torch.enable_grad():
                neg = self.sample_negatives(len(pos), gen, create_graph=False, push=False)
            with torch.no_grad():
                total += float(self._distance(pos, neg, gen)) * len(pos)
        return total / len(x_val)

    def score(self, sample: JetSample, batch_size: int = 8192) -> np.ndarray:
        """Energy (reconstruction error) per jet; higher = more anomalous. Never returns NaN silently."""
        s = super().score(sample, batch_size)
        if not np.isfinite(s).all():
            raise RuntimeError(f"{type(self).__name__}: {int((~np.isfinite(s)).sum())} non-finite scores; "
                               "the model diverged, retrain with a lower lr or step_size")
        return s

    # -- resumable state -----------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer_.clone(), "generator": self.generator_.get_state(),
                "steps": self.steps_}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.buffer_ = state["buffer"].cpu()
        self.generator_.set_state(state["generator"].cpu())
        self.steps_ = int(state["steps"])


@register
class WassersteinNAE(NormalizedAutoencoder):
    """Wasserstein normalized autoencoder (CMS-PAS-MLG-24-002).

    The reconstruction error is an energy; negatives come from the same persistent Langevin chain, not
    detached: the loss is the Wasserstein distance between the training batch and the negatives,
    differentiated through every MCMC step. Default distance: exact EMD (squared-Euclidean cost, uniform
    weights), the reference's choice, solved as an assignment problem (equal batch sizes); 'sliced' is the
    cheap option for large batches (O(n log n)); 'sinkhorn' (log domain, envelope gradient) suits GPUs.
    No AE pre-training by default (the reference trains from scratch); gamma and l2_positive are unused.
    """

    name: ClassVar[str] = "wnae"
    _detach_chain: ClassVar[bool] = False
    _energies_in_loss: ClassVar[bool] = False

    def __init__(self, pretrain_epochs: int = 0, **kwargs: Any):
        super().__init__(pretrain_epochs=pretrain_epochs, **kwargs)

    def _objective(self, batch, neg_x, pos, neg) -> tuple[torch.Tensor, float]:
        w = self._distance(batch, neg_x, self.generator_)
        return w, float(w.detach())
