"""Eureka's search with fixed programs from a stand-in LLM: real proxy training (Reacher-v5, a few
hundred PPO steps) in spawned worker processes, scoring by the task's success metric, the table,
the winner and reward reflection. The live LLM test is in llm/test_eureka_live.py."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from reward_synthesis.language.eureka import Candidate, SeedRun, pick_winner, reflection_text, search, train_programs
from reward_synthesis.safety.checks import check_inputs, collect_samples
from workbench.cli import run_search_cli
from workbench.errors import WorkbenchError
from workbench.pipeline import train_and_evaluate
from workbench.reward import BuiltReward
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parents[2]
GOAL = "Move the fingertip onto the target."

TINY = """\
name: tiny
goal: Move the fingertip onto the target.
sim: {env_id: Reacher-v5}
learner: {name: ppo, hyperparams: {n_steps: 64, batch_size: 64, n_epochs: 2}}
training: {total_steps: 512, n_envs: 2, seed: 3}
evaluation: {episodes: 3, video: false}
"""

GOOD = (REPO / "tasks/mujoco/rewards/reacher_precise.py").read_text()
GOOD2 = """\
import numpy as np

def compute_reward(state, action):
    distance = float(np.linalg.norm(state.fingertip_to_target))
    effort = 0.01 * float(np.sum(np.square(action)))
    bonus = 1.0 if distance < 0.02 else 0.0
    return -2.0 * distance + bonus - effort, {"distance": -2.0 * distance, "bonus": bonus, "effort": -effort}
"""
# Passes the pre-flight checks (its samples all have fingertip_to_target[0] <= 0) and divides by
# zero as soon as training reaches a state with fingertip_to_target[0] > 0.
CRASHES = """\
import numpy as np

def compute_reward(state, action):
    distance = float(np.linalg.norm(state.fingertip_to_target))
    scale = 0.0 if state.fingertip_to_target[0] > 0 else 1.0
    return -distance / scale, {"distance": -distance / scale}
"""
CONSTANT = "def compute_reward(state, action):\n    return 1.0\n"
FENCE = "```python\n{}\n```"


@dataclasses.dataclass
class Reply:
    text: str
    latency_s: float = 0.0
    cached: bool = False


class ScriptedLLM:
    """Stands in for LLMClient: the reply to each request seed is fixed; records every request."""

    model = "scripted"

    def __init__(self, replies: dict[int, str]):
        self.replies = replies
        self.requests: list[tuple[int, list[dict[str, str]]]] = []

    def chat(self, messages: list[dict[str, str]], *, seed: int | None = None, **_: Any) -> Reply:
        self.requests.append((seed, messages))
        return Reply(self.replies.get(seed, "I cannot help with that."))


def _task(path: Path) -> Task:
    return Task.build(load_task(path), reward=BuiltReward(None, "searching"))


def _samples(task: Task) -> list:
    env = task.make_env()
    try:
        samples = collect_samples(env, task.profile.schema, n=128, seed=0)
    finally:
        env.close()
    kept = [s for s in samples if s[0].fingertip_to_target[0] <= 0]
    assert len(kept) >= 16
    return kept


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real search: 2 rounds x 3 candidates, 2 seeds, 2 workers, 256 proxy steps."""
    root = tmp_path_factory.mktemp("eureka")
    (root / "tiny.yaml").write_text(TINY)
    task = _task(root / "tiny.yaml")
    # Request seeds (attempts=2): r0: c0 0-1, c1 2-3, c2 4-5; r1: c0 6-7, c1 8-9, c2 10-11.
    llm = ScriptedLLM({0: FENCE.format(GOOD), 2: FENCE.format(CRASHES),  # r0_c2: no code at all
                       6: FENCE.format(CONSTANT), 7: FENCE.format(CONSTANT),
                       8: FENCE.format(GOOD2), 10: FENCE.format(GOOD)})
    console = Console(file=io.StringIO(), width=200)
    result = run_search_cli(task, GOAL, llm, _samples(task), train=train_and_evaluate, candidates=3, rounds=2,
                            workers=2, proxy_steps=256, out_dir=root / "out", console=console)
    return {"result": result, "llm": llm, "out": root / "out", "console": console.file.getvalue(), "task": task}


