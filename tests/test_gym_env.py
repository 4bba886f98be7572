"""Every task is a Gymnasium env: ``gym.make("rl_workbench/Task-v0", task=...)`` (workbench.gym_env).

Gymnasium's ``check_env`` (its recreate step included: ``env.spec.make()``) and SB3's ``check_env``
on the env of every shipped task; the spec pickles and rebuilds the same env (same seed, same
rollout); ``Task.make_env()``'s envs are recreatable too; a synthesized reward comes from a run
directory or a program file and is never synthesized in ``make``; and a foreign trainer, RL Zoo 3,
trains a shipped task by env id through its own CLI with the reward terms in its logs.
"""

from __future__ import annotations

import csv
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from workbench_testing import PIXEL_SOURCES, REPO, SHIPPED, TEST_CLIP, load_shipped

from workbench.errors import TaskError, WorkbenchError
from workbench.gym_env import ENTRY_POINT, ENV_ID
from workbench.spec import load_task, parse_yaml
from workbench.task import Task
from workbench.wrappers import TaskWrapper

MUJOCO = REPO / "tasks" / "mujoco"
REACHER = MUJOCO / "reacher.yaml"
REACHER_PROGRAM = MUJOCO / "rewards" / "reacher_precise.py"

# Shipped tasks whose reward cannot be made in a test here, and what stands in (given through the
# env id's own arguments, as a user would):
STAND_INS: dict[str, dict[str, Any]] = {
    # an LLM synthesizes these rewards: a shipped program for the same StateView stands in
    "reacher_text2reward": {"program": str(REACHER_PROGRAM)},
    "collect_wood_automc": {"program": str(REPO / "tasks/minecraft/rewards/collect_wood_dense.py")},
    # LaRe learns its reward (a decoder across the vector of training envs): a shipped program
    # (forward velocity) for one, the raw-episodic baseline LaRe learns from for the other
    "half_cheetah_lare": {"program": str(MUJOCO / "rewards/half_cheetah_forward.py")},
    "hopper_lare": {"overrides": ["reward={source: episodic}"]},
}
# CLIP goal rewards (no pretrained weights here) run on the test backbone with random weights
# (workbench_testing.TEST_CLIP): the real code path, meaningless scores; a perceptual task gets a
# throwaway model learned from two reference demos (workbench_testing.load_shipped) and is passed
# as data (a task mapping). Everything else is the shipped task as it is.

# The default suite checks one task per simulator and per kind of reward wrapping (a program, a
# batched program, a frame reward, a reward's own env wrapper, an LLM's stand-in); every shipped
# task runs under `make test-slow` (about three minutes here). highway-env steps at ~20 Hz and a
# code reward's pre-flight checks step it ~400 times per build: the default suite checks the
# highway env with its own reward (`highway_state+env_reward`), the slow one with the task's.
# ManiSkill's push_cube (~16 s) is in the slow suite: test_maniskill.py runs gymnasium's checker on
# its env in the default one.
DEFAULT = {"reacher", "reacher_batched", "reacher_clip", "hopper_episodic", "reacher_text2reward",
           "collect_wood_dense", "touch_ball", "clg_town2"}
HIGHWAY_STATE = REPO / "tasks" / "highway" / "highway_state.yaml"


def _name(path: Path) -> str:
    return path.stem


SHIPPED_PARAMS = [pytest.param(p, [], id=str(p.relative_to(REPO / "tasks")),
                               marks=() if _name(p) in DEFAULT else pytest.mark.slow) for p in SHIPPED]
SHIPPED_PARAMS.append(pytest.param(HIGHWAY_STATE, ["reward={source: env}"], id="highway/highway_state.yaml+env_reward"))


def _kwargs(path: Path, tmp: Path, extra: list[str]) -> dict[str, Any]:
    """The env id's arguments for a shipped task, as this machine can make it (see above)."""
    if _name(path) in STAND_INS:
        kwargs: dict[str, Any] = {"task": str(path), **STAND_INS[_name(path)]}
    else:
        source = parse_yaml(path.read_text(), file=str(path)).get("reward", {}).get("source")
        spec = load_shipped(path, tmp)  # skips CARLA without a server, ManiSkill without Vulkan
        if source == "perceptual":  # with the throwaway model load_shipped learned
            kwargs = {"task": {**spec.resolved_dict(), "source_path": spec.source_path}}
        elif source in PIXEL_SOURCES:
            kwargs = {"task": str(path), "overrides": [*TEST_CLIP, "reward.calibration_steps=16"]}
        else:
            kwargs = {"task": str(path)}
    if extra:
        kwargs["overrides"] = [*kwargs.get("overrides", []), *extra]
    return kwargs


