"""The ``workbench`` command line: the outer shell over the core and the leaves.

run, eval, validate and list; ``workbench data ...`` (collect, list, show: Minari datasets);
``workbench reward ...`` (check, synth with the Eureka search and sketch mode, automc, refine,
perceptual) with the console views of those loops; ``workbench llm ...`` (the embedded LLM server).
This is the one module of ``workbench/`` that may import the leaves (``reward_synthesis``,
``policies``): the reward layer itself prints nothing, its loops report through callbacks shown
here. User mistakes (:class:`WorkbenchError`) print one message and exit 2 without a traceback
(:mod:`workbench.cli_errors`); ``--debug`` shows the traceback too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from workbench.cli_errors import err, out, settings, user_errors
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import numpy as np

    from reward_synthesis.language.auto_mc import AutoMCResult, RoundRecord
    from reward_synthesis.language.eureka import Candidate, EurekaResult
    from reward_synthesis.llm import LLMClient
    from reward_synthesis.pixels.perceptual import PerceptualModel
    from reward_synthesis.safety.checks import Preference
    from workbench.executor import Executor
    from workbench.pipeline import TrainFn
    from workbench.spec import TaskSpec
    from workbench.state import State
    from workbench.task import Task

__all__ = ["app", "main", "reward_app", "llm_app"]


# ============================================================================= workbench llm

llm_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                      help="The local LLM server (llama.cpp + an embedded model, Gemma 3 270M by default).")


@llm_app.command()
@user_errors
def serve(port: Annotated[Optional[int], typer.Option("--port", min=1, max=65535,
                                                      help="port on 127.0.0.1 (default: a free one)")] = None) -> None:
    """Start the local LLM server in the background (or reuse the running one); print its URL."""
    from reward_synthesis.llm.server import server_status, start_server

    before = server_status()
    url = start_server(port)
    status = server_status() or {}
    verb = "running" if before and before.get("pid") == status.get("pid") else "started"
    typer.echo(url)
    typer.echo(f"{verb}: pid {status.get('pid')}, model {status.get('model')}, log {status.get('log')}", err=True)


@llm_app.command()
@user_errors
def status() -> None:
    """Say whether the local LLM server runs, and where."""
    from reward_synthesis.llm.server import server_status

    state = server_status()
    if state is None:
        typer.echo("not running (start it with `workbench llm serve`)")
        return
    started = state.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    health = "" if state.get("healthy") else " (not answering yet)"
    typer.echo(f"running{health}: {state['url']}\n  pid: {state['pid']}\n  model: {state.get('model')} "
               f"({state.get('model_path')})\n  since: {since}\n  log: {state.get('log')}")


@llm_app.command()
@user_errors
def stop() -> None:
    """Stop the local LLM server."""
    from reward_synthesis.llm.server import server_status, stop_server

    state = server_status()
    if stop_server():
        typer.echo(f"stopped (pid {state['pid'] if state else '?'})")
    else:
        typer.echo("no local LLM server running")


# ============================================================================= workbench reward

reward_app = typer.Typer(no_args_is_help=True, help="Reward programs: sandbox and pre-flight checks.")


# ----------------------------------------------------------------------------- reward check


@reward_app.command("check")
@user_errors
def reward_check(
    program: Annotated[Path, typer.Argument(help="reward program .py defining compute_reward(state, action)")],
    task_file: Annotated[Path, typer.Option("--task", help="task whose states the program is checked on")],
    samples: Annotated[int, typer.Option(help="states sampled from the task")] = 256,
) -> None:
    """Sandbox + pre-flight checks on a reward program: exit 0 accepted, 1 rejected."""
    from reward_synthesis.safety.checks import check_inputs, preflight
    from workbench.spec import load_task
    from workbench.task import Task

    if not program.is_file():
        raise WorkbenchError(f"{program}: no such reward program\n  fix: pass a .py file")
    from workbench.reward import BuiltReward

    spec = load_task(task_file)
    task = Task.build(spec, reward=BuiltReward(None, "checked separately"))
    env = task.make_env()
    try:
        states, preference = check_inputs(env, task.profile, n=samples)
    finally:
        env.close()
    report = preflight(program.read_text(encoding="utf-8", errors="replace"), states, program=str(program),
                       preference=preference)
    out.print(report.render(), markup=False, highlight=False)
    if report.accepted:
        out.print(f"[bold green]accepted[/] {program}")
        return
    out.print(f"[bold red]rejected[/] {program}")
    raise typer.Exit(1)


@reward_app.command("synth")
@user_errors
def reward_synth(
    task_file: Annotated[Path, typer.Option("--task", help="task whose StateView and success metric the LLM is shown")],
    goal: Annotated[Optional[str], typer.Option(help="the goal in words [the task's goal]")] = None,
    llm_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible base URL [embedded local server]")] = None,
    model: Annotated[Optional[str], typer.Option(help="model name at that endpoint")] = None,
    attempts: Annotated[int, typer.Option(help="replies to try (each failure is sent back for repair); "
                                              "Eureka uses at most 2 per candidate")] = 4,
    temperature: Annotated[Optional[float], typer.Option(help="sampling temperature "
                                                              "[0.7, or the llm config's]")] = None,
    few_shot: Annotated[int, typer.Option(help="examples retrieved from the reward library (0 = zero-shot)")] = 0,
    candidates: Annotated[int, typer.Option(help="Eureka: programs per round (>1 turns the search on)")] = 1,
    rounds: Annotated[int, typer.Option(help="Eureka: rounds of reward reflection")] = 1,
    workers: Annotated[int, typer.Option(help="Eureka: trainings at once")] = 1,
    executor: Annotated[str, typer.Option(help="Eureka: where trainings run: local (processes) or ray (Ray tasks "
                                               "on $RAY_ADDRESS's cluster, else a local Ray runtime)")] = "local",
    proxy_steps: Annotated[int, typer.Option(help="Eureka: training steps per candidate and seed")] = 32_768,
    seeds: Annotated[int, typer.Option(help="Eureka: training seeds per candidate (winner on the mean)")] = 2,
    reweigh: Annotated[Optional[list[float]], typer.Option(
        help="Eureka, mode sketch: a weight factor (repeat it: --reweigh 0.1 --reweigh 10); each round after "
             "the first also trains the best sketch with one term's weight times each factor")] = None,
    samples: Annotated[int, typer.Option(help="states sampled from the task for the checks")] = 256,
    seed: Annotated[int, typer.Option(help="request seed of the first attempt")] = 0,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="output directory "
                                                                  "[runs/synth/<task>__<time>]")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="replay cached replies only; never call the LLM")] = False,
    timeout: Annotated[Optional[float], typer.Option(help="seconds one LLM request may take before it is "
                                                          "abandoned (and retried) [600]", min=0.001)] = None,
    mode: Annotated[str, typer.Option(help="code: free Python; sketch: a typed reward sketch under the task's "
                                           "JSON schema, compiled (writes sketch.json beside program.py); auto: "
                                           "sketch for the embedded model, code for an endpoint or with the "
                                           "search options")] = "auto",
) -> None:
    """Turn a goal in words into a checked reward program (Text2Reward): exit 0 accepted, 1 none accepted,
    2 the LLM failed (synthesis.json and the transcript say why)."""
    import time as _time

    from reward_synthesis.language.library import RewardLibrary
    from reward_synthesis.language.sketch_synthesis import SketchSynthesis, synthesize_sketch
    from reward_synthesis.language.text2reward import SynthesisResult, synthesize
    from reward_synthesis.llm.sources import failure_text, make_client, resolve_mode
    from reward_synthesis.safety.checks import check_inputs
    from workbench.reward import BuiltReward
    from workbench.runs import atomic_write, default_runs_root, write_json
    from workbench.spec import load_task
    from workbench.task import Task

    if mode not in ("code", "sketch", "auto"):
        raise WorkbenchError(f"--mode {mode!r}: give code, sketch or auto")
    if mode == "auto":  # few-shot retrieval is over code
        mode = "code" if few_shot else resolve_mode("auto", {"base_url": llm_url} if llm_url else {})
    if mode == "sketch" and few_shot:
        raise WorkbenchError("--few-shot retrieves reward programs as examples: it is for --mode code\n"
                             "  fix: leave out --few-shot, or pass --mode code")
    if reweigh and (mode != "sketch" or rounds < 2 or any(not 0 < f < float("inf") or f == 1 for f in reweigh)):
        raise WorkbenchError(f"--reweigh {' '.join(map(str, reweigh))}: it scales a term's weight in the sketch "
                             "search's later rounds\n  fix: give positive factors other than 1, with --mode "
                             "sketch and --rounds 2 or more")
    spec = load_task(task_file)
    goal = goal or spec.goal
    if not goal:
        raise WorkbenchError(f"{task_file}: no goal to synthesize from\n"
                             "  fix: pass --goal \"...\" or set `goal:` in the task")
    task = Task.build(spec, reward=BuiltReward(None, "synthesizing"))
    out_dir = out_dir or default_runs_root() / "synth" / f"{spec.name}__{_time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = task.make_env()
    try:
        states, preference = check_inputs(env, task.profile, n=samples)
    finally:
        env.close()
    llm: dict[str, Any] = {k: v for k, v in {"base_url": llm_url, "model": model, "temperature": temperature,
                                              "timeout_s": timeout}.items() if v is not None}
    client = make_client(llm, transcript=out_dir / "llm" / "transcript.jsonl", offline=offline)
    out_attempts = out_dir / "attempts"

    def show(attempt: Any) -> None:
        if attempt.code is not None:
            atomic_write(out_attempts / f"attempt_{attempt.index}.py", attempt.code)
        atomic_write(out_attempts / f"attempt_{attempt.index}.reply.txt", attempt.reply)
        if getattr(attempt, "sketch", None) is not None:
            write_json(out_attempts / f"attempt_{attempt.index}.sketch.json", attempt.sketch)
        verdict = "[green]accepted[/]" if attempt.accepted else "[red]rejected[/]"
        cached = " (cached)" if attempt.cached else ""
        out.print(f"attempt {attempt.index + 1}/{attempts}: {verdict} in {attempt.latency_s:.1f}s{cached}")
        if attempt.reason:
            out.print("  " + attempt.reason.replace("\n", "\n  "), markup=False, highlight=False)

    partial: SynthesisResult | SketchSynthesis = (
        SketchSynthesis(goal=goal) if mode == "sketch" else SynthesisResult(goal=goal))

    def keep(e: BaseException) -> None:  # the LLM failed or the user interrupted: nothing is lost
        partial.error = partial.error or failure_text(e)
        write_json(out_dir / "synthesis.json", partial.to_dict())
        err.print(f"the synthesis stopped; what it had (synthesis.json, attempts/, llm/transcript.jsonl) "
                  f"is in {out_dir}", highlight=False)

    try:
        err.print(f"asking {client.endpoint} ({client.model}) for a reward for: {goal}", highlight=False)
    except (WorkbenchError, KeyboardInterrupt) as e:
        keep(e)
        raise
    library = RewardLibrary()
    if candidates > 1 or rounds > 1:
        from workbench.pipeline import train_and_evaluate

        with _training_executor(executor, workers) as where:
            found = run_search_cli(task, goal, client, states, train=train_and_evaluate, candidates=candidates,
                                   rounds=rounds, workers=workers, proxy_steps=proxy_steps, out_dir=out_dir,
                                   console=out, seeds=seeds, seed=seed, attempts=min(attempts, 2),
                                   preference=preference, mode=mode, executor=where, reweigh=reweigh or ())
        if found.winner is None:
            raise typer.Exit(1)
        library.add(goal, spec.sim.env_id, found.winner.code)
        return
    examples = [(e.goal, e.code) for _, e in library.most_similar(goal, few_shot)]
    for goal_of_example, _ in examples:
        err.print(f"few-shot example: {goal_of_example}", highlight=False)
    result: SynthesisResult | SketchSynthesis
    try:
        if isinstance(partial, SketchSynthesis):
            result = synthesize_sketch(task, goal, client, states, attempts=attempts, seed=seed, on_attempt=show,
                                       preference=preference, result=partial)
        else:
            result = synthesize(task, goal, client, states, attempts=attempts, seed=seed, on_attempt=show,
                                preference=preference, examples=examples, result=partial)
    except (WorkbenchError, KeyboardInterrupt) as e:
        keep(e)
        raise
    finally:
        client.close()
    write_json(out_dir / "synthesis.json", result.to_dict())
    if result.accepted is None:
        out.print(f"[bold red]no program accepted[/] after {attempts} attempts; details in {out_dir}")
        raise typer.Exit(1)
    if isinstance(result, SketchSynthesis):
        write_json(out_dir / "sketch.json", result.sketch)
    atomic_write(out_dir / "program.py", result.code)
    write_json(out_dir / "check.json", result.accepted.report)
    library.add(goal, spec.sim.env_id, result.code)
    out.print(f"[bold green]accepted[/] {out_dir / 'program.py'}")


@reward_app.command("automc")
@user_errors
def reward_automc(
    task_file: Annotated[Path, typer.Option("--task", help="task whose StateView and success metric the LLM is shown")],
    goal: Annotated[Optional[str], typer.Option(help="the goal in words [the task's goal]")] = None,
    llm_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible base URL [embedded local server]")] = None,
    model: Annotated[Optional[str], typer.Option(help="model name at that endpoint")] = None,
    rounds: Annotated[int, typer.Option(help="design -> train -> analyse rounds")] = 2,
    critic_rounds: Annotated[int, typer.Option(help="critic reviews per design")] = 2,
    attempts: Annotated[int, typer.Option(help="sandbox/pre-flight repairs per round")] = 3,
    proxy_steps: Annotated[int, typer.Option(help="training steps per round's program")] = 20_000,
    seeds: Annotated[int, typer.Option(help="training seeds per round")] = 1,
    workers: Annotated[int, typer.Option(help="trainings at once")] = 1,
    executor: Annotated[str, typer.Option(help="where trainings run: local (processes) or ray (Ray tasks on "
                                               "$RAY_ADDRESS's cluster, else a local Ray runtime)")] = "local",
    eval_episodes: Annotated[int, typer.Option(help="episodes scoring each trained program")] = 10,
    trajectories: Annotated[int, typer.Option(help="episodes watched for the trajectory analyzer")] = 10,
    target_field: Annotated[Optional[str], typer.Option(help="StateView field: distance to the target "
                                                             "(e.g. nearest_tree_dist)")] = None,
    samples: Annotated[int, typer.Option(help="states sampled from the task for the checks")] = 256,
    seed: Annotated[int, typer.Option(help="request seed of the first design")] = 0,
    initial: Annotated[Optional[Path], typer.Option(help="a program to start from "
                                                         "(round 1 trains it as given)")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="output directory "
                                                                  "[runs/synth/<task>__auto_mc__<time>]")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="replay cached replies only; never call the LLM")] = False,
    timeout: Annotated[Optional[float], typer.Option(help="seconds one LLM request may take before it is "
                                                          "abandoned (and retried) [600]", min=0.001)] = None,
    mode: Annotated[str, typer.Option(help="code: the designer writes Python; sketch: typed reward sketches "
                                           "under the task's JSON schema, compiled; auto: sketch for the "
                                           "embedded model, code for an endpoint")] = "auto",
) -> None:
    """Auto MC-Reward: LLM designer, critic and trajectory analyzer; exit 0 with a winner, 1 without."""
    from reward_synthesis.llm.sources import resolve_mode
    from workbench.pipeline import train_and_evaluate

    if mode not in ("code", "sketch", "auto"):
        raise WorkbenchError(f"--mode {mode!r}: give code, sketch or auto")
    llm: dict[str, Any] = {k: v for k, v in {"base_url": llm_url, "model": model,
                                              "timeout_s": timeout}.items() if v is not None}
    mode = resolve_mode(mode, llm)  # type: ignore[arg-type]
    with _training_executor(executor, workers) as where:
        result = run_automc_cli(task_file, train=train_and_evaluate, goal=goal, llm=llm, out_dir=out_dir,
                                rounds=rounds, critic_rounds=critic_rounds, attempts=attempts, proxy_steps=proxy_steps,
                                seeds=seeds, workers=workers, eval_episodes=eval_episodes, trajectories=trajectories,
                                target_field=target_field, samples=samples, seed=seed, offline=offline, console=out,
                                status=err, initial=initial, mode=mode, executor=where)
    if result.winner is None:
        raise typer.Exit(1)


@reward_app.command("refine")
@user_errors
def reward_refine(
    run_dir: Annotated[Path, typer.Argument(help="a run whose reward program to improve")],
    feedback: Annotated[str, typer.Option(help="what you saw the policy do wrong, in words")],
    llm_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible base URL [embedded local server]")] = None,
    model: Annotated[Optional[str], typer.Option(help="model name at that endpoint")] = None,
    attempts: Annotated[int, typer.Option(help="replies to try")] = 4,
    seed: Annotated[int, typer.Option(help="request seed of the first attempt")] = 0,
    offline: Annotated[bool, typer.Option("--offline", help="replay cached replies only")] = False,
    timeout: Annotated[Optional[float], typer.Option(help="seconds one LLM request may take before it is "
                                                          "abandoned (and retried) [600]", min=0.001)] = None,
) -> None:
    """Human feedback -> the next version of a run's reward program (reward/program_vN.py)."""
    import json

    from reward_synthesis.language.text2reward import SynthesisResult, refine_messages, synthesize
    from reward_synthesis.llm.sources import failure_text, make_client
    from reward_synthesis.safety.checks import check_inputs
    from workbench.pipeline import open_run_task
    from workbench.runs import atomic_write, write_json

    run, task = open_run_task(run_dir)
    reward_dir = run.path / "reward"
    versions = sorted(reward_dir.glob("program_v*.py"), key=lambda p: int(p.stem.removeprefix("program_v")))
    latest = versions[-1] if versions else reward_dir / "program.py"
    if not latest.is_file():
        raise WorkbenchError(f"{run.path}: trained on the env's own reward; there is no program to refine\n"
                             f"  fix: synthesize one first: workbench reward synth --task {run.path / 'task.yaml'}")
    history_file = reward_dir / "feedback.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    history.append(feedback)
    record = json.loads((reward_dir / "reward.json").read_text()) if (reward_dir / "reward.json").is_file() else {}
    goal = record.get("goal") or task.spec.goal or "the task's goal"
    env = task.make_env()
    try:
        states, preference = check_inputs(env, task.profile)
    finally:
        env.close()
    llm: dict[str, Any] = {k: v for k, v in {"base_url": llm_url, "model": model, "timeout_s": timeout}.items() if v}
    client = make_client(llm, transcript=run.path / "llm" / "transcript.jsonl", offline=offline)
    messages = refine_messages(task, goal, latest.read_text(), history)
    version = len(versions) + 2
    result = SynthesisResult(goal=goal)
    try:
        synthesize(task, goal, client, states, attempts=attempts, seed=seed, messages=messages,
                   preference=preference, result=result)
    except (WorkbenchError, KeyboardInterrupt) as e:  # keep what there is: the transcript is in the run
        result.error = result.error or failure_text(e)
        write_json(reward_dir / f"refine_v{version}.json", {"feedback": history, **result.to_dict()})
        raise
    finally:
        client.close()
    write_json(reward_dir / f"refine_v{version}.json", {"feedback": history, **result.to_dict()})
    if result.accepted is None:
        out.print(f"[bold red]no program accepted[/] after {attempts} attempts; "
                  f"see {reward_dir}/refine_v{version}.json")
        raise typer.Exit(1)
    target = reward_dir / f"program_v{version}.py"
    atomic_write(target, result.code)
    write_json(history_file, history)
    out.print(f"[bold green]accepted[/] {target}")
    out.print(f"train with it: workbench run {run.path / 'task.yaml'} "
              f"--set 'reward={{source: code, path: {target.resolve()}}}'")


