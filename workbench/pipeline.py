"""One task, end to end: build -> train -> evaluate, recorded in a run directory.

The CLI is a thin shell over these functions; tests and notebooks can call them directly.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.progress import Task as BarTask
from rich.table import Column
from rich.text import Text

from workbench.datasets import normalized_score
from workbench.errors import WorkbenchError
from workbench.evaluate import EvalResult, evaluate
from workbench.learner import FitHooks, Policy, TrainingInterrupted, TrainingStopped, load_policy
from workbench.plots import write_training_curves
from workbench.registry import LEARNERS
from workbench.reward import BuiltReward
from workbench.runs import Run, atomic_write, default_runs_root, write_json
from workbench.spec import TaskSpec, load_task, validate_task_data
from workbench.task import Task

__all__ = ["RunResult", "TrainFn", "train_and_evaluate", "start_run", "resume_run", "evaluate_run", "find_tasks",
           "open_run_task", "RunInterrupted", "RunStopped", "EVALUATIONS_FILE"]

REWARD_DIR = "reward"
PROGRAM_FILE = "program.py"
EVALUATIONS_FILE = "evaluations.json"  # the periodic evaluations during training, one record per checkpoint


class RunInterrupted(WorkbenchError):
    exit_code = 130


class RunStopped(WorkbenchError):
    """Training stopped on a user-fixable error (``cause``, e.g. a reward program that raised) at
    ``step``; a checkpoint was saved and run.json says ``failed``."""

    def __init__(self, message: str, *, cause: WorkbenchError, step: int):
        super().__init__(message)
        self.cause, self.step = cause, step


@dataclass
class RunResult:
    """A finished run: its directory, the final evaluation, the trained policy, the live task it
    ran (to watch the policy further) and the periodic evaluations along the way."""

    run: Run
    evaluation: EvalResult
    policy: Policy
    task: Task
    evaluations: list[dict[str, Any]]


class TrainFn(Protocol):
    """The shape of :func:`train_and_evaluate`, as a search loop receives it (handed in, so a
    search never builds its own learner, run directory or evaluation)."""

    def __call__(self, spec: TaskSpec, runs_root: Path, *, reward: BuiltReward | None = None,
                 quiet: bool = True, console: Console | None = None) -> RunResult: ...


class _StepsPerSecond(ProgressColumn):
    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True, min_width=15))

    def render(self, task: BarTask) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} steps/s" if speed else "… steps/s", style="cyan", no_wrap=True)


@contextmanager
def _progress(total: int, start: int, *, quiet: bool, console: Console) -> Iterator[tuple[Any, Any]]:
    """A progress bar (steps, steps/s, ETA, last evaluation); yields (on_steps, on_eval_text)."""
    bar = Progress(BarColumn(bar_width=16), TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
                   _StepsPerSecond(), TimeRemainingColumn(), TextColumn("{task.fields[last_eval]}"),
                   console=console, disable=quiet, transient=False, speed_estimate_period=60)
    with bar:
        tid = bar.add_task("train", total=total, completed=start, last_eval="")
        last = [0.0]

        def on_steps(step: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.2:  # rich redraws at 10 Hz anyway; keep the hot path cheap
                bar.update(tid, completed=min(step, total))
                last[0] = now

        def on_eval_text(text: str) -> None:
            bar.update(tid, last_eval=text)

        yield on_steps, on_eval_text
        bar.update(tid, completed=total)


def _short(step: int) -> str:
    return f"{step / 1e6:.3g}M" if step >= 1_000_000 else f"{step / 1e3:.3g}k" if step >= 1000 else str(step)


def _interrupt_on_sigterm() -> None:
    """`kill` (SIGTERM) saves a checkpoint like Ctrl-C does. Only a main thread can take signals: a
    run inside a Ray Tune trial (a thread of its actor) leaves them to Ray."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _set_torch_threads(spec: TaskSpec) -> None:
    """The task's torch thread count from the start, not only in the learner: reward calibration
    and evaluation run CLIP beside a software renderer, and torch's default (all cores) competes
    with it (a pixel-reward eval here: 55 s with the default, 11 s with one thread)."""
    import torch

    torch.set_num_threads(spec.learner.torch_threads)


