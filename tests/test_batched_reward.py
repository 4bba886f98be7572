"""Batched reward programs: one call per vector step for all envs, equal to the per-env path.

The shipped batched twin (tasks/mujoco/rewards/reacher_batched.py, ``compute_reward_batch``) of
reacher_precise.py is run over a vector of Reacher envs whose episodes end at different steps,
and compared call by call with the per-env path; the pre-flight rejects programs that mix envs;
the run-time guard bounds the batched call; a tiny PPO run trains on the batched task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from reward_synthesis.program import CodeRewardProgram, build_code_program
from reward_synthesis.safety.sandbox import (
    BATCH_ENTRY_POINT,
    ENTRY_POINT,
    entry_point_of,
    load_program,
    normalize_batch_output,
    run_isolated,
    state_inputs,
    static_check,
)
from workbench.errors import RewardCodeRejected, RewardGuardError, RewardRuntimeError
from workbench.reward import BuiltReward, is_batched
from workbench.spec import load_task
from workbench.state import State
from workbench.task import Task
from workbench.wrappers import VecBatchedReward

REPO = Path(__file__).resolve().parent.parent
BATCHED_TASK = REPO / "tasks/mujoco/reacher_batched.yaml"
SINGLE_TASK = REPO / "tasks/mujoco/reacher.yaml"
N_ENVS = 4
EPISODE_STEPS = (23, 31, 50, 17)  # per env: episodes end (and auto-reset) at different steps
TOL = 1e-9


def batch_program(body: str) -> str:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"import numpy as np\n\ndef compute_reward_batch(state, action):\n{lines}\n"


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    """The shipped batched and single-state Reacher tasks (built once: the pre-flight runs)."""
    return {"batched": Task.build(load_task(BATCHED_TASK)), "single": Task.build(load_task(SINGLE_TASK))}


def with_program(task: Task, program: Any, *, episode_steps: int | None = None) -> Task:
    overrides = [] if episode_steps is None else [f"sim.max_episode_steps={episode_steps}"]
    spec = load_task(task.spec.source_path, overrides)
    return Task(spec, task.adapter, task.profile, BuiltReward(program, "test program"))


class Recording:
    """Any reward program, its calls recorded: (pre-step state, action, next state, total)."""

    def __init__(self, program: Any):
        self.program, self.name, self.inputs = program, program.name, program.inputs
        self.batched = is_batched(program)
        self.calls: list[tuple[State, np.ndarray, State, Any]] = []

    def __call__(self, state: State, action: np.ndarray, next_state: State) -> Any:
        total, components = self.program(state, action, next_state)
        self.calls.append((state, np.array(action), next_state, total))
        return total, components


def vector(task: Task, program: Any, *, subproc: bool = False) -> VecEnv:
    """N envs of ``task`` (episode lengths EPISODE_STEPS) with ``program``, as a learner builds
    them: ``env_fns`` in a vector env, then ``wrap_vec`` (which takes a batched program over)."""
    fns = [with_program(task, program, episode_steps=steps).env_fns(1)[0] for steps in EPISODE_STEPS[:N_ENVS]]
    venv = SubprocVecEnv(fns, start_method="fork") if subproc else DummyVecEnv(fns)
    return with_program(task, program).wrap_vec(venv)


def rollout(venv: VecEnv, actions: np.ndarray) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
    venv.seed(7)
    venv.reset()
    rewards, infos = [], []
    for action in actions:
        _, reward, _, info = venv.step(action)
        rewards.append(reward)
        infos.append(info)
    venv.close()
    return np.array(rewards), infos


def actions_for(task: Task, steps: int) -> np.ndarray:
    space = task.make_env().action_space
    return np.random.default_rng(0).uniform(space.low, space.high,
                                            size=(steps, N_ENVS, *space.shape)).astype(space.dtype)


# -- declaring the batched form ---------------------------------------------------------------


def test_the_function_name_declares_the_form() -> None:
    batched = batch_program("return -np.linalg.norm(state.fingertip_to_target, axis=-1)")
    assert entry_point_of(batched) == BATCH_ENTRY_POINT and static_check(batched) == []
    assert state_inputs(batched) == frozenset({"fingertip_to_target"})
    single = (REPO / "tasks/mujoco/rewards/reacher_precise.py").read_text()
    assert entry_point_of(single) == ENTRY_POINT
    assert CodeRewardProgram(batched).batched and not CodeRewardProgram(single).batched
    both = single + "\n\ndef compute_reward_batch(state, action):\n    return state.fingertip_pos[:, 0]\n"
    (violation,) = static_check(both)
    assert "defines both 'compute_reward' and 'compute_reward_batch'" in violation.message
    (violation,) = static_check("def reward(state, action):\n    return 0.0\n")
    assert "'compute_reward(state, action)'" in violation.message and BATCH_ENTRY_POINT in violation.message
    # A place that takes one form refuses the other with a message that says so.
    with pytest.raises(RewardCodeRejected, match="defines 'compute_reward_batch': a batched program"):
        load_program(batched, filename="b.py")
    with pytest.raises(RewardCodeRejected, match="defines 'compute_reward': a single-state program"):
        load_program(single, filename="s.py", batched=True)
    assert load_program(batched, filename="b.py", batched=None).__name__ == BATCH_ENTRY_POINT


@pytest.mark.parametrize("body, fragment", [
    ("import os\nreturn state.fingertip_pos[:, 0]", "import of 'os' is not allowed"),
    ("i = 0\nwhile i < 3:\n    i += 1\nreturn state.fingertip_pos[:, 0]", "'while' loops are not allowed"),
    ("return state.fingertip_pos.__class__", "names starting with '_' are reserved"),
    ("np.add.at(action, 0, 1.0)\nreturn state.fingertip_pos[:, 0]", "ufunc.at writes in place"),
])
def test_batched_programs_meet_the_same_sandbox_rules(body: str, fragment: str) -> None:
    violations = static_check(batch_program(body))
    assert any(fragment in v.message for v in violations), violations
    with pytest.raises(RewardCodeRejected, match="rejected by the sandbox"):
        CodeRewardProgram(batch_program(body))


def test_batch_output_is_checked_for_shape_and_type() -> None:
    ok = normalize_batch_output((np.arange(3.0), {"a": np.ones(3), "b": np.arange(3)}), 3)
    assert ok[0].tolist() == [0.0, 1.0, 2.0] and ok[1]["b"].dtype == np.float64
    assert normalize_batch_output([1.0, 2.0], 2)[0].tolist() == [1.0, 2.0]
    cases = [
        (1.5, 4, (r"reward program r\.py: compute_reward_batch must return .*the value has shape \(\), "
                  r"expected \(4,\) for a batch of 4 \(it mixes the envs")),
        (np.ones((4, 2)), 4, r"shape \(4, 2\), expected \(4,\).*reduce each row"),
        ((np.ones(4), {"a": np.ones(3)}), 4, r"component 'a' has shape \(3,\)"),
        (np.ones(4, dtype=bool), 4, "the value is bools"),
        ((np.ones(2), {1: np.ones(2)}), 2, "component key 1 is not a str"),
        ("abc", 2, "the value is str"),
    ]
    for value, n, pattern in cases:
        with pytest.raises(TypeError, match=pattern):
            normalize_batch_output(value, n, program="r.py")


# -- the batched path equals the per-env path ---------------------------------------------------


def test_batched_vector_step_is_one_call_equal_to_the_per_env_path(tasks: dict[str, Task]) -> None:
    steps = 300
    actions = actions_for(tasks["batched"], steps)
    batched = Recording(CodeRewardProgram((REPO / "tasks/mujoco/rewards/reacher_batched.py").read_text(),
                                          filename="reacher_batched.py"))
    single = Recording(CodeRewardProgram((REPO / "tasks/mujoco/rewards/reacher_precise.py").read_text(),
                                         filename="reacher_precise.py"))  # once per env per step
    one_by_one = Recording(CodeRewardProgram(batched.program.source, filename="reacher_batched.py"))
    venv = vector(tasks["batched"], batched)
    assert isinstance(venv, VecBatchedReward)
    got, got_infos = rollout(venv, actions)
    want, want_infos = rollout(vector(tasks["single"], single), actions)
    # The same batched program in a vector env without wrap_vec: each env calls it with N = 1.
    fns = [with_program(tasks["batched"], one_by_one, episode_steps=s).make_env for s in EPISODE_STEPS[:N_ENVS]]
    alone, alone_infos = rollout(DummyVecEnv(fns), actions)

    assert batched.program.calls == len(batched.calls) == steps  # one call per vector step, all envs
    assert single.program.calls == steps * N_ENVS and one_by_one.program.calls == steps * N_ENVS
    assert all(np.shape(total) == (N_ENVS,) for *_, total in batched.calls)
    totals = np.array([total for *_, total in batched.calls])
    np.testing.assert_allclose(totals, np.reshape([t for *_, t in single.calls], (steps, N_ENVS)), rtol=0, atol=TOL)
    np.testing.assert_allclose(totals, np.reshape([t for *_, t in one_by_one.calls], (steps, N_ENVS)),
                               rtol=0, atol=TOL)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)  # the rewards handed to the learner (float32)
    np.testing.assert_allclose(got, alone, rtol=0, atol=1e-6)
    resets = 0
    for step in range(steps):
        for i in range(N_ENVS):
            ours, theirs, its = got_infos[step][i], want_infos[step][i], alone_infos[step][i]
            keys = sorted(k for k in theirs if k.startswith("reward/"))
            assert keys == ["reward/control", "reward/distance", "reward/env", "reward/precision"]
            assert sorted(k for k in ours if k.startswith("reward/")) == keys
            for key in keys:
                assert abs(ours[key] - theirs[key]) <= TOL and abs(ours[key] - its[key]) <= TOL, (step, i, key)
            assert "workbench/state" not in ours
            assert ours.get("is_success") == theirs.get("is_success")
            resets += "terminal_observation" in ours
    assert resets == sum(steps // s for s in EPISODE_STEPS[:N_ENVS])


class Progress:
    """A Python-level program that reads the pre-step state: the distance gained this step."""

    name, inputs = "progress", frozenset({"fingertip_to_target"})

    def __call__(self, state: State, action: np.ndarray, next_state: State) -> tuple[float, dict[str, float]]:
        before = float(np.linalg.norm(state.fingertip_to_target))
        after = float(np.linalg.norm(next_state.fingertip_to_target))
        return before - after, {"before": before}


class BatchedProgress:
    name, inputs, batched = "progress", frozenset({"fingertip_to_target"}), True

    def __call__(self, state: State, action: np.ndarray, next_state: State) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        assert not state.fingertip_to_target.flags.writeable and not next_state.fingertip_to_target.flags.writeable
        before = np.linalg.norm(state.fingertip_to_target, axis=-1)
        after = np.linalg.norm(next_state.fingertip_to_target, axis=-1)
        return before - after, {"before": before}


@pytest.mark.parametrize("subproc", [False, True], ids=["dummy", "subproc"])
def test_pre_step_state_is_what_the_single_path_passes_across_resets(tasks: dict[str, Task], subproc: bool) -> None:
    """``state`` is each env's previous post-step state, or its post-reset state after an episode
    ended; ``next_state`` is read before the auto-reset. Through DummyVecEnv (shared buffers) and
    SubprocVecEnv (states pickled back in info)."""
    steps = 120
    actions = actions_for(tasks["batched"], steps)
    batched, single = Recording(BatchedProgress()), Recording(Progress())
    got, got_infos = rollout(vector(tasks["batched"], batched, subproc=subproc), actions)
    want, _ = rollout(vector(tasks["single"], single), actions)
    if not subproc:
        assert len(batched.calls) == steps
        for step, (state, action, next_state, _) in enumerate(batched.calls):
            np.testing.assert_array_equal(action, actions[step])
            for i in range(N_ENVS):
                s, a, ns, _ = single.calls[step * N_ENVS + i]
                np.testing.assert_array_equal(action[i], a)
                np.testing.assert_array_equal(state.fingertip_to_target[i], s.fingertip_to_target)
                np.testing.assert_array_equal(next_state.fingertip_to_target[i], ns.fingertip_to_target)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    before = np.array([[info["reward/before"] for info in step] for step in got_infos])
    np.testing.assert_allclose(before.ravel(), [c[3] + float(np.linalg.norm(c[2].fingertip_to_target))
                                                for c in single.calls], rtol=0, atol=TOL)


def test_vector_wrapper_takes_the_program_over_only_from_envs_that_hold_it(tasks: dict[str, Task]) -> None:
    task = tasks["batched"]
    import gymnasium as gym

    with pytest.raises(RuntimeError, match="the envs cannot hand their reward program over"):
        VecBatchedReward(DummyVecEnv([lambda: gym.make("Reacher-v5")]), task.reward.program, task.profile.schema)
    with pytest.raises(RuntimeError, match="only a batched reward program can be deferred"):
        VecBatchedReward(DummyVecEnv([tasks["single"].make_env]), task.reward.program, task.profile.schema)


# -- pre-flight ---------------------------------------------------------------------------------


MIXES_ENVS = batch_program("""
distance = np.linalg.norm(state.fingertip_to_target)  # no axis=-1: one number for the whole batch
control = np.sum(np.square(action), axis=-1)
return -distance - 0.1 * control, {"distance": -distance + 0.0 * control}
""")


def test_preflight_rejects_a_program_that_mixes_envs(tasks: dict[str, Task], tmp_path: Path) -> None:
    task = tasks["batched"]
    path = tmp_path / "mixes.py"
    path.write_text(MIXES_ENVS)
    env = task.adapter.make_env(task.spec.sim)
    try:
        with pytest.raises(RewardCodeRejected) as caught:
            build_code_program(path, task.profile, env, samples=64)
    finally:
        env.close()
    message = str(caught.value)
    assert f"reward program {path} was rejected" in message
    assert "FAIL  batch_consistency" in message and "axis=-1" in message
    result = {r.name: r for r in caught.value.report.results}
    assert result["output_contract"].passed and not result["batch_consistency"].passed
    assert "differs at" in result["batch_consistency"].detail


def test_preflight_names_a_batched_shape_error(tasks: dict[str, Task], tmp_path: Path) -> None:
    path = tmp_path / "scalar.py"
    path.write_text(batch_program("return float(np.sum(state.fingertip_to_target))"))
    env = tasks["batched"].adapter.make_env(tasks["batched"].spec.sim)
    try:
        with pytest.raises(RewardCodeRejected) as caught:
            build_code_program(path, tasks["batched"].profile, env, samples=16)
    finally:
        env.close()
    (reason,) = caught.value.report.reasons
    assert reason.startswith("output_contract: the batch of all ")
    assert f"reward program {path}: compute_reward_batch must return" in reason and "mixes the envs" in reason


def test_isolated_run_calls_the_batch_and_each_sample_alone(tasks: dict[str, Task]) -> None:
    env = tasks["batched"].adapter.make_env(tasks["batched"].spec.sim)
    try:
        from reward_synthesis.safety.checks import collect_samples

        samples = collect_samples(env, tasks["batched"].profile.schema, n=10)
    finally:
        env.close()
    source = (REPO / "tasks/mujoco/rewards/reacher_batched.py").read_text()
    run = run_isolated(source, samples, filename="reacher_batched.py")
    assert run.ok and run.batched and run.n_calls == 10 and run.call_seconds.shape == (10,)
    np.testing.assert_allclose(run.totals, run.single_totals, rtol=0, atol=TOL)
    assert set(run.components) == set(run.single_components) == {"distance", "control", "precision"}


# -- the run-time guard on the batched call ------------------------------------------------------


def stacked(task: Task, n: int = 3) -> tuple[State, np.ndarray]:
    env = task.adapter.make_env(task.spec.sim)
    try:
        env.reset(seed=0)
        rows = []
        for _ in range(n):
            env.step(env.action_space.sample())
            rows.append(task.profile.schema.read(env.unwrapped))
    finally:
        env.close()
    fields = {name: np.stack([r[name] for r in rows]) for name in rows[0]}
    for value in fields.values():
        value.flags.writeable = False
    return State._from_frozen(fields), np.zeros((n, 2))


@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")
def test_guard_bounds_the_batched_call(tasks: dict[str, Task]) -> None:
    state, action = stacked(tasks["batched"])
    nan = CodeRewardProgram(batch_program("return np.log(state.fingertip_pos[:, 0] * 0.0 + "
                                          "np.array([1.0, -1.0, 1.0]))"), filename="nan.py")
    with pytest.raises(RewardGuardError, match=r"reward program nan\.py \(call 1\) returned a non-finite total "
                                               r"\(nan\) for env 1 of 3"):
        nan(state, action, state)
    slow = CodeRewardProgram(batch_program("""
