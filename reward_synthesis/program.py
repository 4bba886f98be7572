"""The reward sources of the spine: the env's own reward and a sandbox-checked program file.

The reward contract they implement (:class:`~workbench.reward.RewardProgram`,
:class:`~workbench.reward.BuiltReward`, ...) lives in the core, :mod:`workbench.reward`.
:class:`CodeRewardProgram` runs accepted code under the run-time guard.

A program file declares its form by the function it defines: ``compute_reward(state, action)``
(one env's state; the default) or ``compute_reward_batch(state, action)`` (a batched program:
fields ``[N, ...]``, actions ``[N, ...]``, returns ``[N]`` totals and ``{name: [N]}``; called once
per vector step for all training envs, see :mod:`reward_synthesis.safety.sandbox`). The same file runs
either way in a task: ``reward: {source: code, path: rewards/x.py}``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from reward_synthesis.safety.guard import DEFAULT_TIMEOUT_S, check_finite, check_finite_batch, guarded_call
from reward_synthesis.safety.sandbox import (
    BATCH_ENTRY_POINT,
    describe_exception,
    entry_point_of,
    load_program,
    normalize_batch_output,
    normalize_output,
    reward_action,
    state_inputs,
)
from workbench.errors import RewardCodeRejected, RewardRuntimeError, TaskError, WorkbenchError
from workbench.reward import BuiltReward, SourceOptions, validate_options
from workbench.state import State

if TYPE_CHECKING:
    import gymnasium as gym

    from reward_synthesis.safety.checks import CheckReport
    from workbench.sims.base import TaskProfile
    from workbench.spec import TaskSpec

__all__ = ["CodeRewardProgram", "EnvRewardSource", "CodeRewardSource", "build_code_program", "checked_program"]

@dataclass
class CodeRewardProgram:
    """A sandbox-accepted ``compute_reward(state, action)`` file, called on the post-step state
    under the run-time guard (:mod:`reward_synthesis.safety.guard`): each call is time-bounded, its
    output must be finite, and it sees the same inputs as in the pre-flight (read-only float64
    state fields and action).

    A ``compute_reward_batch`` file makes a batched program (``batched`` is True, the
    :class:`~workbench.reward.BatchedRewardProgram` contract): one guarded call for a batch of N,
    returning ``[N]`` float arrays, every env's value finite."""

    source: str
    name: str = "code"
    filename: str = "<reward>"
    timeout_s: float = DEFAULT_TIMEOUT_S
    inputs: frozenset[str] | None = field(init=False)
    batched: bool = field(init=False, default=False)
    calls: int = field(init=False, default=0)
    _fn: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.batched = entry_point_of(self.source) == BATCH_ENTRY_POINT
        # Loading runs the module body: bounded like a call.
        self._fn = guarded_call(load_program, (self.source,),
                                kwargs={"filename": self.filename, "batched": self.batched},
                                timeout_s=max(10.0, self.timeout_s),
                                describe=lambda: f"reward program {self.filename} (loading)")
        self.inputs = state_inputs(self.source)

    def __getstate__(self) -> dict[str, Any]:
        """A subprocess env gets the source and loads it afresh (functions of the restricted
        namespace are not picklable, and a fresh load has fresh frozen state)."""
        return {k: v for k, v in self.__dict__.items() if k != "_fn"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    def _describe(self) -> str:
        return f"reward program {self.filename} (call {self.calls})"

    def __call__(self, state: State, action: np.ndarray, next_state: State) -> tuple[Any, dict[str, Any]]:
        if self.batched:
            return self._call_batch(action, next_state)
        self.calls += 1
        try:
            value = guarded_call(self._fn, (next_state, reward_action(action)), timeout_s=self.timeout_s,
                                 describe=self._describe)
            total, components = normalize_output(value)
        except WorkbenchError:
            raise
        except Exception as err:  # untrusted code: report where, never crash with a bare traceback
            raise RewardRuntimeError(f"{self._describe()} raised during training: "
                                     f"{describe_exception(err, self.filename, self.source)}") from None
        check_finite(total, components, self._describe)
        return total, components

    def _call_batch(self, action: np.ndarray, next_state: State) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self.calls += 1
        actions = reward_action(action)
        try:
            value = guarded_call(self._fn, (next_state, actions), timeout_s=self.timeout_s, describe=self._describe)
        except WorkbenchError:
            raise
        except Exception as err:  # untrusted code: report where, never crash with a bare traceback
            raise RewardRuntimeError(f"{self._describe()} raised during training: "
                                     f"{describe_exception(err, self.filename, self.source)}") from None
        try:
            total, components = normalize_batch_output(value, len(actions))
        except TypeError as err:  # the output broke the contract: the message says how
            raise RewardRuntimeError(f"{self._describe()} returned a bad value during training: {err}") from None
        check_finite_batch(total, components, self._describe)
        return total, components


class EnvRewardSource:
    """``reward: {source: env}`` — the simulator's own reward, untouched."""

    class Options(SourceOptions):
        pass

    @classmethod
    def validate_spec(cls, spec: TaskSpec, *, file: str) -> None:
        validate_options(cls.Options, spec, file)

    @classmethod
    def build(cls, spec: TaskSpec, profile: TaskProfile, env: gym.Env) -> BuiltReward:
        return BuiltReward(None, f"the env's own reward ({spec.sim.env_id})")


class CodeRewardSource:
    """``reward: {source: code, path: rewards/x.py}`` — a reward program file, sandbox-checked."""

    class Options(SourceOptions):
        path: str = Field(description="reward program file, relative to the task file")
        samples: int = Field(256, gt=0, le=100_000, description="states sampled for the pre-flight checks")
        call_timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=600,
                                      description="run-time guard: the longest one reward call may take")

    @classmethod
    def program_path(cls, spec: TaskSpec) -> Path:
        opts = cls.Options.model_validate(spec.reward.options)
        path = Path(opts.path)
        return path if path.is_absolute() else spec.base_dir / path

    @classmethod
    def validate_spec(cls, spec: TaskSpec, *, file: str) -> None:
        validate_options(cls.Options, spec, file)
        path = cls.program_path(spec)
        if not path.is_file():
            raise TaskError(f"reward program not found: {path}", file=file, key="reward.path",
                            hint="give a .py file defining compute_reward(state, action) (or, batched, "
                                 "compute_reward_batch(state, action)), relative to the task file")

    @classmethod
    def build(cls, spec: TaskSpec, profile: TaskProfile, env: gym.Env) -> BuiltReward:
        opts = cls.Options.model_validate(spec.reward.options)
        return build_code_program(cls.program_path(spec), profile, env, samples=opts.samples,
                                  call_timeout_s=opts.call_timeout_s)


