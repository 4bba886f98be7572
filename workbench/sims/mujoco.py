"""MuJoCo adapter: every gymnasium MuJoCo v5 env by id, plus the workbench's own MJCF tasks.

Each known env has a :class:`TaskProfile`: a StateView read from the live ``MjData`` and a
success metric. Unknown MuJoCo envs still work with a generic StateView (``qpos``, ``qvel``)
and no success metric.
"""

from __future__ import annotations

import difflib
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import gymnasium as gym
import numpy as np

from workbench.errors import TaskError
from workbench.sims.base import SuccessMetric, TaskProfile
from workbench.spec import SimSpec
from workbench.state import Field, StateSchema

__all__ = ["MujocoAdapter", "GYMNASIUM_V5_IDS", "check_xml_file"]

GYMNASIUM_V5_IDS = (
    "Ant-v5", "HalfCheetah-v5", "Hopper-v5", "Humanoid-v5", "HumanoidStandup-v5",
    "InvertedDoublePendulum-v5", "InvertedPendulum-v5", "Pusher-v5", "Reacher-v5",
    "Swimmer-v5", "Walker2d-v5",
)

# ----------------------------------------------------------------------------- fields


def _joint_fields(n_angles: int, n_vel: int, what: str) -> tuple[Field, Field]:
    return (
        Field("joint_angles", (n_angles,), "rad", f"angles of the {what} hinge joints", "joint space"),
        Field("joint_velocities", (n_vel,), "rad/s", f"angular velocities of the {what} hinge joints", "joint space"),
    )


def _generalized(nq: int, nv: int) -> tuple[Field, Field]:
    return (
        Field("qpos", (nq,), "m or rad", "MuJoCo generalized positions (free joints: xyz then quaternion)",
              "generalized"),
        Field("qvel", (nv,), "m/s or rad/s", "MuJoCo generalized velocities", "generalized"),
    )


def _load_llvm_users_first() -> None:
    """Import triton (torch's compiler; torchvision and open_clip pull it in) before the first
    software-GL render: Mesa's llvmpipe and triton each carry LLVM, and triton imported after
    llvmpipe is loaded segfaults the process. In this order both work."""
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def _com(env: Any, body: str) -> np.ndarray:
    """World position of a body's frame, as ``env.get_body_com`` gives, with the name lookup
    cached on the env (the StateView is read every env step; the env owns its model)."""
    ids = env.__dict__.setdefault("_workbench_body_ids", {})
    bid = ids.get(body)
    if bid is None:
        import mujoco

        bid = ids[body] = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, body)
    return env.data.xpos[bid]


def _reacher() -> TaskProfile:
    fields = (
        Field("fingertip_pos", (3,), "m", "position of the arm's fingertip", "world frame"),
        Field("target_pos", (3,), "m", "position of the target the fingertip should reach", "world frame"),
        Field("fingertip_to_target", (3,), "m", "target_pos - fingertip_pos", "world frame"),
        *_joint_fields(2, 2, "two arm"),
    )

    def read(env: Any) -> Mapping[str, Any]:
        tip, target = _com(env, "fingertip"), _com(env, "target")
        return {"fingertip_pos": tip, "target_pos": target, "fingertip_to_target": target - tip,
                "joint_angles": env.data.qpos[:2], "joint_velocities": env.data.qvel[:2]}

    success = SuccessMetric(
        "fingertip within {threshold} m of the target at episode end", 0.02,
        lambda s, t: float(np.linalg.norm(s.fingertip_to_target)) <= t)
    return TaskProfile("Reacher-v5", StateSchema("Reacher-v5", fields, read,
                       "A 2-link planar arm on a table; the target is a point on the table."), success,
                       reference=_reacher_reference)