total = 0.0
for i in range(1000000):
    for j in range(1000000):
        total += j
return state.fingertip_pos[:, 0] + total
"""), filename="slow.py", timeout_s=0.3)
    with pytest.raises(RewardGuardError, match=r"slow\.py \(call 1\) ran longer than its limit of 0.3 s"):
        slow(state, action, state)
    writes = CodeRewardProgram(batch_program("""
state.fingertip_pos[:, 0] = 1.0
return state.fingertip_pos[:, 0]
"""), filename="writes.py")
    with pytest.raises(RewardRuntimeError, match="read-only"):
        writes(state, action, state)
    writes_action = CodeRewardProgram(batch_program("action[:, 0] = 1.0\nreturn action[:, 0]"), filename="wa.py")
    with pytest.raises(RewardRuntimeError, match="read-only"):
        writes_action(state, action, state)
    assert not state.fingertip_pos.flags.writeable and action[0, 0] == 0.0
    keeps = CodeRewardProgram("import numpy as np\nseen = []\n\ndef compute_reward_batch(state, action):\n"
                              "    seen.append(1)\n    return state.fingertip_pos[:, 0]\n", filename="keeps.py")
    with pytest.raises(RewardRuntimeError, match="module-level values of a reward program are read-only"):
        keeps(state, action, state)
    shape = CodeRewardProgram(batch_program("return state.fingertip_pos"), filename="shape.py")
    with pytest.raises(RewardRuntimeError, match=r"shape\.py \(call 1\) returned a bad value during training: "
                                                 r"compute_reward_batch must return .* has shape \(3, 3\)"):
        shape(state, action, state)


def test_one_env_evaluation_calls_a_batched_program_with_a_batch_of_one(tasks: dict[str, Task]) -> None:
    program = tasks["batched"].reward.program
    calls = program.calls
    env = tasks["batched"].make_env()
    try:
        env.reset(seed=3)
        _, reward, _, _, info = env.step(np.array([0.3, -0.2], dtype=np.float32))
    finally:
        env.close()
    assert program.calls == calls + 1
    parts = [info["reward/distance"], info["reward/control"], info["reward/precision"]]
    assert all(type(p) is float for p in parts) and reward == pytest.approx(sum(parts), abs=1e-12)
    assert info["reward/control"] == pytest.approx(-0.1 * (0.3**2 + 0.2**2), abs=1e-7)
    d = -info["reward/distance"]
    assert d > 0 and info["reward/precision"] == pytest.approx(0.5 * np.exp(-(d / 0.02) ** 2), abs=1e-12)


# -- end to end ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vec_env", ["dummy", "subproc"])
def test_tiny_ppo_run_on_the_batched_task(tmp_path: Path, vec_env: str) -> None:
    """The one training entry point on the shipped batched task: trains (one batched call per
    vector step, in this process, also over subprocess envs), evaluates (N = 1 per step), logs."""
    from workbench.pipeline import train_and_evaluate

    spec = load_task(BATCHED_TASK, ["training.total_steps=256", "training.n_envs=2", "learner.hyperparams.n_steps=64",
                                    "learner.hyperparams.batch_size=64", "learner.hyperparams.n_epochs=1",
                                    "training.eval_every=0", "evaluation.episodes=2", "evaluation.video=false",
                                    f"training.vec_env={vec_env}"])
    result = train_and_evaluate(spec, tmp_path)
    run, task = result.run, result.task
    info = json.loads((run.path / "run.json").read_text())
    assert info["status"] == "finished", info
    # 256 steps on 2 envs: 128 vector steps, one batched call each, + 2 evaluation episodes of 50 (N = 1).
    assert task.reward.program.calls == 128 + 2 * 50
    evaluation = json.loads((run.path / "eval.json").read_text())
    assert evaluation["episodes"] == 2 and set(evaluation["components"]) >= {"distance", "control", "precision"}
    monitor = (run.path / "monitor" / "vec.monitor.csv").read_text().splitlines()
    assert len(monitor) >= 2 + 4  # header lines + 4 training episodes of 50 steps
