"""A validated TaskSpec made live: its simulator adapter, StateView profile and reward program.

``Task.build(spec)`` does the expensive, fallible work once (making a probe env, running the
reward pre-flight checks); ``task.make_env()`` then builds as many wrapped envs as a learner or
an evaluation needs.

:func:`make_task_env` is the entry point of the Gymnasium id ``rl_workbench/Task-v0`` (registered by
:mod:`workbench.gym_env`): a task env from plain keyword arguments, which is also how every task env
is recreated from its ``env.spec`` (:meth:`Task.env_kwargs`).
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import VecEnv

from workbench.errors import TaskError, WorkbenchError
from workbench.gym_env import ENV_ID
from workbench.registry import REWARDS, SIMS
from workbench.reward import BuiltReward, is_batched
from workbench.runs import TASK_FILE, Run
from workbench.sims.base import SimAdapter, TaskProfile
from workbench.spec import TaskSpec, _apply_override, load_task, parse_overrides, validate_task_data
from workbench.wrappers import FrameRewardWrapper, TaskWrapper, VecBatchedReward, VecFrameReward

__all__ = ["Task", "make_task_env"]


@dataclass
class Task:
    spec: TaskSpec
    adapter: SimAdapter
    profile: TaskProfile
    reward: BuiltReward
    # The plain keyword arguments of rl_workbench/Task-v0 that build this task's env again (what
    # each env's ``spec`` records): those make_task_env was called with, else derived on first use.
    _env_kwargs: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

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
    def reward_needs_vec(self) -> bool:
        """The training reward is complete only after :meth:`wrap_vec` (frames scored across the
        vector, a learned reward decoder): a learner that steps single envs cannot train on it."""
        return self.reward.frame_reward is not None or self.reward.vec_wrapper is not None

    @property
    def program_batched(self) -> bool:
        """:meth:`wrap_vec` takes a batched reward program over from the training envs (one call
        per vector step). Not when the reward also wraps each env (``env_wrapper``), which may
        read the per-step terms: then each env calls it with N = 1."""
        return is_batched(self.reward.program) and self.reward.env_wrapper is None

    def make_env(self, *, render_mode: str | None = None, batched: bool = False, evaluation: bool = False) -> gym.Env:
        """One wrapped env. A frame-scored task's env always renders (the reward camera);
        ``batched=True`` leaves the frame scoring to :meth:`wrap_vec` across a vector of envs. A
        batched reward program is called with N = 1 until :meth:`wrap_vec` takes it over.
        ``evaluation=True``: the evaluation's env, ``evaluation.sim_kwargs`` over ``sim.kwargs``."""
        env_kwargs = self.env_kwargs()
        if render_mode is not None:
            env_kwargs = {**env_kwargs, "render_mode": render_mode}
        if self.frame_scored:
            render_mode = "rgb_array"
        sim = self.spec.sim
        if evaluation and self.spec.evaluation.sim_kwargs:
            sim = sim.model_copy(update={"kwargs": {**sim.kwargs, **self.spec.evaluation.sim_kwargs}})
        env = self.adapter.make_env(sim, render_mode=render_mode)
        env = TaskWrapper(env, self.profile.schema, program=self.reward.program,
                          success=self.profile.success,
                          success_threshold=self.spec.evaluation.success_threshold,
                          capture_frames=self.frame_scored, env_kwargs=env_kwargs)
        if self.reward.env_wrapper is not None:
            env = self.reward.env_wrapper(env)
        if self.reward.frame_reward is not None and not batched:
            env = FrameRewardWrapper(env, self.reward.frame_reward)
        return env

    def env_fns(self, n: int) -> list[Callable[..., gym.Env]]:
        """Constructors of the training envs; pair them with :meth:`wrap_vec`. Each takes an
        optional ``render_mode`` (a learner that learns from pixels, e.g. TAXONS, asks for
        ``"rgb_array"``); called with no argument it builds the env as it trains everywhere else."""
        def make(render_mode: str | None = None) -> gym.Env:
            return self.make_env(batched=True, render_mode=render_mode)

        return [make for _ in range(n)]

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

    def env_kwargs(self) -> dict[str, Any]:
        """The plain keyword arguments of ``rl_workbench/Task-v0`` (:func:`make_task_env`) that build
        this task's env again: what each env of :meth:`make_env` records in its ``spec``, so
        ``env.spec.make()`` and Gymnasium's ``check_env`` rebuild it. For a task made by
        :func:`make_task_env`, the arguments it was called with; else the task as data (its
        resolved spec and ``source_path``) and, when the reward is a program, the program's text
        (``program_source``: the exact program, never synthesized again). A pixel reward is rebuilt
        from its ``reward:`` section (its calibration is fitted again); a reward learned across a
        vector of envs (LaRe) cannot be rebuilt, and making its spec says so."""
        if self._env_kwargs is None:
            data = self.spec.resolved_dict()
            if self.spec.source_path is not None:
                data["source_path"] = self.spec.source_path
            kwargs: dict[str, Any] = {"task": data}
            reward = self.reward
            if reward.source_text is not None and reward.resolved is None and reward.frame_reward is None:
                kwargs["program_source"] = reward.source_text
            self._env_kwargs = kwargs
        return self._env_kwargs


