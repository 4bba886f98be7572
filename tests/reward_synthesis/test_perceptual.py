"""Perceptual rewards (Sermanet et al. 2016): step discovery, feature selection, per-step rewards,
the model file, demo files, the reward source and the `workbench reward perceptual` command."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Imported at collection, before any test renders: importing torchvision's ops (-> triton) after
# MuJoCo has made an EGL context segfaults the process.
open_clip = pytest.importorskip("open_clip", reason="perceptual rewards need the vlm extra (open_clip_torch)")

from reward_synthesis.pixels.perceptual.demos import find_demos, read_demo  # noqa: E402
from reward_synthesis.pixels.perceptual.model import (  # noqa: E402
    RUN_FILE,
    PerceptualModel,
    best_partition,
    discover_steps,
    fit,
    labels_from_boundaries,
    segment,
    segment_costs,
)
from reward_synthesis.pixels.perceptual.source import PerceptualReward  # noqa: E402
from workbench.cli import _backbone_and_output, learn_perceptual  # noqa: E402
from workbench.errors import TaskError, WorkbenchError  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]
SMALL_CLIP = "ViT-S-32"  # the smallest ViT open_clip builds; random weights (nothing downloads here)


# ----------------------------------------------------------------------------- synthetic features

D, K = 48, 3


def make_demo(rng: np.random.Generator, lengths: list[int], *, amp: float = 1.5, noise: float = 1.0,
              distract_at: int | None = None) -> tuple[np.ndarray, list[int]]:
    """Step i raises dims 4i..4i+3 by ``amp`` (the rest is noise). ``distract_at``: a large change
    in dims 40..47 from that frame to the end of step 2 (one demo's nuisance, not a step)."""
    x = noise * rng.normal(size=(sum(lengths), D))
    b = np.cumsum([0, *lengths])
    for i in range(len(lengths)):
        x[b[i]:b[i + 1], 4 * i:4 * i + 4] += amp
    if distract_at is not None:
        x[distract_at:b[2], 40:48] += 2.5
    return x, [int(v) for v in b[1:-1]]


@pytest.fixture(scope="module")
def demos() -> list[tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(7)
    return [make_demo(rng, [int(n) for n in rng.integers(15, 70, size=K)]) for _ in range(6)]


def test_dp_is_the_exact_minimum(demos: list[tuple[np.ndarray, list[int]]]) -> None:
    x = demos[0][0][:14]
    costs = segment_costs(x, min_frames=2) * K
    got, cost = best_partition(costs)

    def total(b1: int, b2: int) -> float:
        return sum(float(((s - s.mean(0)) ** 2).sum()) for s in (x[:b1], x[b1:b2], x[b2:]))

    brute = min((total(b1, b2), [b1, b2]) for b1, b2 in itertools.combinations(range(2, 13), 2) if b2 - b1 >= 2)
    assert got == brute[1] and cost == pytest.approx(brute[0], rel=1e-9)


def test_step_discovery_recovers_true_boundaries(demos: list[tuple[np.ndarray, list[int]]]) -> None:
    found, info = discover_steps([x for x, _ in demos], K)
    for (x, truth), bounds in zip(demos, found):
        assert len(bounds) == K - 1 and bounds == sorted(bounds)
        assert np.abs(np.subtract(bounds, truth)).max() <= 2, (bounds, truth, len(x))
    assert info["objective"] <= info["objective_independent"] + 1e-9


def test_shared_step_means_override_one_demos_nuisance_change() -> None:
    rng = np.random.default_rng(3)
    lengths = [30, 40, 30]
    odd, truth = make_demo(rng, lengths, distract_at=50)  # a big change mid-step-2 in one demo
    others = [make_demo(rng, lengths)[0] for _ in range(5)]
    alone = segment(odd, K)
    aligned, _ = discover_steps([odd, *others], K)
    assert np.abs(np.subtract(alone, truth)).max() > 5  # on its own, the nuisance wins a boundary
    assert np.abs(np.subtract(aligned[0], truth)).max() <= 2  # with the other demos, the steps win


def test_feature_selection_picks_the_dimensions_that_change(demos: list[tuple[np.ndarray, list[int]]]) -> None:
    model = fit([x for x, _ in demos], K, model="test", pretrained=None, features_per_step=4)
    for i, step in enumerate(model.steps):
        assert set(step.features.tolist()) == {4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3}
        assert np.all(np.diff(step.score) <= 0)  # ranked best first


def test_step_rewards_and_total_on_a_held_out_demo(demos: list[tuple[np.ndarray, list[int]]]) -> None:
    model = fit([x for x, _ in demos], K, model="test", pretrained=None)
    x, truth = make_demo(np.random.default_rng(99), [25, 35, 30])
    labels = labels_from_boundaries(len(x), truth)
    steps = model.step_rewards(x)
    assert steps.shape == (len(x), K) and np.all((steps >= 0) & (steps <= 1))
    by_step = np.stack([steps[labels == i].mean(0) for i in range(K)])  # [true step, reward of step]
    assert np.all(by_step.argmax(axis=1) == np.arange(K))  # each r_i highest on its own step's frames
    assert np.all(np.diag(by_step) > 0.7) and np.all(by_step[~np.eye(K, dtype=bool)] < 0.3)
    total = model(x)
    means = [total[labels == i].mean() for i in range(K)]
    assert means[0] < means[1] < means[2]  # the total climbs as the task progresses
    smooth = np.convolve(total, np.ones(5) / 5, mode="valid")
    assert np.corrcoef(smooth, np.arange(len(smooth)))[0, 1] > 0.8
    np.testing.assert_allclose(total, steps @ (np.array([1, 2, 4]) / 7))  # the documented formula


def test_save_load_round_trip_is_exact(demos: list[tuple[np.ndarray, list[int]]], tmp_path: Path) -> None:
    model = fit([x for x, _ in demos], K, model="test", pretrained="tag", probe=np.linspace(-1, 1, D),
                names=[f"d{j}.mp4" for j in range(len(demos))])
    path = tmp_path / "m.json"
    model.save(path)
    back = PerceptualModel.load(path)
    assert back.to_json() == path.read_text()
    for a, b in zip(model.steps, back.steps):
        for name in ("features", "score", "mean_in", "var_in", "mean_out", "var_out", "slope", "offset"):
            va, vb = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
            assert np.array_equal(va, vb) and va.dtype == vb.dtype
    assert np.array_equal(back.probe, model.probe)
    assert [d.boundaries for d in back.demos] == [d.boundaries for d in model.demos]
    x = np.concatenate([x for x, _ in demos])
    assert np.array_equal(back(x), model(x))


@pytest.mark.parametrize("edit,expect", [
    (lambda d: d.update(version=99), "format version 99"),
    (lambda d: d.update(format="other"), "'format'"),
    (lambda d: d["steps"][0].update(features=[0, 10_000] + d["steps"][0]["features"][2:]), "outside"),
    (lambda d: d["steps"][1].pop("var_in"), "KeyError"),
])
def test_loading_rejects_a_broken_file(demos: list[tuple[np.ndarray, list[int]]], edit, expect: str) -> None:
    data = json.loads(fit([x for x, _ in demos], K, model="test", pretrained=None).to_json())
    edit(data)
    with pytest.raises(WorkbenchError, match=expect) as info:
        PerceptualModel.from_json(json.dumps(data), file="m.json")
    assert "workbench reward perceptual" in str(info.value)


# ----------------------------------------------------------------------------- real CLIP, real files

COLOURS = np.array([[200, 40, 40], [40, 190, 60], [50, 60, 210]], dtype=np.int16)


def colour_video(rng: np.random.Generator, lengths: list[int], size: int = 64) -> np.ndarray:
    """One solid colour per phase, plus pixel noise: a video whose steps are known."""
    frames = np.concatenate([np.broadcast_to(COLOURS[i], (n, size, size, 3)) for i, n in enumerate(lengths)])
    return np.clip(frames + rng.integers(-12, 13, size=frames.shape), 0, 255).astype(np.uint8)


def write_demo_files(directory: Path) -> dict[str, list[int]]:
    """The same kind of demo in each supported format; returns the true boundaries per file."""
    import imageio.v2 as imageio

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    truth = {}
    for name, lengths in (("a.npz", [12, 20, 15]), ("b.gif", [18, 10, 22]), ("c.mp4", [15, 15, 16])):
        video = colour_video(rng, lengths)
        path = directory / name
        if name.endswith(".npz"):
            np.savez_compressed(path, frames=video)
        elif name.endswith(".gif"):
            imageio.mimsave(path, list(video))
        else:
            imageio.mimsave(path, list(video), format="FFMPEG", fps=20, codec="libx264", macro_block_size=1)
        truth[name] = [int(v) for v in np.cumsum(lengths)[:-1]]
    (directory / "notes.txt").write_text("not a demo: ignored")
    return truth


@pytest.fixture(scope="module")
def backbone():  # type: ignore[no-untyped-def]
    from reward_synthesis.pixels.vlm import load_backbone

    return load_backbone(SMALL_CLIP, None, device="cpu")


def test_clip_end_to_end_recovers_colour_phases(backbone, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    truth = write_demo_files(tmp_path / "demos")
    paths = find_demos(tmp_path / "demos")
    assert [p.name for p in paths] == ["a.npz", "b.gif", "c.mp4"]
    videos = [read_demo(p) for p in paths]
    assert all(v.dtype == np.uint8 and v.shape[1:] == (64, 64, 3) for v in videos)
    feats = [backbone.encode_frames(v) for v in videos]
    model = fit(feats, 3, model=SMALL_CLIP, pretrained=None, names=[p.name for p in paths])
    for d in model.demos:
        assert np.abs(np.subtract(d.boundaries, truth[d.name])).max() <= 1, (d.name, d.boundaries)
    by_step = model.fit_info["total_by_step"]
    assert by_step[0] < by_step[1] < by_step[2]


def test_unreadable_and_malformed_demos_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    with pytest.raises(WorkbenchError, match="broken.mp4: cannot read this demo") as info:
        read_demo(bad)
    assert "fix:" in str(info.value) and "=== stderr ===" not in str(info.value)
    floats = tmp_path / "floats.npz"
    np.savez(floats, frames=np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(WorkbenchError, match="floats.npz.*uint8"):
        read_demo(floats)


# ----------------------------------------------------------------------------- the reward source


def perceptual_task(tmp_path: Path, **reward: object) -> Path:
    opts = {"source": "perceptual", "file": "rewards/m.json", "model": SMALL_CLIP, "pretrained": None,
            "device": "cpu", **reward}
    path = tmp_path / "task.yaml"
    path.write_text("name: colours\nsim: {env_id: Reacher-v5}\n"
                    f"reward: {json.dumps(opts)}\n"
                    "learner: {name: ppo}\ntraining: {total_steps: 512}\n")
    return path


def test_learn_then_build_the_reward_source(backbone, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console

    from workbench.spec import load_task
    from workbench.task import Task

    task_file = perceptual_task(tmp_path)
    with pytest.raises(TaskError) as info:  # no model file yet
        load_task(task_file)
    assert info.value.key == "reward.file" and "workbench reward perceptual" in str(info.value)

    truth = write_demo_files(tmp_path / "demos")
    quiet = Console(file=open(os.devnull, "w"))
    learned = learn_perceptual(task_file, tmp_path / "demos", 3, console=quiet, status=quiet)  # writes the task's file
    model_file = tmp_path / "rewards" / "m.json"
    assert model_file.is_file() and learned.model == SMALL_CLIP and learned.probe is not None
    assert {d.name: d.boundaries for d in learned.demos}.keys() == truth.keys()

    spec = load_task(task_file)
    built = Task.build(spec).reward
    assert isinstance(built.frame_reward, PerceptualReward)
    assert built.files[RUN_FILE] == model_file.read_text()
    assert (built.resolved is not None and built.resolved["file"] == RUN_FILE
            and built.resolved["source"] == "perceptual")
    assert built.record["perceptual"]["k"] == 3 and "2^(i-1)" in built.record["perceptual"]["reward"]
    assert "3 steps learned from 3 demos" in built.description

    frames = colour_video(np.random.default_rng(5), [1, 1, 1])  # one frame of each colour, in order
    total, components = built.frame_reward(frames, {})
    assert total.shape == (3,) and total[0] < total[1] < total[2]
    for i in range(3):
        step = components[f"step_{i + 1}"]
        assert step.argmax() == i  # each step's reward peaks on its colour


def test_source_refuses_another_backbone(backbone, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from workbench.spec import load_task
    from workbench.task import Task

    demos_dir = tmp_path / "demos"
    write_demo_files(demos_dir)
    feats = [backbone.encode_frames(read_demo(p)) for p in find_demos(demos_dir)]
    probe_of_other_weights = np.random.default_rng(0).normal(
        size=backbone.encode_frames(np.zeros((1, 8, 8, 3), np.uint8)).shape[1])
    (tmp_path / "rewards").mkdir()
    fit(feats, 3, model=SMALL_CLIP, pretrained=None, probe=probe_of_other_weights).save(tmp_path / "rewards" / "m.json")

    with pytest.raises(TaskError) as info:
        load_task(perceptual_task(tmp_path, model="ViT-B-32"))
    assert info.value.key == "reward.model" and "ViT-S-32" in str(info.value)
    with pytest.raises(TaskError) as info:
        load_task(perceptual_task(tmp_path, pretrained="laion2b_s34b_b79k"))
    assert info.value.key == "reward.pretrained"
    with pytest.raises(WorkbenchError, match="probe-frame cosine"):
        Task.build(load_task(perceptual_task(tmp_path)))


def test_cli_backbone_and_output_defaults(tmp_path: Path) -> None:
    from reward_synthesis.pixels.perceptual import learning_model_file
    from workbench.spec import load_task

    with learning_model_file():
        own = load_task(perceptual_task(tmp_path))
    assert _backbone_and_output(own, None, None, None, None) == (
        SMALL_CLIP, None, "cpu", tmp_path / "rewards" / "m.json")
    with pytest.raises(WorkbenchError, match="--model ViT-B-32 contradicts"):
        _backbone_and_output(own, "ViT-B-32", None, None, None)
    with pytest.raises(WorkbenchError, match="--pretrained"):
        _backbone_and_output(own, None, "laion2b_s34b_b79k", None, None)
    other = load_task(REPO / "tasks" / "mujoco" / "reacher.yaml")
    assert _backbone_and_output(other, None, None, None, None) == (
        "ViT-B-32", "laion2b_s34b_b79k", "auto", REPO / "tasks" / "mujoco" / "rewards" / "reacher_perceptual.json")
    assert _backbone_and_output(other, "ViT-S-32", "none", None, tmp_path / "x.json")[1:] == (
        None, "auto", tmp_path / "x.json")


# ----------------------------------------------------------------------------- the real CLI


def wb(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=240, cwd=cwd, env=env)


@pytest.fixture
def reacher_task(tmp_path: Path) -> Path:
    path = tmp_path / "reach.yaml"
    path.write_text("name: reach\nsim: {env_id: Reacher-v5, kwargs: {width: 64, height: 64}}\n"
                    "learner: {name: ppo}\ntraining: {total_steps: 512}\n")
    return path


def test_cli_records_reacher_demos_and_writes_the_model(reacher_task: Path, tmp_path: Path) -> None:
    proc = wb("reward", "perceptual", "--task", str(reacher_task), "--demos", str(tmp_path / "demos"),
              "--record", "2", "--steps", "2", "--model", SMALL_CLIP, "--pretrained", "none",
              "--set", "sim.max_episode_steps=30")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "demos").iterdir()) == ["demo_000.mp4", "demo_001.mp4"]
    model = PerceptualModel.load(tmp_path / "rewards" / "reach_perceptual.json")  # the default place
    assert model.k == 2 and model.model == SMALL_CLIP and model.pretrained is None
    assert [d.frames for d in model.demos] == [31, 31]  # reset frame + 30 steps
    assert "demo_000.mp4: 31 frames, steps start at [0, " in proc.stdout
    assert "wrote " in proc.stdout and "2 steps from 2 demos (62 frames)" in proc.stdout
    assert "RANDOM weights" in proc.stderr


@pytest.mark.parametrize("setup,expect", [
    (lambda d: None, "no demos"),
    (lambda d: (d / "demo_000.mp4").write_text("junk"), "demo_000.mp4: cannot read this demo"),
])
def test_cli_bad_demos_dir_is_one_user_error(reacher_task: Path, tmp_path: Path, setup, expect: str) -> None:
    demos_dir = tmp_path / "demos"
    demos_dir.mkdir()
    setup(demos_dir)
    proc = wb("reward", "perceptual", "--task", str(reacher_task), "--demos", str(demos_dir), "--steps", "3")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "=== stderr ===" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and expect in lines[0]
    assert len(lines) == 2 and lines[1].strip().startswith("fix:")