@reward_app.command("perceptual")
@user_errors
def reward_perceptual(
    task_file: Annotated[Path, typer.Option("--task", help="task whose camera the demos show")],
    demos: Annotated[Path, typer.Option(help="directory of demos: .mp4/.gif/.npz, one file per demo")],
    steps: Annotated[int, typer.Option(help="steps to discover in every demo (k >= 2)")],
    record: Annotated[Optional[int], typer.Option(help="first record N demos with the task's reference policy")] = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="model file (default: the task's reward.file, "
                                                                   "else rewards/<task>_perceptual.json "
                                                                   "beside it)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override: key.path=value")] = None,
    model: Annotated[Optional[str], typer.Option(help="open_clip model (default: the task's reward.model, "
                                                      "else ViT-B-32)")] = None,
    pretrained: Annotated[Optional[str], typer.Option(help="weights tag or file; 'none' = random weights "
                                                           "(default: the task's reward.pretrained, "
                                                           "else laion2b_s34b_b79k)")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda:N (default: the task's reward.device, "
                                                       "else auto)")] = None,
    features: Annotated[int, typer.Option(help="embedding features kept per step")] = 32,
    seed: Annotated[int, typer.Option(help="reset seed of the first recorded demo")] = 0,
    demo_format: Annotated[str, typer.Option(help="recorded demos as mp4 (viewable) or npz (lossless)")] = "mp4",
) -> None:
    """Learn a perceptual reward from demos (Sermanet et al. 2016): discover steps, pick features, write the model."""

    learn_perceptual(task_file, demos, steps, record=record, out_file=out_file, overrides=list(set_ or []), model=model,
              pretrained=pretrained, device=device, features_per_step=features, seed=seed, demo_format=demo_format,
              console=out, status=err)


