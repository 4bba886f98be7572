"""ManiSkill3 adapter: table-top manipulation with a Panda arm on SAPIEN's CPU physics.

Env ids (asset-free, profiled here): ``PickCube-v1``, ``PushCube-v1``, ``PullCube-v1``,
``StackCube-v1``, and ``ManiSkillInstruct-v0``, the instruction suite of the first three for
vision-language-action policies (the end of this module). Each is one CPU env
(``sim_backend="cpu"``, ``num_envs=1``) behind ManiSkill's own ``CPUGymWrapper``: float32 state
observations (``obs_mode="state"``), numpy actions, no batch axis. Episodes end on the task's own
success (ManiSkill terminates on ``info["success"]``) or at the step limit (``sim.max_episode_steps``,
else the env's registered one: 50 for all four).

``sim.kwargs`` (all optional, see :class:`ManiSkillOptions`): ``control_mode`` (default
``pd_ee_delta_pos``: 3 end-effector position deltas, 0.1 m per unit, in the robot base frame —
axis-aligned with the world — plus the gripper, -1 close .. +1 open), ``reward_mode`` (the env's
own reward, ``info["reward/env"]``), ``render_size`` ([width, height] of ``render()`` frames,
default 224 x 224 — a reward-camera size; ManiSkill's own is 512 x 512).

The StateView is read from the live SAPIEN scene (actor and link poses, joint positions, the
agent's ``is_grasping`` contact test, the task's ``evaluate()``), never from the observation
vector. Success is ManiSkill's own ``evaluate()["success"]``, surfaced as the ``success`` field.

SAPIEN needs a Vulkan device even with no camera in the observation: here that is Mesa's lavapipe
(software Vulkan). :func:`vulkan_available` probes for one in a subprocess.
Envs that need downloaded assets (YCB objects, PartNet-Mobility, ...) are refused with the
download command: these machines cannot reach the asset servers.
"""

from __future__ import annotations

import difflib
import functools
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, Dict, Text
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField

from workbench.errors import MissingDependency, TaskError
from workbench.sims.base import SuccessMetric, TaskProfile
from workbench.sims.instructions import SPLITS, choose_instruction, split_pairs
from workbench.spec import SimSpec
from workbench.state import Field, StateSchema

__all__ = ["ManiSkillAdapter", "ManiSkillOptions", "vulkan_available", "DEFAULT_CONTROL_MODE",
           "DEFAULT_RENDER_SIZE", "VULKAN_HINT", "make_task_env", "INSTRUCT_ENV_ID", "INSTRUCT_TASKS",
           "instruction_pairs", "ManiSkillInstructEnv", "InstructOptions", "instruct_profile"]

DEFAULT_CONTROL_MODE = "pd_ee_delta_pos"
DEFAULT_RENDER_SIZE = (224, 224)  # (width, height) px
VULKAN_HINT = ("SAPIEN needs a Vulkan device even without cameras: `make install-dev` runs "
               "scripts/install_vulkan.sh (apt-get install -t bookworm-backports mesa-vulkan-drivers: "
               "Mesa 25 lavapipe; Debian 12's own lavapipe is rejected by SAPIEN)")
INSTRUCT_ENV_ID = "ManiSkillInstruct-v0"  # the instruction suite (the end of this module)
_EE_STEP = 0.1  # m of end-effector target motion per unit of a pd_ee_delta_pos action
_WORLD = "world frame"
_WORLD_DOC = ("World frame: the table top is z = 0, +z up; the robot base is at (-0.615, 0, 0) facing +x; "
              "cubes spawn within 0.1 m of the origin in x and y.")


class ManiSkillOptions(BaseModel):
    """The keys of ``sim.kwargs`` for ManiSkill."""

    model_config = ConfigDict(extra="forbid")
    control_mode: str = PydanticField(DEFAULT_CONTROL_MODE, description="the Panda controller, e.g. "
                                      "pd_ee_delta_pos, pd_ee_delta_pose, pd_joint_delta_pos")
    reward_mode: Literal["normalized_dense", "dense", "sparse", "none"] = PydanticField(
        "normalized_dense", description="ManiSkill's own reward (reported as reward/env)")
    render_size: tuple[int, int] = PydanticField(DEFAULT_RENDER_SIZE, description="render() frame [width, height] px")

    def model_post_init(self, _: Any) -> None:
        if min(self.render_size) < 16 or max(self.render_size) > 2048:
            raise ValueError("render_size must be [width, height] between 16 and 2048 px")


