"""User errors versus bugs, for every entry point.

A *user error* is something the person running a command can fix: a missing or misspelt file,
a config key or value that does not fit, an unreadable video. Each module raises its own subclass
of `UserError` (ConfigError, AnnotationError, MediaError, CheckpointError, ...) with a message that
names the file or key and the fix. Entry points run their body through `run_cli`, which prints
such an error as one ``error: ...`` line and exits with status 2. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from minigpt4.common.io import is_disk_full


class UserError(ValueError):
    """Bad input the user can fix; the message says what and how (no traceback is shown)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """What an entry point reports as one line: `UserError` and a missing file or folder."""
    return (UserError, FileNotFoundError, NotADirectoryError)


def report(err: BaseException) -> int:
    """Print `err` as the one ``error:`` line; the exit status for a user error."""
    message = str(err)
    if isinstance(err, FileNotFoundError) and err.filename and str(err.filename) not in message:
        message = f"{message}: {err.filename}"
    print(f"error: {message}", file=sys.stderr)
    return 2


def report_disk_full(err: OSError) -> int:
    """A full disk as the one ``error:`` line: what could not be written and what to do."""
    where = f" while writing {err.filename}" if err.filename else ""
    print(f"error: the disk is full ({err.strerror}){where}. Free some space there (or write to another "
          "disk) and run again", file=sys.stderr)
    return 2


def run_cli(body: Callable[[], Any]) -> Any:
    """``body()``; a user error becomes one ``error:`` line on stderr and exit status 2, and so
    does a full disk (files written with `atomic_write` are then left as they were)."""
    try:
        return body()
    except user_errors() as err:
        return report(err)
    except OSError as err:
        if is_disk_full(err):
            return report_disk_full(err)
        raise
