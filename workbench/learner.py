"""The Learner and Policy contracts every learner implements (SB3-shaped, as the house plan says).

``Learner.fit`` trains on env factories for a step budget inside a run directory and returns a
:class:`Policy`. A saved policy directory carries ``policy.json`` naming the class that loads it,
so ``workbench eval`` can load any learner's policy without knowing which learner made it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from workbench.errors import RunDirError, WorkbenchError
from workbench.registry import POLICIES, PluginError

if TYPE_CHECKING:
    from workbench.runs import Run
    from workbench.spec import TaskSpec

__all__ = ["Policy", "Learner", "FitHooks", "CheckpointState", "TrainingInterrupted", "TrainingStopped", "load_policy",
           "POLICY_FILE"]

POLICY_FILE = "policy.json"


class Policy(Protocol):
    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Policy: ...


@dataclass
class FitHooks:
    """What the run asks of a learner while it trains (all optional)."""

    on_steps: Callable[[int], None] | None = None  # global step count, called often (progress bar)
    on_eval: Callable[[int, Policy], dict[str, float | None]] | None = None  # periodic evaluation (None: n/a)
    eval_every: int = 0
    checkpoint_every: int = 10_000
    # Applied to the vector of training envs before anything else (Task.wrap_vec: batched frame
    # rewards). When set, episode statistics are taken after it (VecMonitor), not per env.
    wrap_vec: Callable[[Any], Any] | None = None
    # True when the reward exists only after wrap_vec (Task.reward_needs_vec): a learner that
    # steps the envs one by one, outside a vector env, must refuse the task rather than train on 0s
    reward_needs_vec: bool = False


@runtime_checkable
class CheckpointState(Protocol):
    """A training-env wrapper with learned state of its own (e.g. a reward decoder): a learner
    saves it into every checkpoint directory beside the model and restores it on resume, so the
    two always match."""

    def save_checkpoint(self, directory: Path) -> None: ...

    def load_checkpoint(self, directory: Path) -> None: ...


class TrainingInterrupted(Exception):
    """Ctrl-C during fit: a checkpoint at ``step`` was saved before this was raised."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"interrupted at step {step}")


class TrainingStopped(Exception):
    """fit stopped by a user-fixable error while training (e.g. a reward program that raised or
    broke the run-time guard): a checkpoint at ``step`` was saved before this was raised."""

    def __init__(self, step: int, cause: WorkbenchError):
        self.step, self.cause = step, cause
        super().__init__(f"stopped at step {step}: {cause}")


class Learner(Protocol):
    """``fit`` gets env factories: each builds one wrapped training env when called with no
    argument, or a rendering one with ``render_mode="rgb_array"`` (for learners that read frames)."""

    name: str

    @classmethod
    def validate_spec(cls, spec: TaskSpec, *, file: str) -> None: ...

    def fit(self, spec: TaskSpec, env_fns: Sequence[Callable[[], gym.Env]], budget: int, run: Run, *,
            hooks: FitHooks, resume: bool = False) -> Policy: ...

    # Optional: ``reference_scores(spec) -> (random, expert) | None``, the task's reference returns
    # (offline learners read them from their dataset); eval.json then has the D4RL-normalised score.

    @classmethod
    def load_checkpoint(cls, directory: Path, spec: TaskSpec) -> Policy:
        """The policy saved in one of this learner's checkpoint directories (``workbench eval``
        on a run that has no final model yet)."""
        ...


def load_policy(directory: Path) -> Policy:
    """Load a saved policy directory through the class named in its ``policy.json``."""
    meta_file = Path(directory) / POLICY_FILE
    if not meta_file.is_file():
        raise RunDirError(f"{directory}: no saved policy ({POLICY_FILE} missing)\n"
                          "  fix: finish or resume the run (`workbench run --resume RUN_DIR`)")
    try:
        meta = json.loads(meta_file.read_text())
        named = meta["class"]
    except (ValueError, KeyError, TypeError) as err:
        raise RunDirError(f"{meta_file}: not a policy record ({type(err).__name__}: {err})\n"
                          "  fix: point at a run's model/ directory written by `workbench run`") from None
    # Only a registered policy class or an installed rl_workbench.policies entry point. A record may
    # store the class's "module:Class" target (SB3Policy does), accepted only when it is exactly the
    # target of a registered one: a run directory cannot make `workbench eval` import any module.
    if isinstance(named, str) and named not in POLICIES:
        named = POLICIES.name_of_target(named) or named
    try:
        cls = POLICIES.get(named)
    except PluginError as err:
        raise RunDirError(f"{meta_file}: {err.message}\n  fix: {err.hint}") from None
    return cls.load(Path(directory))
