"""The `jetad` command line: thin wrappers that parse options, call the library, and print.

One validation layer serves every command. Options are checked as they are parsed, before any data are read:
ranges and choices, input paths that must exist, outputs that must be writable, `--set` hyper-parameters against
the constructor. Whatever still goes wrong becomes one line on stderr (`Commands.invoke`): exit 2 for a bad
command line, 1 for bad data or a failed step; `jetad -v ...` shows the traceback instead.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperGroup

T = TypeVar("T")


class Commands(TyperGroup):
    """The jetad command group: an error in any command is one line on stderr, never a traceback (unless -v).

    Exit 2, a bad command line: a value of the wrong type or out of range, not one of an option's choices, a
    malformed or unknown `--set` hyper-parameter, options that contradict each other. Exit 1, everything else:
    a missing, unreadable, malformed or unwritable file, a name that no registry or file has, a failed step.
    """

    def invoke(self, ctx: Any) -> Any:  # click's Context (typer vendors click privately)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as err:  # click's usage errors (exit 2) and other command-line errors
            usage = getattr(err, "ctx", None) if err.exit_code == 2 else None
            _print_error(err.format_message() + (f" (see '{usage.command_path} --help')" if usage else ""))
            raise typer.Exit(err.exit_code) from None
        except Exception as err:
            if ctx.params.get("verbose"):
                raise
            _print_error(error_message(err))
            raise typer.Exit(1) from None


def error_message(err: BaseException) -> str:
    """The one line a user sees for `err`: the library's message (it names the file and the fix), a system error
    as 'file: reason', anything unexpected as a bug report hint."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}" + (f" -> {err.filename2}" if err.filename2 else "")
    if isinstance(err, MemoryError):
        return "out of memory; use a smaller --chunk-size, --n-max or fewer jets"
    if isinstance(err, ImportError):
        return f"{err} (an optional dependency is missing: pip install it)"
    if isinstance(err, ValueError | OSError | RuntimeError):  # SchemaError is a ValueError, FitError a RuntimeError
        return str(err) or type(err).__name__
    return f"unexpected {type(err).__name__}: {err} (a jetad bug: rerun as 'jetad -v ...' for the traceback)"


def _print_error(message: str) -> None:
    typer.echo("error: " + " ".join(str(message).split()), err=True)


app = typer.Typer(
    cls=Commands,
    help="jetad: find new physics as anomalous jets (generate -> features -> detectors -> evaluation).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console()


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A rich progress bar; yields the library's progress callback (done, total, logs)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done, tot=total, logs=None: bar.update(task, completed=done, total=tot)


def rich_table(title: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """A rich table of preformatted cells."""
    tab = Table(*header, title=title)
    for row in rows:
        tab.add_row(*row)
    return tab


# ------------------------------------------------------------------------------------------- validation


def _name(param: typer.CallbackParam) -> str:
    return max(param.opts, key=len) if param.param_type_name == "option" else (param.name or "argument").upper()


def _paths(value: Any) -> list[Path]:
    return [] if value is None else [Path(v) for v in value] if isinstance(value, list | tuple) else [Path(value)]


def existing(kind: str = "file") -> Callable[..., Any]:
    """Option callback: every path given exists; `kind` 'file', 'sample' (a file or shard directory) or 'dir'."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        for path in [] if ctx.resilient_parsing else _paths(value):
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file or directory ({_name(param)})")
            if kind == "file" and path.is_dir():
                raise IsADirectoryError(f"{path}: is a directory; {_name(param)} takes a file")
            if kind == "dir" and not path.is_dir():
                raise NotADirectoryError(f"{path}: not a directory; {_name(param)} takes a directory")
        return value

    return check


def writable(kind: str = "file") -> Callable[..., Any]:
    """Option callback: each path can be written as a `kind` ('file', 'dir' or 'any'), checked before any work."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        for path in [] if ctx.resilient_parsing else _paths(value):
            check_writable(path, _name(param), kind)
        return value

    return check


def check_writable(path: Path, option: str, kind: str = "file") -> None:
    """An OSError naming `path` and `option` unless `path` can be created or replaced as a `kind`.

    The nearest existing ancestor must be a directory in which a file can be created (probed with a temporary
    file, so read-only mounts, /proc and missing permissions are all caught, also for root).
    """
    if kind == "file" and path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; {option} takes a file name")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: is a file; {option} takes a directory")
    base = path if path.is_dir() else path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise NotADirectoryError(f"{path}: {base} is a file, not a directory; choose another {option}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".jetad-write-check-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PermissionError(f"{path}: cannot write in {base} ({err.strerror or err}); choose another {option}") \
            from None


def number_in(low: float, high: float = math.inf, closed_high: bool = False) -> Callable[..., Any]:
    """Option callback: each number given lies in (low, high), or (low, high] with `closed_high`; else exit 2."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        for v in [] if value is None else value if isinstance(value, list | tuple) else [value]:
            if not (low < v < high or (closed_high and v == high)):
                raise typer.BadParameter(f"{v:g} is not in the range ({low:g}, {high:g}{']' if closed_high else ')'}")
        return value

    return check


positive = number_in(0.0)


def check_choice(value: str | None, choices: tuple[str, ...] | list[str], option: str) -> None:
    """A bad argument (exit 2) unless `value` is None or one of `choices`."""
    if value is not None and value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=f"'{option}'")


def check_not_input(out: Path | None, inputs: list[Path], option: str = "--out") -> None:
    """A bad argument (exit 2) if output `out` is one of the inputs (writing it would destroy that input)."""
    if out is not None and any(out.resolve() == Path(p).resolve() for p in inputs):
        raise typer.BadParameter(f"{out} is also an input; writing there would destroy it", param_hint=f"'{option}'")


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """--set key=value pairs; values are parsed as JSON when they can be (numbers, lists, booleans), else strings."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise typer.BadParameter(f"expected key=value with a parameter name as key, got {pair!r}",
                                     param_hint="'--set'")
        if key in params:
            raise typer.BadParameter(f"{key} is given twice", param_hint="'--set'")
        try:
            params[key] = json.loads(value)
        except (ValueError, RecursionError):
            params[key] = value
    return params


def build_estimator(name: str, registry: dict[str, Any], kind: str, build: Callable[[], T]) -> T:
    """`build()` an estimator `name` of `registry`: an unknown name is an error (exit 1), a hyper-parameter the
    constructor cannot take (unknown, of the wrong type, impossible) a bad `--set` (exit 2)."""
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(sorted(registry))}")
    try:
        return build()
    except (TypeError, ValueError) as err:
        raise typer.BadParameter(str(err), param_hint="'--set'") from None


