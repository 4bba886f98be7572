"""Auto MC-Reward's three LLM roles against the REAL local server (llama.cpp + SmolLM2-135M).

Round 0 trains a given program (the shipped Reacher reward) so the analyzer sees statistics of a
real trained policy; round 1's designer must receive the analyzer's reply, and its design goes to
the critic. The small model writes poor code — the test checks the loop's plumbing and records,
not the quality of the designs.
"""

from __future__ import annotations

import json
from pathlib import Path

from reward_synthesis.language.auto_mc import auto_mc_search
from reward_synthesis.llm.sources import make_client, prompt_template
from reward_synthesis.safety.checks import collect_samples
from workbench.pipeline import train_and_evaluate
from workbench.reward import BuiltReward
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parents[3]
REACHER = REPO / "tasks" / "mujoco" / "reacher.yaml"


def test_designer_critic_and_analyzer_round_trip(llm_env: dict, tmp_path: Path) -> None:
    task = Task.build(load_task(REACHER, ["sim.max_episode_steps=25", "training.n_envs=1",
                                          "learner.hyperparams.n_steps=128", "learner.hyperparams.batch_size=64",
                                          "learner.hyperparams.n_epochs=1"]),
                      reward=BuiltReward(None, "designing"))
    env = task.make_env()
    samples = collect_samples(env, task.profile.schema, n=32, seed=0)
    env.close()
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
