"""Sweeps: one base task, axes of ``--set`` values and seeds, each trial a normal run directory under
one sweep directory, and the statistics of rliable's protocol over the seeds.

A sweep file (``sweeps/*.yaml``)::

    name: reacher_rewards
    task: ../tasks/mujoco/reacher.yaml          # relative to the sweep file
    set: {training.total_steps: 1e5}            # overrides every trial takes
    axes:                                       # the methods compared: every combination
      reward: [{source: env}, {source: code, path: rewards/reacher_precise.py}]
    seeds: [0, 1, 2]                            # training.seed of each method's trials
    metric: success_rate                        # from each trial's eval.json: success_rate | mean_return
    jobs: 2                                     # trials at once (processes)

Several tasks: ``tasks: [a.yaml, b.yaml]`` instead of ``task:`` runs every method on each (trial ids
``t<task>-m<method>-s<seed>``); the statistics are per task and method, and with ``success_rate``
(one scale on every task) also over all tasks per method, by rliable's stratified bootstrap.

The sweep directory (``--out``, default ``runs/sweeps/<name>``) holds ``sweep.json`` (the trials and
where they stand), ``trials/<id>/`` (each trial's run directory) and the summary (``summary.csv``,
``summary.json``, and ``sweep.png``: the intervals and the performance profiles). Run the same
command again after a kill: finished trials are kept, a trial that wrote a checkpoint resumes from it
(``workbench run --resume``), the rest start again.

Statistics (Agarwal et al. 2021, rliable): per method, the mean and the interquartile mean (IQM: the
mean of the middle 50% of seeds' scores) with 95% percentile bootstrap confidence intervals over seeds
(per task the plain bootstrap; over several tasks the stratified one, resampling seeds within each
task). They are computed with scipy.stats (``trim_mean``, ``bootstrap``), ``trim_mean`` being what
rliable's IQM calls; rliable itself does not install beside this environment's pandas 3 (it pins
arch < 8, whose 7.x releases fail to import with pandas 3).

Executors (:mod:`workbench.executor`): ``local`` (a process pool, ``jobs`` at once) or ``ray`` (each
trial a Ray task with ``ray.cpus_per_trial`` / ``ray.gpus_per_trial``, fractions share a GPU, on a local
Ray runtime or, with ``ray.address: auto``, the cluster ``ray start`` made)::

    executor: ray
    ray: {address: auto, cpus_per_trial: 1, gpus_per_trial: 0.25}

A hyperparameter search (RL Zoo-style) replaces the axes with ``search:``: Ray Tune samples
``samples`` configurations from the space with Optuna's TPE (``algorithm: optuna``, the default) or
at random, each configuration trains at every seed, and Tune is told the mean of its seeds' metric::

    executor: ray
    search:
      samples: 16
      space:
        learner.hyperparams.learning_rate: {loguniform: [1.0e-5, 1.0e-3]}
        learner.hyperparams.n_epochs: {randint: [3, 20]}        # inclusive
        learner.hyperparams.gamma: {choice: [0.95, 0.99]}

Its trials are ``trials/<tune trial id>-s<seed>/``, Tune's own state is ``tune/``; ``sweep.json`` and
``summary.json`` name the ``best`` configuration. A rerun after a kill restores Tune's experiment:
finished trials are kept, the others resume from their run directories.
"""

from __future__ import annotations

import itertools
import json
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.errors import TaskError, WorkbenchError
from workbench.executor import RayOptions, make_executor
from workbench.runs import RUN_FILE, TASK_FILE, Run, atomic_path, atomic_write, write_json
from workbench.spec import parse_overrides, parse_yaml, pydantic_error_to_task_error, read_bounded

__all__ = ["SweepSpec", "SearchSpec", "Trial", "load_sweep", "plan_trials", "run_sweep", "summarize", "SweepResult",
           "interval", "stratified_interval", "performance_profile", "profile_band", "write_sweep_plot", "run_trial"]

SWEEP_FILE = "sweep.json"
PLOT_FILE = "sweep.png"
MAX_SWEEP_BYTES = 1 << 20
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


class RaySettings(BaseModel):
    """Where a ``ray`` sweep's trials run and with what."""

    model_config = ConfigDict(extra="forbid")
    address: str | None = Field(None, description="None: a local Ray runtime; auto: join the cluster on this node; "
                                "or host:port of its head")
    cpus_per_trial: float = Field(1.0, gt=0, le=1024)
    gpus_per_trial: float = Field(0.0, ge=0, le=64, description="fractions share a GPU (0.5: two trials per GPU)")