# ----------------------------------------------------------------------------- the loops' console views


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _candidate_line(c: Candidate) -> Text:
    from reward_synthesis.language.eureka import ACCEPTED, DUPLICATE, FAILED, TRAINED

    text = Text(f"{c.label}  ")
    text.append(c.sha256[:12] if c.sha256 else "-" * 12, style="dim")
    text.append("  ")
    if c.checks != ACCEPTED:
        text.append(c.checks, style="red")
        if c.reason:
            text.append(f": {c.reason}")
        return text
    if c.status == TRAINED:
        seeds = ", ".join(_fmt(s, ".2f") for s in c.success_per_seed)
        text.append(f"success {_fmt(c.success_mean, '.2f')}", style="bold green")
        text.append(f" (seeds {seeds})  env return {_fmt(c.mean_env_return, '.2f')}  {c.train_seconds:.0f}s training")
    elif c.status == FAILED:
        text.append("failed in training", style="red")
        text.append(f": {c.error.splitlines()[0] if c.error else '?'}")
    elif c.status == DUPLICATE:
        text.append("accepted, not trained", style="yellow")
        text.append(f": {c.error}")
    else:
        text.append(c.status, style="yellow")
    return text


@contextlib.contextmanager
def _training_executor(kind: str, workers: int) -> Iterator[Executor | None]:
    """``--executor``: None for local (the search makes its own pool of ``workers``), or a Ray
    executor (``workers`` trainings at once) that this command closes."""
    from workbench.executor import RayOptions, make_executor

    if kind not in ("local", "ray"):
        raise WorkbenchError(f"--executor {kind!r}: give local or ray")
    if kind == "local":
        yield None
        return
    with make_executor("ray", workers, RayOptions()) as executor:
        yield executor


