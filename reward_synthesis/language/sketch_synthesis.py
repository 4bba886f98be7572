"""Reward sketches from a language model: a constrained reply, validated, compiled and checked.

``synthesize_sketch(task, goal, client, samples)`` asks for a reward *sketch* (see
:mod:`reward_synthesis.language.sketches`) instead of free code. The request carries the task's
sketch JSON schema (``LLMClient.chat(json_schema=...)``): the embedded llama.cpp server samples only
replies the schema's grammar allows (field names are enums, kinds and keys fixed), an endpoint with
structured output gets the same schema, any other gets it only in the prompt. Every reply then goes
through :func:`validate_sketch` (what a grammar cannot say: number bounds, ``a`` differs from ``b``),
:func:`compile_sketch` and the same pre-flight as any program (sandbox, finite values, timing,
preference, state dependence). A failure sends the exact problems back for a repair, up to
``attempts`` times.

What a 135M-parameter model cannot judge, the workbench does before asking: :func:`rank_fields`
orders the StateView's fields by how close their names and docs are in meaning to the goal
(all-MiniLM-L6-v2 sentence embeddings, the same packaged model the reward library retrieves with),
and the prompt and the decoding schema offer only the ``top_fields`` best, best first. The grammar
then cannot name a field unrelated to the goal; validation, compilation and the checks still use
the task's whole StateView. The model writes no transform scales: :func:`fill_scales` sets each to
its quantity's typical size on the pre-flight samples (metres or thousands of uu alike), and
:func:`fill_gain` multiplies the whole reward by ``1 - gamma`` of the task's learner. A distance
threshold it gets wrong (``below: 0``) becomes "closer than on 90% of the samples"
(:func:`fill_thresholds`), a repeated term name gets a suffix (:func:`unique_names`); each attempt
records what was set in ``filled``.

With ``examples`` > 0 the prompt shows the accepted sketches whose goals are closest in meaning to
this goal (:func:`similar_examples`, the same MiniLM embeddings) instead of one fixed example, from
``sketch_examples.json``: hand-written sketches of the shipped tasks' goals (reach then push, stay
upright while moving, find then collect, ...), each validated against its own task by the tests.
Examples of the task's own environment are never shown: that would hand the model the answer, and
the fidelity measured with them would be ours, not the model's. Off by default (:data:`EXAMPLES`):
the embedded model did worse with them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from reward_synthesis.language.sketches import (
    WEIGHT_BOUND,
    SketchInvalid,
    TermKey,
    compile_sketch,
    fill_gain,
    fill_scales,
    fill_thresholds,
    named_fields,
    settle_action_costs,
    sketch_schema,
    term_key,
    unique_names,
    validate_sketch,
)
from reward_synthesis.llm.sources import LLMSourceOptions, Mode, describe_action_space, failure_text, prompt_template
from reward_synthesis.safety.checks import Preference, preflight
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from reward_synthesis.llm import LLMClient
    from workbench.state import State, StateSchema
    from workbench.task import Task

__all__ = ["SketchModeOptions", "SketchAttempt", "SketchSynthesis", "SketchRequest", "build_sketch_messages",
           "sketch_request", "synthesize_sketch", "rank_fields", "offered_schema", "SCHEMA_NAME", "TOP_FIELDS",
           "SketchExample", "sketch_examples", "similar_examples", "EXAMPLES", "EXAMPLES_FILE",
           "decoding_schema", "blamed_terms", "judge_sketch", "reweighed"]

SCHEMA_NAME = "reward_sketch"
TOP_FIELDS = 8  # fields offered to the model: every field of most tasks, the goal's 8 of Crafter's ~110
# Example sketches in the prompt, of the goals closest to this one (other environments only). 0: the
# one fixed push-the-box example. Measured on Gemma 3 270M (benchmarks/sketch_acceptance.py, 8 tasks x
# 6 replies): the fixed example 47/48 accepted, 18 with 2+ terms; 2 retrieved examples 26/48 and 7;
# 1 retrieved example 34/48 and 14. The small model copies an example's terms (often
# only its action cost) instead of its shape, so retrieval is off by default.
EXAMPLES = 0
EXAMPLES_FILE = Path(__file__).with_name("sketch_examples.json")


@dataclass(frozen=True)
class SketchExample:
    """An accepted sketch of a shipped task's goal (``task``: that task file, relative to the repository)."""

    task: str
    env_id: str
    goal: str
    sketch: dict[str, Any]

    def prompt_text(self) -> str:
        return f'Goal: "{self.goal}" (its fields: {", ".join(named_fields(self.sketch))})\n{json.dumps(self.sketch)}'


