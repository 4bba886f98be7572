"""The ``workbench`` command line: run, eval, validate, list; mounts ``reward`` (workbench.cli.reward) and ``llm``.

User mistakes (:class:`WorkbenchError`) print one message and exit 2 without a traceback;
``--debug`` shows the traceback too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from workbench.cli.errors import out, settings, user_errors
from workbench.cli.llm import llm_app
from workbench.cli.reward import reward_app
from workbench.errors import WorkbenchError

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rl-workbench: task YAML -> simulator -> reward program -> learner -> evaluation.")
app.add_typer(reward_app, name="reward")
app.add_typer(llm_app, name="llm", help="The embedded local LLM server: serve | status | stop.")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for errors")] = False) -> None:
    settings["debug"] = debug


# ----------------------------------------------------------------------------- run


@app.command()
@user_errors
def run(
    task_file: Annotated[Optional[Path], typer.Argument(help="task YAML (omit with --resume)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override: key.path=value")] = None,
    seed: Annotated[Optional[int], typer.Option(help="training seed (overrides training.seed)")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="continue RUN_DIR from its last checkpoint")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option(help="where run directories go [runs/]")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Train a policy for a task, evaluate it, and write everything to a run directory."""
    from workbench.pipeline import resume_run, start_run

    if resume is not None:
        if set_ or seed is not None:
            raise WorkbenchError("--resume continues a run exactly as it was configured; "
                                 "--set and --seed cannot change it\n  fix: drop --set/--seed, or start a new run")
        result = resume_run(resume, quiet=quiet, console=out)
    else:
        if task_file is None:
            raise WorkbenchError("missing TASK_FILE\n  fix: workbench run tasks/mujoco/reacher.yaml "
                                 "(or --resume RUN_DIR)")
        overrides = list(set_ or [])
        if seed is not None:
            overrides.append(f"training.seed={seed}")
        result = start_run(task_file, overrides, runs_root=runs_dir, quiet=quiet, console=out)
    out.print(f"[bold green]done[/] {result.run.path}")
    out.print(result.evaluation.summary())


# ----------------------------------------------------------------------------- eval


@app.command("eval")
@user_errors
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="a run directory made by `workbench run`")],
    episodes: Annotated[Optional[int], typer.Option(help="episodes [task's evaluation.episodes]")] = None,
    video: Annotated[Optional[bool], typer.Option("--video/--no-video", help="write mp4s")] = None,
    deterministic: Annotated[Optional[bool], typer.Option("--deterministic/--stochastic")] = None,
    seed: Annotated[int, typer.Option(help="evaluation seed")] = 0,
) -> None:
    """Score a run's policy in its simulator; writes eval.json (and videos) into the run."""
    from workbench.pipeline import evaluate_run

    result = evaluate_run(run_dir, episodes=episodes, video=video, deterministic=deterministic,
                          seed=seed, console=out)
    out.print(result.summary())


# ----------------------------------------------------------------------------- validate


@app.command()
@user_errors
def validate(
    task_file: Annotated[Path, typer.Argument(help="task YAML")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override: key.path=value")] = None,
) -> None:
    """Parse and validate a task, build its env and reward (no training). A reward an LLM would
    write is checked up to the synthesis (prompt, endpoint) but not synthesized."""
    from workbench.spec import load_task

    spec = load_task(task_file, list(set_ or []))
    from workbench.task import Task  # after the spec: a rejected file answers before torch loads

    task = Task.build(spec, check_only=True)
    env = task.make_env()
    try:
        env.reset(seed=0)
        env.step(env.action_space.sample())
        out.print(f"[bold green]valid[/] {task_file}")
        out.print(f"  task        {spec.name}" + (f" — {spec.goal}" if spec.goal else ""))
        out.print(f"  simulator   {spec.sim.name}: {spec.sim.env_id}")
        out.print(f"  obs / act   {env.observation_space} / {env.action_space}")
        out.print(f"  reward      {task.reward.description}")
        calibration = task.reward.record.get("calibration")
        if calibration is not None:
            lo, hi = calibration["window"]
            origin = f"fitted on {calibration['frames']} rollout frames" if "frames" in calibration else "from the task"
            out.print(f"  window      [{lo:.5g}, {hi:.5g}] ({origin})")
        out.print(f"  success     {task.success_doc()}")
        out.print(f"  learner     {spec.learner.name} ({spec.learner.policy}), "
                  f"{spec.training.total_steps} steps on {spec.training.n_envs} env(s)")
        out.print("  StateView:")
        out.print(task.profile.schema.describe(), markup=False, highlight=False)
    finally:
        env.close()


# ----------------------------------------------------------------------------- list


@app.command("list")
@user_errors
def list_(what: Annotated[str, typer.Argument(help="tasks | sims | rewards | learners")]) -> None:
    """List what the workbench knows."""
    from workbench.cli.errors import clean
    from workbench.registry import LEARNERS, REWARDS, SIMS, PluginError

    def show(line: str) -> None:  # names, goals and errors come from users' files: no markup, no controls
        out.print(clean(line), markup=False, highlight=False)

    def each(registry: Any, describe: Any) -> None:  # an installed plug-in that fails to load is listed as such
        for name in registry.names():
            try:
                show(f"{name}: {describe(registry.get(name))}")
            except PluginError as e:
                show(f"{name}: unavailable: {e.message}")

    def doc(cls: Any) -> str:
        return ((cls.__doc__ or "").strip().splitlines() or [""])[0]

    if what == "tasks":
        from workbench.pipeline import find_tasks

        for path, spec_or_error in find_tasks():  # parses and checks names; imports no plug-in
            if isinstance(spec_or_error, Exception):
                show(f"{path}  invalid: {(str(spec_or_error).splitlines() or [''])[0]}")
            else:
                s = spec_or_error
                show(f"{path}  {s.sim.name}:{s.sim.env_id}  reward={s.reward.source}  learner={s.learner.name}"
                     + (f"  — {s.goal}" if s.goal else ""))
    elif what == "sims":
        each(SIMS, lambda cls: ", ".join(cls().env_ids()))
    elif what == "rewards":
        each(REWARDS, doc)
    elif what == "learners":
        each(LEARNERS, lambda cls: f"stable-baselines3 {cls.algo.upper()}; "
                                   f"hyperparams: {', '.join(cls.valid_hyperparams())}"
             if hasattr(cls, "valid_hyperparams") else doc(cls))
    else:
        raise WorkbenchError(f"cannot list {what!r}\n  fix: workbench list tasks|sims|rewards|learners")


# ----------------------------------------------------------------------------- entry point


def main() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    app()


if __name__ == "__main__":
    main()
