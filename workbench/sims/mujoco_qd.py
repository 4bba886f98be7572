"""Sparse-reward MuJoCo tasks for quality-diversity explorers (``sim.name: mujoco_qd``).

Every env here scores one point of the plane (the maze's point mass, the billiard puck, the arm's
tip) against reward zones, the ``zone_*`` sites of its MJCF model (a site's position is the zone's
centre, its size the zone's radius). The reward is sparse and outcome-based: 0 at every step but
the last; at the episode's last step, if the point lies in a zone, ``1 - 0.5 * distance / radius``
(1 at the zone's centre, 0.5 at its rim). The last info names the zone (``info["reward_area"]``)
and the env lists its zones (``env.reward_areas``), which QD learners report on. The envs end their
episodes themselves (``truncated`` after ``episode_steps`` steps; ``sim.max_episode_steps`` sets
it), so the final-step reward is never cut off by a TimeLimit wrapper. :class:`Zones` holds the
zone logic (reading the sites, the reward, the StateView's ``zone_distances`` and the success
metric) once for all three.

``workbench/QDMaze-v0``: a point mass in the walled serpentine maze of ``assets/qd_maze.xml``.

``workbench/QDBilliard-v0``: a puck on the walled table of ``assets/qd_billiard.xml``; the controller
pushes it (x/y forces) only during the first ``push_fraction`` of the episode, after which actions
are ignored and the puck slides, slowing down, and bounces off the cushions until the episode ends.
A partition with one gap splits the table; one zone lies in the start's half, three beyond the gap
(just through it, the far corner, and a pocket behind a block that only a bank shot enters).

``workbench/QDArm-v0``: a planar arm of six hinge links (``assets/qd_arm.xml``) driven by joint-speed
targets; the zones are for its tip, some reachable only folded (beside the base) or curled round a
wall.

gymnasium-robotics' PointMaze installs beside mujoco 4.0 here and runs, but its goal-conditioned
dict observations and single random goal per reset are not this task (several fixed zones, an
outcome-based reward); these models are the workbench's own MJCF.

The module imports no simulator at module level (``workbench list`` imports adapters).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from workbench.errors import TaskError
from workbench.sims.base import SuccessMetric, TaskProfile
from workbench.spec import SimSpec, validate_sim_kwargs
from workbench.state import Field as StateField
from workbench.state import StateSchema

__all__ = ["MujocoQDAdapter", "Zones", "QDMazeEnv", "QDBilliardEnv", "QDArmEnv", "MAZE_ID", "BILLIARD_ID",
           "ARM_ID", "START", "BILLIARD_START"]

MAZE_ID = "workbench/QDMaze-v0"
BILLIARD_ID = "workbench/QDBilliard-v0"
ARM_ID = "workbench/QDArm-v0"
START = (-0.8, -0.8)  # the maze point's start (m); reset adds uniform noise of +-start_noise per axis
BILLIARD_START = (-0.6, -0.3)  # the puck's start (m); the same noise


# --------------------------------------------------------------------------- the zones

@dataclass(frozen=True)
class Zones:
    """The reward zones of a model (its ``zone_*`` sites): the reward, the distances, and the
    StateView field and success metric every env here shares."""

    areas: tuple[dict[str, Any], ...]  # {"name", "center": [x, y], "radius"}, in site order

    @classmethod
    def from_model(cls, mujoco: Any, model: Any) -> Zones:
        areas = []
        for i in range(model.nsite):
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_SITE, i) or ""
            if name.startswith("zone_"):
                areas.append({"name": name.removeprefix("zone_"), "center": [float(v) for v in model.site_pos[i][:2]],
                              "radius": float(model.site_size[i][0])})
        return cls(tuple(areas))

    @property
    def centers(self) -> np.ndarray:
        return np.array([z["center"] for z in self.areas], dtype=np.float64).reshape(-1, 2)

    @property
    def radii(self) -> np.ndarray:
        return np.array([z["radius"] for z in self.areas], dtype=np.float64)

    def distances(self, xy: Any) -> np.ndarray:
        """Distance (m) from ``xy`` to each zone's centre."""
        return np.hypot(*(np.asarray(xy, dtype=np.float64)[None, :2] - self.centers).T)

    def at(self, xy: Any) -> tuple[str | None, float]:
        """The zone containing ``xy`` and the reward there (None, 0.0 outside every zone)."""
        for zone, d in zip(self.areas, self.distances(xy)):
            if d <= zone["radius"]:
                return zone["name"], 1.0 - 0.5 * float(d) / zone["radius"]
        return None, 0.0

    def field(self, what: str) -> StateField:
        """The StateView field ``zone_distances`` (the distance from ``what`` to each zone)."""
        listed = ", ".join(f"{z['name']} at ({z['center'][0]:g}, {z['center'][1]:g}) r={z['radius']:g}"
                           for z in self.areas)
        return StateField("zone_distances", (len(self.areas),), "m",
                          f"distance from {what} to the centre of each reward zone ({listed})", "world frame")

    def success(self, what: str) -> SuccessMetric:
        radii = self.radii
        return SuccessMetric(f"{what} within {{threshold}} x a zone's radius of that zone's centre at episode end",
                             1.0, lambda s, t: bool(np.any(np.asarray(s.zone_distances) <= t * radii)))

    def profile(self, env_id: str, fields: tuple[StateField, ...], read: Callable[[Any], Mapping[str, Any]],
                doc: str, what: str) -> TaskProfile:
        """A task profile of ``fields`` + ``zone_distances`` (of ``env.xy``) and the zone success."""

        def read_all(env: Any) -> Mapping[str, Any]:
            return {**read(env), "zone_distances": self.distances(env.xy)}

        return TaskProfile(env_id, StateSchema(env_id, (*fields, self.field(what)), read_all, doc), self.success(what))


