"""`reward: {source: text2reward, mode: sketch}` end to end: `workbench run` on the REAL local LLM
server synthesizes a reward sketch for PlanarPush, compiles it, trains on it and keeps it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
WORDS = REPO / "tasks" / "mujoco" / "planar_push_words.yaml"


def test_run_with_mode_sketch_synthesizes_a_sketch_then_trains(llm_env: dict, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", str(WORDS), "--runs-dir", str(runs), "--quiet",
         "--set", "training.total_steps=2048"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "WORKBENCH_RUNS_DIR": str(tmp_path / "w")})
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr  # measured: seed 0's sketch is accepted on PlanarPush
    assert "Traceback" not in proc.stderr
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
    assert elapsed < 300, elapsed
