"""Shared fixtures. Tests run real things at small scale: real MuJoCo, real SB3, the real CLI."""

from __future__ import annotations

import ctypes
import os
import signal
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# No CLIP weights can be fetched here: fail fast instead of ~46 s of download retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests never talk to the user's shared local LLM server (a busy one stalls the suite for minutes):
# a test that needs an LLM takes the `llm_env` fixture (its own server); any other LLM call fails
# fast against this closed port.
os.environ["WORKBENCH_LLM_URL"] = "http://127.0.0.1:9/v1"
# Offline datasets (Minari) the tests record go to a throwaway root, never the user's ~/.minari
# (the CLI subprocesses inherit it).
os.environ["MINARI_DATASETS_PATH"] = tempfile.mkdtemp(prefix="workbench-minari-")
# Sentence embeddings likewise: a fresh cache, so the tests load the packaged model themselves.
os.environ["WORKBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="workbench-cache-")

REPO = Path(__file__).resolve().parent.parent
TASKS = REPO / "tasks"
DATA = Path(__file__).resolve().parent / "data"


def _sigint_disposition() -> tuple[object, ...]:
    """Ctrl-C handling as Python and the OS see it: Python's handler, the main thread's blocked
    signals, and the handler address and flags the kernel holds (a C library can replace those
    behind Python's back)."""
    raw = ctypes.create_string_buffer(256)  # struct sigaction: handler pointer first, flags at byte 136
    kernel = (int.from_bytes(raw.raw[:8], "little"), int.from_bytes(raw.raw[136:140], "little")) \
        if _LIBC.sigaction(signal.SIGINT, None, raw) == 0 else None
    return signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []), kernel


_LIBC = ctypes.CDLL(None, use_errno=True)


@pytest.fixture(autouse=True)
def _signals_left_as_found(request: pytest.FixtureRequest):
    """A test should leave the process's Ctrl-C handling as it found it: a SIGINT handler or a
    blocked SIGINT left behind makes a later test's Ctrl-C do nothing (a blocking read then runs its
    full timeout), far from the test that caused it. Such a test is named in a warning and the
    handling restored (a warning, not a failure: the culprit behind a timeout late in the full suite
    is still being looked for, see test_llm_limits.py)."""
    before = _sigint_disposition()
    yield
    after = _sigint_disposition()
    if after != before:
        signal.signal(signal.SIGINT, before[0])  # also reinstalls Python's C-level handler
        signal.pthread_sigmask(signal.SIG_SETMASK, before[1])
        warnings.warn(f"{request.node.nodeid} changed the SIGINT handling: {before} -> {after}", stacklevel=1)


@pytest.fixture
def tiny_task(tmp_path: Path) -> Path:
    """A Reacher task with a budget of a few hundred steps, for CLI and pipeline tests."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\n"
        "sim: {env_id: Reacher-v5}\n"
        "learner: {name: ppo, hyperparams: {n_steps: 64, batch_size: 64, n_epochs: 2}}\n"
        "training: {total_steps: 512, n_envs: 2, checkpoint_every: 256}\n"
        "evaluation: {episodes: 3, video: false}\n"
    )
    return path


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[None]:
    """One local Ray runtime (127.0.0.1, 2 CPUs) for every test that uses Ray: a RayExecutor joins a
    runtime that is already up and leaves it running; this shuts it down at the end of the session."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()
