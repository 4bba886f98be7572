"""Crafter adapter (Hafner 2021): a 2D Minecraft-like survival world, embedded and offline.

Env ids:

- ``Crafter-v1`` — the full game with Crafter's own reward: +1 the first time each of the 22
  achievements unlocks, +-0.1 per health point gained or lost. Success: at least
  ``threshold`` achievements unlocked by episode end.
- ``crafter/<Achievement>-v0`` (``crafter/CollectWood-v0``, ``crafter/EatCow-v0``,
  ``crafter/CollectDiamond-v0``, ... one per achievement) — a single-task env: reward 1.0 on the
  step the target achievement first unlocks, else 0; the episode terminates on that step.
  Success: the target unlocked by episode end.

Every id terminates on death (health 0: lava, zombies, arrows, starvation/thirst/fatigue) and
truncates at the episode length (``sim.max_episode_steps``, else ``sim.kwargs.length``, else
Crafter's 10000). At episode end ``info["crafter/death_cause"]`` says how it ended, one of
:data:`DEATH_CAUSES` (and ``info["end_cause"]``, what Auto MC-Reward's trajectory analyzer reads,
the same but "success" for "alive"); on a step that hurt the player ``info["crafter/damage_source"]``
names what did (see :meth:`CrafterEnv._damage` for how both are inferred from the live world).

``sim.kwargs`` (all optional, see :class:`CrafterOptions`): ``observation`` (``rgb``: the 64x64
egocentric image for ``CnnPolicy``; ``state``: a compact float32 vector for ``MlpPolicy``, see
:func:`state_observation_layout`), Crafter's constructor arguments ``size``, ``area``, ``view``,
``length``, ``seed``, plus ``sense_radius`` (the StateView's search window) and ``render_size``
(``render()`` frames for videos and pixel rewards).

Seeding: Crafter seeds its world at construction and generates episode ``k`` from
``hash((seed, k))``; ``reset(seed=s)`` restarts that sequence at ``s``, so the same seed gives
the same world and, with the same actions, the same episode — in any process. Two fixes over
vanilla Crafter make that hold: night-time frame noise draws from its own generator (vanilla
draws it from the world's, so rendering or not changed the dynamics), and the creature to
despawn is chosen from a list ordered by position (vanilla: a set ordered by memory address).

Grid frame: ``x`` grows to the right (``move_right``), ``y`` grows down (``move_down``); one
unit is one cell. World generation uses ``opensimplex``, which is ~15x faster with ``numba``
installed (the ``crafter`` extra installs it): a reset takes ~0.08 s instead of ~1.2 s.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PydanticField

from workbench.errors import MissingDependency, TaskError
from workbench.sims.base import SuccessMetric, TaskProfile
from workbench.spec import SimSpec
from workbench.state import Field, StateSchema

__all__ = [
    "CrafterAdapter", "CrafterEnv", "CrafterOptions", "ACTIONS", "ACHIEVEMENTS", "ITEMS", "MATERIALS",
    "CREATURES", "DAMAGE_SOURCES", "DEATH_CAUSES", "NOT_SEEN", "SHARED_ITEMS", "SHARED_MATERIALS",
    "SHARED_FIELDS", "minecraft_fields", "collect_wood_reference", "state_observation_layout",
    "FULL_GAME_ID", "FULL_GAME_THRESHOLD",
]

# ----------------------------------------------------------------------------- vocabulary

# The names both Minecraft-world adapters (this one and workbench.sims.minedojo) give the
# concepts they share, so a reward program written against one StateView runs on the other:
# ``inv_<item>`` / ``inv_<item>_delta`` for SHARED_ITEMS, ``nearest_<m>_dist`` /
# ``nearest_<m>_approach`` for SHARED_MATERIALS, and health, food, daylight, sleeping — vitals as
# fractions of their maximum, since Crafter counts 9 points and Minecraft 20.
SHARED_ITEMS = ("sapling", "wood", "stone", "coal", "iron", "diamond", "wood_pickaxe", "stone_pickaxe",
                "iron_pickaxe", "wood_sword", "stone_sword", "iron_sword")
SHARED_MATERIALS = ("tree", "water", "stone", "coal", "iron", "diamond", "lava", "table", "furnace")
SHARED_FIELDS: tuple[str, ...] = (
    "health", "food", "daylight", "sleeping",
    *(f"inv_{i}" for i in SHARED_ITEMS), *(f"inv_{i}_delta" for i in SHARED_ITEMS),
    *(f"nearest_{m}_dist" for m in SHARED_MATERIALS), *(f"nearest_{m}_approach" for m in SHARED_MATERIALS),
)
NOT_SEEN = 99.0  # nearest_<x>_dist when none is within the sensing window

# Crafter 1.8's data.yaml; checked against the installed package when an env is made.
ACTIONS = ("noop", "move_left", "move_right", "move_up", "move_down", "do", "sleep", "place_stone",
           "place_table", "place_furnace", "place_plant", "make_wood_pickaxe", "make_stone_pickaxe",
           "make_iron_pickaxe", "make_wood_sword", "make_stone_sword", "make_iron_sword")
ACHIEVEMENTS = ("collect_coal", "collect_diamond", "collect_drink", "collect_iron", "collect_sapling",
                "collect_stone", "collect_wood", "defeat_skeleton", "defeat_zombie", "eat_cow", "eat_plant",
                "make_iron_pickaxe", "make_iron_sword", "make_stone_pickaxe", "make_stone_sword",
                "make_wood_pickaxe", "make_wood_sword", "place_furnace", "place_plant", "place_stone",
                "place_table", "wake_up")
ITEMS = SHARED_ITEMS  # Crafter's inventory besides the four vitals
MATERIALS = ("water", "grass", "stone", "path", "sand", "tree", "lava", "coal", "iron", "diamond", "table",
             "furnace")
VITALS = ("health", "food", "drink", "energy")
VITAL_MAX = 9
ITEM_MAX = 9
CREATURES = ("zombie", "skeleton", "cow")
_PATCH_OBJECTS = ("zombie", "skeleton", "cow", "plant", "arrow")
DAMAGE_SOURCES = ("none", "lava", "zombie", "skeleton", "starvation", "thirst", "fatigue")
# info["crafter/death_cause"] at episode end: a damage source if the player died, "timeout" if the
# length limit cut a living episode, "alive" if it ended alive otherwise (the task succeeded).
# "unknown" only if health reached 0 in a way the inference below does not cover (a bug to report).
DEATH_CAUSES = ("lava", "zombie", "skeleton", "starvation", "thirst", "fatigue", "timeout", "alive", "unknown")
FULL_GAME_ID = "Crafter-v1"
FULL_GAME_THRESHOLD = 5.0  # achievements; a uniform-random policy unlocks ~2-3 per episode
DEFAULT_LENGTH = 10_000  # Crafter's own episode length
_DO, _MOVES = 5, {(-1, 0): 1, (1, 0): 2, (0, -1): 3, (0, 1): 4}
_WALKABLE = ("grass", "sand", "path")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


TASK_IDS: dict[str, str] = {f"crafter/{_camel(a)}-v0": a for a in ACHIEVEMENTS}


# ----------------------------------------------------------------------------- options


class CrafterOptions(BaseModel):
    """The keys of ``sim.kwargs`` for Crafter."""

    model_config = ConfigDict(extra="forbid")
    observation: Literal["rgb", "state"] = PydanticField(
        "rgb", description="rgb: the egocentric image (CnnPolicy); state: a float32 vector (MlpPolicy)")
    size: tuple[int, int] = PydanticField((64, 64), description="observation image (width, height) px")
    area: tuple[int, int] = PydanticField((64, 64), description="world size in cells")
    view: tuple[int, int] = PydanticField((9, 9), description="cells shown (the bottom rows hold the inventory)")
    length: int | None = PydanticField(None, gt=0, description="episode length; sim.max_episode_steps wins")
    seed: int | None = PydanticField(None, ge=0, description="world seed until reset(seed=...) sets one")
    sense_radius: int = PydanticField(8, ge=1, le=32, description="StateView search window half-width, cells")
    render_size: int = PydanticField(256, ge=16, le=2048, description="render() frame side, px")

    @field_validator("size", "area", "view", mode="before")
    @classmethod
    def _pair(cls, v: Any) -> Any:
        return (v, v) if isinstance(v, int) else v

    @field_validator("area")
    @classmethod
    def _area(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 16:
            raise ValueError("each side of the world must be at least 16 cells")
        return v

    @field_validator("view")
    @classmethod
    def _view(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not all(3 <= s <= 31 and s % 2 == 1 for s in v):
            raise ValueError("view sides must be odd numbers of cells in 3..31")
        return v

    @field_validator("size")
    @classmethod
    def _size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 9:
            raise ValueError("the observation image must be at least 9 px per side")
        return v


# ----------------------------------------------------------------------------- StateView


def minecraft_fields(unit: str) -> tuple[Field, ...]:
    """The shared fields (:data:`SHARED_FIELDS`) with their documentation; ``unit`` names the
    world's length unit ("cells" in Crafter, "blocks" in Minecraft)."""
    fields = [
        Field("health", (), "fraction", "health / its maximum; 0 = dead"),
        Field("food", (), "fraction", "food (hunger bar) / its maximum; at 0 health drains"),
        Field("daylight", (), "0..1", "1 = full day, 0 = darkest night"),
        Field("sleeping", (), "0/1", "1.0 while the player sleeps"),
    ]
    fields += [Field(f"inv_{i}", (), "count", f"{i.replace('_', ' ')} in the inventory") for i in SHARED_ITEMS]
    fields += [Field(f"inv_{i}_delta", (), "count", f"change of inv_{i} during the last step (+ gained, - used)")
               for i in SHARED_ITEMS]
    fields += [Field(f"nearest_{m}_dist", (), unit, f"Euclidean distance from the player to the nearest {m} "
                     f"within the sensing window; {NOT_SEEN:g} when none is there") for m in SHARED_MATERIALS]
    fields += [Field(f"nearest_{m}_approach", (), unit, f"how much closer the nearest {m} came during the last "
                     f"step (previous nearest_{m}_dist - current); 0 if it was not seen at either step")
               for m in SHARED_MATERIALS]
    return tuple(fields)


