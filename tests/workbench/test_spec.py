from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from workbench_testing import SHIPPED, SLOW_BUILDS, load_shipped, shipped_params

from workbench.errors import TaskError
from workbench.spec import TaskSpec, load_task, parse_yaml

REPO = Path(__file__).resolve().parents[2]
MALFORMED = sorted((REPO / "tests" / "data" / "malformed_tasks").glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <text>'"
    return first.removeprefix("# expect: ")


def _load_fully(path: Path) -> None:
    """What `workbench validate` does short of training: parse, validate, build the env."""
    from workbench.reward import BuiltReward
    from workbench.task import Task

    Task.build(load_task(path), reward=BuiltReward(None, "not needed"))


@pytest.mark.parametrize("path", MALFORMED, ids=[p.stem for p in MALFORMED])
def test_malformed_task_names_file_key_and_fix(path: Path) -> None:
    with pytest.raises(TaskError) as info:
        _load_fully(path)
    message = str(info.value)
    assert str(path) in message
    assert _expected(path) in message
    assert "fix:" in message


def test_corpus_is_large_enough() -> None:
    assert len(MALFORMED) >= 20


@pytest.mark.parametrize("name", ["alias_bomb", "python_tag", "typo_nested_key", "not_mapping"])
def test_cli_exits_2_without_traceback(name: str) -> None:
    path = REPO / "tests" / "data" / "malformed_tasks" / f"{name}.yaml"
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "validate", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert str(path) in proc.stderr
    assert _expected(path).split(":")[0] in proc.stderr


def test_scientific_notation_reads_as_numbers() -> None:
    data = parse_yaml("a: 1e6\nb: 3e-4\nc: 1.5\nd: '1e6'\ne: 10\n", file="x")
    assert data == {"a": 1e6, "b": 3e-4, "c": 1.5, "d": "1e6", "e": 10}
    assert isinstance(data["a"], float) and isinstance(data["e"], int)


def test_overrides_apply_and_are_validated(tmp_path: Path) -> None:
    spec = load_task(TASKS_REACHER, ["training.total_steps=2e4", "learner.hyperparams.gamma=0.9",
                                     "training.seed=7"])
    assert spec.training.total_steps == 20000 and spec.training.seed == 7
    assert spec.learner.hyperparams["gamma"] == 0.9
    with pytest.raises(TaskError, match="training.totl_steps"):
        load_task(TASKS_REACHER, ["training.totl_steps=5"])
    with pytest.raises(TaskError, match="--set"):
        load_task(TASKS_REACHER, ["no_equals_sign"])


def test_relative_reward_path_resolves_against_task_file() -> None:
    spec = load_task(TASKS_REACHER)
    from reward_synthesis.program import CodeRewardSource

    assert CodeRewardSource.program_path(spec).is_file()
    assert spec.name == "reacher"


def test_resolved_dict_roundtrips() -> None:
    spec = load_task(TASKS_REACHER)
    again = TaskSpec.model_validate(spec.resolved_dict())
    assert again.resolved_dict() == spec.resolved_dict()


TASKS_REACHER = REPO / "tasks" / "mujoco" / "reacher.yaml"




@pytest.mark.parametrize("path", shipped_params())
def test_every_shipped_task_validates_and_builds(path: Path, tmp_path: Path) -> None:
    """Parse, validate, build the env and the reward (code rewards pass the pre-flight checks)."""
    from workbench.reward import BuiltReward
    from workbench.task import Task

    spec = load_shipped(path, tmp_path)
    # LLM-written rewards are exercised against the real local server in tests/reward_synthesis/llm.
    reward = BuiltReward(None, "synthesized elsewhere") if spec.reward.source in ("text2reward", "auto_mc") else None
    task = Task.build(spec, reward=reward)
    assert task.profile.success is not None, "every shipped task needs a success metric"
    env = task.make_env()
    try:
        env.reset(seed=0)
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert np.isfinite(reward) and "reward/env" in info
    finally:
        env.close()


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.stem in SLOW_BUILDS], ids=lambda p: p.stem)
def test_the_shipped_tasks_built_only_in_the_slow_suite_still_validate_in_the_default_one(path: Path) -> None:
    # The schema only: the VLA tasks' datasets are recorded by the build (load_shipped), in the slow suite.
    spec = TaskSpec.model_validate(parse_yaml(path.read_text(), file=str(path)))
    assert spec.sim.env_id and spec.goal