def _reacher_reference(env: Any, kp: float = 2.0, kd: float = 0.1) -> np.ndarray:
    """Scripted Reacher solution: analytic inverse kinematics of the target, then joint-space PD
    (solves 50/50 seeded episodes). Links are 0.1 m and 0.11 m (reacher.xml)."""
    x, y = _com(env, "target")[:2]
    l1, l2 = 0.1, 0.11
    cos_elbow = np.clip((x * x + y * y - l1 * l1 - l2 * l2) / (2 * l1 * l2), -1.0, 1.0)
    q, qd = env.data.qpos[:2], env.data.qvel[:2]
    best = None
    for elbow in (np.arccos(cos_elbow), -np.arccos(cos_elbow)):  # the closer of the two IK branches
        shoulder = np.arctan2(y, x) - np.arctan2(l2 * np.sin(elbow), l1 + l2 * np.cos(elbow))
        error = np.array([(shoulder - q[0] + np.pi) % (2 * np.pi) - np.pi, elbow - q[1]])
        if best is None or np.abs(error).sum() < np.abs(best).sum():
            best = error
    return np.clip(kp * best - kd * qd, -1.0, 1.0)


def _pusher() -> TaskProfile:
    fields = (
        Field("tips_arm_pos", (3,), "m", "position of the arm's distal tip", "world frame"),
        Field("object_pos", (3,), "m", "position of the object to push", "world frame"),
        Field("goal_pos", (3,), "m", "where the object should end up", "world frame"),
        *_joint_fields(7, 7, "seven arm"),
    )

    def read(env: Any) -> Mapping[str, Any]:
        return {"tips_arm_pos": _com(env, "tips_arm"), "object_pos": _com(env, "object"),
                "goal_pos": _com(env, "goal"), "joint_angles": env.data.qpos[:7],
                "joint_velocities": env.data.qvel[:7]}

    success = SuccessMetric(
        "object within {threshold} m of the goal (in the table plane) at episode end", 0.1,
        lambda s, t: float(np.linalg.norm((s.object_pos - s.goal_pos)[:2])) <= t)
    return TaskProfile("Pusher-v5", StateSchema("Pusher-v5", fields, read,
                       "A 7-DoF arm pushes a cylinder object across a table to a goal."), success)


def _locomotion(env_id: str, nq: int, nv: int, *, planar: bool, distance: float, doc: str,
                reference: Callable[[Any], np.ndarray] | None = None) -> TaskProfile:
    height_index = 1 if planar else 2
    fields = (
        Field("x_position", (), "m", "forward position of the torso/root", "world frame"),
        Field("x_velocity", (), "m/s", "forward velocity of the root", "world frame"),
        Field("torso_height", (), "m", "height of the root above the floor", "world frame"),
        *_generalized(nq, nv),
    )

    def read(env: Any) -> Mapping[str, Any]:
        qpos, qvel = env.data.qpos, env.data.qvel
        return {"x_position": qpos[0], "x_velocity": qvel[0], "torso_height": qpos[height_index],
                "qpos": qpos, "qvel": qvel}

    success = SuccessMetric("forward distance (x_position) of at least {threshold} m at episode end",
                            distance, lambda s, t: float(s.x_position) >= t)
    return TaskProfile(env_id, StateSchema(env_id, fields, read, doc), success, reference=reference)


# Joint phases (bthigh, bshin, bfoot, fthigh, fshin, ffoot) of an open-loop gait found by a random
# search over 300 sinusoid patterns: about 48 m in 1000 steps (seeds 0-5), pitch within 0.45 rad.
_CHEETAH_GAIT_HZ = 1.5
_CHEETAH_GAIT_PHASES = np.array([0.96, 1.25, 2.72, 3.22, 1.22, 4.9])


def _half_cheetah_reference(env: Any) -> np.ndarray:
    """Scripted HalfCheetah solution: a fixed sinusoidal gait (open loop, from the sim clock). It runs
    forward well past the 20 m success threshold, so a reward that prefers standing still, or
    running backward, ranks it below random actions and fails the preference check."""
    return np.sin(2 * np.pi * _CHEETAH_GAIT_HZ * float(env.data.time) + _CHEETAH_GAIT_PHASES)