def test_candidates_are_checked_trained_and_recorded(searched: dict[str, Any]) -> None:
    result = searched["result"]
    rows = {c.label: c for c in result.table}
    assert list(rows) == ["r0_c0", "r0_c1", "r0_c2", "r1_c0", "r1_c1", "r1_c2"]
    assert [(c.checks, c.status) for c in rows.values()] == [
        ("accepted", "trained"), ("accepted", "failed"), ("no code", "not trained"),
        ("rejected", "not trained"), ("accepted", "trained"), ("accepted", "duplicate")]
    # The crash is a result, not the end of the search; it names the program's line.
    assert "ZeroDivisionError" in rows["r0_c1"].error and "r0_c1.py" in rows["r0_c1"].error
    assert rows["r1_c0"].reason.startswith("non_constant")
    assert rows["r1_c2"].error == "same code as r0_c0"
    # Scored by the task's metric and the env's own return, not by the candidate's own reward (-2 x distance).
    assert rows["r1_c1"].mean_env_return > rows["r1_c1"].mean_return
    for c in (rows["r0_c0"], rows["r1_c1"]):
        assert [r.seed for r in c.runs] == result.train_seeds == [3, 4]
        assert all(r.ok and r.success is not None and r.steps >= 256 for r in c.runs)
        assert c.success_mean == pytest.approx(np.mean(c.success_per_seed))
        # Evaluated during training (the curve) and at the end, with every reward term.
        curve = c.runs[0].curve
        assert len(curve) >= 2 and curve[-1]["step"] >= 256 and curve[0]["step"] < 256
        assert {"distance", "env"} <= set(curve[0]["components"])
    # Every request had its own seed (the response cache keys on it).
    seeds = [s for s, _ in searched["llm"].requests]
    assert len(seeds) == len(set(seeds))


def test_table_files_and_winner(searched: dict[str, Any]) -> None:
    result, out = searched["result"], searched["out"]
    assert result.winner is pick_winner(result.table) is not None and result.exit_code == 0
    assert (out / "program.py").read_text() == result.winner.code
    table = json.loads((out / "candidates.json").read_text())
    assert table["finished"] is True and table["train_seeds"] == [3, 4]
    assert table["winner"]["sha256"] == hashlib.sha256((out / "program.py").read_bytes()).hexdigest()
    with open(out / "candidates.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == ["round", "index", "request_seed", "origin", "sha256", "checks", "reason", "status",
                                 "error", "success_s3", "success_s4", "success_mean", "mean_env_return", "mean_return",
                                 "train_seconds", "program"]
    assert [(r["round"], r["index"]) for r in rows] == [("0", "0"), ("0", "1"), ("0", "2"), ("1", "0"), ("1", "1"),
                                                        ("1", "2")]
    for row, c in zip(rows, result.table):
        assert row["sha256"] == (c.sha256 or "")
        if c.code is not None:  # every candidate's code, under the name the table gives
            assert hashlib.sha256((out / row["program"]).read_bytes()).hexdigest() == c.sha256
        else:
            assert (out / row["program"]).read_text().startswith("I cannot help")
        if c.status == "trained":
            assert float(row["success_mean"]) == pytest.approx(
                (float(row["success_s3"]) + float(row["success_s4"])) / 2)
        else:
            assert row["success_mean"] == ""
    detail = json.loads((out / "candidates" / "r0_c0.json").read_text())
    assert len(detail["runs"]) == 2 and detail["runs"][0]["curve"]
    # One console line per candidate, then the summary.
    lines = searched["console"].strip().splitlines()
    assert len(lines) == 1 + len(result.table) + 1  # (in the order they finished)
    assert sorted(line.split()[0] for line in lines[1:-1]) == [c.label for c in result.table]
    assert lines[-1].startswith("winner r")


def test_next_round_reflects_on_the_best_program(searched: dict[str, Any]) -> None:
    llm, out = searched["llm"], searched["out"]
    first_round = [m for s, m in llm.requests if s in (0, 2, 4)]  # (not the repair requests)
    second_round = [m for s, m in llm.requests if s in (6, 8, 10)]
    assert all(len(m) == 2 for m in first_round)  # the plain task prompt
    for messages in second_round:
        assert messages[-2]["content"] == FENCE.format(GOOD.strip())  # r0_c0, the only one trained
        reflection = messages[-1]["content"]
        assert GOOD.strip() in reflection
        assert "success rate: [" in reflection and "the environment's own return: [" in reflection
        for term in ("distance", "control", "precision"):
            assert f"- {term}: [" in reflection
        assert "r0_c1: crashed in training: ZeroDivisionError" in reflection
    assert (out / "reflection" / "round_1.txt").read_text() == second_round[0][-1]["content"]


