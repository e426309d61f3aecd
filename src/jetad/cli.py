"""The `jetad` command line: thin wrappers that parse options, call the library, and print."""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(
    help="jetad: find new physics as anomalous jets (generate -> features -> detectors -> evaluation).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@contextmanager
def progress_bar(description: str, total: int):
    """A rich progress bar; yields a callback(done, total) for the library."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done, tot=total: bar.update(task, completed=done, total=tot)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=1)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@app.command()
def generate(
    process: str = typer.Argument(..., help="qcd | top | wz | svj | lhco-bkg | lhco-sig"),
    n: int = typer.Option(1000, "-n", help="Rows: jets (jet processes) or events (lhco-*)."),
    seed: int = typer.Option(1, "--seed", help="Seed; the same seed gives the same file."),
    out: Path = typer.Option(..., "-o", "--out", help="Output .h5 (or shard directory when n > shard size)."),
    jet_r: float | None = typer.Option(None, "--jet-r", help="Anti-kT radius (default 0.8; lhco 1.0)."),
    pt_min: float | None = typer.Option(None, "--pt-min", help="Jet pT window low edge [GeV]."),
    pt_max: float | None = typer.Option(None, "--pt-max", help="Jet pT window high edge [GeV]."),
    eta_max: float | None = typer.Option(None, "--eta-max", help="Jet |eta| acceptance."),
    mpi: bool = typer.Option(True, "--mpi/--no-mpi", help="Multiparton interactions."),
    detector: str = typer.Option("delphes-like", "--detector", help="none | delphes-like"),
    n_constituents: int | None = typer.Option(None, "--n-constituents", help="Constituents kept per jet."),
    match: bool = typer.Option(True, "--match/--no-match", help="Require truth-parton matching (top, wz, svj)."),
    m_med: float = typer.Option(2000.0, "--m-med", help="SVJ: Z' mediator mass [GeV]."),
    r_inv: float = typer.Option(0.3, "--r-inv", help="SVJ: invisible fraction of dark-hadron decays."),
    m_dark: float = typer.Option(20.0, "--m-dark", help="SVJ: dark meson mass [GeV]."),
    lambda_dark: float | None = typer.Option(None, "--lambda", help="SVJ: dark confinement scale (3.2 m_dark^0.8)."),
    m_wprime: float = typer.Option(3500.0, "--m-wprime", help="lhco-sig: W' mass [GeV]."),
    m_x: float = typer.Option(500.0, "--m-x", help="lhco-sig: X mass [GeV]."),
    m_y: float = typer.Option(100.0, "--m-y", help="lhco-sig: Y mass [GeV]."),
    shard_size: int = typer.Option(10_000, "--shard-size", help="Rows per shard file."),
    workers: int = typer.Option(1, "--workers", help="Dask LocalCluster worker processes."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a dask.distributed scheduler."),
    features: bool = typer.Option(True, "--features/--no-features", help="Compute substructure features."),
) -> None:
    """Generate jets with Pythia 8 + FastJet (+ fast detector) into the jetad HDF5 schema."""
    from jetad.generate.processes import PROCESSES, default_config
    from jetad.generate.production import produce

    if process not in PROCESSES:
        _fail(f"unknown process {process!r}; choose one of {', '.join(PROCESSES)}")
    options: dict = {}
    if process == "svj":
        options = {"m_med": m_med, "r_inv": r_inv, "m_dark": m_dark}
        if lambda_dark is not None:
            options["lambda_dark"] = lambda_dark
    elif process == "lhco-sig":
        options = {"m_wprime": m_wprime, "m_x": m_x, "m_y": m_y}
    cfg = default_config(process, jet_r=jet_r, pt_min=pt_min, pt_max=pt_max, eta_max=eta_max, mpi=mpi,
                         detector=detector, n_constituents=n_constituents, match=match, options=options)
    t0 = time.perf_counter()
    try:
        with progress_bar(f"generate {process}", n) as cb:
            path = produce(cfg, n, seed, out, shard_size=shard_size, workers=workers, scheduler=scheduler,
                           features=features, progress=cb)
    except (ValueError, RuntimeError, FileExistsError) as err:
        _fail(str(err))
    dt = time.perf_counter() - t0
    console.print(f"wrote {n} rows of {process} to [bold]{path}[/bold] in {dt:.1f} s")


@app.command()
def features(
    src: Path = typer.Argument(..., help="jetad file or shard directory."),
    out: Path | None = typer.Option(None, "-o", "--out", help="Write a copy with features (default: in place)."),
    chunk_size: int = typer.Option(20_000, "--chunk-size", help="Jets per chunk (bounds memory)."),
) -> None:
    """Compute substructure features (soft-drop mass, N-subjettiness, ECFs, EFPs, pT^D, axes)."""
    from jetad.data import SchemaError, sample_info
    from jetad.physics.feature_files import write_features

    try:
        total = sample_info(src).n_jets
        with progress_bar("features", total) as cb:
            path = write_features(src, out, chunk_size=chunk_size, progress=cb)
    except (SchemaError, FileNotFoundError) as err:
        _fail(str(err))
    console.print(f"features written to [bold]{path}[/bold]")


@app.command()
def convert(
    src: Path = typer.Argument(..., help="Public-format file: LHC Olympics HDF5, top-tagging HDF5, NanoAOD ROOT."),
    out: Path = typer.Option(..., "-o", "--out", help="Output jetad .h5"),
    fmt: str | None = typer.Option(None, "--format", help="lhco | toptag | nanoaod (default: detect)."),
    chunk_size: int = typer.Option(50_000, "--chunk-size", help="Rows per chunk."),
) -> None:
    """Convert a public dataset into the jetad schema, streaming in chunks."""
    from jetad.data import SchemaError
    from jetad.data.formats import convert as convert_file

    try:
        with progress_bar(f"convert {src.name}", 1) as cb:
            path = convert_file(src, out, fmt=fmt, chunk_size=chunk_size, progress=cb)
    except (SchemaError, FileNotFoundError) as err:
        _fail(str(err))
    console.print(f"converted {src} -> [bold]{path}[/bold]")


@app.command()
def inspect(
    files: list[Path] = typer.Argument(..., help="One or more jetad files (overlaid in the plot)."),
    plot: Path | None = typer.Option(None, "--plot", help="PNG of the standard distributions."),
) -> None:
    """Summarise files: counts, provenance, feature quantiles; plot the standard distributions."""
    from jetad.data import SchemaError
    from jetad.evaluate.inspect import QUANTILES, plot_distributions, summarize

    try:
        summaries = [summarize(f) for f in files]
    except (SchemaError, FileNotFoundError) as err:
        _fail(str(err))
    for s in summaries:
        console.rule(f"[bold]{s.path}")
        console.print(f"{s.n_jets} rows in {s.n_shards} file(s), P = {s.n_constituents}, labels {s.labels}")
        keys = ("process", "generator", "generator_version", "seed", "jet_algorithm", "jet_r", "jet_pt_min",
                "jet_pt_max", "mpi", "detector", "process_options", "format", "source", "jetad_version",
                "created_at", "selection_efficiency")
        for k in keys:
            if k in s.attrs:
                console.print(f"  {k:>20}: {s.attrs[k]}")
        table = Table("column", *[f"q{int(q * 100)}" for q in QUANTILES], title="quantiles")
        for name, qs in sorted(s.quantiles().items()):
            table.add_row(name, *[f"{q:.4g}" for q in qs])
        console.print(table)
    if plot:
        path = plot_distributions(summaries, plot)
        console.print(f"plot: [bold]{path}[/bold]")


@app.command()
def search(
    method: str = typer.Argument(..., help="cwola | cathode | tag_n_train | quak"),
    data: Path = typer.Argument(..., help="Dijet events (a converted black box, or lhco-bkg/lhco-sig files)."),
    sr_low: float = typer.Option(3300.0, "--sr-low", help="Signal region low edge in mjj [GeV]."),
    sr_high: float = typer.Option(3700.0, "--sr-high", help="Signal region high edge in mjj [GeV]."),
    settings: list[str] = typer.Option([], "--set", help="Search parameter key=value (repeatable)."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "-o", "--out", help="Score file (feed it to 'jetad bumphunt')."),
    save: Path | None = typer.Option(None, "--save", help="Also save the fitted search ('jetad score' reads it)."),
) -> None:
    """Weakly supervised resonant search on the data itself; writes per-event scores with mjj for the bump hunt."""
    from jetad.data import SchemaError, read_sample
    from jetad.data.scores import ScoreTable, observers_of, write_scores
    from jetad.tasks.weak_supervision import make_search

    try:
        sample = read_sample(data, constituents=False)
        with console.status(f"{method}: fitting on {len(sample)} events"):
            found = make_search(method, signal_region=(sr_low, sr_high), seed=seed, **parse_settings(settings))
            scores = found.fit_score(sample)
    except (SchemaError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    table = ScoreTable(score=scores, label=sample.label, weight=sample.weight,
                       source=np.zeros(len(sample), np.int16), sources=[str(data)], observers=observers_of(sample),
                       attrs={"detector": method, "params": found.get_params()})
    write_scores(out, table)
    if save is not None:
        try:
            found.save(save)
        except OSError as err:
            _fail(f"{save}: cannot save the fitted search ({err})")
        console.print(f"fitted search saved -> [bold]{save}[/bold] (score other files with 'jetad score {save} ...')")
    console.print(f"{method}: scored {len(scores)} events ({int(found.signal_region_.sum())} in the signal region) "
                  f"-> [bold]{out}[/bold]; next: jetad bumphunt {out}")


@app.command()
def bumphunt(
    scores: Path = typer.Argument(..., help="Score file of dijet events (from 'jetad score'), with the mjj observer."),
    eps: list[float] = typer.Option([1.0, 0.1, 0.01], "--cut", help="Background-efficiency cuts on the score."),
    width: float = typer.Option(0.1, "--width", help="Signal-window width as a fraction of its centre."),
    bins: int = typer.Option(40, "--bins", help="mjj bins of the background fit."),
    mjj_min: float | None = typer.Option(None, "--mjj-min", help="Fit range low edge [GeV] (default: data)."),
    mjj_max: float | None = typer.Option(None, "--mjj-max", help="Fit range high edge [GeV]."),
    toys: int = typer.Option(0, "--toys", help="Background-only toys for the look-elsewhere effect."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("bumphunt"), "-o", "--out", help="Directory for bumphunt.json and plots."),
) -> None:
    """Fit mjj with the dijet function after score cuts, scan windows, report local/global significance."""
    from jetad.data import SchemaError
    from jetad.data.scores import read_scores
    from jetad.evaluate.bumphunt import FitError, bump_hunt, plot_bumphunt, plot_significance_scan

    try:
        table = read_scores(scores)
        if "mjj" not in table.observers:
            _fail(f"{scores}: no mjj observer; score dijet files (lhco-bkg / lhco-sig / converted LHCO boxes)")
        mass_range = (mjj_min, mjj_max) if mjj_min is not None and mjj_max is not None else None
        results = bump_hunt(table.observers["mjj"], table.score, efficiencies=tuple(eps), weights=table.weight,
                            width_fraction=width, bins=bins, range=mass_range, n_toys=toys, seed=seed)
    except (SchemaError, FileNotFoundError, FitError, ValueError) as err:
        _fail(str(err))
    out.mkdir(parents=True, exist_ok=True)
    caption = f"{scores.name}: {table.attrs.get('detector', '?')}, {len(table.score)} events, seed {seed}"
    tab = Table("eps_B cut", "best window [GeV]", "local Z", "signal yield", "global p", title="bump hunt")
    for e, r in results.items():
        plot_bumphunt(r, out / f"bumphunt_eps{e:g}.png", caption=caption)
        sm = r.summary()
        window = f"{sm['best_window_gev'][0]:.0f}-{sm['best_window_gev'][1]:.0f}"
        tab.add_row(f"{e:g}", window, f"{r.max_z:.2f}", f"{sm['signal_yield']:.0f} ± {sm['signal_yield_err']:.0f}",
                    f"{sm['global_p']:.3g}" if sm["n_toys"] else "-")
    plot_significance_scan(results, out / "significance_scan.png", caption=caption)
    (out / "bumphunt.json").write_text(json.dumps({f"{e:g}": r.summary() for e, r in results.items()}, indent=1,
                                                  default=str))
    console.print(tab)
    console.print(f"plots and bumphunt.json in [bold]{out}/[/bold]")


@app.command()
def blackbox(
    background: Path = typer.Argument(..., help="QCD dijet jetad file (from 'jetad generate lhco-bkg')."),
    signal: Path | None = typer.Option(None, "--signal", help="Signal dijet file (from 'jetad generate lhco-sig')."),
    n_bkg: int = typer.Option(..., "--n-bkg", help="Events in the box (background rows, or all rows if secret)."),
    n_sig: str = typer.Option("0", "--n-sig", help="Injected signal events, or 'secret' (drawn, stored in the key)."),
    out: Path = typer.Option(..., "-o", "--out", help="Black box HDF5 (LHC Olympics layout, no labels)."),
    key: Path | None = typer.Option(None, "--key", help="Truth key file (default: OUT.key.json)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Mix QCD dijets with an injected signal into an LHC-Olympics-style black box, truth kept separately."""
    from jetad.data import SchemaError
    from jetad.tasks.blackbox import make_blackbox

    try:
        count = n_sig if n_sig == "secret" else int(n_sig)
        path = make_blackbox(background, signal, n_bkg, count, out, key_out=key, seed=seed)
    except (SchemaError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    console.print(f"black box [bold]{path}[/bold] (truth in {key or str(out) + '.key.json'}); "
                  f"convert it with 'jetad convert {path} -o box.h5'")


@app.command()
def export(
    model: Path = typer.Argument(..., help="Model file from 'jetad train'."),
    onnx: Path = typer.Option(..., "--onnx", help="ONNX file to write (model inputs -> anomaly score)."),
    sample: Path | None = typer.Option(None, "--sample", help="Jets to check ONNX Runtime against PyTorch and time."),
) -> None:
    """Export a neural detector to ONNX; with --sample, check the scores and report latency and throughput."""
    import numpy as np

    from jetad.data import SchemaError, read_sample
    from jetad.detectors import Detector
    from jetad.detectors.export import export_onnx, onnx_inputs, onnx_latency

    try:
        det = Detector.load(model)
        path = export_onnx(det, onnx)
    except (SchemaError, FileNotFoundError, NotImplementedError) as err:
        _fail(str(err))
    console.print(f"ONNX model: [bold]{path}[/bold] ({det.n_parameters()} parameters)")
    if sample is not None:
        import onnxruntime as ort

        jets = read_sample(sample, stop=2048)
        x = onnx_inputs(det, jets)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ort_scores = session.run(None, {session.get_inputs()[0].name: x})[0]
        diff = float(np.max(np.abs(ort_scores - det.score(jets)) / (np.abs(det.score(jets)) + 1e-6)))
        timing = onnx_latency(path, x, det=det)
        tab = Table("engine", "batch", "latency [ms/jet]", "throughput [jets/s]",
                    title=f"{det.name}: max relative difference ONNX vs PyTorch {diff:.1e}")
        for engine, rows in timing.items():
            for b, r in rows.items():
                tab.add_row(engine, str(b), f"{r['latency_ms_per_jet']:.4f}", f"{r['throughput_jets_per_s']:.0f}")
        console.print(tab)


@app.command()
def benchmark(
    tasks: str = typer.Option("top-vs-qcd", "--tasks", help="Comma-separated task names ('all' for every task)."),
    methods: str = typer.Option("ae,vae,flow,emd,nae,wnae", "--methods", help="Comma-separated detector names."),
    size: str = typer.Option("small", "--size", help="small | full"),
    workdir: Path = typer.Option(Path("bench-out/benchmark"), "--workdir", help="Samples, results, report."),
    db: str | None = typer.Option(None, "--db", help="SQLite file or sqlite:///URL (default WORKDIR/results.sqlite)."),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(1, "--workers", help="Dask worker processes for sample generation."),
    report_html: bool = typer.Option(True, "--report/--no-report", help="Write WORKDIR/report.html at the end."),
) -> None:
    """Every detector on every named task: a leaderboard (CSV, markdown, SQLite), resumable cell by cell."""
    from jetad.evaluate.report import write_report
    from jetad.tasks.benchmark import run_benchmark
    from jetad.tasks.registry import TASKS

    names = list(TASKS) if tasks == "all" else [t.strip() for t in tasks.split(",")]
    try:
        rows = run_benchmark(names, [m.strip() for m in methods.split(",")], size=size, workdir=workdir, db=db,
                             seed=seed, workers=workers, progress=lambda msg: console.print(f"[cyan]>>[/cyan] {msg}"))
    except ValueError as err:
        _fail(str(err))
    tab = Table("task", "method", "signal", "status", "AUC", "max SIC", "1/eps_B@0.3", "jets/s", title="benchmark")
    for r in rows:
        auc_v = r.get("auc")
        tab.add_row(str(r.get("task")), str(r.get("method")), str(r.get("signal") or ""), str(r.get("status")),
                    f"{auc_v:.3f}" if isinstance(auc_v, float) else "", f"{r.get('max_sic') or 0:.2f}",
                    f"{r.get('rejection_eps_s_0_3') or 0:.1f}", f"{r.get('infer_jets_per_s') or 0:.0f}")
    console.print(tab)
    if report_html:
        console.print(f"report: [bold]{write_report(workdir, title=f'jetad benchmark ({size})')}[/bold]")
    console.print(f"results: {workdir}/results.md, results.csv, {db or workdir / 'results.sqlite'}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory (jetad demo output, or evaluations + samples + models)."),
    out: Path | None = typer.Option(None, "-o", "--out", help="HTML file (default RUN_DIR/report.html)."),
    title: str = typer.Option("jetad report", "--title"),
    png: Path | None = typer.Option(None, "--screenshot", help="Also render the page to this PNG (headless chromium)."),
) -> None:
    """One self-contained HTML report: leaderboard, ROC/SIC/sculpting plots, training curves, sample provenance."""
    from jetad.evaluate.report import screenshot, write_report

    if not run_dir.is_dir():
        _fail(f"{run_dir}: not a directory")
    path = write_report(run_dir, out, title=title, command="jetad report " + str(run_dir))
    console.print(f"report: [bold]{path}[/bold] (open it in any browser, offline)")
    if png:
        try:
            console.print(f"screenshot: {screenshot(path, png)}")
        except RuntimeError as err:
            _fail(str(err))


@app.command()
def demo(
    out: Path = typer.Option(Path("demo"), "-o", "--out", help="Output directory."),
    n: int = typer.Option(400, "-n", help="Jets per sample (QCD gets twice as many: train + test)."),
    seed: int = typer.Option(1, "--seed"),
) -> None:
    """The main job on a small default: generate QCD/top/W-Z, train detectors on QCD, evaluate top vs QCD."""
    from jetad.tasks.demo import run_demo

    t0 = time.perf_counter()
    result = run_demo(out, n=n, seed=seed, step=lambda msg: console.print(f"[cyan]>>[/cyan] {msg}"))
    tab = Table("detector", "AUC", "max SIC", "1/eps_B @ eps_S=0.3", "JSD @ eps_B=0.1",
                title=f"top vs QCD, trained on {n} QCD jets")
    for name, m in result.metrics.items():
        tab.add_row(name, f"{m['auc']:.3f}", f"{m['max_sic']:.2f}", f"{m['rejection_at_eps_s_0.3']:.1f}",
                    f"{m.get('jsd_at_eps_b_0.1', float('nan')):.3f}")
    console.print(tab)
    console.print(f"report: [bold]{result.report}[/bold] (samples, models, scores and eval_*/ plots in {out}/; "
                  f"{time.perf_counter() - t0:.0f} s)")


def parse_settings(pairs: list[str]) -> dict:
    """--set key=value pairs; values are parsed as JSON when they can be (numbers, lists, booleans)."""
    params = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


@app.command()
def train(
    method: str = typer.Argument(..., help="Detector: ae | vae | nae | wnae | flow | emd | ..."),
    train_files: list[Path] = typer.Option(..., "--train", help="Background jets (repeat to combine files)."),
    val_file: Path | None = typer.Option(None, "--val", help="Background validation jets (default: a split)."),
    inputs: str | None = typer.Option(None, "--inputs", help="features | images | constituents"),
    feature_names: str | None = typer.Option(None, "--features", help="Comma-separated feature columns."),
    settings: list[str] = typer.Option([], "--set", help="Hyper-parameter key=value (repeatable)."),
    n_max: int | None = typer.Option(None, "--n-max", help="Use at most this many training jets."),
    out: Path = typer.Option(..., "-o", "--out", help="Model file to write."),
) -> None:
    """Fit a detector on background jets; resumable (a checkpoint sits next to the model until it is done)."""
    from jetad.data import SchemaError, concatenate, read_sample
    from jetad.detectors import make_detector

    params = parse_settings(settings)
    spec = dict(params.pop("inputs", {}) or {})
    if inputs:
        spec["kind"] = inputs
    if feature_names:
        spec["features"] = tuple(x.strip() for x in feature_names.split(","))
    try:
        det = make_detector(method, **params, **({"inputs": spec} if spec else {}))
        if hasattr(det, "checkpoint") and det.checkpoint is None:
            det.checkpoint = str(out) + ".ckpt"
        needs_constituents = det._input_spec().kind != "features"
        parts = [read_sample(f, stop=n_max, constituents=needs_constituents) for f in train_files]
        train_s = parts[0] if len(parts) == 1 else concatenate(parts)
        if len(parts) > 1:
            train_s.attrs |= {"source": " + ".join(map(str, train_files)),
                              "label_names": {k: v for p in parts for k, v in p.attrs.get("label_names", {}).items()}}
        val_s = read_sample(val_file, stop=n_max, constituents=needs_constituents) if val_file else None
        t0 = time.perf_counter()
        epochs = getattr(det, "epochs", 1)
        with progress_bar(f"train {method}", epochs) as cb:
            kwargs = {"progress": lambda e, tot, logs: cb(e, tot)} if hasattr(det, "epochs") else {}
            det.fit(train_s, val_s, **kwargs)
        if hasattr(det, "checkpoint"):
            det.checkpoint = None
        det.save(out)
    except (SchemaError, ValueError, FileNotFoundError, RuntimeError) as err:
        _fail(str(err))
    Path(str(out) + ".ckpt").unlink(missing_ok=True)
    history = getattr(det, "history_", None) or {}
    console.print(f"trained {method} on {len(train_s)} jets in {time.perf_counter() - t0:.1f} s "
                  f"({det.n_parameters()} parameters); {history.get('stopped', '')}")
    if history.get("best_epoch", -1) >= 0:
        console.print(f"best epoch {history['best_epoch']} (criterion {history['best_criterion']:.5g})")
    console.print(f"model: [bold]{out}[/bold]")


@app.command()
def score(
    model: Path = typer.Argument(..., help="Model file from 'jetad train' (or 'jetad search --save')."),
    files: list[Path] = typer.Argument(..., help="Jet files to score."),
    out: Path = typer.Option(..., "-o", "--out", help="Score file (HDF5) to write."),
    chunk_size: int = typer.Option(50_000, "--chunk-size"),
) -> None:
    """Score jets with a trained detector or saved search (streamed in chunks); keeps labels and observers."""
    from jetad.data import SchemaError, sample_info
    from jetad.detectors.scoring import score_files
    from jetad.tasks.weak_supervision import load_model

    try:
        det = load_model(model)
        total = sum(sample_info(f).n_jets for f in files)
        with progress_bar("score", total) as cb:
            table = score_files(det, files, out, chunk_size=chunk_size, progress=cb)
    except (SchemaError, FileNotFoundError, RuntimeError) as err:
        _fail(str(err))
    console.print(f"scored {len(table.score)} jets ({table.attrs['jets_per_s']:.0f} jets/s) -> [bold]{out}[/bold]")


@app.command()
def evaluate(
    scores: Path = typer.Argument(..., help="Score file from 'jetad score'."),
    signal: str = typer.Option(..., "--signal", help="Signal jets: a scored file (name/stem) or a label."),
    background: str = typer.Option(..., "--background", help="Background jets: a scored file or a label."),
    out: Path = typer.Option(Path("evaluation"), "-o", "--out", help="Directory for metrics.json and plots."),
    observer: str = typer.Option("mass", "--mass", help="Observer used for sculpting (mass, sd_mass, mjj)."),
) -> None:
    """ROC/AUC, SIC, background rejection, mass sculpting; writes metrics.json and PNG plots."""
    from jetad.data import SchemaError
    from jetad.data.scores import read_scores
    from jetad.evaluate.report_files import evaluate_score_table

    try:
        table = read_scores(scores)
        result = evaluate_score_table(table, signal, background, out, observer=observer, path=scores)
    except (SchemaError, FileNotFoundError) as err:
        _fail(str(err))
    tab = Table("metric", "value", title=f"{table.attrs.get('detector', '?')}: {signal} vs {background}")
    for k, v in result["metrics"].items():
        tab.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(tab)
    console.print(f"metrics and plots in [bold]{out}/[/bold]")


if __name__ == "__main__":
    app()