def _rollout(env: gym.Env, steps: int, *, seed: int = 3) -> list[tuple[Any, ...]]:
    """Observations, rewards, ends and reward terms of a seeded rollout with seeded actions."""
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace: list[tuple[Any, ...]] = [(obs,)]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        terms = {k: v for k, v in info.items() if k.startswith("reward/")}
        trace.append((obs, float(reward), terminated, truncated, terms, info.get("is_success")))
        if terminated or truncated:
            obs, _ = env.reset()
            trace.append((obs,))
    return trace


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray | float | np.floating | int | np.integer) and not isinstance(a, bool):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    return bool(a == b)


def _scored_by_a_random_model(env: gym.Env) -> bool:
    """A pixel reward on the random-weight test backbone: each build draws other weights (and
    fits another calibration), so its scores differ between two builds of the same env."""
    return bool(env.get_wrapper_attr("capture_frames"))


@pytest.mark.parametrize(("path", "extra"), SHIPPED_PARAMS)
def test_every_shipped_task_is_a_gymnasium_env_that_rebuilds_itself(path: Path, extra: list[str],
                                                                    tmp_path: Path) -> None:
    kwargs = _kwargs(path, tmp_path, extra)
    env = gym.make(ENV_ID, **kwargs)
    again = None
    try:
        assert env.spec is not None and env.spec.id == ENV_ID and env.spec.entry_point == ENTRY_POINT
        # Gymnasium's checker, with its recreate step (env.spec.make()); rendering is left out: the
        # declared modes include "human", a window. SB3's checker on the same env.
        check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
        # The spec is plain data: pickled and made again, it is the same env.
        spec = pickle.loads(pickle.dumps(env.spec))
        assert spec == env.spec
        again = gym.make(spec)
        assert again.spec == env.spec and str(again) == str(env)
        first, second = _rollout(env, 12), _rollout(again, 12)
        if _scored_by_a_random_model(env):  # the env's side still agrees: observations, ends, env reward
            def strip(trace: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
                return [(s[0],) if len(s) == 1 else (s[0], s[2], s[3], s[4]["reward/env"]) for s in trace]

            first, second = strip(first), strip(second)
        assert _same(first, second)
        # The task's reward program reaches info: the simulator's reward and every term.
        _, info = env.reset(seed=0)
        _, _, _, _, info = env.step(env.action_space.sample())
        assert "reward/env" in info
        program = env.get_wrapper_attr("program")
        if program is not None and not _scored_by_a_random_model(env):
            assert any(k.startswith("reward/") and k != "reward/env" for k in info), sorted(info)
    finally:
        env.close()
        if again is not None:
            again.close()


def test_the_env_carries_the_task_reward_success_and_time_limit() -> None:
    env = gym.make(ENV_ID, task=str(REACHER), overrides=["sim.max_episode_steps=20"])
    try:
        env.reset(seed=0)
        for step in range(1, 21):
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert set(info) >= {"reward/env", "reward/distance", "reward/control", "reward/precision"}
            terms = info["reward/distance"] + info["reward/control"] + info["reward/precision"]
            assert reward == pytest.approx(terms)  # the program's total, not the simulator's reward
            assert reward != pytest.approx(info["reward/env"])
            if step < 20:
                assert not truncated and "is_success" not in info
        assert truncated and not terminated  # the task's time limit
        assert isinstance(info["is_success"], bool)  # the task's own success metric, at episode end
    finally:
        env.close()


def test_task_make_env_is_recreatable_with_its_exact_program(tmp_path: Path) -> None:
    """The workbench's own envs (Task.make_env) record the program's text: check_env's recreate
    step works, and the rebuilt env runs exactly that program even after the file changed."""
    program = tmp_path / "reward.py"
    program.write_text(REACHER_PROGRAM.read_text())
    task = Task.build(load_task(REACHER, [f"reward.path={program}"]))
    env = task.make_env()
    assert env.spec is not None and env.spec.id == ENV_ID
    assert env.spec.kwargs["program_source"] == REACHER_PROGRAM.read_text()
    assert env.spec.kwargs["task"]["source_path"] == str(REACHER.resolve())
    check_env(env, skip_render_check=True)
    program.write_text("def compute_reward(state, action):\n    return 1.0, {'one': 1.0}\n")
    again = env.spec.make()
    try:
        assert again.get_wrapper_attr("program").source == REACHER_PROGRAM.read_text()
        assert _same(_rollout(env, 8), _rollout(again, 8))
        # render_mode is recorded; a spec made with another one renders
        rendering = env.spec.make(render_mode="rgb_array")
        rendering.reset(seed=0)
        frame = rendering.render()
        assert isinstance(frame, np.ndarray) and frame.ndim == 3
        assert rendering.spec.kwargs["render_mode"] == "rgb_array"
        rendering.close()
    finally:
        env.close()
        again.close()


def test_a_wrapper_without_task_arguments_keeps_gymnasiums_spec() -> None:
    """A TaskWrapper built by hand (no env_kwargs) claims nothing: Gymnasium's default spec."""
    inner = gym.make("Reacher-v5")
    task = Task.build(load_task(REACHER))
    env = TaskWrapper(inner, task.profile.schema, success=task.profile.success)
    assert env.spec is not None and env.spec.id == "Reacher-v5"
    assert env.spec.additional_wrappers[-1].kwargs is None  # Gymnasium refuses to re-apply it, as before
    env.close()


# async: each env in a forked process of its own (multiprocessing's default here). The env gymnasium
# makes in this process to read the spaces arms the reward guard's hard timer; the guard's fork hooks
# keep a forked child from inheriting it (it deadlocked the child's first guarded call before).
@pytest.mark.parametrize("mode", ["sync", pytest.param("async", marks=pytest.mark.slow)])
def test_make_vec_builds_task_envs(mode: str) -> None:
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode=mode, task=str(REACHER),
                        overrides=["sim.max_episode_steps=20"])
    try:
        venv.reset(seed=0)
        for _ in range(20):
            _, rewards, _, truncated, infos = venv.step(venv.action_space.sample())
        assert rewards.shape == (2,) and truncated.all()
        assert infos["reward/distance"].shape == (2,) and infos["_is_success"].all()
        np.testing.assert_allclose(rewards, infos["reward/distance"] + infos["reward/control"]
                                   + infos["reward/precision"], rtol=1e-5)
    finally:
        venv.close()


