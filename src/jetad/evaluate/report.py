"""One self-contained HTML page of a run directory: leaderboard, evaluation plots, training curves, samples.

Everything is inline (CSS, PNGs as base64 data URIs; no scripts, fonts or links to fetch), so the page opens
offline, can be mailed or attached to a logbook, and still shows the same thing in ten years.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
import math
import shutil
import subprocess
import tempfile
from html import escape
from pathlib import Path
from typing import Any

from jetad import __version__
from jetad.evaluate.run_files import (
    load_evaluations,
    load_model,
    metric_value,
    model_history,
    nearby,
    sample_infos,
    score_file_attrs,
    training_logs,
)

__all__ = ["screenshot", "write_report"]

log = logging.getLogger(__name__)

#: Plots of an evaluation directory in the order they are shown; other PNGs follow alphabetically.
_PLOT_ORDER = ("roc", "sic", "scores", "sculpting")
_PLOT_CAPTIONS = {
    "roc": "ROC: background rejection 1/ε<sub>B</sub> vs signal efficiency ε<sub>S</sub>",
    "sic": "SIC = ε<sub>S</sub>/√ε<sub>B</sub> vs ε<sub>S</sub>",
    "scores": "Score distributions (normalised)",
    "sculpting": "Mass sculpting (background): score vs mass, mass after cuts",
}

_CSS = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 0 auto; padding: 16px 28px;
       max-width: 1500px; color: #1b1b1b; background: #fff; line-height: 1.4; }
h1 { margin: 0 0 4px 0; font-size: 26px; }
h2 { margin-top: 34px; border-bottom: 2px solid #2b5d8a; padding-bottom: 4px; color: #2b5d8a; font-size: 21px; }
h3 { margin: 22px 0 8px 0; font-size: 17px; }
.meta { color: #555; font-size: 13px; margin: 2px 0; }
.meta code { background: #f2f2f2; padding: 1px 4px; border-radius: 3px; }
table { border-collapse: collapse; font-size: 14px; margin: 8px 0; }
th, td { border: 1px solid #cfd6de; padding: 5px 10px; text-align: left; vertical-align: top; }
th { background: #eef3f8; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; font-family: "DejaVu Sans Mono", monospace; }
tr.best td { background: #f3faf1; }
.legend { font-size: 13px; color: #333; background: #fafafa; border-left: 3px solid #2b5d8a;
          padding: 6px 12px; margin: 10px 0; }
.legend dt { font-weight: 600; float: left; clear: left; width: 190px; }
.legend dd { margin: 0 0 4px 200px; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 10px; }
figure { margin: 0; border: 1px solid #e1e4e8; padding: 6px; background: #fff; }
figure.wide { grid-column: span 2; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 12px; color: #444; margin-top: 4px; }
.eval { border-top: 1px solid #ddd; }
details { margin: 4px 0; font-size: 13px; }
summary { cursor: pointer; color: #2b5d8a; }
details table { font-size: 12px; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; font-size: 12px; }
.note { color: #777; font-size: 13px; font-style: italic; }
"""

_LEGEND = """
<dl class="legend">
<dt>AUC</dt><dd>Area under the ROC curve (ε<sub>S</sub> vs ε<sub>B</sub>): 0.5 is a random guess, 1 a perfect
separation. Threshold-independent, but dominated by the bulk rather than the tail where searches cut.</dd>
<dt>max SIC</dt><dd>Significance improvement ε<sub>S</sub>/√ε<sub>B</sub>, maximised over thresholds (with at
least 25 background events passing): the factor by which a cut on the score multiplies S/√B.</dd>
<dt>1/ε<sub>B</sub> @ ε<sub>S</sub>=0.3</dt><dd>Background rejection at the threshold keeping 30% of the
signal; ∞ means no background jet of the test sample passes (limited by its size).</dd>
<dt>JSD @ ε<sub>B</sub>=0.1</dt><dd>Mass sculpting: Jensen-Shannon divergence (base 2, 0 to 1) between the
background mass distribution before and after a cut keeping 10% of the background. 0 = shape unchanged.</dd>
<dt>dCor(score, m)</dt><dd>Distance correlation of score and jet mass on background: 0 = independent (no
sculpting possible), 1 = the score is a function of the mass.</dd>
<dt>jets</dt><dd>Signal / background jets in the evaluation sample (the test sample, not used in training).</dd>
</dl>
"""


# ------------------------------------------------------------------------------------------------- formatting