@lru_cache(maxsize=1)
def sketch_examples() -> tuple[SketchExample, ...]:
    return tuple(SketchExample(**entry) for entry in json.loads(EXAMPLES_FILE.read_text()))


def similar_examples(goal: str, env_id: str, k: int = EXAMPLES) -> list[SketchExample]:
    """The ``k`` example sketches whose goals are closest to ``goal`` (cosine similarity of MiniLM
    embeddings), best first, from environments other than ``env_id``."""
    from reward_synthesis.language.library import embed

    pool = [e for e in sketch_examples() if e.env_id != env_id]
    if k <= 0 or not pool:
        return []
    vectors = embed([goal, *(e.goal for e in pool)])
    scores = vectors[1:] @ vectors[0]
    order = sorted(range(len(pool)), key=lambda i: (-float(scores[i]), i))
    return [pool[i] for i in order[:k]]


class SketchModeOptions(LLMSourceOptions):
    """The options of an LLM-driven source that can ask for free code or for a reward sketch."""

    mode: Mode = "auto"  # free code, a typed reward sketch compiled to code, or auto (by endpoint)
    top_fields: int = Field(TOP_FIELDS, ge=1)  # mode sketch: StateView fields offered, most related first
    repairs: int = Field(1, ge=0)  # mode sketch: rejections sent back in a row before a fresh request


def rank_fields(schema: StateSchema, goal: str) -> list[tuple[str, float]]:
    """``(field name, cosine similarity to the goal)`` for every field, most related first: the
    goal against ``"<name in words>: <doc>"`` of each field, in MiniLM sentence embeddings."""
    from reward_synthesis.language.library import embed

    texts = [f"{f.name.replace('_', ' ')}: {f.doc}" for f in schema.fields]
    vectors = embed([goal, *texts])
    scores = vectors[1:] @ vectors[0]
    order = sorted(range(len(texts)), key=lambda i: (-float(scores[i]), i))
    return [(schema.fields[i].name, round(float(scores[i]), 4)) for i in order]


def offered_schema(schema: StateSchema, ranking: Sequence[tuple[str, float]], top: int | None) -> StateSchema:
    """The StateView as the model sees it: the ``top`` most related fields (every field when None), best first."""
    by_name = {f.name: f for f in schema.fields}
    names = [name for name, _ in ranking][:top]
    return dataclasses.replace(schema, fields=tuple(by_name[n] for n in names))


@dataclass
class SketchAttempt:
    """One reply and what validation, compilation and the checks made of it."""

    index: int
    reply: str
    sketch: dict[str, Any] | None  # the validated sketch (JSON), None when it did not validate
    code: str | None  # the compiled program
    accepted: bool
    reason: str  # why it was rejected ("" when accepted): the exact problems sent back
    stage: str  # where it stopped: "json", "sketch", "compile", "preflight" or "accepted"
    report: dict[str, Any] | None = None
    sha256: str | None = None
    latency_s: float = 0.0
    cached: bool = False
    constraint: str | None = None  # how the reply was constrained (LLMClient's SCHEMA_MODES)
    filled: dict[str, Any] = field(default_factory=dict)  # what the workbench set in the reply: key -> value
    # Terms the preference checks blamed (pursued, yet ranking a baseline above the reference):
    # ``[kind, field, b]``, no longer offered to the attempts after this one.
    excluded: list[list[Any]] = field(default_factory=list)


@dataclass
class SketchSynthesis:
    goal: str
    attempts: list[SketchAttempt] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    fields: list[tuple[str, float]] = field(default_factory=list)  # the ranking; the offered ones first
    offered: int = 0  # how many of them the prompt and the schema offered

    @property
    def accepted(self) -> SketchAttempt | None:
        return next((a for a in self.attempts if a.accepted), None)

    @property
    def sketch(self) -> dict[str, Any] | None:
        accepted = self.accepted
        return accepted.sketch if accepted else None

    @property
    def code(self) -> str | None:
        accepted = self.accepted
        return accepted.code if accepted else None

    def to_dict(self) -> dict[str, Any]:
        out = {"goal": self.goal, "mode": "sketch", "accepted": self.accepted is not None,
               "fields": {"offered": [n for n, _ in self.fields[:self.offered]],
                          "similarity_to_goal": dict(self.fields)},
               "attempts": [asdict(a) for a in self.attempts]}
        if self.error is not None:
            out["error"] = self.error
        return out