def _cand(index: int, successes: list[float], env_return: float, *, status: str = "trained") -> Candidate:
    c = Candidate(0, index, index, f"# {index}\n", f"{index:064x}", "accepted", "", status)
    c.runs = [SeedRun(s, status == "trained", success, -1.0, env_return) for s, success in enumerate(successes)]
    return c


def test_winner_is_the_best_mean_over_seeds_ties_by_env_return() -> None:
    lucky = _cand(0, [1.0, 0.0], -1.0)   # the best single seed, a worse mean
    steady = _cand(1, [0.6, 0.6], -9.0)
    assert pick_winner([lucky, steady]) is steady
    closer = _cand(2, [0.6, 0.6], -5.0)  # same mean success, better env return
    assert pick_winner([lucky, steady, closer]) is closer
    assert pick_winner([lucky, steady, _cand(3, [0.6, 0.6], -5.0), closer]).index == 2  # then the earlier
    assert pick_winner([_cand(4, [1.0, 1.0], 0.0, status="failed")]) is None


def test_reflection_shows_component_stats_over_checkpoints() -> None:
    best = _cand(0, [0.5, 0.0], -3.0)
    for run, (lo, hi) in zip(best.runs, [(-10.0, -20.0), (-30.0, -40.0)]):
        run.curve = [
            {"step": 1000, "success_rate": 0.0, "mean_return": -5.0, "mean_env_return": -6.0, "mean_length": 50.0,
             "components": {"distance": {"mean": lo, "min": lo - 1, "max": lo + 1},
                            "env": {"mean": 0, "min": 0, "max": 0}}},
            {"step": 2000, "success_rate": 1.0, "mean_return": -1.0, "mean_env_return": -2.0, "mean_length": 50.0,
             "components": {"distance": {"mean": hi, "min": hi - 1, "max": hi + 5}}},
        ]
    text = reflection_text(best, [best, _cand(1, [0.1, 0.1], -8.0)], success_doc="within 2 cm", proxy_steps=2000,
                           every=1000)
    assert "checkpoints at steps 1k, 2k" in text
    assert "success rate: [0.00, 1.00]; max 1.00, mean 0.50, min 0.00" in text
    assert "- distance: [-20, -30]; min -41, max -9" in text  # means over seeds; min/max over all episodes
    assert "- env:" not in text  # the env's own reward is shown as its return, not as a term
    assert "# 0" in text and "within 2 cm" in text and "r0_c1: success 0.10" in text


def test_bad_settings_and_tasks_without_success_are_user_errors(tmp_path: Path) -> None:
    task = _task(REPO / "tasks/mujoco/reacher.yaml")
    llm = ScriptedLLM({})
    with pytest.raises(WorkbenchError, match="--candidates must be"):
        search(task, GOAL, llm, [], train=train_and_evaluate, candidates=0, rounds=1, workers=1, proxy_steps=100,
               out_dir=tmp_path)
    blind = dataclasses.replace(task, profile=dataclasses.replace(task.profile, success=None))
    with pytest.raises(WorkbenchError, match="success metric"):
        search(blind, GOAL, llm, [], train=train_and_evaluate, candidates=1, rounds=1, workers=1, proxy_steps=100,
               out_dir=tmp_path)
    assert llm.requests == []


def test_the_preference_check_judges_candidates_too(tmp_path: Path) -> None:
    """A program that pays for moving away from the target passes every plain check but prefers
    random actions to the task's reference policy: rejected, never trained."""
    task = _task(REPO / "tasks/mujoco/reacher.yaml")
    env = task.make_env()
    try:
        samples, preference = check_inputs(env, task.profile, n=64)
    finally:
        env.close()
    assert preference is not None
    away = "import numpy as np\n\ndef compute_reward(state, action):\n" \
           "    return float(np.linalg.norm(state.fingertip_to_target))\n"
    llm = ScriptedLLM({0: FENCE.format(away)})
    result = search(task, GOAL, llm, samples, train=train_and_evaluate, preference=preference, candidates=1, rounds=1,
                    workers=1, proxy_steps=100, attempts=1, out_dir=tmp_path)
    [c] = result.table
    assert (c.checks, c.status) == ("rejected", "not trained") and c.reason.startswith("preference")
    assert result.winner is None and result.exit_code == 1 and not (tmp_path / "program.py").exists()
    assert result.summary().startswith("no winner: 1 candidates")