def _crafter_fields(radius: int) -> tuple[Field, ...]:
    grid = "grid frame: +x = move_right, +y = move_down"
    window = f"the {2 * radius + 1}x{2 * radius + 1}-cell window centred on the player"
    fields = list(minecraft_fields("cells"))
    fields += [
        Field("drink", (), "fraction", "thirst bar / its maximum (9); at 0 health drains"),
        Field("energy", (), "fraction", "energy bar / its maximum (9); sleep restores it; at 0 health drains"),
        Field("player_pos", (2,), "cells", "player cell (x, y)", grid),
        Field("facing", (2,), "cells", "unit grid vector the player faces; 'do' acts on that cell", grid),
    ]
    fields += [Field(f"nearest_{m}_dir", (2,), "unit vector", f"direction from the player to the nearest {m}; "
                     "(0, 0) when none is seen", grid) for m in SHARED_MATERIALS]
    fields += [Field(f"facing_{m}", (), "0/1", f"1.0 when the cell the player faces is {m}")
               for m in SHARED_MATERIALS]
    for c in CREATURES:
        fields += [
            Field(f"nearest_{c}_dist", (), "cells", f"Euclidean distance to the nearest {c} in {window}; "
                  f"{NOT_SEEN:g} when none"),
            Field(f"nearest_{c}_dir", (2,), "unit vector", f"direction to the nearest {c}; (0, 0) when none", grid),
            Field(f"{c}s_nearby", (), "count", f"{c}s in {window}"),
            Field(f"facing_{c}", (), "0/1", f"1.0 when a {c} is in the cell the player faces"),
        ]
    fields += [
        Field("achievements", (), "count", "achievements unlocked so far this episode (of 22)"),
        *(Field(f"ach_{a}", (), "0/1", f"1.0 once {a} has been unlocked this episode") for a in ACHIEVEMENTS),
        Field("damage_taken", (), "fraction", "health lost during the last step / max health (0 if none)"),
        Field("last_damage_source", (), "code", "what last hurt the player this episode: "
              + ", ".join(f"{i} {s}" for i, s in enumerate(DAMAGE_SOURCES))),
        Field("episode_step", (), "steps", "steps taken this episode"),
    ]
    return tuple(fields)


