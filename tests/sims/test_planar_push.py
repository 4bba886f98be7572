"""PlanarPush: gymnasium conformance, StateView fidelity, success, scripted policy, render."""

from __future__ import annotations

import gymnasium
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from workbench.sims.planar_push import (
    ENV_ID,
    MAX_EPISODE_STEPS,
    SUCCESS_THRESHOLD,
    PlanarPushEnv,
    planar_push_profile,
    register_env,
    scripted_push_action,
)
from workbench.state import State

# Measured: 191/200 episodes (seeds 0-199) and 48/50 (seeds 1000-1049) succeed; demand 16/20.
SCRIPTED_MIN_SUCCESSES = 16


@pytest.fixture(autouse=True, scope="module")
def _registered() -> None:
    register_env()


@pytest.fixture
def env() -> PlanarPushEnv:
    env = PlanarPushEnv()
    yield env
    env.close()


def _run_scripted(env: PlanarPushEnv, steps: int) -> None:
    for _ in range(steps):
        env.step(scripted_push_action(env))


# Unbounded Box observations are gymnasium's own MuJoCo convention; the checker warns anyway.
@pytest.mark.filterwarnings("ignore:.*Box observation space m:UserWarning")
def test_passes_gymnasium_env_checker(env: PlanarPushEnv) -> None:
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (20,)
    assert env.observation_space.dtype == np.float64
    assert env.action_space.shape == (2,)


def test_registration_is_idempotent_and_sets_the_time_limit() -> None:
    register_env()
    register_env()
    env = gymnasium.make(ENV_ID)
    env.reset(seed=0)
    for t in range(1, MAX_EPISODE_STEPS + 1):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (t == MAX_EPISODE_STEPS)
    env.close()


def test_same_seed_same_episode_different_seed_different_start() -> None:
    def rollout(seed: int) -> tuple[np.ndarray, list[float]]:
        env = PlanarPushEnv()
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        observations, rewards = [obs], []
        for _ in range(30):
            obs, reward, *_ = env.step(env.action_space.sample())
            observations.append(obs)
            rewards.append(reward)
        return np.stack(observations), rewards

    obs_a, rew_a = rollout(7)
    obs_b, rew_b = rollout(7)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert rew_a == rew_b
    obs_c, _ = rollout(8)
    assert not np.allclose(obs_a[0], obs_c[0])


def test_reset_samples_a_reachable_puck_and_a_distinct_goal(env: PlanarPushEnv) -> None:
    for seed in range(50):
        env.reset(seed=seed)
        assert 0.12 <= np.linalg.norm(env.puck_xy) <= 0.22
        assert env.puck_xy[0] >= 0.0  # in front of the arm
        assert 0.10 <= np.linalg.norm(env.goal_xy) <= 0.24
        assert 0.08 <= env.puck_to_goal_distance() <= 0.15
        assert env.data.ncon == 0  # nothing touches at the start


def test_observation_layout_matches_the_simulator(env: PlanarPushEnv) -> None:
    env.reset(seed=3)
    _run_scripted(env, 25)
    obs, *_ = env.step(scripted_push_action(env))
    q, qd = env.data.qpos, env.data.qvel
    tip = env.data.body("fingertip").xpos[:2]
    np.testing.assert_allclose(obs[0:4], [*np.cos(q[:2]), *np.sin(q[:2])])
    np.testing.assert_allclose(obs[4:6], qd[:2])
    dm = 10.0  # lengths in the observation are in decimetres
    np.testing.assert_allclose(obs[6:8], dm * tip)
    np.testing.assert_allclose(obs[8:10], dm * q[2:4])
    np.testing.assert_allclose(obs[10:12], dm * qd[2:4])
    np.testing.assert_allclose(obs[12:14], dm * q[4:6])
    np.testing.assert_allclose(obs[14:16], dm * (q[2:4] - tip))
    np.testing.assert_allclose(obs[16:18], dm * (q[4:6] - q[2:4]))
    to_goal = q[4:6] - q[2:4]
    push_point = q[2:4] - 0.04 * to_goal / np.linalg.norm(to_goal)
    np.testing.assert_allclose(obs[18:20], dm * (push_point - tip))


def test_reward_terms_sum_to_the_reward_and_match_the_state(env: PlanarPushEnv) -> None:
    env.reset(seed=1)
    action = np.array([0.3, -0.6], dtype=np.float32)
    _, reward, _, _, info = env.step(action)
    terms = {k: v for k, v in info.items() if k.startswith("reward_")}
    assert set(terms) == {"reward_dist", "reward_near", "reward_ctrl", "reward_success"}
    assert reward == pytest.approx(sum(terms.values()))
    state = planar_push_profile().schema.read(env)
    assert info["reward_dist"] == pytest.approx(-float(state.puck_to_goal_distance))
    # "near" is measured to the contact point behind the puck on the puck->goal line.
    to_goal = state.goal_pos - state.puck_pos
    push_point = state.puck_pos - 0.04 * to_goal / np.linalg.norm(to_goal)
    near = np.linalg.norm(state.fingertip_pos - push_point)
    assert info["reward_near"] == pytest.approx(-0.5 * near)
    assert info["reward_ctrl"] == pytest.approx(-0.01 * float(np.square(action).sum()))


def test_reward_prefers_the_scripted_policy_over_random_and_idle() -> None:
    env = gymnasium.make(ENV_ID)
    env.action_space.seed(0)
    policies = {
        "scripted": scripted_push_action,
        "random": lambda e: e.action_space.sample(),
        "idle": lambda e: np.zeros(2),
    }
    returns = {}
    for name, policy in policies.items():
        total = 0.0
        for seed in range(5):
            env.reset(seed=seed)
            done = False
            while not done:
                _, reward, terminated, truncated, _ = env.step(policy(env))
                total += reward
                done = terminated or truncated
        returns[name] = total
    assert returns["scripted"] > max(returns["random"], returns["idle"])


