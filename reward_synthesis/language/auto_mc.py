"""Auto MC-Reward (Li et al. 2023): an LLM Reward Designer, Reward Critic and Trajectory Analyzer.

One round:

1. **Designer** writes ``compute_reward(state, action)`` with a ``sparse`` part (+1 goal, -1 failure)
   and small sign-like dense steps, from the task's StateView description, the goal and a memory of
   the previous rounds' designs, critiques and analyses.
2. **Critic** reviews it for syntax and consistency with the goal (``VERDICT: PASS|FAIL`` + reasons);
   a FAIL goes back to the designer, up to ``critic_rounds`` reviews. Then the sandbox and the
   pre-flight checks apply as to every program; a rejection's exact reason goes back for a repair.
3. The accepted program trains on a proxy budget (Eureka's workers, judged by the task's success
   metric), and the trained policy is watched for ``trajectories`` episodes.
4. **Trajectory Analyzer**: the failed episodes are summarised into statistics
   (:func:`trajectory_stats`: how they ended — the adapter's ``info["end_cause"]``, e.g. Crafter's
   lava/zombie/starvation, else terminated/timeout — the target distance over time, the actions
   taken) and the LLM turns them into suggested revisions for the next round's designer.

``mode="sketch"`` (what the embedded small model can write): the designer fills a typed reward
*sketch* under the task's schema instead of free code (:mod:`reward_synthesis.language.sketch_synthesis`:
constrained decoding, validation, compilation, the same checks, fresh requests after a rejection),
shown the earlier rounds' sketches, critiques and the analyzer's suggestions; the critic reviews the
program compiled from the sketch, and a FAIL asks for a revised sketch. The winner's ``sketch.json``
lands beside its ``program.py``.

After ``rounds`` rounds the program with the best success wins. Everything is kept in ``out_dir``::

    round_{r}/design_{k}.py, design_{k}.reply.txt   every design and revision
    round_{r}/design_{k}.sketch.json                 mode sketch: the sketch design_{k}.py came from
    round_{r}/critique_{k}.txt                       every critic reply (+ parsed verdict in round.json)
    round_{r}/stats.json, stats.txt, analysis.txt    what training showed, and the analyzer's reply
    round_{r}/round.json                             checks, success, the round's record
    summary.json, program.py (, sketch.json)         the table of rounds and the winner
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from reward_synthesis.language.eureka import train_programs
from reward_synthesis.language.sketch_synthesis import (
    SCHEMA_NAME,
    TOP_FIELDS,
    SketchModeOptions,
    SketchSynthesis,
    sketch_request,
    synthesize_sketch,
)
from reward_synthesis.llm.sources import (
    check_llm_source,
    describe_action_space,
    extract_code,
    failure_text,
    keep_failed,
    make_client,
    prompt_template,
    resolve_mode,
    task_for,
    validate_llm_source,
    with_detail,
)
from reward_synthesis.program import CodeRewardProgram
from reward_synthesis.safety.checks import preflight
from workbench.errors import RewardCodeRejected, TaskError, WorkbenchError
from workbench.evaluate import Trajectory
from workbench.reward import BuiltReward
from workbench.runs import atomic_write, write_json

if TYPE_CHECKING:
    from reward_synthesis.llm import LLMClient
    from reward_synthesis.safety.checks import Preference
    from workbench.executor import Executor
    from workbench.pipeline import TrainFn
    from workbench.state import State
    from workbench.task import Task

__all__ = ["trajectory_stats", "stats_text", "Verdict", "parse_verdict",
           "designer_messages", "sketch_designer_messages", "critic_messages", "analyzer_messages", "RoundRecord",
           "AutoMCResult", "auto_mc_search", "AutoMCSource"]



# ----------------------------------------------------------------------------- trajectories


def trajectory_stats(trajectories: Sequence[Trajectory], *, target_field: str | None = None,
                     action_names: Sequence[str] | None = None, top_actions: int = 5) -> dict[str, Any]:
    """The analyzer's facts about the failed episodes (``success`` not True)."""
    failed = [t for t in trajectories if t.success is not True]
    stats: dict[str, Any] = {"episodes": len(trajectories), "failed": len(failed),
                             "success_rate": (sum(t.success is True for t in trajectories) / len(trajectories))
                             if trajectories else None}
    if not failed:
        return stats
    causes = Counter(t.end for t in failed)
    stats["end_causes"] = {c: n / len(failed) for c, n in causes.most_common()}
    lengths = np.array([t.length for t in failed], dtype=np.float64)
    stats["length"] = {"mean": float(lengths.mean()), "min": int(lengths.min()), "max": int(lengths.max())}
    if target_field is not None:
        series = [np.asarray(t.fields.get(target_field, []), dtype=np.float64) for t in failed]
        series = [s for s in series if len(s)]
        if series:
            marks = (0.0, 0.25, 0.5, 0.75, 1.0)
            at = [[float(s[min(len(s) - 1, int(round(m * (len(s) - 1))))]) for m in marks] for s in series]
            stats["target"] = {
                "field": target_field,
                "mean_at_fraction_of_episode": {f"{int(m * 100)}%": float(np.mean([a[k] for a in at]))
                                                for k, m in enumerate(marks)},
                "mean_min": float(np.mean([s.min() for s in series])),
                "closer_at_end_fraction": float(np.mean([s[-1] < s[0] for s in series])),
            }
    counts = Counter(a if isinstance(a, int) else "continuous" for t in failed for a in t.actions)
    total = sum(counts.values()) or 1

    def label(a: Any) -> str:
        if isinstance(a, int) and action_names is not None and 0 <= a < len(action_names):
            return str(action_names[a])
        return str(a)

    stats["actions"] = {label(a): n / total for a, n in counts.most_common(top_actions)}
    stats["distinct_actions"] = len(counts)
    field_names = sorted({f for t in failed for f in t.fields if f != target_field})
    if field_names:
        stats["fields_start_end"] = {
            f: {"start": float(np.mean([t.fields[f][0] for t in failed if t.fields.get(f)])),
                "end": float(np.mean([t.fields[f][-1] for t in failed if t.fields.get(f)]))}
            for f in field_names if any(t.fields.get(f) for t in failed)}
    return stats


