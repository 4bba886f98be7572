"""Acceptance of reward sketches from embedded models, side by side: for each shipped task with a
goal, ``--replies`` fresh sketch requests (request seeds 0..N-1, no repair), each validated,
compiled and pre-flighted exactly as ``text2reward`` (``reward.mode: sketch``) does, per model.

Printed per task and model: replies accepted (of which "settled": accepted after the workbench set
a threshold or renamed a repeated term, ``SketchAttempt.filled``), accepted replies that read a
field the goal is about (the task's ``GOAL_FIELDS``, judged by hand: on-topic, not only valid), why
the others were rejected
(the check that stopped them), and seconds per reply. The models are the embedded ones
(``--models``, keys of :data:`reward_synthesis.llm.models.EMBEDDED_MODELS`; this benchmark chose
the default) and, with ``--gguf``, any other GGUF file served the same way (one generation thread,
the same schema grammar):

    .venv/bin/python benchmarks/sketch_acceptance.py [--tasks reacher crafter_wood] [--replies 6]
        [--models smollm2-135m gemma3-270m] [--gguf NAME=PATH[:CHAT_FORMAT]] [--examples 0 2] [--attempts 1]
        [--out acceptance.json]

``--attempts A``: each of the ``--replies`` is a synthesis of up to A replies (fresh starts, as
``text2reward`` with ``repairs: 0``: the example alternates, blamed terms are left out), counted
accepted when one of them is; "replies each" is how many it took.

``--examples``: example sketches of other tasks in the prompt, the closest goals (0: the one fixed
push-the-box example the prompt had before); "2+ terms" counts accepted sketches with at least two
terms besides the action cost (a single distance term was the embedded model's habit).

``--gguf``: the chat format is llama_cpp's, for a GGUF without a chat template. The pre-flight uses
text2reward's default 256 samples. The last line is ``ratio=`` the last model's acceptance over the
first's. Replies never come from the response cache (a fresh cache per run).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TASKS = {  # name: (shipped task with a goal, the fields its goal is about)
    "reacher": ("tasks/mujoco/reacher.yaml", {"fingertip_pos", "target_pos", "fingertip_to_target"}),
    "planar_push": ("tasks/mujoco/planar_push.yaml", {"puck_pos", "goal_pos", "puck_to_goal_distance"}),
    "pusher": ("tasks/mujoco/pusher.yaml", {"object_pos", "goal_pos", "tips_arm_pos"}),
    "half_cheetah": ("tasks/mujoco/half_cheetah.yaml", {"x_velocity", "x_position"}),
    "hopper": ("tasks/mujoco/hopper.yaml", {"x_velocity", "x_position", "torso_height"}),
    "push_cube": ("tasks/maniskill/push_cube.yaml", {"cube_pos", "goal_pos", "cube_to_goal_xy_dist", "tcp_to_cube",
                                                      "tcp_to_cube_dist", "push_pos", "tcp_to_push_pos_dist",
                                                      "success"}),
    "crafter_wood": ("tasks/minecraft/collect_wood.yaml", {
        "nearest_tree_dist", "nearest_tree_dir", "nearest_tree_approach", "facing_tree", "inv_wood",
        "inv_wood_delta", "ach_collect_wood"}),
    "touch_ball": ("tasks/rocket_league/touch_ball.yaml", {
        "car_to_ball_dist", "car_to_ball_dir", "car_vel_toward_ball", "facing_ball", "ball_touched",
        "ball_touched_ever", "ball_touches"}),
}
SAMPLES = 256  # pre-flight samples per task: text2reward's default (reward.samples)


@contextlib.contextmanager
def served(embedded: str | None, gguf: str | None, chat_format: str | None) -> Iterator[None]:
    """The local server for one model, in a state directory of its own, stopped afterwards."""
    from reward_synthesis.llm.server import stop_server

    wanted = {"WORKBENCH_LLM_EMBEDDED": embedded, "WORKBENCH_LLM_GGUF": gguf, "WORKBENCH_LLM_CHAT_FORMAT": chat_format}
    saved = {k: os.environ.get(k) for k in (*wanted, "WORKBENCH_LLM_STATE_DIR")}
    with tempfile.TemporaryDirectory() as state:
        for key, value in {**wanted, "WORKBENCH_LLM_STATE_DIR": state}.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        try:
            yield
        finally:
            stop_server()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def task_inputs(path: str) -> tuple[Any, Any, Any]:
    """The task (no reward yet), its pre-flight samples and preference episodes."""
    from reward_synthesis.safety.checks import check_inputs
    from workbench.reward import BuiltReward
    from workbench.spec import load_task
    from workbench.task import Task

    task = Task.build(load_task(REPO / path), reward=BuiltReward(None, "synthesizing"))
    env = task.make_env()
    try:
        samples, preference = check_inputs(env, task.profile, n=SAMPLES)
    finally:
        env.close()
    return task, samples, preference


def measure(task: Any, samples: Any, preference: Any, goal_fields: set[str], replies: int,
            cache_dir: Path, examples: int, attempts: int = 1) -> dict[str, Any]:
    from reward_synthesis.language.sketch_synthesis import synthesize_sketch
    from reward_synthesis.language.sketches import named_fields
    from reward_synthesis.llm import LLMClient, LLMConfig, ResponseCache

    # As text2reward's defaults, with room for Crafter's long field names.
    client = LLMClient(LLMConfig(temperature=0.7, max_tokens=768).resolve(), cache=ResponseCache(cache_dir))
    accepted = on_topic = settled = 0
    terms: list[int] = []  # top-level terms per accepted sketch, the action cost not counted
    stops: Counter[str] = Counter()
    latencies = []
    used: list[int] = []  # replies each synthesis took
    try:
        for seed in range(replies):
            # Syntheses of ``attempts`` replies start at seeds far apart, so they share no request.
            result = synthesize_sketch(task, task.spec.goal, client, samples, attempts=attempts,
                                       seed=seed * attempts, preference=preference, repairs=0, examples=examples)
            attempt = result.accepted or result.attempts[-1]
            latencies.extend(a.latency_s for a in result.attempts)
            used.append(len(result.attempts))
            if attempt.accepted:
                accepted += 1
                on_topic += bool(set(named_fields(attempt.sketch)) & goal_fields)
                terms.append(sum(t.get("kind") != "action" for t in attempt.sketch["terms"]))
                # accepted only because the workbench settled a threshold or a repeated name
                settled += any(not key.endswith(".scale") for key in attempt.filled)
            else:
                first = attempt.reason.splitlines()[0].lstrip("- ") if attempt.reason else "?"
                stops[f"{attempt.stage}: {first[:70]}"] += 1
    finally:
        client.close()
    return {"replies": replies, "attempts": attempts, "replies_used": round(statistics.mean(used), 2),
            "accepted": accepted, "on_topic": on_topic, "settled": settled, "model": client.model,
            "terms": round(statistics.mean(terms), 2) if terms else None, "multi_term": sum(t >= 2 for t in terms),
            "s_per_reply": round(statistics.mean(latencies), 1) if latencies else None,
            "rejections": dict(stops.most_common())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--replies", type=int, default=4, help="fresh sketch requests per task and model")
    parser.add_argument("--models", nargs="*", default=["smollm2-135m", "gemma3-270m"],
                        help="embedded models to compare (keys of EMBEDDED_MODELS)")
    parser.add_argument("--gguf", action="append", default=[], metavar="NAME=PATH[:CHAT_FORMAT]",
                        help="another GGUF model to compare with the embedded ones")
    parser.add_argument("--examples", type=int, nargs="+", default=[2],
                        help="example sketches in the prompt (0: the one fixed example); several values "
                             "compare them side by side, each with every model")
    parser.add_argument("--attempts", type=int, default=1,
                        help="replies per synthesis (fresh starts, as text2reward with repairs: 0): with more "
                             "than 1 each of the --replies counts as accepted when any of its replies was")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args()

    from reward_synthesis.llm.models import EMBEDDED_MODELS

    # (label, embedded key, gguf, chat format, example sketches in the prompt)
    models: list[tuple[str, str | None, str | None, str | None, int]] = []
    for key in args.models:
        if key not in EMBEDDED_MODELS:
            parser.error(f"--models {key}: one of {', '.join(EMBEDDED_MODELS)}")
        models.extend((f"{key}/ex{n}", key, None, None, n) for n in args.examples)
    for item in args.gguf:
        name, _, rest = item.partition("=")
        path, _, chat_format = rest.partition(":")
        if not name or not Path(path).is_file():
            parser.error(f"--gguf {item}: write NAME=PATH[:CHAT_FORMAT] with an existing .gguf file")
        models.extend((f"{name}/ex{n}", None, path, chat_format or None, n) for n in args.examples)
    if not models:
        parser.error("no model to measure: give --models or --gguf")

    table: dict[str, dict[str, Any]] = {m[0]: {} for m in models}
    inputs = {}
    for name in args.tasks:
        try:
            inputs[name] = task_inputs(TASKS[name][0])
        except Exception as err:  # noqa: BLE001 - a simulator extra that is not installed: reported
            print(f"{name}: skipped ({type(err).__name__}: {str(err).splitlines()[0]})")
    for model, embedded, gguf, chat_format, examples in models:
        with served(embedded, gguf, chat_format), tempfile.TemporaryDirectory() as cache:
            for name, (task, samples, preference) in inputs.items():
                started = time.perf_counter()
                row = measure(task, samples, preference, TASKS[name][1], args.replies, Path(cache), examples,
                              args.attempts)
                row["seconds"] = round(time.perf_counter() - started, 1)
                table[model][name] = row
                print(f"{model:>18} {name:>13}: {row['accepted']}/{row['replies']} accepted, "
                      f"{row['on_topic']} on-topic, {row['settled']} settled, {row['multi_term']} with 2+ terms "
                      f"(mean {row['terms']}), {row['s_per_reply']} s/reply, {row['replies_used']} replies each  "
                      f"{row['rejections']}", flush=True)

    print(f"\n{'task':>13} " + " ".join(f"{m[0]:>26}" for m in models))
    for name in inputs:
        cells = [table[m[0]][name] for m in models]
        print(f"{name:>13} " + " ".join(
            f"{c['accepted']}/{c['replies']} acc {c['on_topic']} on-topic {c['s_per_reply']:>5}s".rjust(26)
            for c in cells))
    totals = {m: (sum(r["accepted"] for r in rows.values()), sum(r["replies"] for r in rows.values()),
                  sum(r["on_topic"] for r in rows.values()), sum(r["multi_term"] for r in rows.values()))
              for m, rows in table.items()}
    print(f"{'total':>13} " + " ".join(f"{a}/{n} acc {t} on-topic".rjust(26) for a, n, t, _ in totals.values()))
    print(f"{'2+ terms':>13} " + " ".join(f"{k} of {a} accepted".rjust(26) for a, _, _, k in totals.values()))
    if args.out:
        from workbench.runs import write_json

        write_json(args.out, {"replies_per_task": args.replies, "attempts": args.attempts, "examples": args.examples,
                              "table": table})
    first = totals[models[0][0]]
    last = totals[models[-1][0]]
    print(f"ratio={(last[0] / last[1]) / (first[0] / first[1]) if first[0] else float('inf') if last[0] else 1.0:.3f}")


if __name__ == "__main__":
    main()