# ----------------------------------------------------------------------------- Vulkan probe

_PROBE = "import sapien.render as r; r.RenderSystem(); print(r.get_device_summary().splitlines()[0])"


@functools.cache
def vulkan_available() -> tuple[bool, str]:
    """(usable, reason): can SAPIEN open a Vulkan render device here? Probed once per process,
    in a subprocess, so a driver crash cannot take the caller down."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "probing SAPIEN's Vulkan device timed out after 120 s"
    if proc.returncode == 0:
        return True, proc.stdout.strip() or "Vulkan device found"
    lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit code {proc.returncode}"
    if "No module named" in last:
        return False, f"SAPIEN is not installed ({last}): pip install \"rl-workbench[maniskill]\""
    return False, f"SAPIEN found no usable Vulkan device ({last}); {VULKAN_HINT}"


# ----------------------------------------------------------------------------- live scene reads


def _np(tensor: Any) -> np.ndarray:
    """A ManiSkill tensor of one env (leading batch axis of 1) as float64 numpy."""
    return tensor[0].detach().cpu().numpy().astype(np.float64)


def _flag(tensor: Any) -> float:
    return float(bool(tensor.reshape(-1)[0]))


def _agent_values(env: Any) -> dict[str, Any]:
    agent = env.agent
    tcp = agent.tcp.pose
    qpos, qvel = _np(agent.robot.get_qpos()), _np(agent.robot.get_qvel())
    return {
        "tcp_pos": _np(tcp.p),
        "tcp_quat": _np(tcp.q),
        "gripper_width": qpos[-2] + qpos[-1],  # Panda: the two finger joints, 0 .. 0.04 m each
        "arm_joint_speed": float(np.max(np.abs(qvel[:-2]))),
        "success": _flag(env.evaluate()["success"]),
    }


def _agent_fields(target: str) -> tuple[Field, ...]:
    return (
        Field("tcp_pos", (3,), "m", "tool centre point: midway between the Panda's fingertips", _WORLD),
        Field("tcp_quat", (4,), "quaternion (w, x, y, z)", "TCP orientation; the gripper starts pointing "
              "straight down, about (0, 1, 0, 0)", _WORLD),
        Field("gripper_width", (), "m", "distance between the two fingers: 0 closed .. 0.08 fully open"),
        Field("arm_joint_speed", (), "rad/s", "largest |velocity| of the 7 arm joints; below 0.2 the "
              "robot counts as static"),
        Field("is_grasped", (), "0/1", f"1.0 while both fingers press on the {target} from opposite sides "
              "(ManiSkill's agent.is_grasping), else 0.0"),
        Field("success", (), "0/1", "1.0 when the task's own success condition holds now "
              "(ManiSkill's evaluate()['success'], the episode then terminates), else 0.0"),
    )


def _cube_values(prefix: str, actor: Any, half: float, tcp: np.ndarray) -> dict[str, Any]:
    pos = _np(actor.pose.p)
    return {
        f"{prefix}_pos": pos,
        f"{prefix}_quat": _np(actor.pose.q),
        f"tcp_to_{prefix}": pos - tcp,
        f"tcp_to_{prefix}_dist": float(np.linalg.norm(pos - tcp)),
        f"{prefix}_height": pos[2] - half,
    }


def _cube_fields(prefix: str, what: str, half: float) -> tuple[Field, ...]:
    return (
        Field(f"{prefix}_pos", (3,), "m", f"centre of the {what} ({2 * half:g} m edge)", _WORLD),
        Field(f"{prefix}_quat", (4,), "quaternion (w, x, y, z)", f"orientation of the {what}", _WORLD),
        Field(f"tcp_to_{prefix}", (3,), "m", f"{prefix}_pos - tcp_pos", _WORLD),
        Field(f"tcp_to_{prefix}_dist", (), "m", f"|{prefix}_pos - tcp_pos|"),
        Field(f"{prefix}_height", (), "m", f"height of the {what}'s bottom above the table: "
              f"{prefix}_pos[2] - {half:g}; 0 while it rests on the table"),
    )


# ----------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class _Scene:
    """What the workbench knows about one ManiSkill env id."""

    doc: str
    fields: Callable[[Any], tuple[Field, ...]]  # live env -> task fields (docs quote its constants)
    read: Callable[[Any], dict[str, Any]]  # live env -> task values
    grasp_target: Callable[[Any], Any]  # live env -> the actor is_grasped refers to
    reference: Callable[[Any], np.ndarray] | None  # for pd_ee_delta_pos only
    success_doc: str


def _pick_fields(env: Any) -> tuple[Field, ...]:
    half = float(env.cube_half_size)
    return (*_cube_fields("cube", "red cube", half),
            Field("goal_pos", (3,), "m", "where the cube's centre must be brought (a point in the air or on "
                  "the table)", _WORLD),
            Field("cube_to_goal", (3,), "m", "goal_pos - cube_pos", _WORLD),
            Field("cube_to_goal_dist", (), "m", f"|goal_pos - cube_pos|; success needs <= {env.goal_thresh:g}"))


def _pick_read(env: Any) -> dict[str, Any]:
    tcp = _np(env.agent.tcp.pose.p)
    goal = _np(env.goal_site.pose.p)
    values = _cube_values("cube", env.cube, float(env.cube_half_size), tcp)
    return {**values, "goal_pos": goal, "cube_to_goal": goal - values["cube_pos"],
            "cube_to_goal_dist": float(np.linalg.norm(goal - values["cube_pos"]))}


def _slide_fields(direction: int) -> Callable[[Any], tuple[Field, ...]]:
    """PushCube (direction +1: the goal is ahead in +x) and PullCube (-1: the goal is toward the robot)."""
    verb, side = ("push", "behind (-x side of)") if direction > 0 else ("pull", "in front of (+x side of)")

    def fields(env: Any) -> tuple[Field, ...]:
        half = float(env.cube_half_size)
        return (*_cube_fields("cube", "cube", half),
                Field("goal_pos", (3,), "m", f"centre of the flat goal disc on the table (radius "
                      f"{env.goal_radius:g} m), {0.1 + env.goal_radius:g} m from the cube's start along "
                      f"{'+x' if direction > 0 else '-x'}", _WORLD),
                Field("cube_to_goal_xy_dist", (), "m", "horizontal distance from the cube's centre to the goal "
                      f"centre; success needs < {env.goal_radius:g}" + (" with the cube still on the table"
                                                                      if direction > 0 else "")),
                Field(f"{verb}_pos", (3,), "m", f"where the TCP should be to {verb} the cube toward the goal: "
                      f"just {side} the cube, at its centre height", _WORLD),
                Field(f"tcp_to_{verb}_pos_dist", (), "m", f"|{verb}_pos - tcp_pos|"))
    return fields


def _slide_read(direction: int) -> Callable[[Any], dict[str, Any]]:
    verb = "push" if direction > 0 else "pull"

    def read(env: Any) -> dict[str, Any]:
        half = float(env.cube_half_size)
        tcp = _np(env.agent.tcp.pose.p)
        values = _cube_values("cube", env.obj, half, tcp)
        goal = _np(env.goal_region.pose.p)
        contact = values["cube_pos"] - np.array([direction * (half + 0.005), 0.0, 0.0])
        return {**values, "goal_pos": goal,
                "cube_to_goal_xy_dist": float(np.linalg.norm(goal[:2] - values["cube_pos"][:2])),
                f"{verb}_pos": contact, f"tcp_to_{verb}_pos_dist": float(np.linalg.norm(contact - tcp))}
    return read


def _stack_fields(env: Any) -> tuple[Field, ...]:
    half = float(env.cube_half_size[2])
    return (*_cube_fields("cube_a", "red cube A (the one to pick up)", half),
            Field("cube_b_pos", (3,), "m", f"centre of the green cube B (stays on the table; {2 * half:g} m edge)",
                  _WORLD),
            Field("cube_b_quat", (4,), "quaternion (w, x, y, z)", "orientation of cube B", _WORLD),
            Field("place_pos", (3,), "m", f"where cube A's centre belongs: cube_b_pos + (0, 0, {2 * half:g}), "
                  "right on top of B", _WORLD),
            Field("cube_a_to_place", (3,), "m", "place_pos - cube_a_pos", _WORLD),
            Field("cube_a_to_place_dist", (), "m", "|place_pos - cube_a_pos|"),
            Field("cube_a_on_b", (), "0/1", "1.0 when A sits on B (xy within 0.033 m, height within 5 mm)"),
            Field("cube_a_speed", (), "m/s", "linear speed of cube A"))


def _stack_read(env: Any) -> dict[str, Any]:
    half = float(env.cube_half_size[2])
    tcp = _np(env.agent.tcp.pose.p)
    values = _cube_values("cube_a", env.cubeA, half, tcp)
    b = _np(env.cubeB.pose.p)
    place = b + np.array([0.0, 0.0, 2 * half])
    offset = values["cube_a_pos"] - b
    on_b = np.linalg.norm(offset[:2]) <= np.linalg.norm(np.asarray(env.cube_half_size.cpu())[:2]) + 0.005 \
        and abs(offset[2] - 2 * half) <= 0.005  # StackCube-v1's own test (its evaluate())
    return {**values, "cube_b_pos": b, "cube_b_quat": _np(env.cubeB.pose.q), "place_pos": place,
            "cube_a_to_place": place - values["cube_a_pos"],
            "cube_a_to_place_dist": float(np.linalg.norm(place - values["cube_a_pos"])),
            "cube_a_on_b": float(on_b), "cube_a_speed": float(np.linalg.norm(_np(env.cubeA.linear_velocity)))}


# ----------------------------------------------------------------------------- reference policies
# Proportional controllers for pd_ee_delta_pos, read from the live scene. Stateless: the phase
# follows from where the TCP and the cube are, so they recover when a grasp slips.


def _toward(tcp: np.ndarray, target: np.ndarray, gripper: float, gain: float = 1.0) -> np.ndarray:
    delta = np.clip(gain * (target - tcp) / _EE_STEP, -1.0, 1.0)
    return np.array([*delta, gripper], dtype=np.float32)


def _pick_and_hold(env: Any, cube: Any, half: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(tcp, cube, action): the action to grasp the cube, or None once it is held."""
    tcp, pos = _np(env.agent.tcp.pose.p), _np(cube.pose.p)
    if bool(env.agent.is_grasping(cube)[0]):
        return tcp, pos, None
    xy_off = np.linalg.norm(pos[:2] - tcp[:2])
    if np.linalg.norm(pos - tcp) < 0.01:  # fingers around the cube: close
        return tcp, pos, _toward(tcp, pos, -1.0)
    if xy_off > 0.01 and tcp[2] < pos[2] + half + 0.01:  # low but off to the side: rise first
        return tcp, pos, _toward(tcp, np.array([*tcp[:2], pos[2] + 2 * half + 0.02]), 1.0)
    if xy_off > 0.005:  # above the cube: line up
        return tcp, pos, _toward(tcp, np.array([*pos[:2], max(tcp[2], pos[2] + 2 * half)]), 1.0)
    return tcp, pos, _toward(tcp, pos, 1.0)  # descend with the gripper open


