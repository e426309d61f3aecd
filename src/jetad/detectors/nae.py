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
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from jetad.data.sample import JetSample
from jetad.detectors.autoencoder import Autoencoder, build_autoencoder
from jetad.detectors.base import Progress, register
from jetad.detectors.batch_ot import DISTANCES, wasserstein_distance
from jetad.detectors.inputs import CMS_WNAE_FEATURES
from jetad.detectors.langevin import dense_layers, langevin_chain, latent_langevin
from jetad.detectors.training import TrainingDiverged

__all__ = ["ACTIVATIONS", "LR_SCHEDULES", "SAMPLINGS", "NormalizedAutoencoder", "WassersteinNAE"]

log = logging.getLogger(__name__)

SAMPLINGS = ("on_manifold", "x")
ACTIVATIONS = ("silu", "relu")
LR_SCHEDULES = ("none", "cosine", "plateau")
#: Added to the criterion of AE pre-training epochs, so that a fine-tuned epoch is always selected.
PRETRAIN_OFFSET = 1e6


def _check_choice(option: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{option} must be one of {choices}, got {value!r}")


def _padded(lower: torch.Tensor, upper: torch.Tensor, padding: float) -> tuple[torch.Tensor, torch.Tensor]:
    """[lower, upper] widened on both sides by `padding` times its width."""
    pad = padding * (upper - lower)
    return lower - pad, upper + pad


@register
class NormalizedAutoencoder(Autoencoder):
    """Normalized autoencoder (2105.05735, jets: 2206.14225): contrastive loss with Langevin negatives.

    Energy E(x) = the per-jet reconstruction error (also the score); the model density is exp(-E/T) / Omega,
    so the temperature T enters the sampler only, as in the reference code. The loss is
    E(pos) - E(neg) + gamma E(neg)^2 (+ l2_positive E(pos)^2), negatives detached: it raises the energy where
    the model puts mass but the data do not, e.g. where the AE reconstructs jets it never saw.

    Negatives ('on_manifold', the paper's recipe, section 4): a latent chain z <- clamp(z - latent_step_size
    dE(D(z))/dz / T + latent_noise N(0, 1), latent box) from replayed latents (probability `replay_ratio`) or
    fresh ones uniform in the latent box (the training batch's latents, widened by `bounds_padding`); decoded,
    D(z) lies on the decoder manifold, so the chain finds its low-energy regions that hold no data. Then
    `mcmc_steps` input-space steps x <- clamp(x - step_size dE/dx / T + noise N(0, 1), box) from D(z).
    'x': persistent contrastive divergence in input space only, chains from a buffer of past negatives or
    fresh N(0, 1) ('gaussian') / uniform-in-the-box ('uniform') starts.
    The input box: the training range per feature widened by `bounds_padding` times the range, or the fixed
    `sampling_box` (low, high) on the model inputs (the WNAE reference uses (-3, 3)).

    Why on-manifold by default: on quantile (unit-normal) inputs the former default ('x', noise 0.2,
    step_size / T = 0.4) moved its negatives by noise 0.57 per step against a drift of 0.12: they stayed at
    their N(0, 1) starts, which share the data's marginals, at an energy (0.19) below the data's (0.31), and
    E(pos) moved 0.309 -> 0.308 in 10 NAE epochs (docs/benchmarks/nae.md).

    Arguments:
        sampling: 'on_manifold' (latent chain, decoded, then input space) or 'x' (input space only).
        latent_steps, latent_step_size, latent_noise: the latent chain (reference: 10 steps, 0.2, 0.05 at T 1).
        mcmc_steps, step_size, noise, temperature: the input-space chain.
        gamma: weight of the E(negative)^2 regulariser (keeps the loss bounded below).
        l2_positive: weight of an E(positive)^2 regulariser.
        replay_ratio, buffer_size: persistent chains (reference: 0.95, 10k); the buffer holds latents
            ('on_manifold') or inputs ('x').
        initial_distribution: 'gaussian' or 'uniform' fresh input-space starts ('x').
        bounds_padding: the boxes (input and latent) = min/max per coordinate, widened by this fraction (>= 0).
        sampling_box: a fixed (low, high) input box instead of the data-derived one.
        activation: 'silu' or 'relu' in the dense coder (the WNAE reference uses ReLU).
        lr_schedule: 'none', 'cosine' (lr * (1 + cos(pi t / t_max)) / 2 over all steps) or 'plateau' (lr times
            `lr_factor` after `lr_patience` epochs without a relative improvement of 1e-3 of the criterion,
            the WNAE reference's ReduceLROnPlateau).
        pretrain_epochs: plain AE epochs before NAE training (2206.14225 pre-trains; input-space PCD from a
            random AE tends to diverge). Their criterion is the reconstruction error plus PRETRAIN_OFFSET.
        distance, sinkhorn_reg, n_projections: the positive-negative Wasserstein distance (see
            `wasserstein_distance`), logged as 'wasserstein' and used as the selection criterion.
        criterion_jets: at most this many validation jets enter the criterion (cost per epoch).
        divergence_threshold: a batch energy above this (or non-finite) stops training as diverged; the best
            epoch so far is kept and `history_['stopped']` says why.

    Logged per epoch (`history_['logs']`): positive_energy, negative_energy, start_energy (of the chains'
    input-space starts: the decoded latents, or the buffer / fresh starts), lr, wasserstein.
    """

    name: ClassVar[str] = "nae"
    params_before: ClassVar[dict[str, Any]] = {"sampling": "x"}  # NAE files from before the on-manifold chain
    optimizer: ClassVar[str] = "adamw"
    _criterion_needs_grad: ClassVar[bool] = True
    _detach_chain: ClassVar[bool] = True
    #: The loss is a function of E(pos) and E(neg) (else they are only logged, computed without a graph).
    _energies_in_loss: ClassVar[bool] = True

    def __init__(self, sampling: Literal["on_manifold", "x"] = "on_manifold", latent_steps: int = 10,
                 latent_step_size: float = 1e-3, latent_noise: float = 0.05,
                 mcmc_steps: int = 10, step_size: float = 2e-4, noise: float = 0.02,
                 temperature: float = 5e-4, gamma: float = 1.0, l2_positive: float = 0.0,
                 replay_ratio: float = 0.95, buffer_size: int = 10_000,
                 initial_distribution: Literal["gaussian", "uniform"] = "gaussian", bounds_padding: float = 0.1,
                 sampling_box: tuple[float, float] | None = None, activation: Literal["silu", "relu"] = "silu",
                 lr_schedule: Literal["none", "cosine", "plateau"] = "none", lr_factor: float = 0.8,
                 lr_patience: int = 20, pretrain_epochs: int = 10, distance: str = "emd",
                 sinkhorn_reg: float = 0.01, n_projections: int = 128, criterion_jets: int = 8192,
                 divergence_threshold: float = 1e6, **kwargs: Any):
        super().__init__(**kwargs)
        _check_choice("sampling", sampling, SAMPLINGS)
        _check_choice("distance", distance, DISTANCES)
        _check_choice("initial_distribution", initial_distribution, ("gaussian", "uniform"))
        _check_choice("activation", activation, ACTIVATIONS)
        _check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        if not bounds_padding >= 0:
            raise ValueError(f"bounds_padding must be >= 0 (a fraction of the range added on both sides), "
                             f"got {bounds_padding!r}")
        if sampling_box is not None:
            sampling_box = tuple(float(v) for v in sampling_box)  # type: ignore[assignment]
            if len(sampling_box) != 2 or not (math.isfinite(sampling_box[0]) and math.isfinite(sampling_box[1])
                                              and sampling_box[0] < sampling_box[1]):
                raise ValueError(f"sampling_box must be (low, high) with finite low < high, got {sampling_box!r}")
        if not 0 < lr_factor < 1:
            raise ValueError(f"lr_factor must lie in (0, 1), got {lr_factor!r}")
        self.sampling, self.latent_steps = sampling, latent_steps
        self.latent_step_size, self.latent_noise = latent_step_size, latent_noise
        self.mcmc_steps, self.step_size, self.noise = mcmc_steps, step_size, noise
        self.temperature, self.gamma, self.l2_positive = temperature, gamma, l2_positive
        self.replay_ratio, self.buffer_size = replay_ratio, buffer_size
        self.initial_distribution = initial_distribution
        self.bounds_padding, self.sampling_box, self.activation = bounds_padding, sampling_box, activation
        self.lr_schedule, self.lr_factor, self.lr_patience = lr_schedule, lr_factor, lr_patience
        self.pretrain_epochs = pretrain_epochs
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
        """The AE (SiLU or ReLU), plus the sampling boxes: buffers `lower`, `upper` (inputs, from the training
        split or `sampling_box`) and `z_lower`, `z_upper` (latents, updated from every training batch)."""
        model = build_autoencoder(input_shape, self.hidden, self.latent_dim, channels=self.channels)
        if self.activation == "relu":
            for coder in (model.encoder, model.decoder):
                for i, module in enumerate(coder):
                    if isinstance(module, torch.nn.SiLU):
                        coder[i] = torch.nn.ReLU()
        lower, upper = torch.zeros(input_shape), torch.zeros(input_shape)
        if self.sampling_box is not None:
            lower, upper = torch.full(input_shape, self.sampling_box[0]), torch.full(input_shape, self.sampling_box[1])
        elif getattr(self, "_bounds_sample", None) is not None:
            x = torch.as_tensor(self.spec_.transform(self._bounds_sample, "training sample"))
            lower, upper = _padded(x.amin(0), x.amax(0), self.bounds_padding)
        model.register_buffer("lower", lower)
        model.register_buffer("upper", upper)
        model.register_buffer("z_lower", torch.full((self.latent_dim,), -1.0))
        model.register_buffer("z_upper", torch.full((self.latent_dim,), 1.0))
        return model

    def _reset_chains(self) -> None:
        """Empty replay buffer, MCMC generator seeded from `seed`, step counter at 0, lr schedule at its start."""
        self.generator_ = torch.Generator().manual_seed(int(self.seed))
        self.buffer_, self.steps_ = torch.empty(0), 0
        self.lr_scale_, self._plateau = 1.0, (math.inf, 0)

    def _set_state(self, state: dict[str, Any]) -> None:
        latent_box = {"z_lower": torch.full((self.latent_dim,), -1.0), "z_upper": torch.full((self.latent_dim,), 1.0)}
        state = {**state, "model": {**latent_box, **state["model"]}}  # model files from before the latent chain
        super()._set_state(state)
        self._reset_chains()  # a loaded model can sample again (the buffer lives in training checkpoints only)

    def _pretraining(self) -> bool:
        """True during (and right after the last step of) the AE pre-training epochs."""
        return self.pretrain_epochs > 0 and self.steps_ <= self.pretrain_epochs * self.steps_per_epoch_

    # -- learning-rate schedule ---------------------------------------------------------------------------
    def lr_scale(self) -> float | None:
        """The lr factor at the current step (cosine) or after the last epoch's criterion (plateau); None for
        'none' (the shared training loop sets the optimizer's rate from it before every step)."""
        if self.lr_schedule == "none":
            return None
        if self.lr_schedule == "cosine":
            t_max = max(self.epochs * self.steps_per_epoch_, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(self.steps_ - 1, t_max) / t_max))
        return self.lr_scale_

    def _update_plateau(self, crit: float) -> None:
        """ReduceLROnPlateau (relative threshold 1e-3): after `lr_patience` bad epochs, lr_scale_ *= lr_factor."""
        best, bad = self._plateau
        best, bad = (crit, 0) if crit < best * (1 - 1e-3) else (best, bad + 1)
        if bad > self.lr_patience:
            self.lr_scale_, bad = self.lr_scale_ * self.lr_factor, 0
        self._plateau = (best, bad)

    # -- negatives ----------------------------------------------------------------------------------
    def _bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampling box (buffers of the network: they move with it between devices)."""
        lower, upper = self.model_.lower, self.model_.upper
        assert isinstance(lower, torch.Tensor) and isinstance(upper, torch.Tensor)
        return lower, upper

    def _latent_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        lower, upper = self.model_.z_lower, self.model_.z_upper
        assert isinstance(lower, torch.Tensor) and isinstance(upper, torch.Tensor)
        return lower, upper

    def _track_latent_box(self, batch: torch.Tensor) -> None:
        """The latent box follows the training batch's latents (min/max widened by `bounds_padding`)."""
        with torch.no_grad():
            z = self.encode(batch)
            z_lower, z_upper = self._latent_bounds()
            lower, upper = _padded(z.amin(0), z.amax(0), self.bounds_padding)
            z_lower.copy_(lower)
            z_upper.copy_(upper)

    def _starts(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Chain starts: replayed states with probability `replay_ratio`, fresh ones otherwise (latents for
        'on_manifold', inputs for 'x')."""
        latent = self.sampling == "on_manifold"
        lower, upper = self._latent_bounds() if latent else self._bounds()
        lower, upper = lower.cpu(), upper.cpu()
        n_replay = int((torch.rand(n, generator=gen) < self.replay_ratio).sum()) if len(self.buffer_) else 0
        if self.initial_distribution == "gaussian" and not latent:
            fresh = torch.randn(n - n_replay, *lower.shape, generator=gen)
        else:
            fresh = lower + (upper - lower) * torch.rand(n - n_replay, *lower.shape, generator=gen)
        replayed = self.buffer_[torch.randint(max(len(self.buffer_), 1), (n_replay,), generator=gen)]
        starts = torch.cat([replayed, fresh]) if n_replay else fresh
        return starts.clamp(lower, upper)

    def _input_starts(self, n: int, gen: torch.Generator, push: bool) -> torch.Tensor:
        """Starts of the input-space chain: decoded latent-chain samples ('on_manifold') or `_starts`."""
        start = self._starts(n, gen).to(self.device_)
        if self.sampling == "x":
            return start
        z_lower, z_upper = self._latent_bounds()
        noise = [self.latent_noise * torch.randn(start.shape, generator=gen).to(start)
                 for _ in range(self.latent_steps)]
        z = latent_langevin(lambda v: self.energy(self.model_.decoder(v)), start, noise,
                            self.latent_step_size / self.temperature, z_lower, z_upper)
        if push and torch.isfinite(z).all():
            self.buffer_ = torch.cat([z.cpu(), self.buffer_])[: self.buffer_size]
        lower, upper = self._bounds()
        with torch.no_grad():
            return self.model_.decoder(z).clamp(lower, upper)

    def sample_negatives(self, n: int, gen: torch.Generator, create_graph: bool, push: bool,
                         starts: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Langevin MCMC: x <- clamp(x - step_size dE/dx / T + noise N(0, 1)) from `_input_starts`; with
        `create_graph` the result depends differentiably on the network parameters through every input-space
        step (WNAE). `starts`, if given a list, receives the input-space starts (for logging).

        Dense SiLU / ReLU autoencoders run the chain with the gradient and its backward written out
        (`jetad.detectors.langevin`, same values to float32 rounding, 1.4x faster per training); other
        models use autograd (`create_graph`: a double backward through the chain)."""
        lower, upper = self._bounds()
        start = self._input_starts(n, gen, push)
        if starts is not None:
            starts.append(start)
        written_out = type(self).energy is Autoencoder.energy and self.mcmc_steps > 0
        layers = dense_layers(self.model_) if written_out else None
        if layers is not None:
            noise = [self.noise * torch.randn(start.shape, generator=gen).to(start) for _ in range(self.mcmc_steps)]
            x = langevin_chain(layers, start, noise, self.step_size / self.temperature, lower, upper, create_graph)
        else:
            x = start.detach().requires_grad_(True)
            for _ in range(self.mcmc_steps):
                (grad,) = torch.autograd.grad(self.energy(x).sum(), x, create_graph=create_graph)
                eta = torch.randn(x.shape, generator=gen).to(x)
                x = torch.clamp(x - self.step_size / self.temperature * grad + self.noise * eta, lower, upper)
                if not create_graph:
                    x = x.detach().requires_grad_(True)
        if push and self.sampling == "x" and torch.isfinite(x).all():
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
        self.steps_ += int(self.model_.training)
        lr = self.lr * (self.lr_scale() or 1.0)  # this step's
        if self.model_.training:
            if self._pretraining():  # plain AE; NaN keeps the NAE logs aligned with the epochs
                loss, _ = super().loss(batch)
                return loss, {"positive_energy": loss.item(), "negative_energy": math.nan,
                              "start_energy": math.nan, "wasserstein": math.nan, "lr": lr}
            self._track_latent_box(batch)
        with contextlib.nullcontext() if self._energies_in_loss else torch.no_grad():
            pos = self.energy(batch)
        chain_grad = not self._detach_chain
        starts: list[torch.Tensor] = []
        neg_x = self.sample_negatives(len(batch), self.generator_, create_graph=chain_grad, push=True, starts=starts)
        with contextlib.nullcontext() if self._energies_in_loss else torch.no_grad():
            neg = self.energy(neg_x)
        if self._diverged(pos, neg):
            return torch.tensor(math.nan), {}
        loss, w = self._objective(batch, neg_x, pos, neg)
        with torch.no_grad():
            start_energy = self.energy(starts[0]).mean().item()
        logs = {"positive_energy": pos.mean().item(), "negative_energy": neg.mean().item(),
                "start_energy": start_energy, "wasserstein": w, "lr": lr}
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
        crit = total / len(x_val)
        if self.lr_schedule == "plateau":
            self._update_plateau(crit)
        return crit

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
                "steps": self.steps_, "lr_scale": self.lr_scale_, "plateau": list(self._plateau)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.buffer_ = state["buffer"].cpu()
        self.generator_.set_state(state["generator"].cpu())
        self.steps_ = int(state["steps"])
        self.lr_scale_ = float(state.get("lr_scale", 1.0))
        best, bad = state.get("plateau", (math.inf, 0))
        self._plateau = (float(best), int(bad))


@register
class WassersteinNAE(NormalizedAutoencoder):
    """Wasserstein normalized autoencoder (CMS-PAS-MLG-24-002).

    The reconstruction error is an energy; negatives come from the same persistent Langevin chain, not
    detached: the loss is the Wasserstein distance between the training batch and the negatives,
    differentiated through every MCMC step. Default distance: exact EMD (squared-Euclidean cost, uniform
    weights), the reference's choice, solved as an assignment problem (equal batch sizes); 'sliced' is the
    cheap option for large batches (O(n log n)); 'sinkhorn' (log domain, envelope gradient) suits GPUs.
    No AE pre-training by default (the reference trains from scratch); gamma and l2_positive are unused.
    Defaults as before the NAE's on-manifold sampler: input-space PCD, noise 0.2, step_size / T = 0.4 (the
    reference example's drift on unit-normal inputs: noise 0.22, T 0.063); the reference's other choices are
    options: activation='relu', sampling_box=(-3, 3), lr_schedule='plateau' (lr_factor 0.8, lr_patience 20).
    """

    name: ClassVar[str] = "wnae"
    _detach_chain: ClassVar[bool] = False
    _energies_in_loss: ClassVar[bool] = False

    def __init__(self, pretrain_epochs: int = 0, sampling: Literal["on_manifold", "x"] = "x",
                 step_size: float = 0.02, noise: float = 0.2, temperature: float = 0.05, **kwargs: Any):
        super().__init__(pretrain_epochs=pretrain_epochs, sampling=sampling, step_size=step_size, noise=noise,
                         temperature=temperature, **kwargs)

    def _objective(self, batch, neg_x, pos, neg) -> tuple[torch.Tensor, float]:
        w = self._distance(batch, neg_x, self.generator_)
        return w, float(w.detach())