def make_checked_search(method: str, settings: list[str], **fixed: Any) -> Any:
    """Search `method` with --set `settings` checked against its constructor; `fixed` are set by their own options."""
    from jetad.searches import SEARCHES, make_search

    params = parse_settings(settings)

    def build() -> Any:
        clash = sorted(set(params) & set(fixed))
        if clash:
            raise ValueError(f"{clash[0]} is set by its own option, not --set")
        return make_search(method, **fixed, **params)

    return build_estimator(method, SEARCHES, "search", build)


def _input_options(params: dict[str, Any], kind: str | None, feature_names: str | None) -> dict[str, Any]:
    """`params` with --inputs / --features merged into its `inputs` spec."""
    if kind or feature_names:
        spec = params.get("inputs") or {}
        if not isinstance(spec, dict):
            raise typer.BadParameter(f"inputs must be a JSON object, got {spec!r}", param_hint="'--set'")
        spec = spec | ({"kind": kind} if kind else {})
        if feature_names:
            spec["features"] = tuple(x.strip() for x in feature_names.split(",") if x.strip())
        params = params | {"inputs": spec}
    return params


def _n_sig(value: str) -> str | int:
    if value == "secret":
        return value
    if not value.isdigit():
        raise typer.BadParameter(f"expected a number of events >= 0 or 'secret', got {value!r}")
    return int(value)


def _process_options(process: str, **given: float | None) -> dict[str, float]:
    """The `generate` options that belong to `process` (SVJ dark sector, LHCO signal masses), checked."""
    names = {"svj": ("m_med", "r_inv", "m_dark", "lambda_dark"), "lhco-sig": ("m_wprime", "m_x", "m_y")}
    options = {k: v for k, v in given.items() if k in names.get(process, ()) and v is not None}
    if process == "lhco-sig" and options["m_x"] + options["m_y"] >= options["m_wprime"]:
        raise typer.BadParameter(f"X + Y = {options['m_x'] + options['m_y']:g} GeV must be below the W' mass "
                                 f"{options['m_wprime']:g} GeV", param_hint="'--m-x'/'--m-y'/'--m-wprime'")
    return options


def int_list(option: str, minimum: int) -> Callable[..., Any]:
    """Option callback: a comma-separated list of integers >= `minimum` ('1,2,3') -> a list; else exit 2."""

    def parse(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> list[int] | None:
        if value is None:
            return None
        try:
            numbers = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise typer.BadParameter(f"expected comma-separated integers, got {value!r}", param_hint=f"'{option}'") \
                from None
        if not numbers or min(numbers) < minimum:
            raise typer.BadParameter(f"expected integers >= {minimum}, got {value!r}", param_hint=f"'{option}'")
        return numbers

    return parse


def _auc_cell(auc: Any, err: Any) -> str:
    """An AUC with its statistical error; never an AUC alone."""
    if not isinstance(auc, float) or math.isnan(auc):
        return ""
    return f"{auc:.3f} ± {err:.3f}" if isinstance(err, float) and math.isfinite(err) else f"{auc:.3f} ± ?"


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) and math.isfinite(value) else ""


