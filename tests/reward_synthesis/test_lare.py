"""LaRe: episodic wrapper, encoder verification, decoder by return decomposition, the source, a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from reward_synthesis.episodic.lare import (
    FACTORS_KEY,
    STATE_FILE,
    LatentRewardVec,
    RewardDecoder,
    StateActionFactors,
    verify_encoder,
)
from reward_synthesis.safety.checks import collect_samples
from workbench.errors import TaskError
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parents[2]
HOPPER_LARE = REPO / "tasks" / "mujoco" / "hopper_lare.yaml"
HOPPER_EPISODIC = REPO / "tasks" / "mujoco" / "hopper_episodic.yaml"
GOOD = (REPO / "tasks" / "mujoco" / "encoders" / "hopper_factors.py").read_text()


@pytest.fixture(scope="module")
def hopper_samples() -> list:
    task = Task.build(load_task(HOPPER_EPISODIC))
    env = task.make_env()
    try:
        return collect_samples(env, task.profile.schema, n=64, seed=0)
    finally:
        env.close()


# ----------------------------------------------------------------------------- episodic wrapper


def test_episodic_wrapper_pays_zeros_then_the_total_and_keeps_env_reward() -> None:
    task = Task.build(load_task(HOPPER_EPISODIC, ["sim.max_episode_steps=12"]))
    env = task.make_env()
    env.reset(seed=0)
    env.action_space.seed(0)
    paid, per_step = [], []
    for _ in range(40):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        paid.append(float(reward))
        per_step.append(info["reward/env"])
        if terminated or truncated:
            break
    env.close()
    assert all(p == 0.0 for p in paid[:-1])
    assert paid[-1] == pytest.approx(sum(per_step))
    assert len(set(per_step)) > 1  # the true per-step reward really varies; it is only withheld


def test_episodic_wrapper_in_a_vec_env_with_auto_reset() -> None:
    task = Task.build(load_task(HOPPER_EPISODIC, ["sim.max_episode_steps=7"]))
    venv = task.wrap_vec(DummyVecEnv(task.env_fns(2)))
    venv.seed(0)
    venv.reset()
    sums = np.zeros(2)
    episodes = 0
    for _ in range(30):
        actions = np.stack([venv.action_space.sample() for _ in range(2)])
        _, rewards, dones, infos = venv.step(actions)
        for i in range(2):
            sums[i] += infos[i]["reward/env"]
            if dones[i]:
                assert rewards[i] == pytest.approx(sums[i], rel=1e-5)
                sums[i] = 0.0
                episodes += 1
            else:
                assert rewards[i] == 0.0
    venv.close()
    assert episodes >= 4  # several episodes per env: the sums restart after each auto-reset


# ----------------------------------------------------------------------------- encoder verification


def test_verification_accepts_a_good_encoder(hopper_samples: list) -> None:
    report, names = verify_encoder(GOOD, hopper_samples, filename="good.py")
    assert report.accepted, report.render()
    assert names == ["forward_velocity", "height_margin", "tilt", "effort", "vertical_speed"]


@pytest.mark.parametrize("code, check, words", [
    ("def encode_factors(state, action):\n    return {'flat': 1.0, 'v': float(state.x_velocity)}\n",
     "varies", "factors ['flat'] are constant"),
    ("import numpy as np\ndef encode_factors(state, action):\n"
     "    return {'v': float(state.x_velocity), 'bad': float(np.nan)}\n",
     "finite", "factor 'bad' is nan at sample 0"),
    ("def encode_factors(state, action):\n    return {'q': state.qpos}\n",
     "output_contract", "component 'q' is an array of shape (6,)"),
    ("def encode_factors(state, action):\n    return [float(state.x_velocity)]\n",
     "isolated_run", "returned a list or tuple"),
    ("def encode(state, action):\n    return {'v': 1.0}\n", "entry_point", "must define encode_factors"),
    ("def encode_factors(state, action):\n    return {'v': [1.0)}\n", "static", "bad.py:2:"),
    ("import os\ndef encode_factors(state, action):\n    return {'v': 1.0}\n", "static", "import of 'os'"),
])
def test_verification_rejects_with_the_exact_reason(hopper_samples: list, code: str, check: str, words: str) -> None:
    report, _ = verify_encoder(code, hopper_samples, filename="bad.py")
    assert not report.accepted
    failed = [r for r in report.results if not r.passed and not r.skipped]
    assert [r.name for r in failed] == [check]
    assert words in failed[0].detail


def test_too_many_factors_is_rejected(hopper_samples: list) -> None:
    code = ("def encode_factors(state, action):\n"
            "    return {'a' + str(i): float(state.qpos[i % 6]) * (i + 1) for i in range(5)}\n")
    report, _ = verify_encoder(code, hopper_samples, max_factors=3)
    assert [r.name for r in report.results if not r.passed and not r.skipped] == ["factor_count"]


# ----------------------------------------------------------------------------- decoder


def _synthetic(n: int, rng: np.random.Generator, w: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Episodes with sum-decomposable ground truth r_t = w·φ_t (+ a nonlinearity the MLP can fit)."""
    out = []
    for _ in range(n):
        t = int(rng.integers(20, 80))
        x = rng.normal(size=(t, len(w))).astype(np.float32)
        r = x @ w + 0.5 * np.maximum(x[:, 0], 0)
        out.append((x, float(r.sum()), r))
    return out


