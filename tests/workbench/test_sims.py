"""Property tests over every registered MuJoCo task profile: StateView vs the live simulator."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from workbench.sims.mujoco import GYMNASIUM_V5_IDS, MujocoAdapter
from workbench.spec import SimSpec
from workbench.wrappers import TaskWrapper

ADAPTER = MujocoAdapter()
ENV_IDS = ADAPTER.env_ids()


def _make(env_id: str):
    spec = SimSpec(env_id=env_id)
    env = ADAPTER.make_env(spec)
    profile = ADAPTER.profile(spec, env)
    return env, profile


def test_every_gymnasium_v5_env_has_a_profile() -> None:
    assert set(GYMNASIUM_V5_IDS) <= set(ENV_IDS)
    assert "workbench/PlanarPush-v0" in ENV_IDS


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_state_view_matches_live_sim_and_description(env_id: str) -> None:
    env, profile = _make(env_id)
    try:
        env.reset(seed=3)
        for _ in range(5):
            env.step(env.action_space.sample())
        raw = env.unwrapped
        state = profile.schema.read(raw)
        # Shapes as declared, finite values.
        for field in profile.schema.fields:
            value = getattr(state, field.name)
            assert value.shape == field.shape, field.name
            assert np.all(np.isfinite(value)), field.name
        # Generalized coordinates, where exposed, are the live qpos/qvel.
        if "qpos" in state:
            np.testing.assert_allclose(state.qpos, raw.data.qpos)
            np.testing.assert_allclose(state.qvel, raw.data.qvel)
        if "x_position" in state:
            assert float(state.x_position) == pytest.approx(raw.data.qpos[0])
        # The description names every field with its shape and unit, and nothing else.
        text = profile.schema.describe()
        for field in profile.schema.fields:
            line = next(ln for ln in text.splitlines() if ln.strip().startswith(field.name + ":"))
            assert field.unit in line
            assert ("scalar" if field.shape == () else str(field.shape)) in line
        assert text.count(": np.ndarray") == len(profile.schema.fields)
        # Values are read-only copies: stepping the sim does not change a snapshot.
        before = {k: v.copy() for k, v in state.items()}
        for _ in range(3):
            env.step(env.action_space.sample())
        for name, value in state.items():
            np.testing.assert_array_equal(value, before[name])
            with pytest.raises(ValueError):
                value[...] = 0.0
        with pytest.raises(AttributeError):
            state.qpos_new = 1  # type: ignore[attr-defined]
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_wrapped_env_passes_gymnasium_checker(env_id: str) -> None:
    env, profile = _make(env_id)
    wrapped = TaskWrapper(env, profile.schema, success=profile.success)
    try:
        # check_env re-makes the env from its spec, which cannot carry our wrapper: check the env,
        # then the wrapper's own contract (same seed -> same rollout, env reward in info).
        check_env(wrapped.unwrapped, skip_render_check=True)
        rollouts = []
        for _ in range(2):
            obs, _ = wrapped.reset(seed=11)
            wrapped.action_space.seed(11)
            trace = [obs]
            for _ in range(10):
                obs, reward, _, _, info = wrapped.step(wrapped.action_space.sample())
                assert info["reward/env"] == reward
                trace.append(obs)
            rollouts.append(trace)
        for a, b in zip(*rollouts):  # Dict observations (instruction suites) compare key by key
            for key in (a if isinstance(a, dict) else [None]):
                np.testing.assert_array_equal(a if key is None else a[key], b if key is None else b[key])
    finally:
        wrapped.close()


def test_reacher_fields_are_the_bodies_in_world_frame() -> None:
    env, profile = _make("Reacher-v5")
    try:
        env.reset(seed=0)
        raw = env.unwrapped
        qpos = raw.init_qpos.copy()
        qpos[:2] = [0.3, -0.7]   # arm joints
        qpos[2:] = [0.1, -0.15]  # target slide joints
        raw.set_state(qpos, np.zeros_like(raw.init_qvel))
        state = profile.schema.read(raw)
        # Forward kinematics by hand: links of 0.1 m and 0.11 m from the origin.
        a, b = 0.3, 0.3 - 0.7
        tip = np.array([0.1 * np.cos(a) + 0.11 * np.cos(b), 0.1 * np.sin(a) + 0.11 * np.sin(b)])
        np.testing.assert_allclose(state.fingertip_pos[:2], tip, atol=1e-6)
        np.testing.assert_allclose(state.target_pos[:2], [0.1, -0.15], atol=1e-9)
        np.testing.assert_allclose(state.fingertip_to_target, state.target_pos - state.fingertip_pos)
        np.testing.assert_allclose(state.joint_angles, [0.3, -0.7])
    finally:
        env.close()


def test_reacher_success_metric_uses_distance_threshold() -> None:
    env, profile = _make("Reacher-v5")
    try:
        env.reset(seed=0)
        raw = env.unwrapped
        state = profile.schema.read(raw)
        distance = float(np.linalg.norm(state.fingertip_to_target))
        assert profile.success(state) == (distance <= 0.02)
        assert profile.success(state, threshold=distance + 1e-6)
        assert not profile.success(state, threshold=distance - 1e-6)
        assert "0.02 m" in profile.success.describe()
    finally:
        env.close()


def test_success_reported_at_episode_end_only() -> None:
    env, profile = _make("Reacher-v5")
    wrapped = TaskWrapper(env, profile.schema, success=profile.success)
    try:
        wrapped.reset(seed=0)
        seen = []
        for _ in range(50):
            _, _, term, trunc, info = wrapped.step(wrapped.action_space.sample())
            seen.append("is_success" in info)
            if term or trunc:
                break
        assert seen[-1] and not any(seen[:-1])
    finally:
        wrapped.close()


def test_unknown_mujoco_env_gets_a_clear_error() -> None:
    from workbench.errors import TaskError

    with pytest.raises(TaskError, match="did you mean 'Reacher-v5'"):
        ADAPTER.make_env(SimSpec(env_id="Reacher-v9"))
    with pytest.raises(TaskError, match="not a MuJoCo env"):
        ADAPTER.make_env(SimSpec(env_id="CartPole-v1"))


def test_hopper_reference_hops_forward_and_often_solves_the_task() -> None:
    """The linear feedback hop stays upright through the preference check's 200 steps while moving
    forward, and on these seeds passes the 3 m threshold before it falls (7 of seeds 0-11 do)."""
    env, profile = _make("Hopper-v5")
    try:
        assert profile.reference is not None
        for seed in (0, 3):
            env.reset(seed=seed)
            start = float(profile.schema.read(env.unwrapped).x_position)
            for step in range(1000):
                _, _, terminated, _, _ = env.step(profile.reference(env.unwrapped))
                if step == 199:
                    assert not terminated and float(profile.schema.read(env.unwrapped).x_position) > start + 0.1
                if terminated:
                    break
            state = profile.schema.read(env.unwrapped)
            assert profile.success(state), float(state.x_position)
    finally:
        env.close()


def test_half_cheetah_reference_gait_solves_the_task() -> None:
    """The scripted gait the preference check ranks rewards by runs past the success threshold."""
    env, profile = _make("HalfCheetah-v5")
    try:
        assert profile.reference is not None
        for seed in (0, 1):
            env.reset(seed=seed)
            for _ in range(1000):
                env.step(profile.reference(env.unwrapped))
            state = profile.schema.read(env.unwrapped)
            assert profile.success(state), float(state.x_position)
    finally:
        env.close()
