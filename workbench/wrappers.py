"""The wrappers that apply a task to a simulator env: its reward program and its success metric.

:class:`TaskWrapper` reads the StateView once per step (only when a reward program needs it) and
puts every reward term in ``info["reward/<name>"]``, the simulator's own reward in
``info["reward/env"]``, and at episode end ``info["is_success"]`` (which SB3 logs as
``rollout/success_rate``). For a pixel reward it also leaves the post-step camera frame in
``info[FRAME_KEY]``; the frame reward then scores a whole vector step in one batch
(:class:`VecFrameReward`), or one env at a time for evaluation (:class:`FrameRewardWrapper`).
Frames are captured inside the env's step, so a terminal frame is scored before the auto-reset.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from workbench.reward import FRAME_KEY, FrameReward
from workbench.sims.base import SuccessMetric
from workbench.state import State, StateSchema

__all__ = ["TaskWrapper", "FrameRewardWrapper", "VecFrameReward"]


class TaskWrapper(gym.Wrapper):
    def __init__(self, env: gym.Env, schema: StateSchema, *, program: Any | None = None,
                 success: SuccessMetric | None = None, success_threshold: float | None = None,
                 capture_frames: bool = False):
        super().__init__(env)
        self.capture_frames = capture_frames
        self.schema = schema
        self.program = program
        self.success = success
        self.success_threshold = success_threshold
        self._state: State | None = None
        # Only the fields the program reads are copied each step; success reads the full view.
        self._inputs = getattr(program, "inputs", None)
        self._keys: dict[str, str] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if self.program is not None:
            self._state = self.schema.read(self.env.unwrapped, self._inputs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        info["reward/env"] = float(env_reward)
        reward = env_reward
        if self.program is not None:
            next_state = self.schema.read(self.env.unwrapped, self._inputs)
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
                final = self.schema.read(self.env.unwrapped)
                info["is_success"] = self.success(final, self.success_threshold)
        return obs, reward, terminated, truncated, info

    def current_state(self) -> State:
        """The live StateView (for tests and tools)."""
        return self.schema.read(self.env.unwrapped)


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
    """One env's frame reward, scored frame by frame (evaluation, ``workbench validate``)."""

    def __init__(self, env: gym.Env, frame_reward: FrameReward):
        super().__init__(env)
        self.frame_reward = frame_reward

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
