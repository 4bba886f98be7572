"""Demonstrations for perceptual rewards: demo files (mp4, gif, npz — one episode each), read
and checked, and episodes of a task's scripted reference policy recorded as demos."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workbench.errors import TaskError, WorkbenchError

if TYPE_CHECKING:
    from workbench.spec import TaskSpec

__all__ = ["DEMO_SUFFIXES", "find_demos", "read_demo", "read_demos", "record_demos", "file_sha256"]

DEMO_SUFFIXES = (".mp4", ".gif", ".npz")


def find_demos(directory: Path) -> list[Path]:
    """The demo files (``.mp4``/``.gif``/``.npz``, one demo each) in ``directory``, sorted by name."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise WorkbenchError(f"{directory}: not a directory\n  fix: --demos takes a directory of demo videos")
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in DEMO_SUFFIXES)


def _unreadable(path: Path, why: str) -> WorkbenchError:
    return WorkbenchError(f"{path}: cannot read this demo: {why}\n"
                          f"  fix: replace or remove the file; a demo is an .mp4/.gif video or an .npz holding one "
                          f"uint8 array [T, H, W, 3]")


def _first_and_last(message: str) -> str:
    lines = [ln.strip() for ln in message.splitlines() if ln.strip() and ln.strip() != "=== stderr ==="]
    return lines[0] if len(lines) < 2 else f"{lines[0]} ({lines[-1]})"  # ffmpeg appends its whole log


def read_demo(path: Path) -> np.ndarray:
    """Frames ``[T, H, W, 3]`` uint8 of one demo file."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if "frames" in keys:
                    frames = z["frames"]
                elif len(keys) == 1:
                    frames = z[keys[0]]
                else:
                    raise _unreadable(path, f"holds arrays {keys}; name the frames array 'frames'")
        else:
            import imageio.v2 as imageio

            if suffix == ".gif":
                frames = np.stack([np.asarray(f) for f in imageio.mimread(path, memtest=False)])
            else:
                with imageio.get_reader(path, format="FFMPEG") as reader:
                    frames = np.stack([np.asarray(f) for f in reader])
    except WorkbenchError:
        raise
    except Exception as err:  # imageio/ffmpeg/zip raise many types for a broken file
        raise _unreadable(path, _first_and_last(f"{type(err).__name__}: {err}")) from None
    if frames.ndim == 3:  # greyscale
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or len(frames) == 0:
        raise _unreadable(path, f"frames shaped {frames.shape}, expected [T, H, W, 3] with T >= 1")
    if frames.dtype != np.uint8:
        raise _unreadable(path, f"frames of dtype {frames.dtype}, expected uint8 (0-255)")
    return np.ascontiguousarray(frames[..., :3])  # drop a GIF's alpha


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _write_demo(path: Path, frames: Sequence[np.ndarray], fps: int) -> None:
    from workbench.runs import atomic_path

    if path.suffix == ".npz":
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, frames=np.stack(frames))
        return
    import imageio.v2 as imageio

    with atomic_path(path) as tmp:
        # quality 9 (of 10): compression must not move the embeddings the reward is fitted on.
        with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=int(fps), codec="libx264",
                                macro_block_size=1, quality=9) as writer:
            for frame in frames:
                writer.append_data(frame)


def record_demos(spec: TaskSpec, n: int, directory: Path, *, seed: int = 0, fmt: str = "mp4",
                 max_frames: int = 1000, on_episode: Callable[[int], None] | None = None) -> list[Path]:
    """Record ``n`` episodes of the task's scripted reference policy as ``demo_000.<fmt>``, … in
    ``directory`` (episode ``i`` reset with ``seed + i``); each file holds the reset frame and the
    frame after every step."""
    from workbench.evaluate import reference_actor, run_episode
    from workbench.registry import SIMS

    file = spec.source_path or "<task>"
    adapter = SIMS.get(spec.sim.name)()
    try:
        env = adapter.make_env(spec.sim, render_mode="rgb_array")
    except TaskError as err:
        if err.file is None:
            raise TaskError(err.message, file=file, key=err.key, hint=err.hint) from None
        raise
    paths = []
    try:
        profile = adapter.profile(spec.sim, env)
        if profile.reference is None:
            raise WorkbenchError(f"{file}: {spec.sim.env_id} has no scripted reference policy to record demos with\n"
                                 f"  fix: put your own demos in the --demos directory ({', '.join(DEMO_SUFFIXES)}, "
                                 f"one file per demo) and drop --record")
        fps = int(env.metadata.get("render_fps", 30))
        act = reference_actor(env, profile.reference)
        for i in range(n):
            episode = run_episode(env, act, seed=seed + i, render=True, max_steps=max_frames - 1)
            path = Path(directory) / f"demo_{i:03d}.{fmt}"
            _write_demo(path, episode.frames, fps)
            paths.append(path)
            if on_episode is not None:
                on_episode(i + 1)
    finally:
        env.close()
    return paths


def read_demos(directory: Path, k: int, min_frames: int) -> list[tuple[Path, np.ndarray]]:
    """Every demo in ``directory`` with its frames, each long enough for ``k`` steps."""
    paths = find_demos(directory)
    if not paths:
        raise WorkbenchError(f"{directory}: no demos ({', '.join(DEMO_SUFFIXES)} files, one per demo)\n"
                             f"  fix: record some with the task's reference policy "
                             f"(`workbench reward perceptual --record 10`), or put your demo videos there")
    videos = [(p, read_demo(p)) for p in paths]
    for p, v in videos:
        if len(v) < k * min_frames:
            raise WorkbenchError(f"{p}: {len(v)} frames are too few for {k} steps of at least {min_frames} frames\n"
                                 f"  fix: use longer demos or fewer steps")
    return videos
