"""Commands that train, score, export and evaluate detectors, and the demo, benchmark and report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import typer
from rich.table import Table

from jetad.cli.base import app, console, progress_bar, rich_table
from jetad.cli.options import (
    build_estimator,
    check_choice,
    check_not_input,
    check_writable,
    database_option,
    existing,
    input_options,
    int_list,
    parse_settings,
    writable,
)


@app.command()
def export(
    model: Path = typer.Argument(..., callback=existing(), help="Model file from 'jetad train'."),
    onnx: Path = typer.Option(..., "--onnx", callback=writable(),
                              help="ONNX file to write (model inputs -> anomaly score)."),
    sample: Path | None = typer.Option(None, "--sample", callback=existing("sample"),
                                       help="Jets to check ONNX Runtime against PyTorch and time."),
) -> None:
    """Export a neural detector to ONNX; with --sample, check the scores and report latency and throughput."""
    from jetad.data import read_sample
    from jetad.detectors import Detector
    from jetad.detectors.export import export_onnx, onnx_inputs, onnx_latency, onnx_metadata

    check_not_input(onnx, [model, *([sample] if sample else [])], "--onnx")
    det = Detector.load(model)
    jets = read_sample(sample, stop=2048) if sample is not None else None
    path = export_onnx(det, onnx, check_sample=jets)
    console.print(f"ONNX model: [bold]{path}[/bold] ({det.n_parameters()} parameters)")
    if jets is not None:
        diff = float(onnx_metadata(path)["check_max_rel_diff"])
        timing = onnx_latency(path, onnx_inputs(det, jets), det=det)
        rows = [(engine, str(b), f"{r['latency_ms_per_jet']:.4f}", f"{r['throughput_jets_per_s']:.0f}")
                for engine, by_batch in timing.items() for b, r in by_batch.items()]
        console.print(rich_table(f"{det.name}: max relative difference ONNX vs PyTorch {diff:.1e}",
                            ("engine", "batch", "latency [ms/jet]", "throughput [jets/s]"), rows))


@app.command()
def benchmark(
    tasks: str = typer.Option("top-vs-qcd", "--tasks", help="Comma-separated task names ('all' for every task)."),
    methods: str = typer.Option("ae,vae,flow,emd,nae,wnae", "--methods", help="Comma-separated detector names."),
    size: str = typer.Option("small", "--size", help="small | full"),
    workdir: Path = typer.Option(Path("bench-out/benchmark"), "--workdir", callback=writable("dir"),
                                 help="Results, leaderboard, report."),
    db: str | None = typer.Option(None, "--db", callback=database_option,
                                  help="SQLite file or sqlite:///URL (default WORKDIR/results.sqlite)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Training seed (one cell per task and method)."),
    seeds: str | None = typer.Option(None, "--seeds", callback=int_list("--seeds", 0),
                                     help="Comma-separated training seeds, an axis of the run (overrides --seed)."),
    n_train: str | None = typer.Option(None, "--n-train", callback=int_list("--n-train", 1),
                                       help="Comma-separated background training sizes, an axis (default: the "
                                            "task's size)."),
    n_test: int | None = typer.Option(None, "--n-test", min=1, help="Test jets per sample (default: the size's)."),
    cache: Path | None = typer.Option(None, "--cache", callback=writable("dir"),
                                      help="Sample cache folder (default $JETAD_CACHE or ~/.cache/jetad)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Dask worker processes for sample generation."),
    report_html: bool = typer.Option(True, "--report/--no-report", help="Write WORKDIR/report.html at the end."),
) -> None:
    """Detectors x named tasks x training sizes x seeds: leaderboards (markdown, CSV, SQLite), resumable."""
    from jetad.evaluate.report import write_report
    from jetad.tasks.benchmark import run_benchmark
    from jetad.tasks.leaderboard import auc_text, cell_flags, cell_text
    from jetad.tasks.registry import SIZES, TASKS

    check_choice(size, SIZES, "--size")
    names = list(TASKS) if tasks == "all" else [t.strip() for t in tasks.split(",") if t.strip()]
    method_names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names or not method_names:
        raise typer.BadParameter("give at least one task and one method", param_hint="'--tasks'/'--methods'")
    rows = run_benchmark(names, method_names, size=size, workdir=workdir, db=db, seed=seed, workers=workers,
                         seeds=cast(list[int] | None, seeds), n_train=cast(list[int] | None, n_train), n_test=n_test,
                         cache=cache,
                         step=lambda msg: console.print(f"[cyan]>>[/cyan] {msg}"))
    console.print(rich_table("benchmark", ("task", "method", "signal", "n_train", "seed", "status", "AUC ± stat",
                                           "dCor(mass)", "flags"),
                             [(str(r.get("task")), str(r.get("method")), str(r.get("signal") or ""),
                               str(r.get("n_train")), str(r.get("seed")), str(r.get("status")),
                               auc_text(r.get("auc"), r.get("auc_stat_err")),
                               cell_text(r.get("dcor_mass"), "dcor_mass"),
                               "; ".join(cell_flags(str(r.get("method")), r.get("n_train"), r.get("auc"),
                                                    r.get("auc_stat_err")))) for r in rows]))
    if report_html:
        console.print(f"report: [bold]{write_report(workdir, title=f'jetad benchmark ({size})')}[/bold]")
    console.print(f"results: {workdir}/leaderboard.md, results.md, results.csv, {db or workdir / 'results.sqlite'}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., callback=existing("dir"),
                                   help="A run directory (jetad demo output, or evaluations + samples + models)."),
    out: Path | None = typer.Option(None, "-o", "--out", callback=writable(),
                                    help="HTML file (default RUN_DIR/report.html)."),
    title: str = typer.Option("jetad report", "--title"),
    png: Path | None = typer.Option(None, "--screenshot", callback=writable(),
                                    help="Also render the page to this PNG (headless chromium)."),
) -> None:
    """One self-contained HTML report: leaderboard, ROC/SIC/sculpting plots, training curves, sample provenance."""
    from jetad.evaluate.report import screenshot, write_report

    if out is None:
        check_writable(run_dir / "report.html", "RUN_DIR")
    path = write_report(run_dir, out, title=title, command="jetad report " + str(run_dir))
    console.print(f"report: [bold]{path}[/bold] (open it in any browser, offline)")
    if png:
        console.print(f"screenshot: {screenshot(path, png)}")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo"), "-o", "--out", callback=writable("dir"), help="Output directory."),
    n: int = typer.Option(400, "-n", min=10, help="Jets per sample, >= 10 (QCD gets twice: train + test)."),
    seed: int = typer.Option(1, "--seed", min=0),
    cache: Path | None = typer.Option(None, "--cache", callback=writable("dir"),
                                      help="Sample cache folder (default $JETAD_CACHE or ~/.cache/jetad)."),
) -> None:
    """The main job on a small default: generate QCD/top/W-Z, train detectors on QCD, evaluate top vs QCD."""
    from jetad.tasks.demo import run_demo

    t0 = time.perf_counter()
    result = run_demo(out, n=n, seed=seed, cache=cache, step=lambda msg: console.print(f"[cyan]>>[/cyan] {msg}"))
    tab = Table("detector", "AUC", "max SIC", "1/eps_B @ eps_S=0.3", "JSD @ eps_B=0.1",
                title=f"top vs QCD, trained on {n} QCD jets")
    for name, m in result.metrics.items():
        tab.add_row(name, f"{m['auc']:.3f}", f"{m['max_sic']:.2f}", f"{m['rejection_at_eps_s_0.3']:.1f}",
                    f"{m.get('jsd_at_eps_b_0.1', float('nan')):.3f}")
    console.print(tab)
    console.print(f"report: [bold]{result.report}[/bold] (samples, models, scores and eval_*/ plots in {out}/; "
                  f"{time.perf_counter() - t0:.0f} s)")


@app.command()
def train(
    method: str = typer.Argument(..., help="Detector: ae | vae | nae | wnae | flow | emd | ..."),
    train_files: list[Path] = typer.Option(..., "--train", callback=existing("sample"),
                                           help="Background jets (repeat to combine files)."),
    val_file: Path | None = typer.Option(None, "--val", callback=existing("sample"),
                                         help="Background validation jets (default: a split)."),
    inputs: str | None = typer.Option(None, "--inputs", help="features | images | constituents"),
    feature_names: str | None = typer.Option(None, "--features", help="Comma-separated feature columns."),
    settings: list[str] = typer.Option([], "--set", help="Hyper-parameter key=value (repeatable)."),
    n_max: int | None = typer.Option(None, "--n-max", min=1, help="Use at most this many training jets."),
    out: Path = typer.Option(..., "-o", "--out", callback=writable(), help="Model file to write."),
) -> None:
    """Fit a detector on background jets; resumable (a checkpoint sits next to the model until it is done)."""
    from jetad.detectors import REGISTRY, make_detector
    from jetad.detectors.inputs import INPUT_KINDS
    from jetad.tasks.train import train_detector

    check_choice(inputs, INPUT_KINDS, "--inputs")
    check_not_input(out, [*train_files, *([val_file] if val_file else [])])
    params = input_options(parse_settings(settings), inputs, feature_names)
    det = build_estimator(method, REGISTRY, "detector", lambda: make_detector(method, **params))
    with progress_bar(f"train {method}", getattr(det, "epochs", 1)) as cb:
        done = train_detector(det, train_files, out, val_file=val_file, n_max=n_max,
                              progress=cb)
    history = done.history
    console.print(f"trained {method} on {done.n_train} jets in {done.seconds:.1f} s "
                  f"({det.n_parameters()} parameters); {history.get('stopped', '')}")
    if history.get("best_epoch", -1) >= 0:
        console.print(f"best epoch {history['best_epoch']} (criterion {history['best_criterion']:.5g})")
    console.print(f"model: [bold]{out}[/bold]")


@app.command()
def score(
    model: Path = typer.Argument(..., callback=existing(),
                                 help="Model file from 'jetad train' (or 'jetad search --save')."),
    files: list[Path] = typer.Argument(..., callback=existing("sample"), help="Jet files to score."),
    out: Path = typer.Option(..., "-o", "--out", callback=writable(), help="Score file (HDF5) to write."),
    chunk_size: int = typer.Option(50_000, "--chunk-size", min=1, help="Jets per chunk (bounds memory)."),
) -> None:
    """Score jets with a trained detector or saved search (streamed in chunks); keeps labels and observers."""
    from jetad.detectors.scoring import score_files
    from jetad.searches import load_model

    check_not_input(out, [model, *files])
    det = load_model(model)
    with progress_bar("score") as cb:
        table = score_files(det, files, out, chunk_size=chunk_size, progress=cb)
    console.print(f"scored {len(table.score)} jets ({table.attrs['jets_per_s']:.0f} jets/s) -> [bold]{out}[/bold]")


@app.command()
def evaluate(
    scores: Path = typer.Argument(..., callback=existing(), help="Score file from 'jetad score'."),
    signal: str = typer.Option(..., "--signal", help="Signal jets: a scored file (name/stem) or a label."),
    background: str = typer.Option(..., "--background", help="Background jets: a scored file or a label."),
    out: Path = typer.Option(Path("evaluation"), "-o", "--out", callback=writable("dir"),
                             help="Directory for metrics.json and plots."),
    observer: str = typer.Option("mass", "--mass", help="Observer used for sculpting (mass, sd_mass, mjj)."),
) -> None:
    """ROC/AUC, SIC, background rejection, mass sculpting; writes metrics.json and PNG plots."""
    from jetad.data.scores import read_scores
    from jetad.evaluate.report_files import evaluate_score_table

    if signal == background:
        raise typer.BadParameter(f"--signal and --background are both {signal!r}; a sample against itself has "
                                 "AUC 0.5 by construction", param_hint="'--background'")
    table = read_scores(scores)
    result = evaluate_score_table(table, signal, background, out, observer=observer, path=scores)
    tab = Table("metric", "value", title=f"{table.attrs.get('detector', '?')}: {signal} vs {background}")
    for k, v in result["metrics"].items():
        tab.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(tab)
    console.print(f"metrics and plots in [bold]{out}/[/bold]")
