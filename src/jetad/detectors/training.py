"""The one training loop every neural detector uses: mini-batches, early stopping on a background-only
criterion, best-checkpoint selection, resumable checkpoints, divergence detection, seeded shuffling.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jetad.data.model_file import read_model_payload, write_model_payload
from jetad.data.sample import SchemaError
from jetad.detectors.estimator import Progress

__all__ = ["SMALL_MODEL_PARAMETERS", "History", "TrainingDiverged", "pick_device", "torch_threads", "train_loop",
           "training_threads"]

log = logging.getLogger(__name__)

Step = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


class TrainingDiverged(RuntimeError):
    """The loss or the selection criterion became non-finite (a known NAE failure mode)."""


@dataclass
class History:
    """Per-epoch logs (lists of floats by key), the best epoch, and how training ended."""

    logs: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = -1
    best_criterion: float = math.inf
    stopped: str = ""

    def append(self, entry: dict[str, float]) -> None:
        for k, v in entry.items():
            self.logs.setdefault(k, []).append(float(v))

    def to_dict(self) -> dict[str, Any]:
        return {"logs": self.logs, "best_epoch": self.best_epoch, "best_criterion": self.best_criterion,
                "stopped": self.stopped}


def pick_device(device: str = "auto") -> torch.device:
    """'auto' uses a CUDA GPU when one is present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: Networks with fewer parameters train on one CPU thread by default (`training_threads`).
SMALL_MODEL_PARAMETERS = 100_000


def training_threads(model: torch.nn.Module, device: torch.device, threads: int | str | None = "auto") -> int | None:
    """torch intra-op threads for training `model` on `device`: None leaves torch's setting alone.

    'auto': 1 on the CPU for models under SMALL_MODEL_PARAMETERS, else unchanged. A small network's operations
    at batch sizes of hundreds take 2-20 us each, as long as an OpenMP fork/join, so extra threads gain
    nothing, and on cores shared with other jobs a worker spinning at a barrier waits for a descheduled peer:
    measured here (docs/benchmarks/ot.md), WNAE training on torch's default 2 threads took the wall time of
    1 thread at twice the CPU on a quiet machine, and ran 4-6x slower on a loaded one. Deterministic: the
    choice depends only on the model and the device, never on the load.
    """
    if threads == "auto":
        small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS
        return 1 if device.type == "cpu" and small else None
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads: 'auto', None or a positive int, not {threads!r}")
    return threads


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `n` inside the block and restored after (None: unchanged).

    The setting is process-wide: trainings run concurrently in threads of one process share it."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _read_checkpoint(ckpt: Path) -> dict[str, Any] | None:
    """A checkpoint's payload; None (with a warning, the file set aside as `*.corrupt`) if it is unreadable.

    Read with the safe model-file reader, so a planted checkpoint cannot run code; a truncated one (a job
    killed while the file system lost the rename, a disk full) must not stop training for good.
    """
    if not ckpt.exists():
        return None
    try:
        saved = read_model_payload(ckpt)
        for key in ("fingerprint", "epoch", "model", "optimizer", "generator", "torch_rng", "history", "best_state",
                    "bad_epochs"):
            if key not in saved:
                raise SchemaError(f"{ckpt}: checkpoint has no {key!r}")
        return saved
    except SchemaError as err:
        aside = ckpt.with_name(ckpt.name + ".corrupt")
        ckpt.replace(aside)
        log.warning("%s; set aside as %s, training starts afresh", err, aside)
        return None