def stats_text(stats: dict[str, Any]) -> str:
    """The statistics as plain lines for the analyzer's prompt."""
    lines = [f"{stats['failed']} of {stats['episodes']} watched episodes failed."]
    if "end_causes" in stats:
        lines.append("How they ended: " + ", ".join(f"{c} {p:.0%}" for c, p in stats["end_causes"].items()) + ".")
        ln = stats["length"]
        lines.append(f"Episode length: mean {ln['mean']:.0f} steps (min {ln['min']}, max {ln['max']}).")
    if "target" in stats:
        t = stats["target"]
        over = ", ".join(f"{k}: {v:.2f}" for k, v in t["mean_at_fraction_of_episode"].items())
        lines.append(f"{t['field']} over the episode (mean): {over}; closest reached {t['mean_min']:.2f}; "
                     f"closer at the end than at the start in {t['closer_at_end_fraction']:.0%} of episodes.")
    if "actions" in stats:
        lines.append("Most used actions: " + ", ".join(f"{a} {p:.0%}" for a, p in stats["actions"].items())
                     + f" ({stats['distinct_actions']} distinct).")
    for name, v in stats.get("fields_start_end", {}).items():
        lines.append(f"{name}: {v['start']:.2f} at the start -> {v['end']:.2f} at the end (mean).")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the three roles


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: str
    parsed: bool  # False when the reply had no VERDICT line (counted as FAIL)


_VERDICT = re.compile(r"VERDICT\s*[:\-]?\s*\**\s*(PASS|FAIL)", re.I)


def parse_verdict(reply: str) -> Verdict:
    match = _VERDICT.search(reply)
    reasons = reply[match.end():].strip() if match else reply.strip()
    reasons = re.sub(r"^\**\s*REASONS\s*:?\s*\**", "", reasons, flags=re.I).strip()
    if match is None:
        return Verdict(False, reasons or "(empty reply)", False)
    return Verdict(match.group(1).upper() == "PASS", reasons, True)


