"""MineDojo adapter (Minecraft 1.11 through Malmo): any MineDojo task id, with the StateView
names the Crafter adapter uses for the concepts both worlds share (:data:`SHARED_FIELDS`).

NOT RUN HERE. MineDojo needs a JDK 8 and builds Minecraft with gradle on first use, which
downloads the game; neither installs on these machines (MineRL's build fails the same way). On
such a machine ``make_env`` raises one :class:`MineDojoUnavailable` message naming what to install
(the CLI prints it and exits 2). The code below is written against MineDojo's documented
observation format (https://docs.minedojo.org/sections/core_api/obs_space.html) and its
source (``minedojo/sim/handlers/agent/observations/*.py``), and has not been executed:

- ``obs["rgb"]``: uint8 ``(3, H, W)``; this adapter hands policies ``(H, W, 3)``.
- ``obs["inventory"]``: ``name`` (36 slots, underscores replaced by spaces, "air" when empty)
  and ``quantity``; counts of an item are summed over slots.
- ``obs["life_stats"]``: ``life`` and ``food`` (1,) in 0..20, ``is_sleeping``.
- ``obs["location_stats"]``: ``pos`` (3,) x, y (up), z in blocks; ``yaw``, ``pitch`` (1,) degrees;
  ``sun_brightness`` (1,) 0..1.
- ``obs["voxels"]["block_name"]``: the blocks around the agent, indexed ``[x, y, z]`` ascending
  over the task's ``voxel_size`` box (only when the task uses voxels: programmatic tasks set
  their own box, usually 3x3x3; for ``open-ended`` and the meta tasks this adapter asks for
  ``sim.kwargs.voxel_radius``). ``nearest_<m>_dist`` searches that box only.
- ``minedojo.make`` returns an old-gym env (``reset() -> obs``, ``step -> obs, reward, done,
  info``) with a ``MultiDiscrete`` action space; MineDojo tasks expose ``is_successful``.

The world is seeded at construction (``sim.kwargs.seed`` / ``world_seed``); ``reset(seed=...)``
seeds only the wrapper, MineDojo cannot regenerate a world from a new seed on reset.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField

from workbench.errors import MissingDependency, TaskError, WorkbenchError
from workbench.sims.base import SuccessMetric, TaskProfile
from workbench.sims.crafter import NOT_SEEN, SHARED_FIELDS, SHARED_ITEMS, SHARED_MATERIALS, minecraft_fields
from workbench.spec import SimSpec
from workbench.state import Field, StateSchema

__all__ = ["MineDojoAdapter", "MineDojoEnv", "MineDojoOptions", "MineDojoUnavailable", "INSTALL_HINT",
           "ITEM_NAMES", "BLOCK_NAMES", "SHARED_FIELDS"]

DOCS_URL = "https://docs.minedojo.org/sections/getting_started/install.html"
INSTALL_HINT = (f"install a Java 8 JDK (e.g. `apt-get install openjdk-8-jdk`, with JAVA_HOME pointing at it), "
                f'then `pip install "rl-workbench[minedojo]"` (pip install minedojo); its first run builds '
                f"Minecraft with gradle, which downloads the game. See {DOCS_URL}")

# MineDojo inventory names (underscored) and block names that count as the shared items/materials.
ITEM_NAMES: dict[str, tuple[str, ...]] = {
    "sapling": ("sapling",), "wood": ("log", "log2"), "stone": ("cobblestone", "stone"), "coal": ("coal",),
    "iron": ("iron_ore", "iron_ingot"), "diamond": ("diamond",), "wood_pickaxe": ("wooden_pickaxe",),
    "stone_pickaxe": ("stone_pickaxe",), "iron_pickaxe": ("iron_pickaxe",), "wood_sword": ("wooden_sword",),
    "stone_sword": ("stone_sword",), "iron_sword": ("iron_sword",),
}
BLOCK_NAMES: dict[str, tuple[str, ...]] = {
    "tree": ("log", "log2"), "water": ("water", "flowing_water"), "stone": ("stone", "cobblestone"),
    "coal": ("coal_ore",), "iron": ("iron_ore",), "diamond": ("diamond_ore",), "lava": ("lava", "flowing_lava"),
    "table": ("crafting_table",), "furnace": ("furnace", "lit_furnace"),
}
assert set(ITEM_NAMES) == set(SHARED_ITEMS) and set(BLOCK_NAMES) == set(SHARED_MATERIALS)
MAX_LIFE = MAX_FOOD = 20.0
EXAMPLE_IDS = ("open-ended", "harvest_wool_with_shears_and_sheep", "techtree_from_wood_to_diamond_sword",
               "combat_spider_plains_leather_armors_diamond_sword_shield")
_META = ("open-ended", "harvest", "combat", "techtree", "survival")


class MineDojoUnavailable(MissingDependency):
    """MineDojo, or the Java 8 it runs the game on, is not installed: one message, exit 2."""

    def __init__(self, what: str):
        WorkbenchError.__init__(self, f"the minedojo simulator needs {what}, which is not installed.\n"
                                      f"  fix: {INSTALL_HINT}")


class MineDojoOptions(BaseModel):
    """The keys of ``sim.kwargs`` for MineDojo."""

    model_config = ConfigDict(extra="forbid")
    image_size: tuple[int, int] = PydanticField((160, 256), description="(height, width) of rgb frames")
    seed: int | None = PydanticField(None, ge=0, description="MineDojo's random seed")
    world_seed: str | int | None = PydanticField(None, description="Minecraft world seed")
    voxel_radius: int = PydanticField(3, ge=1, le=16, description="voxel box half-width for open-ended/meta tasks")
    make_kwargs: dict[str, Any] = PydanticField(default_factory=dict, description="more minedojo.make arguments")


def _name(raw: Any) -> str:
    return str(raw).lower().removeprefix("minecraft:").replace(" ", "_")


class MineDojoEnv(gym.Env):
    """A MineDojo task as a gymnasium env: ``(H, W, 3)`` frames, MultiDiscrete actions, the
    StateView's raw values in :meth:`state_values`."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, env: Any, *, max_steps: int | None, render_mode: str | None = None):
        self._env = env
        self.render_mode = render_mode
        self.max_steps = max_steps
        height, width = env.observation_space["rgb"].shape[1:]
        self.observation_space = gym.spaces.Box(0, 255, (height, width, 3), np.uint8)
        self.action_space = gym.spaces.MultiDiscrete(np.asarray(env.action_space.nvec))
        self._obs: dict[str, Any] = {}
        self._frame = np.zeros((height, width, 3), np.uint8)
        self._steps = 0
        self._values: dict[str, Any] = {}
        self._last_dists = np.full(len(SHARED_MATERIALS), NOT_SEEN)
        self._last_inv: dict[str, float] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._steps = 0
        self._last_dists = np.full(len(SHARED_MATERIALS), NOT_SEEN)
        self._last_inv = {}
        return self._take(self._env.reset()), {}

    def step(self, action: Any):
        obs, reward, done, info = self._env.step(np.asarray(action))
        self._steps += 1
        terminated = bool(done)
        truncated = bool(not terminated and self.max_steps is not None and self._steps >= self.max_steps)
        return self._take(obs), float(reward), terminated, truncated, dict(info)

    def render(self) -> np.ndarray | None:
        return self._frame.copy() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        self._env.close()

    def state_values(self) -> dict[str, Any]:
        return self._values

    def _take(self, obs: Mapping[str, Any]) -> np.ndarray:
        self._obs = dict(obs)
        self._frame = np.ascontiguousarray(np.transpose(np.asarray(obs["rgb"], np.uint8), (1, 2, 0)))
        self._values = self._read(obs)
        return self._frame

    def _read(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        life, loc = obs["life_stats"], obs["location_stats"]
        counts: dict[str, float] = {}
        for raw, qty in zip(obs["inventory"]["name"], obs["inventory"]["quantity"]):
            counts[_name(raw)] = counts.get(_name(raw), 0.0) + float(qty)
        values: dict[str, Any] = {
            "health": float(np.ravel(life["life"])[0]) / MAX_LIFE,
            "food": float(np.ravel(life["food"])[0]) / MAX_FOOD,
            "daylight": float(np.ravel(loc.get("sun_brightness", [1.0]))[0]),
            "sleeping": float(np.ravel(life.get("is_sleeping", [0]))[0]),
            "player_pos": np.asarray(loc["pos"], np.float64),
            "yaw": float(np.ravel(loc["yaw"])[0]), "pitch": float(np.ravel(loc["pitch"])[0]),
            "task_success": float(bool(getattr(self._env, "is_successful", False))),
        }
        for item, names in ITEM_NAMES.items():
            have = sum(counts.get(n, 0.0) for n in names)
            values[f"inv_{item}"] = have
            values[f"inv_{item}_delta"] = have - self._last_inv.get(item, have)
            self._last_inv[item] = have
        dists = self._nearest(obs.get("voxels"))
        both = (dists < NOT_SEEN) & (self._last_dists < NOT_SEEN)
        approach = np.where(both, self._last_dists - dists, 0.0)
        self._last_dists = dists
        for i, m in enumerate(SHARED_MATERIALS):
            values[f"nearest_{m}_dist"], values[f"nearest_{m}_approach"] = dists[i], approach[i]
        return values

    @staticmethod
    def _nearest(voxels: Mapping[str, Any] | None) -> np.ndarray:
        """Euclidean distance (blocks) from the agent's block to the nearest block of each shared
        material in the voxel box; the agent sits at the box's centre (symmetric box assumed)."""
        out = np.full(len(SHARED_MATERIALS), NOT_SEEN)
        if voxels is None:
            return out
        names = np.vectorize(_name, otypes=[object])(np.asarray(voxels["block_name"], dtype=object))
        centre = (np.asarray(names.shape) - 1) / 2
        grid = np.stack(np.meshgrid(*(np.arange(n) for n in names.shape), indexing="ij"), -1) - centre
        dist = np.linalg.norm(grid, axis=-1)
        for i, m in enumerate(SHARED_MATERIALS):
            mask = np.isin(names, BLOCK_NAMES[m])
            if mask.any():
                out[i] = float(dist[mask].min())
        return out


def _fields() -> tuple[Field, ...]:
    frame = "Minecraft world frame: y up"
    return (*minecraft_fields("blocks"),
            Field("player_pos", (3,), "blocks", "agent position (x, y, z)", frame),
            Field("yaw", (), "deg", "agent yaw", frame),
            Field("pitch", (), "deg", "agent pitch; positive looks down", frame),
            Field("task_success", (), "0/1", "1.0 once MineDojo's own success check for the task passes"))


def _read(env: Any) -> Mapping[str, Any]:
    if not isinstance(env, MineDojoEnv):
        raise RuntimeError("MineDojo StateView read from an env not made by MineDojoAdapter.make_env (adapter bug)")
    return env.state_values()


def _options(spec: SimSpec) -> MineDojoOptions:
    from workbench.spec import validate_sim_kwargs

    return validate_sim_kwargs(MineDojoOptions, spec.kwargs)


class MineDojoAdapter:
    """MineDojo (``pip install "rl-workbench[minedojo]"`` plus a Java 8 JDK), imported when an env is made."""

    name = "minedojo"

    def env_ids(self) -> list[str]:
        return [*EXAMPLE_IDS, "(any MineDojo task id)"]

    def make_env(self, spec: SimSpec, *, render_mode: str | None = None) -> gym.Env:
        opts = _options(spec)
        try:
            import minedojo
        except ImportError:
            raise MineDojoUnavailable("MineDojo (the Python package 'minedojo' and a Java 8 JDK)") from None
        if shutil.which("java") is None:
            raise MineDojoUnavailable("a Java 8 JDK (no `java` on PATH)")
        known = set(minedojo.tasks.ALL_TASK_IDS) | set(_META)
        if spec.env_id not in known and spec.env_id.lower() not in known:
            raise TaskError(f"unknown MineDojo task {spec.env_id!r}", key="sim.env_id",
                            hint=f"use a MineDojo task id (minedojo.tasks.ALL_TASK_IDS), e.g. {', '.join(EXAMPLE_IDS)}")
        kwargs: dict[str, Any] = {"image_size": opts.image_size, "seed": opts.seed, **opts.make_kwargs}
        if opts.world_seed is not None:
            kwargs["world_seed"] = opts.world_seed
        if spec.env_id.lower() in _META:  # programmatic tasks fix their own voxel box
            r = opts.voxel_radius
            kwargs.setdefault("use_voxel", True)
            kwargs.setdefault("voxel_size", {"xmin": -r, "ymin": -r, "zmin": -r, "xmax": r, "ymax": r, "zmax": r})
        env = minedojo.make(task_id=spec.env_id, **kwargs)
        return MineDojoEnv(env, max_steps=spec.max_episode_steps, render_mode=render_mode)

    def profile(self, spec: SimSpec, env: gym.Env | None = None) -> TaskProfile:
        schema = StateSchema(spec.env_id, _fields(), _read,
                             "Minecraft (MineDojo): a 3D voxel world; vitals, inventory and nearest blocks as "
                             "in Crafter's StateView (shared names), positions in blocks.")
        success = None
        if spec.env_id.lower() not in _META:
            success = SuccessMetric("MineDojo's success check for the task passed (task_success >= {threshold:g})",
                                    1.0, lambda s, t: float(s.task_success) >= t)
        return TaskProfile(spec.env_id, schema, success)
