"""Rocket League adapter: rlgym v2's RLGym over the RocketSim transition engine (a full soccar
arena, headless, offline: rlgym-rocket-league ships the collision meshes).

Env ids (see :data:`SCENARIOS`):

- ``rocket_league/TouchBall-v0`` — our car and the ball at random spots on the field, the car at
  a random heading; success: the car touched the ball (the episode ends on the touch). 10 s.
- ``rocket_league/ScoreEmptyNet-v0`` — the ball at rest in the attacking half, our car behind it
  (toward its own goal) and roughly facing it, no opponent; success: a goal. 20 s.
- ``rocket_league/Score1v1-v0`` — a kickoff against a scripted orange car that drives at the
  ball; success: a goal for us before the clock runs out. 30 s.

One agent, the blue car (``blue-0``), which attacks the orange goal at +y. Multi-agent training
(self-play, 2v2) is not supported yet: an opponent is an ``idle`` or ``chase`` script.

``sim.kwargs`` (all optional, see :class:`RocketLeagueOptions`): ``spawn`` (``kickoff``,
``random``, ``attack``), ``opponent`` (``none``, ``idle``, ``chase``), ``tick_skip`` (physics
ticks at 120 Hz per env step; default 8 as rlgym, i.e. 15 steps per second), ``episode_seconds``
(``sim.max_episode_steps`` wins), ``terminate_on_touch``, ``terminate_on_goal``, ``actions``
(``lookup``: rlgym's 90-entry lookup table; ``ground``: its first 24 rows, the driving-only
controls), ``start_boost`` and ``render_size`` (``[width, height]`` of ``render()`` frames).

The env's own reward is sparse: +1 on the step our car touches the ball (TouchBall), +1 / -1 on
a goal for / against us (the score tasks). Observation: a float32 vector of
:func:`observation_layout`, everything scaled to about [-1, 1] and the ball, the opponent goal and
the opponent expressed in the car's own frame as well. ``render()`` (``render_mode="rgb_array"``)
draws the field from above with numpy (:mod:`workbench.sims.rocket_league_render`).

Seeding: every spawn is drawn from the env's ``np_random``, so ``reset(seed=s)`` gives the same
episode for the same actions, in any process (RocketSim itself is deterministic).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PydanticField

from workbench.errors import TaskError
from workbench.sims.base import SuccessMetric, TaskProfile
from workbench.sims.rocket_league_render import CarSprite, TopDownRenderer
from workbench.spec import SimSpec
from workbench.state import Field, StateSchema

__all__ = ["RocketLeagueAdapter", "RocketLeagueEnv", "RocketLeagueOptions", "SCENARIOS", "drive_at_ball",
           "observation_layout", "action_names", "BLUE", "ORANGE", "GOAL_THRESHOLD", "OPP_GOAL", "OWN_GOAL"]

BLUE, ORANGE = "blue-0", "orange-0"  # rlgym's FixedTeamSizeMutator names
TICK_RATE = 120  # physics ticks per second
SIDE_WALL_X, BACK_WALL_Y, CEILING_Z = 4096.0, 5120.0, 2044.0  # uu
GOAL_THRESHOLD = 5215.5  # |ball y| beyond which rlgym counts a goal
GOAL_HEIGHT = 642.775
OPP_GOAL = np.array([0.0, BACK_WALL_Y, GOAL_HEIGHT / 2])  # the orange goal's centre: we score here
OWN_GOAL = np.array([0.0, -BACK_WALL_Y, GOAL_HEIGHT / 2])
BALL_REST_Z, CAR_REST_Z = 93.15, 17.0
CAR_MAX_SPEED, BALL_MAX_SPEED, CAR_MAX_ANG_VEL = 2300.0, 6000.0, 5.5
KICKOFF_BLUE = ((-2048.0, -2560.0, 0.25), (2048.0, -2560.0, 0.75), (-256.0, -3840.0, 0.5), (256.0, -3840.0, 0.5),
                (0.0, -4608.0, 0.5))  # (x, y, yaw / pi): Rocket League's five kickoff spots
_IDLE = 8  # lookup-table row of no input


@dataclass(frozen=True)
class Scenario:
    """The defaults one env id gives the options, and what success means."""

    doc: str
    spawn: Literal["kickoff", "random", "attack"]
    opponent: Literal["none", "idle", "chase"]
    seconds: float
    terminate_on_touch: bool
    success: Literal["touch", "goal"]


SCENARIOS: dict[str, Scenario] = {
    "rocket_league/TouchBall-v0": Scenario(
        "Drive the car into the ball. Car and ball start at random spots, the car at a random heading.",
        "random", "none", 10.0, True, "touch"),
    "rocket_league/ScoreEmptyNet-v0": Scenario(
        "Score on an empty net: the ball rests in the attacking half, the car starts behind it, "
        "roughly facing it.", "attack", "none", 20.0, False, "goal"),
    "rocket_league/Score1v1-v0": Scenario(
        "Score from a kickoff against a scripted orange car that drives at the ball.",
        "kickoff", "chase", 30.0, False, "goal"),
}


class RocketLeagueOptions(BaseModel):
    """The keys of ``sim.kwargs`` for Rocket League; None takes the env id's default."""

    model_config = ConfigDict(extra="forbid")
    spawn: Literal["kickoff", "random", "attack"] | None = PydanticField(
        None, description="kickoff: a kickoff spot; random: car and ball anywhere; attack: ball in the "
                          "attacking half, car behind it")
    opponent: Literal["none", "idle", "chase"] | None = PydanticField(
        None, description="none: empty field; idle: an orange car that does nothing; chase: one that drives at "
                          "the ball")
    tick_skip: int = PydanticField(8, ge=1, le=120, description="physics ticks (120 Hz) per env step")
    episode_seconds: float | None = PydanticField(None, gt=0, description="game seconds per episode; "
                                                  "sim.max_episode_steps wins")
    terminate_on_touch: bool | None = PydanticField(None, description="end the episode when our car touches the ball")
    terminate_on_goal: bool = PydanticField(True, description="end the episode on a goal (either side)")
    actions: Literal["lookup", "ground"] = PydanticField(
        "lookup", description="lookup: rlgym's 90 discrete actions; ground: its first 24 (driving only)")
    start_boost: float = PydanticField(33.3, ge=0, le=100, description="our car's boost at the start")
    render_size: tuple[int, int] = PydanticField((224, 224), description="render() frame [width, height], px")

    @field_validator("render_size", mode="before")
    @classmethod
    def _pair(cls, v: Any) -> Any:
        return (v, v) if isinstance(v, int) else v

    @field_validator("render_size")
    @classmethod
    def _size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not all(32 <= s <= 2048 for s in v):
            raise ValueError("each side must be 32..2048 px")
        return v