def pick_cube_reference(env: Any) -> np.ndarray:
    """PickCube-v1: line up above the cube, descend, close, carry the cube to the goal and hold still."""
    tcp, cube, action = _pick_and_hold(env, env.cube, float(env.cube_half_size))
    if action is not None:
        return action
    goal = _np(env.goal_site.pose.p)
    return _toward(tcp, tcp + (goal - cube), -1.0)


def _slide_reference(direction: int) -> Callable[[Any], np.ndarray]:
    def reference(env: Any) -> np.ndarray:
        half = float(env.cube_half_size)
        tcp, cube, goal = _np(env.agent.tcp.pose.p), _np(env.obj.pose.p), _np(env.goal_region.pose.p)
        contact = cube - np.array([direction * (half + 0.01), 0.0, 0.0])
        behind = direction * (contact[0] - tcp[0]) > -0.01  # on the side away from the goal
        if not behind or abs(tcp[1] - cube[1]) > 0.01:  # get behind the cube, over the top of it
            beside = bool(np.all(np.abs(tcp[:2] - cube[:2]) < half + 0.02))
            if beside and tcp[2] < cube[2] + half + 0.02:  # rise first, not through the cube
                return _toward(tcp, np.array([*tcp[:2], cube[2] + 2 * half + 0.04]), -1.0)
            height = tcp[2] if behind else max(tcp[2], cube[2] + half + 0.03)
            return _toward(tcp, np.array([*contact[:2], height]), -1.0)
        if tcp[2] > cube[2] + 0.01:  # behind the cube: descend to its centre height
            return _toward(tcp, np.array([*contact[:2], cube[2]]), -1.0)
        target = np.array([goal[0] - direction * (half + 0.01), cube[1], cube[2]])
        return _toward(tcp, target, -1.0, gain=0.5)
    reference.__doc__ = ("PushCube-v1: get behind the cube (-x side), lower the closed gripper, push it to the "
                         "goal centre." if direction > 0 else
                         "PullCube-v1: get in front of the cube (+x side), lower the closed gripper, pull it "
                         "back to the goal centre.")
    return reference