@dataclasses.dataclass
class SketchReply(Reply):
    truncated: bool = False
    finish_reason: str = "stop"
    constraint: str | None = "grammar"


class ScriptedSketchLLM(ScriptedLLM):
    """As ScriptedLLM, for schema requests: records each request's schema too."""

    def chat(self, messages: list[dict[str, str]], *, seed: int | None = None, **kw: Any) -> SketchReply:
        assert kw.get("json_schema") is not None and kw.get("schema_name") == "reward_sketch"
        self.requests.append((seed, messages))
        self.schemas = {**getattr(self, "schemas", {}), seed: kw["json_schema"]}
        return SketchReply(self.replies.get(seed, "I cannot help with that."))


def _sketch(*terms: dict[str, Any]) -> str:
    return json.dumps({"name": "reach", "goal": GOAL, "terms": list(terms)})


REACH = {"kind": "distance", "name": "reach", "a": "fingertip_pos", "b": "target_pos",
         "transform": {"kind": "linear", "scale": 0.1}, "weight": 1.0}
EFFORT = {"kind": "action", "name": "effort", "transform": {"kind": "linear", "scale": 1.0}, "weight": 0.1}


def test_sketch_mode_searches_over_sketches_and_reflects_on_the_best(tmp_path: Path) -> None:
    """mode sketch: each candidate is a sketch synthesis (validated, compiled, checked), the accepted
    ones are proxy-trained, the reflection shows the best sketch, and the winner's sketch.json lands
    beside its program.py."""
    pytest.importorskip("sentence_transformers", reason="sketch synthesis ranks fields with the llm extra")
    (tmp_path / "tiny.yaml").write_text(TINY)
    task = _task(tmp_path / "tiny.yaml")
    # attempts=1: candidate i of round r asks with seed r * 2 + i.
    llm = ScriptedSketchLLM({0: _sketch(REACH, EFFORT), 1: _sketch(EFFORT),  # r0_c1: only the action moves it
                             2: _sketch({**REACH, "transform": {"kind": "exp", "scale": 0.05}}, EFFORT)})
    result = search(task, GOAL, llm, _samples(task), train=train_and_evaluate, candidates=2, rounds=2, workers=1,
                    proxy_steps=256, seeds=1, attempts=1, out_dir=tmp_path / "out", mode="sketch")
    by_label = {c.label: c for c in result.table}
    assert [by_label[x].status for x in ("r0_c0", "r0_c1", "r1_c0", "r1_c1")] == [
        "trained", "not trained", "trained", "not trained"]
    assert by_label["r0_c1"].reason.startswith("state_dependence"), by_label["r0_c1"].reason
    assert by_label["r1_c1"].reason.startswith("the reply is not JSON")
    assert by_label["r0_c0"].sketch == {**json.loads(_sketch(REACH, EFFORT)), "gain": 0.01}  # 1 - gamma, filled
    out = tmp_path / "out"
    assert json.loads((out / "candidates" / "r0_c0.sketch.json").read_text()) == by_label["r0_c0"].sketch
    # Round 1 starts from the sketch prompt, the best sketch as the model's answer, then the reflection.
    (_, messages), = [(s, m) for s, m in llm.requests if s == 2]
    assert messages[-2] == {"role": "assistant", "content": json.dumps(by_label["r0_c0"].sketch)}
    assert "Reply with the complete new reward sketch as one JSON object." in messages[-1]["content"]
    assert messages[-1]["content"] == (out / "reflection" / "round_1.txt").read_text()
    assert all(term in messages[-1]["content"] for term in ("reach", "effort"))  # per-term feedback
    winner = result.winner
    assert winner is not None and winner.sketch is not None
    assert json.loads((out / "sketch.json").read_text()) == winner.sketch
    assert (out / "program.py").read_text() == winner.code and "def compute_reward_batch" in winner.code
    assert json.loads((out / "candidates.json").read_text())["settings"]["mode"] == "sketch"
    # Explore: the round's second candidate is not offered the kinds of terms the accepted first one
    # is made of (distance, action); the first was offered every kind.
    def kinds(schema: dict[str, Any]) -> set[str]:
        return set(re.findall(r'"kind": \{"const": "(\w+)"\}', json.dumps(schema["properties"]["terms"])
                              + json.dumps({k: v for k, v in schema["$defs"].items() if not k.startswith("when")})))

    assert {"distance", "action"} <= kinds(llm.schemas[0])
    assert not {"distance", "action"} & kinds(llm.schemas[1]) and kinds(llm.schemas[1])