def _task_facts(task: Task) -> dict[str, str]:
    env = task.make_env()
    try:
        actions = describe_action_space(env.action_space, getattr(env.unwrapped, "action_names", None))
    finally:
        env.close()
    return {"env_id": task.spec.sim.env_id, "state_description": task.profile.schema.describe(),
            "action_description": actions, "success": task.success_doc()}


def designer_messages(facts: dict[str, str], goal: str, memory: Sequence[RoundRecord],
                      suggestions: str = "") -> list[dict[str, str]]:
    mem = ""
    if memory:
        parts = []
        for r in memory[-3:]:  # the latest rounds; older ones add length, not signal
            outcome = "rejected by the checks" if r.code is None else \
                f"trained to success {r.success:.2f}" if r.success is not None else "did not train"
            parts.append(f"Round {r.round} design ({outcome}):\n```python\n"
                         f"{(r.code or r.last_design or '').strip()}\n```"
                         + (f"\nCritic: {r.last_critique.strip()[:600]}" if r.last_critique else ""))
        mem = "\nPrevious designs (memory):\n" + "\n\n".join(parts) + "\n"
    sug = f"\nSuggested revisions from the trajectory analysis:\n{suggestions.strip()}\n" if suggestions.strip() else ""
    user = prompt_template("auto_mc_designer_user").format(goal=goal, memory=mem, suggestions=sug, **facts)
    return [{"role": "system", "content": prompt_template("auto_mc_designer_system")},
            {"role": "user", "content": user}]


def sketch_designer_messages(prompt: Sequence[dict[str, str]], memory: Sequence[RoundRecord],
                             suggestions: str = "") -> list[dict[str, str]]:
    """Mode sketch: the task's sketch prompt (``prompt``: :func:`sketch_request`'s messages), its user
    turn extended with the latest rounds' sketches (or programs), critiques and outcomes, and the
    analyzer's suggestions. The first round, with neither, is the plain sketch prompt."""
    parts = []
    for r in memory[-3:]:
        outcome = "rejected by the checks" if r.code is None else \
            f"trained to success {r.success:.2f}" if r.success is not None else "did not train"
        design = json.dumps(r.sketch) if r.sketch is not None else \
            f"(a program)\n{(r.code or r.last_design or '').strip()}" if (r.code or r.last_design) else "(none)"
        parts.append(f"Round {r.round} ({outcome}): {design}"
                     + (f"\nCritic: {r.last_critique.strip()[:600]}" if r.last_critique else ""))
    if not parts and not suggestions.strip():
        return [dict(m) for m in prompt]
    messages = [dict(m) for m in prompt]
    messages[-1]["content"] += "\n\n" + prompt_template("auto_mc_sketch_memory").format(
        memory="\n\n".join(parts) or "(none)", suggestions=suggestions.strip() or "(none)")
    return messages


def critic_messages(facts: dict[str, str], goal: str, code: str) -> list[dict[str, str]]:
    user = prompt_template("auto_mc_critic_user").format(goal=goal, success=facts["success"],
                                                        state_description=facts["state_description"],
                                                        code=code.strip())
    return [{"role": "system", "content": prompt_template("auto_mc_critic_system")},
            {"role": "user", "content": user}]


def analyzer_messages(facts: dict[str, str], goal: str, code: str, summary: str, stats: str) -> list[dict[str, str]]:
    user = prompt_template("auto_mc_analyzer_user").format(goal=goal, success=facts["success"], code=code.strip(),
                                                          summary=summary, stats=stats)
    return [{"role": "system", "content": prompt_template("auto_mc_analyzer_system")},
            {"role": "user", "content": user}]


# ----------------------------------------------------------------------------- the loop


