"""Commands of the resonant searches: a weakly supervised search on the data, the bump hunt of its scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from jetad.cli.base import app, console
from jetad.cli.options import (
    check_not_input,
    existing,
    make_checked_search,
    number_in,
    positive,
    writable,
)

#: Fit arguments of the searches that the command line fills from files: option -> the fit parameters it feeds.
FILE_OPTIONS: dict[str, tuple[str, ...]] = {"--simulation": ("simulation",),
                                            "--signal": ("signal_library", "signal_priors")}


def fit_file_arguments(method: str, files: dict[str, Path | list[Path] | None]) -> dict[str, Path | list[Path]]:
    """Fit parameter -> file(s) of search `method` for the given file options; an option the search's `fit` does
    not take is a bad argument naming the option and the searches that take it."""
    import inspect

    from jetad.searches import SEARCHES

    takes = {name: set(inspect.signature(cls.fit).parameters) for name, cls in SEARCHES.items()}
    out: dict[str, Path | list[Path]] = {}
    for option, value in files.items():
        if not value:
            continue
        param = next((p for p in FILE_OPTIONS[option] if p in takes[method]), None)
        if param is None:
            users = sorted(n for n, params in takes.items() if params & set(FILE_OPTIONS[option]))
            raise typer.BadParameter(f"search {method!r} takes no {option} (searches that do: {', '.join(users)})",
                                     param_hint=f"'{option}'")
        out[param] = value
    return out


def read_fit_files(arguments: dict[str, Path | list[Path]], constituents: bool) -> dict[str, Any]:
    """The samples behind `fit_file_arguments` (with constituents only for searches that read them)."""
    from jetad.data import read_sample

    return {param: [read_sample(p, constituents=constituents) for p in value] if isinstance(value, list)
            else read_sample(value, constituents=constituents) for param, value in arguments.items()}


def _save_search(found: Any, save: Path | None) -> None:
    if save is not None:
        found.save(save)
        console.print(f"fitted search saved -> [bold]{save}[/bold] (score other files with 'jetad score {save} ...')")


@app.command()
def search(
    method: str = typer.Argument(..., help="A registered search (jetad.searches.SEARCHES): cwola, cathode, "
                                           "tag_n_train, quak, gis, lacathode, salad, supervised, pca, gan_ae, "
                                           "latent_vae, regularized_likelihood, topics, ucluster, combined, ..."),
    data: Path = typer.Argument(..., callback=existing("sample"),
                                help="Dijet events (a converted black box, or lhco-bkg/lhco-sig files)."),
    sr_low: float = typer.Option(3300.0, "--sr-low", callback=positive, help="Signal region low edge in mjj [GeV]."),
    sr_high: float = typer.Option(3700.0, "--sr-high", callback=positive, help="Signal region high edge [GeV]."),
    settings: list[str] = typer.Option([], "--set", help="Search parameter key=value (repeatable)."),
    simulation: Path | None = typer.Option(None, "--simulation", callback=existing("sample"),
                                           help="Simulated background events (salad, supervised)."),
    signals: list[Path] = typer.Option([], "--signal", callback=existing("sample"),
                                       help="Simulated signal hypothesis (repeatable): supervised's signal library, "
                                            "quak's signal priors."),
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
    inputs = [data, *([simulation] if simulation else []), *signals]
    check_not_input(out, inputs)
    check_not_input(save, [*inputs, out], "--save")
    found = make_checked_search(method, settings, signal_region=(sr_low, sr_high), seed=seed)
    files = fit_file_arguments(method, {"--simulation": simulation, "--signal": list(signals)})
    particles = found.reads_constituents  # particle-level searches read the jets' constituents
    sample, fit_inputs = read_sample(data, constituents=particles), read_fit_files(files, particles)
    with console.status(f"{method}: fitting on {len(sample)} events"):
        scores = found.fit(sample, **fit_inputs).scores_.copy()
    write_scores(out, ScoreTable.from_samples([scores], [sample], [str(data)],
                                              attrs={"detector": method, "params": found.get_params()}))
    _save_search(found, save)
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
