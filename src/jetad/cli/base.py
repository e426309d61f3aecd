"""The jetad command group: the error layer (one stderr line per failure), the console, progress bars, tables."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperGroup


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


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress; show error tracebacks.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
