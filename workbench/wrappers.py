"""The wrappers that apply a task to a simulator env: its reward program and its success metric.

:class:`TaskWrapper` reads the StateView once per step (only when a reward program needs it) and
puts every reward term in ``info["reward/<name>"]``, the simulator's own reward in
``info["reward/env"]``, and at episode end ``info["is_success"]`` (which SB3 logs as
``rollout/success_rate``). For a pixel reward it also leaves the post-step camera frame in
``info[FRAME_KEY]``; the frame reward then scores a whole vector step in one batch
(:class:`VecFrameReward`), or one env at a time for evaluation (:class:`FrameRewardWrapper`).
Frames are captured inside the env's step, so a terminal frame is scored before the auto-reset.

A batched reward program (:class:`workbench.reward.BatchedRewardProgram`) is applied the same way.
A TaskWrapper on its own (one env, evaluation) calls it with N = 1. :class:`VecBatchedReward`
takes it over for a vector of such envs: it tells each TaskWrapper to defer the program
(:meth:`TaskWrapper.defer_program`), which then only reads the fields the program needs, packed
into one float64 row (:class:`StatePacking`), after each step and each reset, and the vector
wrapper stacks the N rows and the N actions and calls the program once per vector step. Until a
vector wrapper takes over, the rewards are computed per env: a vector built without
``Task.wrap_vec`` is slower, never wrong.

**Recreating a task env** (``env.spec.make()``, ``gym.make(env.spec)``, ``gym.make_vec``, Gymnasium's
``check_env``). A TaskWrapper's arguments (a StateView schema, a reward program, a success
metric) are live objects, not data a spec can carry. So the TaskWrapper of a task env
(``Task.make_env``, which passes ``env_kwargs``) stands for the whole env beneath it: its ``spec``
is that of ``rl_workbench/Task-v0`` (:mod:`workbench.gym_env`) with the plain keyword arguments that
build the task's env again (the task as a file or as data, the reward program's text), and the
wrappers the task puts around it (:class:`FrameRewardWrapper`; a reward's own ``env_wrapper``) are
made by that entry point again rather than re-applied. Wrappers a user adds on top are recorded
and re-applied by Gymnasium as usual.
"""

from __future__ import annotations

import copy
from typing import Any, SupportsFloat, cast

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from workbench.gym_env import ENTRY_POINT, ENV_ID
from workbench.reward import FRAME_KEY, STATE_KEY, FrameReward, call_single, is_batched
from workbench.sims.base import SuccessMetric
from workbench.state import State, StateSchema

__all__ = ["TaskWrapper", "FrameRewardWrapper", "VecFrameReward", "StatePacking", "VecBatchedReward"]


class StatePacking:
    """The StateView fields a batched program reads (``inputs``; None = all), in schema order,
    packed into one flat float64 row per env. Inside an env's step the row is either returned
    (:meth:`pack`: cheap to stack, and to pickle back from a subprocess env) or written into a
    row of a vector wrapper's buffer (:meth:`pack_into`, envs in the same process); :meth:`unpack`
    turns the stacked rows ``[N, size]`` into a State of ``[N, *shape]`` views."""

    def __init__(self, schema: StateSchema, inputs: frozenset[str] | None):
        self.schema = schema
        self.reader = schema.reader
        self.layout: list[tuple[str, tuple[int, ...], int, int]] = []  # name, shape, start, stop
        start = 0
        for f in schema.fields:
            if inputs is None or f.name in inputs:
                size = int(np.prod(f.shape, dtype=np.int64))
                self.layout.append((f.name, f.shape, start, start + size))
                start += size
        self.size = start
        # One 1-D field (the common case): the stacked rows are the field itself, no views to make.
        self._whole = self.layout[0][0] if len(self.layout) == 1 and len(self.layout[0][1]) == 1 else None

    def _bad_shape(self, name: str, value: Any, shape: tuple[int, ...]) -> RuntimeError:
        return RuntimeError(f"StateView {self.schema.task}.{name}: reader gave shape {np.shape(value)}, "
                            f"declared {shape} (adapter bug)")

    def pack(self, env: Any) -> np.ndarray:
        """A new row ``[size]`` holding the live (unwrapped) env's state (a copy, never a view)."""
        raw = self.reader(env)
        parts = []
        for name, shape, _, _ in self.layout:
            value = np.array(raw[name], dtype=np.float64)  # a copy: the reader may hand out live views
            if value.shape != shape:
                raise self._bad_shape(name, value, shape)
            parts.append(value.reshape(-1))
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros(0)

    def targets(self, row: np.ndarray) -> list[tuple[str, tuple[int, ...], np.ndarray]]:
        """Per field: a view of ``row`` shaped like the field, for :meth:`pack_into`."""
        return [(name, shape, row[a:b].reshape(shape)) for name, shape, a, b in self.layout]

    def pack_into(self, env: Any, targets: list[tuple[str, tuple[int, ...], np.ndarray]]) -> None:
        """Copy the live env's fields into ``targets`` (a row of a shared buffer)."""
        raw = self.reader(env)
        for name, shape, target in targets:
            value = raw[name]
            if (value.shape if type(value) is np.ndarray else np.shape(value)) != shape:
                raise self._bad_shape(name, value, shape)
            target[...] = value

    def unpack(self, rows: np.ndarray) -> State:
        """A State of ``[N, *shape]`` read-only views into ``rows`` (``[N, size]``, read-only)."""
        if self._whole is not None:
            return State._from_frozen({self._whole: rows})
        n = rows.shape[0]
        return State._from_frozen({name: rows[:, a:b].reshape(n, *shape)
                                   for name, shape, a, b in self.layout})