def train_loop(
    model: torch.nn.Module,
    step: Step,
    criterion: Callable[[], float],
    x_train: np.ndarray | tuple[np.ndarray, ...],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    patience: int = 10,
    seed: int = 0,
    device: torch.device | None = None,
    checkpoint: str | Path | None = None,
    fingerprint: str = "",
    extra_state: tuple[Callable[[], Any], Callable[[Any], None]] | None = None,
    monitor: Callable[[], dict[str, float]] | None = None,
    progress: Progress | None = None,
    optimizer: str = "adam",
    sample_weights: np.ndarray | None = None,
    threads: int | str | None = "auto",
    lr_scale: Callable[[], float | None] | None = None,
) -> History:
    """Train `model` with `step(batch) -> (loss, logs)`; keep the state with the lowest `criterion()`.

    `x_train` may be a tuple of row-aligned arrays; each mini-batch then calls `step(*batches)` (DisCo
    passes the nuisance observer this way). With `sample_weights` (one per row, non-negative) each epoch draws
    its n rows with replacement, with probability proportional to the weight (mass reweighting, sample weights).

    `criterion` is evaluated after every epoch on background-only validation data (never on signal).
    `monitor` may compute extra numbers per epoch (e.g. an AUC against a known signal); they are logged but
    never used for selection. With `checkpoint`, the full training state is written after every epoch
    (atomically) and an interrupted run with the same `fingerprint` resumes from its last epoch.
    On a non-finite loss training stops, the best state so far is restored and `History.stopped` says so;
    if no epoch finished, TrainingDiverged is raised. `threads`: torch intra-op threads while training
    ('auto': one thread for small networks on the CPU, `training_threads`; restored afterwards).
    `lr_scale()`, asked before every optimizer step, gives that step's learning rate as a multiple of `lr`
    (a schedule; None leaves the rate as it is).
    """
    device = device or pick_device()
    with torch_threads(training_threads(model, device, threads)):
        model.to(device)
        opt_cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
        opt = opt_cls(model.parameters(), lr=lr, weight_decay=weight_decay)
        gen = torch.Generator().manual_seed(int(seed))
        torch.manual_seed(int(seed))
        history = History()
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        start, bad_epochs = 0, 0
        ckpt = Path(checkpoint) if checkpoint else None
        saved = _read_checkpoint(ckpt) if ckpt else None
        if saved is not None:
            if saved.get("fingerprint") == fingerprint:
                model.load_state_dict({k: v.to(device) for k, v in saved["model"].items()})
                opt.load_state_dict(saved["optimizer"])
                gen.set_state(saved["generator"])
                torch.set_rng_state(saved["torch_rng"])
                history = History(**saved["history"])
                best_state = {k: v.to(device) for k, v in saved["best_state"].items()}
                start, bad_epochs = saved["epoch"] + 1, saved["bad_epochs"]
                if extra_state and saved.get("extra") is not None:
                    extra_state[1](saved["extra"])
                log.info("resuming from %s at epoch %d", ckpt, start)
            else:
                log.warning("%s belongs to another training (settings or data differ); starting afresh", ckpt)

        tensors = [torch.as_tensor(t) for t in (x_train if isinstance(x_train, tuple) else (x_train,))]
        n = len(tensors[0])
        cdf = None
        if sample_weights is not None:
            w = np.asarray(sample_weights, np.float64)
            if w.shape != (n,) or not (w >= 0).all() or w.sum() <= 0:
                raise ValueError(f"sample_weights: need {n} non-negative weights with a positive sum")
            cdf = torch.as_tensor(np.cumsum(w) / w.sum())
        for epoch in range(start, epochs):
            model.train()
            if cdf is None:
                perm = torch.randperm(n, generator=gen)
            else:  # inverse-CDF draws with replacement (torch.multinomial stops at 2^24 rows)
                u = torch.rand(n, generator=gen, dtype=torch.float64)
                perm = torch.searchsorted(cdf, u, right=True).clamp_(max=n - 1)
            sums: dict[str, float] = {}
            n_batches = 0
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                loss, logs = step(*(t[idx].to(device, non_blocking=True) for t in tensors))
                if not torch.isfinite(loss):
                    history.stopped = f"diverged at epoch {epoch} (non-finite loss)"
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                scale = lr_scale() if lr_scale is not None else None
                if scale is not None:
                    for group in opt.param_groups:
                        group["lr"] = lr * scale
                opt.step()
                for k, v in {"loss": float(loss.detach()), **logs}.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                n_batches += 1
            if history.stopped:
                break
            model.eval()
            crit = float(criterion())
            if not math.isfinite(crit):
                history.stopped = f"diverged at epoch {epoch} (non-finite validation criterion)"
                break
            entry = {"epoch": epoch, **{k: v / max(n_batches, 1) for k, v in sums.items()}, "criterion": crit}
            if monitor:
                entry |= monitor()
            history.append(entry)
            if crit < history.best_criterion:
                history.best_criterion, history.best_epoch, bad_epochs = crit, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            if ckpt:
                write_model_payload(ckpt, {
                    "fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "history": history.to_dict(), "best_state": best_state, "bad_epochs": bad_epochs,
                    "extra": extra_state[0]() if extra_state else None,
                })
            if progress:
                progress(epoch + 1, epochs, entry)
            if bad_epochs >= patience:
                history.stopped = f"early stop at epoch {epoch} (no improvement in {patience} epochs)"
                break
        if history.best_epoch < 0:
            raise TrainingDiverged(history.stopped or "no epoch completed")
        if history.stopped.startswith("diverged"):
            log.warning("%s; keeping the best epoch %d", history.stopped, history.best_epoch)
        history.stopped = history.stopped or f"finished {epochs} epochs"
        model.load_state_dict(best_state)
        model.eval()
        return history
