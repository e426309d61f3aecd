"""The `jetad` command line: thin wrappers that parse options, call the library, and print.

One validation layer serves every command (`options`): options are checked as they are parsed, before any data
are read. Whatever still goes wrong becomes one line on stderr (`base.Commands.invoke`): exit 2 for a bad
command line, 1 for bad data or a failed step; `jetad -v ...` shows the traceback instead. The commands live in
`data_commands`, `model_commands`, `search_commands` and `cache_commands`; importing this package registers
them all on `app`.
"""

from jetad.cli import cache_commands, data_commands, model_commands, search_commands  # noqa: F401  (register them)
from jetad.cli.base import app, console, error_message, progress_bar
from jetad.cli.options import parse_settings

__all__ = ["app", "console", "error_message", "parse_settings", "progress_bar"]
