"""The mujoco_qd sparse-reward envs (maze, billiard, arm): gymnasium conformance, determinism, the
final-step zone reward (the point placed in a zone by setting qpos), the top camera, the StateView
read against the live simulator, and the shipped task files through ``workbench validate``."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner
from workbench_testing import REPO

from workbench.cli import app
from workbench.errors import TaskError
from workbench.sims.mujoco_qd import (
    ARM_ID,
    BILLIARD_ID,
    BILLIARD_START,
    MAZE_ID,
    MujocoQDAdapter,
    QDArmEnv,
    QDBilliardEnv,
    QDMazeEnv,
)
from workbench.spec import SimSpec

ENVS = {MAZE_ID: QDMazeEnv, BILLIARD_ID: QDBilliardEnv, ARM_ID: QDArmEnv}
ZONES = {MAZE_ID: ["near", "middle", "far"], BILLIARD_ID: ["west", "gap", "corner", "behind"],
         ARM_ID: ["behind", "fold", "back", "side"]}
ADAPTER = MujocoQDAdapter()
SHORT = 6  # steps of the episodes the reward tests run


def _make(env_id: str, **kwargs):
    return ADAPTER.make_env(SimSpec(name="mujoco_qd", env_id=env_id, **kwargs))


def _tip_ik(env: QDArmEnv, target: np.ndarray, q0: np.ndarray) -> np.ndarray:
    """Joint angles that put the arm's tip at ``target`` (damped least squares from ``q0``)."""
    m, d = env.model, env.data
    d.qpos[:] = q0
    jac = np.zeros((3, m.nv))
    for _ in range(300):
        mujoco.mj_forward(m, d)
        err = np.asarray(target) - env.xy
        if np.linalg.norm(err) < 1e-4:
            break
        mujoco.mj_jacSite(m, d, jac, None, env._tip)
        j = jac[:2]
        d.qpos[:] += j.T @ np.linalg.solve(j @ j.T + 1e-3 * np.eye(2), err)
        d.qpos[:] = np.clip(d.qpos, m.jnt_range[:, 0], m.jnt_range[:, 1])
    return d.qpos.copy()


# Where the point starts each zone search (arm): the IK's first guess, chosen so the arm goes round
# the wall, not through it.
ARM_GUESS = {"behind": [-2.2, 0.8, 0.8, 0.6, 0.6, 0.4], "fold": [0.5, -2.4, -2.4, 0.5, 0.5, 0.5],
             "back": [3.0, 0.1, 0.0, 0.0, 0.0, 0.0], "side": [1.3, 0.1, 0.0, 0.0, 0.0, 0.0]}


def _place(env, zone: dict | None, xy: np.ndarray | None = None) -> None:
    """Put the scored point at ``xy`` (default: the zone's centre), at rest."""
    target = np.asarray(zone["center"] if xy is None else xy, dtype=np.float64)
    if isinstance(env, QDArmEnv):
        guess = np.asarray(ARM_GUESS[zone["name"]] if zone is not None else np.zeros(6))
        q = _tip_ik(env, target, guess)
        env.data.qpos[:] = q
    else:
        env.data.qpos[:2] = target
    env.data.qvel[:] = 0.0
    mujoco.mj_forward(env.model, env.data)


# Unbounded Box observations are gymnasium's own MuJoCo convention; the checker warns anyway.
@pytest.mark.filterwarnings("ignore:.*Box observation space m:UserWarning")
@pytest.mark.parametrize("env_id", list(ENVS))
def test_passes_gymnasium_env_checker(env_id: str) -> None:
    env = _make(env_id)
    try:
        check_env(env, skip_render_check=True)
        assert isinstance(env, ENVS[env_id]) and np.all(env.action_space.low == -1)
        assert [z["name"] for z in env.reward_areas] == ZONES[env_id]
    finally:
        env.close()


@pytest.mark.parametrize("env_id", list(ENVS))
def test_same_seed_same_episode_different_seed_different_start(env_id: str) -> None:
    def rollout(seed: int) -> np.ndarray:
        env = _make(env_id, max_episode_steps=40)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        observations, done = [obs], False
        while not done:
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            observations.append(obs)
            done = terminated or truncated
        env.close()
        return np.stack(observations)

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert len(a) == 41  # the env ends its own episode at max_episode_steps
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], c[0])  # the start noise depends on the seed


@pytest.mark.parametrize("env_id", list(ENVS))
def test_reward_only_at_the_last_step_and_only_inside_a_zone(env_id: str) -> None:
    env = _make(env_id, max_episode_steps=SHORT)
    try:
        for zone in env.reward_areas:
            env.reset(seed=0)
            _place(env, zone)
            assert np.hypot(*(env.xy - zone["center"])) < 1e-3
            for t in range(1, SHORT + 1):
                _, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape))
                assert not terminated and truncated == (t == SHORT)
                if t < SHORT:
                    assert reward == 0.0 and "reward_area" not in info
            # the point held still (zero force / zero joint speed): at the centre, reward ~1
            assert info["reward_area"] == zone["name"], (zone, env.xy)
            assert 0.95 < reward <= 1.0
        # just outside every zone: nothing, and the last info says so
        zone = env.reward_areas[0]
        outside = np.asarray(zone["center"]) + [zone["radius"] * 1.3, 0.0]
        env.reset(seed=0)
        _place(env, zone, outside)
        for _ in range(SHORT):
            _, reward, _, _, info = env.step(np.zeros(env.action_space.shape))
        assert reward == 0.0 and info["reward_area"] is None
        # at the rim: the rule 1 - 0.5 d / r
        name, value = env.zone_at(np.asarray(zone["center"]) + [0.0, zone["radius"] * 0.6])
        assert name == zone["name"] and value == pytest.approx(0.7)
    finally:
        env.close()