def stack_cube_reference(env: Any) -> np.ndarray:
    """StackCube-v1: pick cube A, carry it above cube B, lower it onto B, open and back off."""
    half = float(env.cube_half_size[2])
    b = _np(env.cubeB.pose.p)
    place = b + np.array([0.0, 0.0, 2 * half])
    a = _np(env.cubeA.pose.p)
    tcp = _np(env.agent.tcp.pose.p)
    if np.linalg.norm(a - place) < 0.01:  # on B: let go and lift away
        return _toward(tcp, np.array([*tcp[:2], place[2] + 0.1]), 1.0)
    tcp, a, action = _pick_and_hold(env, env.cubeA, half)
    if action is not None:
        return action
    if np.linalg.norm(a[:2] - place[:2]) > 0.01:  # carry it high enough to clear B
        return _toward(tcp, tcp + np.array([*(place[:2] - a[:2]), max(place[2] + 0.03 - a[2], 0.0)]), -1.0)
    return _toward(tcp, tcp + (place - a), -1.0)


_ROBOT_DOC = (_WORLD_DOC + " A Franka Panda arm on a table, one env on SAPIEN's CPU physics at 20 control steps per "
              "second. With the default control mode pd_ee_delta_pos an action is (dx, dy, dz, gripper) in "
              "[-1, 1]: the TCP target moves by 0.1 m per unit along world x, y, z; gripper -1 closes, +1 opens.")
