"""Eureka: an evolutionary search over LLM-written reward programs, judged by the task's success.

Each round asks the LLM for ``candidates`` programs (one request each, distinct seeds; every reply
goes through Text2Reward's checks and a short repair loop). Every accepted program is trained on a
short **proxy budget** with ``seeds`` training seeds on an executor (``workers`` local processes, or
Ray: :mod:`workbench.executor`), and
scored by the task's **success metric** — never by its own reward — with the shared evaluation
protocol, at a few checkpoints during training and once at the end. The next round's prompt carries
**reward reflection** (the best program so far, its success curve and the statistics of every
reward term at the checkpoints). The winner is the program with the best mean success over the
training seeds (ties: the better mean env return, then the earlier candidate).

``mode="sketch"`` searches over reward *sketches* instead of free code (what a small local model
can write): each candidate is a sketch synthesis (constrained decoding, validation, compilation,
the same checks), the reflection shows the best sketch and its per-term feedback and asks for an
adjusted sketch, and the winner's ``sketch.json`` lands beside its ``program.py``.

Everything lands in ``out_dir``::

    candidates.json / candidates.csv   the table of all candidates (TABLE_COLUMNS), the winner
    candidates/r{round}_c{index}.py    every candidate's code (.reply.txt when a reply had none)
    candidates/r{round}_c{index}.sketch.json   mode sketch: the sketch it was compiled from
    candidates/r{round}_c{index}.json  its synthesis attempts and per-seed training curves
    reflection/round_{round}.txt       the reflection sent to the LLM in that round
    program.py                         the winner (absent when no candidate trained)
    sketch.json                        mode sketch: the winner's sketch

Every proxy training is one call of the workbench's training entry point
(:func:`workbench.pipeline.train_and_evaluate`), handed in as ``train``, in a worker process: the
job carries only picklable inputs (the task spec with the proxy budget and seed, the program source)
and the Task is built in the child; a program that raises in training (e.g.
:class:`~workbench.errors.RewardRuntimeError`) is recorded as failed, never fatal.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reward_synthesis.language.sketch_synthesis import (
    TOP_FIELDS,
    SketchSynthesis,
    judge_sketch,
    reweighed,
    sketch_request,
    synthesize_sketch,
)
from reward_synthesis.language.text2reward import SynthesisResult, build_messages, synthesize
from reward_synthesis.llm.sources import prompt_template
from reward_synthesis.program import CodeRewardProgram
from workbench.errors import RewardRuntimeError, WorkbenchError
from workbench.executor import Executor, LocalExecutor, WorkerDied
from workbench.reward import BuiltReward
from workbench.runs import atomic_write, write_json

if TYPE_CHECKING:

    from reward_synthesis.llm import LLMClient
    from reward_synthesis.safety.checks import Preference
    from workbench.pipeline import TrainFn
    from workbench.spec import TaskSpec
    from workbench.state import State
    from workbench.task import Task

__all__ = ["SeedRun", "Candidate", "EurekaResult", "TABLE_COLUMNS", "search",
           "train_programs", "pick_winner", "policy_feedback", "reflection_text", "reflection_messages"]

# The columns of candidates.csv; ``success_s{seed}`` stands for one column per training seed.
TABLE_COLUMNS = ("round", "index", "request_seed", "origin", "sha256", "checks", "reason", "status", "error",
                 "success_s{seed}", "success_mean", "mean_env_return", "mean_return", "train_seconds",
                 "program")

# Candidate.checks
ACCEPTED, REJECTED, NO_CODE = "accepted", "rejected", "no code"
# Candidate.status
QUEUED, TRAINED, FAILED, NOT_TRAINED, DUPLICATE = "queued", "trained", "failed", "not trained", "duplicate"


# ----------------------------------------------------------------------------- records


@dataclass
class SeedRun:
    """One proxy training of one program with one seed, as the worker reported it."""

    seed: int
    ok: bool
    success: float | None = None          # final evaluation, the task's success metric
    mean_return: float | None = None      # under the candidate's own reward
    mean_env_return: float | None = None  # the simulator's own reward
    curve: list[dict[str, Any]] = field(default_factory=list)  # one point per evaluation checkpoint
    error: str = ""
    seconds: float = 0.0
    steps: int = 0
    trajectories: list[dict[str, Any]] = field(default_factory=list)  # watched episodes (Auto MC-Reward)


@dataclass
class Candidate:
    """One row of the table: a program, what the checks said, and how it trained."""

    round: int
    index: int
    request_seed: int
    code: str | None
    sha256: str | None
    checks: str  # accepted | rejected | no code
    reason: str  # the first line of the first reason it was rejected ("" when accepted)
    status: str  # queued | trained | failed | not trained | duplicate
    error: str = ""
    runs: list[SeedRun] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    sketch: dict[str, Any] | None = None  # mode sketch: the sketch ``code`` was compiled from
    origin: str = "llm"  # "llm", or how the workbench derived it ("r0_c1, terms[0] 'reach' weight 1 -> 0.1")

    @property
    def label(self) -> str:
        return f"r{self.round}_c{self.index}"

    @property
    def success_per_seed(self) -> list[float | None]:
        return [r.success for r in self.runs]

    @property
    def success_mean(self) -> float | None:
        values = [r.success for r in self.runs]
        if not values or any(v is None for v in values):
            return None
        return float(np.mean(values))

    success = success_mean

    def _mean(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.runs]
        if not values or any(v is None for v in values):
            return None
        return float(np.mean(values))

    @property
    def mean_env_return(self) -> float | None:
        return self._mean("mean_env_return")

    @property
    def mean_return(self) -> float | None:
        return self._mean("mean_return")

    @property
    def train_seconds(self) -> float:
        return float(sum(r.seconds for r in self.runs))

    def row(self, seeds: Sequence[int]) -> dict[str, Any]:
        """The table row (flat: one ``success_s{seed}`` column per training seed)."""
        by_seed = {r.seed: r.success for r in self.runs}
        out: dict[str, Any] = {"round": self.round, "index": self.index, "request_seed": self.request_seed,
                               "origin": self.origin, "sha256": self.sha256, "checks": self.checks,
                               "reason": self.reason, "status": self.status, "error": self.error}
        for s in seeds:
            out[f"success_s{s}"] = by_seed.get(s)
        out.update(success_mean=self.success_mean, mean_env_return=self.mean_env_return,
                   mean_return=self.mean_return, train_seconds=round(self.train_seconds, 2),
                   program=_program_file(self))
        return out

    def detail(self) -> dict[str, Any]:
        return {"round": self.round, "index": self.index, "request_seed": self.request_seed,
                "origin": self.origin, "sha256": self.sha256, "checks": self.checks, "reason": self.reason,
                "status": self.status, "error": self.error, "success_mean": self.success_mean,
                "runs": [asdict(r) for r in self.runs], "attempts": self.attempts}


@dataclass
class EurekaResult:
    table: list[Candidate]
    winner: Candidate | None
    out_dir: Path
    train_seeds: list[int]

    @property
    def exit_code(self) -> int:
        """0: a winner was found (``program.py`` written); 1: no candidate trained."""
        return 0 if self.winner is not None else 1

    def counts(self) -> dict[str, int]:
        out = {"candidates": len(self.table),
               "rejected": sum(c.checks != ACCEPTED for c in self.table)}
        for status in (TRAINED, FAILED, DUPLICATE, NOT_TRAINED):
            out[status] = sum(c.status == status for c in self.table)
        return out

    def summary(self) -> str:
        c = self.counts()
        head = (f"{c['candidates']} candidates: {c['rejected']} rejected by the checks, {c['trained']} trained, "
                f"{c[FAILED]} failed in training, {c[DUPLICATE]} duplicate(s)")
        if self.winner is None:
            return f"no winner: {head}; details in {self.out_dir / 'candidates.csv'}"
        w = self.winner
        seeds = ", ".join(_fmt(s, ".2f") for s in w.success_per_seed)
        return (f"winner {w.label} (sha256 {w.sha256[:12]}): success {_fmt(w.success_mean, '.2f')} "
                f"(seeds {seeds}), env return {_fmt(w.mean_env_return, '.2f')}; {head}; "
                f"program in {self.out_dir / 'program.py'}")


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "n/a" if value is None else format(value, spec)


def _program_file(c: Candidate) -> str:
    return f"candidates/{c.label}.py" if c.code is not None else f"candidates/{c.label}.reply.txt"


def pick_winner(table: Sequence[Candidate]) -> Candidate | None:
    """The trained candidate with the best mean success over its seeds; ties go to the better mean
    env return, then to the earlier candidate. None when none trained."""
    scored = [c for c in table if c.status == TRAINED and c.success_mean is not None]
    if not scored:
        return None

    def key(c: Candidate) -> tuple[float, float, int, int]:
        env_return = c.mean_env_return
        return (c.success_mean, -math.inf if env_return is None else env_return, -c.round, -c.index)

    return max(scored, key=key)


# ----------------------------------------------------------------------------- training jobs


def _one_thread() -> None:
    """Each training job: one torch thread, so that ``workers`` jobs share the cores evenly."""
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this worker (it ran a job before)
        pass


def _curve_point(step: int, brief: dict[str, Any]) -> dict[str, Any]:
    keys = ("success_rate", "mean_return", "mean_env_return", "mean_length", "components")
    return {"step": int(step), **{k: brief.get(k) for k in keys}}


def _train_job(train: TrainFn, job: dict[str, Any]) -> dict[str, Any]:
    """Train one program with one seed on the proxy budget (in a worker process) through the
    handed-in training entry point; never raises for a bad program: the error comes back in the
    result."""
    import tempfile
    import traceback

    from workbench.evaluate import record_trajectories
    from workbench.pipeline import RunStopped

    started = time.perf_counter()
    _one_thread()
    try:
        spec: TaskSpec = job["spec"]
        program = CodeRewardProgram(job["code"], name="candidate", filename=job["filename"])
        reward = BuiltReward(program, f"Eureka candidate {job['filename']}", job["code"])
        with tempfile.TemporaryDirectory(prefix="eureka-") as tmp:
            result = train(spec, Path(tmp), reward=reward, quiet=True)
            steps = int(result.run.info().get("steps", spec.training.total_steps))
            watched: list[dict[str, Any]] = []
            if job.get("trajectories"):
                watched = [asdict(t) for t in record_trajectories(
                    result.policy, result.task, episodes=int(job["trajectories"]), seed=spec.training.seed,
                    fields=job.get("trajectory_fields", ()), deterministic=spec.evaluation.deterministic)]
        final = result.evaluation
        curve = [_curve_point(e["step"], e) for e in result.evaluations]
        curve.append(_curve_point(max(steps, spec.training.total_steps), final.brief()))
        return {"seed": spec.training.seed, "ok": True, "success": final.success_rate,
                "mean_return": final.mean_return, "mean_env_return": final.mean_env_return, "curve": curve,
                "error": "", "seconds": time.perf_counter() - started, "steps": steps, "trajectories": watched}
    except BaseException as err:  # noqa: BLE001 - untrusted code: every failure is a result
        if isinstance(err, RunStopped):  # the learner saved a checkpoint and stopped
            err = err.cause
        if isinstance(err, RewardRuntimeError):  # already says where in the program
            text = str(err)
        else:
            text = f"{type(err).__name__}: {err}"
            tail = traceback.format_exc().strip().splitlines()[-6:]
            text += "\n" + "\n".join(tail)
        return {"seed": int(job["spec"].training.seed) if "spec" in job else -1, "ok": False, "curve": [],
                "error": text, "seconds": time.perf_counter() - started}


class _Trainer:
    """Proxy-training jobs on an executor (:mod:`workbench.executor`: the local process pool by
    default, ``workers`` at once, or Ray); results as they finish.

    Each job is one call of the handed-in training entry point (``train``) on the task with the
    proxy budget, a training seed and the candidate's program. A job whose worker process dies (a
    crash, the OOM killer) fails alone (the executor reruns the others), recorded as a failed seed.
    """

    def __init__(self, train: TrainFn, task: Task, *, workers: int, proxy_steps: int, checkpoints: int,
                 eval_episodes: int, checkpoint_episodes: int, trajectories: int = 0,
                 trajectory_fields: Sequence[str] = (), executor: Executor | None = None):
        from workbench.spec import validate_task_data

        data = task.spec.resolved_dict()
        data["reward"] = {"source": "env"}  # each job hands its program to train() directly
        data["training"].update(vec_env="dummy",  # no process trees inside the workers
                                total_steps=int(proxy_steps), checkpoint_every=int(proxy_steps),
                                eval_every=max(1, math.ceil(proxy_steps / max(1, checkpoints))),
                                eval_episodes=int(checkpoint_episodes))
        data["learner"]["torch_threads"] = 1
        data["evaluation"].update(video=False, episodes=int(eval_episodes))
        data["source_path"] = task.spec.source_path
        self.data = data
        self.file = task.spec.source_path or "<eureka>"
        self.validate = validate_task_data
        self.train = train
        self.base = {"trajectories": int(trajectories), "trajectory_fields": list(trajectory_fields)}
        self.workers = workers
        self._given = executor
        self._executor: Executor | None = executor
        self._pending: dict[Future[dict[str, Any]], tuple[Any, dict[str, Any]]] = {}

    def submit(self, key: Any, code: str, seed: int, filename: str) -> None:
        data = json.loads(json.dumps(self.data))  # a private copy
        data["training"]["seed"] = int(seed)
        job = {**self.base, "spec": self.validate(data, file=self.file), "code": code, "filename": filename}
        if self._executor is None:
            self._executor = LocalExecutor(self.workers)
        self._pending[self._executor.submit(_train_job, self.train, job)] = (key, job)

    def results(self, *, block: bool) -> Iterator[tuple[Any, SeedRun]]:
        """Finished jobs as ``(key, SeedRun)``; with ``block`` until none is left."""
        while self._pending:
            done, _ = wait(list(self._pending), timeout=None if block else 0, return_when=FIRST_COMPLETED)
            if not done:
                return
            for future in done:
                key, job = self._pending.pop(future)
                try:
                    out = future.result()
                except Exception as err:  # noqa: BLE001 - WorkerDied, or e.g. a result that would not pickle
                    text = str(err) if isinstance(err, WorkerDied) else f"{type(err).__name__}: {err}"
                    out = {"seed": job["spec"].training.seed, "ok": False, "error": text}
                yield key, _seed_run(out)

    def close(self, *, terminate: bool = False) -> None:
        if self._executor is not None and self._executor is not self._given:  # a handed-in one is its owner's
            self._executor.close(terminate=terminate)
        else:
            for future in self._pending:  # queued jobs of this search only; the executor goes on
                future.cancel()
        self._executor = self._given
        self._pending.clear()


def _seed_run(out: dict[str, Any]) -> SeedRun:
    return SeedRun(seed=int(out["seed"]), ok=bool(out["ok"]), success=out.get("success"),
                   mean_return=out.get("mean_return"), mean_env_return=out.get("mean_env_return"),
                   curve=out.get("curve", []), error=out.get("error", ""), seconds=float(out.get("seconds", 0.0)),
                   steps=int(out.get("steps", 0)), trajectories=out.get("trajectories", []))


def _check_settings(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            flag = "--" + name.replace("_", "-")
            raise WorkbenchError(f"{flag} must be a whole number of at least 1, got {value!r}\n"
                                 f"  fix: pass e.g. {flag} 2")


def train_programs(train: TrainFn, task: Task, programs: Sequence[str], *, proxy_steps: int,
                   seeds: Sequence[int] | int = 2, workers: int = 1, checkpoints: int = 3, eval_episodes: int = 10,
                   checkpoint_episodes: int = 5, trajectories: int = 0,
                   trajectory_fields: Sequence[str] = (), executor: Executor | None = None) -> list[list[SeedRun]]:
    """Train each program with each seed on the proxy budget in ``workers`` processes, each job one
    call of ``train`` (the workbench's training entry point, handed in); returns the
    runs per program, in seed order. (What the search does with every accepted candidate.)
    ``trajectories`` > 0 also watches that many episodes of each trained policy, following
    ``trajectory_fields`` of the StateView (what Auto MC-Reward's analyzer reads). ``executor``: where the
    jobs run (:mod:`workbench.executor`; default: a local pool of ``workers`` processes)."""
    seed_list = list(range(task.spec.training.seed, task.spec.training.seed + seeds)) \
        if isinstance(seeds, int) else list(seeds)
    trainer = _Trainer(train, task, workers=workers, proxy_steps=proxy_steps, checkpoints=checkpoints,
                       eval_episodes=eval_episodes, checkpoint_episodes=checkpoint_episodes,
                       trajectories=trajectories, trajectory_fields=trajectory_fields, executor=executor)
    out: list[list[SeedRun]] = [[] for _ in programs]
    try:
        for i, code in enumerate(programs):
            for s in seed_list:
                trainer.submit(i, code, s, f"program_{i}.py")
        for i, run in trainer.results(block=True):
            out[i].append(run)
    finally:
        trainer.close()
    return [sorted(runs, key=lambda r: r.seed) for runs in out]


# ----------------------------------------------------------------------------- reflection


def _series(values: Sequence[float | None], spec: str) -> str:
    return "[" + ", ".join(_fmt(v, spec) for v in values) + "]"


def _short(step: int) -> str:
    return f"{step / 1e6:.3g}M" if step >= 1_000_000 else f"{step / 1e3:.3g}k" if step >= 1000 else str(step)


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def policy_feedback(candidate: Candidate) -> str:
    """The statistics reflection shows: per checkpoint (mean over seeds) the success rate, the
    returns, the episode length and each reward term's per-episode sum, with the min and max."""
    runs = [r for r in candidate.runs if r.ok and r.curve]
    if not runs:
        return "(no training statistics: the program did not train)"
    n = min(len(r.curve) for r in runs)
    points = [[r.curve[k] for r in runs] for k in range(n)]

    def at(key: str) -> list[float | None]:
        return [_mean_or_none([p[key] for p in pts]) for pts in points]

    def stats_line(label: str, values: list[float | None], spec: str) -> str:
        kept = [v for v in values if v is not None]
        tail = f"; max {format(max(kept), spec)}, mean {format(float(np.mean(kept)), spec)}, " \
               f"min {format(min(kept), spec)}" if kept else ""
        return f"{label}: {_series(values, spec)}{tail}"

    steps = [int(points[k][0]["step"]) for k in range(n)]
    lines = [f"checkpoints at steps {', '.join(_short(s) for s in steps)}",
             stats_line("success rate", at("success_rate"), ".2f"),
             stats_line("episode return under this reward", at("mean_return"), ".3g"),
             stats_line("the environment's own return", at("mean_env_return"), ".3g"),
             stats_line("episode length", at("mean_length"), ".3g"),
             "reward terms (the sum over an episode; the mean over the evaluation episodes at each checkpoint, "
             "then the min and max over every episode):"]
    names = sorted({name for pts in points for p in pts for name in p["components"]} - {"env"})
    for name in names:
        means = [_mean_or_none([p["components"].get(name, {}).get("mean") for p in pts]) for pts in points]
        lows = [p["components"][name]["min"] for pts in points for p in pts if name in p["components"]]
        highs = [p["components"][name]["max"] for pts in points for p in pts if name in p["components"]]
        lines.append(f"- {name}: {_series(means, '.3g')}; min {_fmt(min(lows, default=None))}, "
                     f"max {_fmt(max(highs, default=None))}")
    if not names:
        lines.append("- (the program reports no terms: return (total, {name: value, ...}) to see them here)")
    return "\n".join(lines)


def _others(best: Candidate, table: Sequence[Candidate], limit: int = 8) -> str:
    lines = []
    trained = sorted((c for c in table if c.status == TRAINED and c is not best),
                     key=lambda c: -(c.success_mean or 0.0))
    for c in trained[:limit]:
        lines.append(f"- {c.label}: success {_fmt(c.success_mean, '.2f')}, env return {_fmt(c.mean_env_return)}")
    for c in [c for c in table if c.status == FAILED][:limit]:
        first = (c.error.splitlines() or ["?"])[0]
        error = first.partition("raised during training: ")[2] or first  # the program's own words
        lines.append(f"- {c.label}: crashed in training: {error}")
    rejected = sum(c.checks != ACCEPTED for c in table)
    if rejected:
        lines.append(f"- {rejected} other(s) never trained: no code, or rejected by the pre-flight checks")
    return "\n".join(lines) or "- none"


def reflection_text(best: Candidate, table: Sequence[Candidate], *, success_doc: str, proxy_steps: int,
                    every: int) -> str:
    """The reflection prompt (``prompts/eureka_reflection.txt``) about ``best``."""
    return prompt_template("eureka_reflection").format(
        steps=proxy_steps, seeds=len([r for r in best.runs if r.ok]), every=every, success=success_doc,
        code=(best.code or "").strip(), feedback=policy_feedback(best), others=_others(best, table))


def reflection_messages(task: Task, goal: str, best: Candidate, table: Sequence[Candidate], *,
                        proxy_steps: int, every: int, top_fields: int | None = None) -> list[dict[str, str]]:
    """The task prompt, the best program (or, with ``best.sketch``, the best sketch under the sketch
    prompt offering ``top_fields`` fields) as the assistant's answer, then the reflection."""
    if best.sketch is None:
        messages = build_messages(task, goal)
        messages.append({"role": "assistant", "content": f"```python\n{(best.code or '').strip()}\n```"})
        messages.append({"role": "user", "content": reflection_text(
            best, table, success_doc=task.success_doc(), proxy_steps=proxy_steps, every=every)})
        return messages
    messages = list(sketch_request(task, goal, top_fields=top_fields).messages)
    messages.append({"role": "assistant", "content": json.dumps(best.sketch)})
    messages.append({"role": "user", "content": prompt_template("eureka_sketch_reflection").format(
        steps=proxy_steps, seeds=len([r for r in best.runs if r.ok]), every=every, success=task.success_doc(),
        feedback=policy_feedback(best), others=_others(best, table))})
    return messages


# ----------------------------------------------------------------------------- the search


def _candidate(result: SynthesisResult | SketchSynthesis, round_: int, index: int, request_seed: int) -> Candidate:
    attempts = [asdict(a) for a in result.attempts]
    chosen = result.accepted or (next((a for a in reversed(result.attempts) if a.code is not None), None))
    last = result.attempts[-1]
    if result.accepted is not None:
        checks, reason = ACCEPTED, ""
    elif chosen is not None:
        checks, reason = REJECTED, chosen.reason
    else:
        checks, reason = NO_CODE, last.reason
    code = chosen.code if chosen is not None else None
    sha = hashlib.sha256(code.encode()).hexdigest() if code is not None else None
    first = (reason.strip().splitlines() or [""])[0].removeprefix("- ")
    return Candidate(round_, index, request_seed, code, sha, checks, first,
                     QUEUED if checks == ACCEPTED else NOT_TRAINED, attempts=attempts,
                     sketch=getattr(chosen, "sketch", None))


class _Record:
    """The output directory, rewritten (atomically) whenever a candidate changes."""

    def __init__(self, out_dir: Path, header: dict[str, Any], seeds: list[int]):
        self.out_dir, self.header, self.seeds = out_dir, header, seeds

    def candidate(self, c: Candidate, reply: str | None = None) -> None:
        d = self.out_dir / "candidates"
        if c.sketch is not None:
            write_json(d / f"{c.label}.sketch.json", c.sketch)
        if c.code is not None:
            atomic_write(d / f"{c.label}.py", c.code)
        elif reply is not None:
            atomic_write(d / f"{c.label}.reply.txt", reply)
        write_json(d / f"{c.label}.json", c.detail())

    def table(self, table: Sequence[Candidate], winner: Candidate | None, *, finished: bool) -> None:
        rows = [c.row(self.seeds) for c in table]
        columns = [col for pattern in TABLE_COLUMNS
                   for col in ([f"success_s{s}" for s in self.seeds] if pattern == "success_s{seed}" else [pattern])]
        win = None if winner is None else {
            "round": winner.round, "index": winner.index, "sha256": winner.sha256,
            "success": winner.success_per_seed, "success_mean": winner.success_mean,
            "mean_env_return": winner.mean_env_return, "program": "program.py"}
        write_json(self.out_dir / "candidates.json", {**self.header, "finished": finished, "columns": columns,
                                                      "winner": win, "rows": rows})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        atomic_write(self.out_dir / "candidates.csv", buf.getvalue())


def search(task: Task, goal: str, client: LLMClient, samples: Sequence[tuple[State, np.ndarray]], *,
           train: TrainFn, candidates: int, rounds: int, workers: int, proxy_steps: int, seeds: int = 2, out_dir: Path,
           seed: int = 0, on_event: Callable[[str, Candidate], None] | None = None, attempts: int = 2,
           checkpoints: int = 3, eval_episodes: int = 10, checkpoint_episodes: int = 5,
           preference: Preference | None = None, mode: str = "code",
           top_fields: int | None = TOP_FIELDS, executor: Executor | None = None,
           explore: bool = True, reweigh: Sequence[float] = ()) -> EurekaResult:
    """Run the Eureka search; see the module docstring. ``samples`` (and ``preference``, the
    good-vs-bad episodes of :func:`~reward_synthesis.safety.checks.check_inputs`) feed the pre-flight checks.
    ``train``: the workbench's training entry point (:func:`workbench.pipeline.train_and_evaluate`),
    handed in; every candidate's proxy training is one call of it per seed.

    LLM request seeds: candidate ``i`` of round ``r`` asks with ``seed + (r * candidates + i) *
    attempts`` (+ the repair attempt), so every request is distinct and a re-run replays from the
    response cache. Training seeds: ``task.spec.training.seed + j`` for ``j < seeds``; each is also
    the evaluation seed, so every candidate is judged on the same held-out starts.
    ``checkpoints``: evaluations along the proxy training, the final one included.
    ``on_event(kind, candidate)``: ``"checked"`` once its program is in (accepted or not), then
    ``"finished"`` once it is final (rejected, trained or failed); called from this thread.
    ``mode``: ``"code"`` asks for programs; ``"sketch"`` for reward sketches under the task's schema
    (offering the ``top_fields`` fields most related to the goal), compiled, and the reflection
    shows the best sketch: the search then picks among plausible sketches by proxy training.
    ``executor``: where proxy trainings run (:mod:`workbench.executor`, e.g. a RayExecutor on a
    cluster; default: a local pool of ``workers`` processes).
    ``explore`` (sketch mode): within a round, candidate ``i > 0`` is not offered the kinds of terms
    the round's earlier accepted candidates are made of, so the K candidates differ in how they
    reward (a small model otherwise writes the same kind of term K times, e.g. a distance of every
    field) and proxy training picks among them.
    ``reweigh`` (sketch mode): factors, e.g. ``(0.1, 10)``; every round after the first also trains the
    best sketch so far with one term's weight times each factor (:func:`reweighed`; no LLM request,
    ``request_seed`` -1, ``origin`` says what changed), before the reflection's candidates: the
    weights a small model writes are the part proxy training judges best.
    """
    if mode not in ("code", "sketch"):
        raise WorkbenchError(f"Eureka mode {mode!r}: give code or sketch")
    _check_settings(candidates=candidates, rounds=rounds, workers=workers, proxy_steps=proxy_steps, seeds=seeds,
                    attempts=attempts, checkpoints=checkpoints, eval_episodes=eval_episodes,
                    checkpoint_episodes=checkpoint_episodes)
    if task.profile.success is None:
        raise WorkbenchError(f"{task.spec.name}: Eureka scores candidates by the task's success metric, and "
                             f"{task.spec.sim.env_id} has none\n  fix: use Text2Reward (`workbench reward synth` "
                             "without --candidates) or a task whose adapter defines success")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_seeds = list(range(task.spec.training.seed, task.spec.training.seed + seeds))
    every = max(1, math.ceil(proxy_steps / checkpoints))
    emit = on_event or (lambda kind, c: None)
    record = _Record(out_dir, {
        "task": task.spec.name, "env_id": task.spec.sim.env_id, "goal": goal, "success_metric": task.success_doc(),
        "settings": {"mode": mode, "explore": explore, "reweigh": list(reweigh), "candidates": candidates,
                     "rounds": rounds, "workers": workers, "proxy_steps": proxy_steps,
                     "seeds": seeds, "attempts": attempts, "seed": seed, "checkpoints": checkpoints,
                     "eval_episodes": eval_episodes, "checkpoint_episodes": checkpoint_episodes},
        "train_seeds": train_seeds}, train_seeds)
    for old in ("program.py", "sketch.json"):  # never leave an older search's winner behind
        (out_dir / old).unlink(missing_ok=True)
    table: list[Candidate] = []
    by_sha: dict[str, Candidate] = {}
    trainer = _Trainer(train, task, workers=workers, proxy_steps=proxy_steps, checkpoints=checkpoints,
                       eval_episodes=eval_episodes, checkpoint_episodes=checkpoint_episodes, executor=executor)

    def collect(block: bool) -> None:
        for c, run in trainer.results(block=block):
            c.runs.append(run)
            if len(c.runs) == len(train_seeds):
                c.runs.sort(key=lambda r: r.seed)
                failures = [r for r in c.runs if not r.ok]
                c.status = FAILED if failures else TRAINED
                c.error = failures[0].error if failures else ""
                record.candidate(c)
                record.table(table, pick_winner(table), finished=False)
                emit("finished", c)

    def queue(c: Candidate, reply: str | None = None) -> None:
        """Put a checked candidate in the table and its proxy trainings on the executor."""
        table.append(c)
        if c.checks == ACCEPTED and c.sha256 in by_sha:
            c.status, c.error = DUPLICATE, f"same code as {by_sha[c.sha256].label}"
        record.candidate(c, reply=reply)
        record.table(table, pick_winner(table), finished=False)
        emit("checked", c)
        if c.status == QUEUED:
            by_sha[c.sha256] = c
            for s in train_seeds:
                trainer.submit(c, c.code, s, f"{c.label}.py")
        else:
            emit("finished", c)

    interrupted = False
    space: Any = None  # the task's action space, for the sketches the search derives itself
    try:
        for r in range(rounds):
            best = pick_winner(table)
            messages: list[dict[str, str]] | None = None
            if best is not None:
                messages = reflection_messages(task, goal, best, table, proxy_steps=proxy_steps, every=every,
                                               top_fields=top_fields)
                atomic_write(out_dir / "reflection" / f"round_{r}.txt", messages[-1]["content"])
            elif mode == "code":
                messages = build_messages(task, goal)
            derived = 0
            if reweigh and mode == "sketch" and best is not None and best.sketch is not None:
                if space is None:
                    env = task.make_env()
                    space = env.action_space
                    env.close()
                for what, variant in reweighed(best.sketch, reweigh):
                    attempt = judge_sketch(0, variant, task, space, samples, preference)
                    c = _candidate(SketchSynthesis(goal=goal, attempts=[attempt]), r, derived, -1)
                    c.origin = f"{best.label}, {what}"
                    derived += 1
                    queue(c)
            for i in range(candidates):
                request_seed = seed + (r * candidates + i) * attempts
                result: SynthesisResult | SketchSynthesis
                if mode == "sketch":
                    # the kinds the round's earlier LLM candidates used (the reweighed ones are the best
                    # sketch's kinds: excluding them would keep the reflection from revising it)
                    used = [t.get("kind") for c in table if c.round == r and c.checks == ACCEPTED and c.origin == "llm"
                            and c.sketch is not None for t in c.sketch.get("terms", [])] if explore else []
                    result = synthesize_sketch(task, goal, client, samples, attempts=attempts, seed=request_seed,
                                               preference=preference, top_fields=top_fields, messages=messages,
                                               exclude_kinds=[k for k in used if isinstance(k, str)])
                else:
                    result = synthesize(task, goal, client, samples, attempts=attempts, seed=request_seed,
                                        messages=messages, preference=preference)
                queue(_candidate(result, r, derived + i, request_seed), reply=result.attempts[-1].reply)
                collect(block=False)  # report what finished while the LLM was answering
            collect(block=True)  # the next round reflects on this one's results
    except BaseException:
        interrupted = True
        raise
    finally:
        trainer.close(terminate=interrupted)
        for c in table:
            if c.status == QUEUED:  # stopped before its training finished
                c.status, c.error = NOT_TRAINED, "the search stopped before its training finished"
        winner = pick_winner(table)
        record.table(table, winner, finished=not interrupted)
    if winner is not None:
        if winner.sketch is not None:
            write_json(out_dir / "sketch.json", winner.sketch)
        atomic_write(out_dir / "program.py", winner.code or "")
    return EurekaResult(table, winner, out_dir, train_seeds)
