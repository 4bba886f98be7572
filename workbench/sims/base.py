"""The simulator adapter contract.

An adapter turns a task's ``sim:`` section into a ``gymnasium.Env`` and says, through a
:class:`TaskProfile`, what the task's StateView is and how success is judged. Success is the
task's own metric, judged on the final StateView of an episode, independent of whatever reward
trained the policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import numpy as np

from workbench.state import State, StateSchema

if TYPE_CHECKING:
    from workbench.spec import SimSpec

__all__ = ["SuccessMetric", "TaskProfile", "SimAdapter"]


@dataclass(frozen=True)
class SuccessMetric:
    """``passed(final_state, threshold)``; ``doc`` says what it means with ``{threshold}`` filled in."""

    doc: str
    threshold: float
    passed: Callable[[State, float], bool]

    def __call__(self, state: State, threshold: float | None = None) -> bool:
        return bool(self.passed(state, self.threshold if threshold is None else threshold))

    def describe(self, threshold: float | None = None) -> str:
        return self.doc.format(threshold=self.threshold if threshold is None else threshold)


@dataclass(frozen=True)
class TaskProfile:
    """What an adapter knows about one env: its StateView schema, its success metric, and
    optionally a scripted ``reference`` policy (live unwrapped env -> action) that solves it —
    reward programs must prefer its episodes to random ones (the pre-flight preference check)."""

    env_id: str
    schema: StateSchema
    success: SuccessMetric | None
    reference: Callable[[Any], np.ndarray] | None = None


class SimAdapter(Protocol):
    """One per simulator package, found through :data:`workbench.registry.SIMS` by its ``name``.
    Import heavy dependencies inside the methods, not at module top. An adapter's methods have
    exactly these parameters (names and kinds); ``tests/test_sim_contract.py`` holds every
    registered adapter to them."""

    name: str
    """The registry name (``sim.name`` in a task file)."""

    def make_env(self, spec: SimSpec, *, render_mode: str | None = None) -> gym.Env:
        """A new env for ``spec`` (``spec.env_id``, ``spec.kwargs``)."""
        ...

    def profile(self, spec: SimSpec, env: gym.Env) -> TaskProfile:
        """The task's StateView schema, success metric and optional reference policy.

        ``env`` is the probe env: one made by ``make_env(spec)`` for this call, which the adapter
        may read (spaces, model, live state) to build the profile; the caller closes it. An
        adapter may accept ``env=None`` and make (and close) its own."""
        ...

    def env_ids(self) -> list[str]:
        """The env ids ``spec.env_id`` may name (``workbench list``)."""
        ...
