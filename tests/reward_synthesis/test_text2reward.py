"""Text2Reward: prompt building and code extraction (offline), the repair loop against the real
local LLM server (skipped only when the llm extra is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from workbench_testing import load_shipped, shipped_params

from reward_synthesis.language.text2reward import build_messages, refine_messages
from reward_synthesis.llm.sources import extract_code
from workbench.reward import BuiltReward
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("reply,expected", [
    ("```python\nimport numpy as np\ndef compute_reward(state, action):\n    return 1.0\n```",
     "import numpy as np\ndef compute_reward(state, action):\n    return 1.0\n"),
    ("Here:\n```\ndef compute_reward(state, action):\n    return 0.0\n```\nbye",
     "def compute_reward(state, action):\n    return 0.0\n"),
    ("```python\nx = 1\n```\n```python\ndef compute_reward(s, a):\n    return 2.0\n```",
     "def compute_reward(s, a):\n    return 2.0\n"),
    ("Sure.\nimport math\ndef compute_reward(state, action):\n    return math.pi",
     "import math\ndef compute_reward(state, action):\n    return math.pi\n"),
    ("```python\ndef compute_reward(state, action):\n    return 3.0",
     "def compute_reward(state, action):\n    return 3.0\n"),  # unterminated
    ("I cannot help with that.", None),
    ("", None),
])
def test_extract_code(reply: str, expected: str | None) -> None:
    assert extract_code(reply) == expected


def _task(path: Path) -> Task:
    return Task.build(load_task(path), reward=BuiltReward(None, "not needed"))


@pytest.mark.parametrize("path", shipped_params())
def test_prompt_is_generated_from_the_task(path: Path, tmp_path: Path) -> None:
    task = Task.build(load_shipped(path, tmp_path), reward=BuiltReward(None, "not needed"))
    system, user = build_messages(task, "do the thing")
    assert system["role"] == "system" and "compute_reward(state, action)" in system["content"]
    # The StateView description is the adapter's generated text, verbatim — never a copy.
    assert task.profile.schema.describe() in user["content"]
    assert task.success_doc() in user["content"]
    assert "do the thing" in user["content"]


def test_few_shot_and_refine_prompts_carry_examples_and_feedback() -> None:
    task = _task(REPO / "tasks/mujoco/reacher.yaml")
    code = (REPO / "tasks/mujoco/rewards/reacher_precise.py").read_text()
    _, user = build_messages(task, "reach", examples=[("reach the target", code)])
    assert "reach the target" in user["content"] and "def compute_reward" in user["content"]
    messages = refine_messages(task, "reach", code, ["it overshoots", "it jitters at the end"])
    assert messages[-2]["role"] == "assistant"
    assert "1. it overshoots" in messages[-1]["content"] and "2. it jitters" in messages[-1]["content"]


def test_mode_auto_is_sketch_for_the_embedded_model_and_code_for_an_endpoint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from reward_synthesis.llm.sources import resolve_mode

    monkeypatch.delenv("WORKBENCH_LLM_URL", raising=False)
    assert resolve_mode("auto", {}) == "sketch"
    assert resolve_mode("auto", {"base_url": "http://127.0.0.1:8000/v1"}) == "code"
    assert resolve_mode("code", {}) == "code" and resolve_mode("sketch", {"base_url": "http://h:1/v1"}) == "sketch"
    monkeypatch.setenv("WORKBENCH_LLM_URL", "http://127.0.0.1:9/v1")
    assert resolve_mode("auto", {}) == "code"