def test_shipped_tasks_cover_the_issue_list() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"reacher", "pusher", "half_cheetah", "hopper", "planar_push"} <= names
    assert {"pick_cube", "push_cube", "stack_cube", "touch_ball", "score_empty_net", "score_1v1"} <= names


# --------------------------------------------------------------------------- hostile input (issue 13)

def test_nesting_is_bounded_without_recursion_error() -> None:
    assert parse_yaml("a: " + "[" * 60 + "]" * 60, file="x")  # well within the bound
    for text in ("a: " + "[" * 900 + "]" * 900, "a: " + "{b: " * 1000 + "1" + "}" * 1000,
                 "a:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(3000))):
        with pytest.raises(TaskError, match="nested more than 64 levels deep"):
            parse_yaml(text, file="x")


def test_duplicate_keys_are_refused_with_both_lines_but_merge_keys_may_be_overridden() -> None:
    with pytest.raises(TaskError, match=r"line 4, column 3: duplicate key 'gamma' \(first at line 3\)"):
        parse_yaml("learner:\n  hyperparams: {}\n  gamma: 1\n  gamma: 2\n", file="x")
    with pytest.raises(TaskError, match="duplicate key 'a'"):
        parse_yaml("{a: 1, a: 1}", file="x")
    data = parse_yaml("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n", file="x")
    assert data["d"] == {"x": 3, "y": 2}


def test_size_is_checked_before_the_file_is_read(tmp_path: Path) -> None:
    import tracemalloc

    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:
        fh.truncate(64 << 20)  # sparse: 64 MiB on paper, nothing on disk
    tracemalloc.start()
    try:
        with pytest.raises(TaskError, match=f"file is {64 << 20} bytes; a task file is at most"):
            load_task(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"reading the task file allocated {peak} bytes"


def test_non_regular_task_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="is a directory, not a regular file"):
        load_task(tmp_path)
    with pytest.raises(TaskError, match="is a device, not a regular file"):
        load_task("/dev/zero")
    with pytest.raises(TaskError, match="no such task file"):
        load_task(tmp_path / "missing.yaml")


def test_seed_is_bounded_to_what_numpy_torch_and_sb3_take(tmp_path: Path) -> None:
    spec = load_task(TASKS_REACHER, [f"training.seed={2**32 - 1}"])
    assert spec.training.seed == 2**32 - 1
    for seed in (2**32, 2**64, -1):
        with pytest.raises(TaskError) as info:
            load_task(TASKS_REACHER, [f"training.seed={seed}"])
        assert info.value.key == "training.seed"


def test_whole_number_hyperparams_are_ints(tmp_path: Path) -> None:
    """``buffer_size: 1e6`` reads as a float, which SB3 cannot size a buffer with (TypeError mid-run)."""
    spec = load_task(REPO / "tasks" / "mujoco" / "pusher.yaml",
                     ["learner.hyperparams.policy_kwargs.net_arch=[6.4e1, 64]"])
    hp = spec.learner.hyperparams
    assert hp["buffer_size"] == 1_000_000 and type(hp["buffer_size"]) is int
    assert hp["policy_kwargs"]["net_arch"] == [64, 64] and all(type(n) is int for n in hp["policy_kwargs"]["net_arch"])
    assert type(hp["learning_rate"]) is float and type(hp["gamma"]) is float


def test_list_mode_checks_plugin_names_without_importing(tmp_path: Path) -> None:
    """``plugins=False`` (``workbench list tasks``): names are checked against the name lists only."""
    path = tmp_path / "t.yaml"
    path.write_text("sim: {env_id: Reacher-v5}\nlearner: {name: ppo, hyperparams: {nsteps: 64}}\n"
                    "training: {total_steps: 100}\n")
    assert load_task(path, plugins=False).learner.name == "ppo"  # the learner's own checks did not run
    with pytest.raises(TaskError, match="no hyperparameter 'nsteps'"):
        load_task(path)
    path.write_text("sim: {env_id: Reacher-v5}\nlearner: {name: 'os:abort'}\ntraining: {total_steps: 100}\n")
    with pytest.raises(TaskError, match="learner.name: unknown learner 'os:abort'"):
        load_task(path, plugins=False)
