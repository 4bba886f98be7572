"""Pre-flight checks on states sampled from a real MuJoCo task (gymnasium's Reacher-v5)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from reward_synthesis.safety.checks import (
    CHECK_NAMES,
    CheckReport,
    CheckResult,
    collect_samples,
    preflight,
)
from workbench.errors import RewardCodeRejected
from workbench.state import Field, State, StateSchema

HOSTILE = sorted((Path(__file__).resolve().parents[1] / "data" / "hostile_rewards").glob("*.py"))

REACHER = StateSchema(
    task="Reacher-v5",
    fields=(
        Field("fingertip_pos", (3,), "m", "tip of the arm", frame="world"),
        Field("target_pos", (3,), "m", "the goal", frame="world"),
    ),
    reader=lambda env: {"fingertip_pos": env.get_body_com("fingertip"),
                        "target_pos": env.get_body_com("target")},
)

from reward_programs import GOOD, program  # noqa: E402


@pytest.fixture(scope="module")
def samples() -> list[tuple[State, np.ndarray]]:
    env = gym.make("Reacher-v5")
    try:
        return collect_samples(env, REACHER, n=24, seed=3)
    finally:
        env.close()


# -- collect_samples --------------------------------------------------------------------------


def test_collect_samples_records_the_state_after_each_step(samples: list) -> None:
    assert len(samples) == 24
    state, action = samples[0]
    assert set(state) == {"fingertip_pos", "target_pos"} and action.shape == (2,)
    assert not action.flags.writeable and not state.fingertip_pos.flags.writeable
    # Replay by hand: the first sample is the state after the first step, not the reset state.
    env = gym.make("Reacher-v5")
    env.action_space.seed(3)
    env.reset(seed=3)
    reset_tip = env.unwrapped.get_body_com("fingertip").copy()
    first_action = env.action_space.sample()
    env.step(first_action)
    np.testing.assert_allclose(action, first_action)
    np.testing.assert_allclose(state.fingertip_pos, env.unwrapped.get_body_com("fingertip"))
    assert not np.allclose(state.fingertip_pos, reset_tip)
    env.close()


class CountingEnv(gym.Env):
    """Three-step episodes; counts resets."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,))
    action_space = gym.spaces.Box(-1.0, 1.0, (1,))

    def __init__(self) -> None:
        self.resets, self.t = 0, 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple:
        super().reset(seed=seed)
        self.resets, self.t = self.resets + 1, 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple:
        self.t += 1
        return np.zeros(1, dtype=np.float32), 0.0, False, self.t >= 3, {}


def test_collect_samples_resets_when_an_episode_ends() -> None:
    env = CountingEnv()
    schema = StateSchema("counting", (Field("t", (), "steps", "time in episode"),),
                         reader=lambda e: {"t": e.t})
    samples = collect_samples(env, schema, n=7, seed=0)
    assert [float(s.t) for s, _ in samples] == [1, 2, 3, 1, 2, 3, 1]
    assert env.resets == 3
    again = collect_samples(CountingEnv(), schema, n=7, seed=0)
    np.testing.assert_array_equal([a for _, a in samples], [a for _, a in again])


# -- preflight: accepted programs ---------------------------------------------------------------


def test_good_program_passes_every_check(samples: list) -> None:
    report = preflight(GOOD, samples, program="reward.py")
    assert report.accepted, report.render()
    assert [r.name for r in report.results] == list(CHECK_NAMES)
    assert report.reasons == []
    assert report.sha256 == hashlib.sha256(GOOD.encode()).hexdigest()
    lines = report.render().splitlines()
    assert len(lines) == len(CHECK_NAMES) and all(line.startswith("PASS  ") for line in lines)
    assert "returns (total, {distance, control})" in report.render()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["accepted"] is True and data["program"] == "reward.py"
    report.raise_if_rejected()  # no-op


def test_bare_float_program_is_accepted(samples: list) -> None:
    source = program("return -float(np.linalg.norm(state.fingertip_pos - state.target_pos))")
    report = preflight(source, samples)
    assert report.accepted, report.render()
    assert "no components" in report.results[2].detail


def test_constant_total_with_a_varying_component_is_accepted(samples: list) -> None:
    source = program('return 1.0, {"tip_x": float(state.fingertip_pos[0])}')
    report = preflight(source, samples)
    assert report.accepted, report.render()
    assert "component 'tip_x' varies" in report.results[CHECK_NAMES.index("non_constant")].detail


# -- preflight: rejected programs ---------------------------------------------------------------


@pytest.mark.parametrize("path", HOSTILE, ids=[p.stem for p in HOSTILE])
def test_hostile_program_fails_static_and_nothing_else_runs(path: Path, samples: list) -> None:
    report = preflight(path.read_text(), samples, program=path.name)
    assert not report.accepted
    static, *rest = report.results
    assert static.name == "static" and not static.passed and path.name in static.detail
    assert all(not r.passed and r.detail == "skipped: static failed" for r in rest)
    assert len(report.reasons) == 1 and report.reasons[0].startswith("static: ")