@pytest.mark.parametrize("loss", ["lare", "rd"])
def test_decoder_recovers_per_step_rewards_from_returns(loss: str) -> None:
    rng = np.random.default_rng(0)
    w = np.array([1.0, -2.0, 0.5, 0.0])
    train = _synthetic(300, rng, w)
    test = _synthetic(20, rng, w)
    decoder = RewardDecoder(4, loss=loss, subsequence=32, lr=3e-3, seed=0)
    for _ in range(12):
        decoder.fit([(x, ret) for x, ret, _ in train], steps=50, batch=32)
    x = np.concatenate([e[0] for e in test])
    truth = np.concatenate([e[2] for e in test])
    pred = decoder.predict(x)
    assert np.corrcoef(pred, truth)[0, 1] > 0.95
    # The factor with weight 0 gets the smallest attribution.
    assert int(np.argmin(decoder.attributions(x))) == 3


def test_relabeller_state_survives_a_restart(tmp_path: Path) -> None:
    """The decoder saved into a checkpoint is what a new wrapper (a resumed run) starts from."""
    task = Task.build(load_task(HOPPER_EPISODIC, ["sim.max_episode_steps=10"]))
    probe = task.make_env()
    factors = StateActionFactors(probe.observation_space, probe.action_space)
    probe.close()

    def make() -> LatentRewardVec:
        from reward_synthesis.episodic.lare import EpisodicReward

        fns = [lambda: EpisodicReward(task.make_env(), factors=factors) for _ in range(2)]
        return LatentRewardVec(DummyVecEnv(fns), RewardDecoder(len(factors.names), seed=0), factors.names,
                               update_every=40, updates=5, warmup_episodes=2)

    venv = make()
    venv.seed(0)
    venv.reset()
    for _ in range(30):
        _, rewards, _, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
    assert venv.decoder.fitted >= 1
    venv.save_checkpoint(tmp_path)
    assert (tmp_path / STATE_FILE).is_file()
    assert "reward/lare_loss" in infos[0] and f"reward/lare_attr/{factors.names[0]}" in infos[0]
    assert rewards[0] == pytest.approx(infos[0]["reward/lare"])
    x = np.random.default_rng(1).normal(size=(8, len(factors.names))).astype(np.float32)
    again = make()
    again.load_checkpoint(tmp_path)
    assert again.decoder.fitted == venv.decoder.fitted and again.steps == venv.steps
    np.testing.assert_allclose(again.decoder.predict(x), venv.decoder.predict(x), rtol=1e-6)
    venv.close()
    again.close()


