"""Pixel rewards: the open_clip backbone's plumbing (random weights: no weights download here),
the CLG and goal-baseline formulas, calibration, combine expressions, and batched scoring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv
from workbench_testing import REPO, TEST_CLIP

from reward_synthesis.pixels.combine import CombineError, compile_combine
from reward_synthesis.pixels.vlm import load_backbone
from reward_synthesis.pixels.vlm_rewards import clip_goal_scores, fit_window, goal_baseline_scores
from workbench.errors import TaskError, WorkbenchError
from workbench.spec import load_task
from workbench.task import Task

REACHER_CLIP = REPO / "tasks" / "mujoco" / "reacher_clip.yaml"


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("ViT-S-32", None, device="cpu")


def _frames(n: int, h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- backbone


def test_text_embeddings_are_unit_and_cached(backbone) -> None:
    emb = backbone.encode_text(["a red ball", "a blue box", "a red ball"])
    assert emb.shape == (3, backbone.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(emb[0], emb[2])
    assert "a red ball" in backbone._text_cache and "a blue box" in backbone._text_cache


def test_batched_frames_equal_one_by_one(backbone) -> None:
    frames = _frames(6)
    batched = backbone.encode_frames(frames)
    single = np.concatenate([backbone.encode_frames(f) for f in frames])
    assert batched.shape == (6, backbone.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    # Chunked forward passes (batch_size smaller than N) give the same embeddings.
    backbone.batch_size, old = 4, backbone.batch_size
    try:
        np.testing.assert_allclose(backbone.encode_frames(frames), batched, atol=1e-5)
    finally:
        backbone.batch_size = old


def test_batch_preprocessing_matches_open_clips_transform(backbone) -> None:
    import open_clip
    from PIL import Image

    _, _, transform = open_clip.create_model_and_transforms("ViT-S-32", pretrained=None)
    # A smooth image: bicubic resampling in PIL and torch agree up to rounding on smooth content.
    y, x = np.mgrid[0:150, 0:200]
    frame = np.stack([x * 255 / 200, y * 255 / 150, (x + y) * 255 / 350], -1).astype(np.uint8)
    ours = backbone.preprocess(frame[None])[0].numpy()
    reference = transform(Image.fromarray(frame)).numpy()
    assert ours.shape == reference.shape == (3, 224, 224)
    assert np.abs(ours - reference).mean() < 0.02


def test_frames_must_be_rgb(backbone) -> None:
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        backbone.preprocess(np.zeros((2, 32, 32), np.uint8))


def test_unknown_model_and_tag_name_the_key() -> None:
    with pytest.raises(WorkbenchError, match="reward.model: unknown open_clip model 'ViT-B-99'"):
        load_backbone("ViT-B-99", None, device="cpu")
    with pytest.raises(WorkbenchError, match="reward.pretrained: unknown pretrained tag") as info:
        load_backbone("ViT-B-32", "laion9b_nope", device="cpu")
    assert "laion2b_s34b_b79k" in str(info.value)
    with pytest.raises(WorkbenchError, match="no such checkpoint file"):
        load_backbone("ViT-B-32", "/nonexistent/open_clip_model.bin", device="cpu")


def test_missing_weights_offline_fail_fast_with_a_fix() -> None:
    # HF_HUB_OFFLINE=1 (conftest): open_clip looks only in the local cache, which is empty here.
    with pytest.raises(WorkbenchError, match="could not load 'laion2b_s34b_b79k'") as info:
        load_backbone("ViT-B-32", "laion2b_s34b_b79k", device="cpu")
    assert "fix:" in str(info.value) and "HF_HUB_OFFLINE=1" in str(info.value)


def test_cuda_requested_without_a_gpu_is_a_user_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(WorkbenchError, match="reward.device: cpu"):
        load_backbone("ViT-S-32", None, device="cuda")


def test_a_checkpoint_file_loads_the_same_weights(backbone, tmp_path: Path) -> None:
    import torch

    path = tmp_path / "clip.pt"
    torch.save(backbone.model.state_dict(), path)
    loaded = load_backbone("ViT-S-32", str(path), device="cpu")
    assert not loaded.random_weights
    frames = _frames(2)
    np.testing.assert_allclose(loaded.encode_frames(frames), backbone.encode_frames(frames), atol=1e-6)


# ----------------------------------------------------------------------------- formulas


def test_clip_goal_is_the_weighted_contrast_of_cosines(backbone) -> None:
    emb = backbone.encode_frames(_frames(4))
    pos, neg = backbone.encode_text(["the road is clear", "two cars collided"])
    got = clip_goal_scores(emb, pos, neg, 1.5, 0.5)
    for i in range(4):
        cos_p = emb[i] @ pos / (np.linalg.norm(emb[i]) * np.linalg.norm(pos))
        cos_n = emb[i] @ neg / (np.linalg.norm(emb[i]) * np.linalg.norm(neg))
        assert got[i] == pytest.approx(1.5 * cos_p - 0.5 * cos_n, abs=1e-5)


def test_goal_baseline_against_a_direct_computation(backbone) -> None:
    emb = backbone.encode_frames(_frames(5)).astype(np.float64)
    goal, base = backbone.encode_text(["a humanoid kneeling", "a humanoid"]).astype(np.float64)
    for alpha in (0.0, 0.3, 1.0):
        got = goal_baseline_scores(emb, goal, base, alpha)
        for i, e in enumerate(emb):
            # Projection onto the line through b and g: b + t (g - b), t = (e-b)·(g-b)/|g-b|².
            t = (e - base) @ (goal - base) / ((goal - base) @ (goal - base))
            proj = base + t * (goal - base)
            x = alpha * proj + (1 - alpha) * e
            assert got[i] == pytest.approx(1 - 0.5 * np.sum((x - goal) ** 2), abs=1e-9)
    # alpha = 0 is plain cosine similarity between unit vectors.
    np.testing.assert_allclose(goal_baseline_scores(emb, goal, base, 0.0), emb @ goal, rtol=0, atol=1e-6)


def test_window_fitted_from_quantiles_maps_to_unit_range() -> None:
    raw = np.linspace(-1.0, 3.0, 401)
    lo, hi = fit_window(raw, (0.1, 0.9))
    assert lo == pytest.approx(-0.6) and hi == pytest.approx(2.6)


# ----------------------------------------------------------------------------- combine


def test_combine_expression_vectorised() -> None:
    c = compile_combine("vlm * speed * center + collision - 0.1 * max(env, 0)",
                        ["vlm", "speed", "center", "collision", "env"])
    v = {"vlm": np.array([1.0, 0.5]), "speed": np.array([1.0, 0.5]), "center": np.array([0.5, 1.0]),
         "collision": np.array([0.0, -1.0]), "env": np.array([2.0, -3.0])}
    np.testing.assert_allclose(c(v), [0.5 - 0.2, 0.25 - 1.0])
    assert c.names == {"vlm", "speed", "center", "collision", "env"}


@pytest.mark.parametrize("expr, message", [
    ("vlm * sped", "did you mean 'speed'"),
    ("__import__('os').system('x')", "is not allowed"),
    ("vlm.real", "is not allowed"),
    ("vlm ** 2", "is not allowed"),
    ("min(vlm)", "takes 2 arguments"),
    ("vlm +", "not an expression"),
    ("'text'", "is not allowed"),
])
def test_combine_rejects_what_is_not_arithmetic(expr: str, message: str) -> None:
    with pytest.raises(CombineError, match=message):
        compile_combine(expr, ["vlm", "speed"])


# ----------------------------------------------------------------------------- sources on a real task


def _task(*overrides: str) -> Task:
    return Task.build(load_task(REACHER_CLIP, [*TEST_CLIP, "reward.calibration_steps=48",
                                               "sim.kwargs.width=96", "sim.kwargs.height=96",
                                               "sim.max_episode_steps=6", *overrides]))


def test_clip_goal_task_calibrates_and_records(capfd) -> None:
    task = _task()
    record = task.reward.record
    lo, hi = record["calibration"]["window"]
    assert lo < hi and record["calibration"]["frames"] == 48 and record["random_weights"] is True
    assert task.reward.resolved["window"] == [lo, hi]
    assert "RANDOM weights" in task.reward.description
    # A fixed window skips fitting and is used as given.
    fixed = _task("reward.window=[0.0, 1.0]")
    assert fixed.reward.frame_reward.window == (0.0, 1.0)
    assert fixed.reward.record["calibration"] == {"window": [0.0, 1.0], "from": "task file"}


def test_batched_vector_scoring_equals_one_env_at_a_time() -> None:
    task = _task()
    lo, hi = task.reward.frame_reward.window
    tolerance = 1e-6 / (hi - lo)  # float32 forward passes differ ~1e-7 by batch shape; the window scales it
    n = 3
    venv = task.wrap_vec(DummyVecEnv(task.env_fns(n)))
    singles = [task.make_env() for _ in range(n)]
    try:
        venv.seed(5)
        venv.reset()
        for i, env in enumerate(singles):
            env.reset(seed=5 + i)
        rng = np.random.default_rng(0)
        for step in range(8):  # crosses the 6-step time limit: terminal frames are pre-reset frames
            actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
            _, rewards, dones, infos = venv.step(actions)
            for i, env in enumerate(singles):
                _, r, term, trunc, info = env.step(actions[i])
                assert infos[i]["reward/vlm_raw"] == pytest.approx(info["reward/vlm_raw"], abs=1e-6)
                assert rewards[i] == pytest.approx(r, abs=tolerance), (step, i)
                assert "workbench/frame" not in infos[i] and "workbench/frame" not in info
                assert bool(dones[i]) == (term or trunc)
                if term or trunc:
                    env.reset()
                    assert infos[i]["is_success"] is not None
    finally:
        venv.close()
        for env in singles:
            env.close()


def test_terms_program_combines_with_the_pixel_score(tmp_path: Path) -> None:
    terms = tmp_path / "terms.py"
    terms.write_text(
        "import numpy as np\n\n"
        "def compute_reward(state, action):\n"
        "    near = float(np.exp(-10.0 * np.linalg.norm(state.fingertip_to_target)))\n"
        "    effort = -0.1 * float(np.sum(np.square(action)))\n"
        "    return near + effort, {'near': near, 'effort': effort}\n")
    task = _task(f"reward.terms={terms}", "reward.combine=vlm * near + effort")
    env = task.make_env()
    try:
        env.reset(seed=1)
        _, reward, _, _, info = env.step(np.array([0.3, -0.2], np.float32))
        assert reward == pytest.approx(info["reward/vlm"] * info["reward/near"] + info["reward/effort"], abs=1e-5)
    finally:
        env.close()
    assert task.reward.resolved["terms"] == "reward/terms.py"
    assert "reward/terms.py" in task.reward.files
    with pytest.raises(TaskError, match="reward.combine.*did you mean 'near'"):
        _task(f"reward.terms={terms}", "reward.combine=vlm * nea")


# ~35 s: a pixel-reward run, killed and resumed (the plain resume path is in the default suite)
@pytest.mark.slow
def test_run_resumes_and_evaluates_with_the_recorded_calibration(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "workbench.cli", "run", str(REACHER_CLIP), "--runs-dir", str(runs), "--quiet",
           *(f"--set={o}" for o in [*TEST_CLIP, "reward.calibration_steps=32", "sim.kwargs.width=64",
                                     "sim.kwargs.height=64", "training.total_steps=64", "training.n_envs=2",
                                     "learner.hyperparams.learning_starts=16", "learner.hyperparams.batch_size=16",
                                     "evaluation.episodes=1", "evaluation.video=false", "sim.max_episode_steps=16"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM weights" in proc.stderr
    run = next(runs.iterdir())
    resolved = load_task(run / "task.yaml")
    assert resolved.reward.options["window"] and resolved.reward.options["pretrained"] is None
    # The monitor counts episodes after the pixel reward replaced the state reward.
    assert (run / "monitor" / "vec.monitor.csv").is_file()
    evals = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "workbench.cli", "eval", str(run), "--episodes", "1",
                               "--no-video"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        evals.append(proc.stdout.strip().splitlines()[-1])
    assert evals[0] == evals[1] and "mean_return" in evals[0]


def test_open_clip_imports_after_a_mujoco_render() -> None:
    # Mesa's llvmpipe and triton both carry LLVM: triton imported after a software-GL render
    # segfaulted the process; the MuJoCo adapter loads triton first.
    code = ("from workbench.sims.mujoco import MujocoAdapter\nfrom workbench.spec import SimSpec\n"
            "env = MujocoAdapter().make_env(SimSpec(env_id='Reacher-v5'), render_mode='rgb_array')\n"
            "env.reset(seed=0); env.render()\nimport open_clip\nprint('imported')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr[-2000:]