def _action_space(task: Task) -> tuple[Any, str]:
    env = task.make_env()
    try:
        return env.action_space, describe_action_space(env.action_space, getattr(env.unwrapped, "action_names", None))
    finally:
        env.close()


def build_sketch_messages(task: Task, goal: str, *, action: str | None = None,
                          fields: StateSchema | None = None, examples: int = EXAMPLES) -> list[dict[str, str]]:
    """System + user messages: the vocabulary, the StateView fields (generated by the adapter; with
    ``fields``, the offered ones in their order), the action, the success metric, example sketches
    of other tasks (the ``examples`` closest goals, :func:`similar_examples`; 0: one fixed example)
    and the goal."""
    if action is None:
        _, action = _action_space(task)
    shown = fields if fields is not None else task.profile.schema
    similar = similar_examples(goal, task.spec.sim.env_id, examples)
    if similar:
        example = "Example sketches for OTHER tasks, their goals the closest to this one:\n" + "\n\n".join(
            e.prompt_text() for e in similar)
    else:
        example = ('An example sketch for ANOTHER task ("Push the box onto the pad", fields gripper_pos, box_pos, '
                   'pad_pos):\n' + prompt_template("sketch_example").strip())
    user = prompt_template("sketch_user").format(
        env_id=task.spec.sim.env_id, state_description=shown.describe(),
        action_description=action, success=task.success_doc(), goal=goal, example=example)
    return [{"role": "system", "content": prompt_template("sketch_system").format()},
            {"role": "user", "content": user}]


@dataclass(frozen=True)
class SketchRequest:
    """The first request of a sketch synthesis: what ``workbench validate`` looks up in the cache
    (offline) and what :func:`synthesize_sketch` sends."""

    messages: list[dict[str, str]]
    schema: dict[str, Any]  # the decoding schema: offered fields only, every key required, no scales
    ranking: list[tuple[str, float]]
    offered: StateSchema
    action_space: Any
    action: str  # the action space in words, as the prompt has it


def sketch_request(task: Task, goal: str, *, top_fields: int | None = TOP_FIELDS,
                   samples: Sequence[tuple[State, np.ndarray]] | None = None,
                   examples: int = EXAMPLES, exclude_kinds: Sequence[str] = ()) -> SketchRequest:
    """``samples``: the pre-flight samples; the decoding schema then offers nothing constant on them
    (a term of it could only be rejected as constant). ``workbench validate`` passes the same
    (seeded) samples as the run, so the offline lookup finds the run's request. ``exclude_kinds``:
    term kinds the decoding schema does not offer (:func:`sketch_schema`)."""
    space, action = _action_space(task)
    ranking = rank_fields(task.profile.schema, goal)
    offered = offered_schema(task.profile.schema, ranking, top_fields)
    return SketchRequest(build_sketch_messages(task, goal, action=action, fields=offered, examples=examples),
                         decoding_schema(offered, space, samples, exclude_kinds),
                         ranking, offered, space, action)


def decoding_schema(offered: StateSchema, space: Any, samples: Sequence[tuple[State, np.ndarray]] | None,
                    exclude_kinds: Sequence[str] = (), exclude_terms: Sequence[TermKey] = ()) -> dict[str, Any]:
    """The schema a reply is decoded under: the offered fields, every key required, no scales."""
    return sketch_schema(offered, action_space=space, every_key=True, scales=False, samples=samples,
                         exclude_kinds=exclude_kinds, exclude_terms=exclude_terms)


def blamed_terms(attempt: SketchAttempt) -> list[TermKey]:
    """The terms of a rejected sketch that the preference checks blamed (``preference``: random
    actions beat the reference; ``state_dependence``: random or idle states do) and that the sketch pursued
    (weight > 0): their objective itself ranks a baseline above the reference policy, so another
    weight would not save them (a term it avoided, weight < 0, may be right with the other sign)."""
    if attempt.sketch is None or not attempt.report:
        return []
    blamed = {name for r in attempt.report.get("results", []) for name in r.get("blamed", [])}
    keys = []
    for term in [*attempt.sketch.get("terms", []),
                 *(t for s in attempt.sketch.get("terms", []) if s.get("kind") == "stage" for t in s.get("terms", []))]:
        key = term_key(term)
        if key is not None and term.get("name") in blamed and float(term.get("weight", 1.0)) > 0 and key not in keys:
            keys.append(key)
    return keys