# A linear feedback policy for Hopper, action = clip(K @ obs + b) with obs = (qpos[1:], qvel clipped
# to +-10): its 3 x 11 gains found by random search (ARS, Mania et al. 2018) for forward distance
# while upright. Measured over seeds 0-11: 1.3-5.5 m before it falls (x >= 3 m on 7 of 12), about
# 0.3 m in the first 200 steps, where random actions fall within a few dozen.
_HOPPER_K = np.array([
    [5.501, -11.31, -4.587, 5.863, -0.2951, -0.6246, 0.1439, -0.1348, -0.1767, 0.02035, -0.02948],
    [-0.688, 5.758, -3.808, -0.136, -2.14, 0.5591, -0.7878, -0.1717, 0.184, 0.1755, -0.1089],
    [7.539, 3.814, -1.539, -1.238, 2.209, -2.375, -0.3647, 0.2892, 0.0696, 0.1922, -0.1395]])
_HOPPER_B = np.array([-7.533, 1.101, -8.968])


def _hopper_reference(env: Any) -> np.ndarray:
    """Scripted Hopper solution: the linear feedback hop above. It stays upright and moves forward
    where random actions fall, so a reward for staying at the start ranks it below them and fails
    the preference check."""
    obs = np.concatenate([env.data.qpos[1:], np.clip(env.data.qvel, -10, 10)])
    return np.clip(_HOPPER_K @ obs + _HOPPER_B, -1.0, 1.0)


def _swimmer() -> TaskProfile:
    fields = (
        Field("x_position", (), "m", "forward position of the front tip", "world frame"),
        Field("x_velocity", (), "m/s", "forward velocity of the front tip", "world frame"),
        *_generalized(5, 5),
    )

    def read(env: Any) -> Mapping[str, Any]:
        return {"x_position": env.data.qpos[0], "x_velocity": env.data.qvel[0],
                "qpos": env.data.qpos, "qvel": env.data.qvel}

    success = SuccessMetric("forward distance (x_position) of at least {threshold} m at episode end",
                            2.0, lambda s, t: float(s.x_position) >= t)
    return TaskProfile("Swimmer-v5", StateSchema("Swimmer-v5", fields, read,
                       "A 3-link swimmer in a viscous fluid, moving along +x."), success)


def _humanoid_standup() -> TaskProfile:
    fields = (
        Field("torso_height", (), "m", "height of the torso above the floor", "world frame"),
        *_generalized(24, 23),
    )

    def read(env: Any) -> Mapping[str, Any]:
        return {"torso_height": env.data.qpos[2], "qpos": env.data.qpos, "qvel": env.data.qvel}

    success = SuccessMetric("torso at least {threshold} m above the floor at episode end", 1.0,
                            lambda s, t: float(s.torso_height) >= t)
    return TaskProfile("HumanoidStandup-v5", StateSchema("HumanoidStandup-v5", fields, read,
                       "A humanoid lying on the floor should stand up."), success)


def _inverted_pendulum() -> TaskProfile:
    fields = (
        Field("cart_position", (), "m", "slider position of the cart", "world frame"),
        Field("pole_angle", (), "rad", "pole angle from upright (0 = upright)", "joint space"),
        Field("cart_velocity", (), "m/s", "cart velocity", "world frame"),
        Field("pole_angular_velocity", (), "rad/s", "pole angular velocity", "joint space"),
    )

    def read(env: Any) -> Mapping[str, Any]:
        q, v = env.data.qpos, env.data.qvel
        return {"cart_position": q[0], "pole_angle": q[1], "cart_velocity": v[0], "pole_angular_velocity": v[1]}

    success = SuccessMetric("pole within {threshold} rad of upright at episode end", 0.2,
                            lambda s, t: abs(float(s.pole_angle)) <= t)
    return TaskProfile("InvertedPendulum-v5", StateSchema("InvertedPendulum-v5", fields, read,
                       "A cart on a rail balancing a pole upright."), success)


def _inverted_double_pendulum() -> TaskProfile:
    fields = (
        Field("tip_pos", (3,), "m", "position of the tip of the second pole", "world frame"),
        *_generalized(3, 3),
    )

    def read(env: Any) -> Mapping[str, Any]:
        return {"tip_pos": env.data.site_xpos[0], "qpos": env.data.qpos, "qvel": env.data.qvel}

    success = SuccessMetric("tip of the second pole at least {threshold} m high at episode end", 1.0,
                            lambda s, t: float(s.tip_pos[2]) >= t)
    return TaskProfile("InvertedDoublePendulum-v5", StateSchema("InvertedDoublePendulum-v5", fields, read,
                       "A cart balancing two stacked poles upright."), success)


