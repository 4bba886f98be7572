"""The one training entry point, ``workbench.pipeline.train_and_evaluate``: what a search or a
sweep hands around. Real Reacher, real PPO, tiny budgets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from reward_synthesis.program import CodeRewardProgram
from workbench.errors import RewardGuardError
from workbench.pipeline import EVALUATIONS_FILE, RunStopped, TrainFn, resume_run, train_and_evaluate
from workbench.reward import BuiltReward
from workbench.spec import load_task

TERMS = """import numpy as np

def compute_reward(state, action):
    d = float(np.linalg.norm(state.fingertip_pos - state.target_pos))
    return -d, {"distance": -d}
"""


def _spec(path: Path, *extra: str):
    return load_task(path, ["training.eval_every=256", "training.eval_episodes=2", *extra])


def test_trains_evaluates_and_records_periodic_evaluations(tiny_task: Path, tmp_path: Path) -> None:
    train: TrainFn = train_and_evaluate  # the shape searches receive
    result = train(_spec(tiny_task), tmp_path / "runs")
    run = result.run
    assert run.path.parent == tmp_path / "runs" and run.info()["status"] == "finished"
    # one periodic evaluation at 256; the one due at the budget (512) is the final evaluation
    assert [e["step"] for e in result.evaluations] == [256]
    assert json.loads((run.path / EVALUATIONS_FILE).read_text()) == result.evaluations
    assert set(result.evaluations[0]) >= {"success_rate", "mean_return", "mean_env_return", "mean_length",
                                          "components"}
    on_disk = json.loads((run.path / "eval.json").read_text())
    assert on_disk["episodes"] == 3 == result.evaluation.episodes
    assert on_disk["mean_return"] == pytest.approx(result.evaluation.mean_return)
    # the policy and the live task come back, to watch the policy further
    env = result.task.make_env()
    obs, _ = env.reset(seed=0)
    action, _ = result.policy.predict(obs, deterministic=True)
    assert env.action_space.contains(np.asarray(action, dtype=env.action_space.dtype))
    env.close()


def test_a_handed_in_reward_trains_and_is_recorded(tiny_task: Path, tmp_path: Path) -> None:
    program = CodeRewardProgram(TERMS, name="candidate", filename="candidate.py")
    result = train_and_evaluate(_spec(tiny_task), tmp_path, reward=BuiltReward(program, "a candidate", TERMS))
    assert (result.run.path / "reward" / "program.py").read_text() == TERMS
    assert "distance" in result.evaluation.components
    assert result.evaluation.components["distance"]["mean"] < 0


def test_a_reward_that_breaks_in_training_stops_the_run_with_its_cause(tiny_task: Path, tmp_path: Path) -> None:
    poison = "def compute_reward(state, action):\n    return float('nan'), {}\n"
    program = CodeRewardProgram(poison, name="poison", filename="poison.py")
    with pytest.raises(RunStopped) as caught:
        train_and_evaluate(_spec(tiny_task), tmp_path / "runs", reward=BuiltReward(program, "poison", poison))
    assert isinstance(caught.value.cause, RewardGuardError)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_resume_keeps_the_evaluations_up_to_its_checkpoint(tiny_task: Path, tmp_path: Path) -> None:
    first = train_and_evaluate(_spec(tiny_task, "training.eval_every=128"), tmp_path)
    assert [e["step"] for e in first.evaluations] == [128, 256, 384]
    run = first.run
    # as if the run had been killed after its checkpoint at 256, its evaluation at 384 written
    ckpts = run.path / "checkpoints"
    kept = ckpts / f"step_{256:010d}"
    assert kept.is_dir()
    for d in ckpts.glob("step_*"):
        if d != kept:
            shutil.rmtree(d)
    (ckpts / "latest.json").write_text(json.dumps({"step": 256, "dir": kept.name}))
    shutil.rmtree(run.path / "model")
    run.update_info(status="interrupted")
    resumed = resume_run(run.path, quiet=True)
    assert [e["step"] for e in resumed.evaluations] == [128, 256, 384]
    assert json.loads((run.path / EVALUATIONS_FILE).read_text()) == resumed.evaluations
    assert resumed.run.info()["status"] == "finished"
