"""The wrapper that applies a task to a simulator env: its reward program and its success metric.

It reads the StateView once per step (only when a reward program needs it) and puts every reward
term in ``info["reward/<name>"]``, the simulator's own reward in ``info["reward/env"]``, and at
episode end ``info["is_success"]`` (which SB3 logs as ``rollout/success_rate``).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from workbench.sims.base import SuccessMetric
from workbench.state import State, StateSchema

__all__ = ["TaskWrapper"]


class TaskWrapper(gym.Wrapper):
    def __init__(self, env: gym.Env, schema: StateSchema, *, program: Any | None = None,
                 success: SuccessMetric | None = None, success_threshold: float | None = None):
        super().__init__(env)
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