@dataclass
class RoundRecord:
    round: int
    designs: list[dict[str, Any]] = field(default_factory=list)  # {k, code, reply, verdict, reasons, checks}
    code: str | None = None           # the accepted program of this round
    sketch: dict[str, Any] | None = None  # mode sketch: the sketch ``code`` was compiled from
    sha256: str | None = None
    reason: str = ""                  # why no program was accepted
    success: float | None = None
    mean_env_return: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    analysis: str = ""
    train_error: str = ""

    @property
    def last_design(self) -> str | None:
        return next((d["code"] for d in reversed(self.designs) if d.get("code")), None)

    @property
    def last_critique(self) -> str:
        return next((d["reasons"] for d in reversed(self.designs) if d.get("reasons")), "")


@dataclass
class AutoMCResult:
    goal: str
    rounds: list[RoundRecord]
    error: str | None = None  # why the search stopped early (the LLM failed, or it was interrupted)

    @property
    def winner(self) -> RoundRecord | None:
        trained = [r for r in self.rounds if r.code is not None]
        if not trained:
            return None
        return max(trained, key=lambda r: (-1.0 if r.success is None else r.success,
                                           -np.inf if r.mean_env_return is None else r.mean_env_return, -r.round))

    def to_dict(self) -> dict[str, Any]:
        w = self.winner
        out = {"goal": self.goal, "winner_round": None if w is None else w.round,
               "rounds": [asdict(r) for r in self.rounds]}
        if self.error is not None:
            out["error"] = self.error
        return out


def _design_round(client: LLMClient, facts: dict[str, str], goal: str, memory: Sequence[RoundRecord],
                  suggestions: str, samples: Sequence[tuple[State, np.ndarray]], record: RoundRecord, *,
                  critic_rounds: int, attempts: int, seed: int, preference: Preference | None,
                  save: Callable[[str, str], None]) -> None:
    """Designer <-> critic, then sandbox/pre-flight with repairs; fills ``record``."""
    conversation = designer_messages(facts, goal, memory, suggestions)
    request = seed
    reviews = 0
    code: str | None = None
    for k in range(critic_rounds + attempts + 1):
        reply = client.chat(conversation, seed=request)
        request += 1
        code = extract_code(reply.text)
        entry: dict[str, Any] = {"k": k, "code": code, "reply": reply.text}
        record.designs.append(entry)
        save(f"design_{k}.reply.txt", reply.text)
        if code is None:
            entry["checks"] = "no code"
            entry["reason"] = "the reply had no code"
            feedback = prompt_template("repair").format(
                reason="the reply has no code: put compute_reward(state, action) in a ```python block")
        else:
            save(f"design_{k}.py", code)
            if reviews < critic_rounds:
                reviews += 1
                critique = client.chat(critic_messages(facts, goal, code), seed=request)
                request += 1
                verdict = parse_verdict(critique.text)
                save(f"critique_{k}.txt", critique.text)
                entry.update(verdict="PASS" if verdict.passed else "FAIL", reasons=verdict.reasons,
                             verdict_parsed=verdict.parsed)
                if not verdict.passed and reviews < critic_rounds:
                    conversation = conversation + [
                        {"role": "assistant", "content": reply.text},
                        {"role": "user", "content": prompt_template("auto_mc_revise").format(critique=verdict.reasons)}]
                    continue
                # After the last review the sandbox decides, as for every program.
            report = preflight(code, samples, program=f"round_{record.round}_design_{k}.py", preference=preference)
            entry["checks"] = "accepted" if report.accepted else "rejected"
            entry["report"] = report.to_dict()
            entry["reason"] = "" if report.accepted else (report.reasons or ["the checks failed"])[0]
            if report.accepted:
                record.code = code
                record.sha256 = hashlib.sha256(code.encode()).hexdigest()
                return
            feedback = prompt_template("repair").format(reason="\n".join(f"- {r}" for r in report.reasons))
        if sum(1 for d in record.designs if d.get("checks") in ("rejected", "no code")) >= attempts:
            break
        conversation = conversation + [{"role": "assistant", "content": reply.text},
                                       {"role": "user", "content": feedback}]
    last = record.designs[-1] if record.designs else {}
    record.reason = last.get("reason") or ("the last reply had no code" if last.get("checks") == "no code"
                                           else "no accepted program")


