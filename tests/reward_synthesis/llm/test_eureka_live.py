"""Eureka end to end against the REAL local LLM server (SmolLM2-135M): K=2, R=1, W=1.

The small model's programs are usually rejected; either way the table, the files and the
verdict (winner or the no-winner report, and the exit code) must be well-formed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from reward_synthesis.llm.sources import make_client
from reward_synthesis.safety.checks import check_inputs
from workbench.cli import run_search_cli
from workbench.pipeline import train_and_evaluate
from workbench.reward import BuiltReward
from workbench.spec import load_task
from workbench.task import Task

TINY = """\
name: tiny
goal: Move the fingertip of the arm onto the target.
sim: {env_id: Reacher-v5}
learner: {name: ppo, hyperparams: {n_steps: 64, batch_size: 64, n_epochs: 2}}
training: {total_steps: 512, n_envs: 2}
evaluation: {episodes: 3, video: false}
"""


@pytest.mark.slow  # ~13 s on 2 cores; the default suite runs the search end to end in test_eureka.py
def test_eureka_search_with_the_local_model(llm_env: dict, tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    spec = load_task(tmp_path / "tiny.yaml")
    task = Task.build(spec, reward=BuiltReward(None, "searching"))
    env = task.make_env()
    try:
        samples, preference = check_inputs(env, task.profile, n=32)  # what `reward synth` passes
    finally:
        env.close()
    out = tmp_path / "out"
    client = make_client({"temperature": 0.2, "max_tokens": 200}, transcript=out / "llm" / "transcript.jsonl")
    console = Console(file=io.StringIO(), width=300)
    result = run_search_cli(task, spec.goal, client, samples, train=train_and_evaluate, candidates=2, rounds=1,
                            workers=1, proxy_steps=256, out_dir=out, console=console, preference=preference)

    assert [c.label for c in result.table] == ["r0_c0", "r0_c1"]
    table = json.loads((out / "candidates.json").read_text())
    assert table["finished"] is True and len(table["rows"]) == 2
    with open(out / "candidates.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["checks"] for r in rows] == [c.checks for c in result.table]
    for row, c in zip(rows, result.table):
        assert (out / row["program"]).is_file()
        assert c.checks in ("accepted", "rejected", "no code")
        assert (c.checks == "accepted") == (row["reason"] == "")
        assert c.status in (("trained", "failed", "duplicate") if c.checks == "accepted" else ("not trained",))
    # Each candidate asked with its own seeds (the endpoint ignores n; the cache keys on the seed).
    requests = [json.loads(line) for line in (out / "llm" / "transcript.jsonl").read_text().splitlines()]
    seeds = [r["params"]["seed"] for r in requests]
    assert len(seeds) == len(set(seeds)) >= 2
    text = console.file.getvalue()
    if result.winner is None:
        assert result.exit_code == 1 and table["winner"] is None
        assert not (out / "program.py").exists()
        assert "no winner: 2 candidates" in text and "candidates.csv" in text
    else:
        assert result.exit_code == 0 and table["winner"]["sha256"] == result.winner.sha256
        assert (out / "program.py").read_text() == result.winner.code