def _fmt(value: Any, spec: str = ".3f") -> str:
    """Format a number for a table cell: inf as ∞, missing as an em dash."""
    x = metric_value(value)
    if x is None or math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return format(x, spec)


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _figure(png: Path, caption: str, wide: bool = False) -> str:
    cls = ' class="wide"' if wide else ""
    return (f'<figure{cls}><img alt="{escape(png.name)}" src="{_data_uri(png)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _attr_value(key: str, value: Any) -> str:
    """One provenance attribute as HTML: lists one item per line (Pythia settings), dicts as indented JSON."""
    if isinstance(value, list | tuple):
        return "<pre>" + escape("\n".join(str(v) for v in value)) + "</pre>"
    if isinstance(value, dict):
        return "<pre>" + escape(json.dumps(value, indent=1, sort_keys=True, default=str)) + "</pre>"
    return escape(str(value))


# ------------------------------------------------------------------------------------------------- sections


def _leaderboard(rows: list[dict[str, Any]]) -> str:
    show_params = any(r["n_parameters"] is not None for r in rows)
    show_speed = any(r["jets_per_s"] is not None for r in rows)
    head = ["#", "detector", "signal vs background", "AUC", "max SIC", "1/ε<sub>B</sub> @ ε<sub>S</sub>=0.3",
            "JSD @ ε<sub>B</sub>=0.1", "dCor(score, m)", "jets (sig / bkg)"]
    head += ["parameters"] * show_params + ["inference [jets/s]"] * show_speed
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for i, r in enumerate(rows, 1):
        m = r["metrics"]
        cells = [
            f'<td class="num">{i}</td>',
            f'<td><a href="#{r["anchor"]}">{escape(r["detector"])}</a></td>',
            f"<td>{escape(r['signal'])} vs {escape(r['background'])}</td>",
            f'<td class="num">{_fmt(m.get("auc"))}</td>',
            f'<td class="num">{_fmt(m.get("max_sic"), ".2f")}</td>',
            f'<td class="num">{_fmt(m.get("rejection_at_eps_s_0.3"), ".1f")}</td>',
            f'<td class="num">{_fmt(m.get("jsd_at_eps_b_0.1"))}</td>',
            f'<td class="num">{_fmt(m.get("dcor_score_mass"))}</td>',
            f'<td class="num">{_fmt(m.get("n_sig"), ".0f")} / {_fmt(m.get("n_bkg"), ".0f")}</td>',
        ]
        if show_params:
            cells.append(f'<td class="num">{_fmt(r["n_parameters"], ",.0f")}</td>')
        if show_speed:
            cells.append(f'<td class="num">{_fmt(r["jets_per_s"], ",.0f")}</td>')
        cls = ' class="best"' if i == 1 else ""
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _evaluation_section(r: dict[str, Any], tmp: Path) -> str:
    ev_dir: Path = r["dir"]
    parts = [f'<div class="eval"><h3 id="{r["anchor"]}">{escape(r["detector"])}: signal {escape(r["signal"])} '
             f"vs background {escape(r['background'])}</h3>",
             f'<p class="meta">directory <code>{escape(str(ev_dir))}</code>; sculpting observer '
             f"<code>{escape(str(r['observer']))}</code>"]
    if r["model_params"]:
        params = ", ".join(f"{k}={v}" for k, v in sorted(r["model_params"].items()) if k != "inputs")
        parts.append(f"; parameters <code>{escape(params)}</code>")
    parts.append("</p>")
    pngs = sorted(ev_dir.glob("*.png"), key=lambda p: (_PLOT_ORDER.index(p.stem) if p.stem in _PLOT_ORDER
                                                       else len(_PLOT_ORDER), p.name))
    figs = [_figure(p, _PLOT_CAPTIONS.get(p.stem, escape(p.stem)), wide=p.stem == "sculpting") for p in pngs]
    logs = training_logs(r["model"])
    if logs:
        from jetad.evaluate.plots import plot_training_curves

        png = plot_training_curves(logs, tmp / f"{r['anchor']}_training.png",
                                   caption=f"{r['detector']}: training ({r['model_path'].name})")
        history = model_history(r["model"])
        best = history.get("best_epoch")
        best_txt = str(best + 1) if isinstance(best, int) and best >= 0 else "?"
        note = (f"Training curves per epoch (counted from 1); best epoch {escape(best_txt)}; "
                f"{escape(str(history.get('stopped', '')))}")
        figs.append(_figure(png, note))
    if figs:
        parts.append('<div class="figs">' + "".join(figs) + "</div>")
    else:
        parts.append('<p class="note">no plots in this evaluation directory</p>')
    if r["model_path"] is not None and not logs:
        parts.append(f'<p class="note">{escape(r["model_path"].name)}: no training history '
                     "(a detector without a training loop)</p>")
    parts.append("</div>")
    return "\n".join(parts)


def _samples_section(run_dir: Path) -> str:
    infos = sample_infos(run_dir)
    parts = []
    if not infos:
        parts.append('<p class="note">no jetad sample files in the run directory</p>')
    else:
        head = ["file", "process", "jets", "seed", "jet R", "p<sub>T</sub> window [GeV]", "detector", "generator"]
        rows = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
        for info in infos:
            a = info.attrs
            lo, hi = a.get("jet_pt_min"), a.get("jet_pt_max")
            window = "—" if lo is None and hi is None else f"{_fmt(lo, 'g')} – {_fmt(hi, 'g')}"
            cells = [escape(info.path.name), escape(str(a.get("process", "—"))), f"{info.n_jets:,}",
                     escape(str(a.get("seed", "—"))), escape(str(a.get("jet_r", "—"))), escape(window),
                     escape(str(a.get("detector", "—"))), escape(str(a.get("generator_version", "—")))]
            nums = (2, 3, 4)
            rows.append("<tr>" + "".join(f'<td class="num">{c}</td>' if i in nums else f"<td>{c}</td>"
                                         for i, c in enumerate(cells)) + "</tr>")
        rows.append("</table>")
        parts.append("\n".join(rows))
        parts.append("<h3>Provenance</h3>")
        for info in infos:
            attrs = "".join(f"<tr><th>{escape(str(k))}</th><td>{_attr_value(k, v)}</td></tr>"
                            for k, v in sorted(info.attrs.items()))
            parts.append(f"<details><summary>{escape(info.path.name)}: all {len(info.attrs)} attributes"
                         f"</summary><table>{attrs}</table></details>")
    dist = run_dir / "distributions.png"
    if dist.is_file():
        parts.append('<h3>Jet distributions</h3><div class="figs">'
                     + _figure(dist, "Jet kinematics and substructure of the samples (normalised)", wide=True)
                     + "</div>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------- public


def write_report(run_dir: str | Path, out: str | Path | None = None, title: str = "jetad report",
                 command: str | None = None) -> Path:
    """Write one self-contained HTML page summarising `run_dir`; returns its path (default run_dir/report.html).

    Sections: header, leaderboard of every ``**/metrics.json`` (by AUC), per evaluation its PNGs and the training
    curves of ``<detector>.pt``, and the jetad samples with their full provenance. ``command`` (e.g. the CLI
    line that made the run) is shown in the header when given.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    out = run_dir / "report.html" if out is None else Path(out)
    created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    rows, models = [], {}
    for i, ev in enumerate(load_evaluations(run_dir)):
        detector = str(ev.get("detector", "detector"))
        score_attrs = score_file_attrs(nearby(ev["_dir"], run_dir, f"scores_{detector}.h5"))
        model_path = nearby(ev["_dir"], run_dir, f"{detector}.pt")
        if model_path not in models:
            models[model_path] = load_model(model_path)
        model = models[model_path]
        n_params = ev["metrics"].get("n_parameters", score_attrs.get("n_parameters"))
        if n_params is None and model is not None:
            n_params = model.get("n_parameters")
        rows.append({
            "anchor": f"eval-{i}", "dir": ev["_dir"], "detector": detector, "metrics": ev["metrics"],
            "signal": str(ev.get("signal", "?")), "background": str(ev.get("background", "?")),
            "observer": ev.get("observer", "mass"),
            "model_params": ev.get("model") if isinstance(ev.get("model"), dict) else score_attrs.get("params"),
            "n_parameters": metric_value(n_params), "jets_per_s": metric_value(ev["metrics"].get("jets_per_s",
                                                                                 score_attrs.get("jets_per_s"))),
            "model_path": model_path if model is not None else None, "model": model,
        })

    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">created {escape(created)} with jetad {escape(__version__)}</p>',
        f'<p class="meta">run directory <code>{escape(str(run_dir.resolve()))}</code></p>',
    ]
    if command:
        body.append(f'<p class="meta">command <code>{escape(command)}</code></p>')
    body.append("<h2>Leaderboard</h2>")
    if rows:
        body.append('<p class="meta">One row per evaluation, sorted by AUC (best first). Test jets only.</p>')
        body.append(_leaderboard(rows))
        body.append(_LEGEND)
    else:
        body.append('<p class="note">no evaluations (metrics.json) found in the run directory</p>')
    grids = sorted(run_dir.rglob("auc_grid*.png"))
    if grids:  # signal-parameter scans (benchmark grid tasks): AUC heatmaps, one per task and detector
        body.append("<h2>AUC grids over signal parameters</h2>")
        body.append('<div class="grid">' + "".join(
            _figure(g, escape(str(g.parent.relative_to(run_dir))), wide=True) for g in grids) + "</div>")
    body.append("<h2>Evaluations</h2>")
    with tempfile.TemporaryDirectory(prefix="jetad-report-") as tmp:
        body.extend(_evaluation_section(r, Path(tmp)) for r in rows)
    body.append("<h2>Samples</h2>")
    body.append(_samples_section(run_dir))

    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_text(page, encoding="utf-8")
    tmp_out.replace(out)
    return out


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1400, height: int = 2400,
               timeout: float = 120.0) -> Path:
    """Render `html_path` with headless Chromium into a PNG of width x height pixels; returns the PNG path."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise RuntimeError("screenshot needs Chromium: no 'chromium' on PATH (Debian: apt-get install chromium)")
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    if not html_path.is_file():
        raise FileNotFoundError(f"{html_path}: no such HTML file")
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="jetad-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={width},{height}",
               f"--screenshot={png_path}", html_path.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"{html_path}: chromium did not finish the screenshot in {timeout:g} s") from err
    if not png_path.is_file():
        tail = (proc.stderr or proc.stdout or "").strip()[-800:]
        raise RuntimeError(f"{html_path}: chromium (exit {proc.returncode}) wrote no screenshot: {tail}")
    return png_path
