"""`workbench validate` on tasks whose reward an LLM writes: everything up to the synthesis is
checked (spec, env, StateView, the prompt, the endpoint) and nothing is synthesized."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from llm_helpers import MisbehavingServer, closed_port, send_json

REPO = Path(__file__).resolve().parents[3]
TEXT2REWARD = REPO / "tasks" / "mujoco" / "reacher_text2reward.yaml"
AUTO_MC = REPO / "tasks" / "minecraft" / "collect_wood_automc.yaml"
LARE = REPO / "tasks" / "mujoco" / "hopper_lare.yaml"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_LLM_")}
    env.update(WORKBENCH_LLM_STATE_DIR=str(tmp_path / "state"), WORKBENCH_LLM_CACHE=str(tmp_path / "cache"), **extra)
    return env


def _validate(task: Path, env: dict[str, str], *sets: str) -> subprocess.CompletedProcess[str]:
    args = [a for s in sets for a in ("--set", s)]
    return subprocess.run([sys.executable, "-m", "workbench.cli", "validate", str(task), *args],
                          capture_output=True, text=True, timeout=300, env=env)


def _never_answer(handler, n):  # a chat request would be a bug: validate never synthesizes
    send_json(handler, 500, {"error": {"message": "validate must not ask for a completion"}})


@pytest.mark.parametrize("task, sets, source, extra", [
    pytest.param(TEXT2REWARD, ("reward.few_shot=0",), "text2reward", "", id="text2reward"),
    pytest.param(AUTO_MC, (), "auto_mc", "3 rounds", id="auto_mc"),
    pytest.param(LARE, ("reward.encoder=null",), "lare", "3 encoder candidates", id="lare"),
])
def test_validate_checks_the_endpoint_and_synthesizes_nothing(tmp_path: Path, task: Path, sets: tuple,
                                                             source: str, extra: str) -> None:
    with MisbehavingServer(_never_answer, models=["m"]) as srv:
        proc = _validate(task, _env(tmp_path, WORKBENCH_LLM_URL=srv.url), *sets)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.lstrip().startswith("reward "))
    assert f"{source}: not synthesized by validate (prompt " in line and extra in line
    assert f"endpoint {srv.url} reachable (serves m)" in line
    assert srv.requests == [], "validate asked the LLM for a completion"
    assert any(p.endswith("/models") for p in srv.gets)
    assert "StateView:" in proc.stdout  # the rest of validate still ran


def test_validate_reports_an_unreachable_endpoint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    proc = _validate(TEXT2REWARD, _env(tmp_path, WORKBENCH_LLM_URL=url), "reward.few_shot=0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert url in proc.stderr and "unavailable" in proc.stderr and "fix:" in proc.stderr


def test_validate_names_the_model_to_choose(tmp_path: Path) -> None:
    with MisbehavingServer(_never_answer, models=["a", "b"]) as srv:
        proc = _validate(TEXT2REWARD, _env(tmp_path, WORKBENCH_LLM_URL=srv.url), "reward.few_shot=0")
        assert proc.returncode == 2 and "serves 2 models (a, b)" in proc.stderr and "llm.model" in proc.stderr
        named = _validate(TEXT2REWARD, _env(tmp_path, WORKBENCH_LLM_URL=srv.url), "reward.few_shot=0",
                          "reward.llm.model=b")
    assert named.returncode == 0, named.stderr
    assert srv.requests == []


def test_validate_offline_needs_the_first_request_cached(tmp_path: Path) -> None:
    proc = _validate(TEXT2REWARD, _env(tmp_path), "reward.few_shot=0", "reward.offline=true")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "offline mode: no cached LLM response" in proc.stderr


def test_validate_with_the_embedded_server_starts_nothing(needs_local_llm: None, tmp_path: Path) -> None:
    from reward_synthesis.llm.server import server_status

    env = _env(tmp_path)
    proc = _validate(TEXT2REWARD, env, "reward.few_shot=0")
    assert proc.returncode == 0, proc.stderr
    assert "text2reward: not synthesized by validate" in proc.stdout
    assert "embedded server not running; it can start (model " in proc.stdout
    assert server_status(state_dir=tmp_path / "state") is None


def test_validate_with_the_embedded_server_running(llm_env: dict, tmp_path: Path) -> None:
    env = _env(tmp_path)
    env["WORKBENCH_LLM_STATE_DIR"] = str(llm_env["state_dir"])
    proc = _validate(TEXT2REWARD, env, "reward.few_shot=0")
    assert proc.returncode == 0, proc.stderr
    assert f"embedded server running at {llm_env['url']}" in proc.stdout


def test_validate_lare_with_encoder_files_builds_as_a_run_does(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"  # no LLM is involved: an unreachable one does not matter
    proc = _validate(LARE, _env(tmp_path, WORKBENCH_LLM_URL=url))
    assert proc.returncode == 0, proc.stderr
    assert "LaRe (lare loss) decoder on" in proc.stdout and "not synthesized" not in proc.stdout