def _design_round_sketch(client: LLMClient, task: Task, facts: dict[str, str], goal: str,
                         prompt: Sequence[dict[str, str]], memory: Sequence[RoundRecord], suggestions: str,
                         samples: Sequence[tuple[State, np.ndarray]], record: RoundRecord, *, critic_rounds: int,
                         attempts: int, repairs: int, top_fields: int | None, seed: int,
                         preference: Preference | None, save: Callable[[str, str], None]) -> None:
    """Mode sketch: the designer's sketch synthesis (up to ``attempts`` replies, checked as any), then
    up to ``critic_rounds`` reviews of the compiled program; a FAIL asks for a revised sketch, and
    after the last review the checks decide alone, as in mode code. Fills ``record``."""
    base = sketch_designer_messages(prompt, memory, suggestions)
    conversation = base
    request = seed
    for review in range(critic_rounds + 1):
        synthesis = synthesize_sketch(task, goal, client, samples, attempts=attempts, seed=request,
                                      preference=preference, top_fields=top_fields, messages=conversation,
                                      repairs=repairs, result=SketchSynthesis(goal=goal))
        request += len(synthesis.attempts)
        entry: dict[str, Any] = {}
        for attempt in synthesis.attempts:
            k = len(record.designs)
            entry = {"k": k, "code": attempt.code, "sketch": attempt.sketch, "reply": attempt.reply,
                     "checks": "accepted" if attempt.accepted else "rejected", "report": attempt.report,
                     "reason": (attempt.reason.splitlines() or [""])[0].removeprefix("- ")}
            record.designs.append(entry)
            save(f"design_{k}.reply.txt", attempt.reply)
            if attempt.sketch is not None:
                save(f"design_{k}.sketch.json", json.dumps(attempt.sketch, indent=2) + "\n")
            if attempt.code is not None:
                save(f"design_{k}.py", attempt.code)
        accepted = synthesis.accepted
        if accepted is None or accepted.code is None:
            record.reason = entry.get("reason") or "no accepted sketch"
            return
        record.code, record.sketch = accepted.code, accepted.sketch
        record.sha256 = hashlib.sha256(accepted.code.encode()).hexdigest()
        if review == critic_rounds:
            return
        critique = client.chat(critic_messages(facts, goal, accepted.code), seed=request)
        request += 1
        verdict = parse_verdict(critique.text)
        save(f"critique_{entry['k']}.txt", critique.text)
        entry.update(verdict="PASS" if verdict.passed else "FAIL", reasons=verdict.reasons,
                     verdict_parsed=verdict.parsed)
        if verdict.passed or review + 1 == critic_rounds:
            return  # passed, or the last review: the checks (passed above) decide, as in mode code
        record.code = record.sketch = record.sha256 = None
        conversation = base + [{"role": "assistant", "content": accepted.reply},
                               {"role": "user", "content": prompt_template("auto_mc_sketch_revise").format(
                                   critique=verdict.reasons)}]


def _given_round(code: str, samples: Sequence[tuple[State, np.ndarray]], record: RoundRecord, *,
                 preference: Preference | None, save: Callable[[str, str], None]) -> None:
    save("design_0.py", code)
    report = preflight(code, samples, program="initial.py", preference=preference)
    record.designs.append({"k": 0, "code": code, "reply": "(the initial program, as given)",
                           "checks": "accepted" if report.accepted else "rejected", "report": report.to_dict()})
    if report.accepted:
        record.code, record.sha256 = code, hashlib.sha256(code.encode()).hexdigest()
    else:
        record.reason = f"the initial program was rejected: {report.reasons[0] if report.reasons else '?'}"


