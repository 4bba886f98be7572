"""``reward: {source: sketch, path: ...}``: a shipped hand sketch, compiled and checked at build, trained
through the real CLI, recorded in the run as reward/sketch.json beside reward/program.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.errors import TaskError
from workbench.registry import REWARDS
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks" / "mujoco" / "reacher_sketch.yaml"
SKETCH = REPO / "tasks" / "mujoco" / "rewards" / "reacher_sketch.json"


def wb(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_sketch_is_a_built_in_reward_source() -> None:
    from reward_synthesis.language.sketch_source import SketchRewardSource

    assert REWARDS.get("sketch") is SketchRewardSource


def test_build_compiles_the_sketch_and_records_both_files() -> None:
    task = Task.build(load_task(TASK))
    built = task.reward
    assert built.source_text is not None and "def compute_reward_batch(state, action)" in built.source_text
    assert built.files["reward/sketch.json"] == SKETCH.read_text()
    assert built.report is not None and built.report.accepted
    assert [t["name"] for t in built.record["sketch"]["terms"]] == ["distance", "control", "near"]


def test_a_sketch_naming_an_unknown_field_is_refused_before_any_code(tmp_path: Path) -> None:
    bad = json.loads(SKETCH.read_text())
    bad["terms"][0]["b"] = "goal_pos"
    (tmp_path / "rewards").mkdir()
    (tmp_path / "rewards" / "bad.json").write_text(json.dumps(bad))
    text = TASK.read_text().replace("rewards/reacher_sketch.json", "rewards/bad.json")
    (tmp_path / "task.yaml").write_text(text)
    with pytest.raises(TaskError) as err:
        Task.build(load_task(tmp_path / "task.yaml"))
    assert "goal_pos" in str(err.value) and "terms[0]" in str(err.value)


def test_validate_and_a_tiny_run_through_the_cli(tmp_path: Path) -> None:
    proc = wb("validate", str(TASK))
    assert proc.returncode == 0, proc.stderr
    assert "reward sketch reacher_sketch.json" in proc.stdout
    runs = tmp_path / "runs"
    proc = wb("run", str(TASK), "--runs-dir", str(runs), "--quiet",
              "--set", "training.total_steps=512", "--set", "training.n_envs=2",
              "--set", "learner.hyperparams.n_steps=256", "--set", "learner.hyperparams.batch_size=64",
              "--set", "training.eval_every=0",
              "--set", "evaluation.episodes=2", "--set", "evaluation.video=false")
    assert proc.returncode == 0, proc.stderr
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    assert (run / "reward" / "sketch.json").read_text() == SKETCH.read_text()
    program = (run / "reward" / "program.py").read_text()
    assert "compiled from the reward sketch 'reach_and_hold'" in program
    record = json.loads((run / "reward" / "reward.json").read_text())
    assert record["source"] == "sketch" and record["checks"]["accepted"] is True
    assert "path: reward/program.py" in (run / "task.yaml").read_text()  # a resume trains the same program