# -- StateView ---------------------------------------------------------------------------
def test_schema_declares_units_frames_and_docs() -> None:
    profile = planar_push_profile()
    assert profile.env_id == ENV_ID
    assert profile.reference is scripted_push_action
    required = {
        "fingertip_pos": (3,),
        "puck_pos": (3,),
        "puck_vel": (3,),
        "goal_pos": (3,),
        "joint_angles": (2,),
        "joint_velocities": (2,),
        "puck_to_goal_distance": (),
    }
    shapes = {f.name: f.shape for f in profile.schema.fields}
    assert required.items() <= shapes.items()
    for field in profile.schema.fields:
        assert field.unit and field.frame and field.doc, field.name
    text = profile.schema.describe()
    for name in required:
        assert name in text


def test_state_view_equals_the_live_simulator(env: PlanarPushEnv) -> None:
    env.reset(seed=5)
    _run_scripted(env, 40)  # mid-push: the puck is moving
    state = planar_push_profile().schema.read(env)
    data = env.data
    assert np.linalg.norm(state.puck_vel) > 0.0
    np.testing.assert_allclose(state.puck_pos[:2], data.qpos[2:4])
    np.testing.assert_allclose(state.puck_pos, env.get_body_com("puck"))
    np.testing.assert_allclose(state.puck_vel, [*data.qvel[2:4], 0.0])
    np.testing.assert_allclose(state.goal_pos[:2], data.qpos[4:6])
    np.testing.assert_allclose(state.joint_angles, data.qpos[:2])
    np.testing.assert_allclose(state.joint_velocities, data.qvel[:2])
    # The three points share the puck-centre height, so 3-D norms are planar distances.
    assert state.fingertip_pos[2] == pytest.approx(state.puck_pos[2])
    assert state.goal_pos[2] == pytest.approx(state.puck_pos[2])
    assert float(state.puck_to_goal_distance) == pytest.approx(
        np.linalg.norm(state.puck_pos - state.goal_pos)
    )
    # The fingertip is current (not one substep stale): recompute it from qpos from scratch.
    fresh = mujoco.MjData(env.model)
    fresh.qpos[:] = data.qpos
    mujoco.mj_forward(env.model, fresh)
    np.testing.assert_allclose(state.fingertip_pos, fresh.body("fingertip").xpos, atol=1e-12)
    q0, q01 = data.qpos[0], data.qpos[0] + data.qpos[1]
    planar = 0.15 * np.array([np.cos(q0) + np.cos(q01), np.sin(q0) + np.sin(q01)])
    np.testing.assert_allclose(state.fingertip_pos[:2], planar, atol=1e-9)


def test_state_is_a_read_only_copy_that_cannot_change_the_simulator(env: PlanarPushEnv) -> None:
    env.reset(seed=2)
    _run_scripted(env, 30)
    qpos_before = env.data.qpos.copy()
    state = planar_push_profile().schema.read(env)
    with pytest.raises(ValueError):
        state.puck_pos[0] = 10.0
    with pytest.raises(AttributeError):
        state.puck_pos = np.zeros(3)  # type: ignore[misc]
    arrays = state.to_arrays()
    arrays["puck_pos"][:] = 10.0
    arrays["joint_angles"][:] = 10.0
    np.testing.assert_array_equal(env.data.qpos, qpos_before)
    # ... and the sim moving on does not change the snapshot.
    snapshot = state.puck_pos.copy()
    _run_scripted(env, 10)
    assert not np.allclose(env.data.qpos[2:4], snapshot[:2])
    np.testing.assert_array_equal(state.puck_pos, snapshot)


# -- success -----------------------------------------------------------------------------
def test_success_metric_on_constructed_states() -> None:
    success = planar_push_profile().success
    assert success.threshold == SUCCESS_THRESHOLD
    assert success(State({"puck_to_goal_distance": 0.049}))
    assert success(State({"puck_to_goal_distance": SUCCESS_THRESHOLD}))
    assert not success(State({"puck_to_goal_distance": 0.051}))
    assert success(State({"puck_to_goal_distance": 0.08}), threshold=0.1)
    assert "0.05 m" in success.describe()


def test_scripted_policy_solves_most_episodes_and_agrees_with_info() -> None:
    profile = planar_push_profile()
    env = gymnasium.make(ENV_ID)
    successes = 0
    for seed in range(20):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(scripted_push_action(env))
            done = terminated or truncated
        passed = profile.success(profile.schema.read(env.unwrapped))
        assert passed == info["is_success"]
        successes += passed
    assert successes >= SCRIPTED_MIN_SUCCESSES


# -- rendering ---------------------------------------------------------------------------
def test_renders_an_overhead_rgb_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "egl")
    try:
        from mujoco.egl import GLContext

        GLContext(8, 8).free()
    except Exception as exc:  # any failure to get a context means: no EGL on this machine
        pytest.skip(f"EGL rendering unavailable here: {exc!r}")
    env = gymnasium.make(ENV_ID, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    env.close()
    assert frame.shape == (480, 480, 3) and frame.dtype == np.uint8
    red = (frame[..., 0] > 150) & (frame[..., 1] < 100) & (frame[..., 2] < 100)
    green = (frame[..., 1] > 150) & (frame[..., 0] < 150) & (frame[..., 2] < 150)
    assert red.sum() > 50, "the overhead camera should see the puck"
    assert green.sum() > 200, "the overhead camera should see the goal disc"