def _bullets(problems: Sequence[str]) -> str:
    return "\n".join(f"- {p}" for p in problems) or "- the checks failed"


def synthesize_sketch(task: Task, goal: str, client: LLMClient, samples: Sequence[tuple[State, np.ndarray]], *,
                      attempts: int = 4, seed: int = 0, preference: Preference | None = None,
                      top_fields: int | None = TOP_FIELDS, on_attempt: Any = None,
                      result: SketchSynthesis | None = None,
                      messages: Sequence[dict[str, str]] | None = None, repairs: int = 1,
                      examples: int = EXAMPLES, exclude_kinds: Sequence[str] = ()) -> SketchSynthesis:
    """Ask for a sketch under the task's schema, validate, compile and pre-flight it, and repair with
    the exact problems until one is accepted (at most ``attempts`` replies; request ``i`` uses seed
    ``seed + i``, so a re-run replays from the response cache). The prompt and the schema offer the
    ``top_fields`` fields most related to the goal (:func:`rank_fields`; None: all, still ranked).
    ``result``: pass one to keep the attempts made so far when the LLM fails (the error still
    propagates; ``result.error`` says why). ``messages``: the conversation to start from instead of
    the task prompt (a search's reflection on an earlier sketch). ``repairs``: rejections sent back
    in a row before the next attempt starts over from the prompt (with its own seed); measured on
    SmolLM2-135M, a repair of a rejected sketch was almost never accepted, a fresh sample often was.
    ``examples``: example sketches in the prompt (:func:`build_sketch_messages`). ``exclude_kinds``:
    term kinds the decoding schema does not offer (:func:`sketch_schema`).

    Fresh starts alternate between the prompt with ``examples`` and one with the closest goal's
    example sketch (or the fixed one, if ``examples`` > 0), so no one example decides every reply.
    A term the preference checks blame (:func:`blamed_terms`) is not offered to the later attempts:
    measured on HalfCheetah, Gemma 3 270M wrote "closeness of x_position to 0" in 8 of 8 fresh
    replies; each is rejected, and only a schema without that term makes the next reply differ.
    """
    request = sketch_request(task, goal, top_fields=top_fields, samples=samples, examples=examples,
                             exclude_kinds=exclude_kinds)
    space, schema = request.action_space, request.schema
    excluded: list[TermKey] = []
    conversation = list(messages if messages is not None else request.messages)
    result = result if result is not None else SketchSynthesis(goal=goal)
    result.fields, result.offered = request.ranking, len(request.offered.fields)
    # Fresh starts alternate between the task prompt and the same prompt showing the closest goal's
    # sketch instead (or the fixed example, when retrieval is on): the small model copies the
    # example's shape, and no one example fits every goal (measured on Gemma 3 270M: with the fixed
    # push-the-box example every HalfCheetah reply was a distance; with Hopper's sketch the first
    # reply maximised x_velocity; on reaching and pushing tasks the fixed example does better).
    starts: list[list[dict[str, str]]] = [list(conversation)]
    try:
        start, repaired, fresh = list(conversation), 0, 0
        for i in range(attempts):
            reply = client.chat(list(conversation), seed=seed + i, json_schema=schema, schema_name=SCHEMA_NAME)
            attempt = _judge(i, reply, task, space, samples, preference, goal)
            result.attempts.append(attempt)
            if on_attempt is not None:
                on_attempt(attempt)
            if attempt.accepted:
                break
            if new := [key for key in blamed_terms(attempt) if key not in excluded]:
                excluded += new
                attempt.excluded = [list(key) for key in new]
                schema = decoding_schema(request.offered, space, samples, exclude_kinds, excluded)
            if repaired >= repairs:  # start over: a small model repeats its mistake more than it repairs it
                fresh += 1
                if messages is None and len(starts) == 1:  # the other example, made when first needed
                    starts.append(build_sketch_messages(task, goal, action=request.action, fields=request.offered,
                                                        examples=0 if examples else 1))
                start = list(starts[fresh % len(starts)])
                conversation, repaired = list(start), 0
                continue
            repair = prompt_template("sketch_repair").format(reason=attempt.reason)
            conversation += [{"role": "assistant", "content": reply.text}, {"role": "user", "content": repair}]
            repaired += 1
    except (WorkbenchError, KeyboardInterrupt) as err:
        result.error = failure_text(err)
        result.messages = conversation
        raise
    result.messages = conversation
    return result