DOMAINS = ("uniform", "loguniform", "randint", "choice")


class SearchSpec(BaseModel):
    """A hyperparameter search: Ray Tune samples ``samples`` configurations from ``space`` with
    ``algorithm`` (Optuna's TPE, or random); each configuration trains at every seed of the sweep
    and scores the mean of its seeds' metric."""

    model_config = ConfigDict(extra="forbid")
    algorithm: Literal["optuna", "random"] = Field("optuna", description="optuna: TPE (Optuna); random")
    samples: int = Field(8, ge=1, le=100_000, description="configurations tried")
    space: dict[str, dict[str, list[Any]]] = Field(min_length=1, description="key.path: {uniform|loguniform|"
                                                   "randint: [low, high]} or {choice: [values]}")


class SweepSpec(BaseModel):
    """A sweep file's keys (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="the sweep's name (its default directory)")
    task: str | None = Field(None, description="the base task file, relative to the sweep file")
    tasks: list[str] | None = Field(None, min_length=1, description="several base tasks (instead of task): "
                                    "every method runs on each; statistics per task and over all tasks")
    set: dict[str, Any] = Field(default_factory=dict, description="overrides every trial takes (key.path: value)")
    axes: dict[str, list[Any]] = Field(default_factory=dict, description="key.path: [values]; every combination "
                                       "is a method")
    seeds: list[int] = Field([0], min_length=1, description="training.seed of each method's trials")
    metric: Literal["success_rate", "mean_return"] = Field("mean_return", description="the score from eval.json")
    jobs: int = Field(1, ge=1, le=256, description="trials run at once")
    executor: Literal["local", "ray"] = Field("local", description="local: a process pool; ray: Ray tasks")
    ray: RaySettings = Field(default_factory=lambda: RaySettings(), description="executor: ray only")
    search: SearchSpec | None = Field(None, description="a Ray Tune search instead of axes (needs executor: ray)")

    def task_files(self) -> list[str]:
        """The base task files, as written (relative to the sweep file)."""
        return list(self.tasks) if self.tasks else [self.task] if self.task else []

    def ray_options(self) -> RayOptions:
        return RayOptions(self.ray.address, self.ray.cpus_per_trial, self.ray.gpus_per_trial)


@dataclass(frozen=True)
class Trial:
    """One training run of the sweep: a method (its axis values) on a task at one seed."""

    id: str
    method: str
    seed: int
    overrides: tuple[str, ...]
    task: str = ""        # the task file as the sweep names it
    task_label: str = ""  # its name in tables (the file's stem)


@dataclass
class SweepResult:
    directory: Path
    trials: list[dict[str, Any]]
    summary: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # a search's best configuration (highest mean over seeds)


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: parse_overrides reads it back exactly


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{_label(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"  # a sampled 0.00012296071107325708 reads as 0.000123
    return str(value)


def load_sweep(path: Path, *, executor: str | None = None, jobs: int | None = None) -> SweepSpec:
    """Read and check a sweep file: every mistake is one TaskError naming the file and the key."""
    file = str(path)
    data = parse_yaml(read_bounded(path, limit=MAX_SWEEP_BYTES, file=file).decode("utf-8", "replace"), file=file)
    if not isinstance(data, dict):
        raise TaskError("the top level must be a mapping (name, task, axes, seeds, ...)", file=file,
                        hint="see sweeps/reacher_rewards.yaml")
    if executor is not None:
        data["executor"] = executor
    if jobs is not None:
        data["jobs"] = jobs
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        task_error = pydantic_error_to_task_error(err, file=file, model=SweepSpec)
        raise TaskError(task_error.message, file=file, key=task_error.key,
                        hint="see 'Sweeps' in README.md, e.g. sweeps/reacher_rewards.yaml") from None
    for key, values in [*((k, [v]) for k, v in spec.set.items()), *spec.axes.items()]:
        parse_overrides([_override(key, values[0] if values else None)])  # a bad key path is named now
        if not values:
            raise TaskError(f"axis {key!r} has no values", file=file, key=f"axes.{key}",
                            hint="give it a list of at least one value, or remove it")
        if key == "training.seed":
            raise TaskError("seeds have their own key", file=file, key=f"axes.{key}",
                            hint="write seeds: [0, 1, 2] instead of an axis on training.seed")
    if (spec.task is None) == (spec.tasks is None):
        raise TaskError("give the base task as task: FILE, or several as tasks: [FILE, ...] (one of the two)",
                        file=file, key="task", hint="task: ../tasks/mujoco/reacher.yaml")
    if spec.search is not None:
        _check_search(spec, file)
    key = "task" if spec.task is not None else "tasks"
    for task in spec.task_files():
        if not (path.parent / task).is_file():
            raise TaskError(f"no task file {task!r} next to the sweep file", file=file, key=key,
                            hint="a task YAML path relative to the sweep file, e.g. ../tasks/mujoco/reacher.yaml")
    if len({Path(t).stem for t in spec.task_files()}) < len(spec.task_files()):
        raise TaskError("two tasks share a file name (the name is the task's label in the tables)", file=file,
                        key="tasks", hint="give each task file its own name")
    return spec


def _check_search(spec: SweepSpec, file: str) -> None:
    assert spec.search is not None
    if spec.tasks and len(spec.tasks) > 1:
        raise TaskError("a search tunes one task", file=file, key="tasks",
                        hint="task: FILE (one search per task)")
    if spec.axes:
        raise TaskError("a sweep has axes or a search, not both", file=file, key="search",
                        hint="move the axes into search.space as {choice: [...]}, or drop search")
    if spec.executor != "ray":
        raise TaskError("a search runs on Ray Tune", file=file, key="executor",
                        hint="executor: ray (a local Ray runtime unless ray.address is set)")
    for key, domain in spec.search.space.items():
        where = f"search.space.{key}"
        if key == "training.seed":
            raise TaskError("seeds have their own key", file=file, key=where, hint="seeds: [0, 1, 2]")
        if len(domain) != 1 or next(iter(domain)) not in DOMAINS:
            raise TaskError(f"{key}: give one of {', '.join(DOMAINS)}", file=file, key=where,
                            hint="e.g. {loguniform: [1e-5, 1e-3]} or {choice: [64, 128]}")
        kind, values = next(iter(domain.items()))
        parse_overrides([_override(key, values[0] if values else None)])
        if kind == "choice":
            if not values:
                raise TaskError(f"{key}: choice has no values", file=file, key=where, hint="{choice: [a, b]}")
            continue
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) \
                or not values[0] < values[1] or (kind == "loguniform" and values[0] <= 0) \
                or (kind == "randint" and not all(isinstance(v, int) for v in values)):
            raise TaskError(f"{key}: {kind} needs [low, high] with low < high"
                            + (" and low > 0" if kind == "loguniform" else "")
                            + (", whole numbers" if kind == "randint" else ""), file=file, key=where,
                            hint=f"e.g. {{{kind}: {[1, 8] if kind == 'randint' else [1e-5, 1e-3]}}}")


def plan_trials(spec: SweepSpec, extra: list[str] | None = None) -> list[Trial]:
    """Every method (combination of axis values) on every task at every seed, in a fixed order.
    Trial ids: ``m<method>-s<seed>``, prefixed ``t<task>-`` when the sweep has several tasks."""
    fixed = [_override(k, v) for k, v in spec.set.items()] + list(extra or [])
    keys = list(spec.axes)
    combos = list(itertools.product(*(spec.axes[k] for k in keys))) if keys else [()]
    tasks = spec.task_files()
    trials = []
    for t, task in enumerate(tasks):
        prefix = f"t{t:02d}-" if len(tasks) > 1 else ""
        for m, combo in enumerate(combos):
            method = " ".join(f"{k}={_label(v)}" for k, v in zip(keys, combo)) or "base"
            overrides = [*fixed, *(_override(k, v) for k, v in zip(keys, combo))]
            for seed in spec.seeds:
                trials.append(Trial(f"{prefix}m{m:02d}-s{seed}", method, seed, (*overrides, f"training.seed={seed}"),
                                    task, Path(task).stem))
    return trials


# ----------------------------------------------------------------------------- running


def _run_dir(trial_dir: Path) -> Path | None:
    """The trial's run directory (the newest, if a restart made another)."""
    runs = sorted((p for p in trial_dir.glob("*") if (p / RUN_FILE).is_file() and (p / TASK_FILE).is_file()),
                  key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def _state(run_dir: Path | None) -> str:
    """finished (evaluated), resume (has a checkpoint) or new."""
    if run_dir is None:
        return "new"
    run = Run.open(run_dir)
    if run.info().get("status") == "finished" and (run_dir / "eval.json").is_file():
        return "finished"
    return "resume" if run.latest_checkpoint() is not None else "new"


def run_trial(task_file: str, trial_dir: str, overrides: list[str]) -> str:
    """One trial through the one training entry point (``workbench run``, or ``--resume`` where a
    checkpoint is left); returns its run directory. Runs in a worker process."""
    from rich.console import Console

    from workbench.pipeline import resume_run, start_run

    quiet = Console(quiet=True)
    directory = Path(trial_dir)
    previous = _run_dir(directory)
    state = _state(previous)
    if state == "finished":  # e.g. a restored Tune trial whose run ended just before the kill
        return str(previous)
    if state == "resume":
        assert previous is not None
        return str(resume_run(previous, quiet=True, console=quiet).run.path)
    return str(start_run(Path(task_file), overrides, runs_root=directory, quiet=True, console=quiet).run.path)


def _score(run_dir: Path, metric: str) -> float | None:
    evaluation = json.loads((run_dir / "eval.json").read_text())
    value = evaluation.get(metric)
    return None if value is None else float(value)


def run_sweep(spec: SweepSpec, sweep_file: Path, out: Path, *, extra: list[str] | None = None,
              on_trial: Callable[[dict[str, Any]], None] | None = None) -> SweepResult:
    """Run (or finish) every trial, then summarise. ``on_trial`` hears of each trial as it ends."""
    trials = plan_trials(spec, extra)
    files = {task: str((sweep_file.parent / task).resolve()) for task in spec.task_files()}
    plan: dict[str, Any] = {"sweep": spec.model_dump(), "task_files": list(files.values()),
                            "extra": list(extra or []),
                            "trials": [{"id": t.id, "task": t.task_label, "method": t.method, "seed": t.seed,
                                        "overrides": list(t.overrides)} for t in trials]}
    record_file = out / SWEEP_FILE
    if record_file.is_file():
        kept = json.loads(record_file.read_text())
        where = ("executor", "jobs", "ray")  # how trials run is no part of what they are
        same = {k: v for k, v in kept.get("sweep", {}).items() if k not in where} == \
            {k: v for k, v in spec.model_dump().items() if k not in where}
        kept_files = kept.get("task_files") or [kept.get("task_file")]  # task_file: sweeps before several tasks
        if not same or kept_files != plan["task_files"] or kept.get("extra") != plan["extra"]:
            raise WorkbenchError(f"{out} holds another sweep (its sweep.json differs from {sweep_file} and these "
                                 "--set values)\n  fix: --out another directory, or rerun with the same file and --set")
    from workbench.spec import load_task

    for t in {(t.task, t.method): t for t in trials}.values():  # every task x method checks out first
        load_task(files[t.task], list(t.overrides))
    if spec.search is not None:
        (task_file,) = files.values()
        for key, domain in spec.search.space.items():  # every bound of the space is a valid task
            for value in next(iter(domain.values())):
                load_task(task_file, [*trials[0].overrides, _override(key, value)])
        out.mkdir(parents=True, exist_ok=True)
        return _run_search(spec, task_file, out, plan, on_trial)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {
        t.id: {"id": t.id, "task": t.task_label, "method": t.method, "seed": t.seed, "status": "pending", "run": None,
               "score": None} for t in trials}

    def save() -> None:
        write_json(record_file, {**plan, "results": list(rows.values())})

    todo = []
    for t in trials:
        run_dir = _run_dir(out / "trials" / t.id)
        if _state(run_dir) == "finished":
            assert run_dir is not None
            rows[t.id].update(status="finished", run=str(run_dir), score=_score(run_dir, spec.metric), kept=True)
        else:
            todo.append(t)
    save()
    calls = [(files[t.task], str(out / "trials" / t.id), list(t.overrides)) for t in todo]
    with make_executor(spec.executor, spec.jobs, spec.ray_options()) as executor:
        for i, future in executor.map_unordered(run_trial, calls):
            t = todo[i]
            try:
                run_dir = Path(future.result())
                rows[t.id].update(status="finished", run=str(run_dir), score=_score(run_dir, spec.metric))
            except Exception as err:  # one trial's failure is recorded; the others go on
                first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
                rows[t.id].update(status="failed", error=f"{type(err).__name__}: {first}")
            save()
            if on_trial is not None:
                on_trial(rows[t.id])
    return _finish(spec, out, list(rows.values()))


def _finish(spec: SweepSpec, out: Path, rows: list[dict[str, Any]], **extra: Any) -> SweepResult:
    result = SweepResult(out, rows, summarize(rows, spec.metric), extra.get("best"))
    write_json(out / "summary.json", {"metric": spec.metric, "confidence": CONFIDENCE, "methods": result.summary,
                                      **extra})
    atomic_write(out / "summary.csv", _csv(result.summary))
    write_sweep_plot(out / PLOT_FILE, result.summary, title=f"{spec.name}: {spec.metric}")
    return result


# ----------------------------------------------------------------------------- search (Ray Tune)


def _search_trial(config: dict[str, Any], *, task_file: str, out: str, fixed: list[str], seeds: list[int],
                  metric: str) -> None:
    """One Tune trial: the sampled configuration at every seed, each a run directory under
    ``trials/<tune trial id>-s<seed>/`` (a restored search resumes them from their checkpoints)."""
    from ray import tune

    trial = tune.get_context().get_trial_id()
    overrides = [*fixed, *(_override(k, v) for k, v in config.items())]
    runs, scores = [], []
    for seed in seeds:
        run_dir = Path(run_trial(task_file, str(Path(out) / "trials" / f"{trial}-s{seed}"),
                                 [*overrides, f"training.seed={seed}"]))
        runs.append(str(run_dir))
        scores.append(_score(run_dir, metric))
    finite = [x for x in scores if x is not None]
    tune.report({"score": float(np.mean(finite)) if finite else float("nan"), "scores": scores, "runs": runs})


def _tune_space(search: SearchSpec) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for key, domain in search.space.items():
        kind, values = next(iter(domain.items()))
        if kind == "choice":
            space[key] = tune.choice(values)
        elif kind == "randint":  # inclusive of high, as written
            space[key] = tune.randint(values[0], values[1] + 1)
        else:
            space[key] = (tune.uniform if kind == "uniform" else tune.loguniform)(*values)
    return space


def _run_search(spec: SweepSpec, task_file: str, out: Path, plan: dict[str, Any],
                on_trial: Callable[[dict[str, Any]], None] | None) -> SweepResult:
    """The search on Ray Tune (``tune/`` holds Tune's experiment state; a rerun restores it: finished
    trials are kept, unfinished ones resume from their run directories' checkpoints)."""
    assert spec.search is not None
    from ray import tune
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    from workbench.executor import RayExecutor

    fixed = [_override(k, v) for k, v in spec.set.items()] + list(plan["extra"])
    trainable = tune.with_resources(
        tune.with_parameters(_search_trial, task_file=task_file, out=str(out.resolve()), fixed=fixed,
                             seeds=list(spec.seeds), metric=spec.metric),
        {"cpu": spec.ray.cpus_per_trial, "gpu": spec.ray.gpus_per_trial})
    with RayExecutor(spec.ray_options(), spec.jobs):  # the runtime (or cluster) Tune's trials run on
        state = out / "tune" / "search"
        if tune.Tuner.can_restore(state):
            tuner = tune.Tuner.restore(str(state), trainable, resume_unfinished=True, resume_errored=True)
        else:
            algorithm = OptunaSearch(metric="score", mode="max", seed=spec.seeds[0]) \
                if spec.search.algorithm == "optuna" else BasicVariantGenerator(random_state=spec.seeds[0])
            tuner = tune.Tuner(trainable, param_space=_tune_space(spec.search),
                               tune_config=tune.TuneConfig(search_alg=algorithm, num_samples=spec.search.samples,
                                                           max_concurrent_trials=spec.jobs),
                               run_config=tune.RunConfig(storage_path=str((out / "tune").resolve()), name="search",
                                                         verbose=0))
        before = signal.getsignal(signal.SIGINT)
        try:
            grid = tuner.fit()
        finally:  # Tune leaves its own Ctrl-C handler installed after fit
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, before)
    rows: list[dict[str, Any]] = []
    for result in (grid[i] for i in range(len(grid))):
        config = {k: v for k, v in (result.config or {}).items() if k in spec.search.space}
        method = " ".join(f"{k}={_label(v)}" for k, v in config.items())
        metrics = result.metrics or {}
        trial = metrics.get("trial_id") or Path(result.path).name
        for i, seed in enumerate(spec.seeds):
            row: dict[str, Any] = {"id": f"{trial}-s{seed}", "task": Path(task_file).stem, "method": method,
                                   "seed": seed, "config": config}
            if result.error is None and "runs" in metrics:
                row.update(status="finished", run=metrics["runs"][i], score=metrics["scores"][i])
            else:
                first = str(result.error).strip().splitlines()[-1][:300] if result.error else "no result"
                row.update(status="failed", run=None, score=None, error=first)
            rows.append(row)
            if on_trial is not None:
                on_trial(row)
    rows.sort(key=lambda r: (r["id"]))
    best = max((r for r in rows if r["score"] is not None), default=None,
               key=lambda r: float(np.mean([x["score"] for x in rows if x["method"] == r["method"]
                                            and x["score"] is not None])))
    best_entry = None if best is None else {"method": best["method"], "config": best["config"]}
    write_json(out / SWEEP_FILE, {**plan, "results": rows, "best": best_entry})
    return _finish(spec, out, rows, best=best_entry)