# ----------------------------------------------------------------------------- the source


def test_lare_source_builds_on_mujoco_with_a_hand_written_encoder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(tmp_path))
    task = Task.build(load_task(HOPPER_LARE))
    built = task.reward
    assert built.record["factor_names"] == ["forward_velocity", "height_margin", "tilt", "effort", "vertical_speed"]
    assert built.files["reward/encoder_0.py"] == GOOD
    assert built.resolved["encoder"] == ["reward/encoder_0.py"]
    assert json.loads(built.files["reward/encoder_checks.json"])
    env = task.make_env()
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    env.close()
    assert reward == 0.0 and info["reward/env"] != 0.0
    assert info[FACTORS_KEY].shape == (5,) and np.all(np.isfinite(info[FACTORS_KEY]))


def test_rd_on_state_uses_observation_and_action() -> None:
    task = Task.build(load_task(HOPPER_LARE, ["reward.factors=state"]))
    assert len(task.reward.record["factor_names"]) == 11 + 3
    assert "encoder" not in task.reward.resolved and task.reward.resolved["factors"] == "state"


def test_missing_encoder_file_names_the_key() -> None:
    with pytest.raises(TaskError) as err:
        load_task(HOPPER_LARE, ["reward.encoder=encoders/nope.py"])
    assert err.value.key == "reward.encoder" and "nope.py" in err.value.message


def test_a_rejected_encoder_file_stops_the_build(tmp_path: Path) -> None:
    bad = tmp_path / "flat.py"
    bad.write_text("def encode_factors(state, action):\n    return {'one': 1.0}\n")
    from workbench.errors import RewardCodeRejected

    with pytest.raises(RewardCodeRejected, match="constant"):
        Task.build(load_task(HOPPER_LARE, [f"reward.encoder={bad}"]))


# ----------------------------------------------------------------------------- a real run


def test_tiny_ppo_run_with_lare_writes_decoder_metrics(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sets = ["training.total_steps=1200", "training.n_envs=2", "training.eval_every=0",
            "training.checkpoint_every=600", "learner.hyperparams.n_steps=128", "learner.hyperparams.batch_size=64",
            "learner.hyperparams.n_epochs=1", "evaluation.episodes=2", "evaluation.video=false",
            "reward.update_every=200", "reward.updates=5", "reward.warmup_episodes=2"]
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "run", str(HOPPER_LARE), "--quiet",
                           "--runs-dir", str(tmp_path), *[a for s in sets for a in ("--set", s)]],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = next(p for p in tmp_path.glob("hopper_lare__*") if (p / "eval.json").is_file())
    resolved = (run / "task.yaml").read_text()
    assert "reward/encoder_0.py" in resolved and (run / "reward" / "encoder_0.py").is_file()
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    state_file = run / "checkpoints" / latest["dir"] / STATE_FILE
    assert state_file.is_file()  # the decoder is saved with the policy it trained
    acc = EventAccumulator(str(next((run / "tb").glob("*"))))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"reward/lare", "reward/lare_loss", "reward/env", "reward/lare_attr/forward_velocity"} <= set(tags)
    # The evaluation judges by the task's own metric and the env's true return.
    ev = json.loads((run / "eval.json").read_text())
    assert ev["success_rate"] is not None and ev["mean_env_return"] == pytest.approx(ev["mean_return"], rel=1e-4)

    # Resume with a larger budget: the decoder continues from its saved state, not from scratch.
    import torch
    import yaml

    before = torch.load(state_file, weights_only=False)
    data = yaml.safe_load((run / "task.yaml").read_text())
    data["training"]["total_steps"] = 1800
    (run / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "run", "--resume", str(run), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    after = torch.load(run / "checkpoints" / latest["dir"] / STATE_FILE, weights_only=False)
    assert after["decoder"]["fitted"] > before["decoder"]["fitted"] and after["steps"] > before["steps"] >= 1000