@dataclass(frozen=True)
class _Config:
    """Options resolved against the scenario."""

    env_id: str
    scenario: Scenario
    spawn: str
    opponent: str
    tick_skip: int
    max_steps: int
    terminate_on_touch: bool
    terminate_on_goal: bool
    actions: str
    start_boost: float
    render_size: tuple[int, int]


# ----------------------------------------------------------------------------- rlgym, lazily

_INSTALL = 'pip install "rl-workbench[rocket]" && pip install --no-deps rlgym-rocket-league==2.0.1'


@lru_cache(maxsize=1)
def _rlgym() -> Any:
    """The rlgym modules the env uses; a TaskError with the install when they are missing."""
    try:
        import RocketSim  # noqa: F401
        from rlgym.api import RLGym
        from rlgym.rocket_league import action_parsers, sim, state_mutators
    except ImportError as err:
        raise TaskError(f"the rocket_league simulator needs RocketSim and rlgym-rocket-league ({err})",
                        key="sim.name", hint=f"{_INSTALL} (rlgym-rocket-league pins numpy<2 but runs on "
                                             "numpy 2, hence --no-deps; it ships the soccar collision "
                                             "meshes)") from None
    return RLGym, action_parsers, sim, state_mutators


@lru_cache(maxsize=1)
def lookup_table() -> np.ndarray:
    """rlgym's 90 x 8 lookup table (throttle, steer, pitch, yaw, roll, jump, boost, handbrake)."""
    return np.asarray(_rlgym()[1].LookupTableAction.make_lookup_table())


