"""Sparse-reward MuJoCo tasks for quality-diversity explorers (``sim.name: mujoco_qd``).

``workbench/QDMaze-v0``: a point mass in the walled maze of ``assets/qd_maze.xml``. The reward is
sparse and outcome-based: 0 at every step but the last; at the episode's last step, if the point
lies in a reward zone (a ``zone_*`` site of the model), ``1 - 0.5 * distance / radius`` (1 at the
zone's centre, 0.5 at its rim). The last info names the zone (``info["reward_area"]``) and the env
lists its zones (:attr:`QDMazeEnv.reward_areas`), which QD learners report on. The env ends its
episodes itself (``truncated`` after ``episode_steps`` steps; ``sim.max_episode_steps`` sets it), so
the final-step reward is never cut off by a TimeLimit wrapper.

gymnasium-robotics' PointMaze installs beside mujoco 4.0 here and runs, but its goal-conditioned
dict observations and single random goal per reset are not this task (several fixed zones, an
outcome-based reward); this maze is the workbench's own MJCF.

The module imports no simulator at module level (``workbench list`` imports adapters).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from workbench.errors import TaskError
from workbench.sims.base import SuccessMetric, TaskProfile
from workbench.spec import SimSpec, validate_sim_kwargs
from workbench.state import Field as StateField
from workbench.state import StateSchema

__all__ = ["MujocoQDAdapter", "QDMazeEnv", "MAZE_ID", "START"]

MAZE_ID = "workbench/QDMaze-v0"
START = (-0.8, -0.8)  # the point's start (m); reset adds uniform noise of +-start_noise per axis
_FRAME_SKIP = 5  # 5 x 10 ms physics steps per env step: dt = 0.05 s


class MazeOptions(BaseModel):
    """``sim.kwargs`` of workbench/QDMaze-v0."""

    model_config = ConfigDict(extra="forbid")
    start_noise: float = Field(0.02, ge=0, le=0.1, description="uniform noise on the start x/y (m)")


class QDMazeEnv(gym.Env):
    """A point mass (radius 0.04 m, mass 0.1 kg, damping 1 N s/m) pushed by x/y forces in a 2 m maze.

    Action: ``Box(-1, 1, (2,))``, forces in N on x and y (top speed ~1 m/s). Observation:
    ``[x, y, vx, vy]`` (m, m/s). Reward: see the module docstring.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, *, episode_steps: int = 200, start_noise: float = 0.02, render_mode: str | None = None,
                 width: int = 240, height: int = 240):
        import mujoco

        from workbench.assets import asset_path

        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_path(str(asset_path("qd_maze.xml")))
        self.data = mujoco.MjData(self.model)
        self.episode_steps = int(episode_steps)
        self.start_noise = float(start_noise)
        self.render_mode = render_mode
        self._size = (height, width)
        self._renderer: Any = None
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
        self.dt = self.model.opt.timestep * _FRAME_SKIP
        self.reward_areas = self._zones()
        self._steps = 0

    def _zones(self) -> list[dict[str, Any]]:
        zones = []
        for i in range(self.model.nsite):
            name = self._mj.mj_id2name(self.model, self._mj.mjtObj.mjOBJ_SITE, i) or ""
            if name.startswith("zone_"):
                center = [float(v) for v in self.model.site_pos[i][:2]]
                zones.append({"name": name.removeprefix("zone_"), "center": center,
                              "radius": float(self.model.site_size[i][0])})
        return zones

    @property
    def xy(self) -> np.ndarray:
        return self.data.qpos[:2]

    def zone_at(self, xy: np.ndarray) -> tuple[str | None, float]:
        """The zone containing ``xy`` and the reward there (None, 0.0 outside every zone)."""
        for zone in self.reward_areas:
            d = float(np.hypot(xy[0] - zone["center"][0], xy[1] - zone["center"][1]))
            if d <= zone["radius"]:
                return zone["name"], 1.0 - 0.5 * d / zone["radius"]
        return None, 0.0

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:2], self.data.qvel[:2]]).astype(np.float64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._mj.mj_resetData(self.model, self.data)
        noise = self.np_random.uniform(-self.start_noise, self.start_noise, 2)
        self.data.qpos[:2] = np.asarray(START) + noise
        self._mj.mj_forward(self.model, self.data)
        self._steps = 0
        return self._obs(), {}

    def step(self, action: Any):
        self.data.ctrl[:] = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self._mj.mj_step(self.model, self.data, nstep=_FRAME_SKIP)
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


def _maze_profile(zones: list[dict[str, Any]]) -> TaskProfile:
    fields = (
        StateField("x", (), "m", "x of the point in the maze (the maze spans -1..1)", "world frame"),
        StateField("y", (), "m", "y of the point in the maze (the maze spans -1..1)", "world frame"),
        StateField("velocity", (2,), "m/s", "x/y velocity of the point", "world frame"),
        StateField("zone_distances", (len(zones),), "m",
                   "distance from the point to the centre of each reward zone ("
                   + ", ".join(f"{z['name']} at ({z['center'][0]:g}, {z['center'][1]:g}) r={z['radius']:g}"
                               for z in zones) + ")", "world frame"),
    )
    centers = np.array([z["center"] for z in zones], dtype=np.float64).reshape(-1, 2)
    radii = np.array([z["radius"] for z in zones], dtype=np.float64)

    def read(env: Any) -> Mapping[str, Any]:
        xy = env.data.qpos[:2]
        return {"x": xy[0], "y": xy[1], "velocity": env.data.qvel[:2],
                "zone_distances": np.hypot(*(xy[None, :] - centers).T)}

    success = SuccessMetric(
        "the point within {threshold} x a zone's radius of that zone's centre at episode end", 1.0,
        lambda s, t: bool(np.any(np.asarray(s.zone_distances) <= t * radii)))
    return TaskProfile(MAZE_ID, StateSchema(
        MAZE_ID, fields, read,
        "A point mass in a 2 m walled maze, pushed by x/y forces, starting at the bottom left "
        f"({START[0]:g}, {START[1]:g}). Reward only at the episode's end, inside a reward zone."), success)


class MujocoQDAdapter:
    """The workbench's own sparse-reward MuJoCo tasks for QD explorers."""

    name = "mujoco_qd"

    def env_ids(self) -> list[str]:
        return [MAZE_ID]

    def make_env(self, spec: SimSpec, *, render_mode: str | None = None) -> gym.Env:
        if spec.env_id not in self.env_ids():
            raise TaskError(f"unknown {self.name} env {spec.env_id!r}", key="sim.env_id",
                            hint=f"valid: {', '.join(self.env_ids())}")
        options = validate_sim_kwargs(MazeOptions, spec.kwargs)
        if render_mode not in (None, "rgb_array"):
            raise TaskError(f"{MAZE_ID} renders rgb_array only, not {render_mode!r}", key="evaluation",
                            hint="use render_mode rgb_array (videos)")
        return QDMazeEnv(episode_steps=spec.max_episode_steps or 200, start_noise=options.start_noise,
                         render_mode=render_mode)

    def profile(self, spec: SimSpec, env: gym.Env | None = None) -> TaskProfile:
        own = env if env is not None else self.make_env(spec)
        try:
            return _maze_profile(own.unwrapped.reward_areas)
        finally:
            if env is None:
                own.close()