_SCENES: dict[str, _Scene] = {
    "PickCube-v1": _Scene(
        "Pick up the red cube and move it to the goal position (a point up to 0.3 m above the table), then "
        "hold still. " + _ROBOT_DOC, _pick_fields, _pick_read, lambda env: env.cube, pick_cube_reference,
        "the cube's centre within 0.025 m of the goal and the robot static"),
    "PushCube-v1": _Scene(
        "Push the cube along the table (+x, away from the robot) into the goal disc. " + _ROBOT_DOC,
        _slide_fields(+1), _slide_read(+1), lambda env: env.obj, _slide_reference(+1),
        "the cube's centre within 0.1 m (xy) of the goal disc's centre, still on the table"),
    "PullCube-v1": _Scene(
        "Pull the cube along the table (-x, toward the robot) into the goal disc. " + _ROBOT_DOC,
        _slide_fields(-1), _slide_read(-1), lambda env: env.obj, _slide_reference(-1),
        "the cube's centre within 0.1 m (xy) of the goal disc's centre"),
    "StackCube-v1": _Scene(
        "Pick up the red cube A and place it on top of the green cube B, then let go. " + _ROBOT_DOC,
        _stack_fields, _stack_read, lambda env: env.cubeA, stack_cube_reference,
        "cube A resting on cube B, static and not grasped"),
}


class _Values(Mapping[str, Any]):
    """The reader's values; ``is_grasped`` is computed only when asked for: the agent's contact
    test costs ~0.7 ms, a fifth of an env step, and most reads (a reward program's declared
    inputs) do not need it."""

    def __init__(self, values: dict[str, Any], is_grasped: Callable[[], float]):
        self._values, self._is_grasped = values, is_grasped

    def __getitem__(self, name: str) -> Any:
        if name == "is_grasped" and name not in self._values:
            self._values[name] = self._is_grasped()
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*self._values, *(() if "is_grasped" in self._values else ("is_grasped",))])

    def __len__(self) -> int:
        return len(self._values) + ("is_grasped" not in self._values)


def _reader(scene: _Scene) -> Callable[[Any], Mapping[str, Any]]:
    def read(env: Any) -> Mapping[str, Any]:
        target = scene.grasp_target(env)
        return _Values({**_agent_values(env), **scene.read(env)},
                       lambda: _flag(env.agent.is_grasping(target)))
    return read


def _success(scene: _Scene) -> SuccessMetric:
    return SuccessMetric(f"ManiSkill's own success at episode end: {scene.success_doc} (success >= {{threshold:g}})",
                         1.0, lambda s, t: float(s.success) >= t)


# ----------------------------------------------------------------------------- wrapper


