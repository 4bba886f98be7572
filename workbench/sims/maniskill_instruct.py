"""ManiSkill3 instruction suite for vision-language-action policies: ``ManiSkillInstruct-v0``.

One env, three ManiSkill3 tasks named in words: push the cube forward onto the target
(``PushCube-v1``), pull it back onto the target (``PullCube-v1``), pick it up and bring it to the
green point (``PickCube-v1``). Each reset picks a task by its instruction; the cube, the target and
(for PickCube) the goal height vary per episode as ManiSkill draws them. Instructions come in a
``train`` split (two phrasings per task, what demonstrations use) and a ``heldout`` split (one
paraphrase per task, for evaluation); ``all`` is both.

Observations: ``Dict(image=64x64 RGB, proprio=12, instruction=Text)``. The image is ManiSkill's
base_camera view (above the table's far side, looking back at the robot), goal markers visible; the
proprio vector is the Panda's 9 joint positions and the TCP position (m). Actions are ManiSkill's
``pd_ee_delta_pos``: (dx, dy, dz, gripper) in [-1, 1], shared by the three tasks. Rewards are the
active task's ``normalized_dense`` reward; an episode ends on that task's own success or after 50
steps (``sim.max_episode_steps``). The StateView holds what the three tasks share (TCP, cube, goal,
success) plus ``task``; the reference policy is the active task's scripted controller from
:mod:`workbench.sims.maniskill`.

Each task's SAPIEN scene is built the first time an instruction asks for it and kept (three at
most per env). Rendering needs a Vulkan device, as for every ManiSkill env (lavapipe on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, Dict, Text
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField

from workbench.sims.base import SuccessMetric, TaskProfile
from workbench.sims.instructions import SPLITS, choose_instruction, split_pairs
from workbench.spec import SimSpec
from workbench.state import Field, StateSchema

__all__ = ["ENV_ID", "TASKS", "SPLITS", "instructions", "ManiSkillInstructEnv", "InstructOptions", "profile"]

ENV_ID = "ManiSkillInstruct-v0"
MAX_EPISODE_STEPS = 50  # each ManiSkill task's own limit
INSTRUCTION_LENGTH = 96
_CHARSET = frozenset("abcdefghijklmnopqrstuvwxyz ,.'-")
# the camera: ManiSkill's own base_camera view of these tasks, above the table's far side looking
# back and down at the robot, so the arm does not hide the cube and the targets in front of it
_EYE, _TARGET = (0.3, 0.0, 0.6), (-0.1, 0.0, 0.1)


@dataclass(frozen=True)
class _Task:
    train: tuple[str, ...]
    heldout: tuple[str, ...]
    goal: str  # what "goal_pos" is in this task


TASKS: dict[str, _Task] = {
    "PushCube-v1": _Task(("push the cube forward onto the target", "slide the cube away from the robot into the goal"),
                         ("shove the cube ahead until it sits on the target",),
                         "the centre of the target disc on the table, ahead of the cube (+x)"),
    "PullCube-v1": _Task(("pull the cube back onto the target", "drag the cube toward the robot into the goal"),
                         ("draw the cube in to the target near the arm",),
                         "the centre of the target disc on the table, between the cube and the robot (-x)"),
    "PickCube-v1": _Task(("pick up the cube and bring it to the green point", "lift the cube to the goal marker"),
                         ("grab the cube and hold it at the green sphere",),
                         "the green point the cube's centre must reach (on or above the table)"),
}


def instructions(split: str = "all") -> list[tuple[str, str]]:
    """(instruction, ManiSkill env id) pairs of a split, in a fixed order."""
    return split_pairs(TASKS, split)


class InstructOptions(BaseModel):
    """The keys of ``sim.kwargs`` for ``ManiSkillInstruct-v0``."""

    model_config = ConfigDict(extra="forbid")
    instructions: str = PydanticField("train", description="train | heldout | all: the phrasings resets draw from")
    image_size: int = PydanticField(64, ge=16, le=256, description="camera image side (px)")

    def model_post_init(self, _: Any) -> None:
        if self.instructions not in SPLITS:
            raise ValueError(f"instructions must be one of {', '.join(SPLITS)}")


class ManiSkillInstructEnv(gym.Env):
    """Push, pull or pick the cube, as the instruction says (see the module docstring).

    ``reset(seed=s)`` picks instruction ``s % n`` of the split (consecutive seeds cover it evenly),
    ``reset(options={"instruction": text})`` a given one (of any split), an unseeded reset a random one.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, instructions: str = "train", image_size: int = 64, render_mode: str | None = None,
                 max_episode_steps: int = MAX_EPISODE_STEPS):
        options = InstructOptions(instructions=instructions, image_size=image_size)
        self._max_steps = int(max_episode_steps)
        self._pairs = split_pairs(TASKS, options.instructions)
        self._image_size = options.image_size
        self.render_mode = render_mode
        self._envs: dict[str, gym.Env] = {}
        self.instruction, self.task = self._pairs[0]
        self.observation_space = Dict({
            "image": Box(0, 255, (self._image_size, self._image_size, 3), np.uint8),
            "proprio": Box(-np.inf, np.inf, (12,), np.float32),
            "instruction": Text(INSTRUCTION_LENGTH, min_length=1, charset=_CHARSET),
        })
        self.action_space = Box(-1.0, 1.0, (4,), np.float32)

    @property
    def instruction_set(self) -> list[str]:
        """The instructions of this env's split (what a learner may train on)."""
        return [text for text, _ in self._pairs]

    @property
    def active(self) -> Any:
        """The ManiSkill env of the current instruction's task (its raw BaseEnv: live scene reads)."""
        return self._env(self.task).unwrapped

    def _env(self, env_id: str) -> gym.Env:
        if env_id not in self._envs:
            from mani_skill.utils import sapien_utils

            from workbench.sims.maniskill import make_task_env

            camera = {"width": self._image_size, "height": self._image_size,
                      "pose": sapien_utils.look_at(eye=list(_EYE), target=list(_TARGET))}
            spec = SimSpec(name="maniskill", env_id=env_id, max_episode_steps=self._max_steps)
            self._envs[env_id] = make_task_env(spec, render_mode="rgb_array", camera=camera)
        return self._envs[env_id]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.instruction, self.task = choose_instruction(self._pairs, TASKS, options, seed, self.np_random)
        inner_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        _, info = self._env(self.task).reset(seed=inner_seed)
        return self._obs(), {**info, "instruction": self.instruction, "task": self.task}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        _, reward, terminated, truncated, info = self._env(self.task).step(np.asarray(action, np.float32))
        return self._obs(), float(reward), bool(terminated), bool(truncated), {**info, "instruction": self.instruction,
                                                                                "task": self.task}

    def render(self) -> np.ndarray:
        return self._image()

    def _image(self) -> np.ndarray:
        frame = np.asarray(self._env(self.task).render())
        return np.ascontiguousarray(frame.reshape(self._image_size, self._image_size, 3), dtype=np.uint8)

    def _obs(self) -> dict[str, Any]:
        robot = self.active.agent
        qpos = robot.robot.get_qpos()[0].detach().cpu().numpy()
        tcp = robot.tcp.pose.p[0].detach().cpu().numpy()
        proprio = np.concatenate([qpos, tcp]).astype(np.float32)
        return {"image": self._image(), "proprio": proprio, "instruction": self.instruction}

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    @property
    def spec(self) -> gym.envs.registration.EnvSpec:  # type: ignore[override]
        """Re-makes this env (``env.spec.make()``, subprocess vector envs)."""
        return gym.envs.registration.EnvSpec(
            f"workbench-maniskill/{ENV_ID}", entry_point=f"{__name__}:ManiSkillInstructEnv",
            disable_env_checker=True, order_enforce=False,
            kwargs={"instructions": _split_name(self._pairs), "image_size": self._image_size,
                    "render_mode": self.render_mode, "max_episode_steps": self._max_steps})

    @spec.setter
    def spec(self, value: Any) -> None:  # gymnasium assigns env.spec in make(); ours is derived
        pass