_DOC = ("Crafter: a 64x64-cell 2D survival world seen from above (9x7 cells around the player, "
        "inventory below). Actions: " + ", ".join(f"{i} {a}" for i, a in enumerate(ACTIONS)) + ". "
        "'do' collects/attacks the faced cell (trees give wood; stone, coal, iron, diamond need "
        "wood/stone/iron pickaxes; water restores drink; hitting a cow 3 times eats it); walking onto "
        "lava kills. Food, drink and energy drain over time; health drains while any is 0.")


# ----------------------------------------------------------------------------- the env


@lru_cache(maxsize=1)
def _crafter() -> Any:
    try:
        import crafter
    except ImportError:
        raise MissingDependency("the crafter simulator", "crafter", "crafter") from None
    const = crafter.constants
    if (tuple(const.actions), tuple(const.achievements), tuple(const.materials)) != (ACTIONS, ACHIEVEMENTS, MATERIALS):
        raise MissingDependency("this crafter version (its actions/achievements/materials differ from 1.8's), "
                                "the crafter simulator", "crafter", "crafter>=1.8,<2")
    try:
        import numba  # noqa: F401  (opensimplex compiles its noise with it)
    except ImportError:
        warnings.warn("numba is not installed: Crafter world generation takes ~1.2 s per reset instead of "
                      '~0.08 s (pip install "rl-workbench[crafter]")', stacklevel=3)
    return crafter