def _judge(index: int, reply: Any, task: Task, space: Any, samples: Sequence[tuple[State, np.ndarray]],
           preference: Preference | None, goal: str) -> SketchAttempt:
    common: dict[str, Any] = {"latency_s": reply.latency_s, "cached": reply.cached, "constraint": reply.constraint}
    if reply.truncated or reply.finish_reason == "length":
        return SketchAttempt(index, reply.text, None, None, False,
                             "- the reply was cut off before the JSON object ended: write fewer, shorter terms",
                             "json", **common)
    try:
        data = json.loads(reply.text, strict=False)  # the grammar lets raw control characters into strings
    except ValueError as err:
        return SketchAttempt(index, reply.text, None, None, False, f"- the reply is not JSON: {err}", "json", **common)
    # The decoding schema leaves scales and the gain to the workbench; unusable distance thresholds,
    # repeated names and negative action-cost weights, the embedded models' most common slips, are
    # settled the same way (recorded in ``filled``).
    filled: dict[str, Any] = {**fill_scales(data, samples), **fill_gain(data, _discount(task)),
                              **fill_thresholds(data, samples), **unique_names(data), **settle_action_costs(data)}
    if isinstance(data, dict) and data.get("goal") != goal:  # the sketch states the goal it was asked for: a
        if data.get("goal"):  # small model often echoes the example's goal, which the program header would show
            filled["goal"] = f"the reply said {str(data['goal'])[:80]!r}; the task's goal is kept"
        data["goal"] = goal[:500]
    common["filled"] = filled
    return judge_sketch(index, data, task, space, samples, preference, reply=reply.text, **common)


def _discount(task: Task) -> float:
    """The discount of the task's learner (stable-baselines3's default, 0.99, when unset)."""
    gamma = task.spec.learner.hyperparams.get("gamma", 0.99)
    return float(gamma) if isinstance(gamma, (int, float)) and 0 < gamma <= 1 else 0.99


def judge_sketch(index: int, data: Any, task: Task, space: Any, samples: Sequence[tuple[State, np.ndarray]],
                 preference: Preference | None, *, reply: str = "", **common: Any) -> SketchAttempt:
    """Validate, compile and pre-flight one sketch (JSON data): what every reply goes through, and
    any sketch the workbench derives itself (:func:`reweighed`)."""
    schema = task.profile.schema
    try:
        sketch = validate_sketch(data, schema, action_space=space)
    except SketchInvalid as err:
        return SketchAttempt(index, reply, None, None, False, _bullets(err.problems), "sketch", **common)
    as_json = sketch.model_dump(mode="json", exclude_none=True)  # as the schema has it: unset keys left out
    try:
        code = compile_sketch(sketch, schema, action_space=space)
    except SketchInvalid as err:  # validated already: only a compiler limit lands here
        return SketchAttempt(index, reply, as_json, None, False, _bullets(err.problems), "compile", **common)
    report = preflight(code, samples, program=f"sketch_attempt_{index}.py", preference=preference)
    reason = "" if report.accepted else _bullets(report.reasons)
    return SketchAttempt(index, reply, as_json, code, report.accepted, reason,
                         "accepted" if report.accepted else "preflight", report.to_dict(),
                         hashlib.sha256(code.encode()).hexdigest(), **common)


def reweighed(sketch: dict[str, Any], factors: Sequence[float]) -> list[tuple[str, dict[str, Any]]]:
    """``(what changed, sketch)`` for each top-level term with a nonzero weight and each factor: the
    sketch with that one term's weight times the factor (clipped to the weight bound). What a small
    model cannot judge and proxy training can: measured on Rocket League TouchBall (PPO, 2e5 steps),
    Gemma's one-term distance sketch went from 0.00 to 0.86 success at a hundredth of its weight."""
    out = []
    for i, term in enumerate(sketch.get("terms", [])):
        weight = float(term.get("weight", 0.0))
        for factor in factors:
            new = float(np.clip(weight * factor, -WEIGHT_BOUND, WEIGHT_BOUND))
            if weight == 0.0 or new == weight:
                continue
            variant = json.loads(json.dumps(sketch))
            variant["terms"][i]["weight"] = float(f"{new:.4g}")
            out.append((f"terms[{i}] {term.get('name')!r} weight {weight:.4g} -> {variant['terms'][i]['weight']:.4g}",
                        variant))
    return out