def _database(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    if value is not None and not ctx.resilient_parsing and "://" not in value.removeprefix("sqlite:///"):
        check_writable(Path(value.removeprefix("sqlite:///")), "--db")
    return value


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress; show error tracebacks.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


# --------------------------------------------------------------------------------------------- commands


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
    options = _process_options(process, m_med=m_med, r_inv=r_inv, m_dark=m_dark, lambda_dark=lambda_dark,
                               m_wprime=m_wprime, m_x=m_x, m_y=m_y)
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
def search(
    method: str = typer.Argument(..., help="cwola | cathode | tag_n_train | quak"),
    data: Path = typer.Argument(..., callback=existing("sample"),
                                help="Dijet events (a converted black box, or lhco-bkg/lhco-sig files)."),
    sr_low: float = typer.Option(3300.0, "--sr-low", callback=positive, help="Signal region low edge in mjj [GeV]."),
    sr_high: float = typer.Option(3700.0, "--sr-high", callback=positive, help="Signal region high edge [GeV]."),
    settings: list[str] = typer.Option([], "--set", help="Search parameter key=value (repeatable)."),
    seed: int = typer.Option(0, "--seed", min=0),
    out: Path = typer.Option(..., "-o", "--out", callback=writable(), help="Score file (feed it to 'jetad bumphunt')."),
    save: Path | None = typer.Option(None, "--save", callback=writable(),
                                     help="Also save the fitted search ('jetad score' reads it)."),
) -> None:
    """Weakly supervised resonant search on the data itself; writes per-event scores with mjj for the bump hunt."""
    from jetad.data import read_sample
    from jetad.data.scores import ScoreTable, write_scores

    if not sr_low < sr_high:
        raise typer.BadParameter(f"empty signal region [{sr_low:g}, {sr_high:g}] GeV", param_hint="'--sr-low'")
    check_not_input(out, [data])
    check_not_input(save, [data, out], "--save")
    found = make_checked_search(method, settings, signal_region=(sr_low, sr_high), seed=seed)
    sample = read_sample(data, constituents=False)
    with console.status(f"{method}: fitting on {len(sample)} events"):
        scores = found.fit_score(sample)
    write_scores(out, ScoreTable.from_samples([scores], [sample], [str(data)],
                                              attrs={"detector": method, "params": found.get_params()}))
    if save is not None:
        found.save(save)
        console.print(f"fitted search saved -> [bold]{save}[/bold] (score other files with 'jetad score {save} ...')")
    console.print(f"{method}: scored {len(scores)} events ({int(found.signal_region_.sum())} in the signal region) "
                  f"-> [bold]{out}[/bold]; next: jetad bumphunt {out}")


@app.command()
def bumphunt(
    scores: Path = typer.Argument(..., callback=existing(),
                                  help="Score file of dijet events (from 'jetad score'), with the mjj observer."),
    eps: list[float] = typer.Option([1.0, 0.1, 0.01], "--cut", callback=number_in(0, 1, closed_high=True),
                                    help="Background-efficiency cuts on the score, in (0, 1]."),
    width: float = typer.Option(0.1, "--width", callback=number_in(0, 1),
                                help="Signal-window width as a fraction of its centre, in (0, 1)."),
    bins: int = typer.Option(40, "--bins", min=1, help="mjj bins of the background fit."),
    mjj_min: float | None = typer.Option(None, "--mjj-min", callback=positive,
                                         help="Fit range low edge [GeV] (default: above the turn-on peak)."),
    mjj_max: float | None = typer.Option(None, "--mjj-max", callback=positive,
                                         help="Fit range high edge [GeV] (default: data)."),
    margin: float = typer.Option(0.1, "--fit-start-margin", min=0.0, max=0.9,
                                 help="Default fit start: this fraction above the mjj spectrum's peak."),
    toys: int = typer.Option(0, "--toys", min=0, help="Background-only toys for the look-elsewhere effect."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the toys and of the tie-break of equal scores."),
    out: Path = typer.Option(Path("bumphunt"), "-o", "--out", callback=writable("dir"),
                             help="Directory for bumphunt.json and plots."),
) -> None:
    """Fit mjj with the dijet function after score cuts, scan windows, report local/global significance."""
    from jetad.evaluate.bumphunt import TABLE_COLUMNS, bump_hunt_scores

    if mjj_min is not None and mjj_max is not None and not mjj_min < mjj_max:
        raise typer.BadParameter(f"empty fit range [{mjj_min:g}, {mjj_max:g}] GeV", param_hint="'--mjj-min'")
    hunt = bump_hunt_scores(scores, efficiencies=tuple(eps), width_fraction=width, bins=bins,
                            range=(mjj_min, mjj_max), fit_start_margin=margin, n_toys=toys, seed=seed)
    hunt.write(out)
    console.print(hunt.fit_start.describe())
    tab = Table(*TABLE_COLUMNS, title="bump hunt")
    for row in hunt.table_rows():
        tab.add_row(*row)
    console.print(tab)
    console.print(f"plots and bumphunt.json in [bold]{out}/[/bold]")


@app.command()
def blackbox(
    background: Path = typer.Argument(..., callback=existing("sample"),
                                      help="QCD dijet jetad file (from 'jetad generate lhco-bkg')."),
    signal: Path | None = typer.Option(None, "--signal", callback=existing("sample"),
                                       help="Signal dijet file (from 'jetad generate lhco-sig')."),
    n_bkg: int = typer.Option(..., "--n-bkg", min=0,
                              help="Events in the box (background rows, or all rows if secret)."),
    n_sig: str = typer.Option("0", "--n-sig", parser=_n_sig,
                              help="Injected signal events, or 'secret' (drawn, stored in the key)."),
    out: Path = typer.Option(..., "-o", "--out", callback=writable(), help="Black box HDF5 (LHC Olympics layout)."),
    key: Path | None = typer.Option(None, "--key", callback=writable(), help="Truth key file (default: OUT.key.json)."),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """Mix QCD dijets with an injected signal into an LHC-Olympics-style black box, truth kept separately."""
    from jetad.tasks.blackbox import key_path, make_blackbox

    path = make_blackbox(background, signal, n_bkg, n_sig, out, key_out=key, seed=seed)
    console.print(f"black box [bold]{path}[/bold] (truth in {key_path(out, key)}); "
                  f"convert it with 'jetad convert {path} -o box.h5'")


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
    db: str | None = typer.Option(None, "--db", callback=_database,
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
    from jetad.tasks.leaderboard import cell_flags
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
                               _auc_cell(r.get("auc"), r.get("auc_stat_err")), _number(r.get("dcor_mass")),
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
    params = _input_options(parse_settings(settings), inputs, feature_names)
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


cache_app = typer.Typer(cls=Commands, help="The sample cache: generated samples addressed by their content.",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("path")
def cache_path(cache: Path | None = typer.Option(None, "--cache", help="Cache folder (default $JETAD_CACHE).")) -> None:
    """Print the cache folder."""
    from jetad.generate.cache import cache_dir

    typer.echo(str(cache_dir(cache)))


@cache_app.command("list")
def cache_list(cache: Path | None = typer.Option(None, "--cache", help="Cache folder (default $JETAD_CACHE).")) -> None:
    """List the cached samples: process, rows, seed, settings, size on disk, complete or not."""
    from jetad.generate.cache import cache_dir, list_cache

    entries = list_cache(cache)
    console.print(rich_table(f"sample cache {cache_dir(cache)}", ("process", "rows", "seed", "settings", "MiB",
                                                                   "state", "last used", "key"),
                             [(e.process, f"{e.n_jets}" + ("" if e.complete else f" of {e.n_planned}"), str(e.seed),
                               e.settings, f"{e.size_bytes / 2**20:.1f}",
                               ("complete" if e.complete else "unfinished") + ("" if e.current else ", outdated"),
                               e.last_used.strftime("%Y-%m-%d %H:%M"), e.key[:12]) for e in entries]))
    console.print(f"{len(entries)} entries, {sum(e.size_bytes for e in entries) / 2**20:.1f} MiB")


@cache_app.command("clear")
def cache_clear(
    cache: Path | None = typer.Option(None, "--cache", help="Cache folder (default $JETAD_CACHE)."),
    older_than: float | None = typer.Option(None, "--older-than", min=0, help="Only entries unused for DAYS."),
    process: str | None = typer.Option(None, "--process", help="Only entries of this process."),
    incomplete: bool = typer.Option(False, "--incomplete", help="Only unfinished entries."),
) -> None:
    """Remove cached samples (all, or those selected by the options); an entry being produced is kept."""
    from jetad.generate.cache import clear_cache

    removed = clear_cache(cache, older_than=older_than, process=process, incomplete=incomplete)
    console.print(f"removed {len(removed)} entries ({sum(e.size_bytes for e in removed) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    app()