@lru_cache(maxsize=1)
def _core_class() -> type:
    """A crafter.Env that renders only when asked and keeps frame noise off the world's RNG."""
    crafter = _crafter()

    class _Core(crafter.Env):  # type: ignore[misc, name-defined]
        def __init__(self, *, rgb: bool, **kwargs: Any):
            super().__init__(**kwargs)
            self._rgb = rgb
            self._render_rng = np.random.RandomState(0)
            self._sem_view = _no_semantic  # the per-step semantic map in info: unused, not free

        def _obs(self) -> np.ndarray | None:
            return self.render() if self._rgb else None

        def _balance_object(self, chunk: Any, objs: Any, cls: type, material: str, span_dist: float,
                            despan_dist: float, spawn_prob: float, despawn_prob: float, ctor: Any,
                            target_fn: Any) -> None:
            # crafter.Env's own, except that the creature to despawn is drawn from a list ordered
            # by position: Crafter draws it from a set ordered by memory address, so the same seed
            # and actions gave different episodes in different processes.
            xmin, xmax, ymin, ymax = chunk
            random = self._world.random
            creatures = sorted((obj for obj in objs if isinstance(obj, cls)), key=lambda o: tuple(o.pos))
            mask = self._world.mask(*chunk, material)
            target_min, target_max = target_fn(len(creatures), mask.sum())
            if len(creatures) < int(target_min) and random.uniform() < spawn_prob:
                xs = np.tile(np.arange(xmin, xmax)[:, None], [1, ymax - ymin])
                ys = np.tile(np.arange(ymin, ymax)[None, :], [xmax - xmin, 1])
                xs, ys = xs[mask], ys[mask]
                i = random.randint(0, len(xs))
                pos = np.array((xs[i], ys[i]))
                empty = self._world[pos][1] is None
                away = self._player.distance(pos) >= span_dist
                if empty and away:
                    self._world.add(ctor(pos))
            elif len(creatures) > int(target_max) and random.uniform() < despawn_prob:
                obj = creatures[random.randint(0, len(creatures))]
                away = self._player.distance(obj.pos) >= despan_dist
                if away:
                    self._world.remove(obj)

        def render(self, size: Any = None) -> np.ndarray:
            # LocalView draws night noise from world.random: give it its own generator so rendering
            # (or not) leaves the world's dynamics alone.
            world_rng, self._world.random = self._world.random, self._render_rng
            try:
                return super().render(size)
            finally:
                self._world.random = world_rng

    return _Core


def _no_semantic() -> None:
    return None


@dataclass(frozen=True)
class _Window:
    """The sensing window's cells (centre excluded) sorted by Euclidean distance from the centre."""

    radius: int
    flat: np.ndarray  # (N,) indices into the raveled (2r+1)^2 window
    offsets: np.ndarray  # (N, 2) int (dx, dy)
    dists: np.ndarray  # (N,)
    units: np.ndarray  # (N, 2)

    @classmethod
    def make(cls, radius: int) -> _Window:
        side = 2 * radius + 1
        dx, dy = np.meshgrid(np.arange(-radius, radius + 1), np.arange(-radius, radius + 1), indexing="ij")
        offsets = np.stack([dx.ravel(), dy.ravel()], 1)
        dist = np.hypot(offsets[:, 0], offsets[:, 1])
        # Ties broken by (dy, dx): deterministic, and the same for every world.
        order = np.lexsort((offsets[:, 0], offsets[:, 1], dist))[1:]  # [0] is the centre
        flat = (offsets[order, 0] + radius) * side + (offsets[order, 1] + radius)
        d = dist[order]
        return cls(radius, flat, offsets[order], d, offsets[order] / d[:, None])


_SEEN_MATERIALS = np.array([MATERIALS.index(m) + 1 for m in SHARED_MATERIALS])  # World ids: None is 0


