"""Offline datasets: recorded through the real Minari package, read back, and the CLI around them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("minari", reason="offline datasets are an optional extra: pip install 'rl-workbench[offline]'")

from workbench_testing import REPO, cli  # noqa: E402

from workbench.datasets import (  # noqa: E402
    RandomPolicy,
    check_spaces,
    dataset_summary,
    load_transitions,
    normalized_score,
    open_dataset,
    policy_acts,
    record_rollouts,
    reference_scores,
)
from workbench.errors import TaskError, WorkbenchError  # noqa: E402
from workbench.spec import load_task  # noqa: E402
from workbench.task import Task  # noqa: E402

CHEETAH = REPO / "tasks" / "offline" / "halfcheetah_sac.yaml"
HOPPER = REPO / "tasks" / "offline" / "hopper_sac.yaml"


def _task(path: Path, steps: int = 30) -> Task:
    return Task.build(load_task(path, [f"sim.max_episode_steps={steps}"]))


def test_a_recorded_dataset_round_trips_through_minari() -> None:
    task = _task(HOPPER)
    env = task.make_env()
    space = env.action_space
    record_rollouts(task, policy_acts(RandomPolicy(space, 3), deterministic=False), name="test/roundtrip-v0",
                    episodes=3, seed=10, refs=(-5.0, 50.0),
                    policy_record={"kind": "random", "describe": "uniform random actions"})
    data = load_transitions(open_dataset("test/roundtrip-v0"))
    # the same episodes again, outside Minari: same seeds, same actions
    replay_policy = RandomPolicy(space, 3)
    obs_seen, rewards, ends = [], [], []
    for i in range(3):
        obs, _ = env.reset(seed=10 + i)
        done = False
        while not done:
            action = replay_policy.predict(obs)[0]
            nxt, reward, terminated, truncated, _ = env.step(action)
            obs_seen.append(obs)
            rewards.append(reward)
            ends.append(terminated)
            obs, done = nxt, terminated or truncated
    env.close()
    np.testing.assert_allclose(data.observations, np.array(obs_seen, dtype=np.float32), rtol=1e-6)
    np.testing.assert_allclose(data.rewards, np.array(rewards, dtype=np.float32), rtol=1e-6)
    assert data.terminals.tolist() == ends
    assert data.episode_starts.sum() == 3
    np.testing.assert_allclose(data.next_observations[:-1][~data.episode_starts[1:]],
                               data.observations[1:][~data.episode_starts[1:]])
    summary = dataset_summary("test/roundtrip-v0")
    assert summary["episodes"] == 3 and summary["steps"] == len(data)
    assert summary["task"] == "hopper_sac" and summary["env_id"] == "Hopper-v5"
    assert summary["policy"]["kind"] == "random"
    dataset = open_dataset("test/roundtrip-v0")
    assert reference_scores(dataset) == (-5.0, 50.0)
    assert normalized_score(50.0, (-5.0, 50.0)) == 100.0 and normalized_score(-5.0, (-5.0, 50.0)) == 0.0


def test_a_dataset_of_another_env_is_refused_with_the_key() -> None:
    task = _task(HOPPER)
    env = task.make_env()
    record_rollouts(task, policy_acts(RandomPolicy(env.action_space, 0), deterministic=False),
                    name="test/hopper-for-mismatch-v0", episodes=1, seed=0, refs=(0.0, None),
                    policy_record={"kind": "random", "describe": "random"})
    env.close()
    cheetah = _task(CHEETAH).make_env()
    try:
        with pytest.raises(TaskError) as err:
            check_spaces(open_dataset("test/hopper-for-mismatch-v0"), cheetah, file="t.yaml",
                         key="learner.hyperparams.dataset")
    finally:
        cheetah.close()
    assert err.value.key == "learner.hyperparams.dataset"
    assert "observation space" in err.value.message and "Hopper-v5" in err.value.message


def test_unknown_and_malformed_ids_name_the_fix() -> None:
    with pytest.raises(TaskError) as err:
        open_dataset("nothing-here-v0", file="t.yaml", key="learner.hyperparams.dataset")
    assert "workbench data collect" in err.value.hint
    with pytest.raises(TaskError) as err:
        open_dataset("no version", key="--out")
    assert "-v" in err.value.hint


def test_cli_collect_list_show_and_refusals(tmp_path: Path) -> None:
    args = ["data", "collect", str(HOPPER), "--policy", "random", "--episodes", "2", "--reference-episodes", "1",
            "--set", "sim.max_episode_steps=20"]
    done = cli(*args, "--out", "test/cli-random-v0")
    assert done.returncode == 0, done.stderr
    assert "episodes: 2" in done.stdout and "env_id: Hopper-v5" in done.stdout
    again = cli(*args, "--out", "test/cli-random-v0")
    assert again.returncode == 2 and "exists" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr
    bad = cli(*args, "--out", "not a dataset id")
    assert bad.returncode == 2 and "dataset id" in bad.stderr and "Traceback" not in bad.stderr
    listed = cli("data", "list")
    assert listed.returncode == 0 and "test/cli-random-v0" in listed.stdout
    shown = cli("data", "show", "test/cli-random-v0")
    assert shown.returncode == 0 and "policy: {'kind': 'random'" in shown.stdout
    missing = cli("data", "show", "test/absent-v0")
    assert missing.returncode == 2 and "no local dataset" in missing.stderr
    no_run = cli(*args[:4], "--policy", str(tmp_path), "--out", "test/x-v0")
    assert no_run.returncode == 2 and "Traceback" not in no_run.stderr


def test_the_scripted_reference_with_noise_is_a_medium_policy() -> None:
    """PlanarPush's scripted pusher: the expert reference score, and with action noise a weaker policy."""
    planar = REPO / "tasks" / "mujoco" / "planar_push.yaml"
    done = cli("data", "collect", str(planar), "--policy", "reference", "--noise", "1.5", "--episodes", "3",
               "--reference-episodes", "2", "--out", "test/pp-noisy-v0")
    assert done.returncode == 0, done.stderr
    summary = dataset_summary("test/pp-noisy-v0")
    assert summary["policy"]["kind"] == "reference" and summary["policy"]["noise"] == 1.5
    assert summary["policy"]["reference_expert"] == "reference"
    assert summary["ref_min_score"] < summary["ref_max_score"]  # the pusher beats random actions
    assert summary["return_mean"] < summary["ref_max_score"]  # the noise costs it
    walker = cli("data", "collect", str(REPO / "tasks" / "offline" / "walker2d_sac.yaml"), "--policy", "reference",
                 "--out", "test/none-v0")
    assert walker.returncode == 2 and "no scripted reference policy" in walker.stderr