def failing(report: CheckReport) -> CheckResult:
    """The one check that failed for a reason; asserts the ones after it were skipped."""
    failed = [r for r in report.results if not r.passed]
    first = failed[0]
    assert all(r.detail == f"skipped: {first.name} failed" for r in failed[1:])
    assert not report.accepted and report.reasons == [f"{first.name}: {first.detail}"]
    return first


@pytest.mark.parametrize("body, check, fragment", [
    ("return float('nan') * action[0]", "finite", "total is nan/inf at 24 of 24 samples"),
    ('return 1.0, {"d": float(np.log(-1.0 - abs(state.fingertip_pos[0])))}', "finite",
     "component 'd' is nan/inf"),
    ("return 1e9 * float(state.fingertip_pos[0])", "scale", "exceeds 1000"),
    ("return 0.0", "scale", "exactly 0 at all 24 samples"),
    ('return 0.5, {"bonus": 0.5}', "non_constant", "every component are constant"),
    ("return [1.0]", "output_contract", "the value is list"),
    ("return 1.0 / (float(state.target_pos[2]) * 0.0)", "isolated_run",
     "exception: sample 0: ZeroDivisionError"),
])
def test_each_check_catches_its_failure(samples: list, body: str, check: str,
                                        fragment: str) -> None:
    report = preflight(program(body), samples, program="reward.py")
    failed = failing(report)
    assert failed.name == check, report.render()
    assert fragment in failed.detail
    rendered = report.render().splitlines()[CHECK_NAMES.index(check)]
    assert rendered.startswith(f"FAIL  {check}")


def test_exception_detail_has_the_line(samples: list) -> None:
    report = preflight(program("scale = 0.0\nreturn float(action[0]) / scale"), samples,
                       program="reward.py")
    assert "(at reward.py:5: return float(action[0]) / scale)" in failing(report).detail


def test_bad_output_is_an_output_contract_failure_not_a_run_failure(samples: list) -> None:
    report = preflight(program("return {'total': 1.0}"), samples)
    assert report.results[1].passed  # it ran
    assert failing(report).name == "output_contract"


def test_slow_program_fails_the_time_budget(samples: list) -> None:
    source = program("return float(sum(i * 1e-9 for i in range(20000))) + float(action[0])")
    report = preflight(source, samples, per_call_budget_s=1e-4)
    failed = failing(report)
    assert failed.name == "time_budget" and "budget 0.1 ms" in failed.detail


def test_cpu_burner_is_stopped(samples: list) -> None:
    burner = program("total = 0\nfor i in range(10**6):\n    for j in range(10**6):\n        total += j\n"
                     "return float(total)")
    report = preflight(burner, samples, cpu_seconds=1, wall_seconds=20)
    failed = failing(report)
    assert failed.name == "isolated_run" and failed.detail.startswith("cpu_limit: ")


def test_missing_entry_point_is_rejected(samples: list) -> None:
    report = preflight("import numpy as np\ndef reward(state, action):\n    return 0.0\n", samples)
    assert failing(report).name == "static"
    assert "must define 'compute_reward(state, action)'" in report.reasons[0]


def test_rejection_can_be_raised_with_the_report(samples: list) -> None:
    report = preflight(program("return 0.0"), samples, program="reward.py")
    with pytest.raises(RewardCodeRejected, match="reward.py failed pre-flight") as info:
        report.raise_if_rejected()
    assert info.value.report is report and "scale: total is exactly 0" in str(info.value)


def test_preflight_needs_samples() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        preflight(GOOD, [])


def test_preference_check_needs_a_reference_policy_and_ranks_it_first() -> None:
    from reward_synthesis.safety.checks import check_inputs
    from workbench.sims.mujoco import MujocoAdapter
    from workbench.spec import SimSpec

    adapter = MujocoAdapter()
    for env_id, has_reference in (("Reacher-v5", True), ("Walker2d-v5", False)):
        spec = SimSpec(env_id=env_id)
        env = adapter.make_env(spec)
        profile = adapter.profile(spec, env)
        samples, preference = check_inputs(env, profile, n=16)
        env.close()
        assert (preference is not None) == has_reference
        if not has_reference:
            report = preflight("def compute_reward(state, action):\n    return float(state.x_velocity)\n",
                               samples, preference=preference)
            assert report.accepted and "not run" in report.results[CHECK_NAMES.index("preference")].detail
            continue
        toward = ("import numpy as np\ndef compute_reward(state, action):\n"
                  "    return -float(np.linalg.norm(state.fingertip_to_target))\n")
        away = toward.replace("return -float", "return float")
        assert preflight(toward, samples, preference=preference).accepted
        rejected = preflight(away, samples, preference=preference)
        assert not rejected.accepted and failing(rejected).name == "preference"
        assert "prefers random" in failing(rejected).detail


