"""Slow: the shipped tasks actually train. Run with `make test-slow` (tens of minutes on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(task: str, tmp_path: Path, *overrides: str) -> dict:
    args = [sys.executable, "-m", "workbench.cli", "run", str(REPO / task), "--runs-dir", str(tmp_path), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr
    (run,) = list(tmp_path.iterdir())
    return json.loads((run / "eval.json").read_text())


def test_demo_reacher_reaches_success_0_8(tmp_path: Path) -> None:
    ev = _run("tasks/mujoco/reacher.yaml", tmp_path, "evaluation.video=false")
    assert ev["success_rate"] >= 0.8, ev["success_rate"]


@pytest.mark.parametrize("task,overrides,untrained_env_return", [
    # Budgets are a fraction of each task's; the bar is "clearly better than an untrained policy",
    # with untrained returns measured on the same evaluation seeds.
    ("tasks/mujoco/half_cheetah.yaml", ("training.total_steps=1e5",), -0.5 * 1000 * 0.1),
    ("tasks/mujoco/hopper.yaml", ("training.total_steps=1e5",), 20.0),
    ("tasks/mujoco/pusher.yaml", ("training.total_steps=3e4",), -110.0),
    ("tasks/mujoco/planar_push.yaml", ("training.total_steps=3e5",), -18.0),  # untrained: -22.3
])
def test_task_learns(task: str, overrides: tuple[str, ...], untrained_env_return: float, tmp_path: Path) -> None:
    ev = _run(task, tmp_path, "evaluation.video=false", "training.eval_every=0", *overrides)
    assert ev["mean_env_return"] > untrained_env_return, ev["mean_env_return"]
