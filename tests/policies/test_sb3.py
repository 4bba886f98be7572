from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from policies.sb3 import SACLearner, SB3Policy
from workbench.errors import TaskError
from workbench.learner import FitHooks, load_policy
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


# Each of these passed `validate` and then crashed `run` inside SB3 (assert, TypeError, ValueError).
@pytest.mark.parametrize("learner,hp,key", [
    ("ppo", "{n_steps: -5}", "n_steps"),
    ("ppo", "{n_steps: 1}", "n_steps"),  # n_steps * n_envs must be > 1 (SB3 asserts)
    ("ppo", "{n_steps: 64.5}", "n_steps"),
    ("ppo", "{batch_size: 1}", "batch_size"),
    ("ppo", "{batch_size: 0}", "batch_size"),
    ("ppo", "{n_epochs: 0}", "n_epochs"),
    ("ppo", "{gamma: 1.5}", "gamma"),
    ("ppo", "{gae_lambda: -0.1}", "gae_lambda"),
    ("ppo", "{clip_range: 0}", "clip_range"),
    ("ppo", "{clip_range_vf: -1}", "clip_range_vf"),
    ("ppo", "{learning_rate: .nan}", "learning_rate"),
    ("ppo", "{learning_rate: -3e-4}", "learning_rate"),
    ("ppo", "{ent_coef: '0.01'}", "ent_coef"),
    ("ppo", "{normalize_advantage: 'yes'}", "normalize_advantage"),
    ("ppo", "{device: gpu}", "device"),
    ("ppo", "{policy_kwargs: [64]}", "policy_kwargs"),
    ("ppo", "{policy_kwargs: {net_arch: {pi: [64], critic: [64]}}}", "policy_kwargs.net_arch"),
    ("ppo", "{policy_kwargs: {optimizer_class: 'os:system'}}", "policy_kwargs.optimizer_class"),
    ("ppo", "{policy_kwargs: {use_sde: true}}", "policy_kwargs.use_sde"),  # SB3 passes it itself
    ("ppo", "{rollout_buffer_class: 'os:system'}", "rollout_buffer_class"),
    ("sac", "{buffer_size: 0}", "buffer_size"),
    ("sac", f"{{buffer_size: {10**12}}}", "buffer_size"),
    ("sac", "{learning_starts: -1}", "learning_starts"),
    ("sac", "{tau: 2}", "tau"),
    ("sac", "{train_freq: [4, step]}", "train_freq"),
    ("sac", "{gradient_steps: 0}", "gradient_steps"),
    ("sac", "{ent_coef: auto_0}", "ent_coef"),
    ("sac", "{ent_coef: fast}", "ent_coef"),
    ("sac", "{target_entropy: high}", "target_entropy"),
    ("sac", "{optimize_memory_usage: true}", "optimize_memory_usage"),
    ("sac", "{action_noise: normal}", "action_noise"),
    ("sac", "{policy_kwargs: {n_critics: 0}}", "policy_kwargs.n_critics"),
])
def test_hyperparams_sb3_would_reject_fail_validation(tmp_path: Path, learner: str, hp: str, key: str) -> None:
    with pytest.raises(TaskError) as info:
        _spec(tmp_path, learner, hp)
    assert info.value.key == f"learner.hyperparams.{key}", str(info.value)


@pytest.mark.parametrize("learner,hp,n_envs", [
    ("ppo", "{n_steps: 1, batch_size: 2, n_epochs: 1, clip_range_vf: 0.2, learning_rate: lin_1e-3, "
            "target_kl: 0.01, device: auto, policy_kwargs: {net_arch: {pi: [8], vf: [8]}, ortho_init: false}}", 2),
    ("ppo", "{n_steps: 1, batch_size: 1, normalize_advantage: false}", 1),
    ("sac", "{buffer_size: 1e4, learning_starts: 0, ent_coef: auto_0.5, gradient_steps: -1, train_freq: 2, "
            "target_entropy: -1.5, tau: 1, policy_kwargs: {net_arch: {pi: [8], qf: [8]}, n_critics: 1}}", 1),
    ("sac", "{optimize_memory_usage: true, replay_buffer_kwargs: {handle_timeout_termination: false}, "
            "buffer_size: 100, ent_coef: 0.1}", 1),
])
def test_edge_values_validation_accepts_sb3_also_accepts(tmp_path: Path, learner: str, hp: str, n_envs: int) -> None:
    """The table is no stricter than SB3 at its edges: what validates, SB3 builds and trains on."""
    path = tmp_path / "t.yaml"
    path.write_text(f"sim: {{env_id: Reacher-v5}}\nlearner: {{name: {learner}, hyperparams: {hp}}}\n"
                    f"training: {{total_steps: 8, n_envs: {n_envs}, seed: {2**32 - 1}}}\n")
    spec = load_task(path)
    task = Task.build(spec)
    run = Run.create(tmp_path / "runs", task="t", learner=learner, seed=spec.training.seed,
                     resolved=spec.resolved_dict(), source_path=None)
    from workbench.registry import LEARNERS

    policy = LEARNERS.get(learner)().fit(spec, task.env_fns(n_envs), 8, run, hooks=FitHooks(checkpoint_every=10_000))
    assert policy.model.num_timesteps >= 8


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