@pytest.mark.slow
def test_medium_replay_is_the_runs_replay_buffer_split_into_episodes(tmp_path: Path) -> None:
    """A SAC run's replay buffer becomes whole episodes whose steps are the buffer's, in order."""
    from stable_baselines3.common.save_util import load_from_pkl

    runs = tmp_path / "runs"
    sets = ["training.total_steps=300", "learner.hyperparams.learning_starts=50", "training.checkpoint_every=300",
            "sim.max_episode_steps=40", "evaluation.episodes=1", "evaluation.video=false"]
    done = cli("run", str(HOPPER), *[a for s in sets for a in ("--set", s)], "--runs-dir", str(runs), "--quiet")
    assert done.returncode == 0, done.stderr
    run = next(runs.iterdir())
    made = cli("data", "collect", str(HOPPER), "--policy", str(run), "--replay-buffer", "--reference-episodes", "1",
               "--set", "sim.max_episode_steps=40", "--out", "test/replay-v0")
    assert made.returncode == 0, made.stderr
    data = load_transitions(open_dataset("test/replay-v0"))
    buffer = load_from_pkl(sorted((run / "checkpoints").glob("step_*"))[-1] / "replay_buffer.pkl")
    assert len(data) == buffer.pos
    np.testing.assert_allclose(data.rewards, buffer.rewards[:buffer.pos, 0])
    np.testing.assert_allclose(data.actions, buffer.actions[:buffer.pos, 0])
    assert data.episode_starts.sum() >= 300 // 40
    meta = json.loads(json.dumps(dataset_summary("test/replay-v0"), default=str))
    assert meta["policy"]["kind"] == "replay_buffer" and meta["ref_max_score"] is not None


def test_a_full_replay_buffer_is_refused() -> None:
    from stable_baselines3.common.buffers import ReplayBuffer

    from workbench.datasets import record_replay_buffer

    task = _task(HOPPER)
    env = task.make_env()
    buffer = ReplayBuffer(4, env.observation_space, env.action_space)
    env.close()
    buffer.full = True
    with pytest.raises(WorkbenchError, match="overwritten"):
        record_replay_buffer(task, buffer, name="test/full-v0", refs=(0.0, None), policy_record={"kind": "x"})