def test_a_program_file_replaces_the_reward() -> None:
    env = gym.make(ENV_ID, task=str(MUJOCO / "hopper.yaml"), program=str(MUJOCO / "rewards/half_cheetah_forward.py"))
    try:
        env.reset(seed=0)
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert reward == pytest.approx(info["reward/forward"] + info["reward/control"])
        assert env.spec.kwargs["program"] == str(MUJOCO / "rewards/half_cheetah_forward.py")
    finally:
        env.close()


def test_a_task_given_as_data_with_relative_paths(tmp_path: Path) -> None:
    data = parse_yaml(REACHER.read_text(), file=str(REACHER))
    env = gym.make(ENV_ID, task={**data, "source_path": str(REACHER)}, overrides=["sim.max_episode_steps=20"])
    try:
        assert env.get_wrapper_attr("program").source == REACHER_PROGRAM.read_text()
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_a_reward_an_llm_would_synthesize_is_refused_with_the_fix() -> None:
    path = MUJOCO / "reacher_text2reward.yaml"
    with pytest.raises(TaskError) as err:
        gym.make(ENV_ID, task=str(path))
    text = str(err.value)
    assert err.value.exit_code == 2 and err.value.key == "reward.source"
    assert text.startswith(f"{path}: reward.source: text2reward synthesizes its reward with an LLM")
    assert "run='runs/<name>'" in text and "program='reward.py'" in text
    # auto_mc too; LaRe only when it has no hand-written encoder (else: the decoder, below)
    with pytest.raises(TaskError, match="auto_mc synthesizes its reward with an LLM"):
        gym.make(ENV_ID, task=str(REPO / "tasks/minecraft/collect_wood_automc.yaml"))
    with pytest.raises(TaskError, match="lare synthesizes its reward with an LLM"):
        gym.make(ENV_ID, task=str(MUJOCO / "hopper_lare.yaml"), overrides=["reward.encoder=null"])


def test_a_reward_learned_across_envs_is_refused_with_the_fix() -> None:
    with pytest.raises(TaskError) as err:
        gym.make(ENV_ID, task=str(MUJOCO / "hopper_lare.yaml"))
    assert err.value.key == "reward.source" and "lare learns its reward across the vector" in str(err.value)
    assert "program='reward.py'" in str(err.value)


def test_wrong_arguments_say_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="give task= or run=, not neither"):
        gym.make(ENV_ID)
    with pytest.raises(WorkbenchError, match="not both"):
        gym.make(ENV_ID, task=str(REACHER), run=str(tmp_path))
    with pytest.raises(WorkbenchError, match="not a workbench run directory"):
        gym.make(ENV_ID, run=str(tmp_path))
    with pytest.raises(TaskError, match="no such task file"):
        gym.make(ENV_ID, task=str(tmp_path / "missing.yaml"))