def action_names(table: np.ndarray) -> tuple[str, ...]:
    """Short names of the lookup-table rows, as the reward prompt shows them. The first 24 rows are
    ground controls (throttle, steer, boost, handbrake); the rest air controls (pitch, yaw, roll,
    jump, boost) in which boost also means full throttle."""
    names = []
    for i, (throttle, steer, pitch, yaw, roll, jump, boost, handbrake) in enumerate(table.astype(int)):
        if i < 24:
            name = f"throttle{throttle:+d} steer{steer:+d}"
        else:
            name = f"pitch{pitch:+d} yaw{yaw:+d} roll{roll:+d}" + (" jump" if jump else "")
        names.append(name + (" boost" if boost else "") + (" handbrake" if handbrake and i < 24 else ""))
    return tuple(names)


def _ground_index(table: np.ndarray) -> dict[tuple[int, int, int, int], int]:
    """(throttle, steer, boost, handbrake) -> row, for the scripted drivers."""
    return {(int(r[0]), int(r[1]), int(r[6]), int(r[7])): i for i, r in enumerate(table[:24])}


class _Null:
    """rlgym's obs builder, reward function and done conditions, unused: the env computes its
    observation, reward and episode end itself from the same GameState."""

    def reset(self, *args: Any) -> None:
        return None

    def build_obs(self, agents: Any, state: Any, shared_info: Any) -> dict:
        return {}

    def get_obs_space(self, agent: Any) -> tuple[str, int]:
        return "real", 0

    def get_rewards(self, *args: Any) -> dict:
        return {}


class _Spawn:
    """rlgym StateMutator: places the ball and the cars for one episode, drawing from the env's
    ``np_random`` so that ``reset(seed=...)`` reproduces it."""

    def __init__(self, env: RocketLeagueEnv):
        self.env = env

    def apply(self, state: Any, shared_info: Any) -> None:
        cfg, rng = self.env.config, self.env.np_random
        ball = np.array([0.0, 0.0, BALL_REST_Z])
        if cfg.spawn == "kickoff":
            x, y, yaw = KICKOFF_BLUE[int(rng.integers(len(KICKOFF_BLUE)))]
            car, yaw = np.array([x, y, CAR_REST_Z]), yaw * math.pi
        elif cfg.spawn == "random":
            ball = np.array([rng.uniform(-3000, 3000), rng.uniform(-4000, 4000), BALL_REST_Z])
            while True:
                car = np.array([rng.uniform(-3500, 3500), rng.uniform(-4400, 4400), CAR_REST_Z])
                if np.hypot(*(car - ball)[:2]) >= 1200:
                    break
            yaw = rng.uniform(-math.pi, math.pi)
        else:  # attack
            ball = np.array([rng.uniform(-2500, 2500), rng.uniform(0, 3000), BALL_REST_Z])
            car = np.array([np.clip(ball[0] + rng.uniform(-1200, 1200), -3500, 3500),
                            ball[1] - rng.uniform(1000, 2500), CAR_REST_Z])
            yaw = math.atan2(ball[1] - car[1], ball[0] - car[0]) + rng.uniform(-0.5, 0.5) * math.pi
        state.ball.position = ball.astype(np.float32)
        state.ball.linear_velocity = np.zeros(3, np.float32)
        state.ball.angular_velocity = np.zeros(3, np.float32)
        _place(state.cars[BLUE], car, yaw, cfg.start_boost)
        if ORANGE in state.cars:
            # The mirror of our kickoff spot; otherwise its goalkeeper spot in front of its goal.
            spot = (np.array([-car[0], -car[1], CAR_REST_Z]) if cfg.spawn == "kickoff"
                    else np.array([0.0, 4608.0, CAR_REST_Z]))
            _place(state.cars[ORANGE], spot, yaw + math.pi if cfg.spawn == "kickoff" else -0.5 * math.pi, 33.3)


