"""SERENE (policies/qd/serene.py) on the real maze, the real ribs archives and the real CLI, at tiny
budgets: 8 genomes x 200-step episodes per exploration generation (mutation sigma 0.3), emitter
generations of 4, chunks of 40 evaluations.

With these settings and training.seed 2, exploration finds a rewarding agent (the near zone) at
evaluation 25 and the second chunk (from evaluation 41) exploits it: the run tests rely on that
fixed seed (seeds 0, 1, 4 and 5 find no reward within 160 evaluations of this tiny setup, 3 at 133)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

ribs = pytest.importorskip("ribs", reason="the QD learners need the qd extra: pip install 'rl-workbench[qd]'")

from workbench_testing import REPO, cli, kill_after_checkpoint, qd_archive, resume_to, set_args  # noqa: E402

from policies.qd import MLPPolicy, SereneLearner  # noqa: E402
from policies.qd.config import QDHyperparams  # noqa: E402
from policies.qd.rollout import Outcome  # noqa: E402
from policies.qd.serene import (  # noqa: E402
    CMAEmitter,
    ElitistEmitter,
    choose_pareto,
    initial_step_size,
    pareto_front,
)
from workbench.cli import app  # noqa: E402
from workbench.errors import TaskError  # noqa: E402
from workbench.learner import load_policy  # noqa: E402
from workbench.spec import load_task  # noqa: E402

TASK = REPO / "tasks" / "qd" / "maze_serene.yaml"
EPISODE = 200
POP = 8
GEN = EPISODE * POP  # env steps per exploration generation
TINY = [f"learner.hyperparams.population={POP}", "learner.hyperparams.sigma=0.3",
        "learner.hyperparams.chunk_evaluations=40",
        "learner.hyperparams.emitter_population=4", "learner.hyperparams.bootstrap_generations=2",
        "learner.hyperparams.stagnation_generations=2", "training.seed=6", "evaluation.episodes=2",
        "evaluation.video=false"]




def test_serene_run_through_the_cli_writes_chunk_stats_and_an_emitter_then_eval(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = cli("run", str(TASK), "--runs-dir", str(runs), "--quiet",
               *set_args([*TINY, f"training.total_steps={20 * GEN}", "evaluation.video=true",
                          "evaluation.video_episodes=0"]))
    assert proc.returncode == 0, proc.stderr
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    qd = json.loads((run / "qd.json").read_text())
    assert qd["learner"] == "serene" and qd["steps"] <= 20 * GEN
    # each area's best agent: its very episode replayed to video, with the return the search saw
    assert sorted(qd["area_videos"]) == sorted(qd["reward_areas_found"])
    for area, video in qd["area_videos"].items():
        assert (run / video["file"]).read_bytes()[4:8] == b"ftyp"  # an mp4
        assert video["replayed_area"] == area and video["replayed_return"] == qd["best_reward_per_area"][area]
    assert qd["evaluations_to_first_reward"] is not None and qd["n_reward_areas_found"] >= 1
    s = qd["serene"]
    # the chunks account for every evaluation, split between exploration and exploitation
    assert sum(c["exploration_evaluations"] + c["exploitation_evaluations"] for c in s["chunks"]) == qd["episodes"]
    assert s["exploration_evaluations"] + s["exploitation_evaluations"] == qd["episodes"]
    assert all(c["exploration_evaluations"] + c["exploitation_evaluations"] <= 40 for c in s["chunks"])
    assert s["candidates_found"] >= 1 and s["emitters_born"] >= 1 and s["exploitation_evaluations"] > 0
    assert sum(c["emitters_born"] for c in s["chunks"]) == s["emitters_born"] == len(s["emitters"])
    # before the first reward there was nothing to exploit: those chunks explored only
    first_chunk_with_work = next(i for i, c in enumerate(s["chunks"]) if c["exploitation_evaluations"])
    assert all(c["exploration_evaluations"] == 40 for c in s["chunks"][:first_chunk_with_work])
    emitter = s["emitters"][0]
    assert emitter["type"] == "elitist" and emitter["parent_reward"] > 0 and emitter["sigma0"] > 0
    phases = {h["phase"] for h in qd["history"]}
    assert phases == {"exploration", "exploitation"}
    with open(run / "qd" / "rewarding_archive.pkl", "rb") as fh:
        rewarding = pickle.load(fh)
    assert isinstance(rewarding, ribs.archives.ProximityArchive) and len(rewarding) >= 1
    assert np.all(rewarding.data("objective") > 0)
    assert sorted(p.name for p in (run / "qd" / "areas").iterdir()) == sorted(qd["reward_areas_found"])
    policy = load_policy(run / "model")
    assert isinstance(policy, MLPPolicy) and policy.info["reward"] == qd["best_reward"] > 0
    (run / "eval.json").unlink()
    result = CliRunner().invoke(app, ["eval", str(run), "--episodes", "1", "--no-video"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval.json").read_text())["episodes"] == 1


def test_pareto_choice_picks_from_the_non_dominated_set() -> None:
    # (novelty, improvement): 0, 1 and 3 are non-dominated; 2 is dominated by 1, 4 by 3, 5 by all
    points = np.array([[0.9, -0.5], [0.5, 0.2], [0.4, 0.1], [0.1, 0.8], [0.1, 0.7], [0.0, -1.0]])
    assert pareto_front(points).tolist() == [0, 1, 3]
    rng = np.random.default_rng(0)
    picks = {choose_pareto(points, rng) for _ in range(200)}
    assert picks == {0, 1, 3}  # every non-dominated point is drawn, nothing else
    assert pareto_front(np.array([[1.0, 1.0], [1.0, 1.0]])).tolist() == [0, 1]  # ties dominate nothing


def _hp(**kw: object) -> QDHyperparams:
    base = {"descriptor": ["x", "y"], "population": 4, "chunk_evaluations": 8, "emitter_population": 2,
            "bootstrap_generations": 2, "stagnation_generations": 3, "novelty_threshold": 0.0}
    return QDHyperparams.model_validate({**base, **kw})


def _outcome(descriptor: list[float], ret: float) -> Outcome:
    return Outcome(np.array(descriptor), np.zeros(0), ret, 1, "zone" if ret > 0 else None)


def test_an_emitter_is_born_only_from_a_rewarding_agent_with_step_size_nearest_distance_over_3() -> None:
    genomes = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [3.0, 4.0, 0.0], [10.0, 10.0, 10.0]])
    assert initial_step_size(genomes[1], genomes) == pytest.approx(1.0)  # nearest other: 3 away; itself skipped
    assert initial_step_size(genomes[3], genomes[:3]) == pytest.approx(np.linalg.norm([7, 6, 10]) / 3)
    assert initial_step_size(genomes[0], genomes[:1]) is None

    learner, hp = SereneLearner(), _hp()
    algo = learner.init_algo(hp, 3, 2, np.random.default_rng(0))
    algo["offspring"] = genomes
    assert learner.next_batch_size(algo, hp) == 4
    asked = learner.ask(algo, hp)
    assert algo["asked"] == "explore" and np.array_equal(asked, genomes)
    learner.tell(algo, hp, genomes, [_outcome([0, 0], 0.0), _outcome([0.5, 0], 0.7), _outcome([0, 0.5], 0.0),
                                     _outcome([0.9, 0.9], 0.0)])
    assert [c["reward"] for c in algo["candidates"]] == [0.7]  # only the rewarding agent is a candidate
    assert len(algo["archive"]) == 4
    # the chunk's exploration share (0.5 x 8) is spent and there is a candidate: exploitation
    assert learner.next_batch_size(algo, hp) == 2
    learner.ask(algo, hp)
    emitter = algo["current"]
    assert isinstance(emitter, ElitistEmitter) and np.array_equal(emitter.parent, genomes[1])
    assert emitter.sigma0 == pytest.approx(1.0)  # nearest other genome of the archive + population: 3 / 3
    assert algo["totals"]["emitters_born"] == 1 and algo["candidates"] == []

    # with nothing rewarding, exploration takes the whole chunk and no emitter is born
    algo2 = learner.init_algo(hp, 3, 2, np.random.default_rng(0))
    algo2["offspring"] = genomes
    learner.ask(algo2, hp)
    learner.tell(algo2, hp, genomes, [_outcome([i, 0], 0.0) for i in range(4)])
    assert algo2["candidates"] == [] and learner.next_batch_size(algo2, hp) == 4
    learner.ask(algo2, hp)
    assert algo2["asked"] == "explore" and algo2["current"] is None


@pytest.mark.parametrize("kind", [ElitistEmitter, CMAEmitter])
def test_an_emitter_stops_after_stagnation_generations_without_improvement(kind: type) -> None:
    emitter = kind(np.zeros(5), parent_reward=0.5, descriptor=np.zeros(2), sigma0=0.1, population=4, stagnation=3,
                   seed=0)
    d = np.zeros((4, 2))
    for _ in range(2):
        emitter.tell(emitter.ask(), np.array([0.5, 0.4, 0.0, 0.1]), d)  # never above the best (0.5)
    assert not emitter.stopped and emitter.stale == 2
    g = emitter.ask()
    emitter.tell(g, np.array([0.2, 0.9, 0.3, 0.0]), d)  # improves: the count restarts
    assert emitter.best_reward == 0.9 and np.array_equal(emitter.best_genome, g[1]) and emitter.stale == 0
    for _ in range(3):
        assert not emitter.stopped
        emitter.tell(emitter.ask(), np.array([0.9, 0.1, 0.2, 0.3]), d)
    assert emitter.stopped and emitter.generations == 6 and emitter.evaluations == 24
    # the improvement of the turn: the mean over its generations of (offspring mean - reference before)
    gains = list(emitter.turn_improvements)
    assert len(gains) == 6 and gains[0] == pytest.approx(0.25 - 0.5)  # first reference: the parent's reward
    assert emitter.end_turn() == pytest.approx(np.mean(gains)) == emitter.improvement


def test_a_stopped_emitter_leaves_its_best_in_the_rewarding_archive() -> None:
    learner, hp = SereneLearner(), _hp(stagnation_generations=1, bootstrap_generations=5, k=1, novelty_threshold=0.1)
    algo = learner.init_algo(hp, 3, 2, np.random.default_rng(1))
    genomes = np.eye(4, 3) * 2
    algo["offspring"] = genomes
    learner.ask(algo, hp)
    learner.tell(algo, hp, genomes, [_outcome([0.0, 0.0], 0.6), *[_outcome([1.0, i], 0.0) for i in range(3)]])
    offspring = learner.ask(algo, hp)
    assert algo["asked"] == "exploit" and offspring.shape == (2, 3)
    before = len(algo["archive"])
    learner.tell(algo, hp, offspring, [_outcome([0.0, 0.0], 0.0), _outcome([5.0, 5.0], 0.0)])
    assert len(algo["archive"]) == before + 1  # the novel offspring joined the novelty archive, not the copy
    assert algo["current"] is None and algo["totals"]["emitters_stopped"] == 1  # 1 generation without gain
    rewarding = algo["rewarding"]
    assert len(rewarding) == 1 and rewarding.data("objective")[0] == pytest.approx(0.6)
    assert np.array_equal(rewarding.data("solution")[0], genomes[0])
    summary = learner.summary(algo)["serene"]
    assert summary["emitters_stopped"] == 1 and summary["chunks"][0]["emitters_born"] == 1


@pytest.mark.slow  # ~15-20 s; the default suite kills and resumes ns (test_qd), the loop serene extends
def test_sigkill_then_resume_continues_the_whole_serene_state(tmp_path: Path) -> None:
    from workbench.pipeline import train_and_evaluate

    # past the first reward (evaluation 25), exploiting it
    run = kill_after_checkpoint([str(TASK), *set_args([*TINY, "training.total_steps=1e6"])], tmp_path / "runs",
                                8 * GEN)
    step = json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    assert not (run / "qd.json").exists()  # killed mid-run
    total = step + 6 * GEN
    proc2 = resume_to(run, total)
    assert proc2.returncode == 0, proc2.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["resumed_from"] == step and info["status"] == "finished"
    resumed = json.loads((run / "qd.json").read_text())
    spec = load_task(TASK, [*TINY, f"training.total_steps={total}"])
    whole = train_and_evaluate(spec, tmp_path / "whole")
    uninterrupted = json.loads((whole.run.path / "qd.json").read_text())
    assert resumed["serene"]["emitters_born"] >= 1
    for key in ("steps", "episodes", "generations", "history", "serene", "best_reward", "coverage"):
        assert resumed[key] == uninterrupted[key], key
    for stem in ("novelty_archive", "rewarding_archive"):
        a, b = qd_archive(run, stem), qd_archive(whole.run.path, stem)
        assert np.array_equal(a.data("solution"), b.data("solution")), stem


def test_bad_serene_hyperparams_exit_2_through_the_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(TASK), "--runs-dir", str(tmp_path / "runs"), "--quiet",
                                      *set_args([*TINY, "learner.hyperparams.emitter_type=pso"])])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "learner.hyperparams.emitter_type" in result.output
    assert "maze_serene.yaml" in result.output


@pytest.mark.parametrize("override,key,match", [
    ("learner.hyperparams.emitter_type=pso", "learner.hyperparams.emitter_type", "'elitist' or 'cma'"),
    ("learner.hyperparams.chunk_evaluations=4", "learner.hyperparams.chunk_evaluations", "at least one generation"),
    ("learner.hyperparams.exploration_fraction=0.1", "learner.hyperparams.exploration_fraction",
     "less than one exploration generation"),
    ("learner.hyperparams.exploration_fraction=0", "learner.hyperparams.exploration_fraction", "greater than 0"),
    ("learner.hyperparams.bootstrap_generations=0", "learner.hyperparams.bootstrap_generations",
     "greater than or equal to 1"),
    ("learner.hyperparams.stagnation_generation=3", "learner.hyperparams.stagnation_generation",
     "did you mean 'stagnation_generations'"),
    ("learner.hyperparams.emitters=2", "learner.hyperparams.emitters", "serene has no hyperparameter"),
])
def test_bad_serene_hyperparams_name_the_key_and_the_fix(override: str, key: str, match: str) -> None:
    with pytest.raises(TaskError) as info:
        load_task(TASK, [*TINY, override])
    err = info.value
    assert err.key == key and match in str(err), str(err)
    assert err.file is not None and err.file.endswith("maze_serene.yaml") and err.hint


def test_until_a_reward_is_found_serene_explores_exactly_as_ns(tmp_path: Path) -> None:
    from workbench.pipeline import train_and_evaluate

    tiny = ["learner.hyperparams.population=8", "sim.max_episode_steps=50", "training.total_steps=4000",
            "evaluation.episodes=1", "evaluation.video=false"]
    found = {}
    for name, extra in (("maze_ns", []), ("maze_serene", ["learner.hyperparams.chunk_evaluations=40"])):
        result = train_and_evaluate(load_task(REPO / "tasks" / "qd" / f"{name}.yaml", tiny + extra), tmp_path / name)
        qd = json.loads((result.run.path / "qd.json").read_text())
        assert qd["evaluations_to_first_reward"] is None  # nothing to exploit at this budget (seed 0)
        with open(result.run.path / "qd" / "novelty_archive.pkl", "rb") as fh:
            found[name] = (pickle.load(fh).data("solution"), [h["coverage"] for h in qd["history"]])
    assert np.array_equal(found["maze_ns"][0], found["maze_serene"][0]) and len(found["maze_ns"][0]) > 0
    assert found["maze_ns"][1] == found["maze_serene"][1]