class TaskWrapper(gym.Wrapper):
    """A task's reward program and success metric on a simulator env (see the module docstring).

    ``env_kwargs``: the plain keyword arguments of ``rl_workbench/Task-v0`` that build this env
    again (``Task.make_env`` passes them); ``spec`` then reports that id with them, so the env is
    recreatable. Without them the spec is Gymnasium's default (this wrapper cannot be re-applied
    from it).
    """

    def __init__(self, env: gym.Env, schema: StateSchema, *, program: Any | None = None,
                 success: SuccessMetric | None = None, success_threshold: float | None = None,
                 capture_frames: bool = False, env_kwargs: dict[str, Any] | None = None):
        super().__init__(env)
        self.env_kwargs = env_kwargs
        self.capture_frames = capture_frames
        self.schema = schema
        self.program = program
        self.batched = is_batched(program)
        self.success = success
        self.success_threshold = success_threshold
        self._state: State | None = None
        # Only the fields the program reads are copied each step; success reads the full view.
        self._inputs = getattr(program, "inputs", None)
        self._keys: dict[str, str] = {}
        self._raw = env.unwrapped  # fixed for the env's life; read every step
        self._packing: StatePacking | None = None  # set when a vector wrapper takes the program over
        self._step_targets: list[tuple[str, tuple[int, ...], np.ndarray]] | None = None
        self._reset_targets: list[tuple[str, tuple[int, ...], np.ndarray]] | None = None

    def defer_program(self, step_row: np.ndarray | None = None, reset_row: np.ndarray | None = None) -> int:
        """Hand a batched program over to :class:`VecBatchedReward` (it calls this through
        ``env_method``): from now on the program is not called here; the packed post-step
        state goes into ``info[STATE_KEY]`` and the post-reset state into the reset info, and the
        env's own reward is returned for the vector wrapper to replace (it resets the envs first). With
        ``step_row``/``reset_row`` (rows of the vector wrapper's buffers, an env in the same
        process) the states are written there instead of the info dicts, which a DummyVecEnv
        deep-copies every step. Returns the packed row size."""
        if not is_batched(self.program):
            raise ValueError(f"only a batched reward program can be deferred to the vector env; this env's is "
                             f"{self.program!r}")
        self._packing = StatePacking(self.schema, self._inputs)
        if (step_row is None) != (reset_row is None):
            raise ValueError("give both step_row and reset_row, or neither")
        if step_row is not None and reset_row is not None:
            self._step_targets = self._packing.targets(step_row)
            self._reset_targets = self._packing.targets(reset_row)
        return self._packing.size

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if self._packing is not None:
            if self._reset_targets is not None:
                self._packing.pack_into(self._raw, self._reset_targets)
            else:
                info[STATE_KEY] = self._packing.pack(self._raw)
        elif self.program is not None:
            self._state = self.schema.read(self._raw, self._inputs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        info["reward/env"] = float(env_reward)
        reward = env_reward
        if self._packing is not None:
            if self._step_targets is not None:
                self._packing.pack_into(self._raw, self._step_targets)
            else:
                info[STATE_KEY] = self._packing.pack(self._raw)
        elif self.program is not None:
            next_state = self.schema.read(self._raw, self._inputs)
            if self.batched:
                reward, components = call_single(self.program, cast(State, self._state), np.asarray(action),
                                                 next_state)
            else:
                reward, components = self.program(self._state, np.asarray(action), next_state)
            keys = self._keys
            for name, value in components.items():
                key = keys.get(name) or keys.setdefault(name, f"reward/{name}")
                info[key] = value
            self._state = next_state
        if self.capture_frames:
            info[FRAME_KEY] = self.env.render()
        if terminated or truncated:
            # None when the env has no success metric: SB3 and the evaluation skip it.
            info["is_success"] = None
            if self.success is not None:
                final = self.schema.read(self._raw)
                info["is_success"] = self.success(final, self.success_threshold)
        return obs, reward, terminated, truncated, info

    def current_state(self) -> State:
        """The live StateView (for tests and tools)."""
        return self.schema.read(self._raw)

    @property
    def spec(self) -> EnvSpec | None:  # type: ignore[override]  # as gymnasium's Wrapper.spec
        """``rl_workbench/Task-v0`` with :attr:`env_kwargs`: the spec of the whole task env beneath
        (and the task's wrappers around) this wrapper, independent of the simulator env's own spec
        (``gym.make`` of the task id overwrites that one anyway). No time limit, order enforcing or
        env checker is declared: the task's time limit is inside, and ``gym.make`` adds the other two
        outside, where each records itself. Without ``env_kwargs``: Gymnasium's default."""
        if self.env_kwargs is None:
            return super().spec
        if self._cached_spec is None:
            self._cached_spec = EnvSpec(id=ENV_ID, entry_point=ENTRY_POINT, max_episode_steps=None,
                                        order_enforce=False, disable_env_checker=True,
                                        kwargs=copy.deepcopy(self.env_kwargs))
        return self._cached_spec


def _terms(rewards: np.ndarray, infos: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per-env arrays of the state side's values for a frame reward's ``combine`` expression:
    ``terms`` (the state program's total), ``env`` and every ``reward/<name>`` component."""
    n = len(infos)
    out = {"terms": np.asarray(rewards, dtype=np.float64).reshape(n)}
    for i, info in enumerate(infos):
        for key, value in info.items():
            if key.startswith("reward/"):
                out.setdefault(key[7:], np.zeros(n))[i] = value
    return out


def _apply_frame_reward(frame_reward: FrameReward, rewards: np.ndarray,
                        infos: list[dict[str, Any]]) -> np.ndarray:
    frames = np.stack([info.pop(FRAME_KEY) for info in infos])
    total, components = frame_reward(frames, _terms(rewards, infos))
    for i, info in enumerate(infos):
        for name, values in components.items():
            info[f"reward/{name}"] = float(values[i])
    return np.asarray(total, dtype=np.float32)


class FrameRewardWrapper(gym.Wrapper):
    """One env's frame reward, scored frame by frame (evaluation, ``workbench validate``).

    Part of a task env: its ``spec`` is the TaskWrapper's beneath it, whose entry point builds this
    wrapper again (its frame reward, a vision model, is no constructor argument a spec could carry).
    """

    def __init__(self, env: gym.Env, frame_reward: FrameReward):
        super().__init__(env)
        self.frame_reward = frame_reward

    @property
    def spec(self) -> EnvSpec | None:  # type: ignore[override]  # as gymnasium's Wrapper.spec
        return self.env.spec

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        total = _apply_frame_reward(self.frame_reward, np.array([reward]), [info])
        return obs, float(total[0]), terminated, truncated, info


class VecFrameReward(VecEnvWrapper):
    """All envs' frames of one vector step scored in one forward pass; replaces the rewards."""

    def __init__(self, venv: VecEnv, frame_reward: FrameReward):
        super().__init__(venv)
        self.frame_reward = frame_reward

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        return obs, _apply_frame_reward(self.frame_reward, rewards, list(infos)), dones, infos


class VecBatchedReward(VecEnvWrapper):
    """A batched reward program called once per vector step for all envs; replaces the rewards.

    The envs must hold a :class:`TaskWrapper` with the same batched program (``Task.env_fns``);
    on construction this wrapper takes the program over from each of them
    (:meth:`TaskWrapper.defer_program`). Each step stacks the envs' post-step rows (read inside
    each env's step, so a terminal state is scored before the auto-reset) into ``next_state``;
    ``state`` holds each env's previous post-step state, or its post-reset state after an episode
    ended: what the single path passes. Components land in ``info["reward/<name>"]`` per env, the
    totals replace the rewards.

    The rows travel in ``info[STATE_KEY]`` and the reset infos (``reset_infos``), which works for
    any vector env (SubprocVecEnv pickles them back). Over a DummyVecEnv, whose envs live in this
    process, the TaskWrappers write them straight into this wrapper's buffers instead: DummyVecEnv
    deep-copies every info dict every step.
    """

    def __init__(self, venv: VecEnv, program: Any, schema: StateSchema):
        super().__init__(venv)
        if not is_batched(program):
            raise ValueError(f"VecBatchedReward needs a batched reward program; {program!r} is not")
        self.program = program
        self.packing = StatePacking(schema, getattr(program, "inputs", None))
        self._prev_state: State | None = None
        self._actions: np.ndarray | None = None
        self._keys: dict[str, str] = {}
        self._step_rows: np.ndarray | None = None  # the shared buffers, [N, size]
        self._reset_rows: np.ndarray | None = None
        try:
            if isinstance(venv.unwrapped, DummyVecEnv):
                self._step_rows = np.zeros((self.num_envs, self.packing.size))
                self._reset_rows = np.zeros((self.num_envs, self.packing.size))
                sizes = [venv.env_method("defer_program", self._step_rows[i], self._reset_rows[i], indices=[i])[0]
                         for i in range(self.num_envs)]
            else:
                sizes = venv.env_method("defer_program")
        except (AttributeError, ValueError, EOFError, BrokenPipeError) as err:  # EOF: a subprocess env died
            raise RuntimeError(f"VecBatchedReward: the envs cannot hand their reward program over ({err!r}); make "
                               "them with Task.env_fns / Task.make_env (a TaskWrapper holding the same batched "
                               "program)") from None
        if any(size != self.packing.size for size in sizes):
            raise RuntimeError(f"VecBatchedReward: the envs pack {sizes} state values, this program reads "
                               f"{self.packing.size}: the envs hold another program or StateView")

    def _stack(self, found: list[Any], where: str) -> np.ndarray:
        try:
            rows = np.concatenate(found).reshape(len(found), self.packing.size)
        except (TypeError, ValueError):
            missing = [i for i, row in enumerate(found) if not isinstance(row, np.ndarray)]
            raise RuntimeError(f"VecBatchedReward: env(s) {missing} left no state in their {where} info "
                               "(was the env reset or wrapped behind this wrapper's back?)") from None
        return rows

    def _reset_states(self, indices: Any) -> np.ndarray:
        if self._reset_rows is not None:
            return self._reset_rows[indices]  # a copy (fancy indexing)
        reset_infos = self.venv.unwrapped.reset_infos
        return self._stack([reset_infos[i].get(STATE_KEY) for i in indices], "reset")

    def reset(self) -> Any:
        obs = self.venv.reset()
        rows = self._reset_states(np.arange(self.num_envs))
        rows.flags.writeable = False
        self._prev_state = self.packing.unpack(rows)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs, _, dones, infos = self.venv.step_wait()  # the envs' own rewards: replaced
        if self._prev_state is None:
            raise RuntimeError("VecBatchedReward: step before reset")
        if self._step_rows is not None:
            rows = self._step_rows.copy()
        else:
            rows = self._stack([info.pop(STATE_KEY, None) for info in infos], "step")
        rows.flags.writeable = False
        next_state = self.packing.unpack(rows)
        actions = np.asarray(self._actions)
        if actions.ndim == 1:  # one number per env (a discrete action): [N, 1], as the single path sees it
            actions = actions[:, None]
        total, components = self.program(self._prev_state, actions, next_state)
        keys = self._keys
        for name, values in components.items():
            key = keys.get(name) or keys.setdefault(name, f"reward/{name}")
            for info, value in zip(infos, values.tolist()):
                info[key] = value
        if any(dones.tolist()):  # an env that ended was reset: its next pre-step state is the reset one
            done = np.flatnonzero(dones)
            rows = rows.copy()
            rows[done] = self._reset_states(done)
            rows.flags.writeable = False
            next_state = self.packing.unpack(rows)
        self._prev_state = next_state
        rewards = total.astype(np.float32) if type(total) is np.ndarray else np.asarray(total, dtype=np.float32)
        return obs, rewards, dones, infos
