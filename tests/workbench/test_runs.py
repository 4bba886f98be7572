from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workbench.errors import RunDirError
from workbench.runs import Run, atomic_path, atomic_write


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "x.json"
    atomic_write(target, "one")
    atomic_write(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_run_names_itself_and_records_metadata(tmp_path: Path) -> None:
    a = Run.create(tmp_path, task="reacher", learner="ppo", seed=4, resolved={"k": 1}, source_path=None)
    b = Run.create(tmp_path, task="reacher", learner="ppo", seed=4, resolved={"k": 1}, source_path=None)
    assert re.fullmatch(r"reacher__ppo__s4__\d{8}-\d{6}", a.name)
    assert a.path != b.path  # same second: still distinct
    info = a.info()
    assert info["seed"] == 4 and info["status"] == "created" and "versions" in info
    assert Run.open(a.path).resolved_task() == {"k": 1}


def test_open_rejects_non_runs(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not a workbench run directory"):
        Run.open(tmp_path)


def test_checkpoint_commit_points_at_complete_dirs_and_prunes(tmp_path: Path) -> None:
    run = Run.create(tmp_path, task="t", learner="ppo", seed=0, resolved={}, source_path=None)
    assert run.latest_checkpoint() is None
    for step in (100, 200, 300):
        d = run.new_checkpoint_dir(step)
        (d / "model.zip").write_text(str(step))
        run.commit_checkpoint(step, d)
    # A checkpoint being written when the process died is never pointed at.
    run.new_checkpoint_dir(400)
    step, d = run.latest_checkpoint()
    assert step == 300 and (d / "model.zip").read_text() == "300"
    kept = sorted(p.name for p in (run.path / "checkpoints").glob("step_*"))
    assert "step_0000000100" not in kept and "step_0000000300" in kept
    assert json.loads((run.path / "checkpoints" / "latest.json").read_text())["step"] == 300