def _mujoco_check_inputs(env_id: str) -> tuple[list, Any]:
    """16 random-action samples and the preference episodes of a MuJoCo env, as the pre-flight makes them."""
    from reward_synthesis.safety.checks import check_inputs
    from workbench.sims.mujoco import MujocoAdapter
    from workbench.spec import SimSpec

    adapter = MujocoAdapter()
    spec = SimSpec(env_id=env_id)
    env = adapter.make_env(spec)
    try:
        return check_inputs(env, adapter.profile(spec, env), n=16)
    finally:
        env.close()


def test_a_reward_for_staying_at_the_start_fails_on_hopper_and_moving_forward_passes() -> None:
    """The embedded model's Hopper sketch, closeness of x_position to 0, passed while Hopper had no
    reference policy; the linear feedback hop now ranks it below random actions."""
    samples, preference = _mujoco_check_inputs("Hopper-v5")
    stay = ("def compute_reward(state, action):\n"
            "    return -abs(float(state.x_position)) / 0.01, {'reach': -abs(float(state.x_position)) / 0.01}\n")
    rejected = failing(preflight(stay, samples, preference=preference))
    assert rejected.name == "preference" and "prefers random" in rejected.detail and rejected.blamed == ("reach",)
    forward = "def compute_reward(state, action):\n    return float(state.x_velocity)\n"
    assert preflight(forward, samples, preference=preference).accepted


def test_a_reward_for_keeping_still_loses_to_the_idle_baseline_on_half_cheetah() -> None:
    """Random actions thrash, so "small joint velocities" ranks HalfCheetah's scripted gait above them;
    a constant action keeps the cheetah still, its states score higher, and the check names the term
    to blame. Running forward beats both; an action cost (which idling never pays) is no reason to
    reject: the idle baseline is judged on states only."""
    samples, preference = _mujoco_check_inputs("HalfCheetah-v5")
    assert preference is not None and len(preference.idle) == len(preference.random) > 0
    still = ("import numpy as np\ndef compute_reward(state, action):\n"
             "    return -float(np.linalg.norm(state.qvel)), {'still': -float(np.linalg.norm(state.qvel))}\n")
    without_idle = preflight(still, samples, preference=dataclasses.replace(preference, idle=[]))
    assert without_idle.accepted, without_idle.render()
    rejected = failing(preflight(still, samples, preference=preference))
    assert rejected.name == "state_dependence" and "standing still" in rejected.detail
    assert rejected.blamed == ("still",) and "'still' (" in rejected.detail
    forward = ("import numpy as np\ndef compute_reward(state, action):\n"
               "    return float(state.x_velocity) - 0.5 * float(np.sum(np.square(action)))\n")
    assert preflight(forward, samples, preference=preference).accepted


# -- state_dependence: a reward only the action moves --------------------------------------------


@pytest.mark.parametrize("body", [
    'return -0.1 * float(np.sum(np.square(action))), {"effort": -0.1 * float(np.sum(np.square(action)))}',
    # an always-true bonus beside the action cost: the total varies, but never with the state
    'return 1.0 - float(np.sum(np.square(action))), {"on_pad": 1.0, "effort": -float(np.sum(np.square(action)))}',
])
def test_a_reward_only_the_action_moves_fails_state_dependence(samples: list, body: str) -> None:
    report = preflight(program(body), samples, program="reward.py")
    failed = failing(report)
    assert failed.name == "state_dependence", report.render()
    assert "with the action held fixed the total is the same in all 24 sampled states" in failed.detail
    assert "says nothing about the goal" in failed.detail


def test_state_dependence_needs_the_reference_episodes_states_to_score_higher() -> None:
    """On Reacher (which ships a reference policy) |target_pos| varies over the samples, but the
    reference and random episodes start from the same seeded targets: with the action held fixed
    they score the same, so the reward cannot be what ranks the scripted solution first."""
    from reward_synthesis.safety.checks import check_inputs
    from workbench.registry import SIMS
    from workbench.spec import SimSpec

    adapter = SIMS.get("mujoco")()
    spec = SimSpec(env_id="Reacher-v5")
    env = adapter.make_env(spec)
    try:
        states, preference = check_inputs(env, adapter.profile(spec, env), n=128)  # 3 episodes: targets vary
    finally:
        env.close()
    off_topic = ("import numpy as np\ndef compute_reward(state, action):\n"
                 "    return -float(np.linalg.norm(state.target_pos)) - 0.1 * float(np.sum(np.square(action)))\n")
    report = preflight(off_topic, states, preference=preference)
    failed = failing(report)
    assert failed.name == "state_dependence", report.render()
    assert "does not favour the scripted solution" in failed.detail
    on_topic = off_topic.replace("state.target_pos", "state.fingertip_to_target")
    passed = preflight(on_topic, states, preference=preference)
    assert passed.accepted, passed.render()
    assert "reference episodes' states score" in passed.results[CHECK_NAMES.index("state_dependence")].detail
