"""highway-env adapter: 2D driving scenes (highway, merge, roundabout, ...) by gymnasium id.

``sim.kwargs`` (all optional):

- ``config``: highway-env config keys for the env (``lanes_count``, ``vehicles_count``,
  ``duration``, ``screen_width``, ...), checked against the env's own defaults.
- ``observation``: ``state`` (default) — the env's configured observation (Kinematics unless
  ``config.observation`` says otherwise) as a flat float32 vector, what ``MlpPolicy`` wants; or
  ``rgb`` — the rendered frame, ``(screen_height, screen_width, 3)`` uint8, for ``CnnPolicy``.
  (The same two names as the CARLA adapter.)
- ``route_length``: metres of driving that count as a complete route (see ``route_completion``).

Frames are ``screen_width x screen_height`` (default 224 x 224 here, a reward-camera size;
highway-env's own is 600 x 150). Rendering is offscreen pygame: never set
``SDL_VIDEODRIVER=dummy``, highway-env then skips drawing and every frame is black.

The StateView uses driving-generic names (a CARLA adapter shares them): ``speed``, ``position``,
``heading``, ``lane_offset``, ``lane_heading_error``, ``collided``, ``on_road``, ``gap_ahead``,
``route_completion``, ... highway-env has no route, so ``route_completion`` is the distance the
ego has driven this episode over the task's route length (per env, see the profiles).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField

from workbench.errors import MissingDependency, TaskError
from workbench.sims.base import SuccessMetric, TaskProfile
from workbench.spec import SimSpec
from workbench.state import Field, StateSchema

__all__ = ["HighwayAdapter", "HighwayOptions", "DEFAULT_FRAME", "SUCCESS_ROUTE_COMPLETION"]

DEFAULT_FRAME = (224, 224)  # (width, height) px, unless config sets screen_width/screen_height
DEFAULT_CONFIG = {"screen_width": DEFAULT_FRAME[0], "screen_height": DEFAULT_FRAME[1]}
SUCCESS_ROUTE_COMPLETION = 0.9
GAP_CAP = 100.0  # m: gap_ahead when nothing is ahead in the lane (or it is farther)
NEARBY_RADIUS = 50.0  # m
ANY_SPEED = (0.0, 40.0)  # m/s: desired range of an env that declares none (40 = Vehicle.MAX_SPEED)
_ODOMETER = "_workbench_odometer"  # attribute of the unwrapped env, kept by _Driving


class HighwayOptions(BaseModel):
    """The keys of ``sim.kwargs`` for highway-env."""

    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] = PydanticField(default_factory=dict, description="highway-env config overrides")
    observation: Literal["state", "rgb"] = PydanticField(
        "state", description="state: the env's own observation as a float32 vector; rgb: rendered frames")
    route_length: float | None = PydanticField(None, gt=0, description="metres that make a complete route")


# ----------------------------------------------------------------------------- config helpers


def _desired_speed_range(config: Mapping[str, Any]) -> tuple[float, float]:
    """The env's rewarded speed range, else the span of its positive target speeds, else any."""
    rsr = config.get("reward_speed_range")
    if rsr is not None and len(rsr) == 2:
        return float(rsr[0]), float(rsr[1])
    action = config.get("action") or {}
    speeds = [float(v) for v in (action.get("target_speeds") or []) if float(v) > 0]
    if speeds:
        return min(speeds), max(speeds)
    return ANY_SPEED


def _time_budget(config: Mapping[str, Any], step_limit: int | None) -> float | None:
    """Seconds an episode may last: the config's duration, else the step limit at policy rate."""
    if config.get("duration") is not None:
        return float(config["duration"])
    if step_limit is not None:
        return step_limit / float(config.get("policy_frequency", 1))
    return None


def _speed_times_time(config: Mapping[str, Any], step_limit: int | None) -> float | None:
    budget = _time_budget(config, step_limit)
    low = _desired_speed_range(config)[0]
    return None if budget is None else budget * (low if low > 0 else 10.0)


# ----------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class _Scene:
    """What the workbench knows about one highway-env id."""

    doc: str
    route: Callable[[Mapping[str, Any], int | None], float | None]  # (config, step limit) -> m
    route_doc: str


_TIME_ROUTE_DOC = ("config duration (s) x the low end of desired_speed_range: the whole episode "
                   "driven at least at the lowest desired speed")
_HIGHWAY = _Scene("A multi-lane highway with traffic; the ego drives along +x among IDM vehicles. "
                  "Actions are meta-actions (0 LANE_LEFT, 1 IDLE, 2 LANE_RIGHT, 3 FASTER, 4 SLOWER); "
                  "a collision ends the episode.", _speed_times_time, _TIME_ROUTE_DOC)