def _place(car: Any, pos: np.ndarray, yaw: float, boost: float) -> None:
    car.physics.position = np.asarray(pos, np.float32)
    car.physics.linear_velocity = np.zeros(3, np.float32)
    car.physics.angular_velocity = np.zeros(3, np.float32)
    car.physics.euler_angles = np.array([0.0, yaw, 0.0], np.float32)
    car.boost_amount = float(boost)


# ----------------------------------------------------------------------------- observation


_OBS_PARTS = (("car_pos", 3), ("car_vel", 3), ("car_ang_vel", 3), ("car_forward", 3), ("car_up", 3),
              ("boost_on_ground_has_flip", 3), ("ball_pos", 3), ("ball_vel", 3), ("ball_ang_vel", 3),
              ("ball_rel_pos_car_frame", 3), ("ball_rel_vel_car_frame", 3), ("opp_goal_rel_pos_car_frame", 3),
              ("ball_to_opp_goal_dir", 3), ("opponent_present", 1), ("opponent_rel_pos_car_frame", 3),
              ("opponent_rel_vel_car_frame", 3), ("time_left_fraction", 1))


def _norm(v: np.ndarray) -> float:
    """|v| of a 3-vector: np.linalg.norm's dispatch costs several times the arithmetic here."""
    return math.sqrt(float(v @ v))


_POS_SCALE = np.array([SIDE_WALL_X, BACK_WALL_Y, CEILING_Z])
# Scale of each car-frame row in the observation: ball offset, ball velocity, goal offset,
# opponent offset, opponent velocity.
_LOCAL_SCALE = np.array([SIDE_WALL_X, CAR_MAX_SPEED, SIDE_WALL_X, SIDE_WALL_X, CAR_MAX_SPEED])[:, None]
_OBS_BOUND = 10.0


def observation_layout() -> list[tuple[str, int, int]]:
    """``(name, start, stop)`` slices of the float32 observation. World vectors are divided by
    the field's half-size (positions), 2300 uu/s (car velocities), 6000 uu/s (ball velocity),
    5.5 rad/s (angular velocities); "car frame" vectors are in the car's (forward, steer-right,
    up) axes, positions / 4096 uu and velocities / 2300 uu/s; opponent entries are 0 without one."""
    layout, at = [], 0
    for name, n in _OBS_PARTS:
        layout.append((name, at, at + n))
        at += n
    return layout


OBS_SIZE = observation_layout()[-1][2]


# ----------------------------------------------------------------------------- the env