def build_code_program(path: Path, profile: TaskProfile, env: gym.Env, *, samples: int = 256,
                       call_timeout_s: float = DEFAULT_TIMEOUT_S) -> BuiltReward:
    """Read a reward program file, run the pre-flight checks on ``env``, and wrap it; rejected
    programs raise :class:`RewardCodeRejected` with the report."""
    text = path.read_text(encoding="utf-8", errors="replace")
    program, report = checked_program(text, f"reward program {path}", profile, env, name=path.stem,
                                      filename=str(path), samples=samples, call_timeout_s=call_timeout_s)
    return BuiltReward(program, f"reward program {path.name} (sha256 {program.sha256[:12]})", text, report)


def checked_program(text: str, label: str, profile: TaskProfile, env: gym.Env, *, name: str, filename: str,
                    samples: int = 256, call_timeout_s: float = DEFAULT_TIMEOUT_S
                    ) -> tuple[CodeRewardProgram, CheckReport]:
    """The pre-flight checks on ``samples`` states of ``env`` (and the preference episodes when
    the task has a reference policy), then the guarded program; a rejected program raises
    :class:`RewardCodeRejected` ("``label`` was rejected ...") with the report."""
    from reward_synthesis.safety.checks import check_inputs, preflight

    states, preference = check_inputs(env, profile, n=samples)
    report = preflight(text, states, program=filename, preference=preference)
    if not report.accepted:
        raise RewardCodeRejected(f"{label} was rejected by the pre-flight checks:\n{report.render()}", report)
    return CodeRewardProgram(text, name=name, filename=filename, timeout_s=call_timeout_s), report