def run_search_cli(task: Task, goal: str, client: LLMClient, samples: Sequence[tuple[State, np.ndarray]], *,
                   train: TrainFn, candidates: int, rounds: int, workers: int, proxy_steps: int, out_dir: Path,
                   console: Console, seeds: int = 2, seed: int = 0, attempts: int = 2,
                   preference: Preference | None = None, mode: str = "code",
                   executor: Executor | None = None, reweigh: Sequence[float] = ()) -> EurekaResult:
    """:func:`~reward_synthesis.language.eureka.search` with one console line per candidate as it finishes
    and a closing summary. ``result.exit_code`` is 0 with a winner (``out_dir/program.py``), 1 without."""
    from reward_synthesis.language.eureka import search

    kind = "sketches" if mode == "sketch" else "programs"
    console.print(Text(f"Eureka ({kind}): {rounds} round(s) x {candidates} candidate(s), {seeds} seed(s) x "
                       f"{proxy_steps:,} proxy steps each, {workers} worker(s); writing {out_dir}"), soft_wrap=True)
    def on_event(kind: str, c: Candidate) -> None:
        if kind == "finished":
            console.print(_candidate_line(c), soft_wrap=True)

    result = search(task, goal, client, samples, train=train, candidates=candidates, rounds=rounds, workers=workers,
                    proxy_steps=proxy_steps, seeds=seeds, out_dir=out_dir, seed=seed, attempts=attempts,
                    preference=preference, on_event=on_event, mode=mode, executor=executor, reweigh=reweigh)
    console.print(Text(result.summary(), style="bold green" if result.winner is not None else "bold red"),
                  soft_wrap=True)
    return result