def _record_reward(run: Run, task: Task) -> None:
    """Keep the exact reward program and its check report in the run (sha256 for audit)."""
    built = task.reward
    d = run.subdir(REWARD_DIR)
    record: dict[str, Any] = {"source": task.spec.reward.source, "description": built.description,
                              "spec": task.spec.reward.model_dump(mode="json")}
    if built.source_text is not None:
        atomic_write(d / PROGRAM_FILE, built.source_text)
        record["sha256"] = hashlib.sha256(built.source_text.encode()).hexdigest()
    if built.report is not None:
        record["checks"] = built.report.to_dict()
    record.update(built.record)
    write_json(d / "reward.json", record)
    for relative, text in built.files.items():
        atomic_write(run.path / relative, text)


def _resolved_for_run(task: Task) -> dict[str, Any]:
    """The resolved task as a self-contained file in the run dir: any reward that is a program
    (written by hand or synthesized) becomes ``source: code`` pointing at the run's copy, so a
    resumed run uses exactly the program that trained (and never re-asks an LLM)."""
    data = task.spec.resolved_dict()
    if task.reward.resolved is not None:
        data["reward"] = task.reward.resolved
    elif task.reward.source_text is not None:
        data["reward"] = {"source": "code", "path": f"{REWARD_DIR}/{PROGRAM_FILE}"}
    return data


def train_and_evaluate(spec: TaskSpec, runs_root: Path, *, reward: BuiltReward | None = None,
                       quiet: bool = True, console: Console | None = None) -> RunResult:
    """The one training entry point: build ``spec``'s task, train it for ``spec.training.total_steps``
    with ``spec.training.seed`` into a new run directory under ``runs_root``, evaluate it by the
    task's success metric, and return the result.

    ``reward`` hands in an already built reward (a search's candidate program) instead of building
    the task's ``reward:`` section. Searches (Eureka, Auto MC-Reward, sweeps) receive this function
    (:class:`TrainFn`) rather than importing or copying it; it is a plain module-level function, so
    it pickles into worker processes. Errors: :class:`RunInterrupted` (Ctrl-C; checkpoint saved),
    :class:`RunStopped` (a user-fixable error while training; checkpoint saved), any other error
    leaves run.json ``failed``.
    """
    console = console or Console(quiet=quiet)
    _set_torch_threads(spec)
    task = Task.build(spec, reward=reward)
    run = Run.create(runs_root, task=spec.name, learner=spec.learner.name, seed=spec.training.seed,
                     resolved=_resolved_for_run(task), source_path=spec.source_path)
    _record_reward(run, task)
    if not quiet:
        console.print(f"run directory: [bold]{run.path}[/]")
    return _train_and_evaluate(task, run, resume=False, quiet=quiet, console=console)


def start_run(task_file: Path, overrides: list[str], *, runs_root: Path | None = None,
              quiet: bool = False, console: Console | None = None) -> RunResult:
    """``workbench run TASK``: the task file (with ``--set`` overrides) through :func:`train_and_evaluate`."""
    spec = load_task(task_file, overrides)
    _interrupt_on_sigterm()
    return train_and_evaluate(spec, runs_root or default_runs_root(), quiet=quiet, console=console or Console())


def open_run_task(run_dir: Path) -> tuple[Run, Task]:
    run = Run.open(run_dir)
    data = run.resolved_task()
    data["source_path"] = str((run.path / "task.yaml").resolve())
    spec = validate_task_data(data, file=str(run.path / "task.yaml"))
    _set_torch_threads(spec)
    return run, Task.build(spec)