_HIGHWAY_FAST = _Scene("highway-v0 made cheaper (5 Hz simulation, 3 lanes, 20 vehicles, 30 s): a "
                       "multi-lane highway, ego along +x among IDM vehicles. Actions are meta-actions "
                       "(0 LANE_LEFT, 1 IDLE, 2 LANE_RIGHT, 3 FASTER, 4 SLOWER); a collision ends the "
                       "episode.", _speed_times_time, _TIME_ROUTE_DOC)
# merge-v0 starts the ego at x = 30 m and ends the episode once it passes x = 370 m.
_MERGE = _Scene("A two-lane highway along +x with an on-ramp merging from the right; the episode ends "
                "after the merge zone (x > 370 m) or on a collision. Meta-actions as in highway-v0.",
                lambda config, step_limit: 340.0, "340 m: from the ego's start (x = 30 m) past the merge (x = 370 m)")
_ROUNDABOUT = _Scene("A two-lane roundabout with incoming traffic; the ego enters from the south and "
                     "follows its planned exit. Meta-actions; target speeds 0, 8, 16 m/s; a collision ends "
                     "the episode.", _speed_times_time, _TIME_ROUTE_DOC)

_SCENES: dict[str, _Scene] = {
    "highway-v0": _HIGHWAY,
    "highway-fast-v0": _HIGHWAY_FAST,
    "merge-v0": _MERGE,
    "merge-v1": _MERGE,
    "roundabout-v0": _ROUNDABOUT,
    "roundabout-v1": _ROUNDABOUT,
}
_GENERIC = _Scene("A highway-env scene without a workbench profile: the driving StateView, no success metric.",
                  _speed_times_time, "config duration (s, or the episode step limit at policy rate) x the "
                                     "low end of desired_speed_range (10 m/s if that is 0)")


def _fields(route_doc: str) -> tuple[Field, ...]:
    world = "highway-env world frame: a highway runs along +x; +y is 90 deg clockwise from +x (down on screen)"
    return (
        Field("speed", (), "m/s", "ego speed along its heading", "ego frame"),
        Field("position", (2,), "m", "ego centre (x, y)", world),
        Field("heading", (), "rad", "ego heading; 0 = +x, positive turns from +x toward +y", world),
        Field("lane_offset", (), "m", "lateral offset of the ego centre from its lane's centre line; "
              "positive = right of centre", "lane frame"),
        Field("lane_heading_error", (), "rad", "ego heading minus the lane's heading there, in [-pi, pi]",
              "lane frame"),
        Field("lane_width", (), "m", "width of the ego's current lane", "lane frame"),
        Field("collided", (), "0/1", "1.0 once the ego has crashed into a vehicle or object, else 0.0"),
        Field("on_road", (), "0/1", "1.0 while the ego is on a lane of the road, else 0.0"),
        Field("gap_ahead", (), "m", f"bumper-to-bumper gap to the nearest vehicle or object ahead in the "
              f"ego's lane; {GAP_CAP:g} when none is within {GAP_CAP:g} m", "lane frame"),
        Field("vehicles_nearby", (), "count", f"other vehicles within {NEARBY_RADIUS:g} m of the ego"),
        Field("desired_speed_range", (2,), "m/s", "(low, high) speeds the scene wants: the config's "
              "reward_speed_range, else its positive target speeds, else (0, 40)"),
        Field("distance_driven", (), "m", "path length the ego has driven this episode", world),
        Field("route_completion", (), "0..1", f"distance_driven / route length, capped at 1; route length = "
              f"{route_doc}"),
    )


def _read(env: Any) -> dict[str, Any]:
    vehicle, road = env.vehicle, env.road
    odometer: _Odometer | None = env.__dict__.get(_ODOMETER)
    if odometer is None:
        raise RuntimeError("highway StateView read from an env not made by HighwayAdapter.make_env (adapter bug)")
    lane = vehicle.lane
    longitudinal, lateral = lane.local_coordinates(vehicle.position)
    heading_error = lane.local_angle(vehicle.heading, longitudinal)
    front, _ = road.neighbour_vehicles(vehicle)
    gap = GAP_CAP
    if front is not None:
        ahead = lane.local_coordinates(front.position)[0] - longitudinal
        gap = min(max(ahead - (front.LENGTH + vehicle.LENGTH) / 2, 0.0), GAP_CAP)
    others = [v.position for v in road.vehicles if v is not vehicle]
    nearby = 0
    if others:
        nearby = int(np.count_nonzero(np.linalg.norm(np.asarray(others) - vehicle.position, axis=1) <= NEARBY_RADIUS))
    return {
        "speed": vehicle.speed,
        "position": vehicle.position,
        "heading": vehicle.heading,
        "lane_offset": lateral,
        "lane_heading_error": heading_error,
        "lane_width": lane.width_at(longitudinal),
        "collided": float(vehicle.crashed),
        "on_road": float(vehicle.on_road),
        "gap_ahead": gap,
        "vehicles_nearby": nearby,
        "desired_speed_range": _desired_speed_range(env.config),
        "distance_driven": odometer.distance,
        "route_completion": min(odometer.distance / odometer.route_length, 1.0),
    }


