"""Rocket League adapter (RocketSim via rlgym v2): StateView vs the live arena, gymnasium contract,
goals and touches set up in the engine, seeding, the top-down renderer, the reference driver,
shipped tasks (code and text2reward), CLI errors and a tiny PPO run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rlgym.rocket_league.sim", reason='Rocket League is optional: pip install "rl-workbench[rocket]" '
                    "&& pip install --no-deps rlgym-rocket-league==2.0.1")

import RocketSim as rsim  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from workbench.errors import TaskError  # noqa: E402
from workbench.sims.rocket_league import (  # noqa: E402
    BLUE,
    GOAL_THRESHOLD,
    OPP_GOAL,
    ORANGE,
    OWN_GOAL,
    SCENARIOS,
    RocketLeagueAdapter,
    RocketLeagueEnv,
    drive_at_ball,
    observation_layout,
)
from workbench.spec import SimSpec  # noqa: E402
from workbench.wrappers import TaskWrapper  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "tasks" / "rocket_league"
ADAPTER = RocketLeagueAdapter()
TOUCH, SCORE, ONE_V_ONE = "rocket_league/TouchBall-v0", "rocket_league/ScoreEmptyNet-v0", "rocket_league/Score1v1-v0"


def _make(env_id: str = TOUCH, *, render_mode: str | None = None, max_steps: int | None = None,
          **kwargs) -> tuple[RocketLeagueEnv, object]:
    spec = SimSpec(name="rocket_league", env_id=env_id, kwargs=kwargs, max_episode_steps=max_steps)
    return ADAPTER.make_env(spec, render_mode=render_mode), ADAPTER.profile(spec)


def _wb(*args: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _set_ball(env: RocketLeagueEnv, pos, vel=(0.0, 0.0, 0.0)) -> None:
    """Move the ball in the live RocketSim arena (not through the adapter)."""
    state = rsim.BallState()
    state.pos = rsim.Vec(*map(float, pos))
    state.vel = rsim.Vec(*map(float, vel))
    env.arena.ball.set_state(state)


def _engine_car(env: RocketLeagueEnv, agent: str = BLUE):
    return env.gym.transition_engine._cars[agent]


# ----------------------------------------------------------------------------- StateView


@pytest.mark.parametrize("env_id", [TOUCH, ONE_V_ONE])
def test_state_view_matches_the_live_arena(env_id: str) -> None:
    env, profile = _make(env_id)
    try:
        env.reset(seed=4)
        rng = np.random.default_rng(0)
        for _ in range(20):
            env.step(int(rng.integers(24)))  # drive around on the ground
        state = profile.schema.read(env)
        car = _engine_car(env).get_state()
        ball = env.arena.ball.get_state()
        np.testing.assert_allclose(state.car_pos, car.pos.as_numpy(), rtol=1e-6)
        np.testing.assert_allclose(state.car_vel, car.vel.as_numpy(), rtol=1e-6)
        np.testing.assert_allclose(state.car_ang_vel, car.ang_vel.as_numpy(), rtol=1e-6)
        np.testing.assert_allclose(state.car_forward, _engine_car(env).get_forward_dir().as_numpy(), atol=1e-6)
        np.testing.assert_allclose(state.car_up, _engine_car(env).get_up_dir().as_numpy(), atol=1e-6)
        assert float(state.car_speed) == pytest.approx(np.linalg.norm(car.vel.as_numpy()), rel=1e-6)
        assert float(state.boost) == pytest.approx(car.boost)
        assert float(state.on_ground) == float(sum(car.wheels_with_contact) >= 3)
        np.testing.assert_allclose(state.ball_pos, ball.pos.as_numpy(), rtol=1e-6)
        np.testing.assert_allclose(state.ball_vel, ball.vel.as_numpy(), rtol=1e-6)
        np.testing.assert_allclose(state.opp_goal_pos, OPP_GOAL)
        np.testing.assert_allclose(state.own_goal_pos, OWN_GOAL)
        to_ball = ball.pos.as_numpy() - car.pos.as_numpy()
        dist = np.linalg.norm(to_ball)
        assert float(state.car_to_ball_dist) == pytest.approx(dist, rel=1e-5)
        np.testing.assert_allclose(state.car_to_ball_dir, to_ball / dist, atol=1e-5)
        assert float(state.facing_ball) == pytest.approx(state.car_forward @ (to_ball / dist), abs=1e-5)
        assert float(state.car_vel_toward_ball) == pytest.approx(car.vel.as_numpy() @ (to_ball / dist),
                                                                 rel=1e-4, abs=1e-3)
        to_goal = OPP_GOAL - ball.pos.as_numpy()
        assert float(state.ball_to_opp_goal_dist) == pytest.approx(np.linalg.norm(to_goal), rel=1e-5)
        assert float(state.episode_time) == pytest.approx(20 * 8 / 120)
        assert float(state.time_left) == pytest.approx(SCENARIOS[env_id].seconds - 20 * 8 / 120)
        if env_id == ONE_V_ONE:
            opp = _engine_car(env, ORANGE).get_state()
            np.testing.assert_allclose(state.opponent_pos, opp.pos.as_numpy(), rtol=1e-6)
            np.testing.assert_allclose(state.opponent_vel, opp.vel.as_numpy(), rtol=1e-6)
            assert float(state.opponent_to_ball_dist) == pytest.approx(
                np.linalg.norm(ball.pos.as_numpy() - opp.pos.as_numpy()), rel=1e-5)
            assert float(np.linalg.norm(opp.vel.as_numpy())) > 300  # the chaser drives
        else:
            assert "opponent_pos" not in state
        for field in profile.schema.fields:
            assert state[field.name].shape == field.shape and np.all(np.isfinite(state[field.name])), field.name
        before = state.car_pos.copy()
        env.step(16)  # a snapshot, not a view
        np.testing.assert_array_equal(state.car_pos, before)
        with pytest.raises(ValueError):
            state.car_pos[0] = 0.0
    finally:
        env.close()


@pytest.mark.parametrize("env_id", sorted(SCENARIOS))
def test_description_lists_every_field_with_its_unit(env_id: str) -> None:
    env, profile = _make(env_id)
    env.close()
    text = profile.schema.describe()
    assert text.count(": np.ndarray") == len(profile.schema.fields)
    for field in profile.schema.fields:
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(field.name + ":"))
        assert field.unit in line and field.doc in line
    assert ("opponent_pos: np.ndarray" in text) == (SCENARIOS[env_id].opponent != "none")
    assert "+y" in text and "uu" in text


# ----------------------------------------------------------------------------- gymnasium contract


@pytest.mark.parametrize("actions,n", [("lookup", 90), ("ground", 24)])
def test_env_checker_spaces_and_action_names(actions: str, n: int) -> None:
    env, _ = _make(ONE_V_ONE, actions=actions, render_mode="rgb_array")
    try:
        check_env(env, skip_render_check=True)
        assert env.action_space.n == n and len(env.action_names) == n
        assert env.action_names[18] == "throttle+1 steer+0 boost" and env.action_names[8] == "throttle+0 steer+0"
        if n == 90:
            assert sum("jump" in name for name in env.action_names) > 10
        obs, _ = env.reset(seed=0)
        assert obs.shape == (observation_layout()[-1][2],) and obs.dtype == np.float32
        assert env.observation_space.contains(obs)
        layout = {name: (a, b) for name, a, b in observation_layout()}
        a, b = layout["opponent_present"]
        assert obs[a] == 1.0
    finally:
        env.close()


def test_text2reward_prompt_shows_the_action_names() -> None:
    from reward_synthesis.llm.sources import describe_action_space

    env, _ = _make(actions="ground")
    try:
        text = describe_action_space(env.action_space, env.unwrapped.action_names)
        assert "[0, 23]" in text and "18=throttle+1 steer+0 boost" in text
    finally:
        env.close()


def test_seeding_reproduces_episodes_across_envs() -> None:
    def rollout(env: RocketLeagueEnv, seed: int) -> list[np.ndarray]:
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(7)
        trace = [obs]
        for _ in range(60):
            obs, reward, terminated, truncated, _ = env.step(int(rng.integers(90)))
            trace.append(np.append(obs, reward))
            if terminated or truncated:
                break
        return trace

    a, _ = _make(ONE_V_ONE)
    b, _ = _make(ONE_V_ONE, render_mode="rgb_array")
    try:
        first = rollout(a, 3)
        for x, y in zip(first, rollout(b, 3), strict=True):
            np.testing.assert_array_equal(x, y)
        rollout(a, 99)  # another episode in between: the arena carries nothing over
        for x, y in zip(first, rollout(a, 3), strict=True):
            np.testing.assert_array_equal(x, y)
        c, _ = _make(TOUCH)
        try:
            spawns = {tuple(c.reset(seed=s)[0][:2]) for s in range(5)}
        finally:
            c.close()
        assert len(spawns) == 5
    finally:
        a.close()
        b.close()


def test_time_limit_truncates() -> None:
    env, _ = _make(SCORE, max_steps=5)
    try:
        env.reset(seed=0)
        ends = [env.step(8)[2:4] for _ in range(5)]
        assert ends[:4] == [(False, False)] * 4 and ends[4] == (False, True)
        env2, _ = _make(SCORE, tick_skip=4, episode_seconds=2.0)
        try:
            assert env2.config.max_steps == 60  # 2 s x 120 Hz / 4 ticks
        finally:
            env2.close()
    finally:
        env.close()


# ----------------------------------------------------------------------------- episode outcomes


@pytest.mark.parametrize("direction,scored", [(1, True), (-1, False)])
def test_goal_in_the_engine_sets_goal_flags_reward_and_success(direction: int, scored: bool) -> None:
    env, profile = _make(SCORE)
    wrapped = TaskWrapper(env, profile.schema, success=profile.success)
    try:
        wrapped.reset(seed=0)
        _set_ball(env, (0.0, direction * 5150.0, 93.15), (0.0, direction * 3000.0, 0.0))
        _, reward, terminated, truncated, info = wrapped.step(8)
        assert abs(env.arena.ball.get_state().pos.y) > GOAL_THRESHOLD
        state = wrapped.current_state()
        assert terminated and not truncated
        assert (float(state.goal_scored), float(state.goal_conceded)) == ((1.0, 0.0) if scored else (0.0, 1.0))
        assert reward == (1.0 if scored else -1.0)
        assert info["is_success"] is scored and info["end_cause"] == ("goal" if scored else "conceded")
    finally:
        wrapped.close()


def test_goal_without_termination_keeps_the_flag() -> None:
    env, profile = _make(SCORE, terminate_on_goal=False)
    try:
        env.reset(seed=0)
        _set_ball(env, (0.0, 5150.0, 93.15), (0.0, 3000.0, 0.0))
        _, reward, terminated, _, _ = env.step(8)
        assert reward == 1.0 and not terminated
        _, reward, _, _, _ = env.step(8)
        assert reward == 0.0 and float(profile.schema.read(env).goal_scored) == 1.0  # paid once, remembered
    finally:
        env.close()


def test_touch_in_the_engine_sets_touch_flags_and_success() -> None:
    env, profile = _make(TOUCH)
    wrapped = TaskWrapper(env, profile.schema, success=profile.success)
    try:
        wrapped.reset(seed=1)
        state = wrapped.current_state()
        assert float(state.ball_touched) == 0.0 and float(state.ball_touched_ever) == 0.0
        car = _engine_car(env).get_state()
        _set_ball(env, car.pos.as_numpy() + 250.0 * state.car_forward + [0, 0, 76.0])  # just ahead of the nose
        for _ in range(10):
            _, reward, terminated, truncated, info = wrapped.step(18)  # throttle + boost
            if terminated or truncated:
                break
        state = wrapped.current_state()
        assert terminated and reward == 1.0 and info["end_cause"] == "touch"
        assert float(state.ball_touched) == 1.0 and float(state.ball_touched_ever) == 1.0
        assert float(state.ball_touches) >= 1 and float(state.ball_speed) > 100  # the ball was hit
        assert info["is_success"] is True
    finally:
        wrapped.close()


def test_timeout_without_touch_is_no_success() -> None:
    env, profile = _make(TOUCH, max_steps=3)
    wrapped = TaskWrapper(env, profile.schema, success=profile.success)
    try:
        wrapped.reset(seed=1)
        for _ in range(3):
            _, _, terminated, truncated, info = wrapped.step(8)  # idle
        assert truncated and info["is_success"] is False and info["end_cause"] == "timeout"
    finally:
        wrapped.close()


@pytest.mark.parametrize("env_id,episodes,least", [(TOUCH, 10, 1.0), (SCORE, 10, 0.6)])
def test_reference_driver_solves_the_task(env_id: str, episodes: int, least: float) -> None:
    env, profile = _make(env_id)
    wins = 0
    try:
        for seed in range(episodes):
            env.reset(seed=100 + seed)
            while True:
                _, _, terminated, truncated, _ = env.step(drive_at_ball(env))
                if terminated or truncated:
                    break
            wins += profile.success(profile.schema.read(env))
            if env_id == TOUCH:
                assert env._steps <= 110  # reaches the ball within ~7 s from anywhere
    finally:
        env.close()
    assert wins / episodes >= least


def test_random_actions_rarely_succeed() -> None:
    env, profile = _make(SCORE, max_steps=150)
    wins = 0
    try:
        for seed in range(5):
            env.reset(seed=seed)
            env.action_space.seed(seed)
            while True:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                if terminated or truncated:
                    break
            wins += profile.success(profile.schema.read(env))
    finally:
        env.close()
    assert wins <= 1


# ----------------------------------------------------------------------------- rendering


def _centroid(frame: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    ys, xs = np.nonzero(np.all(frame == np.asarray(colour, np.uint8), axis=-1))
    assert len(xs) > 0, f"no {colour} pixels"
    return np.array([xs.mean(), ys.mean()])


def test_render_draws_the_field_and_moving_car_and_ball() -> None:
    from workbench.sims import rocket_league_render as rr

    env, _ = _make(TOUCH, render_mode="rgb_array")
    try:
        env.reset(seed=2)
        first = env.render()
        assert first.shape == (224, 224, 3) and first.dtype == np.uint8
        assert first.std() > 10 and first.max() > 200
        car0, ball0 = _centroid(first, rr._BLUE), _centroid(first, rr._BALL)
        for _ in range(15):
            env.step(18)  # one second of throttle + boost
        second = env.render()
        car1 = _centroid(second, rr._BLUE)
        assert np.linalg.norm(car1 - car0) > 3  # the car moved on screen...
        np.testing.assert_allclose(_centroid(second, rr._BALL), ball0, atol=0.5)  # ...the ball did not
        # Screen direction follows the world: +y is up, +x is to the left.
        fwd = env.state_values()["car_forward"]
        assert np.sign(car1[0] - car0[0]) == -np.sign(fwd[0]) or abs(fwd[0]) < 0.2
        assert np.sign(car1[1] - car0[1]) == -np.sign(fwd[1]) or abs(fwd[1]) < 0.2
        _set_ball(env, (0.0, 0.0, 93.15), (0.0, 2500.0, 0.0))
        env.step(8)
        before = _centroid(env.render(), rr._BALL)
        for _ in range(10):
            env.step(8)
        after = _centroid(env.render(), rr._BALL)
        assert after[1] < before[1] - 5  # rolling toward +y: up the screen
    finally:
        env.close()
    env, _ = _make(TOUCH, render_mode="rgb_array", render_size=[96, 128])
    try:
        env.reset(seed=0)
        assert env.render().shape == (128, 96, 3)
    finally:
        env.close()
    env, _ = _make(TOUCH)
    try:
        env.reset(seed=0)
        assert env.render() is None  # no render_mode: no frames
    finally:
        env.close()


# ----------------------------------------------------------------------------- errors, tasks, CLI


def test_user_mistakes_are_task_errors() -> None:
    with pytest.raises(TaskError) as err:
        ADAPTER.make_env(SimSpec(name="rocket_league", env_id="rocket_league/TouchBal-v0"))
    assert err.value.key == "sim.env_id" and "rocket_league/TouchBall-v0" in err.value.hint
    with pytest.raises(TaskError) as err:
        ADAPTER.make_env(SimSpec(name="rocket_league", env_id=TOUCH, kwargs={"opponent": "goalie"}))
    assert err.value.key == "sim.kwargs.opponent"
    with pytest.raises(TaskError) as err:
        ADAPTER.make_env(SimSpec(name="rocket_league", env_id=TOUCH, kwargs={"tickskip": 4}))
    assert "tick_skip" in str(err.value)
    with pytest.raises(TaskError):
        ADAPTER.make_env(SimSpec(name="rocket_league", env_id=TOUCH), render_mode="human")


def test_cli_unknown_env_id_is_one_message_with_exit_2(tmp_path: Path) -> None:
    task = tmp_path / "bad.yaml"
    task.write_text("name: bad\nsim: {name: rocket_league, env_id: rocket_league/Kickof-v0}\n"
                    "learner: {name: ppo}\ntraining: {total_steps: 1000}\n")
    proc = _wb("validate", str(task))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "sim.env_id" in proc.stderr and "rocket_league/TouchBall-v0" in proc.stderr


SHIPPED = sorted(TASKS.glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_task_builds_with_its_code_reward_and_with_text2reward(path: Path, tmp_path: Path) -> None:
    import yaml
    from workbench_testing import load_shipped

    from reward_synthesis.language.text2reward import build_messages
    from workbench.reward import BuiltReward
    from workbench.task import Task

    task = Task.build(load_shipped(path, tmp_path))  # the code reward passes the pre-flight checks
    assert task.reward.report is not None and task.reward.report.accepted
    env = task.make_env()
    try:
        env.reset(seed=0)
        _, _, _, _, info = env.step(env.action_space.sample())
        assert {"reward/env", "reward/approach"} <= set(info)
    finally:
        env.close()
    # The same task with reward: {source: text2reward}: validates, and its prompt carries the StateView,
    # the action names and the success metric (no LLM is asked here).
    raw = yaml.safe_load(path.read_text())
    raw["reward"] = {"source": "text2reward", "goal": raw["goal"]}
    t2r = tmp_path / path.name
    t2r.write_text(yaml.safe_dump(raw))
    spec = load_shipped(t2r, tmp_path)
    task = Task.build(spec, reward=BuiltReward(None, "synthesized elsewhere"))
    (system, user) = build_messages(task, raw["goal"])
    assert "car_vel_toward_ball: np.ndarray" in user["content"] and "throttle+1 steer+0 boost" in user["content"]
    assert task.success_doc() in user["content"]


def test_cli_validate_shows_the_state_view() -> None:
    proc = _wb("validate", str(TASKS / "score_empty_net.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "rocket_league: rocket_league/ScoreEmptyNet-v0" in proc.stdout
    assert "goal_scored >= 1" in proc.stdout and "ball_vel_toward_opp_goal: np.ndarray" in proc.stdout


def test_ppo_smoke_run_through_the_cli(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = _wb("run", str(TASKS / "touch_ball.yaml"), "--runs-dir", str(runs), "--quiet",
               "--set", "sim.max_episode_steps=40", "--set", "reward.samples=32",
               "--set", "training.total_steps=256", "--set", "training.n_envs=1",
               "--set", "learner.hyperparams.n_steps=128", "--set", "learner.hyperparams.batch_size=64",
               "--set", "learner.hyperparams.n_epochs=1", "--set", "evaluation.episodes=2",
               "--set", "evaluation.video_episodes=1")
    assert proc.returncode == 0, proc.stderr
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["steps"] == 256
    ev = json.loads((run / "eval.json").read_text())
    assert ev["episodes"] == 2 and ev["success_rate"] is not None and "ball_touched_ever" in ev["success_metric"]
    assert {"approach", "facing", "touch", "env"} <= set(ev["components"])
    assert all(row["length"] <= 40 for row in ev["per_episode"])
    (video,) = ev["videos"]
    assert Path(video).stat().st_size > 1000


def test_missing_rlgym_is_a_task_error_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.sims import rocket_league

    monkeypatch.setitem(sys.modules, "RocketSim", None)  # the import fails as if it were not installed
    rocket_league._rlgym.cache_clear()
    try:
        with pytest.raises(TaskError) as err:
            ADAPTER.make_env(SimSpec(name="rocket_league", env_id=TOUCH))
        assert 'pip install "rl-workbench[rocket]"' in err.value.hint
        assert "pip install --no-deps rlgym-rocket-league==2.0.1" in err.value.hint
    finally:
        monkeypatch.undo()
        rocket_league._rlgym.cache_clear()
