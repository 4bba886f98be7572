"""How every ``workbench`` command reports user mistakes: one message, exit 2, no traceback.

Shared by the main CLI and the sub-apps that packages mount on it (``workbench llm``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from workbench.errors import WorkbenchError

__all__ = ["user_errors", "out", "err", "settings"]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
settings = {"debug": False}  # set by `workbench --debug`


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
            err.print(str(e), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper
