"""Fixtures for the LLM layer: the REAL local server (llama.cpp + an embedded model) over HTTP.

The test session's server serves SmolLM2-135M unless ``$WORKBENCH_LLM_EMBEDDED`` says otherwise:
the tests check the layer's plumbing (protocol, grammar, cache, checks, records), which is the same
for every model, and SmolLM2 answers about 3x faster than the default Gemma 3 270M. What the
default model writes is measured by benchmarks/sketch_acceptance.py and the slow tests that name it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def _local_llm_missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return ('llama-cpp-python is not installed (pip install "rl-workbench[llm]"); '
                "the local LLM server cannot run")
    from reward_synthesis.llm.errors import LLMNotInstalled
    from reward_synthesis.llm.server import find_gguf

    try:
        find_gguf()
    except LLMNotInstalled as err:
        return str(err).splitlines()[0]
    return None


@pytest.fixture(scope="session")
def needs_local_llm() -> None:
    # Set for the whole session: every client and CLI subprocess then names the model the session's
    # server serves (a server of another model is refused as not the one asked for).
    os.environ.setdefault("WORKBENCH_LLM_EMBEDDED", "smollm2-135m")
    reason = _local_llm_missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def local_llm(needs_local_llm: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A local server of the test session's own (a private state dir), reused by every test and
    stopped at the end. Not the user's shared one: its queue of other callers' long requests would
    make the tests slow, and stopping it is not ours to do."""
    from reward_synthesis.llm.server import server_status, start_server, stop_server

    state = tmp_path_factory.mktemp("llm-state")
    url = start_server(state_dir=state)
    info = server_status(state_dir=state)
    assert info is not None
    try:
        yield {"url": url, "state_dir": state, "pid": info["pid"]}
    finally:
        stop_server(state_dir=state)


@pytest.fixture
def llm_env(local_llm: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Point ``base_url=None`` at the session's server; a private cache per test; no env overrides."""
    for name in ("WORKBENCH_LLM_URL", "WORKBENCH_LLM_MODEL", "WORKBENCH_LLM_API_KEY_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKBENCH_LLM_STATE_DIR", str(local_llm["state_dir"]))
    monkeypatch.setenv("WORKBENCH_LLM_CACHE", str(tmp_path / "cache"))
    return local_llm