def run_automc_cli(task_file: Path, *, train: TrainFn, goal: str | None, llm: dict[str, Any], out_dir: Path | None,
                   rounds: int, critic_rounds: int, attempts: int, proxy_steps: int, seeds: int, workers: int,
                   eval_episodes: int, trajectories: int, target_field: str | None, samples: int, seed: int,
                   offline: bool, console: Any, status: Any, initial: Path | None = None,
                   mode: str = "code", executor: Executor | None = None) -> AutoMCResult:
    """``workbench reward automc``: the loop with a line per design and per round on the console
    (``mode``: ``code`` or ``sketch``, resolved already)."""
    import time

    from reward_synthesis.llm.sources import make_client
    from reward_synthesis.safety.checks import check_inputs
    from workbench.reward import BuiltReward
    from workbench.runs import default_runs_root
    from workbench.spec import load_task
    from workbench.task import Task

    spec = load_task(task_file)
    goal = goal or spec.goal
    if not goal:
        raise WorkbenchError(f"{task_file}: no goal to design a reward for\n"
                             "  fix: pass --goal \"...\" or set `goal:` in the task")
    task = Task.build(spec, reward=BuiltReward(None, "designing"))
    if target_field is not None and target_field not in task.profile.schema.names:
        raise WorkbenchError(f"--target-field {target_field!r}: no such StateView field in {spec.sim.env_id}\n"
                             f"  fix: one of {', '.join(task.profile.schema.names)}")
    out_dir = out_dir or default_runs_root() / "synth" / f"{spec.name}__auto_mc__{time.strftime('%Y%m%d-%H%M%S')}"
    env = task.make_env()
    try:
        states, preference = check_inputs(env, task.profile, n=samples)
    finally:
        env.close()
    if initial is not None and not initial.is_file():
        raise WorkbenchError(f"--initial {initial}: no such file\n  fix: give a compute_reward(state, action) program")
    client = make_client(llm, transcript=out_dir / "llm" / "transcript.jsonl", offline=offline)
    try:
        return _automc_cli_loop(task, goal, client, states, train=train, out_dir=out_dir, rounds=rounds,
                                critic_rounds=critic_rounds, attempts=attempts, proxy_steps=proxy_steps, seeds=seeds,
                                workers=workers, eval_episodes=eval_episodes, trajectories=trajectories,
                                target_field=target_field, seed=seed, preference=preference, console=console,
                                status=status, initial=initial, mode=mode, executor=executor)
    except (WorkbenchError, KeyboardInterrupt):
        status.print(f"the search stopped; what it had (summary.json, round_*/, llm/transcript.jsonl) is in "
                     f"{out_dir}", highlight=False)
        raise
    finally:
        client.close()