# ----------------------------------------------------------------------------- statistics


def _iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    from scipy.stats import trim_mean

    return np.asarray(trim_mean(x, 0.25, axis=axis))


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.mean(x, axis=axis))


def interval(scores: list[float], statistic: Callable[..., np.ndarray], seed: int = 0) -> tuple[float, float, float]:
    """(point estimate, low, high): the statistic over the seeds' scores and its 95% percentile
    bootstrap interval (one score alone: no interval, low = high = the score)."""
    x = np.asarray(scores, dtype=np.float64)
    point = float(statistic(x))
    if len(x) < 2 or np.all(x == x[0]):
        return point, point, point
    from scipy.stats import bootstrap

    ci = bootstrap((x,), statistic, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
                   method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return point, float(ci.low), float(ci.high)


ALL_TASKS = "all tasks"


def stratified_interval(groups: list[list[float]], statistic: Callable[..., np.ndarray],
                        seed: int = 0) -> tuple[float, float, float]:
    """rliable's stratified bootstrap over several tasks: each resample draws every task's seeds
    with replacement within that task, then takes the statistic over all of them together;
    (point estimate, low, high) with the 95% percentile interval."""
    groups = [list(g) for g in groups if len(g)]
    pooled = np.concatenate([np.asarray(g, dtype=np.float64) for g in groups])
    point = float(statistic(pooled))
    if len(pooled) < 2 or np.all(pooled == pooled[0]):
        return point, point, point
    rng = np.random.default_rng(seed)
    draws = np.concatenate([np.asarray(g, dtype=np.float64)[rng.integers(0, len(g), size=(BOOTSTRAP_RESAMPLES, len(g)))]
                            for g in groups], axis=1)  # (resamples, all seeds of all tasks)
    values = statistic(draws, axis=-1)
    tail = (1 - CONFIDENCE) / 2 * 100
    return point, float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def summarize(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per task and method: seeds, mean and IQM with their 95% bootstrap intervals (finished trials
    only). With several tasks and ``success_rate`` (one scale on every task), each method also gets an
    ``all tasks`` entry: the statistics over every task's seeds, intervals by stratified bootstrap.
    (``mean_return`` is on each task's own scale, so it is not pooled.)"""
    cells: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        cells.setdefault((row.get("task", ""), row["method"]), [])
        if row["status"] == "finished" and row["score"] is not None:
            cells[(row.get("task", ""), row["method"])].append(row["score"])
    out = []
    for (task, method), scores in cells.items():
        entry: dict[str, Any] = {"task": task, "method": method, "metric": metric, "seeds": len(scores),
                                 "scores": scores}
        if scores:
            for name, fn in (("mean", _mean), ("iqm", _iqm)):
                point, low, high = interval(scores, fn)
                entry.update({name: point, f"{name}_low": low, f"{name}_high": high})
        out.append(entry)
    tasks = list(dict.fromkeys(task for task, _ in cells))
    if len(tasks) > 1 and metric == "success_rate":
        for method in dict.fromkeys(m for _, m in cells):
            groups = [cells.get((task, method), []) for task in tasks]
            entry = {"task": ALL_TASKS, "method": method, "metric": metric, "seeds": sum(map(len, groups)),
                     "scores": [x for g in groups for x in g], "tasks": sum(1 for g in groups if g)}
            if entry["seeds"]:
                for name, fn in (("mean", _mean), ("iqm", _iqm)):
                    point, low, high = stratified_interval(groups, fn)
                    entry.update({name: point, f"{name}_low": low, f"{name}_high": high})
            out.append(entry)
    return out


def _csv(summary: list[dict[str, Any]]) -> str:
    cols = ["task", "method", "metric", "seeds", "mean", "mean_low", "mean_high", "iqm", "iqm_low", "iqm_high"]
    lines = [",".join(cols)]
    for entry in summary:
        lines.append(",".join(json.dumps(entry.get(c, "")) if c in ("task", "method", "metric")
                              else str(entry.get(c, "")) for c in cols))
    return "\n".join(lines) + "\n"


def performance_profile(scores: list[float], thresholds: np.ndarray) -> np.ndarray:
    """rliable's score distribution: the fraction of runs whose score exceeds each threshold."""
    x = np.asarray(scores, dtype=np.float64)
    return (x[None, :] > thresholds[:, None]).mean(axis=1) if len(x) else np.full(len(thresholds), np.nan)


def profile_band(scores: list[float], thresholds: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The performance profile's 95% percentile bootstrap band over seeds (rliable draws its
    profiles with this band): each resample of the seeds gives a profile; the band holds the middle
    95% of them at every threshold."""
    x = np.asarray(scores, dtype=np.float64)
    if len(x) < 2:
        point = performance_profile(scores, thresholds)
        return point, point
    rng = np.random.default_rng(seed)
    draws = x[rng.integers(0, len(x), size=(BOOTSTRAP_RESAMPLES, len(x)))]  # (resamples, seeds)
    profiles = (draws[:, None, :] > thresholds[None, :, None]).mean(axis=2)  # (resamples, thresholds)
    tail = (1 - CONFIDENCE) / 2 * 100
    return np.percentile(profiles, tail, axis=0), np.percentile(profiles, 100 - tail, axis=0)


def write_sweep_plot(path: Path, summary: list[dict[str, Any]], *, title: str) -> Path | None:
    """``sweep.png``: per method the mean and IQM with their 95% intervals, and the performance
    profiles (the fraction of seeds above each score) side by side. None when no trial finished."""
    methods = [m for m in summary if m["seeds"]]
    if not methods:
        return None
    several = len({m.get("task", "") for m in methods}) > 1
    names = [(f"{m.get('task', '')}: " if several else "") + m["method"] for m in methods]
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.6 * len(methods) + 2.6))
    for row, name in enumerate(("mean", "iqm")):
        points = np.array([m[name] for m in methods])
        errors = np.array([[m[name] - m[f"{name}_low"] for m in methods],
                           [m[f"{name}_high"] - m[name] for m in methods]])
        where = np.arange(len(methods)) + (0.15 if row else -0.15)
        left.errorbar(points, where, xerr=errors, fmt="o", capsize=4, label=name.upper() if row else "mean")
    left.set_yticks(np.arange(len(methods)), [name[:56] for name in names], fontsize=8)
    left.invert_yaxis()
    left.set_xlabel(f"{methods[0]['metric']} ({int(CONFIDENCE * 100)}% bootstrap CI over seeds)")
    left.legend(fontsize=8)
    every = np.concatenate([np.asarray(m["scores"], dtype=np.float64) for m in methods])
    low, high = float(every.min()), float(every.max())
    pad = 0.05 * (high - low or 1.0)
    thresholds = np.linspace(low - pad, high + pad, 200)
    for m, name in zip(methods, names):
        line, = right.plot(thresholds, performance_profile(m["scores"], thresholds), label=name[:56])
        low_band, high_band = profile_band(m["scores"], thresholds)
        right.fill_between(thresholds, low_band, high_band, color=line.get_color(), alpha=0.2, linewidth=0)
    right.set_xlabel(f"{methods[0]['metric']} threshold τ")
    right.set_ylabel(f"fraction of seeds with score > τ ({int(CONFIDENCE * 100)}% band)")
    right.set_ylim(-0.02, 1.02)
    right.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
