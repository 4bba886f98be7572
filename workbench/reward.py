"""The reward contract, owned by the core: what every reward source produces and how it is applied.

A :class:`RewardProgram` is called after every env step as ``program(state, action, next_state)``
and returns ``(total, {component: value})``; states are :class:`workbench.state.State` snapshots
(read-only copies). A :class:`FrameReward` scores camera frames of a whole vector step at once. A
:class:`RewardSource` (a ``reward: {source: NAME}`` plug-in, found through
:mod:`workbench.registry`) validates its own options and builds a :class:`BuiltReward`. The sources
themselves (code files, LLM synthesis, CLIP goals, ...) are leaves in ``reward_synthesis/``.
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

__all__ = ["FRAME_KEY", "RewardProgram", "FrameReward", "CheckRecord", "BuiltReward", "RewardSource",
           "SourceOptions", "validate_options"]

# Where a frame-scored task's TaskWrapper leaves the post-step camera frame for its FrameReward.
FRAME_KEY = "workbench/frame"


@runtime_checkable
class RewardProgram(Protocol):
    """``inputs``: the StateView fields the program reads (None = any); only those are copied."""

    name: str
    inputs: frozenset[str] | None

    def __call__(self, state: State, action: np.ndarray, next_state: State) -> tuple[float, dict[str, float]]: ...


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

    def __call__(self, frames: np.ndarray, terms: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


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
