"""`reward: {source: text2reward, mode: sketch}` end to end: `workbench run` on the REAL local LLM
server synthesizes a reward sketch for PlanarPush, compiles it, trains on it and keeps it.

The embedded server's replies for the same request are not bit-identical across its history, and
about a quarter of its sketches for PlanarPush are accepted, so the run tries a second seed before it
gives up, and a model that still writes no acceptable sketch must fail cleanly (xfail, with the
reasons)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
WORDS = REPO / "tasks" / "mujoco" / "planar_push_words.yaml"


def _run(tmp_path: Path, seed: int) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    runs, kept = tmp_path / f"runs{seed}", tmp_path / f"w{seed}"
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", str(WORDS), "--runs-dir", str(runs), "--quiet",
         "--set", "training.total_steps=2048", "--set", f"reward.seed={seed}"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "WORKBENCH_RUNS_DIR": str(kept)})
    return proc, runs, kept


@pytest.mark.slow  # ~26 s on 2 cores; the sketch path's synthesis is covered by test_sketch_live.py
def test_run_with_mode_sketch_synthesizes_a_sketch_then_trains(llm_env: dict, tmp_path: Path) -> None:
    for seed in (1, 3):  # measured: each accepted on a fresh server (replies depend on its history)
        proc, runs, kept = _run(tmp_path, seed)
        assert "Traceback" not in proc.stderr, proc.stderr
        if proc.returncode == 0:
            break
        # Every sketch rejected: one clear message (exit 2), each attempt's reason, the fix, and the
        # attempts kept for the user.
        assert proc.returncode == 2, proc.stderr
        assert "none of 3 sketches" in proc.stderr and "attempt 0:" in proc.stderr and "fix:" in proc.stderr
        (failed,) = list((kept / "synth").iterdir())
        assert json.loads((failed / "reward" / "synthesis.json").read_text())["mode"] == "sketch"
        assert (failed / "llm" / "transcript.jsonl").is_file()
    else:
        pytest.xfail(f"no sketch accepted for seeds 1 and 3: {proc.stderr[-600:]}")
    (run,) = list(runs.iterdir())
    assert (run / "reward" / "program.py").is_file() and (run / "llm" / "transcript.jsonl").is_file()
    sketch = json.loads((run / "reward" / "sketch.json").read_text())
    assert sketch["terms"]
    record = json.loads((run / "reward" / "reward.json").read_text())
    assert record["mode"] == "sketch" and record["sketch"] == sketch
    assert 1 <= record["attempts"] <= 3
    assert "def compute_reward_batch(state, action)" in (run / "reward" / "program.py").read_text()
    synthesis = json.loads((run / "reward" / "synthesis.json").read_text())
    assert synthesis["mode"] == "sketch" and synthesis["accepted"]
    assert synthesis["fields"]["offered"][0] in synthesis["fields"]["similarity_to_goal"]
    # `validate` offline looks the run's first sketch request (its schema included) up in the cache.
    check = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "validate", str(WORDS), "--set", f"reward.seed={seed}",
         "--set", "reward.offline=true"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    assert "offline: the first request is cached (replays)" in check.stdout and "mode sketch" in check.stdout


@pytest.mark.slow  # ~30-50 s; the default suite synthesizes a sketch inside `workbench run` (above)
def test_reward_synth_mode_sketch_writes_the_sketch_and_the_program(llm_env: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "reward", "synth", "--task", str(WORDS), "--mode", "sketch",
         "--attempts", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "WORKBENCH_RUNS_DIR": str(tmp_path / "w")})
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    synthesis = json.loads((out / "synthesis.json").read_text())
    assert synthesis["mode"] == "sketch" and synthesis["accepted"] == (proc.returncode == 0)
    assert (out / "llm" / "transcript.jsonl").is_file()
    assert (out / "program.py").is_file() == (out / "sketch.json").is_file() == (proc.returncode == 0)
    if proc.returncode == 0:
        sketch = json.loads((out / "sketch.json").read_text())
        assert sketch["terms"] and "def compute_reward_batch" in (out / "program.py").read_text()
        (accepted,) = [a for a in synthesis["attempts"] if a["accepted"]]
        assert json.loads((out / "attempts" / f"attempt_{accepted['index']}.sketch.json").read_text()) == sketch
    else:
        assert "no program accepted" in proc.stdout
    # Few-shot examples are reward programs: refused with --mode sketch up front, with the fix.
    bad = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "reward", "synth", "--task", str(WORDS), "--mode", "sketch",
         "--few-shot", "1", "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "fix:" in bad.stderr and "Traceback" not in bad.stderr