def _automc_cli_loop(task: Task, goal: str, client: LLMClient, states: Any, *, train: TrainFn, out_dir: Path,
                     rounds: int,
                     critic_rounds: int, attempts: int, proxy_steps: int, seeds: int, workers: int,
                     eval_episodes: int, trajectories: int, target_field: str | None, seed: int,
                     preference: Any, console: Any, status: Any, initial: Path | None,
                     mode: str = "code", executor: Executor | None = None) -> AutoMCResult:
    from reward_synthesis.language.auto_mc import auto_mc_search

    status.print(f"Auto MC-Reward ({mode}) with {client.endpoint} ({client.model}) for: {goal}", highlight=False)

    def on_event(kind: str, r: RoundRecord) -> None:
        if kind == "designed":
            for d in r.designs:
                verdict = f" critic {d['verdict']}" if "verdict" in d else ""
                console.print(f"round {r.round + 1}: design {d['k'] + 1}{verdict} checks {d.get('checks', '-')}",
                              highlight=False)
            if r.code is None:
                console.print(f"round {r.round + 1}: [red]no accepted program[/] — {r.reason}", highlight=False)
        else:
            if r.code is not None:
                rate = "n/a" if r.success is None else f"{r.success:.2f}"
                console.print(f"round {r.round + 1}: trained {proxy_steps} steps, success {rate}"
                              + (f" [red]{r.train_error}[/]" if r.train_error else ""), highlight=False)

    result = auto_mc_search(task, goal, client, states, train=train, out_dir=out_dir, rounds=rounds,
                            critic_rounds=critic_rounds,
                            attempts=attempts, proxy_steps=proxy_steps, seeds=seeds, workers=workers,
                            eval_episodes=eval_episodes, trajectories=trajectories, target_field=target_field,
                            seed=seed, preference=preference, on_event=on_event, mode=mode, executor=executor,
                            initial=initial.read_text(encoding="utf-8", errors="replace") if initial else None)
    winner = result.winner
    if winner is None:
        console.print(f"[bold red]no round produced an accepted program[/]; "
                      f"designs, critiques and analyses in {out_dir}")
    else:
        sketch = f" (from {out_dir / 'sketch.json'})" if winner.sketch is not None else ""
        console.print(f"[bold green]winner[/] round {winner.round + 1}: {out_dir / 'program.py'}{sketch}")
    return result


def _progress(console: Console | None) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True,
                    disable=console is None or not console.is_terminal)


def learn_perceptual(task_file: Path, demos: Path, k: int, *, record: int | None = None, out_file: Path | None = None,
                     overrides: Sequence[str] = (), model: str | None = None, pretrained: str | None = None,
                     device: str | None = None, features_per_step: int = 32, min_frames: int = 2, seed: int = 0,
                     demo_format: str = "mp4", console: Console, status: Console) -> PerceptualModel:
    """``workbench reward perceptual``: record demos if asked, embed them, learn, write the model."""
    from reward_synthesis.pixels.perceptual import learn as learn_model
    from reward_synthesis.pixels.perceptual import learning_model_file, read_demos, record_demos
    from workbench.spec import load_task

    if k < 2:
        raise WorkbenchError(f"--steps {k}: a perceptual reward needs at least 2 steps\n  fix: --steps 3")
    if record is not None and record < 1:
        raise WorkbenchError(f"--record {record}: record at least one demo\n  fix: --record 10")
    if features_per_step < 1:
        raise WorkbenchError(f"--features {features_per_step}: keep at least one feature per step\n"
                             "  fix: --features 32")
    if device is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise WorkbenchError(f"--device {device!r}\n  fix: auto, cpu, cuda or cuda:N")
    if demo_format not in ("mp4", "npz"):
        raise WorkbenchError(f"--demo-format {demo_format!r}\n  fix: mp4 (viewable) or npz (lossless)")
    with learning_model_file():
        spec = load_task(task_file, list(overrides))
    model, pretrained, device, out = _backbone_and_output(spec, model, pretrained, device, out_file)

    if not record:  # a bad demo directory fails before the backbone loads
        videos = read_demos(demos, k, min_frames)

    from reward_synthesis.pixels.vlm import load_backbone

    # The backbone loads before any recording: importing torchvision's ops (-> triton) after MuJoCo
    # has made an EGL context segfaults (two LLVMs in one process); the other order is fine.
    backbone = load_backbone(model, pretrained, device=device, base_dir=spec.base_dir, file=str(task_file))
    if record:
        with _progress(status) as bar:
            job = bar.add_task(f"recording demos with {spec.sim.env_id}'s reference policy", total=record)
            record_demos(spec, record, demos, seed=seed, fmt=demo_format,
                         on_episode=lambda i: bar.update(job, completed=i))
        videos = read_demos(demos, k, min_frames)
    with _progress(status) as bar:
        job = bar.add_task(f"embedding frames with {model}", total=sum(len(v) for _, v in videos))
        learned = learn_model(videos, k, backbone, model=model, features_per_step=features_per_step,
                              min_frames=min_frames, on_embedded=lambda n: bar.advance(job, n))
    learned.save(out)

    for d in learned.demos:
        console.print(f"{d.name}: {d.frames} frames, steps start at {[0, *d.boundaries]}", highlight=False)
    by_step = " → ".join(f"{v:.2f}" for v in learned.fit_info["total_by_step"])
    weights = "RANDOM weights" if pretrained is None else pretrained
    console.print(f"wrote {out}: {k} steps from {len(videos)} demos ({sum(d.frames for d in learned.demos)} frames), "
                  f"{learned.params['features_per_step']} features per step, {model} ({weights}); "
                  f"mean reward per step on the demos: {by_step}", highlight=False)
    return learned


