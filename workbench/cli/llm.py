"""``workbench llm serve|status|stop``: the embedded local LLM server.

Mounted by ``workbench.cli.app`` as ``app.add_typer(llm_app, name="llm")``. Errors print
``error: <message>`` on stderr and exit 2, as the main CLI does.
"""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from workbench.cli.errors import user_errors

__all__ = ["llm_app"]

llm_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                      help="The local LLM server (llama.cpp + SmolLM2-135M-Instruct on 127.0.0.1).")


@llm_app.command()
@user_errors
def serve(port: Annotated[Optional[int], typer.Option("--port", min=1, max=65535,
                                                      help="port on 127.0.0.1 (default: a free one)")] = None) -> None:
    """Start the local LLM server in the background (or reuse the running one); print its URL."""
    from reward_synthesis.llm.server import server_status, start_server

    before = server_status()
    url = start_server(port)
    status = server_status() or {}
    verb = "running" if before and before.get("pid") == status.get("pid") else "started"
    typer.echo(url)
    typer.echo(f"{verb}: pid {status.get('pid')}, model {status.get('model')}, log {status.get('log')}", err=True)


@llm_app.command()
@user_errors
def status() -> None:
    """Say whether the local LLM server runs, and where."""
    from reward_synthesis.llm.server import server_status

    state = server_status()
    if state is None:
        typer.echo("not running (start it with `workbench llm serve`)")
        return
    started = state.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    health = "" if state.get("healthy") else " (not answering yet)"
    typer.echo(f"running{health}: {state['url']}\n  pid: {state['pid']}\n  model: {state.get('model')} "
               f"({state.get('model_path')})\n  since: {since}\n  log: {state.get('log')}")


@llm_app.command()
@user_errors
def stop() -> None:
    """Stop the local LLM server."""
    from reward_synthesis.llm.server import server_status, stop_server

    state = server_status()
    if stop_server():
        typer.echo(f"stopped (pid {state['pid'] if state else '?'})")
    else:
        typer.echo("no local LLM server running")
