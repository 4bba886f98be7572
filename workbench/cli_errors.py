"""How every ``workbench`` command reports user mistakes: one message, exit 2, no traceback.

Shared by the main CLI and the sub-apps that packages mount on it (``workbench llm``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from workbench.errors import WorkbenchError

__all__ = ["user_errors", "out", "err", "settings", "clean"]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
settings = {"debug": False}  # set by `workbench --debug`

# C0/C1 control characters but newline and tab, DEL, and the bidirectional overrides/isolates that
# reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """Text from users' files (names, YAML values, reward component names) made safe to print:
    every control character, ESC of ANSI escape sequences included, is shown as its escape
    (``\\x1b``) instead of reaching the terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def user_errors(fn: Callable[..., None]) -> Callable[..., None]:
    """User mistakes -> one message on stderr and their exit code (no traceback unless --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except WorkbenchError as e:
            if settings["debug"]:
                err.print_exception()
            err.print("[bold red]error:[/] ", end="")
            err.print(clean(str(e)), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper
