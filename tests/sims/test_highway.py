"""highway-env adapter: StateView vs the live simulator, rendering, observations, success, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("highway_env", reason="highway-env is an optional extra: pip install 'rl-workbench[highway]'")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from workbench.errors import TaskError  # noqa: E402
from workbench.sims.highway import GAP_CAP, HighwayAdapter  # noqa: E402
from workbench.spec import SimSpec  # noqa: E402
from workbench.wrappers import TaskWrapper  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks" / "highway" / "highway_state.yaml"
ADAPTER = HighwayAdapter()
SHORT = {"duration": 4}  # s: 4 policy steps per episode keeps these tests fast
pytestmark = pytest.mark.filterwarnings("ignore:.*out of date:DeprecationWarning")


def _make(env_id: str = "highway-fast-v0", render_mode: str | None = None, **kwargs):
    spec = SimSpec(name="highway", env_id=env_id, kwargs=kwargs)
    env = ADAPTER.make_env(spec, render_mode=render_mode)
    return env, ADAPTER.profile(spec, env)


def _wb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=180, cwd=REPO)


@pytest.mark.parametrize("env_id", ["highway-v0", "highway-fast-v0", "merge-v0", "roundabout-v0"])
def test_state_view_matches_live_env_and_description(env_id: str) -> None:
    env, profile = _make(env_id, config={"vehicles_count": 10} if env_id == "highway-v0" else {})
    try:
        env.reset(seed=3)
        for _ in range(2):
            env.step(1)
        raw = env.unwrapped
        ego = raw.vehicle
        state = profile.schema.read(raw)
        for field in profile.schema.fields:
            value = state[field.name]
            assert value.shape == field.shape, field.name
            assert np.all(np.isfinite(value)), field.name
        assert float(state.speed) == pytest.approx(ego.speed)
        np.testing.assert_allclose(state.position, ego.position)
        assert float(state.heading) == pytest.approx(ego.heading)
        longitudinal, lateral = ego.lane.local_coordinates(ego.position)
        assert float(state.lane_offset) == pytest.approx(lateral)
        assert float(state.lane_heading_error) == pytest.approx(ego.lane.local_angle(ego.heading, longitudinal))
        assert float(state.collided) == float(ego.crashed)
        assert float(state.on_road) == float(ego.on_road)
        assert 0.0 <= float(state.gap_ahead) <= GAP_CAP
        assert 0.0 <= float(state.route_completion) <= 1.0
        assert float(state.distance_driven) > 0.0
        low, high = state.desired_speed_range
        assert 0.0 < low < high
        # The description names every field with its unit and shape.
        text = profile.schema.describe()
        for field in profile.schema.fields:
            line = next(ln for ln in text.splitlines() if ln.strip().startswith(field.name + ":"))
            assert field.unit in line
        assert text.count(": np.ndarray") == len(profile.schema.fields)
        # Read-only copies: stepping the sim does not change a snapshot.
        before = {k: v.copy() for k, v in state.items()}
        env.step(1)
        for name, value in state.items():
            np.testing.assert_array_equal(value, before[name])
            with pytest.raises(ValueError):
                value[...] = 0.0
        assert profile.success is not None and profile.reference is not None
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ["highway-fast-v0", "roundabout-v0"])
def test_lane_offset_and_heading_error_follow_the_lane_geometry(env_id: str) -> None:
    env, profile = _make(env_id)
    try:
        env.reset(seed=0)
        ego = env.unwrapped.vehicle
        lane = ego.lane  # a straight highway lane; a circular one in the roundabout
        s = lane.local_coordinates(ego.position)[0] + 2.0
        ego.position = lane.position(s, 0.7)
        ego.heading = lane.heading_at(s) - 0.2
        state = profile.schema.read(env.unwrapped)
        assert float(state.lane_offset) == pytest.approx(0.7, abs=1e-6)
        assert float(state.lane_heading_error) == pytest.approx(-0.2, abs=1e-6)
        assert float(state.lane_width) == pytest.approx(lane.width_at(s))
    finally:
        env.close()


def test_gap_ahead_is_bumper_to_bumper_in_the_ego_lane() -> None:
    env, profile = _make()
    try:
        env.reset(seed=0)
        raw = env.unwrapped
        ego, road = raw.vehicle, raw.road
        other = next(v for v in road.vehicles if v is not ego)
        road.vehicles[:] = [ego, other]
        s = ego.lane.local_coordinates(ego.position)[0]
        other.position = ego.lane.position(s + 30.0, 0.0)
        assert float(profile.schema.read(raw).gap_ahead) == pytest.approx(30.0 - ego.LENGTH, abs=1e-6)
        other.position = ego.lane.position(s - 30.0, 0.0)  # behind: nothing ahead
        assert float(profile.schema.read(raw).gap_ahead) == GAP_CAP
        assert float(profile.schema.read(raw).vehicles_nearby) == 1.0
    finally:
        env.close()


def test_forced_crash_sets_collided_and_fails_success_at_episode_end() -> None:
    env, profile = _make()
    wrapped = TaskWrapper(env, profile.schema, success=profile.success)
    try:
        wrapped.reset(seed=0)
        raw = env.unwrapped
        ego = raw.vehicle
        other = next(v for v in raw.road.vehicles if v is not ego)
        other.position = ego.lane.position(ego.lane.local_coordinates(ego.position)[0] + 3.0, 0.0)
        other.heading = ego.heading
        _, _, terminated, _, info = wrapped.step(1)
        assert terminated and ego.crashed
        state = wrapped.current_state()
        assert float(state.collided) == 1.0
        assert info["is_success"] is False
    finally:
        wrapped.close()


def test_route_completion_and_success_reported_at_episode_end() -> None:
    env, profile = _make(config=SHORT)
    wrapped = TaskWrapper(env, profile.schema, success=profile.success)
    try:
        wrapped.reset(seed=5)
        raw = env.unwrapped
        positions = [raw.vehicle.position.copy()]
        seen = []
        for _ in range(10):
            _, _, terminated, truncated, info = wrapped.step(profile.reference(raw))
            positions.append(raw.vehicle.position.copy())
            seen.append("is_success" in info)
            if terminated or truncated:
                break
        assert seen[-1] and not any(seen[:-1])
        state = wrapped.current_state()
        driven = float(np.sum(np.linalg.norm(np.diff(positions, axis=0), axis=1)))
        assert float(state.distance_driven) == pytest.approx(driven)
        route = SHORT["duration"] * float(state.desired_speed_range[0])  # highway: duration x lowest desired speed
        assert float(state.route_completion) == pytest.approx(min(driven / route, 1.0))
        expected = float(state.collided) == 0.0 and float(state.route_completion) >= profile.success.threshold
        assert info["is_success"] is expected
        # A new episode starts a new odometer.
        wrapped.reset(seed=6)
        assert float(wrapped.current_state().distance_driven) == 0.0
    finally:
        wrapped.close()


def test_route_length_option_and_merge_route() -> None:
    env, profile = _make("highway-fast-v0", route_length=10.0)
    try:
        env.reset(seed=0)
        env.step(4)  # one second at >= 20 m/s is more than 10 m
        assert float(profile.schema.read(env.unwrapped).route_completion) == 1.0
    finally:
        env.close()
    env, profile = _make("merge-v0")
    try:
        env.reset(seed=0)
        env.step(1)
        state = profile.schema.read(env.unwrapped)
        assert float(state.route_completion) == pytest.approx(float(state.distance_driven) / 340.0)
    finally:
        env.close()


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version:UserWarning")
def test_passes_gymnasium_env_checker_and_is_deterministic() -> None:
    env, _ = _make(config=SHORT)
    try:
        check_env(env, skip_render_check=True)  # frames: see test_render_gives_real_frames_that_change
        remade = env.spec.make()  # the recorded wrapper stack re-makes the same env
        try:
            assert remade.observation_space == env.observation_space
            np.testing.assert_array_equal(remade.reset(seed=2)[0], env.reset(seed=2)[0])
        finally:
            remade.close()
        assert env.observation_space.shape == (25,) and env.observation_space.dtype == np.float32
        traces = []
        for _ in range(2):
            obs, _ = env.reset(seed=11)
            env.action_space.seed(11)
            trace = [obs]
            for _ in range(3):
                trace.append(env.step(env.action_space.sample())[0])
            traces.append(np.stack(trace))
        np.testing.assert_array_equal(traces[0], traces[1])
    finally:
        env.close()


def test_render_gives_real_frames_that_change() -> None:
    env, _ = _make(render_mode="rgb_array")
    try:
        env.reset(seed=0)
        first = env.render()
        assert first.shape == (224, 224, 3) and first.dtype == np.uint8
        assert first.std() > 10 and first.max() > 100  # road, lane marks and cars, not a black frame
        env.step(2)  # change lane: the scene moves
        second = env.render()
        assert np.abs(second.astype(int) - first).mean() > 0.5
    finally:
        env.close()
    env, _ = _make(render_mode="rgb_array", config={"screen_width": 160, "screen_height": 96})
    try:
        env.reset(seed=0)
        assert env.render().shape == (96, 160, 3)
    finally:
        env.close()


def test_steps_do_not_redraw_intermediate_frames_after_a_render() -> None:
    env, _ = _make(render_mode="rgb_array")
    try:
        env.reset(seed=0)
        env.unwrapped.render()  # as any consumer might, bypassing the adapter's wrapper
        viewer = env.unwrapped.viewer
        calls = []
        draw = viewer.display
        viewer.display = lambda: calls.append(1) or draw()
        env.unwrapped.step(1)  # highway-env alone redraws the 4 inner frames of a 5-frame step
        assert len(calls) == 4
        env.unwrapped.render()
        calls.clear()
        env.step(1)
        assert calls == []
        env.render()
        env.step(1)
        assert calls == [1]
    finally:
        env.close()


def test_rgb_observation_is_the_rendered_frame() -> None:
    env, profile = _make(observation="rgb", config={"screen_width": 128, "screen_height": 96})
    try:
        assert env.observation_space.shape == (96, 128, 3) and env.observation_space.dtype == np.uint8
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs) and obs.std() > 10
        obs2 = env.step(1)[0]
        assert env.observation_space.contains(obs2)
        np.testing.assert_array_equal(obs2, env.render())
        assert not np.array_equal(obs, obs2)
        assert profile.schema.read(env.unwrapped).speed > 0
    finally:
        env.close()


@pytest.mark.parametrize("kwargs,env_id,match", [
    ({"observaton": "rgb"}, "highway-fast-v0", "valid keys here: config, observation, route_length"),
    ({"observation": "lidar"}, "highway-fast-v0", "sim.kwargs.observation"),
    ({"config": {"lane_count": 2}}, "highway-fast-v0", "did you mean 'lanes_count'"),
    ({}, "highway-fats-v0", "did you mean 'highway-fast-v0'"),
    ({}, "intersection-multi-agent-v0", "trains one agent"),
])
def test_user_mistakes_are_task_errors(kwargs: dict, env_id: str, match: str) -> None:
    with pytest.raises(TaskError, match=match):
        ADAPTER.make_env(SimSpec(name="highway", env_id=env_id, kwargs=kwargs))


def test_other_highway_env_ids_get_a_generic_profile() -> None:
    env, profile = _make("parking-v0")  # continuous actions, dict observations
    try:
        obs, _ = env.reset(seed=0)
        assert obs.dtype == np.float32 and obs.ndim == 1 and env.observation_space.contains(obs)
        env.step(env.action_space.sample())
        state = profile.schema.read(env.unwrapped)
        assert set(state) == set(profile.schema.names)
        assert profile.success is None and profile.reference is None
    finally:
        env.close()


# ~14 s; tests/workbench/test_spec.py builds every shipped highway task in the default suite
@pytest.mark.slow
def test_shipped_task_validates() -> None:
    proc = _wb("validate", str(TASK))
    assert proc.returncode == 0, proc.stderr
    assert "highway: highway-fast-v0" in proc.stdout
    assert "route_completion >= 0.9" in proc.stdout
    assert "lane_offset: np.ndarray" in proc.stdout


@pytest.mark.slow  # ~14 s: the env is built and stepped by test_spec/test_gym_env in the default suite, the
# CLI training path by the MuJoCo runs; kept out of it to hold the default suite well under 15 min
def test_ppo_smoke_run_through_the_cli(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = _wb("run", str(TASK), "--runs-dir", str(runs), "--quiet",
               "--set", "sim.kwargs.config.duration=4", "--set", "reward.samples=32",
               "--set", "training.total_steps=256", "--set", "training.n_envs=1",
               "--set", "training.vec_env=dummy", "--set", "learner.hyperparams.n_steps=128",
               "--set", "learner.hyperparams.n_epochs=1", "--set", "evaluation.episodes=2",
               "--set", "evaluation.video_episodes=1")
    assert proc.returncode == 0, proc.stderr
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["steps"] == 256
    ev = json.loads((run / "eval.json").read_text())
    assert ev["success_rate"] is not None and "route_completion" in ev["success_metric"]
    assert {"speed", "center", "angle", "collision", "env"} <= set(ev["components"])
    (video,) = ev["videos"]
    assert Path(video).stat().st_size > 1000
