"""The offline learners (bc, mopo, morec): their models on systems with a known answer, and the
real CLI on small recorded datasets (training, resume after SIGKILL, errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("minari", reason="offline RL is an optional extra: pip install 'rl-workbench[offline]'")

from workbench_testing import REPO, cli, kill_after_checkpoint, record_tiny_dataset, resume_to  # noqa: E402

from policies.offline.dynamics import (  # noqa: E402
    DynamicsReward,
    Ensemble,
    TerminalModel,
    fit_ensemble,
    fit_terminal,
    rollouts,
    split,
)
from workbench.datasets import Transitions  # noqa: E402

OFFLINE = REPO / "tasks" / "offline"
# small models and budgets: the real code paths in seconds
SMALL = ["learner.hyperparams.ensemble=3", "learner.hyperparams.elites=2", "learner.hyperparams.model_hidden=32",
         "learner.hyperparams.model_layers=2", "learner.hyperparams.model_max_epochs=5",
         "learner.hyperparams.rollout_batch=32", "learner.hyperparams.rollout_every=50",
         "learner.hyperparams.batch_size=64", "learner.hyperparams.hidden=[64, 64]",
         "sim.max_episode_steps=50", "evaluation.episodes=2", "evaluation.video=false",
         "training.eval_every=0"]


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _linear_system(n: int, rng: np.random.Generator, *, drift: float = 0.0) -> Transitions:
    """s' = A s + B a (+ drift on x0), r = s0 - 0.1 |a|², episodes of 10 steps."""
    a_mat = np.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.95]])
    b_mat = np.array([[0.5, 0.0], [0.0, 0.3], [0.2, -0.2]])
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    nxt = (obs @ a_mat.T + act @ b_mat.T).astype(np.float32)
    nxt[:, 0] += drift
    rew = (obs[:, 0] - 0.1 * (act ** 2).sum(1)).astype(np.float32)
    starts = np.zeros(n, dtype=bool)
    starts[::10] = True
    return Transitions(obs, act, rew, nxt, np.zeros(n, dtype=bool), starts, np.zeros(n // 10))


def test_the_ensemble_fits_a_known_linear_system() -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    data = _linear_system(4000, rng)
    model = Ensemble(3, 2, members=3, hidden=64, layers=2, elites=2)
    train, held = split(len(data), 0.1, rng)
    record = fit_ensemble(model, data, train=train, held=held, lr=3e-3, batch_size=128, max_epochs=60,
                          patience=5, rng=rng)
    target_var = np.concatenate([data.next_observations - data.observations, data.rewards[:, None]], 1)[held].var(0)
    assert min(record["holdout_mse"]) < 0.01 * target_var.mean()  # the system, not its mean
    assert record["holdout_log_likelihood"] > 1.0  # a sharp density on held-out transitions
    assert len(record["elites"]) == 2
    elite_mse = [record["holdout_mse"][i] for i in record["elites"]]
    assert max(elite_mse) <= min(e for i, e in enumerate(record["holdout_mse"]) if i not in record["elites"])
    obs = torch.as_tensor(data.observations[held][:5])
    act = torch.as_tensor(data.actions[held][:5])
    nxt, rew, uncertainty = model.sample(obs, act, n=4, generator=torch.Generator().manual_seed(0))
    assert nxt.shape == (4, 5, 3) and rew.shape == (4, 5) and uncertainty.shape == (5,)
    np.testing.assert_allclose(nxt.mean(0).numpy(), data.next_observations[held][:5], atol=0.15)


def test_the_terminal_model_learns_where_episodes_end() -> None:
    rng = np.random.default_rng(1)
    data = _linear_system(3000, rng)
    data.terminals = data.next_observations[:, 0] > 1.5  # "fell over" past a height
    model = TerminalModel(3)
    record = fit_terminal(model, data, rng=rng)
    assert record["recall"] > 0.9 and record["false_positive_rate"] < 0.1
    never = TerminalModel(3)
    data.terminals[:] = False
    assert fit_terminal(never, data, rng=rng) == {"terminals": 0}
    assert not never(torch.ones(4, 3) * 10).any()


def _small_model(*, seed: int, epochs: int) -> Ensemble:
    """A two-member ensemble fit to the linear system (3000 transitions)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    data = _linear_system(3000, rng)
    model = Ensemble(3, 2, members=2, hidden=32, layers=2, elites=2)
    train, held = split(len(data), 0.1, rng)
    fit_ensemble(model, data, train=train, held=held, lr=3e-3, batch_size=128, max_epochs=epochs, patience=3, rng=rng)
    return model


class _SaysRealWhileX0Below(torch.nn.Module):
    """A discriminator with a known answer: 'dataset transition' while the state's x0 < 0.5."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (0.5 - features[..., :1]) * 50.0


def test_filtered_rollouts_stop_when_the_dynamics_reward_says_so() -> None:
    model = _small_model(seed=2, epochs=20)
    reward = DynamicsReward(3, 2, 16)  # identity input normalisation: features = (s, a, s' - s)
    reward.snapshots.append(_SaysRealWhileX0Below())
    reward.threshold.fill_(0.5)
    start = np.zeros((64, 3), dtype=np.float32)
    push = np.array([[1.0, 0.0]], dtype=np.float32)  # drives x0 up by ~0.5 per step
    batch, stats = rollouts(start, lambda o: np.repeat(push, len(o), 0), model, TerminalModel(3), horizon=20,
                            penalty=0.0, generator=torch.Generator().manual_seed(0), dynamics_reward=reward,
                            candidates=8, temperature=0.05)
    assert stats.truncated == 1.0  # every rollout was stopped by the dynamics reward, none ran 20 steps
    assert 0 < stats.mean_length < 5
    assert (batch.observations[:, 0] < 0.5).all()  # no kept transition starts where it says "not real"
    assert stats.mean_dynamics_reward is not None and stats.mean_dynamics_reward >= 0.5
    unfiltered, plain = rollouts(start, lambda o: np.repeat(push, len(o), 0), model, TerminalModel(3), horizon=20,
                                 penalty=0.0, generator=torch.Generator().manual_seed(0))
    assert plain.truncated == 0.0 and plain.mean_length == 20 and len(unfiltered.rewards) == 64 * 20


def test_softmax_picks_the_candidates_the_dynamics_reward_prefers() -> None:
    rng = np.random.default_rng(3)
    model = _small_model(seed=3, epochs=5)
    with torch.no_grad():  # make the model noisy, so candidates differ
        model.min_logvar.fill_(0.0)
        model.max_logvar.fill_(0.5)

    class PrefersLowNextX1(torch.nn.Module):
        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return -features[..., 5 + 1:5 + 2] * 20.0  # the Δs of x1: features = (s[3], a[2], Δs[3])

    reward = DynamicsReward(3, 2, 16)
    reward.snapshots.append(PrefersLowNextX1())
    start = rng.normal(size=(256, 3)).astype(np.float32)
    act = lambda o: np.zeros((len(o), 2), dtype=np.float32)  # noqa: E731
    picked, _ = rollouts(start, act, model, TerminalModel(3), horizon=1, penalty=0.0,
                         generator=torch.Generator().manual_seed(1), dynamics_reward=reward, candidates=10,
                         temperature=0.01)
    drawn, _ = rollouts(start, act, model, TerminalModel(3), horizon=1, penalty=0.0,
                        generator=torch.Generator().manual_seed(1))
    assert (picked.next_observations[:, 1] - start[:, 1]).mean() < (drawn.next_observations[:, 1]
                                                                    - start[:, 1]).mean() - 0.5


@pytest.fixture(scope="module")
def hopper_data() -> str:
    record_tiny_dataset("test/hopper-tiny-v0", OFFLINE / "hopper_sac.yaml", episodes=6, steps=50, refs=(-10.0, 90.0))
    return "test/hopper-tiny-v0"


# MOREC in the default suite (it carries MOPO's model and rollouts, and a killed MOPO run resumes below);
# its two baselines, about 10 s each, in make test-slow.
@pytest.mark.parametrize("learner", [pytest.param("bc", marks=pytest.mark.slow),
                                     pytest.param("mopo", marks=pytest.mark.slow), "morec"])
def test_each_learner_trains_evaluates_and_reports_the_normalised_score(learner: str, hopper_data: str,
                                                                        tmp_path: Path) -> None:
    extra = ["learner.hyperparams.adversarial_steps=40", "learner.hyperparams.snapshot_every=10",
             "learner.hyperparams.rollout_length=10"] if learner == "morec" else []
    keep = SMALL if learner != "bc" else [s for s in SMALL if s.split("=")[0].split(".")[-1] in
                                          ("batch_size", "hidden", "max_episode_steps", "episodes", "video",
                                           "eval_every")]
    done = cli("run", str(OFFLINE / f"hopper_{learner}.yaml"), *_sets([*keep, *extra,
               f"learner.hyperparams.dataset={hopper_data}", "training.total_steps=200",
               "training.checkpoint_every=100"]), "--runs-dir", str(tmp_path), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "normalized_score=" in done.stdout
    run = next(tmp_path.iterdir())
    result = json.loads((run / "eval.json").read_text())
    assert result["reference_scores"] == [-10.0, 90.0]
    assert result["normalized_score"] == pytest.approx(100 * (result["mean_env_return"] + 10.0) / 100.0)
    record = json.loads((run / "offline" / "offline.json").read_text())
    assert record["updates"] == 200 and record["dataset"] == hopper_data
    if learner != "bc":
        assert record["dynamics"]["holdout_log_likelihood"] is not None
        assert [r["update"] for r in record["rounds"]] == [0, 50, 100, 150]
        # mopo's rollouts end only at the horizon or a predicted fall (random Hopper episodes fall)
        assert learner == "morec" or all(0 < r["transitions"] <= 32 * 5 and r["truncated"] == 0
                                         for r in record["rounds"])
    if learner == "morec":
        dyn = record["dynamics_reward"]
        assert dyn["steps"] == 40 and 0 <= dyn["threshold"] <= 1
        assert record["rollouts"]["mean_length"] <= 10
    again = cli("eval", str(run), "--episodes", "1", "--no-video")
    assert again.returncode == 0, again.stderr
    assert "normalized_score=" in again.stdout


def test_a_killed_mopo_run_resumes_from_its_checkpoint(hopper_data: str, tmp_path: Path) -> None:
    run = kill_after_checkpoint([str(OFFLINE / "hopper_mopo.yaml"), *_sets([
        *SMALL, f"learner.hyperparams.dataset={hopper_data}", "training.checkpoint_every=100"])],
        tmp_path, step=100, timeout=180)
    assert (run / "offline" / "dynamics.pt").is_file()  # the models are not trained again
    model_file = (run / "offline" / "dynamics.pt").stat().st_mtime
    done = resume_to(run, 400, budget="total_steps: 100000")
    assert done.returncode == 0, done.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["steps"] == 400 and info["resumed_from"] >= 100
    assert (run / "offline" / "dynamics.pt").stat().st_mtime == model_file
    record = json.loads((run / "offline" / "offline.json").read_text())
    assert record["updates"] == 400 and [r["update"] for r in record["rounds"]][:2] == [0, 50]


def test_bad_datasets_and_keys_exit_2_with_the_key(hopper_data: str, tmp_path: Path) -> None:
    task = str(OFFLINE / "hopper_mopo.yaml")
    missing = cli("validate", task, "--set", "learner.hyperparams.dataset=hopper-nothing-v0")
    assert missing.returncode == 2 and "learner.hyperparams.dataset" in missing.stderr
    assert "workbench data collect" in missing.stderr and "Traceback" not in missing.stderr
    other_env = cli("validate", str(OFFLINE / "halfcheetah_mopo.yaml"), "--set",
                    f"learner.hyperparams.dataset={hopper_data}")
    assert other_env.returncode == 2 and "observation space" in other_env.stderr
    assert "Hopper-v5" in other_env.stderr and "Traceback" not in other_env.stderr
    typo = cli("validate", task, "--set", f"learner.hyperparams.dataset={hopper_data}", "--set",
               "learner.hyperparams.rollout_lenght=5")
    assert typo.returncode == 2 and "rollout_length" in typo.stderr
    sac_typo = cli("validate", task, "--set", f"learner.hyperparams.dataset={hopper_data}", "--set",
                   "learner.hyperparams.sac={gama: 0.9}")
    assert sac_typo.returncode == 2 and "sac.gama" in sac_typo.stderr
    none = cli("validate", task, "--set", "learner.hyperparams={}")
    assert none.returncode == 2 and "dataset" in none.stderr


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(p.name for p in OFFLINE.glob("*_mo*.yaml")) + ["hopper_bc.yaml"])
def test_shipped_offline_tasks_run_5000_updates_end_to_end(task: str, tmp_path: Path) -> None:
    """Each shipped offline task, as shipped but for its dataset (a tiny recorded one of the same
    id) and the budget the issue names."""
    from workbench.spec import parse_yaml

    raw = parse_yaml((OFFLINE / task).read_text(), file=task)
    record_tiny_dataset(raw["learner"]["hyperparams"]["dataset"], OFFLINE / task, episodes=4, steps=100)
    done = cli("run", str(OFFLINE / task), "--set", "training.total_steps=5000", "--set", "evaluation.episodes=1",
               "--set", "evaluation.video=false", "--set", "sim.max_episode_steps=100", "--runs-dir", str(tmp_path),
               "--quiet", timeout=900)
    assert done.returncode == 0, done.stderr