class RocketLeagueEnv(gym.Env):
    """One blue car in a RocketSim soccar arena, driven through rlgym's lookup-table actions."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, config: _Config, *, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        RLGym, action_parsers, sim, state_mutators = _rlgym()
        self.config = config
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": TICK_RATE / config.tick_skip}
        table = lookup_table()
        n_actions = 24 if config.actions == "ground" else len(table)
        self.action_space = gym.spaces.Discrete(n_actions)
        self.observation_space = gym.spaces.Box(-_OBS_BOUND, _OBS_BOUND, (OBS_SIZE,), np.float32)
        self.action_names = action_names(table)[:n_actions]  # read by the reward prompts
        self._ground = _ground_index(table)
        null = _Null()
        mutator = state_mutators.MutatorSequence(
            state_mutators.FixedTeamSizeMutator(blue_size=1, orange_size=0 if config.opponent == "none" else 1),
            _Spawn(self))
        self.gym = RLGym(state_mutator=mutator, obs_builder=null,
                         action_parser=action_parsers.RepeatAction(action_parsers.LookupTableAction(),
                                                                   repeats=config.tick_skip),
                         reward_fn=null, transition_engine=sim.RocketSimEngine())
        self._renderer: TopDownRenderer | None = None
        self._values: dict[str, Any] = {}
        self._rot = np.eye(3)
        self._goal_dir = np.zeros(3)
        self._steps = 0
        self._touches = 0
        self._scored = self._conceded = False

    # -- the live engine
    @property
    def game_state(self) -> Any:
        """rlgym's GameState after the last reset or step."""
        return self.gym.state

    @property
    def arena(self) -> Any:
        """The RocketSim arena itself (tests compare the StateView with it)."""
        return self.gym.transition_engine._arena

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.gym.reset()
        self._steps = self._touches = 0
        self._scored = self._conceded = False
        self._update(touched=False)
        return self._observe(), {}

    def step(self, action: Any):
        if not self.gym.agents:
            raise RuntimeError("step() before reset()")
        a = int(np.asarray(action).reshape(-1)[0])
        if not 0 <= a < self.action_space.n:
            raise ValueError(f"action {a} is outside Discrete({self.action_space.n})")
        actions = {BLUE: np.array([a])}
        if self.config.opponent != "none":
            actions[ORANGE] = np.array([self._opponent_action()])
        self.gym.step(actions)
        self._steps += 1
        gs = self.gym.state
        touched = gs.cars[BLUE].ball_touches > 0
        self._touches += int(gs.cars[BLUE].ball_touches)
        y = float(gs.ball.position[1])
        scored_now, conceded_now = y > GOAL_THRESHOLD and not self._scored, y < -GOAL_THRESHOLD and not self._conceded
        self._scored |= scored_now
        self._conceded |= conceded_now
        self._update(touched=touched)
        cfg = self.config
        if cfg.scenario.success == "touch":
            reward = 1.0 if touched else 0.0
        else:
            reward = float(scored_now) - float(conceded_now)
        terminated = bool((cfg.terminate_on_goal and (self._scored or self._conceded))
                          or (cfg.terminate_on_touch and self._touches > 0))
        truncated = not terminated and self._steps >= cfg.max_steps
        info: dict[str, Any] = {}
        if terminated or truncated:
            info["end_cause"] = ("goal" if self._scored else "conceded" if self._conceded
                                 else "touch" if terminated else "timeout")
        return self._observe(), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        if self._renderer is None:
            self._renderer = TopDownRenderer(*self.config.render_size)
        gs = self.gym.state
        cars = [CarSprite(c.physics.position, c.physics.forward, int(c.team_num)) for c in gs.cars.values()]
        return self._renderer.render(gs.ball.position, cars, boost=float(gs.cars[BLUE].boost_amount))

    def close(self) -> None:
        self.gym.close()

    # -- StateView values, computed once per step
    def _update(self, *, touched: bool) -> None:
        gs = self.gym.state
        car, ball = gs.cars[BLUE], gs.ball
        phys = car.physics
        pos, vel = phys.position.astype(np.float64), phys.linear_velocity.astype(np.float64)
        ball_pos, ball_vel = ball.position.astype(np.float64), ball.linear_velocity.astype(np.float64)
        rot = phys.rotation_mtx.astype(np.float64)
        to_ball = ball_pos - pos
        dist = _norm(to_ball)
        ball_dir = to_ball / dist if dist > 1e-6 else np.zeros(3)
        to_goal = OPP_GOAL - ball_pos
        goal_dist = _norm(to_goal)
        goal_dir = to_goal / goal_dist if goal_dist > 1e-6 else np.zeros(3)
        dt = self.config.tick_skip / TICK_RATE
        values: dict[str, Any] = {
            "car_pos": pos, "car_vel": vel, "car_ang_vel": phys.angular_velocity, "car_forward": rot[:, 0],
            "car_up": rot[:, 2], "car_speed": _norm(vel), "boost": float(car.boost_amount),
            "on_ground": float(car.on_ground), "has_flip": float(car.has_flip),
            "ball_pos": ball_pos, "ball_vel": ball_vel, "ball_speed": _norm(ball_vel),
            "own_goal_pos": OWN_GOAL, "opp_goal_pos": OPP_GOAL,
            "car_to_ball_dist": dist, "car_to_ball_dir": ball_dir,
            "facing_ball": float(rot[:, 0] @ ball_dir), "car_vel_toward_ball": float(vel @ ball_dir),
            "ball_to_opp_goal_dist": goal_dist, "ball_vel_toward_opp_goal": float(ball_vel @ goal_dir),
            "ball_touched": float(touched), "ball_touched_ever": float(self._touches > 0),
            "ball_touches": float(self._touches),
            "goal_scored": float(self._scored), "goal_conceded": float(self._conceded),
            "episode_time": self._steps * dt, "time_left": max(self.config.max_steps - self._steps, 0) * dt,
        }
        if ORANGE in gs.cars:
            opp = gs.cars[ORANGE].physics
            values["opponent_pos"] = opp.position.astype(np.float64)
            values["opponent_vel"] = opp.linear_velocity.astype(np.float64)
            values["opponent_to_ball_dist"] = _norm(ball_pos - opp.position)
        self._values = values
        self._rot = rot
        self._goal_dir = goal_dir

    def state_values(self) -> dict[str, Any]:
        """The StateView's values for the current step (see :func:`_fields`)."""
        return self._values

    def _observe(self) -> np.ndarray:
        v, rot = self._values, self._rot
        gs = self.gym.state
        car_pos, car_vel = v["car_pos"], v["car_vel"]
        # Rows in the car frame (forward, steer-right, up): row @ rot == rot.T @ row, one matmul for all.
        world = [v["ball_pos"] - car_pos, v["ball_vel"] - car_vel, OPP_GOAL - car_pos]
        opponent = "opponent_pos" in v
        if opponent:
            world += [v["opponent_pos"] - car_pos, v["opponent_vel"] - car_vel]
        local = (np.stack(world) @ rot) / _LOCAL_SCALE[: len(world)]
        opp = np.concatenate([[1.0], local[3], local[4]]) if opponent else np.zeros(7)
        obs = np.concatenate([
            car_pos / _POS_SCALE, car_vel / CAR_MAX_SPEED, np.asarray(v["car_ang_vel"]) / CAR_MAX_ANG_VEL,
            v["car_forward"], v["car_up"], [v["boost"] / 100.0, v["on_ground"], v["has_flip"]],
            v["ball_pos"] / _POS_SCALE, v["ball_vel"] / BALL_MAX_SPEED,
            np.asarray(gs.ball.angular_velocity, np.float64) / 6.0,
            local[0], local[1], local[2], self._goal_dir, opp,
            [v["time_left"] / max(self.config.max_steps * self.config.tick_skip / TICK_RATE, 1e-6)],
        ])
        return np.clip(obs, -_OBS_BOUND, _OBS_BOUND).astype(np.float32)

    # -- scripted drivers
    def drive_toward(self, car: Any, target: np.ndarray, *, boost: bool) -> int:
        """The ground action that steers ``car`` (an rlgym Car) toward ``target`` at full throttle."""
        rot = car.physics.rotation_mtx
        local = rot.T @ (np.asarray(target, np.float64) - car.physics.position)
        angle = math.atan2(local[1], local[0])
        steer = 0 if abs(angle) < 0.08 else (1 if angle > 0 else -1)
        use_boost = int(boost and abs(angle) < 0.3 and car.boost_amount > 0 and car.on_ground)
        handbrake = int(abs(angle) > 1.8 and float(np.linalg.norm(car.physics.linear_velocity)) > 600)
        return self._ground[(1, steer, use_boost, handbrake if not use_boost else 0)]

    def _opponent_action(self) -> int:
        if self.config.opponent == "idle":
            return _IDLE
        gs = self.gym.state
        return self.drive_toward(gs.cars[ORANGE], gs.ball.position, boost=False)


