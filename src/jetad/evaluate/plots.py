"""Standard figures of an anomaly search: ROC (rejection), SIC, AUC grids, sculpting, training, score shapes.

Every function takes plain arrays and an output path, writes one PNG and returns the path. Figures are drawn
on `matplotlib.figure.Figure` objects with the Agg renderer and the mplhep CMS style applied in a context, so
no pyplot state or global backend is touched. ``caption`` is printed as the figure's title line: put the task,
the sample sizes, the seeds and the command there (DESIGN.md: every benchmark figure names them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib.style
import mplhep
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator

from jetad.evaluate.bumphunt import BumpHuntResult
from jetad.evaluate.metrics import js_divergence, threshold_at_bkg_efficiency

__all__ = [
    "plot_auc_grid",
    "plot_auc_grids",
    "plot_bumphunt",
    "plot_learning_curves",
    "plot_roc",
    "plot_score_distributions",
    "plot_score_vs_mass",
    "plot_sic",
    "plot_significance_scan",
    "plot_training_curves",
]

#: CMS's recommended 10-colour palette (the first six are mplhep's CMS style cycle).
CMS_COLOURS = ("#3f90da", "#ffa90e", "#bd1f01", "#94a4a2", "#832db6", "#a96b59", "#e76300", "#b9ac70", "#717581",
               "#92dadd")
_LABEL = 18
_TICK = 14
_LEGEND = 12
_CAPTION = 12


@contextmanager
def _figure(
    out: str | Path, ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (8.0, 7.0), caption: str = "",
    height_ratios: Sequence[float] | None = None, sharex: bool = False,
) -> Iterator[tuple[Figure, np.ndarray]]:
    """A styled figure with a grid of axes; saved to ``out`` (parent folders made) when the block ends.

    `size` is per axis, or the whole figure when `height_ratios` is given (a main panel over a ratio panel)."""
    with matplotlib.style.context(mplhep.style.CMS):
        whole = (size[0], size[1]) if height_ratios else (size[0] * ncols, size[1] * nrows)
        fig = Figure(figsize=whole, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex,
                            gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
        for ax in axes.flat:  # the CMS 10-colour palette: the style's 6 colours repeat in 7+ method comparisons
            ax.set_prop_cycle(color=CMS_COLOURS)
        yield fig, axes
        for ax in axes.flat:
            ax.tick_params(labelsize=_TICK)
        if caption:
            fig.suptitle(caption, fontsize=_CAPTION)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=80)


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], out: str | Path, caption: str = "") -> Path:
    """Background rejection 1/eps_b against signal efficiency eps_s on a log axis, with the random guess.

    ``curves`` maps a legend name to (eps_s, eps_b) as returned by `roc_curve`; the legend shows the AUC.
    Points with eps_b = 0 (infinite rejection) are not drawn.
    """
    with _figure(out, caption=caption) as (_, axes):
        ax = axes[0, 0]
        grid = np.linspace(1e-3, 1, 200)
        ax.plot(grid, 1 / grid, "k--", lw=1.5, label="random (AUC 0.5)")
        for name, (eps_s, eps_b) in curves.items():
            es, eb = np.asarray(eps_s, dtype=float), np.asarray(eps_b, dtype=float)
            area = float(np.sum(np.diff(eb) * (es[1:] + es[:-1])) / 2)
            ok = eb > 0
            ax.plot(es[ok], 1 / eb[ok], lw=2, label=f"{name} (AUC {area:.3f})")
        ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_xlabel(r"signal efficiency $\varepsilon_S$", fontsize=_LABEL)
        ax.set_ylabel(r"background rejection $1/\varepsilon_B$", fontsize=_LABEL)
        ax.legend(fontsize=_LEGEND)
    return Path(out)


def plot_sic(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], out: str | Path, caption: str = "") -> Path:
    """Significance improvement eps_s/sqrt(eps_b) against eps_s (1708.02949), with the random sqrt(eps_s).

    ``curves`` maps a legend name to (eps_s, sic) as returned by `sic_curve`; the legend shows the maximum.
    """
    with _figure(out, caption=caption) as (_, axes):
        ax = axes[0, 0]
        grid = np.linspace(0, 1, 200)
        ax.plot(grid, np.sqrt(grid), "k--", lw=1.5, label="random")
        for name, (eps_s, sic) in curves.items():
            sic = np.asarray(sic, dtype=float)
            label = f"{name} (max {np.max(sic):.2f})" if sic.size else name
            ax.plot(eps_s, sic, lw=2, label=label)
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel(r"signal efficiency $\varepsilon_S$", fontsize=_LABEL)
        ax.set_ylabel(r"SIC $\varepsilon_S\,/\,\varepsilon_B^{1/2}$", fontsize=_LABEL)
        ax.legend(fontsize=_LEGEND)
    return Path(out)


def _draw_grid(
    ax: Axes,
    x_values: Sequence[float],
    y_values: Sequence[float],
    grid: np.ndarray,
    xlabel: str,
    ylabel: str,
    title: str,
) -> AxesImage:
    """Heatmap of grid[i, j] at (x_values[i], y_values[j]) on evenly spaced cells, the value in each cell."""
    grid = np.asarray(grid, dtype=float)
    if grid.shape != (len(x_values), len(y_values)):
        raise ValueError(
            f"grid shape {grid.shape} != (len(x_values), len(y_values)) = ({len(x_values)}, {len(y_values)})"
        )
    image = ax.imshow(grid.T, origin="lower", cmap="coolwarm", vmin=0.0, vmax=1.0, aspect="auto")
    for i, j in np.ndindex(grid.shape):
        v = grid[i, j]
        if np.isfinite(v):
            color = "white" if abs(v - 0.5) > 0.3 else "black"
            ax.text(i, j, f"{v:.2f}", ha="center", va="center", fontsize=_LEGEND, color=color)
    ax.set_xticks(range(len(x_values)), [f"{v:g}" for v in x_values])
    ax.set_yticks(range(len(y_values)), [f"{v:g}" for v in y_values])
    ax.minorticks_off()
    ax.set_xlabel(xlabel, fontsize=_LABEL)
    ax.set_ylabel(ylabel, fontsize=_LABEL)
    if title:
        ax.set_title(title, fontsize=_LABEL - 2)
    return image


def plot_auc_grid(
    x_values: Sequence[float],
    y_values: Sequence[float],
    grid: np.ndarray,
    out: str | Path,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    caption: str = "",
) -> Path:
    """AUC heatmap over a signal-parameter grid (e.g. m_Phi x r_inv), ``grid[i, j]`` as from `auc_grid`.

    The colour scale is fixed to [0, 1] and centred on 0.5 (no separation), so grids are comparable.
    """
    return plot_auc_grids({title: grid}, x_values, y_values, out, xlabel, ylabel, caption)


def plot_auc_grids(
    grids: Mapping[str, np.ndarray],
    x_values: Sequence[float],
    y_values: Sequence[float],
    out: str | Path,
    xlabel: str = "",
    ylabel: str = "",
    caption: str = "",
) -> Path:
    """Several AUC grids (one per detector, ``name -> grid``) side by side with one shared colour bar."""
    if not grids:
        raise ValueError("grids: nothing to plot")
    ncols = len(grids)
    with _figure(
        out, ncols=ncols, size=(1.2 * len(x_values) + 3.5, 0.9 * len(y_values) + 3.0), caption=caption
    ) as (fig, axes):
        images = [_draw_grid(ax, x_values, y_values, grid, xlabel, ylabel, name)
                  for ax, (name, grid) in zip(axes[0], grids.items(), strict=True)]
        image = images[-1]
        cbar = fig.colorbar(image, ax=list(axes[0]), fraction=0.05 / ncols)
        cbar.set_label("AUC", fontsize=_LABEL - 2)
    return Path(out)


def plot_score_vs_mass(
    scores: np.ndarray,
    mass: np.ndarray,
    out: str | Path,
    eps_b: Sequence[float] = (0.5, 0.1, 0.01),
    w: np.ndarray | None = None,
    mass_label: str = r"jet mass $m$ [GeV]",
    bins: int = 50,
    caption: str = "",
) -> Path:
    """Sculpting view of a background sample: score vs mass, and the mass shape before and after cuts.

    Left: 2-d histogram of (mass, score) with the thresholds at each eps_b. Right: the normalised mass
    histogram of all events and of those passing ``score > threshold(eps_b)``, with the JSD in the legend
    (the quantity of `mass_sculpting`).
    """
    scores = np.asarray(scores, dtype=float)
    mass = np.asarray(mass, dtype=float)
    weights = np.ones_like(scores) if w is None else np.asarray(w, dtype=float)
    m_lo, m_hi = np.quantile(mass, [0.001, 0.999])
    s_lo, s_hi = np.quantile(scores, [0.001, 0.999])
    m_hi, s_hi = max(m_hi, m_lo + 1e-9), max(s_hi, s_lo + 1e-9)
    m_edges = np.linspace(m_lo, m_hi, bins + 1)
    s_edges = np.linspace(s_lo, s_hi, bins + 1)
    mc, sc = np.clip(mass, m_lo, m_hi), np.clip(scores, s_lo, s_hi)
    thresholds = np.atleast_1d(threshold_at_bkg_efficiency(scores, list(eps_b), weights))
    with _figure(out, ncols=2, caption=caption) as (_, axes):
        ax2d, ax = axes[0]
        h2, _, _ = np.histogram2d(mc, sc, bins=[m_edges, s_edges], weights=weights)
        positive = h2[h2 > 0]
        norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
        ax2d.pcolormesh(m_edges, s_edges, np.where(h2 > 0, h2, np.nan).T, norm=norm, cmap="viridis")
        h_all, _ = np.histogram(mc, bins=m_edges, weights=weights)
        ax.stairs(h_all / max(h_all.sum(), 1e-300), m_edges, lw=2, color="black", label="all background")
        for e, t in zip(eps_b, thresholds, strict=True):
            if np.isfinite(t):
                ax2d.axhline(t, ls="--", lw=1.5, color="red")
                ax2d.text(
                    m_edges[-1],
                    t,
                    rf"$\varepsilon_B$={e:g}",
                    ha="right",
                    va="bottom",
                    fontsize=_LEGEND,
                    color="red",
                )
            passed = scores > t
            h_pass, _ = np.histogram(mc[passed], bins=m_edges, weights=weights[passed])
            if h_pass.sum() > 0:
                jsd = js_divergence(h_all, h_pass)
                ax.stairs(
                    h_pass / h_pass.sum(), m_edges, lw=2, label=rf"$\varepsilon_B$ = {e:g} (JSD {jsd:.3f})"
                )
        ax2d.set_xlabel(mass_label, fontsize=_LABEL)
        ax2d.set_ylabel("anomaly score", fontsize=_LABEL)
        ax.set_xlabel(mass_label, fontsize=_LABEL)
        ax.set_ylabel("normalised", fontsize=_LABEL)
        ax.legend(fontsize=_LEGEND)
    return Path(out)


def plot_training_curves(
    history: Mapping[str, Sequence[float]], out: str | Path, logy: bool = False, caption: str = ""
) -> Path:
    """Curves per epoch: entries whose name contains "loss" on the left axis, other metrics on the right.

    If no entry is named like a loss, all share the left axis. ``logy`` applies to the loss axis.
    """
    if not history:
        raise ValueError("history: nothing to plot")
    losses = {k: v for k, v in history.items() if "loss" in k.lower()} or dict(history)
    others = {k: v for k, v in history.items() if k not in losses}
    with _figure(out, size=(9.0, 7.0), caption=caption) as (_, axes):
        ax = axes[0, 0]
        lines = []
        for name, values in losses.items():
            lines += ax.plot(np.arange(1, len(values) + 1), values, lw=2, label=name)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("epoch", fontsize=_LABEL)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss" if others or len(losses) > 1 else next(iter(losses)), fontsize=_LABEL)
        if others:
            ax_right = ax.twinx()
            for name, values in others.items():
                lines += ax_right.plot(np.arange(1, len(values) + 1), values, lw=2, ls="--", label=name)
            ax_right.set_ylabel("metric", fontsize=_LABEL)
            ax_right.tick_params(labelsize=_TICK)
        ax.legend(lines, [line.get_label() for line in lines], fontsize=_LEGEND)
    return Path(out)


def plot_score_distributions(
    scores: Mapping[str, np.ndarray], out: str | Path, bins: int = 50, logy: bool = True, caption: str = ""
) -> Path:
    """Normalised score histograms of several samples (``name -> scores``) on shared bins.

    The bins span the 0.1% to 99.9% quantiles of all samples together; values outside fill the edge bins.
    """
    if not scores:
        raise ValueError("scores: nothing to plot")
    arrays = {k: np.asarray(v, dtype=float).ravel() for k, v in scores.items()}
    pooled = np.concatenate(list(arrays.values()))
    lo, hi = np.quantile(pooled, [0.001, 0.999])
    hi = max(hi, lo + 1e-9)
    edges = np.linspace(lo, hi, bins + 1)
    with _figure(out, caption=caption) as (_, axes):
        ax = axes[0, 0]
        for name, values in arrays.items():
            h, _ = np.histogram(np.clip(values, lo, hi), bins=edges)
            ax.stairs(h / max(h.sum(), 1) / np.diff(edges), edges, lw=2, label=f"{name} ({values.size})")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("anomaly score", fontsize=_LABEL)
        ax.set_ylabel("density", fontsize=_LABEL)
        ax.legend(fontsize=_LEGEND)
    return Path(out)


def plot_bumphunt(result: BumpHuntResult, out: str | Path, window: int | None = None, caption: str = "") -> Path:
    """Data with Poisson errors, the sideband fit of a window (default: the most significant), the full-range
    fit, the window shaded, and the pulls (data - fit) / sqrt(fit) below. Writes a PNG; returns its path."""
    i = result.best if window is None else int(window)
    fit = result.fits[i]
    edges, counts = result.edges, result.counts
    centres, widths = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)
    expected = fit.bin_expectation()
    with _figure(out, nrows=2, size=(9.0, 8.0), caption=caption, height_ratios=(3, 1), sharex=True) as (_, axes):
        top, bottom = axes[0, 0], axes[1, 0]
        shown = counts > 0
        top.errorbar(centres[shown], counts[shown] / widths[shown], yerr=np.sqrt(counts[shown]) / widths[shown],
                     xerr=widths[shown] / 2, fmt="o", color="k", ms=4, label=f"data ({result.n_events} events)")
        fine = np.linspace(edges[0], edges[-1], 400)
        top.plot(fine, fit.density(fine), color="tab:red",
                 label=f"sideband fit ($\\chi^2$/ndf = {fit.chi2:.1f}/{fit.ndf})")
        top.plot(fine, result.global_fit.density(fine), color="tab:blue", ls="--", lw=1, label="full-range fit")
        for ax in (top, bottom):
            ax.axvspan(result.lo[i], result.hi[i], color="gold", alpha=0.3)
        top.set_yscale("log")
        top.set_ylabel("Events / GeV", fontsize=18)
        top.legend(fontsize=12, title=(f"window {result.lo[i]:.0f}-{result.hi[i]:.0f} GeV: "
                                       f"n = {result.n_obs[i]:.0f}, b = {result.n_exp[i]:.1f} ± "
                                       f"{result.sigma_exp[i]:.1f}, Z = {result.z[i]:.2f}"
                                       f"\n$\\epsilon$ = {result.efficiency:g}"
                                       + ("" if result.global_p is None else
                                          f", global p {'' if result.global_p_is_bound else '= '}"
                                          f"{result.global_p_text()} ({len(result.toy_max_z)} toys)")),
                   title_fontsize=12)
        pull = (counts - expected) / np.sqrt(np.maximum(expected, 1e-9))
        bottom.bar(centres, pull, width=widths, color=np.where(fit.fitted_bins, "tab:gray", "gold"),
                   edgecolor="k", lw=0.5)
        bottom.axhline(0, color="k", lw=1)
        bottom.set_ylabel("pull", fontsize=14)
        bottom.set_xlabel("$m_{jj}$ [GeV]", fontsize=_LABEL)
    return Path(out)


def plot_significance_scan(
    results: BumpHuntResult | Mapping[float, BumpHuntResult], out: str | Path, caption: str = ""
) -> Path:
    """Local Z against window centre, one line per efficiency, with 3 and 5 sigma guides. Writes a PNG."""
    if isinstance(results, BumpHuntResult):
        results = {results.efficiency: results}
    with _figure(out, size=(9.0, 6.0), caption=caption) as (_, axes):
        ax = axes[0, 0]
        for eps, res in results.items():
            label = f"$\\epsilon$ = {eps:g}: max Z = {res.max_z:.2f}"
            if res.global_p is not None:
                label += f", global Z {'>' if res.global_p_is_bound else '='} {res.global_z:.2f}"
            ax.plot(res.centers, res.z, "o-", ms=4, label=label)
        for level in (3, 5):
            ax.axhline(level, color="gray", ls=":", lw=1)
        ax.axhline(0, color="k", lw=1)
        ax.set_xlabel("window centre $m_{jj}$ [GeV]", fontsize=18)
        ax.set_ylabel("local significance Z", fontsize=18)
        ax.legend(fontsize=_LEGEND)
    return Path(out)


def plot_learning_curves(
    curves: Mapping[str, Mapping[str, np.ndarray]], out: str | Path, caption: str = ""
) -> Path:
    """AUC (left) and distance correlation with the sculpting observer (right) against training size.

    ``curves`` maps a method to arrays of equal length: ``n_train``, ``auc`` (mean over seeds), ``auc_std``
    (standard deviation over seeds: the band), ``auc_err`` (statistical error from the test size: the error
    bars), ``dcor`` and ``dcor_std``; missing spreads (one seed) draw no band. The x axis is logarithmic.
    """
    if not curves:
        raise ValueError("curves: nothing to plot")
    with _figure(out, ncols=2, caption=caption) as (_, axes):
        ax_auc, ax_dcor = axes[0, 0], axes[0, 1]
        ax_auc.axhline(0.5, color="k", ls="--", lw=1.5, label="random (AUC 0.5)")
        for i, (name, c) in enumerate(curves.items()):
            colour = CMS_COLOURS[i % len(CMS_COLOURS)]
            n = np.asarray(c["n_train"], dtype=float)
            order = np.argsort(n)
            n = n[order]
            for ax, key, spread in ((ax_auc, "auc", "auc_std"), (ax_dcor, "dcor", "dcor_std")):
                y = np.asarray(c[key], dtype=float)[order]
                err = np.asarray(c.get("auc_err", np.full(n.size, np.nan)), dtype=float)[order] \
                    if key == "auc" else None
                ax.errorbar(n, y, yerr=err, fmt="o-", color=colour, lw=2, ms=5, capsize=3, label=name)
                band = np.asarray(c.get(spread, np.full(n.size, np.nan)), dtype=float)[order]
                if np.isfinite(band).any():
                    ax.fill_between(n, y - np.nan_to_num(band), y + np.nan_to_num(band), color=colour, alpha=0.25)
        for ax in (ax_auc, ax_dcor):
            ax.set_xscale("log")
            ax.set_xlabel("training jets $n_{train}$", fontsize=_LABEL)
            ax.legend(fontsize=_LEGEND)
        ax_auc.set_ylabel("AUC (band: std over seeds; bars: stat.)", fontsize=_LABEL - 2)
        ax_dcor.set_ylabel("dCor(score, observer) on background", fontsize=_LABEL - 2)
        ax_dcor.set_ylim(bottom=0)
    return Path(out)


def plot_sensitivity(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], out: str | Path, caption: str = "",
    ylabel: str = "local Z at the signal window",
) -> Path:
    """The injection study's plot: local significance against the injected S/sqrt(B), one line per method.

    ``curves`` maps a method to (S/sqrt(B) values, Z values), drawn in order of S/sqrt(B); the diagonal Z =
    S/sqrt(B) (a perfect cut-free count) and Z = 3 are drawn for reference.
    """
    if not curves or not any(len(x) for x, _ in curves.values()):
        raise ValueError("curves: nothing to plot")
    with _figure(out, size=(10.0, 8.0), caption=caption) as (_, axes):
        ax = axes[0, 0]
        top = max(float(np.nanmax(x)) for x, _ in curves.values() if len(x))
        ax.plot([0, top], [0, top], color="k", ls=":", lw=1.5, label="Z = S/sqrt(B), no cut")
        ax.axhline(3.0, color="k", ls="--", lw=1.0)
        styles = ("-", "--", "-.")
        for i, (name, (x, z)) in enumerate(curves.items()):
            order = np.argsort(np.asarray(x, dtype=float))
            ax.plot(np.asarray(x, dtype=float)[order], np.asarray(z, dtype=float)[order], marker="o", lw=2,
                    ls=styles[(i // len(CMS_COLOURS)) % len(styles)], color=CMS_COLOURS[i % len(CMS_COLOURS)],
                    label=name)
        ax.set_xlabel("injected S/sqrt(B) in the signal region", fontsize=_LABEL)
        ax.set_ylabel(ylabel, fontsize=_LABEL)
        ax.legend(fontsize=_LEGEND - 4, ncol=2)
    return Path(out)

