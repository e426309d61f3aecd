"""The one progress-callback type of jetad: epochs of training, rows of a production, chunks of scoring."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Progress"]


class Progress(Protocol):
    """``progress(done, total, logs)`` after each epoch or chunk of work: `done` of `total` units (epochs, jets,
    rows, pairs) are finished; `logs` holds the step's numbers (losses of an epoch), empty where there are none.
    The command line draws it as a progress bar; a callback may raise to stop the work (training resumes from its
    checkpoint)."""

    def __call__(self, done: int, total: int, logs: dict[str, float], /) -> None: ...