def test_a_synthesized_reward_comes_from_its_run_directory(tiny_task: Path, tmp_path: Path) -> None:
    """A run whose reward was synthesized (here handed in, as a search hands in its candidate)
    records the program; run= makes the env with exactly that program, and never synthesizes."""
    from reward_synthesis.program import CodeRewardProgram
    from workbench.pipeline import train_and_evaluate
    from workbench.reward import BuiltReward

    text = ("import numpy as np\n\ndef compute_reward(state, action):\n"
            "    d = float(np.linalg.norm(state.fingertip_to_target))\n    return -d, {'near': -d}\n")
    spec = load_task(MUJOCO / "reacher_text2reward.yaml", [
        "training.total_steps=64", "training.n_envs=1", "training.eval_every=0",
        "learner.hyperparams={n_steps: 64, batch_size: 64, n_epochs: 1}", "learner.normalize=false",
        "evaluation.episodes=1", "evaluation.video=false", "sim.max_episode_steps=10"])
    program = CodeRewardProgram(text, name="synthesized", filename="synthesized.py")
    run = train_and_evaluate(spec, tmp_path / "runs", reward=BuiltReward(program, "synthesized", text)).run
    env = gym.make(ENV_ID, run=str(run.path))
    try:
        assert env.get_wrapper_attr("program").source == text
        env.reset(seed=0)
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert reward == pytest.approx(info["reward/near"])
        check_env(env, skip_render_check=True)
        assert env.spec.kwargs == {"run": str(run.path)}
    finally:
        env.close()


def _python(code: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                         env=environ)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_registration_imports_stay_light() -> None:
    """workbench.gym_env registers the id and imports no torch/SB3; ``import workbench`` after
    ``import gymnasium`` registers it too; ``import workbench`` alone imports no gymnasium."""
    heavy = "[m for m in ('torch', 'stable_baselines3') if m in sys.modules]"
    assert _python(f"import sys, workbench.gym_env, gymnasium as gym; print({ENV_ID!r} in gym.registry, {heavy})") \
        == "True []"
    assert _python(f"import sys, gymnasium as gym, workbench; print({ENV_ID!r} in gym.registry, {heavy})") \
        == "True []"
    assert _python("import sys, workbench; print('gymnasium' in sys.modules)") == "False"
    # Gymnasium's own "module:id" form imports the module on the spot
    assert _python(f"import gymnasium as gym; e = gym.make('workbench.gym_env:{ENV_ID}', task={str(REACHER)!r}); "
                   "print(e.spec.id)") == ENV_ID


def _rl_zoo(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("rl_zoo3", reason="RL Zoo 3 is a dev dependency: pip install 'rl-workbench[dev]'")
    environ = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "rl_zoo3.train", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=environ)


def test_rl_zoo_trains_a_shipped_task_by_env_id(tmp_path: Path) -> None:
    """RL Zoo 3's own CLI, our env id through --gym-packages and --env-kwargs: PPO on Reacher with
    its reward program for a tiny budget; the terms and the success flag reach its monitor log."""
    logs = tmp_path / "logs"
    out = _rl_zoo(["--algo", "ppo", "--env", ENV_ID, "--gym-packages", "workbench.gym_env",
                   "--env-kwargs", f"task:{str(REACHER)!r}", "overrides:['sim.max_episode_steps=20']",
                   "-n", "256", "--seed", "0", "--eval-freq", "-1", "--num-threads", "1", "-f", str(logs),
                   "--verbose", "0", "-params", "n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:1",
                   "monitor_kwargs:dict(info_keywords=('is_success','reward/distance','reward/precision'))"],
                  cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    monitors = sorted(logs.rglob("*.monitor.csv"))
    assert monitors, sorted(str(p) for p in logs.rglob("*"))
    with monitors[0].open() as fh:
        assert fh.readline().startswith("#")  # SB3's monitor header line
        rows = list(csv.DictReader(fh))
    assert rows and {"r", "l", "is_success", "reward/distance", "reward/precision"} <= set(rows[0])
    assert all(row["l"] == "20" for row in rows)  # the task's time limit, from the override
    assert all(float(row["reward/distance"]) < 0 for row in rows)
    assert {row["is_success"] for row in rows} <= {"True", "False"}
    # the run recorded the env id and its arguments for `rl_zoo3.enjoy`
    saved = next(logs.rglob("args.yml")).read_text()
    assert ENV_ID in saved and "reacher.yaml" in saved
