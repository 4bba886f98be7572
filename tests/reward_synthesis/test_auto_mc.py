"""Auto MC-Reward without an LLM: the trajectory analyzer's statistics on trajectories whose
outcomes are known, the critic's verdict parsing, the designer's memory, and watching a real policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reward_synthesis.language.auto_mc import (
    RoundRecord,
    critic_messages,
    designer_messages,
    parse_verdict,
    sketch_designer_messages,
    stats_text,
    trajectory_stats,
)
from workbench.evaluate import Trajectory, record_trajectories
from workbench.reward import BuiltReward
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parents[2]


def _traj(end: str, dists: list[float], actions: list[int], success: bool = False) -> Trajectory:
    return Trajectory(success, end, len(actions), actions, {"nearest_tree_dist": dists, "health": [9.0] * len(dists)})


def test_stats_of_scripted_failures_say_how_and_where_they_ended() -> None:
    trajs = [
        _traj("lava", [8, 6, 4, 2, 1], [1, 1, 1, 1, 1]),                  # walked straight into lava
        _traj("lava", [5, 4, 3, 2, 2], [1, 1, 2, 1, 1]),
        _traj("zombie", [3, 3, 3, 3, 3, 3, 3, 3], [0, 0, 0, 0, 0, 0, 0, 5]),  # stood still
        _traj("timeout", [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [3] * 10),  # walked away
        _traj("success", [2, 1, 0], [1, 5, 5], success=True),
    ]
    stats = trajectory_stats(trajs, target_field="nearest_tree_dist",
                             action_names=["noop", "move_left", "move_right", "move_up", "move_down", "do"])
    assert stats["episodes"] == 5 and stats["failed"] == 4 and stats["success_rate"] == pytest.approx(0.2)
    assert stats["end_causes"] == {"lava": 0.5, "zombie": 0.25, "timeout": 0.25}
    assert stats["length"] == {"mean": pytest.approx((5 + 5 + 8 + 10) / 4), "min": 5, "max": 10}
    target = stats["target"]
    # Start: mean of 8, 5, 3, 4; end: mean of 1, 2, 3, 13; two of four got closer.
    assert target["mean_at_fraction_of_episode"]["0%"] == pytest.approx(5.0)
    assert target["mean_at_fraction_of_episode"]["100%"] == pytest.approx(4.75)
    assert target["closer_at_end_fraction"] == pytest.approx(0.5)
    assert target["mean_min"] == pytest.approx((1 + 2 + 3 + 4) / 4)
    # Actions by name, over the failed episodes' 28 steps: move_left 7, noop 7, move_up 10, ...
    assert stats["actions"]["move_up"] == pytest.approx(10 / 28)
    assert stats["actions"]["noop"] == pytest.approx(7 / 28)
    assert stats["fields_start_end"]["health"] == {"start": 9.0, "end": 9.0}
    text = stats_text(stats)
    assert "4 of 5 watched episodes failed" in text and "lava 50%" in text and "move_up 36%" in text
    assert "nearest_tree_dist over the episode" in text


def test_stats_when_nothing_failed() -> None:
    stats = trajectory_stats([_traj("success", [1, 0], [5, 5], success=True)], target_field="nearest_tree_dist")
    assert stats == {"episodes": 1, "failed": 0, "success_rate": 1.0}
    assert stats_text(stats).startswith("0 of 1")


@pytest.mark.parametrize("reply, passed, parsed", [
    ("VERDICT: PASS\nREASONS:\n1. fine", True, True),
    ("**VERDICT: FAIL**\nREASONS:\n1. the dense term can be farmed", False, True),
    ("verdict - pass\nlooks good", True, True),
    ("I think this reward is great.", False, False),
    ("", False, False),
])
def test_critic_verdicts(reply: str, passed: bool, parsed: bool) -> None:
    verdict = parse_verdict(reply)
    assert (verdict.passed, verdict.parsed) == (passed, parsed)
    if "farmed" in reply:
        assert verdict.reasons == "1. the dense term can be farmed"


def test_designer_prompt_carries_memory_and_suggestions() -> None:
    facts = {"env_id": "crafter/CollectWood-v0", "state_description": "class State:\n    inv_wood: ...",
             "action_description": "one integer in [0, 16]", "success": "wood collected"}
    memory = [RoundRecord(0, designs=[{"k": 0, "code": "def compute_reward(state, action):\n    return 0.0",
                                       "reasons": "1. no dense part"}],
                          code="def compute_reward(state, action):\n    return 0.0", success=0.1)]
    msgs = designer_messages(facts, "collect wood", memory, "1. reward approaching trees")
    user = msgs[1]["content"]
    assert "Round 0 design (trained to success 0.10)" in user and "Critic: 1. no dense part" in user
    assert "1. reward approaching trees" in user and "collect wood" in user and "inv_wood" in user
    assert "sparse" in msgs[0]["content"] and "0.1" in msgs[0]["content"]
    first = designer_messages(facts, "collect wood", [], "")
    assert "Previous designs" not in first[1]["content"] and "Suggested revisions" not in first[1]["content"]
    review = critic_messages(facts, "collect wood", "def compute_reward(state, action):\n    return 1.0")[1]["content"]
    assert "return 1.0" in review and "wood collected" in review


def test_sketch_designer_prompt_is_the_sketch_prompt_plus_memory_and_suggestions() -> None:
    prompt = [{"role": "system", "content": "write sketches"}, {"role": "user", "content": "Task: reach"}]
    assert sketch_designer_messages(prompt, [], "") == prompt  # round 1: the plain sketch prompt
    sketch = {"terms": [{"kind": "distance", "a": "fingertip_pos", "b": "target_pos", "weight": 1.0}]}
    memory = [RoundRecord(0, designs=[{"k": 0, "reasons": "1. no bonus at the target"}], code="...", sketch=sketch,
                          success=0.25),
              RoundRecord(1, reason="sketch: terms[0].when.distance.below must be > 0")]
    msgs = sketch_designer_messages(prompt, memory, "1. pay a bonus when the fingertip is on the target")
    assert msgs[0] == prompt[0] and prompt[1]["content"] == "Task: reach"  # the caller's prompt is not changed
    user = msgs[1]["content"]
    assert user.startswith("Task: reach\n\n") and len(msgs) == 2
    assert f"Round 0 (trained to success 0.25): {json.dumps(sketch)}" in user
    assert "Critic: 1. no bonus at the target" in user and "Round 1 (rejected by the checks): (none)" in user
    assert "1. pay a bonus when the fingertip is on the target" in user and user.rstrip().endswith("JSON object.")


def test_watching_a_real_policy_records_fields_and_how_episodes_end() -> None:
    spec = load_task(REPO / "tasks" / "mujoco" / "reacher.yaml", ["sim.max_episode_steps=20"])
    task = Task.build(spec, reward=BuiltReward(None, "env"))

    class Still:
        def predict(self, obs, deterministic=True):
            return np.zeros(2, np.float32), None

    trajs = record_trajectories(Still(), task, episodes=2, seed=0,
                                fields=["fingertip_to_target", "no_such_field"])
    assert [t.length for t in trajs] == [20, 20]
    assert all(t.end == "timeout" and t.success is False for t in trajs)
    assert set(trajs[0].fields) == {"fingertip_to_target"}  # unknown names are ignored
    dist = trajs[0].fields["fingertip_to_target"]
    assert len(dist) == 20 and np.allclose(dist, dist[0], atol=0.02)  # a still arm stays as far
    assert trajs[0].actions[0] == [0.0, 0.0]
    stats = trajectory_stats(trajs, target_field="fingertip_to_target")
    assert stats["end_causes"] == {"timeout": 1.0} and stats["distinct_actions"] == 1
