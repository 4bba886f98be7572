"""The embedded local LLM server: ``llama_cpp.server`` serving a small GGUF model on 127.0.0.1.

With no endpoint configured the workbench starts this server (detached, one generation thread)
and every later caller reuses it: its pid, port and model live in a state file
(``~/.cache/rl-workbench/llm-server.json``; ``$WORKBENCH_LLM_STATE_DIR`` moves the directory),
its log beside it. State that names a dead process is cleaned up on the next look.

The model is an embedded one (:mod:`reward_synthesis.llm.models`: Gemma 3 270M by default,
SmolLM2-135M-Instruct, each shipped in registry wheels) or any GGUF file ``$WORKBENCH_LLM_GGUF``
names. The server answers under :func:`local_model_name`, so replies of different models never
share cache keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workbench.runs import atomic_write

from .errors import LLMNotInstalled, LLMServerError
from .models import chat_format, find_gguf, local_model_name

__all__ = ["ensure_server", "start_server", "server_status", "stop_server",
           "find_gguf", "check_installed", "resolve_state_dir", "list_models", "request_in_flight",
           "restart_abandoned",
           "local_model_name"]

HOST = "127.0.0.1"
N_CTX = 8192  # SmolLM2 was trained with 8k context; a Crafter StateView alone is ~3.5k tokens
STARTUP_TIMEOUT_S = 120.0
STATE_FILE = "llm-server.json"
LOG_FILE = "llm-server.log"
LOCK_FILE = "llm-server.lock"
REQUESTS_DIR = "llm-requests"  # one marker file per request in flight at the local server
LOG_ROTATE_BYTES = 5_000_000
MODELS_BODY_BYTES = 1 << 20  # a model list is small; a larger answer is not one
_SERVER_MODULE = "llama_cpp.server"
# What `python -m llama_cpp.server` imports beyond llama_cpp itself (the `[server]` extra).
_SERVER_DEPS = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")

# Servers started by this process: kept so they are reaped (no zombies) and never garbage-collected
# while running.
_children: dict[int, subprocess.Popen] = {}


# ----------------------------------------------------------------------------- locations


def resolve_state_dir(directory: str | Path | None = None) -> Path:
    if directory is not None:
        return Path(directory).expanduser()
    env = os.environ.get("WORKBENCH_LLM_STATE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "rl-workbench"


def _check_server_deps() -> None:
    for module in _SERVER_DEPS:
        if importlib.util.find_spec(module) is None:
            raise LLMNotInstalled(f"the Python package '{module}' (llama-cpp-python[server])")


def check_installed() -> Path:
    """The model file the local server would serve, after checking its packages are installed;
    :class:`LLMNotInstalled` (or :class:`LLMServerError`) says what is missing. Starts nothing."""
    model_path = find_gguf()
    _check_server_deps()
    return model_path


# ----------------------------------------------------------------------------- processes and HTTP


def _pid_alive(pid: int) -> bool:
    """True for a running process (a zombie counts as dead, and is reaped when it is our child)."""
    if pid <= 0:
        return False
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            _children.pop(pid, None)
            return False
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            return False
        return True
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_server(pid: int) -> bool:
    """Guards against pid reuse: the process must be a llama_cpp.server."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return _pid_alive(pid)  # no /proc: trust the pid
    return _SERVER_MODULE in cmdline


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1: never via a proxy


def list_models(base_url: str, *, timeout_s: float = 5.0, api_key: str | None = None) -> list[str]:
    """Model ids an OpenAI-compatible endpoint serves (``GET {base_url}/models``)."""
    req = urllib.request.Request(base_url.rstrip("/") + "/models")
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    with _opener().open(req, timeout=timeout_s) as resp:
        raw = resp.read(MODELS_BODY_BYTES + 1)
    if len(raw) > MODELS_BODY_BYTES:
        raise ValueError(f"GET {base_url}/models answered with more than {MODELS_BODY_BYTES} bytes")
    body = json.loads(raw.decode("utf-8", errors="replace"))
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ValueError(f"GET {base_url}/models did not answer with a model list")
    return [str(m.get("id"))[:200] for m in data if isinstance(m, dict) and m.get("id")]


def _healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        list_models(url, timeout_s=timeout_s)
        return True
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is free
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "  (no log)"
    tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return "\n".join("  | " + ln for ln in tail) if tail else "  (log is empty)"


def _url(port: int) -> str:
    return f"http://{HOST}:{port}/v1"


