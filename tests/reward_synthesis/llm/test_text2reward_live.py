"""Text2Reward's repair loop and `workbench reward synth` against the REAL local LLM server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reward_synthesis.language.text2reward import synthesize
from reward_synthesis.llm.sources import make_client
from reward_synthesis.safety.checks import collect_samples
from workbench.reward import BuiltReward
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parents[3]
REACHER = REPO / "tasks" / "mujoco" / "reacher.yaml"
LLM = {"temperature": 0.2, "max_tokens": 200}


def test_repair_loop_sends_the_exact_reason_back(llm_env: dict, tmp_path: Path) -> None:
    task = Task.build(load_task(REACHER), reward=BuiltReward(None, "synthesizing"))
    env = task.make_env()
    samples = collect_samples(env, task.profile.schema, n=32, seed=0)
    env.close()
    transcript = tmp_path / "transcript.jsonl"
    client = make_client(LLM, transcript=transcript)
    result = synthesize(task, "Move the fingertip onto the target.", client, samples, attempts=2, seed=0)

    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert len(lines) == len(result.attempts) >= 1
    first = result.attempts[0]
    assert first.reply == lines[0]["text"]
    if first.accepted:  # a strong-enough reply ends the loop; nothing to repair
        return
    # The small model's first reply really is broken: the checker's exact reason went back.
    assert first.reason
    repair_request = lines[1]["messages"]
    assert repair_request[-2] == {"role": "assistant", "content": first.reply}
    assert first.reason in repair_request[-1]["content"]
    assert all(a.accepted or a.reason for a in result.attempts)


def _synth(out: Path, env: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", "reward", "synth", "--task", str(REACHER), "--attempts", "2",
         "--temperature", "0.2", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=900, env=env)


@pytest.mark.slow  # ~40-60 s; offline replay of a synthesis is also tested in test_sketch_live (default suite)
def test_synth_cli_reports_and_replays_offline(llm_env: dict, tmp_path: Path) -> None:
    env = dict(os.environ)
    first = _synth(tmp_path / "a", env)
    assert first.returncode in (0, 1), first.stderr
    assert "Traceback" not in first.stderr
    synthesis = json.loads((tmp_path / "a" / "synthesis.json").read_text())
    assert len(synthesis["attempts"]) >= 1
    assert (tmp_path / "a" / "llm" / "transcript.jsonl").is_file()
    assert (first.returncode == 0) == (tmp_path / "a" / "program.py").is_file()
    # Same requests again, with no LLM allowed: replayed from the cache, same verdicts.
    second = _synth(tmp_path / "b", env, "--offline")
    assert second.returncode == first.returncode, second.stderr
    again = json.loads((tmp_path / "b" / "synthesis.json").read_text())
    assert [a["reply"] for a in again["attempts"]] == [a["reply"] for a in synthesis["attempts"]]
    assert all(a["cached"] for a in again["attempts"])


def test_offline_without_cache_names_the_missing_request(llm_env: dict, tmp_path: Path) -> None:
    proc = _synth(tmp_path / "c", dict(os.environ), "--offline", "--seed", "987")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cache" in proc.stderr.lower()


@pytest.mark.slow  # ~45 s; the default suite runs `workbench run` with a sketch (test_text2reward_sketch_live)
def test_run_with_a_text2reward_task_synthesizes_then_trains_or_reports(llm_env: dict, tmp_path: Path) -> None:
    """One `workbench run`: synthesize with the local model, then train on the accepted program —
    or, when every attempt is rejected (usual for a 135M model), one clear message and exit 2."""
    task = REPO / "tasks" / "mujoco" / "reacher_text2reward.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", str(task), "--runs-dir", str(tmp_path / "runs"), "--quiet",
         "--set", "reward.mode=code", "--set", "reward.attempts=2", "--set", "reward.llm.max_tokens=200",
         "--set", "training.total_steps=512",
         "--set", "training.n_envs=2", "--set", "learner.hyperparams.n_steps=128",
         "--set", "learner.hyperparams.batch_size=64", "--set", "training.eval_every=0",
         "--set", "evaluation.episodes=2", "--set", "evaluation.video=false"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "WORKBENCH_RUNS_DIR": str(tmp_path / "w")})
    assert "Traceback" not in proc.stderr
    if proc.returncode == 0:
        (run,) = list((tmp_path / "runs").iterdir())
        assert (run / "reward" / "program.py").is_file() and (run / "llm" / "transcript.jsonl").is_file()
        assert "path: reward/program.py" in (run / "task.yaml").read_text()
    else:
        assert proc.returncode == 2, proc.stderr
        assert "none of 2 attempts" in proc.stderr and "fix:" in proc.stderr
        (kept,) = list((tmp_path / "w" / "synth").iterdir())  # the failed synthesis is kept for the user
        assert (kept / "llm" / "transcript.jsonl").is_file() and (kept / "reward" / "synthesis.json").is_file()


@pytest.mark.slow  # ~17 s on 2 cores; the refine prompt is checked in test_text2reward.py, the live repair loop here
def test_refine_makes_the_next_version_or_reports(llm_env: dict, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    trained = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", str(REACHER), "--runs-dir", str(runs), "--quiet",
         "--set", "training.total_steps=256", "--set", "training.n_envs=1", "--set", "learner.hyperparams.n_steps=256",
         "--set", "learner.hyperparams.batch_size=64", "--set", "training.eval_every=0",
         "--set", "evaluation.episodes=1", "--set", "evaluation.video=false"],
        capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    (run,) = list(runs.iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "reward", "refine", str(run), "--feedback", "it overshoots the target",
         "--attempts", "1"], capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    record = json.loads((run / "reward" / "refine_v2.json").read_text())
    assert record["feedback"] == ["it overshoots the target"]
    transcript = [json.loads(line) for line in (run / "llm" / "transcript.jsonl").read_text().splitlines()]
    prompt = transcript[-1]["messages"][-1]["content"]
    assert "it overshoots the target" in prompt and "def compute_reward" in prompt
    assert (proc.returncode == 0) == (run / "reward" / "program_v2.py").is_file()
