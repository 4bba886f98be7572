"""What every LLM-driven reward source shares (Text2Reward, Eureka, Auto MC-Reward, LaRe's
encoders): the prompt templates, how a task's action space is described to the model, how code is
read out of a reply, the options every such source takes, the client made from them, what
``workbench validate`` checks instead of synthesizing, and how a failed synthesis is kept."""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from workbench.errors import TaskError, WorkbenchError
from workbench.reward import BuiltReward, SourceOptions, validate_options

if TYPE_CHECKING:
    from reward_synthesis.llm import LLMClient
    from workbench.task import Task

__all__ = ["Mode", "resolve_mode", "prompt_template", "describe_action_space", "space_bounds", "extract_code",
           "code_blocks", "LLMSourceOptions", "validate_llm_source", "check_llm_source", "make_client", "task_for",
           "failure_text", "keep_failed", "with_detail"]


def prompt_template(name: str) -> str:
    return resources.files("reward_synthesis.llm.prompts").joinpath(f"{name}.txt").read_text(encoding="utf-8")


def space_bounds(space: Any) -> tuple[str, str, str]:
    def show(a: np.ndarray) -> str:
        return f"{float(a.flat[0]):g}" if np.all(a == a.flat[0]) else np.array2string(a, precision=3)

    return str(tuple(space.shape)), show(np.asarray(space.low)), show(np.asarray(space.high))


def describe_action_space(space: Any, names: Sequence[str] | None = None) -> str:
    """The action as reward code receives it: always an ``np.ndarray`` (a discrete action is its
    index in an array of shape (1,)), with its bounds or named choices."""
    if hasattr(space, "n"):
        named = f" ({', '.join(f'{i}={n}' for i, n in enumerate(names))})" if names else ""
        return f"np.ndarray of shape (1,) holding one integer action index in [0, {int(space.n) - 1}]{named}"
    shape, low, high = space_bounds(space)
    return f"np.ndarray of shape {shape}, each entry in [{low}, {high}]"


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.S)


def code_blocks(reply: str) -> list[tuple[str, str]]:
    """Every fenced block of a reply as ``(language, body)``, in order."""
    return [(lang.lower(), body) for lang, body in _FENCE.findall(reply)]


def extract_code(reply: str) -> str | None:
    """The reply's code: the fenced block that defines ``compute_reward`` (else the first python
    block), or unfenced text from the first ``import``/``def`` line. None if there is none."""
    blocks = code_blocks(reply)
    for _, body in blocks:
        if "def compute_reward" in body:
            return body.strip() + "\n"
    for lang, body in blocks:
        if lang in ("python", "py", "") and body.strip():
            return body.strip() + "\n"
    match = re.search(r"^(import |from |def )", reply, re.M)
    if match and "def " in reply[match.start():]:
        return reply[match.start():].strip() + "\n"
    return None


def failure_text(err: BaseException) -> str:
    """What stopped a synthesis, for its record: the error's message (Ctrl-C: "interrupted")."""
    if isinstance(err, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    return str(err) or type(err).__name__


def keep_failed(name: str, tag: str, files: dict[str, str]) -> Path:
    """Write a failed synthesis' files (run-relative path -> text) under ``runs/synth/`` for the user."""
    import time

    from workbench.runs import atomic_write, default_runs_root

    kept = default_runs_root() / "synth" / f"{name}__{tag}__{time.strftime('%Y%m%d-%H%M%S')}"
    for relative, text in files.items():
        atomic_write(kept / relative, text)
    return kept


def with_detail(err: BaseException, line: str) -> BaseException:
    """``err`` with one more line in its message (a WorkbenchError keeps its type and exit code)."""
    if isinstance(err, WorkbenchError) and err.args and isinstance(err.args[0], str):
        err.args = (f"{err.args[0]}\n  {line}", *err.args[1:])
    return err


def check_llm_source(source: str, spec: Any, llm: dict[str, Any], messages: list[dict[str, str]], *,
                     offline: bool, seed: int, extra: str = "", json_schema: dict[str, Any] | None = None,
                     schema_name: str = "reply") -> BuiltReward:
    """What ``workbench validate`` reports for an LLM-driven source instead of synthesizing: the
    prompt built, and the endpoint reachable (or the embedded server able to start, or, offline,
    the first request cached: with ``json_schema``, the schema request). Seconds, never a
    generation; failures raise as the run would."""
    client = make_client(llm, offline=offline)
    try:
        where = client.check_available(messages, seed=seed, json_schema=json_schema, schema_name=schema_name)
    finally:
        client.close()
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return BuiltReward(None, f"{source}: not synthesized by validate (prompt {chars:,} chars{extra}; {where})",
                       record={"synthesized": False, "prompt_chars": chars, "llm": where})


def task_for(spec: Any, profile: Any, what: str) -> Task:
    """The Task an LLM-driven source builds its prompt from, while its own reward is being made."""
    from workbench.registry import SIMS
    from workbench.task import Task

    return Task(spec, SIMS.get(spec.sim.name)(), profile, BuiltReward(None, what))


Mode = Literal["code", "sketch", "auto"]


def resolve_mode(mode: Mode, llm: dict[str, Any]) -> Literal["code", "sketch"]:
    """``auto``: a typed sketch for the embedded model (no endpoint configured: free code from it is
    almost never accepted), free code for a configured endpoint (``llm.base_url`` or
    ``$WORKBENCH_LLM_URL``), which writes what a sketch cannot say."""
    if mode != "auto":
        return mode
    from reward_synthesis.llm import LLMConfig

    return "sketch" if LLMConfig.model_validate(llm).resolve().base_url is None else "code"


def make_client(llm: dict[str, Any], *, transcript: Any = None, offline: bool = False) -> LLMClient:
    """An LLM client from a task's ``llm:`` options (env vars and CLI flags resolved on top)."""
    from reward_synthesis.llm import LLMClient, LLMConfig, ResponseCache, default_cache_dir

    config = LLMConfig.model_validate(llm).resolve()
    return LLMClient(config, transcript=transcript, cache=ResponseCache(default_cache_dir()), offline=offline)


class LLMSourceOptions(SourceOptions):
    """Options every LLM-driven reward source shares."""

    goal: str | None = None  # default: the task's goal
    samples: int = Field(256, gt=0, le=100_000)  # states sampled for the checks
    seed: int = 0  # request seed of the first LLM call
    offline: bool = False  # replay cached replies only
    llm: dict[str, Any] = {}  # LLMConfig keys: base_url, model, temperature, ...


def validate_llm_source(model: type[SourceOptions], spec: Any, *, file: str, source: str) -> Any:
    """What every LLM-driven source checks up front: its options, a goal in words (``goal`` option
    or the task's), and its ``llm:`` section (errors name ``reward.llm.<key>``)."""
    from reward_synthesis.llm import LLMConfig

    opts = validate_options(model, spec, file)
    if not (opts.goal or spec.goal):
        raise TaskError(f"{source} needs a goal in words", file=file, key="reward.goal",
                        hint="set `goal:` at the top of the task or `reward.goal:`")
    try:
        LLMConfig.model_validate(opts.llm)
    except ValidationError as err:
        from workbench.spec import pydantic_error_to_task_error

        raise pydantic_error_to_task_error(err, file=file, prefix="reward.llm.", model=LLMConfig) from None
    return opts