def _backbone_and_output(spec: TaskSpec, model: str | None, pretrained: str | None, device: str | None,
                         out_file: Path | None) -> tuple[str, str | None, str, Path]:
    """The task's own backbone and model file if its reward is perceptual (the CLI may not contradict
    them: the task would refuse the file), else the CLI's choice and ``rewards/<task>_perceptual.json``.
    ``pretrained``: None = not given; "none"/"null" = random weights."""
    from reward_synthesis.pixels.perceptual import DEFAULT_MODEL, DEFAULT_PRETRAINED, PerceptualSource

    weights = None if pretrained is None or pretrained.lower() in ("none", "null") else pretrained
    if spec.reward.source == PerceptualSource.name:
        opts = PerceptualSource.Options.model_validate(spec.reward.options)
        for flag, raw, given, own in (("--model", model, model, opts.model),
                                      ("--pretrained", pretrained, weights, opts.pretrained)):
            if raw is not None and given != own:
                raise WorkbenchError(f"{flag} {raw} contradicts the task's reward.{flag[2:]}: {own}\n"
                                     f"  fix: drop {flag} (the task's backbone is used), or change the task")
        return (opts.model, opts.pretrained, device or opts.device,
                out_file or PerceptualSource.model_path(spec, opts))
    return (model or DEFAULT_MODEL, DEFAULT_PRETRAINED if pretrained is None else weights, device or "auto",
            out_file or spec.base_dir / "rewards" / f"{spec.name}_perceptual.json")


# ============================================================================= workbench

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
    from workbench.report import write_report

    out.print(f"[bold green]done[/] {result.run.path} (report: {write_report(result.run.path)})")
    out.print(result.evaluation.summary())


# ----------------------------------------------------------------------------- sweep


@app.command()
@user_errors
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="sweep YAML (sweeps/reacher_rewards.yaml)")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="base task override: key.path=value")] = None,
    executor: Annotated[Optional[str], typer.Option(help="local (a process pool) or ray (Ray tasks; the file's "
                                                        "ray: keys) [the file's executor]")] = None,
    jobs: Annotated[Optional[int], typer.Option(help="trials at once [the file's jobs]")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="sweep directory [runs/sweeps/NAME]")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no line per trial")] = False,
) -> None:
    """Run a sweep: every method (axis values) at every seed, each trial a run directory; prints and
    writes mean and IQM with 95% bootstrap intervals over seeds. Run it again to finish a killed one."""
    from rich.table import Table

    from workbench.runs import default_runs_root
    from workbench.sweep import load_sweep, run_sweep

    spec = load_sweep(sweep_file, executor=executor, jobs=jobs)
    directory = out_dir or default_runs_root() / "sweeps" / spec.name

    from workbench.sweep import SWEEP_FILE, plan_trials

    def heard(row: dict) -> None:
        bar.advance(progress)
        if not quiet:
            score = "-" if row.get("score") is None else f"{row['score']:.3f}"
            task = f"{row['task']} " if len(spec.task_files()) > 1 else ""
            out.print(f"  {row['id']} {task}{row['method']} seed {row['seed']}: {row['status']} {spec.metric} {score}"
                      + (f" ({row['error']})" if row.get("error") else ""))

    trials = spec.search.samples * len(spec.seeds) if spec.search else len(plan_trials(spec, list(set_ or [])))
    record = directory / SWEEP_FILE  # a rerun keeps the finished trials: the bar starts past them
    kept = sum(r.get("status") == "finished" for r in json.loads(record.read_text()).get("results", [])) \
        if record.is_file() and not spec.search else 0
    with _progress(None if quiet else out) as bar:
        progress = bar.add_task(f"{spec.name} trials", total=trials, completed=kept)
        result = run_sweep(spec, sweep_file, directory, extra=list(set_ or []), on_trial=heard)
    several = len(spec.task_files()) > 1
    table = Table(title=f"{spec.name}: {spec.metric} over seeds (95% bootstrap CI"
                  + ("; all tasks: stratified)" if several else ")"))
    for col in (["task"] if several else []) + ["method", "seeds", "mean [CI]", "IQM [CI]"]:
        table.add_column(col)
    for entry in result.summary:
        cells = [f"{entry[k]:.3f} [{entry[k + '_low']:.3f}, {entry[k + '_high']:.3f}]" if k in entry else "-"
                 for k in ("mean", "iqm")]
        table.add_row(*([entry.get("task", "")] if several else []), entry["method"], str(entry["seeds"]), *cells)
    out.print(table)
    if result.best is not None:
        out.print(f"[bold]best[/] {result.best['method']}", highlight=False)
    failed = [r["id"] for r in result.trials if r["status"] == "failed"]
    from workbench.report import write_report

    out.print(f"[bold green]done[/] {directory} (report: {write_report(directory)})"
              + (f" ([bold red]failed[/]: {', '.join(failed)})" if failed else ""))
    if failed:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- report


