"""ManiSkill3 adapter: StateView vs the live SAPIEN scene, gymnasium contract, success, rendering,
reference policies, clear errors (unknown / asset-download ids, no Vulkan), shipped tasks, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mani_skill", reason="ManiSkill is an optional extra: pip install 'rl-workbench[maniskill]'")

from workbench.sims.maniskill import ManiSkillAdapter, vulkan_available  # noqa: E402

_VULKAN, _WHY = vulkan_available()
if not _VULKAN:
    pytest.skip(f"no Vulkan device for SAPIEN: {_WHY}", allow_module_level=True)

from gymnasium.utils.env_checker import check_env  # noqa: E402

from workbench.errors import TaskError  # noqa: E402
from workbench.reward import BuiltReward  # noqa: E402
from workbench.spec import SimSpec, parse_yaml, validate_task_data  # noqa: E402
from workbench.task import Task  # noqa: E402
from workbench.wrappers import TaskWrapper  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TASKS = sorted((REPO / "tasks" / "maniskill").glob("*.yaml"))
ADAPTER = ManiSkillAdapter()
ENV_IDS = ["PickCube-v1", "PushCube-v1", "PullCube-v1", "StackCube-v1"]
# ManiSkill warns about its own observation space bounds and CUDA; neither is ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _make(env_id: str = "PushCube-v1", render_mode: str | None = None, max_steps: int | None = None, **kwargs):
    spec = SimSpec(name="maniskill", env_id=env_id, kwargs=kwargs, max_episode_steps=max_steps)
    env = ADAPTER.make_env(spec, render_mode=render_mode)
    return env, ADAPTER.profile(spec, env)


def _wb(*args: str, env: dict[str, str] | None = None, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=None if env is None else {**os.environ, **env})


def _p(tensor) -> np.ndarray:
    return tensor[0].cpu().numpy().astype(np.float64)


def _rollout_success(env_id: str, seeds: range) -> float:
    env, profile = _make(env_id)
    wins = []
    try:
        for seed in seeds:
            env.reset(seed=seed)
            terminated = truncated = False
            while not (terminated or truncated):
                _, _, terminated, truncated, info = env.step(profile.reference(env.unwrapped))
            wins.append(profile.success(profile.schema.read(env.unwrapped)))
            assert wins[-1] == bool(info["success"])
    finally:
        env.close()
    return float(np.mean(wins))


# ----------------------------------------------------------------------------- StateView


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_state_view_matches_live_scene_and_description(env_id: str) -> None:
    env, profile = _make(env_id)
    try:
        env.reset(seed=4)
        raw = env.unwrapped
        for _ in range(12 if env_id != "PickCube-v1" else 40):  # the reference nears (or grasps) the cube
            env.step(profile.reference(raw))
            if env_id == "PickCube-v1" and bool(raw.agent.is_grasping(raw.cube)[0]):
                break
        state = profile.schema.read(raw)
        for field in profile.schema.fields:
            assert state[field.name].shape == field.shape, field.name
            assert np.all(np.isfinite(state[field.name])), field.name
        tcp = _p(raw.agent.tcp.pose.p)
        np.testing.assert_allclose(state.tcp_pos, tcp)
        np.testing.assert_allclose(state.tcp_quat, _p(raw.agent.tcp.pose.q))
        assert float(np.linalg.norm(state.tcp_quat)) == pytest.approx(1.0, abs=1e-5)
        qpos, qvel = _p(raw.agent.robot.get_qpos()), _p(raw.agent.robot.get_qvel())
        assert float(state.gripper_width) == pytest.approx(qpos[-2] + qpos[-1])
        assert 0.0 <= float(state.gripper_width) <= 0.081
        assert float(state.arm_joint_speed) == pytest.approx(np.max(np.abs(qvel[:7])))
        assert float(state.success) == float(raw.evaluate()["success"][0])
        if env_id == "StackCube-v1":
            obj = raw.cubeA
            b = _p(raw.cubeB.pose.p)
            np.testing.assert_allclose(state.cube_b_pos, b)
            np.testing.assert_allclose(state.place_pos, b + [0, 0, 0.04])
            np.testing.assert_allclose(state.cube_a_to_place_dist, np.linalg.norm(b + [0, 0, 0.04] - _p(obj.pose.p)))
            assert float(state.cube_a_on_b) == float(raw.evaluate()["is_cubeA_on_cubeB"][0])
            assert float(state.cube_a_speed) == pytest.approx(np.linalg.norm(_p(obj.linear_velocity)))
            prefix = "cube_a"
        else:
            obj = raw.cube if env_id == "PickCube-v1" else raw.obj
            prefix = "cube"
        pos = _p(obj.pose.p)
        np.testing.assert_allclose(state[f"{prefix}_pos"], pos)
        np.testing.assert_allclose(state[f"{prefix}_quat"], _p(obj.pose.q))
        np.testing.assert_allclose(state[f"tcp_to_{prefix}"], pos - tcp)
        assert float(state[f"tcp_to_{prefix}_dist"]) == pytest.approx(np.linalg.norm(pos - tcp))
        assert float(state[f"{prefix}_height"]) == pytest.approx(pos[2] - 0.02, abs=1e-6)
        assert float(state.is_grasped) == float(raw.agent.is_grasping(obj)[0])
        if env_id == "PickCube-v1":
            goal = _p(raw.goal_site.pose.p)
            np.testing.assert_allclose(state.goal_pos, goal)
            assert float(state.cube_to_goal_dist) == pytest.approx(np.linalg.norm(goal - pos))
            assert float(state.is_grasped) == 1.0
        elif env_id in ("PushCube-v1", "PullCube-v1"):
            goal = _p(raw.goal_region.pose.p)
            np.testing.assert_allclose(state.goal_pos, goal)
            assert float(state.cube_to_goal_xy_dist) == pytest.approx(np.linalg.norm(goal[:2] - pos[:2]))
            verb, sign = ("push", 1) if env_id == "PushCube-v1" else ("pull", -1)
            np.testing.assert_allclose(state[f"{verb}_pos"], pos - [sign * 0.025, 0, 0])
        # The description names every field, with its unit, once.
        text = profile.schema.describe()
        assert text.count(": np.ndarray") == len(profile.schema.fields)
        for field in profile.schema.fields:
            line = next(ln for ln in text.splitlines() if ln.strip().startswith(field.name + ":"))
            assert field.unit in line and field.doc in line
        # Read-only copies: stepping the sim does not change a snapshot.
        before = {k: v.copy() for k, v in state.items()}
        env.step(env.action_space.sample())
        for name, value in state.items():
            np.testing.assert_array_equal(value, before[name])
            with pytest.raises(ValueError):
                value[...] = 0.0
    finally:
        env.close()


def test_lifting_the_cube_by_hand_shows_in_height_and_goal_distance() -> None:
    import torch

    env, profile = _make("PickCube-v1")
    try:
        env.reset(seed=0)
        raw = env.unwrapped
        goal = _p(raw.goal_site.pose.p)
        pose = raw.cube.pose
        raw.cube.set_pose(type(pose).create_from_pq(torch.tensor([goal], dtype=torch.float32), pose.q))
        state = profile.schema.read(raw)
        assert float(state.cube_to_goal_dist) == pytest.approx(0.0, abs=1e-5)
        assert float(state.cube_height) == pytest.approx(goal[2] - 0.02, abs=1e-5)
    finally:
        env.close()


# ----------------------------------------------------------------------------- gymnasium contract


def test_passes_gymnasium_env_checker_and_is_deterministic() -> None:
    env, _ = _make("PushCube-v1")
    try:
        check_env(env, skip_render_check=True)  # frames: see test_render_gives_real_frames_that_change
        assert env.observation_space.dtype == np.float32 and env.observation_space.shape == (35,)
        obs, _ = env.reset(seed=3)
        assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape == (35,)
        remade = env.spec.make()
        try:
            np.testing.assert_array_equal(remade.reset(seed=2)[0], env.reset(seed=2)[0])
        finally:
            remade.close()
        traces = []
        for _ in range(2):
            obs, _ = env.reset(seed=11)
            env.action_space.seed(11)
            trace = [obs]
            for _ in range(3):
                trace.append(env.step(env.action_space.sample())[0])
            trace.append(env.reset()[0])  # an unseeded reset follows the last seed too
            traces.append(np.stack(trace))
        np.testing.assert_array_equal(traces[0], traces[1])
    finally:
        env.close()


def test_step_limit_defaults_to_the_tasks_own_and_can_be_overridden() -> None:
    for max_steps, expected in ((None, 50), (7, 7)):
        env, _ = _make("PushCube-v1", max_steps=max_steps)
        try:
            env.reset(seed=0)
            steps, truncated = 0, False
            while not truncated:
                _, _, terminated, truncated, _ = env.step(np.zeros(4, dtype=np.float32))
                steps += 1
                assert not terminated
            assert steps == expected
        finally:
            env.close()


def test_render_gives_real_frames_that_change() -> None:
    env, profile = _make("PickCube-v1", render_mode="rgb_array")
    try:
        env.reset(seed=0)
        first = env.render()
        assert first.shape == (224, 224, 3) and first.dtype == np.uint8
        assert first.std() > 20 and first.max() > 150  # table, robot and cube; not a black frame
        for _ in range(8):
            env.step(profile.reference(env.unwrapped))
        second = env.render()
        assert np.abs(second.astype(int) - first).mean() > 0.5  # the arm moved
    finally:
        env.close()
    env, _ = _make("PushCube-v1", render_mode="rgb_array", render_size=[160, 96])
    try:
        env.reset(seed=0)
        assert env.render().shape == (96, 160, 3)
    finally:
        env.close()


# ----------------------------------------------------------------------------- success, reference


def test_success_is_maniskills_own_metric() -> None:
    env, profile = _make("PushCube-v1")
    wrapped = TaskWrapper(env, profile.schema, success=profile.success)
    try:
        wrapped.reset(seed=1)
        raw = env.unwrapped
        flags = []
        while True:
            _, _, terminated, truncated, info = wrapped.step(profile.reference(raw))
            state = wrapped.current_state()
            assert float(state.success) == float(info["success"])
            flags.append(bool(info["success"]))
            if terminated or truncated:
                break
        assert flags[-1] and not any(flags[:-1])  # ManiSkill ends the episode on success
        assert terminated and info["is_success"] is True
        assert float(state.cube_to_goal_xy_dist) < 0.1
        # Random actions for a whole episode do not push the cube 0.2 m into the goal.
        wrapped.reset(seed=1)
        env.action_space.seed(0)
        while True:
            _, _, terminated, truncated, info = wrapped.step(env.action_space.sample())
            if terminated or truncated:
                break
        assert truncated and info["is_success"] is False and not info["success"]
    finally:
        wrapped.close()


def test_reference_policies_solve_push_and_pick() -> None:
    # Measured on seeds 0-9: push 10/10, pick 10/10 (pull 10/10, stack 7/10: slow test below).
    assert _rollout_success("PushCube-v1", range(10)) >= 0.8
    assert _rollout_success("PickCube-v1", range(10)) >= 0.8


@pytest.mark.slow
def test_reference_policies_pull_and_stack() -> None:
    assert _rollout_success("PullCube-v1", range(10)) >= 0.8
    assert _rollout_success("StackCube-v1", range(10)) >= 0.6


def test_reference_only_for_the_control_mode_it_was_written_for() -> None:
    env, profile = _make("PushCube-v1", control_mode="pd_joint_delta_pos")
    try:
        assert profile.reference is None and profile.success is not None
        assert env.action_space.shape == (8,)
    finally:
        env.close()


# ----------------------------------------------------------------------------- clear errors


@pytest.mark.parametrize("env_id,kwargs,match", [
    ("PickCub-v1", {}, "did you mean 'PickCube-v1'"),
    ("PickSingleYCB-v1", {}, "download_asset PickSingleYCB-v1"),
    ("PushT-v1", {}, "no workbench profile"),
    ("PushCube-v1", {"control_mode": "pd_ee_delta_poss"}, "supported modes"),
    ("PushCube-v1", {"controlmode": "pd_ee_delta_pos"}, "control_mode"),
    ("PushCube-v1", {"render_size": [8, 8]}, "render_size"),
])
def test_user_mistakes_are_task_errors(env_id: str, kwargs: dict, match: str) -> None:
    with pytest.raises(TaskError, match=match):
        ADAPTER.make_env(SimSpec(name="maniskill", env_id=env_id, kwargs=kwargs))


def test_cli_refuses_a_ycb_env_and_a_missing_vulkan_device_cleanly(tmp_path: Path) -> None:
    raw = parse_yaml((REPO / "tasks/maniskill/push_cube.yaml").read_text(), file="push_cube.yaml")
    raw["sim"]["env_id"] = "PickSingleYCB-v1"
    raw["reward"] = {"source": "env"}
    task = tmp_path / "ycb.yaml"
    task.write_text(json.dumps(raw))
    proc = _wb("validate", str(task))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    message = proc.stderr + proc.stdout
    assert "sim.env_id" in message and "python -m mani_skill.utils.download_asset" in message
    # No Vulkan driver (an ICD file that does not exist): one message naming the fix.
    proc = _wb("validate", str(REPO / "tasks/maniskill/push_cube.yaml"), env={"VK_ICD_FILENAMES": "/nonexistent.json"})
    message = proc.stderr + proc.stdout
    assert proc.returncode == 2 and "Traceback" not in message, message
    assert "Vulkan" in message and "make install-dev" in message and "mesa-vulkan-drivers" in message


def test_vulkan_probe_reports_why_without_crashing_the_caller() -> None:
    code = "from workbench.sims.maniskill import vulkan_available; print(vulkan_available())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "VK_ICD_FILENAMES": "/nonexistent.json"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("(False, ") and "mesa-vulkan-drivers" in proc.stdout
    assert _VULKAN and _WHY  # here: the device SAPIEN found, e.g. llvmpipe


# ----------------------------------------------------------------------------- shipped tasks, CLI


@pytest.mark.parametrize("path", TASKS, ids=[p.stem for p in TASKS])
def test_shipped_task_also_validates_with_a_text2reward_reward(path: Path) -> None:
    from reward_synthesis.language.text2reward import build_messages

    raw = parse_yaml(path.read_text(), file=str(path))
    assert raw["reward"]["source"] == "code" and (path.parent / raw["reward"]["path"]).is_file()
    raw["reward"] = {"source": "text2reward", "goal": raw["goal"]}
    raw["source_path"] = str(path)
    spec = validate_task_data(raw, file=str(path))
    task = Task.build(spec, reward=BuiltReward(None, "synthesized elsewhere"))
    assert task.profile.success is not None and task.profile.reference is not None
    _, user = build_messages(task, raw["goal"])
    assert task.profile.schema.describe() in user["content"] and task.success_doc() in user["content"]


@pytest.mark.slow  # ~14 s: the env is built and stepped by test_spec/test_gym_env in the default suite, the
# CLI training path by the MuJoCo runs; kept out of it to hold the default suite well under 15 min
def test_ppo_smoke_run_through_the_cli(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = _wb("run", str(REPO / "tasks/maniskill/push_cube.yaml"), "--runs-dir", str(runs), "--quiet",
               "--set", "sim.max_episode_steps=20", "--set", "reward.samples=32",
               "--set", "training.total_steps=128", "--set", "training.n_envs=1",
               "--set", "training.vec_env=dummy", "--set", "learner.hyperparams.n_steps=64",
               "--set", "learner.hyperparams.batch_size=32", "--set", "learner.hyperparams.n_epochs=1",
               "--set", "evaluation.episodes=2", "--set", "evaluation.video_episodes=1")
    assert proc.returncode == 0, proc.stderr
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["steps"] == 128
    ev = json.loads((run / "eval.json").read_text())
    assert ev["success_rate"] is not None and "ManiSkill's own success" in ev["success_metric"]
    assert {"reach", "push", "success", "control", "env"} <= set(ev["components"])  # push_staged.py passed pre-flight
    (video,) = ev["videos"]
    assert Path(video).stat().st_size > 1000