# ------------------------------------------------------------------ rl_workbench/Task-v0


def make_task_env(task: str | os.PathLike[str] | Mapping[str, Any] | None = None, *,
                  run: str | os.PathLike[str] | None = None, overrides: Sequence[str] | str = (),
                  program: str | os.PathLike[str] | None = None, program_source: str | None = None,
                  render_mode: str | None = None) -> gym.Env:
    """The entry point of ``rl_workbench/Task-v0``: ``Task.make_env()`` of a task given as plain data.

    ``task``: a task file, or a task as data (a mapping, as a task file holds; its ``source_path``
    key, if any, is where relative paths resolve). ``run``: a run directory instead (its resolved
    task and recorded reward program). ``overrides``: ``["key.path=value", ...]`` as ``--set``.
    ``program`` (a file) or ``program_source`` (its text): a reward program that replaces the task's
    reward (a ``code`` reward keeps its other options). The returned env's ``spec`` records these
    arguments (paths made absolute), so it is recreatable. A reward that an LLM would synthesize, or
    that is learned across a vector of envs, raises a :class:`TaskError` that says what to pass
    instead. See :mod:`workbench.gym_env`.
    """
    kwargs = _plain_kwargs(task=task, run=run, overrides=overrides, program=program, program_source=program_source)
    built = _task_from_kwargs(kwargs)
    built._env_kwargs = kwargs
    return built.make_env(render_mode=render_mode)


def _plain_kwargs(*, task: Any, run: Any, overrides: Sequence[str] | str, program: Any,
                  program_source: str | None) -> dict[str, Any]:
    """The arguments as the spec records them: plain data, paths absolute, only those given."""
    usage = (f"{ENV_ID} makes the env of one workbench task\n  fix: gym.make({ENV_ID!r}, "
             "task='tasks/mujoco/reacher.yaml') or run='runs/<name>' (optionally overrides=[...], "
             "program='reward.py')")
    if (task is None) == (run is None):
        raise WorkbenchError(f"give task= or run=, not {'both' if task is not None else 'neither'}: {usage}")
    if program is not None and program_source is not None:
        raise WorkbenchError(f"give program= (a file) or program_source= (its text), not both: {usage}")
    out: dict[str, Any] = {}
    if task is not None:
        if isinstance(task, Mapping):
            out["task"] = copy.deepcopy(dict(task))
        elif isinstance(task, str | os.PathLike):
            out["task"] = os.path.abspath(task)
        else:
            raise WorkbenchError(f"task= must be a task file's path or a task as a mapping, got "
                                 f"{type(task).__name__}: {usage}")
    if run is not None:
        out["run"] = os.path.abspath(run)
    items = [overrides] if isinstance(overrides, str) else list(overrides)
    if items:
        if not all(isinstance(item, str) for item in items):
            raise WorkbenchError(f"overrides= must be strings 'key.path=value', got {items!r}: {usage}")
        out["overrides"] = items
    if program is not None:
        out["program"] = os.path.abspath(program)
    if program_source is not None:
        out["program_source"] = str(program_source)
    return out


