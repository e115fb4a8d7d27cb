"""Checks a command line allows before the heavy imports.

The entry points import torch and transformers at the top (tens of seconds on a busy machine), so
a misspelt ``--cfg-path`` would wait that long for its one-line error. The top-level scripts
(`train.py`, `eval_emotion.py`, `app.py`) call `exit_if_missing` first: this module imports
nothing but the standard library.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

PATH_FLAGS = ("--cfg-path",)


def missing_path(argv: Sequence[str], flags: Sequence[str] = PATH_FLAGS) -> Optional[str]:
    """The one-line error for the first `flags` value in `argv` that names no file, else None."""
    for i, arg in enumerate(argv):
        flag, _, value = arg.partition("=")
        if flag in flags and not value and i + 1 < len(argv):
            value = argv[i + 1]
        if flag in flags and value and not value.startswith("-") and not Path(value).is_file():
            return f"config file not found: {value}"  # the words of common.config's own error
    return None


def exit_if_missing(argv: Sequence[str], flags: Sequence[str] = PATH_FLAGS) -> None:
    """Print the ``error:`` line and exit 2 when a path flag names no file (`run_cli`'s contract)."""
    message = missing_path(argv, flags)
    if message is not None:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