def _cpu_env(env: gym.Env, sim: SimSpec, render_mode: str | None) -> gym.Env:
    """ManiSkill's CPUGymWrapper (numpy, no batch axis), plus gymnasium's seeding contract and a
    spec that re-makes this env (``env.spec.make()``; ManiSkill's own time limit cannot)."""
    from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper

    class ManiSkillCPUEnv(CPUGymWrapper):
        """``reset(seed=s)`` also seeds ``env.unwrapped.np_random``, as gymnasium's ``Env.reset`` does:
        ManiSkill draws from its own episode RNGs (seeded by the same call) and leaves it unseeded."""

        metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # offscreen only; 20 Hz control

        def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
            if seed is not None:
                raw = self.env.unwrapped
                raw._np_random, raw._np_random_seed = gym.utils.seeding.np_random(seed)
            return super().reset(seed=seed, options=options)

        @property
        def spec(self) -> gym.envs.registration.EnvSpec:
            return gym.envs.registration.EnvSpec(
                f"workbench-maniskill/{sim.env_id}", entry_point=_remake, disable_env_checker=True,
                order_enforce=False, kwargs={"sim": sim.model_dump(), "render_mode": render_mode})

    return ManiSkillCPUEnv(env)


def _remake(sim: dict[str, Any], render_mode: str | None = None) -> gym.Env:
    return ManiSkillAdapter().make_env(SimSpec.model_validate(sim), render_mode=render_mode)


# ----------------------------------------------------------------------------- adapter


def _options(spec: SimSpec) -> ManiSkillOptions:
    from workbench.spec import validate_sim_kwargs

    return validate_sim_kwargs(ManiSkillOptions, spec.kwargs)


def _registry() -> dict[str, Any]:
    try:
        import mani_skill.envs  # noqa: F401  (registers the envs)
        from mani_skill.utils.registration import REGISTERED_ENVS
    except ImportError:
        raise MissingDependency("the ManiSkill simulator", "maniskill", "mani-skill") from None
    return REGISTERED_ENVS


