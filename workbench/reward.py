"""The reward contract, owned by the core: what every reward source produces and how it is applied.

A :class:`RewardProgram` is called after every env step as ``program(state, action, next_state)``
and returns ``(total, {component: value})``; states are :class:`workbench.state.State` snapshots
(read-only copies). A :class:`FrameReward` scores camera frames of a whole vector step at once. A
:class:`RewardSource` (a ``reward: {source: NAME}`` plug-in, found through
:mod:`workbench.registry`) validates its own options and builds a :class:`BuiltReward`. The sources
themselves (code files, LLM synthesis, CLIP goals, ...) are leaves in ``reward_synthesis/``.

**Batched programs.** A program with ``batched = True`` (:class:`BatchedRewardProgram`) is called
once per *vector* step for all N envs: every StateView field is stacked with a leading env axis
(``state.fingertip_pos`` is ``[N, 3]``), the action is ``[N, *action_shape]`` (``[N, 1]`` for a
discrete action), and it returns totals ``[N]`` and components ``{name: [N]}``. Row ``i`` of every
input and output belongs to env ``i``; a batched program must treat rows independently, so that
its result for N envs equals its results for each env alone (the pre-flight checks this). The
single-state form stays the default. How a batched program is applied:

* one env (evaluation, ``Task.make_env()``, or any vector env built without ``Task.wrap_vec``):
  the TaskWrapper calls it with N = 1 (:func:`call_single`).
* training (``Task.env_fns`` in a vector env + ``Task.wrap_vec``): the vector wrapper
  (``workbench.wrappers.VecBatchedReward``) takes the program over from the envs; each env's
  TaskWrapper then only reads its post-step StateView (the fields in ``inputs``, packed into one
  row) inside its step and its post-reset one after a reset, and hands them over (``info[STATE_KEY]``
  and the reset info; shared buffers for envs in the same process). The vector wrapper stacks
  them with the actions, calls the program once per vector step, and writes
  ``info["reward/<name>"]`` per env as the single path does.

``state`` is the pre-step state in both forms: after an episode ended (and the vector env reset
it), the state read after the reset; ``next_state`` is read inside the env's step, before any
auto-reset. A code program (``compute_reward`` / ``compute_reward_batch`` files) reads
``next_state`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from workbench.state import State

if TYPE_CHECKING:
    import gymnasium as gym

    from workbench.sims.base import TaskProfile
    from workbench.spec import TaskSpec

__all__ = ["FRAME_KEY", "STATE_KEY", "RewardProgram", "BatchedRewardProgram", "is_batched", "call_single",
           "FrameReward", "CheckRecord", "BuiltReward", "RewardSource", "SourceOptions", "validate_options"]

# Where a frame-scored task's TaskWrapper leaves the post-step camera frame for its FrameReward.
FRAME_KEY = "workbench/frame"
# Where a batched program's TaskWrapper leaves the packed post-step (step info) or post-reset
# (reset info) StateView for the vector wrapper that calls the program (workbench.wrappers).
STATE_KEY = "workbench/state"


@runtime_checkable
class RewardProgram(Protocol):
    """``inputs``: the StateView fields the program reads (None = any); only those are copied."""

    name: str
    inputs: frozenset[str] | None

    def __call__(self, state: State, action: np.ndarray, next_state: State) -> tuple[float, dict[str, float]]: ...


@runtime_checkable
class BatchedRewardProgram(Protocol):
    """A program for a whole vector step: ``batched`` is True, fields of ``state`` and
    ``next_state`` are ``[N, ...]``, ``action`` is ``[N, ...]``; returns ``([N], {name: [N]})``
    float arrays. ``inputs`` as for :class:`RewardProgram`."""

    name: str
    inputs: frozenset[str] | None
    batched: bool

    def __call__(self, state: State, action: np.ndarray,
                 next_state: State) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


def is_batched(program: Any) -> bool:
    """Whether ``program`` is a :class:`BatchedRewardProgram` (its ``batched`` is True)."""
    return getattr(program, "batched", False) is True


def _one_row(state: State) -> State:
    # Views with a leading axis of 1; views of read-only arrays are read-only.
    return State._from_frozen({name: value[None] for name, value in state.items()})


def call_single(program: Any, state: State, action: np.ndarray,
                next_state: State) -> tuple[float, dict[str, float]]:
    """Call a batched program on one env's step (N = 1) and return the single-state result."""
    actions = np.atleast_1d(np.asarray(action))[None]  # [1, *shape]; a discrete action is [1, 1]
    total, components = program(_one_row(state), actions, _one_row(next_state))
    return float(total[0]), {name: float(values[0]) for name, values in components.items()}


class CheckRecord(Protocol):
    """What a reward's check report must offer the run directory (``reward/reward.json``)."""

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class FrameReward(Protocol):
    """A reward scored from camera frames, for all envs of one vector step in one batch.

    ``frames`` is ``[N, H, W, 3]`` uint8 (each env's frame after its step). ``terms`` holds
    per-env arrays ``[N]`` of what the state side already computed: ``env`` (the simulator's
    reward), ``terms`` (the state program's total, 0 without one) and each state-program
    component by name. Returns the reward ``[N]`` and components ``{name: [N]}`` that land in
    ``info["reward/<name>"]``.
    """

    name: str

    def __call__(self, frames: np.ndarray,
                 terms: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


@dataclass
class BuiltReward:
    """What a source hands to the run: the program (None = the env's own reward) and its record.

    ``files`` are extra artifacts (path relative to the run directory -> text), e.g. an LLM
    transcript; ``record`` extra fields for ``reward/reward.json``. A pixel reward sets
    ``frame_reward`` (``program`` is then its optional state-side terms) and ``resolved``: the
    ``reward:`` section that rebuilds exactly this reward from the run directory (fitted
    calibration, copied files), written into the run's resolved task. ``env_wrapper`` wraps each
    task env (after the TaskWrapper, training and evaluation alike) and ``vec_wrapper`` the vector
    of training envs (after any frame reward): rewards that need whole episodes or a model shared
    across envs, such as an episodic return or a learned decoder, live there.
    """

    program: RewardProgram | None
    description: str
    source_text: str | None = None
    report: CheckRecord | None = None
    files: dict[str, str] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    frame_reward: FrameReward | None = None
    resolved: dict[str, Any] | None = None
    env_wrapper: Callable[[gym.Env], gym.Env] | None = None
    vec_wrapper: Callable[[Any], Any] | None = None  # VecEnv -> VecEnv


class RewardSource(Protocol):
    """A ``reward: {source: NAME, ...}`` plug-in.

    Optional: ``check(spec, profile, env) -> BuiltReward``, which ``workbench validate`` calls
    instead of ``build`` (``Task.build(..., check_only=True)``): a source whose ``build`` is
    expensive (an LLM synthesis) checks everything up to that point and returns a reward that only
    describes itself.
    """

    def validate_spec(self, spec: TaskSpec, *, file: str) -> None: ...

    def build(self, spec: TaskSpec, profile: TaskProfile, env: gym.Env) -> BuiltReward: ...


class SourceOptions(BaseModel):
    """Base for a reward source's options: the keys of ``reward:`` besides ``source``."""

    model_config = ConfigDict(extra="forbid")


def validate_options(model: type[SourceOptions], spec: TaskSpec, file: str) -> SourceOptions:
    from workbench.spec import pydantic_error_to_task_error

    try:
        return model.model_validate(spec.reward.options)
    except ValidationError as err:
        raise pydantic_error_to_task_error(err, file=file, prefix="reward.", model=model) from None