# --------------------------------------------------------------------------- the envs

class _ZoneEnv(gym.Env):
    """What the envs share: the model, the episode loop, the final-step zone reward, the render.

    A subclass names its ``asset`` and ``frame_skip`` and gives ``xy`` (the scored point),
    ``_place`` (the start state, with the reset's noise), ``_act`` (an action into ``data.ctrl``)
    and ``_obs``.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 20}
    asset: ClassVar[str]
    frame_skip: ClassVar[int]

    def __init__(self, *, episode_steps: int, start_noise: float, render_mode: str | None, width: int,
                 height: int):
        import mujoco

        from workbench.assets import asset_path

        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_path(str(asset_path(self.asset)))
        self.data = mujoco.MjData(self.model)
        self.episode_steps = int(episode_steps)
        self.start_noise = float(start_noise)
        self.render_mode = render_mode
        self._size = (height, width)
        self._renderer: Any = None
        self.dt = self.model.opt.timestep * self.frame_skip
        self.zones = Zones.from_model(mujoco, self.model)
        self.reward_areas = [dict(z) for z in self.zones.areas]
        self._steps = 0

    @property
    def xy(self) -> np.ndarray:
        raise NotImplementedError

    def _place(self) -> None:
        raise NotImplementedError

    def _act(self, action: np.ndarray) -> None:
        raise NotImplementedError

    def _obs(self) -> np.ndarray:
        raise NotImplementedError

    def zone_at(self, xy: Any) -> tuple[str | None, float]:
        """The zone containing ``xy`` and the reward there (None, 0.0 outside every zone)."""
        return self.zones.at(xy)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._mj.mj_resetData(self.model, self.data)
        self._steps = 0
        self._place()
        self._mj.mj_forward(self.model, self.data)
        return self._obs(), {}

    def step(self, action: Any):
        shape = self.action_space.shape
        self._act(np.clip(np.asarray(action, dtype=np.float64).reshape(shape), -1.0, 1.0))
        self._mj.mj_step(self.model, self.data, nstep=self.frame_skip)
        self._steps += 1
        truncated = self._steps >= self.episode_steps
        reward, info = 0.0, {}
        if truncated:
            area, reward = self.zone_at(self.xy)
            info["reward_area"] = area
        return self._obs(), float(reward), False, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = self._mj.Renderer(self.model, *self._size)
        self._renderer.update_scene(self.data, camera="top")
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class MazeOptions(BaseModel):
    """``sim.kwargs`` of workbench/QDMaze-v0."""

    model_config = ConfigDict(extra="forbid")
    start_noise: float = Field(0.02, ge=0, le=0.1, description="uniform noise on the start x/y (m)")


class QDMazeEnv(_ZoneEnv):
    """A point mass (radius 0.04 m, mass 0.1 kg, damping 1 N s/m) pushed by x/y forces in a 2 m maze.

    Action: ``Box(-1, 1, (2,))``, forces in N on x and y (top speed ~1 m/s). Observation:
    ``[x, y, vx, vy]`` (m, m/s). Reward: see the module docstring.
    """

    asset = "qd_maze.xml"
    frame_skip = 5  # 5 x 10 ms physics steps per env step: dt = 0.05 s

    def __init__(self, *, episode_steps: int = 200, start_noise: float = 0.02, render_mode: str | None = None,
                 width: int = 240, height: int = 240):
        super().__init__(episode_steps=episode_steps, start_noise=start_noise, render_mode=render_mode,
                         width=width, height=height)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)

    @property
    def xy(self) -> np.ndarray:
        return self.data.qpos[:2]

    def _place(self) -> None:
        self.data.qpos[:2] = np.asarray(START) + self.np_random.uniform(-self.start_noise, self.start_noise, 2)

    def _act(self, action: np.ndarray) -> None:
        self.data.ctrl[:] = action

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:2], self.data.qvel[:2]]).astype(np.float64)


class BilliardOptions(BaseModel):
    """``sim.kwargs`` of workbench/QDBilliard-v0."""

    model_config = ConfigDict(extra="forbid")
    start_noise: float = Field(0.01, ge=0, le=0.1, description="uniform noise on the puck's start x/y (m)")
    push_fraction: float = Field(0.2, gt=0, le=1, description="the share of the episode's first steps in which "
                                 "the action pushes the puck (later actions are ignored)")


class QDBilliardEnv(_ZoneEnv):
    """A puck (radius 0.04 m, mass 0.1 kg, drag 0.125 N s/m) on a 2 m x 1.2 m table with cushions.

    Action: ``Box(-1, 1, (2,))``, forces of up to 0.6 N on x and y, applied during the first
    ``push_steps`` = ``round(push_fraction * episode_steps)`` steps only (a full push reaches ~3 m/s);
    later actions are ignored. Observation: ``[x, y, vx, vy, t]`` (m, m/s, and the elapsed share of
    the episode, 0..1). dt = 0.05 s. Reward: see the module docstring.
    """

    asset = "qd_billiard.xml"
    frame_skip = 10  # 10 x 5 ms physics steps (stiff cushions) per env step: dt = 0.05 s

    def __init__(self, *, episode_steps: int = 100, start_noise: float = 0.01, push_fraction: float = 0.2,
                 render_mode: str | None = None, width: int = 240, height: int = 240):
        super().__init__(episode_steps=episode_steps, start_noise=start_noise, render_mode=render_mode,
                         width=width, height=height)
        self.push_steps = max(1, round(float(push_fraction) * self.episode_steps))
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (5,), np.float64)

    @property
    def xy(self) -> np.ndarray:
        return self.data.qpos[:2]

    def _place(self) -> None:
        self.data.qpos[:2] = (np.asarray(BILLIARD_START)
                              + self.np_random.uniform(-self.start_noise, self.start_noise, 2))

    def _act(self, action: np.ndarray) -> None:
        self.data.ctrl[:] = action if self._steps < self.push_steps else 0.0

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:2], self.data.qvel[:2],
                               [self._steps / self.episode_steps]]).astype(np.float64)


class ArmOptions(BaseModel):
    """``sim.kwargs`` of workbench/QDArm-v0."""

    model_config = ConfigDict(extra="forbid")
    start_noise: float = Field(0.02, ge=0, le=0.2, description="uniform noise on each start joint angle (rad)")


class QDArmEnv(_ZoneEnv):
    """A planar arm of six 0.15 m links (reach 0.9 m) on hinges about z, starting straight along +y.

    Action: ``Box(-1, 1, (6,))``, target joint speeds in rad/s (velocity servos; j0 within +-pi, the
    others within +-2.5 rad). Observation: ``[q0..q5, tip_x, tip_y]`` (rad, m). dt = 0.05 s. The links
    collide with the wall, not with each other. Reward: see the module docstring (the tip is scored).
    """

    asset = "qd_arm.xml"
    frame_skip = 5  # 5 x 10 ms physics steps per env step: dt = 0.05 s
    n_joints = 6

    def __init__(self, *, episode_steps: int = 100, start_noise: float = 0.02, render_mode: str | None = None,
                 width: int = 240, height: int = 240):
        super().__init__(episode_steps=episode_steps, start_noise=start_noise, render_mode=render_mode,
                         width=width, height=height)
        self._tip = self._mj.mj_name2id(self.model, self._mj.mjtObj.mjOBJ_SITE, "tip")
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.n_joints,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.n_joints + 2,), np.float64)

    @property
    def xy(self) -> np.ndarray:
        return self.data.site_xpos[self._tip][:2]

    def _place(self) -> None:
        self.data.qpos[:] = self.np_random.uniform(-self.start_noise, self.start_noise, self.n_joints)

    def _act(self, action: np.ndarray) -> None:
        self.data.ctrl[:] = action

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.xy]).astype(np.float64)


# --------------------------------------------------------------------------- the profiles

def _maze_profile(zones: Zones) -> TaskProfile:
    fields = (
        StateField("x", (), "m", "x of the point in the maze (the maze spans -1..1)", "world frame"),
        StateField("y", (), "m", "y of the point in the maze (the maze spans -1..1)", "world frame"),
        StateField("velocity", (2,), "m/s", "x/y velocity of the point", "world frame"),
    )

    def read(env: Any) -> Mapping[str, Any]:
        xy = env.xy
        return {"x": xy[0], "y": xy[1], "velocity": env.data.qvel[:2]}

    return zones.profile(MAZE_ID, fields, read, (
        "A point mass in a 2 m walled maze, pushed by x/y forces, starting at the bottom left "
        f"({START[0]:g}, {START[1]:g}). Reward only at the episode's end, inside a reward zone."), "the point")


def _billiard_profile(zones: Zones) -> TaskProfile:
    fields = (
        StateField("x", (), "m", "x of the puck on the table (the table spans -1..1)", "world frame"),
        StateField("y", (), "m", "y of the puck on the table (the table spans -0.6..0.6)", "world frame"),
        StateField("velocity", (2,), "m/s", "x/y velocity of the puck", "world frame"),
    )

    def read(env: Any) -> Mapping[str, Any]:
        xy = env.xy
        return {"x": xy[0], "y": xy[1], "velocity": env.data.qvel[:2]}

    return zones.profile(BILLIARD_ID, fields, read, (
        "A puck on a 2 m x 1.2 m table with cushions, split at x = 0 by a partition whose one gap is "
        "y 0.25..0.45, with a block (x 0.45..0.55, y -0.3..0.3) and a pocket behind it in the east half; "
        f"the puck starts at ({BILLIARD_START[0]:g}, {BILLIARD_START[1]:g}); x/y forces push it during the "
        "first part of the episode only, then it slides and bounces until the end. Reward only at the "
        "episode's end, inside a reward zone."), "the puck")


def _arm_profile(zones: Zones) -> TaskProfile:
    fields = (
        StateField("x", (), "m", "x of the arm's tip (the base is at the origin, reach 0.9 m)", "world frame"),
        StateField("y", (), "m", "y of the arm's tip", "world frame"),
        StateField("joint_angles", (QDArmEnv.n_joints,), "rad",
                   "angles of joints j0 (base, +-pi) to j5 (+-2.5), each relative to its parent link; "
                   "0 everywhere = the arm straight along +y", "joint space"),
    )

    def read(env: Any) -> Mapping[str, Any]:
        xy = env.xy
        return {"x": xy[0], "y": xy[1], "joint_angles": env.data.qpos[:QDArmEnv.n_joints]}

    return zones.profile(ARM_ID, fields, read, (
        "A planar arm of six 0.15 m links, its base at the origin, driven by joint-speed targets, "
        "starting straight along +y; a wall stands at x = 0.4, y 0.05..0.75. Reward only at the "
        "episode's end, with the tip inside a reward zone."), "the arm's tip")


@dataclass(frozen=True)
class _Entry:
    options: type[BaseModel]
    env: Callable[..., _ZoneEnv]
    episode_steps: int
    profile: Callable[[Zones], TaskProfile]


_ENVS: dict[str, _Entry] = {
    MAZE_ID: _Entry(MazeOptions, QDMazeEnv, 200, _maze_profile),
    BILLIARD_ID: _Entry(BilliardOptions, QDBilliardEnv, 100, _billiard_profile),
    ARM_ID: _Entry(ArmOptions, QDArmEnv, 100, _arm_profile),
}


class MujocoQDAdapter:
    """The workbench's own sparse-reward MuJoCo tasks for QD explorers."""

    name = "mujoco_qd"

    def env_ids(self) -> list[str]:
        return list(_ENVS)

    def make_env(self, spec: SimSpec, *, render_mode: str | None = None) -> gym.Env:
        entry = _ENVS.get(spec.env_id)
        if entry is None:
            raise TaskError(f"unknown {self.name} env {spec.env_id!r}", key="sim.env_id",
                            hint=f"valid: {', '.join(self.env_ids())}")
        options = validate_sim_kwargs(entry.options, spec.kwargs)
        if render_mode not in (None, "rgb_array"):
            raise TaskError(f"{spec.env_id} renders rgb_array only, not {render_mode!r}", key="evaluation",
                            hint="use render_mode rgb_array (videos)")
        return entry.env(episode_steps=spec.max_episode_steps or entry.episode_steps, render_mode=render_mode,
                         **options.model_dump())

    def profile(self, spec: SimSpec, env: gym.Env | None = None) -> TaskProfile:
        own = env if env is not None else self.make_env(spec)
        try:
            return _ENVS[spec.env_id].profile(own.unwrapped.zones)
        finally:
            if env is None:
                own.close()