def test_reweigh_trains_the_best_sketch_with_each_term_weight_scaled(tmp_path: Path) -> None:
    """--reweigh: round 1 first trains the round-0 winner with one term's weight times each factor
    (derived by the workbench: no LLM request, request_seed -1, the origin says what changed), then
    asks for the reflection's candidates as usual."""
    pytest.importorskip("sentence_transformers", reason="sketch synthesis ranks fields with the llm extra")
    (tmp_path / "tiny.yaml").write_text(TINY)
    task = _task(tmp_path / "tiny.yaml")
    llm = ScriptedSketchLLM({0: _sketch(REACH, EFFORT)})  # round 1's reflection (seed 1) gets no sketch
    result = search(task, GOAL, llm, _samples(task), train=train_and_evaluate, candidates=1, rounds=2, workers=1,
                    proxy_steps=256, seeds=1, attempts=1, out_dir=tmp_path / "out", mode="sketch",
                    reweigh=(0.1,))
    by_label = {c.label: c for c in result.table}
    assert list(by_label) == ["r0_c0", "r1_c0", "r1_c1", "r1_c2"]
    assert [s for s, _ in llm.requests] == [0, 1]  # the derived sketches asked nothing
    reach, effort = by_label["r1_c0"], by_label["r1_c1"]
    assert reach.origin == "r0_c0, terms[0] 'reach' weight 1 -> 0.1" and reach.request_seed == -1
    assert effort.origin == "r0_c0, terms[1] 'effort' weight 0.1 -> 0.01"
    assert [t["weight"] for t in reach.sketch["terms"]] == [0.1, 0.1]
    assert [t["weight"] for t in effort.sketch["terms"]] == [1.0, 0.01]
    assert reach.status == effort.status == "trained" and by_label["r1_c2"].origin == "llm"
    rows = json.loads((tmp_path / "out" / "candidates.json").read_text())["rows"]
    assert [r["origin"] for r in rows][1] == reach.origin
    assert json.loads((tmp_path / "out" / "candidates.json").read_text())["settings"]["reweigh"] == [0.1]
    # The reflection may still revise the best sketch's kinds of terms: the derived candidates before
    # it in its round do not count as the round's earlier (explored) candidates.
    offered = set(re.findall(r'"kind": \{"const": "(\w+)"\}', json.dumps(llm.schemas[1]["$defs"])))
    assert {"distance", "action"} <= offered


def test_proxy_training_runs_on_the_ray_executor_too(tmp_path: Path, ray_runtime: None) -> None:
    """The same jobs as Ray tasks (on the session's local Ray runtime)."""
    import ray

    from workbench.executor import RayExecutor, RayOptions

    (tmp_path / "tiny.yaml").write_text(TINY)
    with RayExecutor(RayOptions(cpus=1), 2) as executor:
        (runs,) = train_programs(train_and_evaluate, _task(tmp_path / "tiny.yaml"), [GOOD], proxy_steps=256, seeds=2,
                                 checkpoints=1, eval_episodes=2, executor=executor)
    assert ray.is_initialized()  # the executor joined the session's runtime and left it up
    assert [run.ok for run in runs] == [True, True], [run.error for run in runs]
    assert [run.steps for run in runs] == [256, 256] and all(run.success is not None for run in runs)


def test_fresh_starts_alternate_the_fixed_example_with_the_closest_goals_sketch(tmp_path: Path) -> None:
    """A rejected reply with no repair left starts over from the other example: the fixed push-the-box
    sketch first, then the sketch of the closest goal of another environment, then the fixed one again."""
    pytest.importorskip("sentence_transformers", reason="sketch synthesis ranks fields with the llm extra")
    from reward_synthesis.language.sketch_synthesis import synthesize_sketch

    (tmp_path / "tiny.yaml").write_text(TINY)
    task = _task(tmp_path / "tiny.yaml")
    llm = ScriptedSketchLLM({})  # every reply is rejected (not JSON)
    result = synthesize_sketch(task, GOAL, llm, _samples(task), attempts=3, repairs=0)
    assert [a.accepted for a in result.attempts] == [False, False, False]
    prompts = [messages[-1]["content"] for _, messages in llm.requests]
    assert "push_box" in prompts[0] and "Example sketches for OTHER tasks" not in prompts[0]
    assert "Example sketches for OTHER tasks" in prompts[1] and "push_box" not in prompts[1]
    assert prompts[2] == prompts[0]