def _task_from_kwargs(kwargs: dict[str, Any]) -> Task:
    """Load, check and build the task :func:`make_task_env` was asked for."""
    overrides = kwargs.get("overrides", [])
    if "run" in kwargs:
        Run.open(kwargs["run"])  # a RunDirError that says what a run directory is
        task: Any = os.path.join(kwargs["run"], TASK_FILE)
    else:
        task = kwargs["task"]
    if isinstance(task, str):
        file = task
        spec = load_task(task, overrides, plugins=False)
        data = spec.resolved_dict()
        data["source_path"] = spec.source_path
    else:
        data = copy.deepcopy(task)
        file = str(data.get("source_path") or "<task given as data>")
        for keypath, value in parse_overrides(overrides):
            _apply_override(data, keypath, value, file=file)
    with tempfile.TemporaryDirectory(prefix="rl_workbench-program-") as tmp:
        program = kwargs.get("program")
        if "program_source" in kwargs:
            program = os.path.join(tmp, "program.py")
            Path(program).write_text(kwargs["program_source"], encoding="utf-8")
        if program is not None:
            reward = data.get("reward")
            keep = dict(reward) if isinstance(reward, dict) and reward.get("source") == "code" else {"source": "code"}
            data["reward"] = {**keep, "path": program}
        spec = validate_task_data(data, file=file, learner=False)  # the env's trainer is not the task's learner
        _refuse_synthesis(spec, file)
        built = Task.build(spec)  # a program file is read (and checked) here, before tmp goes
    if built.reward.vec_wrapper is not None:
        raise TaskError(f"{spec.reward.source} learns its reward across the vector of training envs, which one "
                        f"{ENV_ID} env cannot carry", file=file, key="reward.source",
                        hint="pass program='reward.py' (a reward program file), or another reward: "
                             "overrides=['reward={source: env}']")
    return built


# Options with which an LLM-driven reward source is handed the code it would otherwise synthesize
# (LaRe's hand-written encoder files, or its raw-state factors): it then calls no LLM.
_HAND_WRITTEN = (("encoder", None), ("factors", "state"))


def _refuse_synthesis(spec: TaskSpec, file: str) -> None:
    """A reward source that would call an LLM to build its reward is refused: ``make`` never
    synthesizes. The source says so with ``synthesizes(spec) -> bool`` if it defines one; else an
    LLM-driven source is one whose options have an ``llm`` section (every LLM source's shared
    options), unless it was handed its code (:data:`_HAND_WRITTEN`)."""
    source = REWARDS.get(spec.reward.source)
    decide = getattr(source, "synthesizes", None)
    if callable(decide):
        synthesizes = bool(decide(spec))
    else:
        fields = getattr(getattr(source, "Options", None), "model_fields", {})
        options = spec.reward.options
        handed = any(options.get(key) if value is None else options.get(key) == value for key, value in _HAND_WRITTEN)
        synthesizes = "llm" in fields and not handed
    if synthesizes:
        raise TaskError(f"{spec.reward.source} synthesizes its reward with an LLM, and {ENV_ID} never calls one",
                        file=file, key="reward.source",
                        hint="use a reward that was synthesized already: run='runs/<name>' (a run directory "
                             "records the program that trained) or program='reward.py' (a reward program "
                             "file); or another reward: overrides=['reward={source: env}']")
