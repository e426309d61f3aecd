"""NuRD: nuisance-randomized distillation, a classifier of background types whose representation ignores a nuisance.

Step 1 (`nurd_weights`): importance weights w = p(Y) / p(Y | Z) make the background label Y (QCD, W/Z, ...)
independent of the nuisance Z (jet mass by default). Step 2: a CNN classifier of Y with a `representation_dim`
penultimate layer r_X is trained on the weighted loss w * [CE + lambda * (T(r_X, Y, Z) - T(r_X, Y, Z'))], where the
critic T tells (r_X, Y, Z) from (r_X, Y, Z' = Z shuffled within Y) by binary CE, so its logit estimates the log
ratio log p(Z | r_X, Y) / p(Z | Y). The penalty is the critic's estimate of KL(joint || shuffled) + KL(shuffled ||
joint) >= I(r_X; Z | Y) under the weighted p_perp, zero iff r_X carries no nuisance information beyond Y; unlike
E_joint[T] alone it is unchanged when r_X moves to where T is low for every Z, so the classifier can only lower it
by removing information about Z.
Score: the Mahalanobis distance of r_X to each background class (Lee et al. 1807.03888), minimum over classes.

References: Puli et al., "Out-of-distribution generalization in the presence of nuisance-induced spurious
correlations", 2107.00520; the jet application (QCD + W/Z background, top as anomaly) in DESIGN.md.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from jetad.data.sample import JetSample, SchemaError
from jetad.detectors.base import Progress, TorchDetector, register
from jetad.detectors.nurd_weights import NuisanceWeights

__all__ = ["DCOR_SPACES", "PENALTIES", "LogRatioCritic", "NuRD", "NuRDClassifier", "shuffle_batch"]

PENALTIES = ("critic", "dcor")
#: What the 'dcor' penalty measures the dependence of on Z: r_X itself (Euclidean distances between jets), r_X
#: whitened with the batch's pooled within-class covariance (the metric of the Mahalanobis score), or the score.
DCOR_SPACES = ("representation", "whitened", "score")


class NuRDClassifier(nn.Module):
    """CNN (images, two conv + pool blocks as the image AE's encoder) or MLP (features) -> r_X -> linear class head.

    r_X ends in a batch normalization without affine parameters: standardized components whose scale the
    classifier cannot inflate to escape the critic (it grew |r_X| 15x when it could).
    """

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, representation_dim: int,
                 channels: tuple[int, ...], hidden: int):
        super().__init__()
        if len(input_shape) == 3:
            c1, c2 = channels
            s4 = -(-input_shape[-1] // 4)
            self.represent = nn.Sequential(
                nn.Conv2d(1, c1, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2, ceil_mode=True),
                nn.Conv2d(c1, c2, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2, ceil_mode=True),
                nn.Flatten(), nn.Linear(c2 * s4 * s4, hidden), nn.SiLU(), nn.Linear(hidden, representation_dim),
                nn.BatchNorm1d(representation_dim, affine=False),
            )
        elif len(input_shape) == 1:
            self.represent = nn.Sequential(nn.Linear(input_shape[0], hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                           nn.SiLU(), nn.Linear(hidden, representation_dim),
                                           nn.BatchNorm1d(representation_dim, affine=False))
        else:
            raise ValueError(f"NuRD takes jet images or feature vectors, got input shape {input_shape}")
        self.head = nn.Linear(representation_dim, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.represent(x)
        return self.head(r), r


class LogRatioCritic(nn.Module):
    """MLP (r_X, one-hot Y, Z) -> logit; trained to tell real triples from triples with Z shuffled over the batch.

    Under the nuisance-randomized weights Z is independent of Y, so its batch marginal is a sample of
    p_perp(Z) and the critic's log-ratio estimates the information r_X (and Y) carry about Z.
    """

    def __init__(self, representation_dim: int, n_classes: int, hidden: tuple[int, ...] = (256, 128, 68)):
        super().__init__()
        dims, layers = (representation_dim + n_classes + 1, *hidden), []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(dims[-1], 1))
        self.n_classes = n_classes

    def forward(self, r: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([r, F.one_hot(y, self.n_classes).to(r.dtype), z[:, None]], 1))[:, 0]


def shuffle_batch(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z permuted over the whole batch: samples of the marginal p(Z), independent of (r_X, Y).

    (A permutation within each class Y, kept with the original jet's weight, samples the unweighted p(Z | Y)
    instead and gives the critic a spurious target: 0.46 nats of fake information, 0.005 with this shuffle.)
    """
    perm = torch.randperm(len(z), generator=generator, device="cpu" if generator is not None else z.device)
    return z[perm.to(z.device)]


@register
class NuRD(TorchDetector):
    """Nuisance-randomized distillation (2107.00520); score = Mahalanobis distance of r_X to the background classes.

    Arguments:
        nuisance: Z, 'mass' (jets[:, 3], GeV) or any feature/event column name.
        classes: background labels (`sample.label` values) to learn; default: the distinct training labels (>= 2).
        weighting: 'binned' (per-class Z histograms, `n_bins` quantile bins) or 'classifier' (a small MLP Y <- Z).
        max_weight: clip of w = p(Y) / p(Y | Z).
        representation_dim: size of r_X, the penultimate layer (20 in the reference).
        lam: lambda, weight of the dependence penalty (0.001, the reference's best, for the critic).
        penalty: 'critic' (the reference: a critic's log-ratio estimate of the information r_X carries about Z)
            or 'dcor' (per-class distance correlation dCor^2(., Z) in each batch, weighted; no adversary).
        dcor_on: what the 'dcor' penalty decorrelates from Z (`DCOR_SPACES`): 'representation' (r_X, Euclidean
            distances: dominated by its high-variance directions), 'whitened' (r_X whitened by the batch's pooled
            within-class covariance, the metric the Mahalanobis score uses: every direction counts) or 'score'
            (the score itself, min over classes of the Mahalanobis distance to running class means / covariance).
        critic_hidden: critic MLP widths (256, 128, 68 in the reference).
        critic_every, critic_steps, critic_lr: the critic is refreshed every `critic_every` classifier steps with
            `critic_steps` Adam steps on the current batch (1 and 1: alternate updates, as in the reference).
        critic_refits: times per epoch the critic is re-fitted to convergence on the (detached) representations
            of the whole training sample (early-stopped on a held-out fifth, at most `critic_max_epochs` passes);
            0 = the reference's alternating updates only, which never converge (measured: the in-training critic
            at chance while a converged one separates real from shuffled mass at AUC 0.78).
        covariance: 'shared' (pooled within-class, as 1807.03888) or 'class' (one per class) for the distances.
        shrinkage: covariance -> (1 - s) covariance + s tr(covariance)/d * identity.
        score_kind: 'min' (minimum distance over classes) or 'class:<name>' (a label name or number).
    Model selection: the weighted validation cross-entropy plus lambda times the critic's information estimate on
    the validation jets.
    """

    name: ClassVar[str] = "nurd"
    model_: NuRDClassifier
    #: Running class means (K, d) and pooled covariance (d, d) of the training r_X (`dcor_on="score"`).
    _running: tuple[torch.Tensor, torch.Tensor] | None = None

    def __init__(self, nuisance: str = "mass", classes: tuple[int, ...] | None = None, weighting: str = "binned",
                 n_bins: int = 20, max_weight: float = 20.0, representation_dim: int = 20,
                 channels: tuple[int, int] = (8, 16), hidden: int = 64, lam: float = 0.001,
                 critic_hidden: tuple[int, ...] = (256, 128, 68), critic_every: int = 1, critic_steps: int = 1,
                 critic_lr: float = 1e-3, critic_refits: int = 2, critic_max_epochs: int = 20, penalty: str = "critic",
                 dcor_on: str = "representation", covariance: str = "shared", shrinkage: float = 0.01,
                 score_kind: str = "min", **kwargs: Any):
        super().__init__(**kwargs)
        if self.disco_lambda or self.reweight_observer or self.use_sample_weights:
            raise ValueError("NuRD removes the nuisance with its own weights and critic (nuisance=, lam=); "
                             "disco_lambda, reweight_observer and use_sample_weights do not apply")
        if penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
        if dcor_on not in DCOR_SPACES:
            raise ValueError(f"dcor_on must be one of {DCOR_SPACES}, got {dcor_on!r}")
        if covariance not in ("shared", "class"):
            raise ValueError(f"covariance must be 'shared' or 'class', got {covariance!r}")
        if score_kind != "min" and not score_kind.startswith("class:"):
            raise ValueError(f"score_kind must be 'min' or 'class:<name>', got {score_kind!r}")
        if critic_every < 1 or critic_steps < 0 or critic_refits < 0 or critic_max_epochs < 1:
            raise ValueError("need critic_every >= 1, critic_steps >= 0, critic_refits >= 0, critic_max_epochs >= 1")
        NuisanceWeights(method=weighting)  # validates the method name now, not at fit time
        self.nuisance, self.classes, self.weighting = nuisance, None if classes is None else tuple(classes), weighting
        self.n_bins, self.max_weight, self.representation_dim = n_bins, max_weight, representation_dim
        self.channels, self.hidden, self.lam = tuple(channels), hidden, lam
        self.critic_hidden, self.critic_every, self.critic_steps = tuple(critic_hidden), critic_every, critic_steps
        self.critic_lr, self.covariance, self.shrinkage, self.score_kind = critic_lr, covariance, shrinkage, score_kind
        self.critic_refits, self.critic_max_epochs, self.penalty = critic_refits, critic_max_epochs, penalty
        self.dcor_on = dcor_on

    def default_inputs(self) -> dict[str, Any]:
        return {"kind": "images", "image_size": 50}

    # -- labels and nuisance -----------------------------------------------------------------------
    def _targets(self, sample: JetSample, source: str) -> tuple[np.ndarray, np.ndarray]:
        """Class indices Y (0..K-1) and nuisance values Z for every jet; clear errors for unknown labels/NaN."""
        if sample.label is None or len(sample.label) != len(sample):
            raise SchemaError(f"{source}: labels missing; NuRD needs background-type labels (e.g. qcd 0, wz 2)")
        known = np.isin(sample.label, self.classes_)
        if not known.all():
            raise SchemaError(f"{source}: labels {sorted(set(sample.label[~known].tolist()))} are not among the "
                              f"background classes {self.classes_}; pass classes=... or drop those jets")
        y = np.searchsorted(self.classes_, sample.label)
        if self.nuisance == "mass":
            z = sample.jets[:, 3]
        elif self.nuisance in sample.features:
            z = sample.features[self.nuisance]
        elif self.nuisance in sample.event:
            z = sample.event[self.nuisance]
        else:
            raise SchemaError(f"{source}: nuisance {self.nuisance!r} is neither 'mass' nor a feature/event column "
                              f"(features: {sorted(sample.features)}, event: {sorted(sample.event)})")
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 1 or not np.isfinite(z).all():
            raise SchemaError(f"{source}: nuisance {self.nuisance!r} must be one finite number per jet")
        return y, z

    def _fit_inputs(self, train: JetSample) -> None:
        super()._fit_inputs(train)
        source = train.describe("training sample")
        found = np.unique(train.label)
        self.classes_ = np.array(sorted(self.classes) if self.classes is not None else found, dtype=np.int64)
        if len(self.classes_) < 2:
            raise SchemaError(f"{source}: NuRD needs at least two background classes in `label` (e.g. QCD and W/Z), "
                              f"found {found.tolist()}; concatenate samples of two processes")
        names = train.attrs.get("label_names", {}) or {}
        self.class_names_ = [str(names.get(str(c), c)) for c in self.classes_]

    # -- network -----------------------------------------------------------------------------------
    def build_model(self, input_shape: tuple[int, ...]) -> NuRDClassifier:
        return NuRDClassifier(tuple(input_shape), len(self.classes_), self.representation_dim, self.channels,
                              self.hidden)

    def _critic_loss(self, r: torch.Tensor, y: torch.Tensor, z: torch.Tensor, w: torch.Tensor,
                     z_shuffled: torch.Tensor) -> torch.Tensor:
        """Weighted binary cross-entropy of real (r, y, z) vs shuffled (r, y, z') triples."""
        real, fake = self.critic_(r, y, z), self.critic_(r, y, z_shuffled)
        return (w * (F.softplus(-real) + F.softplus(fake))).mean()

    def _information(self, r: torch.Tensor, y: torch.Tensor, z: torch.Tensor, w: torch.Tensor,
                     z_shuffled: torch.Tensor) -> torch.Tensor:
        """The critic's estimate of the information in (r, y) about z: E_joint - E_shuffled of the log-ratio."""
        return (w * (self.critic_(r, y, z) - self.critic_(r, y, z_shuffled))).mean()

    def _dcor(self, r: torch.Tensor, y: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Mean over classes of the weighted dCor^2(v, Z) within the class (0 = independent given Y), where v is
        r_X, the whitened r_X or the score (`dcor_on`)."""
        from jetad.detectors.disco import distance_correlation_sq

        v = r if self.dcor_on == "representation" else self._whitened(r, y) if self.dcor_on == "whitened" else \
            self._running_score(r)
        terms = [distance_correlation_sq(v[y == k], z[y == k], w[y == k]) for k in range(len(self.classes_))
                 if int((y == k).sum()) > 2]
        return torch.stack(terms).mean().to(r.dtype) if terms else r.sum() * 0

    def _whitened(self, r: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """r_X times the inverse Cholesky factor of the batch's pooled within-class covariance (held fixed in the
        gradient; shrunk by `max(shrinkage, 0.01)` so a batch smaller than r_X stays invertible)."""
        rd = r.detach().double()
        centred = rd.clone()
        for k in range(len(self.classes_)):
            rows = y == k
            if int(rows.sum()):
                centred[rows] = rd[rows] - rd[rows].mean(0)
        return r.double() @ _inverse_cholesky(centred.T @ centred / len(rd), max(self.shrinkage, 0.01)).T

    def _running_score(self, r: torch.Tensor) -> torch.Tensor:
        """The score of r_X (`score_kind`: the min over classes or one class's Mahalanobis distance) against
        running class means and pooled covariance (`_update_running_stats`): the penalty sees what a cut uses."""
        if self._running is None:
            raise RuntimeError("NuRD: the score penalty needs the running class statistics of a training step")
        means, cov = self._running
        diff = r.double()[:, None, :] - means[None]
        prec_half = _inverse_cholesky(cov, self.shrinkage)
        d = (diff @ prec_half.T).square().sum(-1).add(1e-12).sqrt()
        col = self._score_column()
        return d.min(1).values if col is None else d[:, col]

    def _update_running_stats(self, r: torch.Tensor, y: torch.Tensor, momentum: float = 0.1) -> None:
        """Exponential running class means and pooled within-class covariance of the training r_X (detached)."""
        rd, k = r.detach().double(), len(self.classes_)
        means = self._running[0].clone() if self._running is not None else torch.zeros(
            (k, rd.shape[1]), dtype=torch.float64, device=rd.device)
        centred = rd.clone()
        for c in range(k):
            rows = y == c
            if int(rows.sum()):
                batch_mean = rd[rows].mean(0)
                means[c] = batch_mean if self._running is None else (1 - momentum) * means[c] + momentum * batch_mean
                centred[rows] = rd[rows] - means[c]
        cov = centred.T @ centred / len(rd)
        self._running = (means, cov if self._running is None else (1 - momentum) * self._running[1] + momentum * cov)

    def _batch_represent(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """r_X as the penalty sees it in training: batch-normalized over random batches of `batch_size` jets.

        The eval-mode r_X (running statistics) is on another scale while training runs (measured: std 0.07-0.4
        against 1 in the first epoch), so a critic fitted on it misreads the training batches. The running
        statistics are restored afterwards.
        """
        buffers = {k: v.clone() for k, v in self.model_.state_dict().items() if "running" in k or "batches" in k}
        was_training = self.model_.training
        self.model_.train()
        perm = torch.randperm(len(x), generator=gen).to(x.device)
        chunks = torch.tensor_split(perm, max(1, round(len(x) / self.batch_size)))
        r = torch.empty((len(x), self.representation_dim), dtype=torch.float32, device=x.device)
        with torch.no_grad():
            for rows in chunks:
                r[rows] = self.model_.represent(x[rows])
        self.model_.load_state_dict(buffers, strict=False)
        self.model_.train(was_training)
        return r

    def _refit_critic(self, epoch_step: int) -> float:
        """Fit the critic to convergence on the current training representations; returns its held-out loss."""
        gen = torch.Generator().manual_seed(int(self.seed) * 100_003 + epoch_step)
        r = self._batch_represent(self._x, gen)
        n = len(r)
        perm = torch.randperm(n, generator=gen).to(r.device)
        held, fit = perm[: max(1, n // 5)], perm[max(1, n // 5):]
        z_shuffled = shuffle_batch(self._z, gen)
        best, best_state, bad = math.inf, None, 0
        for _ in range(self.critic_max_epochs):
            order = fit[torch.randperm(len(fit), generator=gen).to(r.device)]
            for i in range(0, len(order), 512):
                rows = order[i:i + 512]
                loss = self._critic_loss(r[rows], self._y[rows], self._z[rows], self._w[rows], z_shuffled[rows])
                self._critic_opt.zero_grad(set_to_none=True)
                loss.backward()
                self._critic_opt.step()
            with torch.no_grad():
                held_loss = float(self._critic_loss(r[held], self._y[held], self._z[held], self._w[held],
                                                    z_shuffled[held]))
            if held_loss < best - 1e-4:
                best, bad = held_loss, 0
                best_state = {k: v.detach().clone() for k, v in self.critic_.state_dict().items()}
            else:
                bad += 1
                if bad >= 2:
                    break
        if best_state is not None:
            self.critic_.load_state_dict(best_state)
        return best

    def _step(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """One classifier step on rows `idx`; the critic is re-fitted or refreshed first (its own optimizer)."""
        logs: dict[str, float] = {}
        per_epoch, refits = math.ceil(len(self._x) / self.batch_size), self.critic_refits
        pos = self._n_steps % per_epoch  # `refits` evenly spaced re-fits per epoch, the first before its first step
        critic = self.penalty == "critic"
        if critic and refits and (pos == 0 or pos * refits // per_epoch > (pos - 1) * refits // per_epoch):
            logs["critic_refit_loss"] = self._refit_critic(self._n_steps)
        x, y, z, w = self._x[idx], self._y[idx], self._z[idx], self._w[idx]
        logits, r = self.model_(x)
        if self.penalty == "dcor" and self.dcor_on == "score":
            self._update_running_stats(r, y)
        z_shuffled = shuffle_batch(z)
        if critic and self.critic_steps and self._n_steps % self.critic_every == 0:
            rd = r.detach()
            for _ in range(self.critic_steps):
                critic_loss = self._critic_loss(rd, y, z, w, z_shuffled)
                self._critic_opt.zero_grad(set_to_none=True)
                critic_loss.backward()
                self._critic_opt.step()
            logs["critic_loss"] = float(critic_loss.detach())
        self._n_steps += 1
        ce = (w * F.cross_entropy(logits, y, reduction="none")).mean()
        with torch.enable_grad() if self.lam else torch.no_grad():
            info = self._information(r, y, z, w, z_shuffled) if critic else self._dcor(r, y, z, w)
        loss = ce + self.lam * info if self.lam else ce
        return loss, logs | {"ce": float(ce.detach()), "info": float(info.detach())}

    def criterion(self, x_val) -> float:
        """Weighted validation cross-entropy plus lambda times the penalty on validation jets (background only,
        lower is better): the selected epoch is the one the penalized loss prefers. The critic reads the
        batch-normalized r_X it was trained on (`_batch_represent`), the dCor term the eval-mode r_X."""
        x, y, z, w, z_shuffled = x_val
        total, info = 0.0, 0.0
        self.critic_.eval()
        with torch.no_grad():
            r_batch = self._batch_represent(x, torch.Generator().manual_seed(int(self.seed) + 11)) \
                if self.lam and self.penalty == "critic" else None
            for i in range(0, len(x), 1024):
                sl = slice(i, i + 1024)
                logits, r = self.model_(x[sl])
                total += float((w[sl] * F.cross_entropy(logits, y[sl], reduction="none")).sum())
                if self.lam:
                    term = self._dcor(r, y[sl], z[sl], w[sl]) if r_batch is None else \
                        self._information(r_batch[sl], y[sl], z[sl], w[sl], z_shuffled[sl])
                    info += float(term) * len(r)
        self.critic_.train()
        return total / float(w.sum()) + self.lam * info / len(x)

    def extra_state(self) -> Any:
        return {"critic": self.critic_.state_dict(), "critic_opt": self._critic_opt.state_dict(),
                "n_steps": self._n_steps, "running": None if self._running is None else list(self._running)}

    def load_extra_state(self, state: Any) -> None:
        self.critic_.load_state_dict(state["critic"])
        self._critic_opt.load_state_dict(state["critic_opt"])
        self._n_steps = state["n_steps"]
        running = state.get("running")
        self._running = None if running is None else (running[0], running[1])

    def fit(self, train: JetSample, val: JetSample | None = None, progress: Progress | None = None,
            monitor: Callable[[Any], dict[str, float]] | None = None) -> NuRD:
        """Step 1 (weights), step 2 (classifier + critic, shared `train_loop`), then the class Gaussians of r_X."""
        from jetad.detectors.training import pick_device, train_loop

        if len(train) < 2:
            raise SchemaError(f"training sample has {len(train)} jets; need at least 2")
        train, val = self._split(train, val)
        self._fit_inputs(train)
        src_t, src_v = train.describe("training sample"), val.describe("validation sample")
        x_tr, x_va = self._model_inputs(train, src_t), self._model_inputs(val, src_v)  # images scaled to O(1)
        (y_tr, z_tr), (y_va, z_va) = self._targets(train, src_t), self._targets(val, src_v)
        k = len(self.classes_)
        self.weighting_ = NuisanceWeights(self.weighting, self.n_bins, self.max_weight, self.seed).fit(y_tr, z_tr, k)
        w_tr, w_va = self.weighting_.weights(y_tr, z_tr), self.weighting_.weights(y_va, z_va)
        dep = self.weighting_.dependence
        self.weighting_report_ = {"train": {"before": dep(y_tr, z_tr), "after": dep(y_tr, z_tr, w_tr)},
                                  "val": {"before": dep(y_va, z_va), "after": dep(y_va, z_va, w_va)},
                                  "max_weight": float(w_tr.max()), "classes": self.class_names_}
        self.input_shape_, self.device_ = tuple(x_tr.shape[1:]), pick_device(self.device)
        zs = self.weighting_.state
        dev = self.device_

        def t(a, dtype=torch.float32):
            return torch.as_tensor(np.asarray(a), dtype=dtype, device=dev)

        self._x, self._y, self._w = t(x_tr), t(y_tr, torch.int64), t(w_tr)
        self._z = t((z_tr - zs["z_mean"]) / zs["z_std"])
        torch.manual_seed(self.seed)
        self.model_ = self.build_model(self.spec_.shape).to(dev)
        self.critic_ = LogRatioCritic(self.representation_dim, k, self.critic_hidden).to(dev)
        self._critic_opt = torch.optim.Adam(self.critic_.parameters(), lr=self.critic_lr)
        self._n_steps, self._running = 0, None
        z_va_t = t((z_va - zs["z_mean"]) / zs["z_std"])
        val_t = (t(x_va), t(y_va, torch.int64), z_va_t, t(w_va),
                 shuffle_batch(z_va_t, torch.Generator().manual_seed(int(self.seed) + 7)))
        fingerprint = hashlib.sha256(repr((self.get_params(), x_tr.shape, float(x_tr.sum()), y_tr.tolist(),
                                           float(z_tr.sum()))).encode()).hexdigest()
        try:
            history = train_loop(
                self.model_, self._step, lambda: self.criterion(val_t), np.arange(len(x_tr)),
                epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                patience=self.patience, seed=self.seed, device=dev, checkpoint=self.checkpoint,
                fingerprint=fingerprint, extra_state=(self.extra_state, self.load_extra_state),
                monitor=(lambda: monitor(self)) if monitor else None, progress=progress, optimizer=self.optimizer)
            self.n_critic_parameters_ = sum(p.numel() for p in self.critic_.parameters())
            self._fit_class_gaussians(self._represent(self._x))
        finally:
            self._x = self._y = self._z = self._w = None
        self.history_ = history.to_dict() | {"weighting": self.weighting_report_}
        return self

    # -- Mahalanobis score -------------------------------------------------------------------------
    def _represent(self, x: torch.Tensor) -> torch.Tensor:
        self.model_.eval()
        with torch.no_grad():
            return torch.cat([self.model_.represent(x[i:i + 4096]) for i in range(0, len(x), 4096)])

    def _fit_class_gaussians(self, r: torch.Tensor) -> None:
        """Class means and (shrunk) covariances of the training representations -> precisions."""
        rep, y = r.double().cpu().numpy(), self._y.cpu().numpy()
        d = rep.shape[1]
        means = np.stack([rep[y == k].mean(0) for k in range(len(self.classes_))])
        covs = np.stack([np.cov(rep[y == k].T, bias=True).reshape(d, d) for k in range(len(self.classes_))])
        if self.covariance == "shared":
            frac = np.bincount(y, minlength=len(self.classes_)) / len(y)
            covs = np.repeat(np.tensordot(frac, covs, 1)[None], len(self.classes_), 0)
        eye = np.eye(d)
        covs = np.stack([(1 - self.shrinkage) * c + self.shrinkage * np.trace(c) / d * eye + 1e-9 * eye for c in covs])
        self.means_, self.precisions_ = means, np.linalg.inv(covs)

    def _distances_t(self, r: torch.Tensor) -> torch.Tensor:
        diff = r.double()[:, None, :] - torch.as_tensor(self.means_, device=r.device)[None]  # (B, K, d)
        prec = torch.as_tensor(self.precisions_, device=r.device)
        return torch.einsum("bki,kij,bkj->bk", diff, prec, diff).clamp_min(0).sqrt()

    def distances(self, sample: JetSample, batch_size: int = 4096) -> np.ndarray:
        """(N, K) Mahalanobis distances of r_X to each background class (order: `class_names_`)."""
        x = self._inputs_for(sample, sample.describe())
        r = self._represent(torch.as_tensor(x, device=self.device_))
        return self._distances_t(r).cpu().numpy()

    def _score_column(self) -> int | None:
        if self.score_kind == "min":
            return None
        want = self.score_kind.split(":", 1)[1]
        for i, (c, n) in enumerate(zip(self.classes_, self.class_names_, strict=True)):
            if want in (n, str(c)):
                return i
        raise ValueError(f"score_kind {self.score_kind!r}: no class {want!r} among {self.class_names_}")

    def score_module(self) -> nn.Module:
        """The ONNX-exportable score: r_X, then the Mahalanobis distances to the class means."""
        return NuRDScore(self)

    def score_batch(self, batch):
        d = self._distances_t(self.model_.represent(batch))
        col = self._score_column()
        return d.min(1).values if col is None else d[:, col]

    # -- persistence -------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        w = self.weighting_
        return super()._get_state() | {
            "classes": self.classes_, "class_names": self.class_names_, "means": self.means_,
            "precisions": self.precisions_, "weighting_report": self.weighting_report_,
            "weighting": {"method": w.method, "n_bins": w.n_bins, "max_weight": w.max_weight, "seed": w.seed,
                          "state": w.state},
            "n_critic_parameters": self.n_critic_parameters_,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.classes_, self.class_names_ = np.asarray(state["classes"]), list(state["class_names"])
        super()._set_state(state)
        self.means_, self.precisions_ = state["means"], state["precisions"]
        self.weighting_report_, self.n_critic_parameters_ = state["weighting_report"], state["n_critic_parameters"]
        self.weighting_ = NuisanceWeights(**state["weighting"])


def _inverse_cholesky(cov: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """L^-1 for the shrunk covariance (1 - s) C + s tr(C)/d I = L L^T: x @ L^-T has unit covariance."""
    d = cov.shape[0]
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    shrunk = (1 - shrinkage) * cov + (shrinkage * torch.trace(cov) / d + 1e-9) * eye
    return torch.linalg.solve_triangular(torch.linalg.cholesky(shrunk), eye, upper=False)


class NuRDScore(nn.Module):
    """NuRD: r_X from the CNN/MLP, Mahalanobis distance to each background class (float64), min or one class."""

    means: torch.Tensor  # (K, d) buffer
    precisions: torch.Tensor  # (K, d, d) buffer

    def __init__(self, det: NuRD):
        super().__init__()
        self.represent = det.model_.represent
        self.register_buffer("means", torch.as_tensor(np.asarray(det.means_, dtype=np.float64)))  # (K, d)
        self.register_buffer("precisions", torch.as_tensor(np.asarray(det.precisions_, dtype=np.float64)))
        self.column = det._score_column()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = self.represent(x).double()[:, None, :] - self.means[None]  # (B, K, d)
        d2 = ((diff[:, :, None, :] @ self.precisions[None])[:, :, 0, :] * diff).sum(-1)  # (B, K)
        d = d2.clamp_min(0).sqrt()
        return d.min(1).values if self.column is None else d[:, self.column]