def auto_mc_search(task: Task, goal: str, client: LLMClient, samples: Sequence[tuple[State, np.ndarray]], *,
                   train: TrainFn, out_dir: Path, rounds: int = 2, critic_rounds: int = 2, attempts: int = 3,
                   proxy_steps: int = 20_000, seeds: int = 1, workers: int = 1, eval_episodes: int = 10,
                   trajectories: int = 10, target_field: str | None = None, seed: int = 0,
                   preference: Preference | None = None, initial: str | None = None,
                   on_event: Callable[[str, RoundRecord], None] | None = None, mode: str = "code",
                   top_fields: int | None = TOP_FIELDS, repairs: int = 1,
                   executor: Executor | None = None) -> AutoMCResult:
    """Run ``rounds`` design -> critique -> check -> train -> analyse rounds; see the module docstring.

    ``initial``: a program to start from (round 0 trains it as given, after the checks); the
    analyzer's suggestions on it seed the designer's first round. ``train``: the workbench's
    training entry point (:func:`workbench.pipeline.train_and_evaluate`), handed in. ``mode``:
    ``"code"`` (the designer writes programs) or ``"sketch"`` (reward sketches offering the
    ``top_fields`` fields most related to the goal; ``repairs`` as in
    :func:`~reward_synthesis.language.sketch_synthesis.synthesize_sketch`)."""
    if mode not in ("code", "sketch"):
        raise WorkbenchError(f"Auto MC-Reward mode {mode!r}: give code or sketch")
    facts = _task_facts(task)
    prompt = sketch_request(task, goal, top_fields=top_fields).messages if mode == "sketch" else []
    names = _action_names(task)
    fields = [f for f in ([target_field] if target_field else []) + _vital_fields(task) if f]
    result = AutoMCResult(goal, [])
    suggestions = ""
    record: RoundRecord | None = None
    try:
        for r in range(rounds):
            record = RoundRecord(r)
            round_dir = out_dir / f"round_{r}"

            def save(name: str, text: str, _d: Path = round_dir) -> None:
                atomic_write(_d / name, text)

            if r == 0 and initial is not None:
                _given_round(initial, samples, record, preference=preference, save=save)
            elif mode == "sketch":
                _design_round_sketch(client, task, facts, goal, prompt, result.rounds, suggestions, samples, record,
                                     critic_rounds=critic_rounds, attempts=attempts, repairs=repairs,
                                     top_fields=top_fields, seed=seed + 1000 * r, preference=preference, save=save)
            else:
                _design_round(client, facts, goal, result.rounds, suggestions, samples, record,
                              critic_rounds=critic_rounds, attempts=attempts, seed=seed + 1000 * r,
                              preference=preference, save=save)
            if on_event:
                on_event("designed", record)
            if record.code is not None:
                (runs,) = train_programs(train, task, [record.code], proxy_steps=proxy_steps, seeds=seeds,
                                         workers=workers, checkpoints=1, eval_episodes=eval_episodes,
                                         trajectories=trajectories, trajectory_fields=fields, executor=executor)
                ok = [run for run in runs if run.ok]
                record.train_error = "; ".join(run.error.splitlines()[0] for run in runs if not run.ok and run.error)
                if ok:
                    rates = [run.success for run in ok if run.success is not None]
                    record.success = float(np.mean(rates)) if rates else None
                    record.mean_env_return = float(np.mean([run.mean_env_return for run in ok]))
                    trajs = [Trajectory(**t) for run in ok for t in run.trajectories]
                    record.stats = trajectory_stats(trajs, target_field=target_field, action_names=names)
                    text = stats_text(record.stats)
                    save("stats.txt", text)
                    write_json(round_dir / "stats.json", record.stats)
                    summary = (f"success rate {record.success:.2f}" if record.success is not None
                               else "no success metric") + f" after {proxy_steps} training steps"
                    analysis = client.chat(analyzer_messages(facts, goal, record.code, summary, text),
                                           seed=seed + 1000 * r + 999)
                    record.analysis = analysis.text
                    save("analysis.txt", analysis.text)
                    suggestions = analysis.text
                else:
                    suggestions = f"The previous program failed in training: {record.train_error}"
            else:
                suggestions = f"The previous design was not accepted: {record.reason}"
            write_json(round_dir / "round.json", asdict(record))
            result.rounds.append(record)
            if on_event:
                on_event("round", record)
            write_json(out_dir / "summary.json", result.to_dict())
    except (WorkbenchError, KeyboardInterrupt) as err:  # the LLM failed or the user stopped: keep the record
        result.error = failure_text(err)
        if record is not None and all(r is not record for r in result.rounds):
            record.reason = record.reason or f"stopped: {result.error.splitlines()[0]}"
            write_json(out_dir / f"round_{record.round}" / "round.json", asdict(record))
            result.rounds.append(record)
        write_json(out_dir / "summary.json", result.to_dict())
        raise
    winner = result.winner
    if winner is not None and winner.code is not None:
        atomic_write(out_dir / "program.py", winner.code)
        if winner.sketch is not None:
            write_json(out_dir / "sketch.json", winner.sketch)
    return result