def _split_name(pairs: list[tuple[str, str]]) -> str:
    return next(s for s in SPLITS if split_pairs(TASKS, s) == pairs)


# ----------------------------------------------------------------------------- StateView


def _fields() -> tuple[Field, ...]:
    world = "world frame"
    goals = "; ".join(f"{env_id}: {task.goal}" for env_id, task in TASKS.items())
    return (
        Field("task", (), "index", "which task the instruction names: 0 push (PushCube-v1), 1 pull (PullCube-v1), "
              "2 pick (PickCube-v1)"),
        Field("tcp_pos", (3,), "m", "tool centre point: midway between the Panda's fingertips", world),
        Field("gripper_width", (), "m", "distance between the two fingers: 0 closed .. 0.08 fully open"),
        Field("is_grasped", (), "0/1", "1.0 while both fingers press on the cube from opposite sides"),
        Field("cube_pos", (3,), "m", "centre of the cube (0.04 m edge)", world),
        Field("tcp_to_cube_dist", (), "m", "|cube_pos - tcp_pos|"),
        Field("goal_pos", (3,), "m", f"where the cube must go; {goals}", world),
        Field("cube_to_goal_dist", (), "m", "distance from the cube's centre to goal_pos: horizontal for push and "
              "pull (success below the disc's radius, 0.1 m), 3-D for pick (success below 0.025 m)"),
        Field("success", (), "0/1", "1.0 when the active task's own success condition holds now (ManiSkill's "
              "evaluate()['success']; the episode then terminates), else 0.0"),
    )


def _read(env: Any) -> dict[str, Any]:
    from workbench.sims.maniskill import _SCENES, _agent_values, _flag, _np

    raw = env.active
    values = _agent_values(raw)
    scene = _SCENES[env.task]
    cube = scene.grasp_target(raw)
    read = scene.read(raw)
    if env.task == "PickCube-v1":
        goal_dist = read["cube_to_goal_dist"]
    else:
        goal_dist = read["cube_to_goal_xy_dist"]
    return {"task": float(list(TASKS).index(env.task)), "tcp_pos": values["tcp_pos"],
            "gripper_width": values["gripper_width"], "is_grasped": _flag(raw.agent.is_grasping(cube)),
            "cube_pos": _np(cube.pose.p), "tcp_to_cube_dist": read["tcp_to_cube_dist"], "goal_pos": read["goal_pos"],
            "cube_to_goal_dist": goal_dist, "success": values["success"]}


def reference(env: Any) -> np.ndarray:
    """The active task's scripted controller (pd_ee_delta_pos), read from its live scene."""
    from workbench.sims.maniskill import _SCENES

    scripted = _SCENES[env.task].reference
    assert scripted is not None
    return scripted(env.active)


def profile() -> TaskProfile:
    doc = ("A Franka Panda at a table (ManiSkill3, SAPIEN CPU physics, 20 control steps per second) pushes, pulls or "
           "picks a cube as an instruction says. Actions (dx, dy, dz, gripper) in [-1, 1]: the TCP target moves "
           "0.1 m per unit along world x, y, z; gripper -1 closes, +1 opens.")
    schema = StateSchema(ENV_ID, _fields(), _read, doc)
    success = SuccessMetric("the named task's own success at episode end (success >= {threshold:g})", 1.0,
                            lambda s, t: float(s.success) >= t)
    return TaskProfile(ENV_ID, schema, success, reference=reference)