def _planar_push() -> TaskProfile:
    from workbench.sims.planar_push import planar_push_profile

    return planar_push_profile()


def _planar_push_instruct() -> TaskProfile:
    from workbench.sims.planar_push_instruct import profile

    return profile()


_PROFILES: dict[str, Callable[[], TaskProfile]] = {
    "Reacher-v5": _reacher,
    "Pusher-v5": _pusher,
    "HalfCheetah-v5": lambda: _locomotion("HalfCheetah-v5", 9, 9, planar=True, distance=20.0,
                                          reference=_half_cheetah_reference,
                                          doc="A planar cheetah running along +x."),
    "Hopper-v5": lambda: _locomotion("Hopper-v5", 6, 6, planar=True, distance=3.0, reference=_hopper_reference,
                                     doc="A planar one-legged hopper moving along +x; falls end the episode."),
    "Walker2d-v5": lambda: _locomotion("Walker2d-v5", 9, 9, planar=True, distance=3.0,
                                       doc="A planar biped walking along +x; falls end the episode."),
    "Ant-v5": lambda: _locomotion("Ant-v5", 15, 14, planar=False, distance=5.0,
                                  doc="A quadruped on a plane moving along +x."),
    "Humanoid-v5": lambda: _locomotion("Humanoid-v5", 24, 23, planar=False, distance=2.0,
                                       doc="A humanoid walking along +x; falls end the episode."),
    "Swimmer-v5": _swimmer,
    "HumanoidStandup-v5": _humanoid_standup,
    "InvertedPendulum-v5": _inverted_pendulum,
    "InvertedDoublePendulum-v5": _inverted_double_pendulum,
    "workbench/PlanarPush-v0": _planar_push,
    "workbench/PlanarPushInstruct-v0": _planar_push_instruct,
}


def _generic(env: Any, env_id: str) -> TaskProfile:
    nq, nv = int(env.unwrapped.model.nq), int(env.unwrapped.model.nv)
    schema = StateSchema(env_id, _generalized(nq, nv),
                         lambda e: {"qpos": e.data.qpos, "qvel": e.data.qvel},
                         "A MuJoCo env without a workbench profile: generalized coordinates only.")
    return TaskProfile(env_id, schema, None)


# ----------------------------------------------------------------------------- sim.kwargs.xml_file

MAX_XML_BYTES = 16 << 20  # an MJCF file; meshes and textures are separate files
MAX_XML_FILES = 256  # the model file and the files it includes or references


def _expand_model_path(value: str) -> Path:
    """Where gymnasium's MujocoEnv looks for ``xml_file`` (its ``expand_model_path``)."""
    if value.startswith((".", "/")):
        return Path(value)
    if value.startswith("~"):
        return Path(value).expanduser()
    return Path(gym.envs.mujoco.__file__).parent / "assets" / value


