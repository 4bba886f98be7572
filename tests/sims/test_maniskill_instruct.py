"""The ManiSkill3 instruction suite (ManiSkillInstruct-v0): three tasks named in words, held-out
phrasings, the camera shows the goals, the scripted controllers succeed, and a VLA trains on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mani_skill", reason="ManiSkill is an optional extra: pip install 'rl-workbench[maniskill]'")

from workbench.sims.maniskill import ManiSkillAdapter, vulkan_available  # noqa: E402

_VULKAN, _WHY = vulkan_available()
if not _VULKAN:
    pytest.skip(f"no Vulkan device for SAPIEN: {_WHY}", allow_module_level=True)

from workbench.errors import TaskError  # noqa: E402
from workbench.sims.maniskill import INSTRUCT_ENV_ID as ENV_ID  # noqa: E402
from workbench.sims.maniskill import INSTRUCT_TASKS as TASKS  # noqa: E402
from workbench.sims.maniskill import instruction_pairs as instructions  # noqa: E402
from workbench.spec import SimSpec  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ADAPTER = ManiSkillAdapter()
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _spec(**kwargs: object) -> SimSpec:
    return SimSpec(name="maniskill", env_id=ENV_ID, kwargs=kwargs)


@pytest.fixture(scope="module")
def env():
    made = ADAPTER.make_env(_spec(instructions="all"))
    yield made
    made.close()


def test_three_tasks_each_with_training_and_held_out_phrasings() -> None:
    train, heldout = instructions("train"), instructions("heldout")
    assert not {t for t, _ in train} & {t for t, _ in heldout}
    assert {task for _, task in train} == {task for _, task in heldout} == set(TASKS)
    assert sorted(instructions("all")) == sorted(train + heldout)
    assert ENV_ID in ADAPTER.env_ids()
    with pytest.raises(TaskError, match="instructions"):
        ADAPTER.make_env(_spec(instructions="test"))


def test_a_reset_picks_the_task_by_seed_or_by_instruction(env) -> None:
    pairs = instructions("all")
    for seed in range(len(pairs)):
        obs, info = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        assert (obs["instruction"], info["task"]) == pairs[seed]
        assert obs["proprio"].shape == (12,) and obs["image"].dtype == np.uint8
    text, task = instructions("heldout")[2]
    obs, info = env.reset(seed=3, options={"instruction": text})
    assert obs["instruction"] == text and env.task == task == info["task"]
    with pytest.raises(ValueError, match="unknown instruction"):
        env.reset(options={"instruction": "juggle the cube"})


def test_the_camera_shows_the_cube_and_the_goal(env) -> None:
    def pixels(image: np.ndarray, colour: str) -> int:
        r, g, b = (image[..., i].astype(int) for i in range(3))
        mask = {"green": (g > 120) & (r < 90) & (b < 90), "blue": (b > 90) & (r < 60) & (g < 90),
                "red": (r > 150) & (g < 90) & (b < 90) & (r - g > 90)}[colour]
        return int(mask.sum())

    push = env.reset(seed=0, options={"instruction": TASKS["PushCube-v1"].train[0]})[0]["image"]
    pick = env.reset(seed=0, options={"instruction": TASKS["PickCube-v1"].train[0]})[0]["image"]
    assert pixels(push, "blue") > 0 and pixels(push, "red") > 10  # the blue cube and the red-white target
    assert pixels(pick, "green") > 2 and pixels(pick, "red") > 0  # the green goal point and the red cube


def test_each_tasks_scripted_controller_succeeds_and_the_state_view_says_so(env) -> None:
    profile = ADAPTER.profile(_spec())
    for task in TASKS:
        env.reset(seed=1, options={"instruction": TASKS[task].train[0]})
        for _ in range(60):
            _, _, terminated, truncated, info = env.step(profile.reference(env))
            if terminated or truncated:
                break
        state = profile.schema.read(env)
        assert terminated and bool(info["success"]), task
        assert profile.success(state, 1.0) and float(state.task) == list(TASKS).index(task)
        assert float(state.cube_to_goal_dist) < (0.025 if task == "PickCube-v1" else 0.1)


@pytest.mark.slow
def test_a_vla_trains_and_evaluates_per_instruction_on_the_suite(tmp_path: Path) -> None:
    from workbench_testing import cli, record_tiny_dataset

    task = REPO / "tasks" / "vla" / "maniskill_bc.yaml"
    record_tiny_dataset("test/maniskill-vla-v0", task, episodes=3, steps=30, policy="reference")
    done = cli("run", str(task), "--set", "learner.hyperparams.dataset=test/maniskill-vla-v0", "--set",
               "training.total_steps=200", "--set", "evaluation.episodes=3", "--set", "evaluation.video_episodes=1",
               "--set", "sim.max_episode_steps=30", "--runs-dir", str(tmp_path), "--quiet", timeout=900)
    assert done.returncode == 0, done.stderr
    run = next(tmp_path.glob("maniskill_vla_bc__*"))
    evaluation = json.loads((run / "eval.json").read_text())
    assert set(evaluation["per_instruction"]) == {t for t, _ in instructions("heldout")}
    assert list(run.glob("videos/*.mp4"))