def drive_at_ball(env: Any) -> np.ndarray:
    """Scripted reference (live unwrapped env -> action): steer toward the ball at full throttle,
    boosting when roughly aligned. In the score tasks it aims at a point behind the ball on the
    line from the opponent goal through the ball — up to 600 uu behind it while far away, the
    ball's back face up close — so the touch pushes the ball goalward (0.3 x distance, 600 cap:
    the best of a few settings tried on ScoreEmptyNet)."""
    gs = env.game_state
    car = gs.cars[BLUE]
    ball = gs.ball.position.astype(np.float64)
    target = ball
    if env.config.scenario.success == "goal":
        to_goal = OPP_GOAL[:2] - ball[:2]
        to_goal /= max(float(np.linalg.norm(to_goal)), 1e-6)
        dist = float(np.hypot(*(ball[:2] - car.physics.position[:2])))
        back = min(0.3 * dist, 600.0)
        target = np.array([ball[0] - to_goal[0] * back, ball[1] - to_goal[1] * back, ball[2]])
    return np.asarray(env.drive_toward(car, target, boost=True), dtype=np.int64)


# ----------------------------------------------------------------------------- StateView


def _fields(opponent: bool, tick_skip: int) -> tuple[Field, ...]:
    world = "world frame"
    fields = [
        Field("car_pos", (3,), "uu", "our car's centre; the floor is z = 0 (a car at rest: z = 17)", world),
        Field("car_vel", (3,), "uu/s", "our car's velocity (max 2300 uu/s)", world),
        Field("car_ang_vel", (3,), "rad/s", "our car's angular velocity (max 5.5 rad/s)", world),
        Field("car_forward", (3,), "unit vector", "the direction our car's nose points", world),
        Field("car_up", (3,), "unit vector", "our car's roof normal ((0, 0, 1) upright on the floor)", world),
        Field("car_speed", (), "uu/s", "norm of car_vel; ~1410 at full throttle, 2300 max with boost"),
        Field("boost", (), "0..100", "boost in our car's tank (boosting burns ~33 per second)"),
        Field("on_ground", (), "0/1", "1.0 while at least 3 of our car's wheels touch a surface"),
        Field("has_flip", (), "0/1", "1.0 while our car may still flip or double-jump"),
        Field("ball_pos", (3,), "uu", "ball centre (radius 91.25; at rest on the floor z = 93.15)", world),
        Field("ball_vel", (3,), "uu/s", "ball velocity (max 6000 uu/s)", world),
        Field("ball_speed", (), "uu/s", "norm of ball_vel"),
        Field("own_goal_pos", (3,), "uu", "centre of the goal we defend (blue): (0, -5120, 321.4)", world),
        Field("opp_goal_pos", (3,), "uu", "centre of the goal we attack (orange): (0, 5120, 321.4)", world),
        Field("car_to_ball_dist", (), "uu", "distance from our car's centre to the ball's centre "
              "(a touch happens at about 150-200)"),
        Field("car_to_ball_dir", (3,), "unit vector", "from our car's centre toward the ball's centre", world),
        Field("facing_ball", (), "-1..1", "car_forward . car_to_ball_dir: 1 = nose points at the ball"),
        Field("car_vel_toward_ball", (), "uu/s", "car_vel . car_to_ball_dir: how fast our car closes in on the ball"),
        Field("ball_to_opp_goal_dist", (), "uu", "distance from the ball's centre to opp_goal_pos"),
        Field("ball_vel_toward_opp_goal", (), "uu/s", "ball_vel along the direction from the ball to opp_goal_pos"),
        Field("ball_touched", (), "0/1", "1.0 if our car touched the ball during the last step"),
        Field("ball_touched_ever", (), "0/1", "1.0 once our car has touched the ball this episode"),
        Field("ball_touches", (), "count", "physics ticks this episode in which our car touched the ball"),
        Field("goal_scored", (), "0/1", "1.0 once the ball has entered the opponent's goal (|y| > 5215.5, "
              "y > 0) this episode; by default the episode ends on that step"),
        Field("goal_conceded", (), "0/1", "1.0 once the ball has entered our own goal (y < -5215.5) this "
              "episode; by default the episode ends on that step"),
        Field("episode_time", (), "s", f"game time since the episode began ({tick_skip} physics ticks at "
              f"120 Hz per step: {tick_skip / TICK_RATE:.4g} s)"),
        Field("time_left", (), "s", "game time until the episode's time limit"),
    ]
    if opponent:
        fields += [
            Field("opponent_pos", (3,), "uu", "the orange (opponent) car's centre", world),
            Field("opponent_vel", (3,), "uu/s", "the orange car's velocity", world),
            Field("opponent_to_ball_dist", (), "uu", "distance from the orange car's centre to the ball's centre"),
        ]
    return tuple(fields)


