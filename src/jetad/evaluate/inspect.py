"""What is in a jet file: counts, provenance, truncation, feature quantiles, and the standard distributions.

Reads only the light columns (jets, features, event fields) in chunks, so it works on million-jet files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jetad.data.store import iter_samples, sample_info

__all__ = ["STANDARD_PLOTS", "FileSummary", "Truncation", "plot_distributions", "summarize", "truncation"]

#: (column, axis label, range) of the standard distributions; columns come from features or jets.
STANDARD_PLOTS = (
    ("mass", r"jet mass $m_J$ [GeV]", (0, 300)),
    ("sd_mass", r"soft-drop mass $m_{SD}$ [GeV]", (0, 300)),
    ("tau21", r"$\tau_{21}$", (0, 1.2)),
    ("tau32", r"$\tau_{32}$", (0, 1.2)),
    ("c2_b1", r"$C_2^{(\beta=1)}$", (0, 0.6)),
    ("pt", r"jet $p_T$ [GeV]", None),
    ("multiplicity", "constituent multiplicity", None),
    ("mjj", r"$m_{jj}$ [GeV]", None),
)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: (name, event column of the pre-truncation count, feature column) of each jet a row may hold.
_JETS = (("jet", "multiplicity_full", "multiplicity"), ("j2", "j2_multiplicity_full", "j2_multiplicity"))


@dataclass(frozen=True)
class Truncation:
    """Share of jets with more constituents than the file keeps (P).

    `exact`: counted from the recorded pre-truncation multiplicities (event column "multiplicity_full");
    otherwise an upper bound, the share of jets whose multiplicity feature equals P (files written before
    the count was recorded).
    """

    fraction: float
    exact: bool
    n_jets: int


@dataclass
class FileSummary:
    """Counts, provenance and feature quantiles of one file or shard directory."""

    path: Path
    n_jets: int
    n_shards: int
    n_constituents: int
    attrs: dict[str, Any]
    labels: dict[int, int]
    columns: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    truncation: dict[str, Truncation] = field(default_factory=dict)

    def quantiles(self) -> dict[str, np.ndarray]:
        """Feature -> values at QUANTILES."""
        return {k: np.quantile(v, QUANTILES) for k, v in self.columns.items() if v.ndim == 1 and len(v)}

    @property
    def name(self) -> str:
        """A short label for legends: process (and options) or the file name."""
        proc = self.attrs.get("process") or self.attrs.get("format")
        return f"{proc} ({self.path.name})" if proc else self.path.name


def summarize(path: str | Path, chunk_size: int = 100_000) -> FileSummary:
    """Read a file's light columns chunk by chunk and summarise them."""
    info = sample_info(path)
    cols: dict[str, list[np.ndarray]] = {}
    labels: dict[int, int] = {}
    for chunk in iter_samples(path, chunk_size=chunk_size, constituents=False):
        light = {"pt": chunk.jets[:, 0], "eta": chunk.jets[:, 1], "mass": chunk.jets[:, 3]}
        light |= {k: v for k, v in chunk.event.items() if np.asarray(v).ndim == 1}
        light |= chunk.features
        for k, v in light.items():
            cols.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
        for lab, cnt in zip(*np.unique(chunk.label, return_counts=True), strict=True):
            labels[int(lab)] = labels.get(int(lab), 0) + int(cnt)
    columns = {k: np.concatenate(v) for k, v in cols.items()}
    return FileSummary(
        path=Path(path), n_jets=info.n_jets, n_shards=len(info.files), n_constituents=info.n_constituents,
        attrs=info.attrs, labels=labels, columns=columns, truncation=truncation(columns, info.n_constituents),
    )


def truncation(columns: dict[str, np.ndarray], n_constituents: int) -> dict[str, Truncation]:
    """Per jet of a row ("jet", and "j2" for dijet rows): the share truncated at P = n_constituents.

    Exact where the pre-truncation count is a column, an upper bound from the multiplicity feature otherwise;
    absent when neither is there.
    """
    out: dict[str, Truncation] = {}
    for name, full, feature in _JETS:
        if full in columns:
            counts, exact = columns[full], True
        elif feature in columns:
            counts, exact = columns[feature], False
        else:
            continue
        over = counts > n_constituents if exact else counts >= n_constituents
        out[name] = Truncation(float(np.mean(over)) if len(counts) else 0.0, exact, len(counts))
    return out


def plot_distributions(summaries: list[FileSummary], out: str | Path, title: str = "") -> Path:
    """Overlay the standard distributions of several files (normalised histograms) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    panels = [p for p in STANDARD_PLOTS if any(p[0] in s.columns for s in summaries)]
    ncol = 4
    nrow = max(1, -(-len(panels) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(6 * ncol, 5 * nrow), squeeze=False)
    for ax, (col, label, rng) in zip(axes.flat, panels, strict=False):
        values = [s.columns[col] for s in summaries if col in s.columns]
        lo, hi = rng or (min(np.quantile(v, 0.005) for v in values), max(np.quantile(v, 0.995) for v in values))
        bins = np.linspace(lo, hi, 41)
        for s in summaries:
            if col in s.columns:
                h, _ = np.histogram(np.clip(s.columns[col], lo, hi), bins=bins, density=True)
                mplhep.histplot(h, bins, ax=ax, label=s.name, lw=2)
        ax.set_xlabel(label, fontsize=16)
        ax.set_ylabel("normalised", fontsize=16)
        ax.tick_params(labelsize=13)
        ax.legend(fontsize=11)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=16)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)
    return out