def _success() -> SuccessMetric:
    return SuccessMetric(
        "no collision, on the road and route_completion >= {threshold} at episode end",
        SUCCESS_ROUTE_COMPLETION,
        lambda s, t: float(s.collided) < 0.5 and float(s.on_road) > 0.5 and float(s.route_completion) >= t)


def cautious_driver(env: Any) -> np.ndarray:
    """Scripted reference for meta-action envs: keep the lane, brake below ~1.5 s of headway,
    speed back up to the lowest desired speed when the lane ahead is clear. (The ego's own
    controller does not brake for traffic; the pre-flight checks use this policy: a reward must
    prefer its episodes to random driving.)"""
    indexes = env.action_type.actions_indexes
    state = _read(env)
    speed, gap = float(state["speed"]), float(state["gap_ahead"])
    if gap < 1.5 * speed:
        name = "SLOWER"
    elif gap > 3.0 * speed and speed < state["desired_speed_range"][0]:
        name = "FASTER"
    else:
        name = "IDLE"
    return np.asarray(indexes.get(name, indexes.get("IDLE", 0)), dtype=np.int64)


def _has_meta_actions(env: Any) -> bool:
    from highway_env.envs.common.action import DiscreteMetaAction

    return isinstance(env.action_type, DiscreteMetaAction)


# ----------------------------------------------------------------------------- wrapper


@dataclass
class _Odometer:
    distance: float
    route_length: float


