"""rl-workbench: a task YAML becomes a trained, evaluated policy with a full record of the run.

The public API, what a user or a plug-in imports (``from workbench import Task, load_task``):

* task files: :class:`TaskSpec` and its sections, :func:`load_task`; :class:`Task` (a spec made
  into envs, a StateView profile and a reward program)
* the simulator contract: :class:`SimAdapter`, :class:`TaskProfile`, :class:`SuccessMetric`; the
  StateView: :class:`State`, :class:`StateSchema`, :class:`Field`
* the reward contract: :class:`RewardProgram`, :class:`FrameReward`, :class:`RewardSource`,
  :class:`BuiltReward`, :class:`SourceOptions`, :func:`validate_options`
* the learner contract: :class:`Learner`, :class:`Policy`, :class:`FitHooks`,
  :class:`CheckpointState`, :func:`load_policy`, :class:`TrainingInterrupted`, :class:`TrainingStopped`
* runs and evaluation: :class:`Run`, :class:`EvalResult`, :class:`EpisodeResult` (the function
  is ``workbench.evaluate.evaluate``: ``workbench.evaluate`` is its module)
* errors: :class:`WorkbenchError` and its kinds, :class:`PluginError`

Simulators, reward sources and learners themselves are plug-ins found by name through
:mod:`workbench.registry`. Each name is imported on first use (PEP 562), so ``import workbench``
loads neither torch nor gymnasium; ``from workbench import Task`` loads what Task needs.

Every task is also a Gymnasium env, ``gym.make("rl_workbench/Task-v0", task=...)``, registered by
``import workbench.gym_env``; ``import workbench`` registers it too when gymnasium is already
imported (and never imports gymnasium itself).
"""

from __future__ import annotations

import os as _os
import sys as _sys
from importlib import import_module as _import_module

from workbench.exports import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms); type checkers read it as True

# Headless MuJoCo rendering (videos, camera rewards) works with EGL on these machines; a user's
# own MUJOCO_GL (osmesa, glfw) wins.
_os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"

__all__ = [
    # task files and tasks
    "TaskSpec", "SimSpec", "RewardSpec", "LearnerSpec", "TrainingSpec", "EvaluationSpec", "load_task", "Task",
    # the simulator contract and the StateView
    "SimAdapter", "TaskProfile", "SuccessMetric", "State", "StateSchema", "Field",
    # the reward contract
    "RewardProgram", "BatchedRewardProgram", "FrameReward", "RewardSource", "BuiltReward", "SourceOptions",
    "validate_options",
    # the learner contract, and the one training entry point searches receive
    "Learner", "Policy", "FitHooks", "CheckpointState", "load_policy", "TrainingInterrupted", "TrainingStopped",
    "train_and_evaluate", "TrainFn", "RunResult",
    # runs and evaluation
    "Run", "EvalResult", "EpisodeResult",
    # errors
    "WorkbenchError", "TaskError", "PluginError", "MissingDependency", "RewardCodeRejected", "RewardRuntimeError",
    "RewardGuardError", "RunDirError",
]

# Which module defines each public name (core modules only: the core imports no leaf).
_MODULES: dict[str, tuple[str, ...]] = {
    "workbench.spec": ("TaskSpec", "SimSpec", "RewardSpec", "LearnerSpec", "TrainingSpec", "EvaluationSpec",
                       "load_task"),
    "workbench.task": ("Task",),
    "workbench.sims.base": ("SimAdapter", "TaskProfile", "SuccessMetric"),
    "workbench.state": ("State", "StateSchema", "Field"),
    "workbench.reward": ("RewardProgram", "BatchedRewardProgram", "FrameReward", "RewardSource", "BuiltReward",
                         "SourceOptions", "validate_options"),
    "workbench.pipeline": ("train_and_evaluate", "TrainFn", "RunResult"),
    "workbench.learner": ("Learner", "Policy", "FitHooks", "CheckpointState", "load_policy", "TrainingInterrupted",
                          "TrainingStopped"),
    "workbench.runs": ("Run",),
    "workbench.evaluate": ("EvalResult", "EpisodeResult"),
    "workbench.registry": ("PluginError",),
    "workbench.errors": ("WorkbenchError", "TaskError", "MissingDependency", "RewardCodeRejected",
                         "RewardRuntimeError", "RewardGuardError", "RunDirError"),
}

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports on first use
    from workbench.errors import (
        MissingDependency,
        RewardCodeRejected,
        RewardGuardError,
        RewardRuntimeError,
        RunDirError,
        TaskError,
        WorkbenchError,
    )
    from workbench.evaluate import EpisodeResult, EvalResult
    from workbench.learner import (
        CheckpointState,
        FitHooks,
        Learner,
        Policy,
        TrainingInterrupted,
        TrainingStopped,
        load_policy,
    )
    from workbench.pipeline import RunResult, TrainFn, train_and_evaluate
    from workbench.registry import PluginError
    from workbench.reward import (
        BatchedRewardProgram,
        BuiltReward,
        FrameReward,
        RewardProgram,
        RewardSource,
        SourceOptions,
        validate_options,
    )
    from workbench.runs import Run
    from workbench.sims.base import SimAdapter, SuccessMetric, TaskProfile
    from workbench.spec import EvaluationSpec, LearnerSpec, RewardSpec, SimSpec, TaskSpec, TrainingSpec, load_task
    from workbench.state import Field, State, StateSchema
    from workbench.task import Task


# A gymnasium user (``import gymnasium`` came first): register rl_workbench/Task-v0 now, as Gymnasium's
# plug-in packages do on import. workbench.gym_env imports nothing heavier than gymnasium.
if "gymnasium" in _sys.modules:
    _import_module("workbench.gym_env")

__getattr__, __dir__ = lazy_exports(globals(), _MODULES)
