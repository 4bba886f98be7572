from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from policies.base import FitHooks, load_policy
from policies.sb3 import SACLearner, SB3Policy
from workbench.errors import TaskError
from workbench.runs import Run
from workbench.spec import load_task
from workbench.task import Task


def _spec(tmp_path: Path, learner: str, hyperparams: str, extra: str = ""):
    path = tmp_path / "t.yaml"
    path.write_text(
        f"name: t\nsim: {{env_id: Reacher-v5}}\n"
        f"learner: {{name: {learner}, hyperparams: {hyperparams}{extra}}}\n"
        "training: {total_steps: 300, checkpoint_every: 100}\n"
    )
    return load_task(path)


@pytest.mark.parametrize("hp,match", [
    ("{lerning_rate: 1e-3}", "did you mean 'learning_rate'"),
    ("{env: x}", "no hyperparameter 'env'"),
    ("{learning_rate: fast}", "not a number or a schedule"),
    ("{learning_rate: lin_x}", "not a number or a schedule"),
    ("{policy_kwargs: {activation_fn: swish}}", "unknown activation"),
])
def test_bad_hyperparams_are_task_errors(tmp_path: Path, hp: str, match: str) -> None:
    with pytest.raises(TaskError, match=match):
        _spec(tmp_path, "ppo", hp)


def test_schedules_and_activation_names_reach_sb3(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "ppo", "{learning_rate: lin_1e-3, n_steps: 64, batch_size: 64, "
                 "policy_kwargs: {activation_fn: relu}}")
    task = Task.build(spec)
    run = Run.create(tmp_path / "runs", task="t", learner="ppo", seed=0, resolved=spec.resolved_dict(),
                     source_path=None)
    from policies.sb3 import PPOLearner

    policy = PPOLearner().fit(spec, task.env_fns(1), 128, run, hooks=FitHooks(checkpoint_every=10_000))
    import torch

    assert policy.model.lr_schedule(1.0) == pytest.approx(1e-3)
    assert policy.model.lr_schedule(0.5) == pytest.approx(5e-4)
    assert policy.model.policy.activation_fn is torch.nn.ReLU


def test_sac_checkpoint_resume_keeps_replay_buffer_and_steps(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "sac", "{learning_starts: 50, batch_size: 32, buffer_size: 1000, "
                 "policy_kwargs: {net_arch: [32, 32]}}", ", normalize: true")
    task = Task.build(spec)
    run = Run.create(tmp_path / "runs", task="t", learner="sac", seed=0, resolved=spec.resolved_dict(),
                     source_path=None)
    learner = SACLearner()
    learner.fit(spec, task.env_fns(1), 200, run, hooks=FitHooks(checkpoint_every=100))
    step, ckpt = run.latest_checkpoint()
    assert step == 200
    assert {p.name for p in ckpt.iterdir()} == {"model.zip", "replay_buffer.pkl", "vecnormalize.pkl"}
    policy = learner.fit(spec, task.env_fns(1), 300, run, hooks=FitHooks(checkpoint_every=100), resume=True)
    assert policy.model.num_timesteps == 300
    assert policy.model.replay_buffer.size() == 300  # 200 restored + 100 new
    # Only the newest checkpoints are kept.
    assert len(list((run.path / "checkpoints").glob("step_*"))) == 2

    # Saved policy = same actions after a round trip, with the observation normalizer applied.
    policy.save(tmp_path / "model")
    loaded = load_policy(tmp_path / "model")
    assert isinstance(loaded, SB3Policy) and loaded.obs_normalizer is not None
    obs = np.random.default_rng(0).normal(size=(5, 10))
    np.testing.assert_allclose(loaded.predict(obs, deterministic=True)[0],
                               policy.predict(obs, deterministic=True)[0], atol=1e-6)