def _doc(cfg: _Config, n_actions: int) -> str:
    opponent = {"none": "No opponent.", "idle": "An orange opponent car stands still.",
                "chase": "An orange opponent car drives straight at the ball."}[cfg.opponent]
    actions = ("Actions: rlgym's lookup table of discrete controls (0-23 ground: throttle, steer, boost, "
               "handbrake; 24-89 air: pitch, yaw, roll, jump, boost)" if n_actions > 24 else
               "Actions: 24 ground controls (throttle, steer, boost, handbrake)")
    return (f"Rocket League (RocketSim soccar). World frame: uu (1 uu = 1 cm), origin at the field's centre "
            f"on the floor, z up; our blue car attacks the orange goal at +y and defends the blue goal at -y; "
            f"the field spans |x| <= 4096, |y| <= 5120 (goals 1786 wide). "
            f"{cfg.scenario.doc} {opponent} {actions}, each held for {cfg.tick_skip} physics ticks "
            f"({cfg.tick_skip / TICK_RATE:.3g} s); episodes last {cfg.max_steps} steps.")


def _read(env: Any) -> dict[str, Any]:
    if not isinstance(env, RocketLeagueEnv):
        raise RuntimeError("Rocket League StateView read from an env not made by RocketLeagueAdapter (adapter bug)")
    return env.state_values()


