"""Option checks of the command line, run as options are parsed, before any data are read.

Ranges and choices, input paths that must exist, outputs that must be writable, `--set` hyper-parameters against
the constructor. A failed check is a usage error (exit 2) naming the option.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

T = TypeVar("T")


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


def input_options(params: dict[str, Any], kind: str | None, feature_names: str | None) -> dict[str, Any]:
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


def n_sig_option(value: str) -> str | int:
    if value == "secret":
        return value
    if not value.isdigit():
        raise typer.BadParameter(f"expected a number of events >= 0 or 'secret', got {value!r}")
    return int(value)


def process_options(process: str, **given: float | str | None) -> dict[str, float | str]:
    """The `generate` options that belong to `process` (SVJ dark sector, LHCO signal masses and decay, LHCO
    background tune), checked; options left at None are not recorded (nominal files keep their hash)."""
    from jetad.generate.processes import LHCO_BKG_TUNES, LHCO_SIG_DECAYS

    names = {"svj": ("m_med", "r_inv", "m_dark", "lambda_dark"), "lhco-sig": ("m_wprime", "m_x", "m_y", "decay"),
             "lhco-bkg": ("tune",)}
    for option, value in given.items():
        if isinstance(value, str) and option not in names.get(process, ()):
            raise typer.BadParameter(f"applies to {'lhco-bkg' if option == 'tune' else 'lhco-sig'} only, not "
                                     f"{process}", param_hint=f"'--{option}'")
    for option, choices in (("tune", tuple(LHCO_BKG_TUNES)), ("decay", LHCO_SIG_DECAYS)):
        value = given.get(option)
        check_choice(None if value is None else str(value), choices, f"--{option}")
    options = {k: v for k, v in given.items() if k in names.get(process, ()) and v is not None}
    if process == "lhco-sig" and options.get("decay") == "qq":  # W' -> q q': the X and Y masses do not enter
        return {k: v for k, v in options.items() if k not in ("m_x", "m_y")}
    if process == "lhco-sig":
        m_x, m_y, m_wprime = (float(options[k]) for k in ("m_x", "m_y", "m_wprime"))
        if m_x + m_y >= m_wprime:
            raise typer.BadParameter(f"X + Y = {m_x + m_y:g} GeV must be below the W' mass {m_wprime:g} GeV",
                                     param_hint="'--m-x'/'--m-y'/'--m-wprime'")
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


def database_option(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    if value is not None and not ctx.resilient_parsing and "://" not in value.removeprefix("sqlite:///"):
        check_writable(Path(value.removeprefix("sqlite:///")), "--db")
    return value