# ----------------------------------------------------------------------------- state


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One starter at a time per state directory (across processes)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("pid"), int) or not isinstance(state.get("port"), int):
        return None
    return state


def _write_state(directory: Path, state: dict[str, Any]) -> None:
    atomic_write(directory / STATE_FILE, json.dumps(state, indent=2) + "\n")


def _clear_state(directory: Path) -> None:
    (directory / STATE_FILE).unlink(missing_ok=True)


def _live_state(directory: Path) -> dict[str, Any] | None:
    """The state of a server whose process still runs; stale state (dead pid) is removed."""
    state = _read_state(directory)
    if state is None:
        if (directory / STATE_FILE).exists():
            _clear_state(directory)
        return None
    if not (_pid_alive(state["pid"]) and _is_our_server(state["pid"])):
        _clear_state(directory)
        return None
    return state


# ----------------------------------------------------------------------------- public API


def server_status(*, state_dir: str | Path | None = None) -> dict[str, Any] | None:
    """``None`` when no local server runs; else its state (pid, port, url, model, model_path,
    started, log) plus ``healthy`` (it answers ``GET /v1/models``)."""
    directory = resolve_state_dir(state_dir)
    state = _live_state(directory)
    if state is None:
        return None
    state = dict(state)
    state["url"] = _url(state["port"])
    state["healthy"] = _healthy(state["url"])
    return state