# ----------------------------------------------------------------------------- adapter


class RocketLeagueAdapter:
    """Rocket League through RocketSim + rlgym v2, imported when an env is made."""

    name = "rocket_league"

    def env_ids(self) -> list[str]:
        return sorted(SCENARIOS)

    def _config(self, spec: SimSpec) -> _Config:
        scenario = SCENARIOS.get(spec.env_id)
        if scenario is None:
            close = difflib.get_close_matches(spec.env_id, self.env_ids(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TaskError(f"unknown Rocket League env {spec.env_id!r}", key="sim.env_id",
                            hint=f"{hint}valid: {', '.join(self.env_ids())}")
        from workbench.spec import validate_sim_kwargs

        opts = validate_sim_kwargs(RocketLeagueOptions, spec.kwargs)
        seconds = opts.episode_seconds or scenario.seconds
        max_steps = spec.max_episode_steps or max(1, math.ceil(seconds * TICK_RATE / opts.tick_skip))
        touch = scenario.terminate_on_touch if opts.terminate_on_touch is None else opts.terminate_on_touch
        return _Config(spec.env_id, scenario, opts.spawn or scenario.spawn, opts.opponent or scenario.opponent,
                       opts.tick_skip, max_steps, touch, opts.terminate_on_goal, opts.actions, opts.start_boost,
                       opts.render_size)

    def make_env(self, spec: SimSpec, *, render_mode: str | None = None) -> gym.Env:
        cfg = self._config(spec)
        if render_mode not in (None, "rgb_array"):
            raise TaskError(f"Rocket League renders only rgb_array frames, not {render_mode!r}", key="render_mode",
                            hint="use render_mode='rgb_array' (videos and pixel rewards do)")
        _rlgym()
        return RocketLeagueEnv(cfg, render_mode=render_mode)

    def profile(self, spec: SimSpec, env: gym.Env | None = None) -> TaskProfile:
        cfg = self._config(spec)
        n_actions = 24 if cfg.actions == "ground" else 90
        schema = StateSchema(spec.env_id, _fields(cfg.opponent != "none", cfg.tick_skip), _read, _doc(cfg, n_actions))
        if cfg.scenario.success == "touch":
            success = SuccessMetric("our car touched the ball by episode end (ball_touched_ever >= {threshold:g})",
                                    1.0, lambda s, t: float(s.ball_touched_ever) >= t)
        else:
            success = SuccessMetric("we scored a goal by episode end (goal_scored >= {threshold:g})",
                                    1.0, lambda s, t: float(s.goal_scored) >= t)
        return TaskProfile(spec.env_id, schema, success, reference=drive_at_ball)
