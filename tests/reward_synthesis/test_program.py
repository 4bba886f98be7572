"""RewardProgram + TaskWrapper: components in info, declared inputs, runtime errors, copies."""

from __future__ import annotations

import numpy as np
import pytest

from reward_synthesis.program import CodeRewardProgram
from reward_synthesis.safety.sandbox import state_inputs
from workbench.errors import RewardRuntimeError
from workbench.sims.mujoco import MujocoAdapter
from workbench.spec import SimSpec
from workbench.wrappers import TaskWrapper

GOOD = """
import numpy as np
def compute_reward(state, action):
    d = float(np.linalg.norm(state.fingertip_to_target))
    return -d, {"distance": -d, "effort": -float(np.sum(np.square(action)))}
"""


def _wrapped(program):
    adapter = MujocoAdapter()
    spec = SimSpec(env_id="Reacher-v5")
    env = adapter.make_env(spec)
    profile = adapter.profile(spec, env)
    return TaskWrapper(env, profile.schema, program=program, success=profile.success)


@pytest.mark.parametrize("source,expected", [
    (GOOD, frozenset({"fingertip_to_target"})),
    ("def compute_reward(state, action):\n    return float(state.a[0] + state.b[1])\n", frozenset({"a", "b"})),
    ("def compute_reward(state, action):\n    return helper(state)\n", None),
    ("def compute_reward(state, action):\n    return float(state['a'][0])\n", None),
    ("def compute_reward(s, a):\n    f = lambda s: s\n    return float(s.x)\n", None),
])
def test_state_inputs(source: str, expected: frozenset[str] | None) -> None:
    assert state_inputs(source) == expected


def test_wrapper_reports_components_and_env_reward() -> None:
    env = _wrapped(CodeRewardProgram(GOOD, filename="good.py"))
    try:
        env.reset(seed=0)
        action = np.array([0.5, -0.5], dtype=np.float32)
        _, reward, _, _, info = env.step(action)
        raw = env.unwrapped
        d = np.linalg.norm(raw.get_body_com("target") - raw.get_body_com("fingertip"))
        assert reward == pytest.approx(-d)
        assert info["reward/distance"] == pytest.approx(-d)
        assert info["reward/effort"] == pytest.approx(-0.5)
        assert "reward/env" in info and info["reward/env"] != reward
    finally:
        env.close()


def test_runtime_error_names_the_program_line() -> None:
    source = "def compute_reward(state, action):\n    x = 0.0\n    return 1.0 / x\n"
    env = _wrapped(CodeRewardProgram(source, filename="div.py"))
    try:
        env.reset(seed=0)
        with pytest.raises(RewardRuntimeError, match=r"ZeroDivisionError.*div.py:3"):
            env.step(env.action_space.sample())
    finally:
        env.close()


def test_program_cannot_write_into_the_simulator() -> None:
    source = ("def compute_reward(state, action):\n"
              "    state.fingertip_pos[0] = 5.0\n    return 0.0\n")
    env = _wrapped(CodeRewardProgram(source, filename="w.py"))
    try:
        env.reset(seed=0)
        before = env.unwrapped.data.qpos.copy()
        with pytest.raises(RewardRuntimeError, match="read-only"):
            env.step(np.zeros(2, dtype=np.float32))
        assert env.unwrapped.get_body_com("fingertip")[0] != 5.0
        assert np.all(np.isfinite(before))
    finally:
        env.close()