def ensure_server(*, state_dir: str | Path | None = None, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> str:
    """The base URL of the local server, starting one when none runs (a running one is reused)."""
    return start_server(None, state_dir=state_dir, startup_timeout_s=startup_timeout_s)


def start_server(port: int | None = None, *, state_dir: str | Path | None = None, n_ctx: int = N_CTX,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S) -> str:
    """Start the local server (detached) on ``port`` (a free one when None) and return its base URL.
    A healthy server that already runs is reused when ``port`` is None or its own port."""
    directory = resolve_state_dir(state_dir)
    with _locked(directory):
        state = _live_state(directory)
        if state is not None:
            url = _url(state["port"])
            if port is not None and port != state["port"]:
                raise LLMServerError(
                    f"a local LLM server already runs at {url} (pid {state['pid']}), not on port {port}\n"
                    f"  fix: use it (omit --port), or stop it first with `workbench llm stop`")
            if state.get("model") not in (None, local_model_name()):
                raise LLMServerError(
                    f"the local LLM server at {url} (pid {state['pid']}) serves {state.get('model')!r}, "
                    f"not {local_model_name()!r}\n  fix: stop it with `workbench llm stop`, then retry")
            # A running server that accepts connections is reused even when it is too busy to answer
            # GET /v1/models now: it serves one request at a time, and a long prompt (a Crafter
            # StateView is ~5k tokens: ~2 min on one thread) keeps it busy. The client's timeout
            # governs the wait from here.
            if not _accepts_connections(state["port"]):
                _wait_healthy(url, state["pid"], directory / LOG_FILE,
                              deadline=time.monotonic() + startup_timeout_s, kill_on_timeout=False)
            return url
        model_path = find_gguf()
        _check_server_deps()
        if port is None:
            port = _free_port()
        elif not _port_free(port):
            raise LLMServerError(
                f"port {port} on {HOST} is already in use, so the local LLM server cannot listen there\n"
                f"  fix: pick another port (`workbench llm serve --port N`) or omit --port to use a free one")
        return _spawn(directory, port, model_path, n_ctx, startup_timeout_s)


@contextlib.contextmanager
def request_in_flight(*, state_dir: str | Path | None = None) -> Iterator[Path]:
    """Mark one request of this process as in flight at the local server while the block runs (a
    file named by our pid under ``llm-requests/``): :func:`restart_abandoned` leaves a server alone
    while others are waiting on it."""
    directory = resolve_state_dir(state_dir) / REQUESTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    marker.touch()
    try:
        yield marker
    finally:
        marker.unlink(missing_ok=True)


def _others_in_flight(directory: Path, mine: Path) -> bool:
    for marker in (directory / REQUESTS_DIR).glob("*"):
        if marker.name == mine.name:
            continue
        try:
            pid = int(marker.name.split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or _pid_alive(pid):
            return True
        marker.unlink(missing_ok=True)  # left by a process that died
    return False


def restart_abandoned(url: str, mine: Path, *, state_dir: str | Path | None = None) -> bool:
    """After this process abandoned a request to the local server before its reply began (a
    timeout or Ctrl-C while the server was still reading the prompt): restart the server on the same
    port, unless another request is in flight there. llama.cpp stops a streamed reply when its
    client leaves, but cannot interrupt prompt processing (minutes for a long prompt on one thread),
    so the next request would queue behind the abandoned one. True when it restarted."""
    directory = resolve_state_dir(state_dir)
    with _locked(directory):
        state = _live_state(directory)
        if state is None or _url(state["port"]) != url.rstrip("/") or _others_in_flight(directory, mine):
            return False
        # Busy on the abandoned prompt, uvicorn would finish it before a graceful exit: SIGKILL soon.
        _terminate(state["pid"], 0.5)
        _clear_state(directory)
        with contextlib.suppress(OSError), open(directory / LOG_FILE, "ab") as log:
            log.write(f"\n--- stopped pid {state['pid']}: a request was abandoned before its reply began\n".encode())
        model_path = Path(state.get("model_path") or find_gguf())
        _spawn(directory, state["port"], model_path, int(state.get("n_ctx") or N_CTX), STARTUP_TIMEOUT_S)
        return True


def stop_server(*, state_dir: str | Path | None = None, timeout_s: float = 10.0) -> bool:
    """Stop the local server; True when one was running."""
    directory = resolve_state_dir(state_dir)
    with _locked(directory):
        state = _live_state(directory)
        if state is None:
            return False
        pid = state["pid"]
        _terminate(pid, timeout_s)
        _clear_state(directory)
        return True


# ----------------------------------------------------------------------------- internals


def _spawn(directory: Path, port: int, model_path: Path, n_ctx: int, startup_timeout_s: float) -> str:
    log_path = directory / LOG_FILE
    with contextlib.suppress(OSError):  # keep one previous log; each start appends ~200 kB of load info
        if log_path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log_path, log_path.with_suffix(".log.1"))
    cmd = [
        sys.executable, "-m", _SERVER_MODULE,
        "--model", str(model_path),
        "--model_alias", local_model_name(),
        "--host", HOST,
        "--port", str(port),
        # One thread: with two, generation collapses whenever the other core is busy.
        "--n_threads", "1",
        "--n_threads_batch", "1",
        "--n_ctx", str(n_ctx),
        # Clients stream (and stop a reply by closing the connection). By default llama_cpp.server
        # also cuts a streamed reply short whenever another request waits: several callers sharing
        # this server would cut each other's replies. They queue instead.
        "--interrupt_requests", "false",
    ]
    turns = chat_format()
    if turns:
        cmd += ["--chat_format", turns]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    with open(log_path, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=env, cwd=str(directory))
    _children[proc.pid] = proc
    url = _url(port)
    state = {"pid": proc.pid, "port": port, "host": HOST, "url": url, "model": local_model_name(),
             "model_path": str(model_path), "chat_format": turns, "n_ctx": n_ctx, "started": time.time(),
             "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "log": str(log_path)}
    _write_state(directory, state)  # written now, so an interrupted start is still found and cleaned
    try:
        _wait_healthy(url, proc.pid, log_path, deadline=time.monotonic() + startup_timeout_s, kill_on_timeout=True)
    except BaseException:
        _terminate(proc.pid, 5.0)
        _clear_state(directory)
        raise
    return url


def _accepts_connections(port: int, timeout_s: float = 2.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _wait_healthy(url: str, pid: int, log_path: Path, *, deadline: float, kill_on_timeout: bool) -> None:
    delay = 0.1
    while True:
        if _healthy(url):
            return
        if not _pid_alive(pid):
            raise LLMServerError(
                f"the local LLM server (pid {pid}) exited before it answered at {url}; its log {log_path}:\n"
                f"{_log_tail(log_path)}")
        if time.monotonic() >= deadline:
            action = "stopped it" if kill_on_timeout else "fix: `workbench llm stop`, then retry"
            raise LLMServerError(
                f"the local LLM server (pid {pid}) did not answer GET {url}/models in time ({action}); "
                f"its log {log_path}:\n{_log_tail(log_path)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM the server's process group, then SIGKILL after ``timeout_s``; reap it when ours."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)  # started with start_new_session: its pgid is its pid
        except ProcessLookupError:
            break
        except PermissionError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                _children.pop(pid, None)
                return
            time.sleep(0.05)
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1.0)
    else:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)

