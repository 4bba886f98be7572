"""QD explorers (policies/qd) on the real maze task (real MuJoCo, real ribs archives, real worker
processes, the real CLI), at tiny budgets: 8 genomes x 50-step episodes per generation."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

ribs = pytest.importorskip("ribs", reason="the QD learners need the qd extra: pip install 'rl-workbench[qd]'")

from workbench_testing import REPO, cli, kill_after_checkpoint, resume_to, set_args  # noqa: E402

from policies.qd import MLPPolicy, novelty  # noqa: E402
from workbench.cli import app  # noqa: E402
from workbench.errors import TaskError  # noqa: E402
from workbench.learner import load_policy  # noqa: E402
from workbench.spec import load_task  # noqa: E402

MAZE = REPO / "tasks" / "qd" / "maze_ns.yaml"
EPISODE = 50
POP = 8
GEN = EPISODE * POP  # env steps per generation
TINY = [f"sim.max_episode_steps={EPISODE}", f"learner.hyperparams.population={POP}", "evaluation.episodes=2",
        "evaluation.video=false"]




def _only_run(root: Path) -> Path:
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return run


def test_ns_run_end_to_end_then_eval(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = cli("run", str(MAZE), "--runs-dir", str(runs), "--quiet",
               *set_args([*TINY, f"training.total_steps={3 * GEN + GEN // 2}"]))
    assert proc.returncode == 0, proc.stderr
    run = _only_run(runs)
    qd = json.loads((run / "qd.json").read_text())
    # the budget holds: 3 whole generations fit in 3.5, a 4th would not
    assert (qd["generations"], qd["episodes"], qd["steps"]) == (3, 3 * POP, 3 * GEN)
    assert json.loads((run / "run.json").read_text())["steps"] == 3 * GEN
    assert qd["reward_areas"] == ["near", "middle", "far"] and qd["cells"] == 400
    assert 0 < qd["cells_reached"] <= 3 * POP and qd["coverage"] == qd["cells_reached"] / 400
    # the archives reload as the ribs objects, holding the run's outcomes
    with open(run / "qd" / "novelty_archive.pkl", "rb") as fh:
        archive = pickle.load(fh)
    assert isinstance(archive, ribs.archives.ProximityArchive) and 0 < len(archive) <= 3 * POP
    with open(run / "qd" / "coverage_archive.pkl", "rb") as fh:
        coverage = pickle.load(fh)
    assert isinstance(coverage, ribs.archives.GridArchive) and len(coverage) == qd["cells_reached"]
    measures = archive.data("measures")
    assert np.all(np.abs(measures) <= 1.0)  # final x, y inside the maze
    assert (run / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    policy = load_policy(run / "model")
    assert isinstance(policy, MLPPolicy) and policy.info["reward"] == qd["best_reward"]
    action, _ = policy.predict(np.zeros(4))
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)
    # workbench eval replays the best genome through the normal evaluator (the CLI in-process)
    (run / "eval.json").unlink()
    result = CliRunner().invoke(app, ["eval", str(run), "--episodes", "2", "--no-video"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval.json").read_text())["episodes"] == 2


def test_sigkill_then_resume_continues_from_the_checkpointed_generation(tmp_path: Path) -> None:
    from workbench.pipeline import train_and_evaluate

    run = kill_after_checkpoint([str(MAZE), *set_args([*TINY, "training.total_steps=1e6"])], tmp_path / "runs",
                                2 * GEN)
    step = json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    done = step // GEN
    assert step == done * GEN and done >= 2
    assert not (run / "qd.json").exists()  # killed mid-run
    proc2 = resume_to(run, step + 2 * GEN)  # finish two generations later
    assert proc2.returncode == 0, proc2.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["resumed_from"] == step and info["status"] == "finished"
    qd = json.loads((run / "qd.json").read_text())
    assert qd["generations"] == done + 2 and qd["steps"] == step + 2 * GEN
    assert [h["generation"] for h in qd["history"]] == list(range(1, done + 3))
    # ... and it continued exactly: the same archive as a run never killed
    spec = load_task(MAZE, [*TINY, f"training.total_steps={step + 2 * GEN}"])
    whole = train_and_evaluate(spec, tmp_path / "whole")
    with open(run / "qd" / "novelty_archive.pkl", "rb") as fh:
        resumed = pickle.load(fh)
    with open(whole.run.path / "qd" / "novelty_archive.pkl", "rb") as fh:
        uninterrupted = pickle.load(fh)
    assert np.array_equal(resumed.data("solution"), uninterrupted.data("solution"))
    assert np.array_equal(resumed.data("measures"), uninterrupted.data("measures"))


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_two_workers_give_the_same_archive_as_one(tmp_path: Path, executor: str,
                                                  request: pytest.FixtureRequest) -> None:
    from workbench.pipeline import train_and_evaluate

    if executor == "ray":
        request.getfixturevalue("ray_runtime")  # the session's local Ray runtime
    found = []
    for workers, where in ((1, "local"), (2, executor)):  # one in-process evaluator against two workers
        spec = load_task(MAZE, [*TINY, f"training.total_steps={2 * GEN}", f"learner.hyperparams.workers={workers}",
                                "evaluation.episodes=1", f"learner.hyperparams.executor={where}"])
        result = train_and_evaluate(spec, tmp_path / f"w{workers}")
        with open(result.run.path / "qd" / "novelty_archive.pkl", "rb") as fh:
            archive = pickle.load(fh)
        found.append((archive.data("solution"), archive.data("measures"),
                      json.loads((result.run.path / "qd.json").read_text())))
    (s1, m1, q1), (s2, m2, q2) = found
    assert len(s1) > 0 and np.array_equal(s1, s2) and np.array_equal(m1, m2)
    assert q1["cells_reached"] == q2["cells_reached"] and q1["steps"] == q2["steps"] == 2 * GEN


def test_unknown_descriptor_field_is_one_clear_error_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(MAZE), "--runs-dir", str(tmp_path / "runs"), "--quiet",
                                      *set_args([*TINY, "learner.hyperparams.descriptor=[x, z]"])])
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out and isinstance(result.exception, SystemExit)
    assert "no field 'z'" in out and "learner.hyperparams.descriptor" in out
    assert "maze_ns.yaml" in out and "fields: x, y, velocity, zone_distances" in out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run was started


@pytest.mark.parametrize("override,key,match", [
    ("learner.hyperparams.sigmaa=0.1", "learner.hyperparams.sigmaa", "did you mean 'sigma'"),
    ("learner.hyperparams.descriptor_bounds=[[-1, 1], [-1, 1]]", "learner.hyperparams.descriptor_bounds",
     "ns has no hyperparameter"),
    ("learner.hyperparams.population=1", "learner.hyperparams.population", "greater than or equal to 2"),
    ("learner.hyperparams.outcome_grid.fields=[velocity]", "learner.hyperparams.outcome_grid.fields",
     "name one value: velocity"),
    ("training.total_steps=100", "training.total_steps", "less than one generation"),
    ("learner.name=map_elites", "learner.hyperparams.k", "map_elites has no hyperparameter 'k'"),
])
def test_bad_hyperparams_name_the_key_and_the_fix(override: str, key: str, match: str) -> None:
    overrides = [*TINY, override]
    if override.startswith("learner.hyperparams.outcome_grid.fields"):
        overrides.append("learner.hyperparams.outcome_grid.low=[-1]")
        overrides += ["learner.hyperparams.outcome_grid.high=[1]", "learner.hyperparams.outcome_grid.cells=[4]"]
    with pytest.raises(TaskError) as info:
        load_task(MAZE, overrides)
    err = info.value
    assert err.key == key and match in str(err), str(err)
    assert err.file is not None and err.file.endswith("maze_ns.yaml") and err.hint


def test_map_elites_bounds_count_the_values_of_vector_fields() -> None:
    task = REPO / "tasks" / "qd" / "maze_map_elites.yaml"
    load_task(task, [*TINY, "learner.hyperparams.descriptor=[velocity]"])  # 2 values, 2 bounds
    with pytest.raises(TaskError) as info:
        load_task(task, [*TINY, "learner.hyperparams.descriptor=[x, velocity]"])
    assert info.value.key == "learner.hyperparams.descriptor_bounds"
    assert "2 descriptor bounds for a descriptor of 3 values" in info.value.message


def test_novelty_through_ribs_is_the_knn_mean_distance() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (40, 2))
    archive = ribs.archives.ProximityArchive(solution_dim=3, measure_dim=2, k_neighbors=15, novelty_threshold=0.0)
    archive.add(np.zeros((40, 3)), measures=points, objective=np.zeros(40))
    assert len(archive) == 40
    queries = np.array([[0.0, 0.0], [0.9, -0.9], [5.0, 5.0], points[3]])
    dists = np.linalg.norm(queries[:, None, :] - points[None, :, :], axis=2)
    expected = np.sort(dists, axis=1)[:, :15].mean(axis=1)
    assert np.allclose(novelty(archive, queries), expected)
    got = novelty(archive, queries)
    assert got[2] > got[1] and got[2] > got[0]  # a far outcome ranks above near ones


@pytest.mark.parametrize("learner,overrides,stem,kind", [
    ("map_elites", [], "grid_archive", "GridArchive"),
    ("cma_me", ["learner.hyperparams.emitters=2"], "grid_archive", "GridArchive"),
    ("random_search", [], None, None),
])
def test_baselines_run_on_ribs(tmp_path: Path, learner: str, overrides: list[str], stem: str | None,
                               kind: str | None) -> None:
    from workbench.pipeline import train_and_evaluate

    task = REPO / "tasks" / "qd" / ("maze_ns.yaml" if learner == "random_search" else "maze_map_elites.yaml")
    hyper = ["learner.hyperparams={population: 8, outcome_grid: {fields: [x, y], low: [-1, -1], high: [1, 1], "
            "cells: [20, 20]}}"] if learner == "random_search" else []
    if learner == "cma_me":
        hyper = ["learner.hyperparams={descriptor: [x, y], descriptor_bounds: [[-1, 1], [-1, 1]], population: 8, "
                "outcome_grid: {fields: [x, y], low: [-1, -1], high: [1, 1], cells: [20, 20]}}"]
    spec = load_task(task, [f"learner.name={learner}", *hyper, *TINY, f"training.total_steps={2 * GEN}",
                            "evaluation.episodes=1", *overrides])
    result = train_and_evaluate(spec, tmp_path)
    qd = json.loads((result.run.path / "qd.json").read_text())
    assert qd["learner"] == learner and qd["episodes"] == 2 * POP and qd["generations"] == 2
    assert isinstance(result.policy, MLPPolicy) and result.policy.info["reward"] == qd["best_reward"]
    if stem is not None:
        with open(result.run.path / "qd" / f"{stem}.pkl", "rb") as fh:
            archive = pickle.load(fh)
        assert type(archive).__name__ == kind and 0 < len(archive) <= 2 * POP
    else:
        assert set(qd["archives"]) == {"coverage_archive"}


def test_a_reward_scored_only_across_a_vector_of_envs_is_refused_not_read_as_zeros(tmp_path: Path) -> None:
    from policies.qd import NoveltySearchLearner
    from workbench.learner import FitHooks
    from workbench.runs import Run
    from workbench.task import Task

    assert Task.build(load_task(REPO / "tasks" / "mujoco" / "hopper_lare.yaml")).reward_needs_vec  # a decoder
    maze = Task.build(load_task(MAZE, TINY))
    assert not maze.reward_needs_vec
    run = Run.create(tmp_path / "runs", task="t", learner="ns", seed=0, resolved=maze.spec.resolved_dict(),
                     source_path=None)
    with pytest.raises(TaskError, match="scored across a vector") as info:
        NoveltySearchLearner().fit(maze.spec, maze.env_fns(1), 10 * GEN, run, hooks=FitHooks(reward_needs_vec=True))
    assert info.value.key == "reward.source"
