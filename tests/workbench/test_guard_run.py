"""A reward program that turns bad in the middle of training stops the run cleanly: one message
naming the program and the step, a checkpoint at that step, run.json `failed` (issue 13).

The programs are handed to the pipeline directly, past the pre-flight, as a program that behaves
on every state the pre-flight samples and not on some state training reaches would be.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from reward_synthesis.program import CodeRewardProgram
from workbench import pipeline
from workbench.errors import WorkbenchError
from workbench.reward import BuiltReward
from workbench.runs import Run
from workbench.spec import load_task
from workbench.task import Task


def program(body: str) -> str:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"import numpy as np\n\ndef compute_reward(state, action):\n{lines}\n"


# Reacher's fingertip starts at x = 0.21; random actions take it past x = -0.15 within ~100 steps.
HANGS_ON_THE_LEFT = program("""
if state.fingertip_pos[0] < -0.15:
    total = 0.0
    for i in range(1000000):
        for j in range(1000000):
            total += j
    return total
return -float(np.linalg.norm(state.fingertip_to_target))
""")
NAN_ON_THE_LEFT = program("""
if state.fingertip_pos[0] < -0.15:
    return float(np.log(-1.0))
return -float(np.linalg.norm(state.fingertip_to_target))
""")


@pytest.mark.parametrize("source, fragment, vec_env", [
    (HANGS_ON_THE_LEFT, "ran longer than its limit of 0.3 s", "dummy"),
    (NAN_ON_THE_LEFT, "returned a non-finite total (nan)", "dummy"),
    (NAN_ON_THE_LEFT, "returned a non-finite total (nan)", "subproc"),
], ids=["hang", "nan", "nan-in-a-subprocess-env"])
def test_a_reward_that_turns_bad_stops_the_run_with_a_checkpoint(tiny_task: Path, tmp_path: Path, source: str,
                                                                 fragment: str, vec_env: str) -> None:
    spec = load_task(tiny_task, ["training.total_steps=4096", f"training.vec_env={vec_env}"])
    prog = CodeRewardProgram(source, filename="turns_bad.py", timeout_s=0.3)
    task = Task.build(spec, reward=BuiltReward(prog, "turns bad on the left"))
    run = Run.create(tmp_path, task="tiny", learner="ppo", seed=0, resolved=spec.resolved_dict(), source_path=None)
    started = time.monotonic()
    with pytest.raises(WorkbenchError) as caught:
        pipeline._train_and_evaluate(task, run, resume=False, quiet=True, console=Console())
    assert time.monotonic() - started < 60
    message = str(caught.value)
    assert "reward program turns_bad.py (call " in message and fragment in message
    info = json.loads((run.path / "run.json").read_text())
    assert info["status"] == "failed" and fragment in info["error"]
    step = json.loads((run.path / "checkpoints" / "latest.json").read_text())["step"]
    assert 0 < step < 4096 and info["steps"] == step
    assert f"training stopped at step {step}; checkpoint saved" in message


def test_an_unexpected_error_never_leaves_a_run_marked_running(tiny_task: Path, tmp_path: Path) -> None:
    spec = load_task(tiny_task)
    task = Task.build(spec)
    run = Run.create(tmp_path, task="tiny", learner="ppo", seed=0, resolved=spec.resolved_dict(), source_path=None)
    task.env_fns = None  # an internal bug in the middle of the run: calling it raises TypeError
    with pytest.raises(TypeError):
        pipeline._train_and_evaluate(task, run, resume=False, quiet=True, console=Console())
    info = json.loads((run.path / "run.json").read_text())
    assert info["status"] == "failed" and info["error"].startswith("TypeError")