def _check_env_id(env_id: str, registered: dict[str, Any], profiled: list[str]) -> None:
    if env_id in _SCENES:
        return
    spec = registered.get(env_id)
    if spec is not None and spec.asset_download_ids:
        ids = " ".join(spec.asset_download_ids)
        raise TaskError(f"{env_id} needs downloaded assets ({ids}), which cannot be fetched on these machines "
                        "(no internet)", key="sim.env_id",
                        hint=f"pick an asset-free env: {', '.join(profiled)}; with internet, "
                             f"`python -m mani_skill.utils.download_asset {env_id}` downloads them, but the "
                             "workbench has no StateView profile for it yet")
    if spec is not None:
        raise TaskError(f"ManiSkill env {env_id} has no workbench profile (StateView and success metric)",
                        key="sim.env_id", hint=f"profiled ManiSkill envs: {', '.join(profiled)}")
    close = difflib.get_close_matches(env_id, profiled, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise TaskError(f"unknown ManiSkill env {env_id!r}", key="sim.env_id",
                    hint=f"{hint}profiled ManiSkill envs: {', '.join(profiled)}")


def make_task_env(spec: SimSpec, *, render_mode: str | None = None, camera: dict[str, Any] | None = None) -> gym.Env:
    """One profiled ManiSkill env; ``camera`` overrides the render camera's config (e.g. its pose)."""
    opts = _options(spec)
    registered = _registry()
    _check_env_id(spec.env_id, registered, ManiSkillAdapter().env_ids())
    if render_mode not in (None, "rgb_array"):
        raise TaskError(f"render_mode {render_mode!r} is not supported", key="render_mode",
                        hint="ManiSkill renders offscreen here: use rgb_array")
    width, height = opts.render_size
    step_limit = spec.max_episode_steps or registered[spec.env_id].max_episode_steps
    try:
        env = gym.make(spec.env_id, obs_mode="state", sim_backend="cpu", render_backend="cpu", num_envs=1,
                       control_mode=opts.control_mode, reward_mode=opts.reward_mode, render_mode=render_mode,
                       human_render_camera_configs={"width": width, "height": height, **(camera or {})},
                       max_episode_steps=step_limit,
                       # Unseeded resets draw their episode seed from the last seed given, so a
                       # seeded run is reproducible (by default they use torch's global RNG).
                       enhanced_determinism=True)
    except AssertionError as err:  # ManiSkill's own checks, e.g. an unsupported control mode
        raise TaskError(f"ManiSkill could not make {spec.env_id}: {err}", key="sim.kwargs.control_mode"
                        if "control" in str(err) else "sim.kwargs",
                        hint="pick one of the supported modes it lists") from None
    except RuntimeError as err:
        text = str(err)
        if any(s in text.lower() for s in ("vk::", "vulkan", "rendering device")):  # SAPIEN's words
            raise TaskError(f"SAPIEN found no usable Vulkan device: {text}", key="sim.name",
                            hint=VULKAN_HINT) from None
        raise
    return _cpu_env(env, spec, render_mode)


class ManiSkillAdapter:
    """ManiSkill3 (``pip install "rl-workbench[maniskill]"``), imported when an env is made."""

    name = "maniskill"

    def env_ids(self) -> list[str]:
        return sorted([*_SCENES, INSTRUCT_ENV_ID])

    def make_env(self, spec: SimSpec, *, render_mode: str | None = None) -> gym.Env:
        if spec.env_id == INSTRUCT_ENV_ID:  # the instruction suite: three of the envs below behind one
            from workbench.spec import validate_sim_kwargs

            _registry()

            opts = validate_sim_kwargs(InstructOptions, spec.kwargs)
            return ManiSkillInstructEnv(opts.instructions, opts.image_size, render_mode=render_mode,
                                        max_episode_steps=spec.max_episode_steps or 50)
        return make_task_env(spec, render_mode=render_mode)

    def profile(self, spec: SimSpec, env: gym.Env | None = None) -> TaskProfile:
        if spec.env_id == INSTRUCT_ENV_ID:
            return instruct_profile()
        opts = _options(spec)
        scene = _SCENES.get(spec.env_id)
        if scene is None:
            _check_env_id(spec.env_id, _registry(), self.env_ids())  # raises the clear error
            raise AssertionError("unreachable")
        own = env or self.make_env(spec)  # the field docs quote the live env's constants
        try:
            target = "cube A" if spec.env_id == "StackCube-v1" else "cube"
            fields = (*_agent_fields(target), *scene.fields(own.unwrapped))
        finally:
            if env is None:
                own.close()
        schema = StateSchema(spec.env_id, fields, _reader(scene), scene.doc)
        reference = scene.reference if opts.control_mode == DEFAULT_CONTROL_MODE else None
        return TaskProfile(spec.env_id, schema, _success(scene), reference=reference)

# ----------------------------------------------------------------------------- instruction suite
# ManiSkill3 instruction suite for vision-language-action policies: ``ManiSkillInstruct-v0``.
#
# One env, three ManiSkill3 tasks named in words: push the cube forward onto the target
# (``PushCube-v1``), pull it back onto the target (``PullCube-v1``), pick it up and bring it to the
# green point (``PickCube-v1``). Each reset picks a task by its instruction; the cube, the target and
# (for PickCube) the goal height vary per episode as ManiSkill draws them. Instructions come in a
# ``train`` split (two phrasings per task, what demonstrations use) and a ``heldout`` split (one
# paraphrase per task, for evaluation); ``all`` is both.
#
# Observations: ``Dict(image=64x64 RGB, proprio=12, instruction=Text)``. The image is ManiSkill's
# base_camera view (above the table's far side, looking back at the robot), goal markers visible; the
# proprio vector is the Panda's 9 joint positions and the TCP position (m). Actions are ManiSkill's
# ``pd_ee_delta_pos``: (dx, dy, dz, gripper) in [-1, 1], shared by the three tasks. Rewards are the
# active task's ``normalized_dense`` reward; an episode ends on that task's own success or after 50
# steps (``sim.max_episode_steps``). The StateView holds what the three tasks share (TCP, cube, goal,
# success) plus ``task``; the reference policy is the active task's scripted controller (above).
#
# Each task's SAPIEN scene is built the first time an instruction asks for it and kept (three at
# most per env). Rendering needs a Vulkan device, as for every ManiSkill env (lavapipe on CPU).


INSTRUCT_MAX_STEPS = 50  # each ManiSkill task's own limit
INSTRUCTION_LENGTH = 96
_CHARSET = frozenset("abcdefghijklmnopqrstuvwxyz ,.'-")
# the camera: ManiSkill's own base_camera view of these tasks, above the table's far side looking
# back and down at the robot, so the arm does not hide the cube and the targets in front of it
_EYE, _TARGET = (0.3, 0.0, 0.6), (-0.1, 0.0, 0.1)


@dataclass(frozen=True)
class _InstructTask:
    train: tuple[str, ...]
    heldout: tuple[str, ...]
    goal: str  # what "goal_pos" is in this task


INSTRUCT_TASKS: dict[str, _InstructTask] = {
    "PushCube-v1": _InstructTask(
        ("push the cube forward onto the target", "slide the cube away from the robot into the goal"),
        ("shove the cube ahead until it sits on the target",),
        "the centre of the target disc on the table, ahead of the cube (+x)"),
    "PullCube-v1": _InstructTask(
        ("pull the cube back onto the target", "drag the cube toward the robot into the goal"),
        ("draw the cube in to the target near the arm",),
        "the centre of the target disc on the table, between the cube and the robot (-x)"),
    "PickCube-v1": _InstructTask(
        ("pick up the cube and bring it to the green point", "lift the cube to the goal marker"),
        ("grab the cube and hold it at the green sphere",),
        "the green point the cube's centre must reach (on or above the table)"),
}


def instruction_pairs(split: str = "all") -> list[tuple[str, str]]:
    """(instruction, ManiSkill env id) pairs of a split, in a fixed order."""
    return split_pairs(INSTRUCT_TASKS, split)


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
                 max_episode_steps: int = INSTRUCT_MAX_STEPS):
        options = InstructOptions(instructions=instructions, image_size=image_size)
        self._max_steps = int(max_episode_steps)
        self._pairs = split_pairs(INSTRUCT_TASKS, options.instructions)
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

            camera = {"width": self._image_size, "height": self._image_size,
                      "pose": sapien_utils.look_at(eye=list(_EYE), target=list(_TARGET))}
            spec = SimSpec(name="maniskill", env_id=env_id, max_episode_steps=self._max_steps)
            self._envs[env_id] = make_task_env(spec, render_mode="rgb_array", camera=camera)
        return self._envs[env_id]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.instruction, self.task = choose_instruction(self._pairs, INSTRUCT_TASKS, options, seed, self.np_random)
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
            f"workbench-maniskill/{INSTRUCT_ENV_ID}", entry_point=f"{__name__}:ManiSkillInstructEnv",
            disable_env_checker=True, order_enforce=False,
            kwargs={"instructions": _split_name(self._pairs), "image_size": self._image_size,
                    "render_mode": self.render_mode, "max_episode_steps": self._max_steps})

    @spec.setter
    def spec(self, value: Any) -> None:  # gymnasium assigns env.spec in make(); ours is derived
        pass


