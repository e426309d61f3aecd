"""Score whole files with a fitted detector, streaming chunk by chunk, into a score file."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jetad.data.progress import Progress
from jetad.data.sample import JetSample, SchemaError
from jetad.data.scores import ScoreTable, write_scores
from jetad.data.store import iter_samples, sample_info
from jetad.detectors.estimator import Estimator

__all__ = ["score_files", "score_sample"]


def _needs_constituents(det: Estimator) -> bool:
    if getattr(det, "reads_constituents", True) is False:  # resonant searches
        return False
    spec = getattr(det, "spec_", None)
    return spec is None or spec.kind != "features"


def score_sample(det: Estimator, sample: JetSample, source: str = "sample") -> np.ndarray:
    """Scores of one in-memory sample, checked to be finite."""
    sample.attrs = {**sample.attrs, "source": source}
    scores = np.asarray(det.score(sample), dtype=np.float64)
    if not np.isfinite(scores).all():
        raise RuntimeError(f"{source}: detector {det.name} returned {int((~np.isfinite(scores)).sum())} "
                           "non-finite scores (a diverged model?)")
    return scores


def score_files(
    det: Estimator,
    files: Sequence[str | Path],
    out: str | Path | None = None,
    chunk_size: int = 50_000,
    progress: Progress | None = None,
) -> ScoreTable:
    """Score every jet of `files` (chunked, so memory is bounded) and optionally write a score file.

    Raises ValueError for no files or a chunk size below 1, SchemaError for a file without jets.
    """
    if not files:
        raise ValueError("no files to score")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of jets, got {chunk_size}")
    counts = [sample_info(f).n_jets for f in files]
    for f, n in zip(files, counts, strict=True):
        if n == 0:
            raise SchemaError(f"{f}: no jets to score (an empty sample)")
    total = sum(counts)
    parts: list[ScoreTable] = []
    done, t0 = 0, time.perf_counter()
    for f in files:
        for chunk in iter_samples(f, chunk_size=chunk_size, constituents=_needs_constituents(det)):
            parts.append(ScoreTable.from_samples([score_sample(det, chunk, str(f))], [chunk], [str(f)]))
            done += len(chunk)
            if progress:
                progress(done, total, {})
    elapsed = time.perf_counter() - t0
    table = ScoreTable.concatenate(parts, attrs={"detector": det.name, "params": det.get_params(),
                                                 "jets_per_s": total / max(elapsed, 1e-9),
                                                 "n_parameters": det.n_parameters()})
    if out is not None:
        write_scores(out, table)
    return table
