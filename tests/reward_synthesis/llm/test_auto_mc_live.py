"""Auto MC-Reward's three LLM roles against the REAL local server (llama.cpp + SmolLM2-135M).

Round 0 trains a given program (the shipped Reacher reward) so the analyzer sees statistics of a
real trained policy; round 1's designer must receive the analyzer's reply, and its design goes to
the critic. The small model writes poor code — the test checks the loop's plumbing and records,
not the quality of the designs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reward_synthesis.language.auto_mc import auto_mc_search
from reward_synthesis.llm.sources import make_client, prompt_template
from reward_synthesis.safety.checks import collect_samples
from workbench.pipeline import train_and_evaluate
from workbench.reward import BuiltReward
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parents[3]
REACHER = REPO / "tasks" / "mujoco" / "reacher.yaml"


def _tiny_reacher() -> tuple[Task, list]:
    """Reacher with 25-step episodes and a tiny PPO (proxy training in seconds), and 32 samples."""
    task = Task.build(load_task(REACHER, ["sim.max_episode_steps=25", "training.n_envs=1",
                                          "learner.hyperparams.n_steps=128", "learner.hyperparams.batch_size=64",
                                          "learner.hyperparams.n_epochs=1"]),
                      reward=BuiltReward(None, "designing"))
    env = task.make_env()
    samples = collect_samples(env, task.profile.schema, n=32, seed=0)
    env.close()
    return task, samples


@pytest.mark.slow  # ~26 s on 2 cores: three live model roles in one loop
def test_designer_critic_and_analyzer_round_trip(llm_env: dict, tmp_path: Path) -> None:
    task, samples = _tiny_reacher()
    transcript = tmp_path / "transcript.jsonl"
    client = make_client({"temperature": 0.2, "max_tokens": 160}, transcript=transcript)
    initial = (REPO / "tasks" / "mujoco" / "rewards" / "reacher_precise.py").read_text()
    out = tmp_path / "auto_mc"
    result = auto_mc_search(task, "Move the fingertip onto the target.", client, samples, train=train_and_evaluate,
                            out_dir=out, rounds=2, critic_rounds=1, attempts=1, proxy_steps=256, eval_episodes=2,
                            trajectories=2, target_field="fingertip_to_target", initial=initial)

    # Round 0: the given program trained, the policy was watched, the analyzer answered.
    r0 = result.rounds[0]
    assert r0.code == initial and r0.success is not None and not r0.train_error
    assert r0.stats["episodes"] == 2 and "target" in r0.stats
    requests = [json.loads(line) for line in transcript.read_text().splitlines()]
    analyzer = requests[0]["messages"]
    assert analyzer[0]["content"] == prompt_template("auto_mc_analyzer_system")
    assert (out / "round_0" / "stats.txt").read_text() in analyzer[1]["content"]
    assert r0.analysis and (out / "round_0" / "analysis.txt").read_text() == r0.analysis

    # Round 1: the designer was shown the analysis; its design (if it had code) went to the critic.
    designer = requests[1]["messages"]
    assert designer[0]["content"] == prompt_template("auto_mc_designer_system")
    assert r0.analysis.strip() in designer[1]["content"] and "Round 0 design" in designer[1]["content"]
    r1 = result.rounds[1]
    assert r1.designs and (out / "round_1" / "design_0.reply.txt").read_text() == r1.designs[0]["reply"]
    if r1.designs[0]["code"] is not None:
        critic = requests[2]["messages"]
        assert critic[0]["content"] == prompt_template("auto_mc_critic_system")
        assert r1.designs[0]["code"].strip() in critic[1]["content"]
        assert r1.designs[0]["verdict"] in ("PASS", "FAIL")
        assert (out / "round_1" / "critique_0.txt").is_file()
    assert r1.code is not None or r1.reason

    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["rounds"]) == 2 and summary["winner_round"] is not None
    assert (out / "program.py").is_file()


@pytest.mark.slow  # ~1-2 min: two rounds of designs, critiques, proxy training and analysis
def test_sketch_mode_designs_sketches_the_critic_reads_their_programs_and_memory_carries_them(
        llm_env: dict, tmp_path: Path) -> None:
    """Mode sketch with the embedded model: each design is a schema-constrained sketch, compiled and
    checked; the critic reviews the compiled program; round 1's designer sees round 0's sketch (or
    why it was rejected) in the sketch prompt. Acceptance itself is measured, not promised."""
    from reward_synthesis.language.sketch_synthesis import SCHEMA_NAME, sketch_request

    task, samples = _tiny_reacher()
    transcript = tmp_path / "transcript.jsonl"
    client = make_client({"temperature": 0.7, "max_tokens": 400}, transcript=transcript)
    out = tmp_path / "auto_mc"
    goal = task.spec.goal
    result = auto_mc_search(task, goal, client, samples, train=train_and_evaluate, out_dir=out, rounds=2,
                            critic_rounds=1, attempts=2, proxy_steps=256, eval_episodes=2, trajectories=2,
                            target_field="fingertip_to_target", mode="sketch")
    requests = [json.loads(line) for line in transcript.read_text().splitlines()]
    designs = [r for r in requests if r.get("constraint") and r["constraint"]["schema_name"] == SCHEMA_NAME]
    prompt = sketch_request(task, goal).messages
    assert designs and designs[0]["messages"] == prompt  # round 0: the plain sketch prompt, under the schema
    assert all(r["constraint"]["mode"] == "grammar" for r in designs)

    r0, r1 = result.rounds
    for d in r0.designs:
        assert (out / "round_0" / f"design_{d['k']}.reply.txt").read_text() == d["reply"]
        if d["sketch"] is not None:
            assert json.loads((out / "round_0" / f"design_{d['k']}.sketch.json").read_text()) == d["sketch"]
    if r0.code is not None:  # accepted: reviewed as a program, trained, analysed
        assert r0.sketch is not None and (out / "round_0" / f"design_{r0.designs[-1]['k']}.py").read_text() == r0.code
        critic = next(r for r in requests if r["messages"][0]["content"] == prompt_template("auto_mc_critic_system"))
        assert r0.code.strip() in critic["messages"][1]["content"]
        assert r0.designs[-1]["verdict"] in ("PASS", "FAIL")
        assert r0.success is not None and r0.analysis
        memory = f"Round 0 (trained to success {r0.success:.2f}): {json.dumps(r0.sketch)}"
    else:
        assert r0.reason and r0.designs and all(d["checks"] == "rejected" for d in r0.designs)
        memory = "Round 0 (rejected by the checks)"
    # Round 1's first design request: the sketch prompt with round 0 in its memory.
    first_r1 = next(r for r in designs if r["params"]["seed"] == 1000)
    user = first_r1["messages"][1]["content"]
    assert user.startswith(prompt[1]["content"]) and memory in user
    assert (r0.analysis.strip() in user) if r0.analysis else "rejected" in user

    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["rounds"]) == 2
    if result.winner is not None:
        assert json.loads((out / "sketch.json").read_text()) == result.winner.sketch
        assert (out / "program.py").read_text() == result.winner.code
    assert r1.code is not None or r1.reason