def check_xml_file(value: Any) -> Path:
    """``sim.kwargs.xml_file`` checked before MuJoCo reads it: a regular file of bounded size that
    parses as XML, whose included and referenced files (meshes, textures, ``<include>``) are regular
    files where they exist. MuJoCo opens them with a blocking read: a FIFO would hang the process,
    a device or a huge file would be read whole."""
    from workbench.spec import read_bounded

    key = "sim.kwargs.xml_file"
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"must be a path to an MJCF file, got {value!r}"[:200], key=key,
                        hint="write a path: /abs/model.xml, ./relative/to/cwd.xml, or a gymnasium asset name")
    root = _expand_model_path(value)
    todo, seen = [root], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if len(seen) > MAX_XML_FILES:
            raise TaskError(f"{value} includes or references more than {MAX_XML_FILES} files", key=key,
                            hint="merge the model into fewer files")
        where = "" if path == root else f" (included by {value})"
        try:
            raw = read_bounded(path, limit=MAX_XML_BYTES, file=str(path), key=key, what="MJCF model file",
                               hint="keep meshes and textures in their own files")
        except TaskError as err:
            hint = err.hint if path.exists() else \
                "a path starting with / or ~ is absolute, one starting with . is relative to the current " \
                "directory, any other is a file of gymnasium's MuJoCo assets"
            raise TaskError(f"{path}{where}: {err.message}", key=key, hint=hint) from None
        try:
            tree = ElementTree.fromstring(raw)
        except ElementTree.ParseError as err:
            raise TaskError(f"{path}{where} is not an MJCF (XML) file: {err}", key=key,
                            hint="point xml_file at a MuJoCo model (.xml)") from None
        compiler = tree.find(".//compiler")
        dirs = [path.parent] + [path.parent / compiler.get(a, "") for a in ("meshdir", "texturedir", "assetdir")
                                if compiler is not None and compiler.get(a)]
        for element in tree.iter():
            ref = element.get("file")
            if not ref:
                continue
            for base in dirs:
                candidate = base / ref
                try:
                    st = candidate.stat()
                except OSError:
                    continue  # MuJoCo reports a missing file itself
                if element.tag == "include" or element.tag == "model":
                    todo.append(candidate)
                elif not stat.S_ISREG(st.st_mode):
                    raise TaskError(f"{candidate} (referenced by {path}) is not a regular file", key=key,
                                    hint="reference mesh, texture and height-field files on disk")
                elif st.st_size > MAX_XML_BYTES * 16:
                    raise TaskError(f"{candidate} (referenced by {path}) is {st.st_size} bytes", key=key,
                                    hint=f"keep each referenced file under {MAX_XML_BYTES * 16} bytes")
    return root


class MujocoAdapter:
    """The embedded default simulator."""

    name = "mujoco"

    def __init__(self) -> None:
        from workbench.sims import planar_push, planar_push_instruct

        planar_push.register_env()
        planar_push_instruct.register_env()

    def env_ids(self) -> list[str]:
        return sorted(_PROFILES)

    def make_env(self, spec: SimSpec, *, render_mode: str | None = None) -> gym.Env:
        kwargs = dict(spec.kwargs)
        if "xml_file" in kwargs:
            check_xml_file(kwargs["xml_file"])
        if spec.max_episode_steps is not None:
            kwargs["max_episode_steps"] = spec.max_episode_steps
        try:
            env = gym.make(spec.env_id, render_mode=render_mode, disable_env_checker=True, **kwargs)
        except (ValueError, OSError) as err:
            if "xml_file" not in kwargs:
                raise
            first = (str(err).strip().splitlines() or [""])[0][:300]
            raise TaskError(f"MuJoCo cannot load {kwargs['xml_file']}: {first}", key="sim.kwargs.xml_file",
                            hint="fix the MJCF model, or remove xml_file to use the env's own") from None
        except gym.error.Error as err:  # unknown id, bad version, missing dependency
            close = difflib.get_close_matches(spec.env_id, self.env_ids(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TaskError(f"cannot make MuJoCo env {spec.env_id!r}: {err}", key="sim.env_id",
                            hint=f"{hint}known MuJoCo envs: {', '.join(self.env_ids())}") from None
        except TypeError as err:
            raise TaskError(f"bad constructor argument for {spec.env_id}: {err}", key="sim.kwargs",
                            hint="use the keyword arguments of the gymnasium env's constructor") from None
        if not hasattr(env.unwrapped, "data") or not hasattr(env.unwrapped, "model"):
            env.close()
            raise TaskError(f"{spec.env_id!r} is not a MuJoCo env", key="sim.env_id",
                            hint=f"pick one of: {', '.join(self.env_ids())}")
        if render_mode is not None:
            _load_llvm_users_first()
            # Software GL renders ~8x faster without shadows and reflections (84²: 22 -> 178 fps);
            # frames feed rewards and videos, where neither matters.
            model = env.unwrapped.model
            model.light_castshadow[:] = 0
            model.mat_reflectance[:] = 0
        return env

    def profile(self, spec: SimSpec, env: gym.Env | None = None) -> TaskProfile:
        factory = _PROFILES.get(spec.env_id)
        if factory is not None:
            return factory()
        own = env or self.make_env(spec)
        try:
            return _generic(own, spec.env_id)
        finally:
            if env is None:
                own.close()