def _action_names(task: Task) -> list[str] | None:
    env = task.make_env()
    try:
        names = getattr(env.unwrapped, "action_names", None)
        return list(names) if names is not None else None
    finally:
        env.close()


def _vital_fields(task: Task) -> list[str]:
    """Scalar fields worth following over an episode when the StateView has them."""
    wanted = ("health", "food", "drink", "energy", "speed", "route_completion")
    names = set(task.profile.schema.names)
    return [f for f in wanted if f in names]


# ----------------------------------------------------------------------------- the reward source


class AutoMCSource:
    """``reward: {source: auto_mc, goal: ..., rounds: 2, target_field: nearest_tree_dist}``;
    ``mode: auto`` (the default) designs sketches with the embedded model, code with an endpoint."""

    class Options(SketchModeOptions):
        rounds: int = Field(2, ge=1, le=20)
        critic_rounds: int = Field(2, ge=0, le=10)
        attempts: int = Field(3, ge=1, le=20)
        proxy_steps: int = Field(20_000, gt=0)
        seeds: int = Field(1, ge=1, le=10)
        workers: int = Field(1, ge=1, le=64)
        eval_episodes: int = Field(10, ge=1)
        trajectories: int = Field(10, ge=1, le=1000)
        target_field: str | None = None
        initial: str | None = None  # a program file to start from, relative to the task file

    @classmethod
    def validate_spec(cls, spec: Any, *, file: str) -> None:
        validate_llm_source(cls.Options, spec, file=file, source="auto_mc")

    @classmethod
    def _options(cls, spec: Any, profile: Any) -> tuple[Any, str | None]:
        """The options, checked against the live StateView, and the initial program's text."""
        opts = cls.Options.model_validate(spec.reward.options)
        if opts.target_field is not None and opts.target_field not in profile.schema.names:
            raise TaskError(f"no StateView field {opts.target_field!r}", file=spec.source_path,
                            key="reward.target_field", hint=f"one of: {', '.join(profile.schema.names)}")
        initial = None
        if opts.initial is not None:
            path = Path(opts.initial) if Path(opts.initial).is_absolute() else spec.base_dir / opts.initial
            if not path.is_file():
                raise TaskError(f"initial program not found: {path}", file=spec.source_path, key="reward.initial",
                                hint="a compute_reward(state, action) file relative to the task file, "
                                     "or remove the key")
            initial = path.read_text(encoding="utf-8", errors="replace")
        return opts, initial

    @classmethod
    def check(cls, spec: Any, profile: Any, env: Any) -> BuiltReward:
        """``workbench validate``: options, the designer's prompt and the endpoint, without designing."""
        opts, initial = cls._options(spec, profile)
        task = task_for(spec, profile, "checking")
        goal = opts.goal or spec.goal
        extra = (f", {opts.rounds} round{'s' if opts.rounds != 1 else ''}"
                 + (", initial program given" if initial else ""))
        if resolve_mode(opts.mode, opts.llm) == "sketch":
            from reward_synthesis.safety.checks import SAMPLES_SEED, collect_samples

            samples = collect_samples(env, profile.schema, n=opts.samples, seed=SAMPLES_SEED)  # as the run's
            request = sketch_request(task, goal, top_fields=opts.top_fields, samples=samples)  # first design
            return check_llm_source("auto_mc", spec, opts.llm, request.messages, offline=opts.offline,
                                    seed=opts.seed, extra=extra + ", mode sketch", json_schema=request.schema,
                                    schema_name=SCHEMA_NAME)
        messages = designer_messages(_task_facts(task), goal, [])
        return check_llm_source("auto_mc", spec, opts.llm, messages, offline=opts.offline, seed=opts.seed,
                                extra=extra)

    @classmethod
    def build(cls, spec: Any, profile: Any, env: Any) -> BuiltReward:
        import tempfile

        from reward_synthesis.safety.checks import check_inputs
        from workbench.pipeline import train_and_evaluate  # the one training entry point, handed to the search

        opts, initial = cls._options(spec, profile)
        goal = opts.goal or spec.goal
        samples, preference = check_inputs(env, profile, n=opts.samples)
        task = task_for(spec, profile, "designing")

        def collected(out: Path) -> dict[str, str]:
            files = {f"reward/{p.relative_to(out)}": p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}
            files["llm/transcript.jsonl"] = files.pop("reward/transcript.jsonl", "")
            return files

        with tempfile.TemporaryDirectory(prefix="auto-mc-") as tmp:
            out = Path(tmp)
            client = make_client(opts.llm, transcript=out / "transcript.jsonl", offline=opts.offline)
            try:
                result = auto_mc_search(task, goal, client, samples, train=train_and_evaluate, out_dir=out / "auto_mc",
                                        rounds=opts.rounds,
                                        critic_rounds=opts.critic_rounds, attempts=opts.attempts,
                                        proxy_steps=opts.proxy_steps, seeds=opts.seeds, workers=opts.workers,
                                        eval_episodes=opts.eval_episodes, trajectories=opts.trajectories,
                                        target_field=opts.target_field, seed=opts.seed, preference=preference,
                                        initial=initial, mode=resolve_mode(opts.mode, opts.llm),
                                        top_fields=opts.top_fields, repairs=opts.repairs)
            except (WorkbenchError, KeyboardInterrupt) as err:  # the LLM failed: keep what there is
                kept = keep_failed(spec.name, "auto_mc_failed", collected(out))
                raise with_detail(err, f"designs so far and the LLM transcript: {kept}") from None
            finally:
                client.close()
            files = collected(out)
        winner = result.winner
        if winner is None or winner.code is None:
            kept = keep_failed(spec.name, "auto_mc_failed", files)
            reasons = "\n".join(f"  round {r.round}: {r.reason or r.train_error or '?'}" for r in result.rounds)
            raise RewardCodeRejected(
                f"auto_mc: no round produced an accepted program with {client.model}:\n{reasons}\n"
                f"  designs, critiques and transcript: {kept}\n"
                "  fix: raise reward.rounds / reward.attempts, point reward.llm.base_url at a stronger model, "
                "or write the program yourself (reward: {source: code, path: ...})")
        program = CodeRewardProgram(winner.code, name="auto_mc", filename="reward/program.py")
        success = "n/a" if winner.success is None else f"{winner.success:.2f}"
        record = {"goal": goal, "llm_model": client.model, "rounds": len(result.rounds), "winner_round": winner.round,
                  "round_success": [r.success for r in result.rounds]}
        kind = "program"
        if winner.sketch is not None:  # editable, and runnable again as reward: {source: sketch, path: ...}
            from reward_synthesis.language.sketch_source import SKETCH_FILE

            files[SKETCH_FILE] = json.dumps(winner.sketch, indent=2) + "\n"
            record.update({"mode": "sketch", "sketch": winner.sketch})
            kind = "sketch"
        return BuiltReward(program, f"Auto MC-Reward {kind} for {goal!r} ({client.model}, round {winner.round + 1}/"
                                    f"{len(result.rounds)}, proxy success {success})", winner.code, None, files, record)
