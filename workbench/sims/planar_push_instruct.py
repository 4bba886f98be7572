"""PlanarPush with goals named in words: the MuJoCo instruction suite for vision-language-action policies.

Each episode draws one instruction ("push the puck to the left", ...) that names one of six goal
places on the table; the goal is that place (plus a little jitter) and the puck starts 8-15 cm from
it. The policy sees what a VLA sees: a camera image from above in which the goal marker is hidden
(only the words say where to push), the arm's joint state, and the instruction text.

Instructions come in two splits of the same goal places: ``train`` phrasings, which demonstrations
use, and ``heldout`` phrasings that no demonstration uses (paraphrases), for evaluation. The robot
faces +x; its left is +y. ``info["instruction"]`` carries the episode's instruction (``workbench
eval`` reports success per instruction from it); ``reset(options={"instruction": text})`` picks one,
``reset(seed=s)`` takes instruction ``s mod n`` of the split (so consecutive seeds cover it evenly),
and an unseeded reset draws one.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, replace
from typing import Any

import gymnasium
import mujoco
import numpy as np
from gymnasium.spaces import Box, Dict, Text

from workbench.sims.base import TaskProfile
from workbench.sims.instructions import SPLITS, choose_instruction, split_pairs
from workbench.sims.planar_push import (
    MAX_EPISODE_STEPS,
    PlanarPushEnv,
    _segment_distance_to_origin,
    planar_push_profile,
)

__all__ = ["ENV_ID", "GOALS", "Goal", "PlanarPushInstructEnv", "instructions", "profile", "register_env"]

ENV_ID = "workbench/PlanarPushInstruct-v0"
INSTRUCTION_LENGTH = 96
_CHARSET = string.ascii_letters + string.digits + " ,.'-"


@dataclass(frozen=True)
class Goal:
    """A goal place on the table (metres, robot frame) and the words that name it."""

    xy: tuple[float, float]
    train: tuple[str, ...]
    heldout: tuple[str, ...]


# Six places inside the goal ring PlanarPush allows (0.10-0.24 m from the shoulder, in front).
GOALS: dict[str, Goal] = {
    "left": Goal((0.06, 0.17), ("push the puck to the left", "move the puck over to the left side"),
                 ("slide the puck leftwards",)),
    "right": Goal((0.06, -0.17), ("push the puck to the right", "move the puck over to the right side"),
                  ("slide the puck rightwards",)),
    "far": Goal((0.22, 0.0), ("push the puck far away from the arm", "move the puck to the far edge"),
                ("shove the puck as far forward as possible",)),
    "near": Goal((0.12, 0.0), ("pull the puck close to the arm", "bring the puck near the base"),
                 ("drag the puck back toward the robot",)),
    "far left": Goal((0.17, 0.13), ("push the puck to the far left corner", "move the puck to the top left"),
                     ("put the puck in the distant left corner",)),
    "far right": Goal((0.17, -0.13), ("push the puck to the far right corner", "move the puck to the top right"),
                      ("put the puck in the distant right corner",)),
}

def instructions(split: str = "all") -> list[tuple[str, str]]:
    """(instruction, goal name) pairs of a split, in a fixed order."""
    return split_pairs(GOALS, split)


class PlanarPushInstructEnv(PlanarPushEnv):
    """PlanarPush whose goal is named by an instruction; observations are image, joints and words.

    ## Observation space
    ``Dict(image=Box(0, 255, (image_size, image_size, 3), uint8), proprio=Box(8,), instruction=Text)``:
    the overhead ``workspace`` camera (the arm's reach only) without the goal marker, the arm's (cos,
    sin) joint angles, joint velocities and fingertip position (dm), and the instruction. Rewards,
    success and the StateView are PlanarPush's.
    """

    def __init__(self, instructions: str = "train", image_size: int = 64, goal_jitter: float = 0.01,
                 **kwargs: Any):
        if instructions not in SPLITS:
            raise ValueError(f"instructions={instructions!r}: one of {', '.join(SPLITS)}")
        if not 16 <= int(image_size) <= 256:
            raise ValueError(f"image_size={image_size}: between 16 and 256 pixels")
        self._pairs = split_pairs(GOALS, instructions)  # the parameter shadows the module's instructions()
        self._image_size = int(image_size)
        self._goal_jitter = float(goal_jitter)
        self.instruction, self._goal_name = self._pairs[0]
        self._renderer: mujoco.Renderer | None = None
        super().__init__(**kwargs)
        self._goal_geom = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, "goal")
        self.observation_space = Dict({
            "image": Box(0, 255, (self._image_size, self._image_size, 3), np.uint8),
            "proprio": Box(-np.inf, np.inf, (8,), np.float32),
            "instruction": Text(INSTRUCTION_LENGTH, min_length=1, charset=_CHARSET),
        })

    @property
    def instruction_set(self) -> list[str]:
        """The instructions of this env's split (what a learner may train on)."""
        return [text for text, _ in self._pairs]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        seeded = seed
        if seed is not None:  # seed the draw below before MujocoEnv.reset samples the puck
            self._np_random, _ = gymnasium.utils.seeding.np_random(seed)
            seed = None
        self.instruction, self._goal_name = choose_instruction(self._pairs, GOALS, options, seeded, self.np_random)
        obs, info = super().reset(seed=seed, options=options)
        info["instruction"] = self.instruction
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        info["instruction"] = self.instruction
        return obs, reward, terminated, truncated, info

    def _sample_puck_and_goal(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.np_random
        goal = np.asarray(GOALS[self._goal_name].xy) + rng.uniform(-self._goal_jitter, self._goal_jitter, 2)
        for _ in range(10_000):
            lo, hi = self._puck_radius_range
            radius = np.sqrt(rng.uniform(lo**2, hi**2))
            bearing = rng.uniform(*self._puck_angle_range)
            puck = radius * np.array([np.cos(bearing), np.sin(bearing)])
            if (self._goal_distance_range[0] <= np.linalg.norm(goal - puck) <= self._goal_distance_range[1] + 0.03
                    and _segment_distance_to_origin(puck, goal) >= self._min_path_clearance):
                return puck, goal
        raise RuntimeError(f"no puck start for the goal {self._goal_name!r}; widen puck_radius_range")

    def _get_obs(self) -> Any:  # type: ignore[override]
        theta = self.data.qpos[:2]
        # the robot's own state, as VLA benchmarks give it (LIBERO: end-effector pose and gripper):
        # joint angles and velocities and the fingertip's position (dm, like PlanarPush's observation)
        proprio = np.concatenate([np.cos(theta), np.sin(theta), self.data.qvel[:2],
                                  10.0 * self.fingertip_xy]).astype(np.float32)
        return {"image": self._camera(), "proprio": proprio, "instruction": self.instruction}

    def _camera(self) -> np.ndarray:
        """The overhead camera with the goal marker hidden (the words alone say where the goal is)."""
        if not hasattr(self, "_goal_geom"):  # MujocoEnv.__init__ probes an observation before ours ran
            return np.zeros((self._image_size, self._image_size, 3), np.uint8)
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self._image_size, self._image_size)
        alpha = float(self.model.geom_rgba[self._goal_geom, 3])
        self.model.geom_rgba[self._goal_geom, 3] = 0.0
        try:
            self._renderer.update_scene(self.data, camera="workspace")
            return self._renderer.render().copy()
        finally:
            self.model.geom_rgba[self._goal_geom, 3] = alpha

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()


def register_env() -> None:
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point=f"{__name__}:PlanarPushInstructEnv",
                           max_episode_steps=MAX_EPISODE_STEPS)


def profile() -> TaskProfile:
    """PlanarPush's StateView, success metric and scripted pusher, under this env's id."""
    base = planar_push_profile()
    schema = replace(base.schema, task=ENV_ID, doc=base.schema.doc + " The goal is named by an instruction.")
    return TaskProfile(ENV_ID, schema, base.success, reference=base.reference)
