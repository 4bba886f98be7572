"""TAXONS and STAX (policies/qd/taxons.py) and the behaviour space they learn from frames
(policies/qd/behaviour.py): a real torch autoencoder on real MuJoCo frames of the maze, real ribs
archives, the real CLI, at tiny budgets (8 genomes x 40-step episodes, 32 x 32 frames)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

ribs = pytest.importorskip("ribs", reason="the QD learners need the qd extra: pip install 'rl-workbench[qd]'")
torch = pytest.importorskip("torch")

from workbench_testing import REPO, cli, kill_after_checkpoint, qd_archive, resume_to, set_args  # noqa: E402

from policies.qd import MLPController  # noqa: E402
from policies.qd.behaviour import AESettings, FrameStore, LearnedSpace, RetrainSchedule  # noqa: E402
from policies.qd.rollout import Evaluator, FrameSpec, frame_steps  # noqa: E402
from workbench.errors import TaskError  # noqa: E402
from workbench.learner import load_policy  # noqa: E402
from workbench.spec import load_task  # noqa: E402
from workbench.task import Task  # noqa: E402

TAXONS = REPO / "tasks" / "qd" / "maze_taxons.yaml"
STAX = REPO / "tasks" / "qd" / "maze_stax.yaml"
EPISODE = 40
POP = 8
GEN = EPISODE * POP
TINY = [f"sim.max_episode_steps={EPISODE}", f"learner.hyperparams.population={POP}",
        "learner.hyperparams.frame_size=32", "learner.hyperparams.ae_epochs=3", "learner.hyperparams.retrain_every=2",
        "evaluation.episodes=1",
        "evaluation.video=false"]
STAX_TINY = [*TINY, "learner.hyperparams.chunk_evaluations=48", "learner.hyperparams.emitter_population=8",
             "learner.hyperparams.frames=2"]


def _dots(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """(n, 1, size, size, 3) frames: a bright square at a random place on a dark floor."""
    rng = np.random.default_rng(seed)
    frames = np.full((n, 1, size, size, 3), 30, dtype=np.uint8)
    for i, (r, c) in enumerate(rng.integers(0, size - 6, (n, 2))):
        frames[i, 0, r:r + 6, c:c + 6] = 230
    return frames


def test_frame_store_appends_reads_rows_by_evaluation_and_truncates(tmp_path: Path) -> None:
    store = FrameStore(tmp_path / "frames.u8", (1, 32, 32, 3))
    frames = _dots(5)
    store.append(frames[:3])
    store.append(frames[3:])
    assert len(store) == 5
    assert np.array_equal(store.read(np.array([4, 0])), frames[[4, 0]])
    store.truncate(2)  # a resumed run drops the rows written after its checkpoint
    assert len(store) == 2 and np.array_equal(store.read(np.arange(2)), frames[:2])
    with pytest.raises(RuntimeError, match="expects 3"):
        store.truncate(3)
    with pytest.raises(ValueError, match="shape"):
        store.append(np.zeros((1, 2, 32, 32, 3), dtype=np.uint8))


def test_retrain_schedule_is_fixed_for_taxons_and_grows_for_stax() -> None:
    def due(schedule: RetrainSchedule, generations: int) -> list[int]:
        out = []
        for g in range(1, generations + 1):
            if schedule.due(g):
                out.append(g)
                schedule.advance(g)
        return out

    assert due(RetrainSchedule(every=5), 21) == [1, 6, 11, 16, 21]
    assert due(RetrainSchedule(every=4, growth=2.0), 40) == [1, 5, 13, 29]


def test_the_autoencoder_learns_the_frames_and_pickles_to_the_same_encoder() -> None:
    space = LearnedSpace((1, 32, 32, 3), AESettings(latent_dim=4, epochs=30, batch_size=32), seed=0)
    frames = _dots(96)
    _, surprise_before = space.encode(frames)
    record = space.train(frames, np.random.default_rng(0), generation=1)
    z, surprise_after = space.encode(frames)
    assert record["epochs"] == 30 and record["frames"] == 96
    assert surprise_after.mean() < 0.5 * surprise_before.mean()  # it learned to reconstruct them
    # descriptors are standardised on the training frames
    assert z.shape == (96, 4) and np.allclose(z.mean(axis=0), 0, atol=1e-6) and np.allclose(z.std(axis=0), 1, atol=1e-3)
    # unlike frames are more surprising than the ones it was trained on
    odd = np.full((4, 1, 32, 32, 3), 200, dtype=np.uint8)
    assert space.encode(odd)[1].mean() > surprise_after.max()
    copy = pickle.loads(pickle.dumps(space))
    z2, s2 = copy.encode(frames)
    assert np.array_equal(z, z2) and np.array_equal(surprise_after, s2)


def test_early_stopping_ends_a_training_whose_held_out_loss_stalls() -> None:
    space = LearnedSpace((1, 32, 32, 3), AESettings(latent_dim=2, epochs=200, patience=2, lr=0.0), seed=0)
    record = space.train(_dots(40), np.random.default_rng(0), generation=1)
    assert record["epochs"] == 3 and record["held_out_loss"] is not None  # lr 0: never better after the first


def test_rollouts_carry_frames_at_the_ends_of_equal_parts_of_the_episode() -> None:
    spec = load_task(TAXONS, [f"sim.max_episode_steps={EPISODE}"])
    task = Task.build(spec)
    probe = task.make_env()
    controller = MLPController.for_spaces(probe.observation_space, probe.action_space, (4,))
    probe.close()
    genomes = np.random.default_rng(0).normal(0, 1, (3, controller.n_params))
    frames = FrameSpec(count=4, size=32, horizon=EPISODE)
    evaluator = Evaluator(task.env_fns(1)[0], controller, descriptor=["x", "y"], outcome=[], seed=0, frames=frames)
    try:
        outcomes = evaluator.evaluate(genomes, 5)
    finally:
        evaluator.close()
    assert frame_steps(4, EPISODE) == [10, 20, 30, 40]
    assert [o.index for o in outcomes] == [5, 6, 7]
    for o in outcomes:
        assert o.frames is not None and o.frames.shape == (4, 32, 32, 3) and o.frames.dtype == np.uint8
        assert not np.array_equal(o.frames[0], o.frames[-1])  # the point moved between the first and last
    # the last frame is the final state: replaying the genome and rendering at the end gives it
    env = task.make_env(render_mode="rgb_array")
    from policies.qd.rollout import _resize, episode_seed

    obs, _ = env.reset(seed=episode_seed(0, 5))
    layers = controller.layers(genomes[0])
    for _ in range(EPISODE):
        obs, *_ = env.step(controller.act(layers, obs))
    assert np.array_equal(_resize(env.render(), 32), outcomes[0].frames[-1])
    env.close()


def test_taxons_run_trains_reembeds_and_replays_through_eval(tmp_path: Path) -> None:
    from workbench.pipeline import train_and_evaluate

    spec = load_task(TAXONS, [*TINY, f"training.total_steps={5 * GEN}"])
    result = train_and_evaluate(spec, tmp_path / "runs")
    run = result.run.path
    qd = json.loads((run / "qd.json").read_text())
    assert qd["learner"] == "taxons" and qd["generations"] == 5
    trainings = qd["autoencoder"]["trainings"]
    assert [t["generation"] for t in trainings] == [1, 3, 5] and qd["autoencoder"]["frames_stored"] == 5 * POP
    assert sum(qd["taxons"]["selected_by"].values()) == 5
    assert [h["ae_trained"] for h in qd["history"]] == [True, False, True, False, True]
    assert {h["selected_by"] for h in qd["history"]} <= {"novelty", "surprise"}
    # the archive holds the descriptors of the last training: re-embedded from the stored frames
    with open(run / "qd" / "novelty_archive.pkl", "rb") as fh:
        archive = pickle.load(fh)
    saved = torch.load(run / "qd" / "autoencoder.pt", weights_only=False)
    space = LearnedSpace((1, 32, 32, 3), AESettings(latent_dim=10), seed=0)
    space.model.load_state_dict(saved["state_dict"])
    space.mean, space.scale = saved["mean"], saved["scale"]
    store = FrameStore(run / "qd" / "frames.u8", (1, 32, 32, 3))
    ids = archive.data("evaluation")
    assert len(ids) > 0 and ids.max() < 5 * POP
    expected, _ = space.encode(store.read(ids))
    assert np.allclose(archive.data("measures"), expected, atol=1e-5)
    assert isinstance(load_policy(run / "model"), object) and (run / "eval.json").is_file()
    # the picture of what the autoencoder makes of the archive's frames
    assert qd["reconstructions_png"] == "reconstructions.png"
    assert (run / "reconstructions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recon = space.reconstruct(store.read(ids[:2]))
    assert recon.shape == (2, 1, 32, 32, 3) and recon.dtype == np.uint8


@pytest.mark.slow  # ~30 s; the default suite kills and resumes ns (test_qd) and checks the frame store's truncation
def test_stax_sigkill_then_resume_continues_the_learned_space_exactly(tmp_path: Path) -> None:
    from workbench.pipeline import train_and_evaluate

    run = kill_after_checkpoint([str(STAX), *set_args([*STAX_TINY, "training.total_steps=1e6"])], tmp_path / "runs",
                                3 * GEN)
    step = json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    total = step + 4 * GEN
    proc2 = resume_to(run, total)
    assert proc2.returncode == 0, proc2.stderr
    resumed = json.loads((run / "qd.json").read_text())
    whole = train_and_evaluate(load_task(STAX, [*STAX_TINY, f"training.total_steps={total}"]), tmp_path / "whole")
    uninterrupted = json.loads((whole.run.path / "qd.json").read_text())
    assert resumed["autoencoder"]["frames_stored"] == resumed["episodes"]
    for key in ("steps", "episodes", "generations", "history", "stax", "best_reward", "coverage"):
        assert resumed[key] == uninterrupted[key], key
    drop = ("seconds",)
    assert ([{k: v for k, v in t.items() if k not in drop} for t in resumed["autoencoder"]["trainings"]]
            == [{k: v for k, v in t.items() if k not in drop} for t in uninterrupted["autoencoder"]["trainings"]])
    for stem in ("novelty_archive", "rewarding_archive"):
        a, b = qd_archive(run, stem), qd_archive(whole.run.path, stem)
        assert np.array_equal(a.data("solution"), b.data("solution")), stem
        assert np.allclose(a.data("measures"), b.data("measures"), atol=1e-6), stem
    assert (run / "qd" / "frames.u8").stat().st_size == resumed["episodes"] * 2 * 32 * 32 * 3


@pytest.mark.parametrize(("override", "key", "match"), [
    ("learner.hyperparams.descriptor=[x, y]", "learner.hyperparams.descriptor", "no hyperparameter 'descriptor'"),
    ("learner.hyperparams.frame_size=60", "learner.hyperparams.frame_size", "multiple of 8"),
    ("sim.max_episode_steps=null", "sim.max_episode_steps", "needs its length"),
    ("learner.hyperparams.retrain_growth=0.5", "learner.hyperparams.retrain_growth", "greater than or equal to 1"),
])
def test_bad_learned_space_hyperparams_name_the_key(override: str, key: str, match: str) -> None:
    from policies.qd import StaxLearner

    with pytest.raises(TaskError, match=match) as info:
        StaxLearner.validate_spec(load_task(STAX, [override]), file="maze_stax.yaml")
    assert info.value.key == key


def test_a_bad_key_exits_2_through_the_cli(tmp_path: Path) -> None:
    proc = cli("run", str(TAXONS), "--runs-dir", str(tmp_path), "--quiet",
               *set_args(["learner.hyperparams.emitter_population=4"]))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "learner.hyperparams.emitter_population" in proc.stderr + proc.stdout