def resume_run(run_dir: Path, *, quiet: bool = False, console: Console | None = None) -> RunResult:
    console = console or Console()
    run, task = open_run_task(run_dir)
    _interrupt_on_sigterm()
    checkpoint = run.latest_checkpoint()
    if not quiet:
        where = f"step {checkpoint[0]}" if checkpoint else "the start (no checkpoint yet)"
        console.print(f"resuming [bold]{run.path}[/] from {where}")
    return _train_and_evaluate(task, run, resume=True, quiet=quiet, console=console)


def _train_and_evaluate(task: Task, run: Run, *, resume: bool, quiet: bool, console: Console) -> RunResult:
    """Train and evaluate into ``run``; a run that ends any other way than finished or interrupted
    is marked ``failed`` in run.json (never left ``running``)."""
    try:
        return _train_and_evaluate_unmarked(task, run, resume=resume, quiet=quiet, console=console)
    except RunInterrupted:
        raise
    except KeyboardInterrupt:
        if run.info().get("status") == "running":
            run.update_info(status="interrupted")
        raise
    except BaseException as err:
        if run.info().get("status") == "running":
            run.update_info(status="failed", error=f"{type(err).__name__}: {err}"[:2000])
        raise


def _train_and_evaluate_unmarked(task: Task, run: Run, *, resume: bool, quiet: bool,
                                 console: Console) -> RunResult:
    spec = task.spec
    learner = LEARNERS.get(spec.learner.name)()
    checkpoint = run.latest_checkpoint() if resume else None
    start = checkpoint[0] if checkpoint else 0
    run.update_info(status="running", resumed_from=start if resume else None)
    evaluations = _evaluations_before(run, start)
    with _progress(spec.training.total_steps, start, quiet=quiet, console=console) as (on_steps, on_eval_text):
        def on_eval(step: int, policy: Policy) -> dict[str, float | None]:
            if step >= spec.training.total_steps:  # the final evaluation follows fit()
                return {}
            result = evaluate(policy, task, episodes=spec.training.eval_episodes,
                              deterministic=spec.evaluation.deterministic, seed=spec.training.seed)
            evaluations.append({"step": int(step), **result.brief()})
            write_json(run.path / EVALUATIONS_FILE, evaluations)
            success = "" if result.success_rate is None else f"success {result.success_rate:.2f} "
            on_eval_text(f"eval@{_short(step)}: {success}return {result.mean_return:.1f}")
            return {"success_rate": result.success_rate, "mean_return": result.mean_return,
                    "mean_env_return": result.mean_env_return}

        hooks = FitHooks(on_steps=on_steps, on_eval=on_eval, eval_every=spec.training.eval_every,
                         checkpoint_every=spec.training.checkpoint_every, wrap_vec=task.wrap_vec,
                         reward_needs_vec=task.reward_needs_vec)
        started = time.perf_counter()
        try:
            policy = learner.fit(spec, task.env_fns(spec.training.n_envs), spec.training.total_steps, run,
                                 hooks=hooks, resume=resume)
        except TrainingInterrupted as e:
            run.update_info(status="interrupted", steps=e.step)
            raise RunInterrupted(f"interrupted at step {e.step}; checkpoint saved.\n"
                                 f"  resume with: workbench run --resume {run.path}") from None
        except TrainingStopped as e:
            run.update_info(status="failed", steps=e.step, error=str(e.cause))
            raise RunStopped(f"{e.cause}\n  training stopped at step {e.step}; checkpoint saved in {run.path}\n"
                             "  fix: correct the reward program and start a new run", cause=e.cause,
                             step=e.step) from None
    seconds = time.perf_counter() - started
    checkpoint = run.latest_checkpoint()
    steps = checkpoint[0] if checkpoint else spec.training.total_steps  # learners overshoot by a rollout
    run.update_info(train_seconds=round(seconds, 3), steps=steps,
                    train_steps_per_second=round((steps - start) / seconds, 1))
    policy.save(run.path / "model")
    write_training_curves(run.path, title=f"{spec.name}: {spec.learner.name}, seed {spec.training.seed}, "
                                          f"reward {spec.reward.source}")
    evaluation = _evaluate_into(run, task, policy, episodes=spec.evaluation.episodes,
                                video=spec.evaluation.video, deterministic=spec.evaluation.deterministic,
                                seed=spec.training.seed, quiet=quiet, console=console)
    run.update_info(status="finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return RunResult(run, evaluation, policy, task, evaluations)


def _evaluations_before(run: Run, step: int) -> list[dict[str, Any]]:
    """The periodic evaluations a resumed run keeps: those up to its checkpoint."""
    path = run.path / EVALUATIONS_FILE
    if step == 0 or not path.is_file():
        return []
    try:
        kept = json.loads(path.read_text())
    except ValueError:
        return []
    return [e for e in kept if isinstance(e, dict) and isinstance(e.get("step"), int) and e["step"] <= step]


def _evaluate_into(run: Run, task: Task, policy: Policy, *, episodes: int, video: bool, deterministic: bool,
                   seed: int, quiet: bool, console: Console) -> EvalResult:
    bar = Progress(TextColumn("[bold]eval "), BarColumn(bar_width=20), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, disable=quiet)
    with bar:
        tid = bar.add_task("eval", total=episodes)
        result = evaluate(policy, task, episodes=episodes, deterministic=deterministic, seed=seed,
                          video_dir=run.path / "videos" if video else None,
                          video_episodes=task.spec.evaluation.video_episodes if video else 0,
                          progress=lambda n: bar.update(tid, completed=n))
    refs = _reference_scores(task.spec)
    if refs is not None:
        result.reference_scores = refs
        result.normalized_score = normalized_score(result.mean_env_return, refs)
    result.write(run.path / "eval.json")
    return result


def _reference_scores(spec: TaskSpec) -> tuple[float, float] | None:
    """(random, expert) returns of the task, from a learner that knows them (its optional
    ``reference_scores(spec)``: the offline learners read them from their dataset)."""
    scores = getattr(LEARNERS.get(spec.learner.name), "reference_scores", None)
    return scores(spec) if scores is not None else None


def evaluate_run(run_dir: Path, *, episodes: int | None = None, video: bool | None = None,
                 deterministic: bool | None = None, seed: int = 0, quiet: bool = False,
                 console: Console | None = None) -> EvalResult:
    console = console or Console()
    run, task = open_run_task(run_dir)
    model_dir = run.path / "model"
    if not (model_dir / "policy.json").is_file():
        checkpoint = run.latest_checkpoint()
        if checkpoint is None:
            raise WorkbenchError(f"{run.path}: no final model and no checkpoint to evaluate\n"
                                 f"  fix: resume the run: workbench run --resume {run.path}")
        step, ckpt = checkpoint
        console.print(f"no final model yet; evaluating the checkpoint at step {step}")
        policy: Policy = LEARNERS.get(task.spec.learner.name).load_checkpoint(ckpt, task.spec)
    else:
        policy = load_policy(model_dir)
    ev = task.spec.evaluation
    return _evaluate_into(run, task, policy, episodes=episodes or ev.episodes,
                          video=ev.video if video is None else video,
                          deterministic=ev.deterministic if deterministic is None else deterministic,
                          seed=seed, quiet=quiet, console=console)


def find_tasks(root: Path | None = None) -> list[tuple[Path, TaskSpec | Exception]]:
    """Every task YAML under ``tasks/`` (of the cwd, else of the source checkout), parsed and
    validated up to the plug-in names: a name is checked against the registries' name lists and no
    module is imported, whatever a file says (``workbench validate FILE`` checks a task fully)."""
    if root is None:
        root = Path("tasks")
        if not root.is_dir():
            root = Path(__file__).resolve().parent.parent / "tasks"
    out: list[tuple[Path, TaskSpec | Exception]] = []
    for path in sorted(root.rglob("*.yaml")):
        try:
            out.append((path, load_task(path, plugins=False)))
        except WorkbenchError as e:
            out.append((path, e))
    return out