def _split_name(pairs: list[tuple[str, str]]) -> str:
    return next(s for s in SPLITS if split_pairs(INSTRUCT_TASKS, s) == pairs)


# ----------------------------------------------------------------------------- StateView


def _instruct_fields() -> tuple[Field, ...]:
    world = "world frame"
    goals = "; ".join(f"{env_id}: {task.goal}" for env_id, task in INSTRUCT_TASKS.items())
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


def _instruct_read(env: Any) -> dict[str, Any]:
    raw = env.active
    values = _agent_values(raw)
    scene = _SCENES[env.task]
    cube = scene.grasp_target(raw)
    read = scene.read(raw)
    if env.task == "PickCube-v1":
        goal_dist = read["cube_to_goal_dist"]
    else:
        goal_dist = read["cube_to_goal_xy_dist"]
    return {"task": float(list(INSTRUCT_TASKS).index(env.task)), "tcp_pos": values["tcp_pos"],
            "gripper_width": values["gripper_width"], "is_grasped": _flag(raw.agent.is_grasping(cube)),
            "cube_pos": _np(cube.pose.p), "tcp_to_cube_dist": read["tcp_to_cube_dist"], "goal_pos": read["goal_pos"],
            "cube_to_goal_dist": goal_dist, "success": values["success"]}


def instruct_reference(env: Any) -> np.ndarray:
    """The active task's scripted controller (pd_ee_delta_pos), read from its live scene."""
    scripted = _SCENES[env.task].reference
    assert scripted is not None
    return scripted(env.active)


def instruct_profile() -> TaskProfile:
    doc = ("A Franka Panda at a table (ManiSkill3, SAPIEN CPU physics, 20 control steps per second) pushes, pulls or "
           "picks a cube as an instruction says. Actions (dx, dy, dz, gripper) in [-1, 1]: the TCP target moves "
           "0.1 m per unit along world x, y, z; gripper -1 closes, +1 opens.")
    schema = StateSchema(INSTRUCT_ENV_ID, _instruct_fields(), _instruct_read, doc)
    success = SuccessMetric("the named task's own success at episode end (success >= {threshold:g})", 1.0,
                            lambda s, t: float(s.success) >= t)
    return TaskProfile(INSTRUCT_ENV_ID, schema, success, reference=instruct_reference)