class _Driving(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Keeps the odometer the StateView reads, shapes observations for SB3, and stops highway-env
    from drawing every intermediate simulation frame after a render (it would otherwise redraw
    4-14 unused frames per step once anything has rendered: ~4x slower on roundabout-v0).
    Records its arguments so ``env.spec`` re-makes the wrapped env."""

    def __init__(self, env: gym.Env, *, rgb: bool, route: Callable[[Mapping[str, Any], int | None], float | None],
                 route_override: float | None, step_limit: int | None):
        gym.utils.RecordConstructorArgs.__init__(self, rgb=rgb, route=route, route_override=route_override,
                                                 step_limit=step_limit)
        gym.Wrapper.__init__(self, env)
        self._rgb = rgb
        self._route = route
        self._route_override = route_override
        self._step_limit = step_limit
        self._last = np.zeros(2)
        raw = env.unwrapped
        self._odometer = _Odometer(0.0, self._route_length(raw.config))
        raw.__dict__[_ODOMETER] = self._odometer
        if rgb:
            width, height = int(raw.config["screen_width"]), int(raw.config["screen_height"])
            self.observation_space = gym.spaces.Box(0, 255, (height, width, 3), np.uint8)
        else:
            self.observation_space = _vector_space(env.observation_space)

    def _route_length(self, config: Mapping[str, Any]) -> float:
        length = self._route_override or self._route(config, self._step_limit)
        if length is None or not length > 0:
            raise TaskError("cannot tell this scene's route length (its config has no duration and the "
                            "episode no step limit)", key="sim.kwargs.route_length",
                            hint="set sim.kwargs.route_length (m) or sim.max_episode_steps")
        return float(length)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        raw = self.env.unwrapped
        self._odometer.distance = 0.0
        self._odometer.route_length = self._route_length(raw.config)  # options may change the config
        self._last = np.array(raw.vehicle.position, dtype=np.float64)
        return self._observe(obs), info

    def step(self, action: Any):
        raw = self.env.unwrapped
        raw.enable_auto_render = False
        obs, reward, terminated, truncated, info = self.env.step(action)
        position = np.array(raw.vehicle.position, dtype=np.float64)
        self._odometer.distance += float(np.linalg.norm(position - self._last))
        self._last = position
        return self._observe(obs), reward, terminated, truncated, info

    def render(self) -> Any:
        frame = self.env.render()
        self.env.unwrapped.enable_auto_render = False
        return frame

    def _observe(self, obs: Any) -> np.ndarray:
        if self._rgb:
            frame = self.env.unwrapped.render()
            self.env.unwrapped.enable_auto_render = False
            return np.ascontiguousarray(frame)
        if _is_image(self.env.observation_space):
            return obs
        return gym.spaces.flatten(self.env.observation_space, obs).astype(np.float32, copy=False)


def _is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8


def _vector_space(space: gym.Space) -> gym.Space:
    """uint8 images stay as they are (CnnPolicy); everything else becomes one float32 vector."""
    if _is_image(space):
        return space
    flat = gym.spaces.flatten_space(space)
    return gym.spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32), flat.shape, np.float32)


# ----------------------------------------------------------------------------- adapter


def _options(spec: SimSpec) -> HighwayOptions:
    from workbench.spec import validate_sim_kwargs

    return validate_sim_kwargs(HighwayOptions, spec.kwargs)


class HighwayAdapter:
    """highway-env (``pip install "rl-workbench[highway]"``), imported when an env is made."""

    name = "highway"

    def env_ids(self) -> list[str]:
        return sorted(_SCENES)

    def make_env(self, spec: SimSpec, *, render_mode: str | None = None) -> gym.Env:
        opts = _options(spec)
        try:
            import highway_env  # noqa: F401  (registers the envs with gymnasium)
        except ImportError:
            raise MissingDependency("the highway simulator", "highway", "highway-env") from None
        if opts.observation == "rgb":
            if render_mode not in (None, "rgb_array"):
                raise TaskError(f"render_mode {render_mode!r} cannot be used with rgb observations",
                                key="sim.kwargs.observation", hint="rgb observations render offscreen (rgb_array)")
            render_mode = "rgb_array"
        env = self._make(spec, opts.config, render_mode)
        raw = env.unwrapped
        unknown = sorted(set(opts.config) - set(type(raw).default_config()))
        if unknown:
            env.close()
            valid = sorted(type(raw).default_config())
            close = difflib.get_close_matches(unknown[0], valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TaskError(f"unknown highway-env config key(s) for {spec.env_id}: {', '.join(unknown)}",
                            key="sim.kwargs.config", hint=f"{hint}valid keys: {', '.join(valid)}")
        if len(raw.controlled_vehicles) != 1 or isinstance(env.action_space, gym.spaces.Tuple):
            env.close()
            raise TaskError(f"{spec.env_id} controls {len(raw.controlled_vehicles)} vehicles; the workbench "
                            "trains one agent", key="sim.env_id", hint="pick a single-agent highway-env id")
        step_limit = spec.max_episode_steps or (env.spec.max_episode_steps if env.spec else None)
        scene = _SCENES.get(spec.env_id, _GENERIC)
        try:
            return _Driving(env, rgb=opts.observation == "rgb", route=scene.route,
                            route_override=opts.route_length, step_limit=step_limit)
        except TaskError:
            env.close()
            raise

    def _make(self, spec: SimSpec, config: dict[str, Any], render_mode: str | None) -> gym.Env:
        extra = {} if spec.max_episode_steps is None else {"max_episode_steps": spec.max_episode_steps}
        try:
            env = gym.make(spec.env_id, render_mode=render_mode, config={**DEFAULT_CONFIG, **config},
                           disable_env_checker=True, **extra)
        except gym.error.Error as err:  # unknown id or version
            close = difflib.get_close_matches(spec.env_id, self.env_ids(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TaskError(f"cannot make highway-env env {spec.env_id!r}: {err}", key="sim.env_id",
                            hint=f"{hint}profiled highway envs: {', '.join(self.env_ids())} "
                                 "(any other highway-env id works with a generic profile)") from None
        except (TypeError, ValueError, KeyError, AssertionError) as err:  # highway-env's own checks
            raise TaskError(f"highway-env could not make {spec.env_id}: {type(err).__name__}: {err}",
                            key="sim.kwargs.config" if config else "sim.env_id",
                            hint="check the config against highway-env's docs for this env" if config else
                                 f"this env does not build here; profiled envs: {', '.join(self.env_ids())}") from None
        if not hasattr(env.unwrapped, "road") or not hasattr(env.unwrapped, "controlled_vehicles"):
            env.close()
            raise TaskError(f"{spec.env_id!r} is not a highway-env env", key="sim.env_id",
                            hint=f"pick one of: {', '.join(self.env_ids())}")
        return env

    def profile(self, spec: SimSpec, env: gym.Env | None = None) -> TaskProfile:
        scene = _SCENES.get(spec.env_id)
        own = env or self.make_env(spec)
        try:
            meta = _has_meta_actions(own.unwrapped)
        finally:
            if env is None:
                own.close()
        schema = StateSchema(spec.env_id, _fields((scene or _GENERIC).route_doc), _read, (scene or _GENERIC).doc)
        return TaskProfile(spec.env_id, schema, _success() if scene is not None else None,
                           reference=cautious_driver if meta else None)