class CrafterEnv(gym.Env):
    """Crafter as a gymnasium env (see the module docstring). ``task``: the target achievement of
    a single-task env, or None for the full game."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, *, task: str | None = None, observation: str = "rgb", size: tuple[int, int] = (64, 64),
                 area: tuple[int, int] = (64, 64), view: tuple[int, int] = (9, 9), length: int | None = None,
                 seed: int | None = None, sense_radius: int = 8, render_size: int = 256,
                 render_mode: str | None = None):
        if task is not None and task not in ACHIEVEMENTS:
            raise ValueError(f"unknown Crafter achievement {task!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.task = task
        self.render_mode = render_mode
        self.observation = observation
        self.render_size = int(render_size)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31 - 1))
        self._core = _core_class()(rgb=observation == "rgb", area=tuple(area), view=tuple(view), size=tuple(size),
                                   length=length or DEFAULT_LENGTH, seed=int(seed))
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.action_names = ACTIONS  # read by reward prompts and the trajectory analyzer
        self._window = _Window.make(sense_radius)
        grid = self._core._local_view._grid  # cells the image shows: (view_x, view_y - inventory rows)
        self._patch = (int(grid[0]), int(grid[1]))
        self._pad = max(sense_radius, self._patch[0] // 2, self._patch[1] // 2) + 1
        w, h = self._core._world.area
        self._mat = np.zeros((w + 2 * self._pad, h + 2 * self._pad), np.uint8)
        self._obj = np.zeros((w + 2 * self._pad, h + 2 * self._pad), np.uint32)
        if observation == "rgb":
            self.observation_space = gym.spaces.Box(0, 255, (int(size[1]), int(size[0]), 3), np.uint8)
        else:
            n = state_observation_layout(self._patch)[-1][2]
            self.observation_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
        self._values: dict[str, Any] = {}
        self._last_dists = np.full(len(SHARED_MATERIALS), NOT_SEEN)
        self._last_inventory: dict[str, int] = {}
        self._last_source = 0

    # -- the live world (tests, tools and the StateView read these) ----------------------------

    @property
    def world(self) -> Any:
        return self._core._world

    @property
    def player(self) -> Any:
        return self._core._player

    # -- gymnasium API -------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        core = self._core
        if seed is not None:
            core._seed, core._episode = int(seed), 0  # episode k's world is hash((seed, k))
        obs = core.reset()
        core._render_rng.seed(np.random.SeedSequence([core._seed, core._episode]).generate_state(1)[0])
        self._last_dists = np.full(len(SHARED_MATERIALS), NOT_SEEN)
        self._last_inventory = dict(self.player.inventory)
        self._last_source = 0
        self._sense(damage=0.0)
        return self._observe(obs), {}

    def step(self, action: Any):
        core, player = self._core, self.player
        if player is None:
            raise RuntimeError("call reset() before step()")
        action = int(action)
        if not 0 <= action < len(ACTIONS):
            raise ValueError(f"action must be in 0..{len(ACTIONS) - 1}, got {action}")
        before = self._snapshot()
        self._last_inventory = dict(player.inventory)
        obs, reward, _, _ = core.step(action)
        source = self._damage(before)
        if source:
            self._last_source = source
        dead = player.health <= 0
        over = core._step >= core._length
        if self.task is None:
            success = False
        else:
            success = player.achievements[self.task] > 0
            reward = 1.0 if success and not before["unlocked"] else 0.0
        terminated = bool(dead or success)
        truncated = bool(over and not terminated)
        self._sense(damage=max(before["health"] - player.health, 0) / VITAL_MAX)
        info: dict[str, Any] = {"crafter/damage_source": DAMAGE_SOURCES[source]} if source else {}
        if terminated or truncated:
            if dead:
                cause = DAMAGE_SOURCES[source] if source else "unknown"
            else:
                cause = "timeout" if truncated else "alive"
            info["crafter/death_cause"] = cause
            # The key Auto MC-Reward's trajectory analyzer reads (workbench.evaluate.END_CAUSE_KEY).
            info["end_cause"] = "success" if cause == "alive" else cause
        return self._observe(obs), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        if self.player is None:
            raise RuntimeError("call reset() before render()")
        # A tuple: crafter tests `size or self._size`; its arithmetic with numpy arrays broadcasts.
        return self._core.render((self.render_size, self.render_size))

    # -- damage attribution --------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        """What the damage inference needs from before a step: zombie cooldowns and arrows that
        could reach the player this step (a zombie moves one cell and strikes at Manhattan
        distance 1 after the player's move: 3 cells suffice; arrows fly one cell per step)."""
        player = self.player
        x, y = player.pos
        zombies, arrows = {}, []
        for obj in self._objects_near(x, y, 3):
            kind = type(obj).__name__
            if kind == "Zombie":
                zombies[id(obj)] = obj.cooldown
            elif kind == "Arrow":
                arrows.append(obj)
        return {"health": player.health, "recover": player._recover, "zombies": zombies, "arrows": arrows,
                "unlocked": self.task is not None and player.achievements[self.task] > 0}

    def _damage(self, before: Mapping[str, Any]) -> int:
        """Index into DAMAGE_SOURCES of what hurt the player this step (0: nothing). From Crafter's
        source (objects.py), in the order a step applies them:

        - lava: moving onto lava sets health to 0 (Player._move);
        - starvation/thirst/fatigue: Player._degen_or_regen_health takes 1 health when its
          ``_recover`` counter falls below -15 (then resets it to 0) while food, drink or energy is
          0 — seen as ``_recover`` < -14 before and == 0 after; the empty bar names the cause
          (food, then drink, then energy when several are empty);
        - zombie: a zombie strikes (2, or 7 on a sleeper) exactly when its cooldown goes 0 -> 5
          while it is next to the player;
        - skeleton: an arrow that hit the player is removed, its position + direction being the
          player's cell.

        The player updates before any creature, so a creature's hit lands last: it wins over
        starvation as the last source, unless starvation already took the final health point."""
        player, world = self.player, self.world
        if world[player.pos][0] == "lava":
            return DAMAGE_SOURCES.index("lava")
        necessity = 0
        if before["recover"] < -14 and player._recover == 0:
            inv = player.inventory
            for name, item in (("starvation", "food"), ("thirst", "drink"), ("fatigue", "energy")):
                if inv[item] <= 0:
                    necessity = DAMAGE_SOURCES.index(name)
                    break
        if necessity and before["health"] <= 1:
            return necessity  # the last point went to hunger/thirst/fatigue before any creature moved
        x, y = player.pos
        for obj in self._objects_near(x, y, 1):
            if (type(obj).__name__ == "Zombie" and obj.cooldown == 5 and before["zombies"].get(id(obj)) == 0
                    and abs(obj.pos - player.pos).sum() <= 1):
                return DAMAGE_SOURCES.index("zombie")
        for arrow in before["arrows"]:
            if arrow.removed and tuple(arrow.pos + np.asarray(arrow.facing)) == tuple(player.pos):
                return DAMAGE_SOURCES.index("skeleton")
        return necessity

    def _objects_near(self, x: int, y: int, r: int) -> list[Any]:
        world = self.world
        area = world._obj_map[max(x - r, 0):x + r + 1, max(y - r, 0):y + r + 1]
        objects = world._objects
        return [objects[i] for i in area[area > 0].tolist() if objects[i] is not None]

    # -- the StateView and the state observation -------------------------------------------------

    def _sense(self, damage: float) -> None:
        """Read the live world into ``self._values`` (after every reset and step): numpy on the
        sensing window, a Python loop only over the few objects inside it."""
        world, player, win, p = self.world, self.player, self._window, self._pad
        w, h = world.area
        self._mat[p:p + w, p:p + h] = world._mat_map
        self._obj[p:p + w, p:p + h] = world._obj_map
        x, y = int(player.pos[0]), int(player.pos[1])
        r = win.radius
        mats = self._mat[x + p - r:x + p + r + 1, y + p - r:y + p + r + 1].ravel()[win.flat]
        hits = mats[None, :] == _SEEN_MATERIALS[:, None]
        first = hits.argmax(1)
        seen = hits[np.arange(len(first)), first]
        dists = np.where(seen, win.dists[first], NOT_SEEN)
        dirs = np.where(seen[:, None], win.units[first], 0.0)
        offsets = np.where(seen[:, None], win.offsets[first], 0)
        both = (dists < NOT_SEEN) & (self._last_dists < NOT_SEEN)
        approach = np.where(both, self._last_dists - dists, 0.0)
        self._last_dists = dists
        fx, fy = int(player.facing[0]), int(player.facing[1])
        facing_mat = int(self._mat[x + p + fx, y + p + fy])
        facing_obj = self._obj[x + p + fx, y + p + fy]
        facing_kind = type(world._objects[facing_obj]).__name__.lower() if facing_obj else ""

        inv, last, ach = player.inventory, self._last_inventory, player.achievements
        values: dict[str, Any] = {
            "health": inv["health"] / VITAL_MAX, "food": inv["food"] / VITAL_MAX,
            "drink": inv["drink"] / VITAL_MAX, "energy": inv["energy"] / VITAL_MAX,
            "daylight": float(world.daylight), "sleeping": float(player.sleeping),
            "player_pos": np.array(player.pos), "facing": (fx, fy),
        }
        for item in SHARED_ITEMS:
            values[f"inv_{item}"] = inv[item]
            values[f"inv_{item}_delta"] = inv[item] - last.get(item, inv[item])
        for i, m in enumerate(SHARED_MATERIALS):
            values[f"nearest_{m}_dist"] = dists[i]
            values[f"nearest_{m}_approach"] = approach[i]
            values[f"nearest_{m}_dir"] = dirs[i]
            values[f"facing_{m}"] = float(facing_mat == _SEEN_MATERIALS[i])
        self._offsets = {m: offsets[i] for i, m in enumerate(SHARED_MATERIALS)}

        objs = self._obj[x + p - r:x + p + r + 1, y + p - r:y + p + r + 1].ravel()[win.flat]
        near = np.flatnonzero(objs)
        counts = dict.fromkeys(CREATURES, 0)
        for c in CREATURES:
            values[f"nearest_{c}_dist"], values[f"nearest_{c}_dir"] = NOT_SEEN, (0.0, 0.0)
        for k in near.tolist():  # nearest first
            obj = world._objects[objs[k]]
            kind = type(obj).__name__.lower() if obj is not None else ""
            if kind in counts:
                if counts[kind] == 0:
                    values[f"nearest_{kind}_dist"], values[f"nearest_{kind}_dir"] = win.dists[k], win.units[k]
                counts[kind] += 1
        for c in CREATURES:
            values[f"{c}s_nearby"] = counts[c]
            values[f"facing_{c}"] = float(facing_kind == c)
        unlocked = [float(ach[a] > 0) for a in ACHIEVEMENTS]
        values["achievements"] = sum(unlocked)
        values.update({f"ach_{a}": u for a, u in zip(ACHIEVEMENTS, unlocked)})
        values["damage_taken"] = damage
        values["last_damage_source"] = self._last_source
        values["episode_step"] = self._core._step
        self._values = values

    def refresh_state(self) -> None:
        """Re-read the world after editing it by hand (tests, tools); steps and resets read it themselves."""
        self._sense(damage=0.0)

    def state_values(self) -> dict[str, Any]:
        """The StateView's raw values after the last reset/step (what the schema's reader returns)."""
        return self._values

    def nearest_offset(self, material: str) -> np.ndarray:
        """Integer (dx, dy) to the nearest ``material`` of SHARED_MATERIALS; (0, 0) when none is seen."""
        return self._offsets[material]

    def _observe(self, obs: Any) -> np.ndarray:
        if self.observation == "rgb":
            return np.ascontiguousarray(obs)
        return self._state_vector()

    def _state_vector(self) -> np.ndarray:
        v, world, player, p = self._values, self.world, self.player, self._pad
        out = np.zeros(self.observation_space.shape, np.float32)
        at = 0

        def put(values: Any) -> None:
            nonlocal at
            flat = np.asarray(values, np.float32).ravel()
            out[at:at + flat.size] = flat
            at += flat.size

        put([v[k] for k in VITALS])
        put([v[f"inv_{i}"] / ITEM_MAX for i in SHARED_ITEMS])
        put(v["facing"])
        for m in SHARED_MATERIALS:
            put([1.0 / v[f"nearest_{m}_dist"] if v[f"nearest_{m}_dist"] < NOT_SEEN else 0.0, *v[f"nearest_{m}_dir"]])
        for c in CREATURES:
            d = v[f"nearest_{c}_dist"]
            put([1.0 / d if d < NOT_SEEN else 0.0, *v[f"nearest_{c}_dir"], min(v[f"{c}s_nearby"], 4) / 4])
        put([v["daylight"], v["sleeping"]])
        put([v[f"ach_{a}"] for a in ACHIEVEMENTS])
        # The cells the image shows, one-hot: 12 materials, then 5 object kinds.
        (gx, gy), x, y = self._patch, int(player.pos[0]) + p, int(player.pos[1]) + p
        mats = self._mat[x - gx // 2:x - gx // 2 + gx, y - gy // 2:y - gy // 2 + gy]
        onehot = np.zeros((gx, gy, len(MATERIALS) + len(_PATCH_OBJECTS)), np.float32)
        onehot[..., :len(MATERIALS)] = np.eye(len(MATERIALS) + 1, dtype=np.float32)[mats][..., 1:]
        objs = self._obj[x - gx // 2:x - gx // 2 + gx, y - gy // 2:y - gy // 2 + gy]
        for i, j in zip(*np.nonzero(objs)):
            kind = type(world._objects[objs[i, j]]).__name__.lower()
            if kind in _PATCH_OBJECTS:
                onehot[i, j, len(MATERIALS) + _PATCH_OBJECTS.index(kind)] = 1.0
        put(onehot)
        return out


def state_observation_layout(patch: tuple[int, int] = (9, 7)) -> list[tuple[str, int, int]]:
    """``(name, start, stop)`` slices of the ``observation: state`` vector (float32, in [-1, 1]):
    vitals as fractions; inventory counts / 9; facing; per material of SHARED_MATERIALS
    (1/distance, 0 if unseen; direction x, y); per creature (1/distance, direction, count/4 capped
    at 1); daylight, sleeping; the 22 achievement flags; then the ``patch`` of cells the image
    shows, one-hot over the 12 materials and 5 object kinds (zombie, skeleton, cow, plant, arrow),
    x-major."""
    parts = [("vitals", 4), ("inventory", len(SHARED_ITEMS)), ("facing", 2), ("materials", 3 * len(SHARED_MATERIALS)),
             ("creatures", 4 * len(CREATURES)), ("daylight_sleeping", 2), ("achievements", len(ACHIEVEMENTS)),
             ("patch", patch[0] * patch[1] * (len(MATERIALS) + len(_PATCH_OBJECTS)))]
    layout, at = [], 0
    for name, n in parts:
        layout.append((name, at, at + n))
        at += n
    return layout


# ----------------------------------------------------------------------------- reference policy


def collect_wood_reference(env: Any) -> np.ndarray:
    """Scripted CollectWood solution: 'do' when facing a tree; otherwise step toward the nearest
    tree in the sensing window along its longer axis (the other one if that cell is blocked),
    which also turns the player to face a tree next to it; wander randomly when none is seen."""
    values = env.state_values()
    if values["facing_tree"]:
        return np.asarray(_DO)
    rng = env.np_random
    dx, dy = (int(v) for v in env.nearest_offset("tree"))
    if dx == 0 and dy == 0:
        return np.asarray(int(rng.integers(1, 5)))
    steps = [(int(np.sign(dx)), 0), (0, int(np.sign(dy)))]
    if abs(dy) > abs(dx):
        steps.reverse()
    steps = [s for s in steps if s != (0, 0)]
    if abs(dx) + abs(dy) == 1:
        return np.asarray(_MOVES[steps[0]])  # bumping into the tree turns the player to face it
    world, pos = env.world, env.player.pos
    for s in steps:
        material, obj = world[pos + np.asarray(s)]
        if material in _WALKABLE and obj is None:
            return np.asarray(_MOVES[s])
    return np.asarray(int(rng.integers(1, 5)))


# ----------------------------------------------------------------------------- adapter


def _options(spec: SimSpec) -> CrafterOptions:
    from workbench.spec import validate_sim_kwargs

    return validate_sim_kwargs(CrafterOptions, spec.kwargs)


class CrafterAdapter:
    """Crafter (``pip install "rl-workbench[crafter]"``), imported when an env is made."""

    name = "crafter"

    def env_ids(self) -> list[str]:
        return [FULL_GAME_ID, *sorted(TASK_IDS)]

    def _task(self, env_id: str) -> str | None:
        if env_id == FULL_GAME_ID:
            return None
        if env_id in TASK_IDS:
            return TASK_IDS[env_id]
        close = difflib.get_close_matches(env_id, self.env_ids(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise TaskError(f"unknown Crafter env {env_id!r}", key="sim.env_id",
                        hint=f"{hint}valid: {FULL_GAME_ID} (full game) or crafter/<Achievement>-v0, e.g. "
                             f"crafter/CollectWood-v0; all: `workbench list sims`")

    def make_env(self, spec: SimSpec, *, render_mode: str | None = None) -> gym.Env:
        task = self._task(spec.env_id)
        opts = _options(spec)
        if render_mode not in (None, "rgb_array"):
            raise TaskError(f"Crafter renders only rgb_array frames, not {render_mode!r}", key="render_mode",
                            hint="use render_mode='rgb_array' (videos and pixel rewards do)")
        _crafter()
        return CrafterEnv(task=task, observation=opts.observation, size=opts.size, area=opts.area, view=opts.view,
                          length=spec.max_episode_steps or opts.length, seed=opts.seed,
                          sense_radius=opts.sense_radius, render_size=opts.render_size, render_mode=render_mode)

    def profile(self, spec: SimSpec, env: gym.Env | None = None) -> TaskProfile:
        task = self._task(spec.env_id)
        radius = _options(spec).sense_radius
        schema = StateSchema(spec.env_id, _crafter_fields(radius), _read, _DOC)
        if task is None:
            success = SuccessMetric("at least {threshold:g} achievements unlocked by episode end",
                                    FULL_GAME_THRESHOLD, lambda s, t: float(s.achievements) >= t)
            return TaskProfile(spec.env_id, schema, success)
        success = SuccessMetric(f"{task} unlocked by episode end (ach_{task} >= {{threshold:g}})", 1.0,
                                lambda s, t, name=f"ach_{task}": float(s[name]) >= t)
        reference = collect_wood_reference if task == "collect_wood" else None
        return TaskProfile(spec.env_id, schema, success, reference=reference)


def _read(env: Any) -> Mapping[str, Any]:
    if not isinstance(env, CrafterEnv):
        raise RuntimeError("Crafter StateView read from an env not made by CrafterAdapter.make_env (adapter bug)")
    return env.state_values()
