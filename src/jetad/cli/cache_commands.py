"""`jetad cache list|path|clear`: the sample cache (`jetad.generate.cache`) from the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from jetad.cli.base import Commands, app, console, rich_table

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