def test_billiard_ignores_actions_after_the_push() -> None:
    env = _make(BILLIARD_ID, max_episode_steps=20, kwargs={"push_fraction": 0.25, "start_noise": 0.0})
    try:
        assert env.push_steps == 5
        obs, _ = env.reset(seed=0)
        np.testing.assert_allclose(obs[:2], BILLIARD_START)
        for _ in range(5):
            obs, *_ = env.step(np.array([1.0, 0.0]))
        assert obs[2] > 0.5 and obs[4] == pytest.approx(0.25)  # pushed east; a quarter of the episode gone
        ctrl_free = []
        for action in ([0.0, 0.0], [-1.0, 1.0]):  # two different actions after the push: the same motion
            clone = _make(BILLIARD_ID, max_episode_steps=20, kwargs={"push_fraction": 0.25, "start_noise": 0.0})
            clone.reset(seed=0)
            for _ in range(5):
                clone.step(np.array([1.0, 0.0]))
            for _ in range(10):
                o, *_ = clone.step(np.array(action))
            ctrl_free.append(o)
            clone.close()
        np.testing.assert_array_equal(ctrl_free[0], ctrl_free[1])
        assert ctrl_free[0][2] < obs[2]  # the drag slows it down
    finally:
        env.close()


def test_bad_kwargs_are_one_task_error() -> None:
    with pytest.raises(TaskError) as err:
        _make(BILLIARD_ID, kwargs={"push_fractoin": 0.1})
    assert err.value.key == "sim.kwargs.push_fractoin"
    with pytest.raises(TaskError) as err:
        _make(ARM_ID, kwargs={"start_noise": 5})
    assert err.value.key == "sim.kwargs.start_noise"


@pytest.mark.parametrize("env_id", list(ENVS))
def test_renders_the_top_camera(env_id: str) -> None:
    env = ADAPTER.make_env(SimSpec(name="mujoco_qd", env_id=env_id), render_mode="rgb_array")
    try:
        env.reset(seed=0)
        first = env.render()
        assert first.shape == (240, 240, 3) and first.dtype == np.uint8 and first.std() > 5
        zone = env.reward_areas[-1]
        _place(env, zone)
        moved = env.render()
        assert not np.array_equal(first, moved)  # the frame follows the simulator
    finally:
        env.close()


@pytest.mark.parametrize("env_id", list(ENVS))
def test_state_view_reads_the_live_simulator(env_id: str) -> None:
    spec = SimSpec(name="mujoco_qd", env_id=env_id)
    env = ADAPTER.make_env(spec)
    try:
        profile = ADAPTER.profile(spec, env)
        env.reset(seed=1)
        for _ in range(7):
            env.step(env.action_space.sample())
        state = profile.schema.read(env)
        assert (float(state.x), float(state.y)) == (env.xy[0], env.xy[1])
        centers = np.array([z["center"] for z in env.reward_areas])
        np.testing.assert_allclose(state.zone_distances, np.linalg.norm(centers - env.xy, axis=1))
        if env_id == ARM_ID:
            np.testing.assert_array_equal(state.joint_angles, env.data.qpos)
            # the arm's x, y are its tip's: the site at the end of the last link
            assert np.linalg.norm(env.xy) <= 0.9 + 1e-6
        else:
            np.testing.assert_array_equal(state.velocity, env.data.qvel[:2])
            np.testing.assert_array_equal(env.xy, env.data.qpos[:2])
        text = profile.schema.describe()
        for field in profile.schema.fields:
            assert field.name in text
        for zone in env.reward_areas:
            assert zone["name"] in text
        # success: inside a zone at the end, not elsewhere
        assert not profile.success(state) or np.any(state.zone_distances <= [z["radius"] for z in env.reward_areas])
        _place(env, env.reward_areas[0])
        assert profile.success(profile.schema.read(env))
    finally:
        env.close()


def test_the_adapter_lists_the_three_envs_and_refuses_others() -> None:
    assert ADAPTER.env_ids() == [MAZE_ID, BILLIARD_ID, ARM_ID]
    with pytest.raises(TaskError, match="valid: workbench/QDMaze-v0, workbench/QDBilliard-v0"):
        _make("workbench/QDPinball-v0")


TASKS = sorted((REPO / "tasks" / "qd").glob("billiard_*.yaml")) + sorted((REPO / "tasks" / "qd").glob("arm_*.yaml"))


@pytest.mark.parametrize("path", TASKS, ids=[p.stem for p in TASKS])
def test_task_files_validate(path: Path) -> None:
    pytest.importorskip("ribs", reason="the QD learners need the qd extra: pip install 'rl-workbench[qd]'")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


def test_task_files_are_the_four_shipped() -> None:
    assert [p.stem for p in TASKS] == ["billiard_ns", "billiard_serene", "arm_ns", "arm_serene"]
