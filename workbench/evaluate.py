"""The evaluation protocol every learner shares: N seeded episodes, success by the task's own metric.

A policy trained on a synthesized reward is judged by the task's success metric and the
simulator's own return as well as by the reward it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.runs import atomic_path, write_json

__all__ = ["EpisodeResult", "EvalResult", "evaluate", "EVAL_SEED_OFFSET"]

# Evaluation episodes are seeded apart from training seeds so they are held-out starts.
EVAL_SEED_OFFSET = 1_000_000


@dataclass
class EpisodeResult:
    episode: int
    seed: int
    ret: float
    env_return: float
    length: int
    success: bool | None
    components: dict[str, float]  # per-episode sum of each info["reward/<name>"] term


@dataclass
class EvalResult:
    episodes: int
    mean_return: float
    std_return: float
    mean_env_return: float
    success_rate: float | None
    mean_length: float
    components: dict[str, dict[str, float]]  # term -> mean/min/max of its per-episode sums
    deterministic: bool
    success_metric: str
    rows: list[EpisodeResult]
    videos: list[str]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["per_episode"] = [asdict(r) for r in self.rows]
        del out["rows"]
        return out

    def write(self, path: Path) -> None:
        write_json(path, self.to_dict())

    def summary(self) -> str:
        success = "n/a" if self.success_rate is None else f"{self.success_rate:.2f}"
        return (f"success_rate={success}  mean_return={self.mean_return:.2f} ± {self.std_return:.2f}  "
                f"env_return={self.mean_env_return:.2f}  episodes={self.episodes}")


def evaluate(policy: Any, task: Any, *, episodes: int, deterministic: bool = True, seed: int = 0,
             video_dir: Path | None = None, video_episodes: int = 0, fps: int | None = None,
             progress: Any = None) -> EvalResult:
    """Run ``episodes`` episodes of ``task.make_env()`` (a :class:`workbench.task.Task`) with ``policy``.

    Episode ``i`` resets with seed ``seed + EVAL_SEED_OFFSET + i`` so the same seed gives the
    same evaluation. The first ``video_episodes`` episodes are rendered to mp4 in ``video_dir``.
    """
    record = video_dir is not None and video_episodes > 0
    env = task.make_env(render_mode="rgb_array" if record else None)
    rows: list[EpisodeResult] = []
    videos: list[str] = []
    try:
        for i in range(episodes):
            ep_seed = seed + EVAL_SEED_OFFSET + i
            obs, _ = env.reset(seed=ep_seed)
            frames: list[np.ndarray] = []
            filming = record and i < video_episodes
            if filming:
                frames.append(env.render())
            ret = env_ret = 0.0
            length = 0
            components: dict[str, float] = {}
            success: bool | None = None
            done = False
            while not done:
                action, _ = policy.predict(obs, deterministic=deterministic)
                obs, reward, terminated, truncated, info = env.step(action)
                ret += float(reward)
                env_ret += float(info.get("reward/env", reward))
                for key, value in info.items():
                    if key.startswith("reward/"):
                        components[key[7:]] = components.get(key[7:], 0.0) + float(value)
                length += 1
                done = terminated or truncated
                if filming:
                    frames.append(env.render())
                if done:
                    success = info.get("is_success")
            rows.append(EpisodeResult(i, ep_seed, ret, env_ret, length, None if success is None else bool(success),
                                      components))
            if filming:
                videos.append(str(_write_video(video_dir / f"episode_{i:03d}.mp4", frames,
                                               fps or env.metadata.get("render_fps", 30))))
            if progress is not None:
                progress(i + 1)
    finally:
        env.close()
    returns = np.array([r.ret for r in rows])
    flags = [r.success for r in rows if r.success is not None]
    return EvalResult(
        episodes=episodes, mean_return=float(returns.mean()), std_return=float(returns.std()),
        mean_env_return=float(np.mean([r.env_return for r in rows])),
        success_rate=float(np.mean(flags)) if flags else None,
        mean_length=float(np.mean([r.length for r in rows])), components=_component_stats(rows),
        deterministic=deterministic,
        success_metric=task.success_doc(), rows=rows, videos=videos)


def _component_stats(rows: list[EpisodeResult]) -> dict[str, dict[str, float]]:
    names = sorted({name for r in rows for name in r.components})
    stats = {}
    for name in names:
        sums = np.array([r.components.get(name, 0.0) for r in rows])
        stats[name] = {"mean": float(sums.mean()), "min": float(sums.min()), "max": float(sums.max())}
    return stats


def _write_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=int(fps), codec="libx264",
                                macro_block_size=1, quality=7) as writer:
            for frame in frames:
                writer.append_data(frame)
    return path
