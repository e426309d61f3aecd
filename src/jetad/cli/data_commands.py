"""Commands that make and look at jet files: generate, features, convert, inspect, blackbox."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from jetad.cli.base import app, console, progress_bar
from jetad.cli.options import (
    check_choice,
    check_not_input,
    check_writable,
    existing,
    n_sig_option,
    number_in,
    positive,
    process_options,
    writable,
)


@app.command()
def generate(
    process: str = typer.Argument(..., help="qcd | top | wz | svj | lhco-bkg | lhco-sig"),
    n: int = typer.Option(1000, "-n", min=1, help="Rows: jets (jet processes) or events (lhco-*)."),
    seed: int = typer.Option(1, "--seed", min=0, help="Seed; the same seed gives the same file."),
    out: Path = typer.Option(..., "-o", "--out", help="Output .h5 (or shard directory when n > shard size)."),
    jet_r: float | None = typer.Option(None, "--jet-r", callback=positive, help="Anti-kT radius (default 0.8; "
                                       "lhco 1.0)."),
    pt_min: float | None = typer.Option(None, "--pt-min", min=0, help="Jet pT window low edge [GeV]."),
    pt_max: float | None = typer.Option(None, "--pt-max", callback=positive, help="Jet pT window high edge [GeV]."),
    eta_max: float | None = typer.Option(None, "--eta-max", callback=positive, help="Jet |eta| acceptance."),
    mpi: bool = typer.Option(True, "--mpi/--no-mpi", help="Multiparton interactions."),
    detector: str = typer.Option("delphes-like", "--detector", help="none | delphes-like"),
    n_constituents: int | None = typer.Option(None, "--n-constituents", min=1, help="Constituents kept per jet."),
    match: bool = typer.Option(True, "--match/--no-match", help="Require truth-parton matching (top, wz, svj)."),
    m_med: float = typer.Option(2000.0, "--m-med", callback=positive, help="SVJ: Z' mediator mass [GeV]."),
    r_inv: float = typer.Option(0.3, "--r-inv", min=0, max=1, help="SVJ: invisible fraction of dark-hadron decays."),
    m_dark: float = typer.Option(20.0, "--m-dark", callback=positive, help="SVJ: dark meson mass [GeV]."),
    lambda_dark: float | None = typer.Option(None, "--lambda", callback=positive,
                                             help="SVJ: dark confinement scale (3.2 m_dark^0.8)."),
    m_wprime: float = typer.Option(3500.0, "--m-wprime", callback=positive, help="lhco-sig: W' mass [GeV]."),
    m_x: float = typer.Option(500.0, "--m-x", callback=positive, help="lhco-sig: X mass [GeV]."),
    m_y: float = typer.Option(100.0, "--m-y", callback=positive, help="lhco-sig: Y mass [GeV]."),
    decay: str | None = typer.Option(None, "--decay", help="lhco-sig: 'xy' (W' -> X Y, default) or 'qq' (W' -> q q')."),
    tune: str | None = typer.Option(None, "--tune", help="lhco-bkg: a mis-modelled simulation variant (a14, 4c, "
                                    "fsr-up, fsr-down, vincia; default the nominal Monash tune)."),
    shard_size: int = typer.Option(10_000, "--shard-size", min=1, help="Rows per shard file."),
    workers: int = typer.Option(1, "--workers", min=1, help="Dask LocalCluster worker processes."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a dask.distributed scheduler."),
    features: bool = typer.Option(True, "--features/--no-features", help="Compute substructure features."),
) -> None:
    """Generate jets with Pythia 8 + FastJet (+ fast detector) into the jetad HDF5 schema."""
    from jetad.generate.detector import DETECTORS
    from jetad.generate.processes import PROCESSES, default_config
    from jetad.generate.production import produce

    check_choice(detector, DETECTORS, "--detector")
    check_writable(out, "--out", "file" if n <= shard_size else "dir")
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; choose one of {', '.join(PROCESSES)}")
    options = process_options(process, m_med=m_med, r_inv=r_inv, m_dark=m_dark, lambda_dark=lambda_dark,
                               m_wprime=m_wprime, m_x=m_x, m_y=m_y, decay=decay, tune=tune)
    try:  # the settings are checked where they are made (GenerationConfig); a bad combination is a usage error
        cfg = default_config(process, jet_r=jet_r, pt_min=pt_min, pt_max=pt_max, eta_max=eta_max, mpi=mpi,
                             detector=detector, n_constituents=n_constituents, match=match, options=options)
    except ValueError as err:
        raise typer.BadParameter(f"{err}; see --pt-min/--pt-max, --jet-r, --eta-max", param_hint="generate") \
            from None
    t0 = time.perf_counter()
    with progress_bar(f"generate {process}", n) as cb:
        path = produce(cfg, n, seed, out, shard_size=shard_size, workers=workers, scheduler=scheduler,
                       features=features, progress=cb)
    console.print(f"wrote {n} rows of {process} to [bold]{path}[/bold] in {time.perf_counter() - t0:.1f} s")


@app.command()
def features(
    src: Path = typer.Argument(..., callback=existing("sample"), help="jetad file or shard directory."),
    out: Path | None = typer.Option(None, "-o", "--out", callback=writable(),
                                    help="Write a copy with features (default: in place)."),
    chunk_size: int = typer.Option(20_000, "--chunk-size", min=1, help="Jets per chunk (bounds memory)."),
) -> None:
    """Compute substructure features (soft-drop mass, N-subjettiness, ECFs, EFPs, pT^D, axes)."""
    from jetad.data import sample_info
    from jetad.physics.feature_files import write_features

    with progress_bar("features", sample_info(src).n_jets) as cb:
        path = write_features(src, out, chunk_size=chunk_size, progress=cb)
    console.print(f"features written to [bold]{path}[/bold]")


@app.command()
def convert(
    src: Path = typer.Argument(..., callback=existing(), help="Public-format file: LHC Olympics HDF5, top-tagging "
                               "HDF5, NanoAOD ROOT."),
    out: Path = typer.Option(..., "-o", "--out", callback=writable(), help="Output jetad .h5"),
    fmt: str | None = typer.Option(None, "--format", help="lhco | toptag | nanoaod (default: detect)."),
    chunk_size: int = typer.Option(50_000, "--chunk-size", min=1, help="Rows per chunk."),
) -> None:
    """Convert a public dataset into the jetad schema, streaming in chunks."""
    from jetad.data.formats import FORMATS
    from jetad.data.formats import convert as convert_file

    check_choice(fmt, FORMATS, "--format")
    check_not_input(out, [src])
    with progress_bar(f"convert {src.name}", 1) as cb:
        path = convert_file(src, out, fmt=fmt, chunk_size=chunk_size, progress=cb)
    console.print(f"converted {src} -> [bold]{path}[/bold]")


@app.command()
def inspect(
    files: list[Path] = typer.Argument(..., callback=existing("sample"),
                                       help="One or more jetad files (overlaid in the plot)."),
    plot: Path | None = typer.Option(None, "--plot", callback=writable(), help="PNG of the standard distributions."),
) -> None:
    """Summarise files: counts, provenance, feature quantiles; plot the standard distributions."""
    from jetad.evaluate.inspect import QUANTILES, plot_distributions, summarize

    summaries = [summarize(f) for f in files]
    for s in summaries:
        console.rule(f"[bold]{s.path}")
        console.print(f"{s.n_jets} rows in {s.n_shards} file(s), P = {s.n_constituents}, labels {s.labels}")
        for jet, t in s.truncation.items():
            bound = "" if t.exact else " (at most: jets with exactly P; counts before truncation not recorded)"
            console.print(f"  {'truncated ' + jet:>20}: {t.fraction:.1%} of {t.n_jets} jets have more than "
                          f"P = {s.n_constituents}{bound}")
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
        console.print(f"plot: [bold]{plot_distributions(summaries, plot)}[/bold]")


@app.command()
def blackbox(
    background: Path = typer.Argument(..., callback=existing("sample"),
                                      help="QCD dijet jetad file (from 'jetad generate lhco-bkg')."),
    signal: list[Path] | None = typer.Option(None, "--signal", callback=existing("sample"),
                                             help="Signal dijet file (from 'jetad generate lhco-sig'); "
                                                  "twice for --kind two-modes (one file per decay mode)."),
    n_bkg: int = typer.Option(..., "--n-bkg", min=0,
                              help="Events in the box (background rows, or all rows if secret)."),
    n_sig: str = typer.Option("0", "--n-sig", parser=n_sig_option,
                              help="Injected signal events, or 'secret' (drawn, stored in the key)."),
    out: Path = typer.Option(..., "-o", "--out", callback=writable(), help="Black box HDF5 (LHC Olympics layout)."),
    key: Path | None = typer.Option(None, "--key", callback=writable(), help="Truth key file (default: OUT.key.json)."),
    seed: int = typer.Option(0, "--seed", min=0),
    kind: str = typer.Option("one", "--kind", help="one | empty-mismodelled (no signal, background from a "
                             "mis-modelled lhco-bkg tune) | two-modes (two signal files mixed)."),
    mode_fraction: float = typer.Option(0.5, "--mode-fraction", callback=number_in(0.0, 1.0),
                                        help="two-modes: fraction of the signal events from the first --signal."),
) -> None:
    """Mix QCD dijets with an injected signal into an LHC-Olympics-style black box, truth kept separately."""
    from jetad.tasks.blackbox import BLACKBOX_KINDS, key_path, make_blackbox

    check_choice(kind, BLACKBOX_KINDS, "--kind")
    signals = list(signal or [])
    _check_blackbox_kind(kind, signals, n_sig, mode_fraction)
    path = make_blackbox(background, signals or None, n_bkg, n_sig, out, key_out=key, seed=seed, kind=kind,
                         mode_fraction=mode_fraction)
    console.print(f"black box [bold]{path}[/bold] ({kind}; truth in {key_path(out, key)}); "
                  f"convert it with 'jetad convert {path} -o box.h5'")


def _check_blackbox_kind(kind: str, signals: list[Path], n_sig: int | str, mode_fraction: float) -> None:
    """A usage error (exit 2) naming --kind when --signal / --n-sig do not fit the box kind."""
    from jetad.tasks.blackbox import check_kind

    try:
        check_kind(kind, signals, n_sig, mode_fraction)
    except ValueError as err:
        message = str(err).replace("n_sig", "--n-sig").replace("signal file", "--signal file")
        raise typer.BadParameter(message, param_hint="'--kind'") from None
