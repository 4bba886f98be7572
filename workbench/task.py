"""A validated TaskSpec made live: its simulator adapter, StateView profile and reward program.

``Task.build(spec)`` does the expensive, fallible work once (making a probe env, running the
reward pre-flight checks); ``task.make_env()`` then builds as many wrapped envs as a learner or
an evaluation needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
from stable_baselines3.common.vec_env import VecEnv

from workbench.reward import BuiltReward, is_batched
from workbench.errors import TaskError
from workbench.registry import REWARDS, SIMS
from workbench.sims.base import SimAdapter, TaskProfile
from workbench.spec import TaskSpec
from workbench.wrappers import FrameRewardWrapper, TaskWrapper, VecBatchedReward, VecFrameReward

__all__ = ["Task"]


@dataclass
class Task:
    spec: TaskSpec
    adapter: SimAdapter
    profile: TaskProfile
    reward: BuiltReward

    @classmethod
    def build(cls, spec: TaskSpec, *, reward: BuiltReward | None = None, check_only: bool = False) -> Task:
        """Make the adapter, probe the env once, and build (and check) the reward program.

        ``reward`` skips building it, e.g. when a resumed run reuses its recorded program.
        ``check_only`` (``workbench validate``): a reward source that offers the optional
        ``check(spec, profile, env) -> BuiltReward`` is checked with it instead of built — an
        LLM-driven source checks everything up to the synthesis (its prompt, its endpoint) and
        synthesizes nothing; the returned reward (usually without a program) only describes.
        """
        file = spec.source_path
        adapter: SimAdapter = SIMS.get(spec.sim.name)()
        try:
            env = adapter.make_env(spec.sim)
        except TaskError as err:
            if err.file is None:
                raise TaskError(err.message, file=file, key=err.key, hint=err.hint) from None
            raise
        try:
            profile = adapter.profile(spec.sim, env)
            if reward is None:
                source = REWARDS.get(spec.reward.source)
                check = getattr(source, "check", None) if check_only else None
                reward = check(spec, profile, env) if check is not None else source.build(spec, profile, env)
        finally:
            env.close()
        return cls(spec, adapter, profile, reward)

    @property
    def frame_scored(self) -> bool:
        return self.reward.frame_reward is not None

    @property
    def program_batched(self) -> bool:
        """:meth:`wrap_vec` takes a batched reward program over from the training envs (one call
        per vector step). Not when the reward also wraps each env (``env_wrapper``), which may
        read the per-step terms: then each env calls it with N = 1."""
        return is_batched(self.reward.program) and self.reward.env_wrapper is None

    def make_env(self, *, render_mode: str | None = None, batched: bool = False) -> gym.Env:
        """One wrapped env. A frame-scored task's env always renders (the reward camera);
        ``batched=True`` leaves the frame scoring to :meth:`wrap_vec` across a vector of envs. A
        batched reward program is called with N = 1 until :meth:`wrap_vec` takes it over."""
        if self.frame_scored:
            render_mode = "rgb_array"
        env = self.adapter.make_env(self.spec.sim, render_mode=render_mode)
        env = TaskWrapper(env, self.profile.schema, program=self.reward.program,
                          success=self.profile.success,
                          success_threshold=self.spec.evaluation.success_threshold,
                          capture_frames=self.frame_scored)
        if self.reward.env_wrapper is not None:
            env = self.reward.env_wrapper(env)
        if self.reward.frame_reward is not None and not batched:
            env = FrameRewardWrapper(env, self.reward.frame_reward)
        return env

    def env_fns(self, n: int) -> list[Callable[[], gym.Env]]:
        """Constructors of the training envs; pair them with :meth:`wrap_vec`."""
        return [lambda: self.make_env(batched=True) for _ in range(n)]

    def wrap_vec(self, venv: VecEnv) -> VecEnv:
        """What a learner applies to the vector of ``env_fns``: a batched reward program (one
        call per vector step), batched frame scoring, then the reward's own vector wrapper (e.g. a
        learned reward decoder), if any."""
        if self.program_batched:
            venv = VecBatchedReward(venv, self.reward.program, self.profile.schema)
        if self.reward.frame_reward is not None:
            venv = VecFrameReward(venv, self.reward.frame_reward)
        if self.reward.vec_wrapper is not None:
            venv = self.reward.vec_wrapper(venv)
        return venv

    def success_doc(self) -> str:
        if self.profile.success is None:
            return "none (this env has no workbench success metric)"
        return self.profile.success.describe(self.spec.evaluation.success_threshold)