@app.command()
@user_errors
def report(
    directory: Annotated[Path, typer.Argument(help="a run directory (workbench run) or a sweep directory "
                                                   "(workbench sweep)")],
) -> None:
    """Write DIRECTORY/report.html: one self-contained page (task, reward, curves, evaluation, per-term
    statistics, videos; for a sweep the comparison, its plot and every trial's page)."""
    from workbench.report import write_report

    out.print(f"[bold green]wrote[/] {write_report(directory)}")


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


# ----------------------------------------------------------------------------- data

data_app = typer.Typer(no_args_is_help=True, help="Offline datasets (Minari): collect | list | show.")
app.add_typer(data_app, name="data")


@data_app.command("collect")
@user_errors
def data_collect(
    task_file: Annotated[Path, typer.Argument(help="task YAML whose env the data is recorded in")],
    policy: Annotated[str, typer.Option(help="random | reference (the env's scripted policy) | RUN_DIR (its final "
                                       "model)")],
    out_name: Annotated[str, typer.Option("--out", help="dataset id, e.g. halfcheetah-medium-v0")],
    episodes: Annotated[int, typer.Option(min=1, help="episodes to record")] = 100,
    seed: Annotated[int, typer.Option(min=0, help="episode i resets with seed + i")] = 0,
    checkpoint: Annotated[bool, typer.Option("--checkpoint", help="the run's latest checkpoint, not its final "
                                             "model (a medium policy from a run stopped early)")] = False,
    replay_buffer: Annotated[bool, typer.Option("--replay-buffer", help="the replay buffer of the run's latest "
                                                "checkpoint instead of new episodes (medium-replay)")] = False,
    expert: Annotated[Optional[str], typer.Option(help="RUN_DIR (its final model) or reference: the expert "
                                                  "reference score [the --policy run or reference]")] = None,
    noise: Annotated[float, typer.Option(min=0.0, help="Gaussian action noise, x the action range's half-width")] = 0.0,
    stochastic: Annotated[bool, typer.Option("--stochastic", help="sample the policy's actions")] = False,
    reference_episodes: Annotated[int, typer.Option(min=1, help="episodes per reference score")] = 10,
    force: Annotated[bool, typer.Option("--force", help="replace a dataset of that id")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override: key.path=value")] = None,
) -> None:
    """Record a Minari dataset by rolling a policy through a task (or from a run's replay buffer)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from workbench.datasets import collect

    bar = Progress(TextColumn("[bold]collect "), BarColumn(bar_width=20), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=out, disable=replay_buffer)  # a buffer has no episodes to run
    with bar:
        tid = bar.add_task("collect", total=episodes)
        summary = collect(task_file, list(set_ or []), policy=policy, out=out_name, episodes=episodes, seed=seed,
                          checkpoint=checkpoint, replay_buffer=replay_buffer, expert=expert, noise=noise,
                          deterministic=not stochastic, reference_episodes=reference_episodes, overwrite=force,
                          progress=lambda n: bar.update(tid, completed=n))
    _show_dataset(summary)


@data_app.command("list")
@user_errors
def data_list() -> None:
    """The local datasets (MINARI_DATASETS_PATH or ~/.minari/datasets)."""
    from workbench.cli_errors import clean
    from workbench.datasets import list_datasets

    rows = list_datasets()
    if not rows:
        out.print("no local datasets; record one with `workbench data collect TASK.yaml --policy random --out NAME`")
    for row in rows:
        out.print(clean(f"{row['id']}  episodes={row['episodes']}  steps={row['steps']}  task={row['task']}  "
                        f"env={row['env_id']}  policy={row['policy']}"), markup=False, highlight=False)


@data_app.command("show")
@user_errors
def data_show(name: Annotated[str, typer.Argument(help="dataset id")]) -> None:
    """One dataset: size, spaces, the task and policy that made it, returns and reference scores."""
    from workbench.datasets import dataset_summary

    _show_dataset(dataset_summary(name))


def _show_dataset(summary: dict[str, Any]) -> None:
    from workbench.cli_errors import clean

    for key, value in summary.items():
        out.print(clean(f"{key}: {value}"), markup=False, highlight=False)


# ----------------------------------------------------------------------------- list


@app.command("list")
@user_errors
def list_(what: Annotated[str, typer.Argument(help="tasks | sims | rewards | learners")]) -> None:
    """List what the workbench knows."""
    from workbench.cli_errors import clean
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
