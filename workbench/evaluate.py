"""The evaluation protocol every learner shares: N seeded episodes, success by the task's own metric.

A policy trained on a synthesized reward is judged by the task's success metric and the
simulator's own return as well as by the reward it was trained on. :func:`run_episode` is the
one episode loop of the workbench: evaluation, watched trajectories (Auto MC-Reward's analyzer)
and recorded demonstrations (a reference policy's episodes) all step through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from workbench.runs import atomic_path, write_json

__all__ = ["EpisodeResult", "EvalResult", "evaluate", "EVAL_SEED_OFFSET", "Episode", "run_episode", "policy_actor",
           "reference_actor", "Trajectory", "record_trajectories", "END_CAUSE_KEY", "write_video"]

# Evaluation episodes are seeded apart from training seeds so they are held-out starts.
EVAL_SEED_OFFSET = 1_000_000
# An adapter may say in the last info how an episode ended (e.g. Crafter: "lava", "zombie").
END_CAUSE_KEY = "end_cause"


@dataclass
class EpisodeResult:
    episode: int
    seed: int
    ret: float
    env_return: float
    length: int
    success: bool | None
    components: dict[str, float]  # per-episode sum of each info["reward/<name>"] term
    instruction: str | None = None  # the episode's language instruction (info["instruction"]), if any


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
    # D4RL-style: 100 * (env return - random) / (expert - random), when the learner knows those
    # reference returns (offline learners: from their dataset); None otherwise
    normalized_score: float | None = None
    reference_scores: tuple[float, float] | None = None
    # instruction -> {"episodes", "success_rate"}, for envs whose episodes carry an instruction
    per_instruction: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["per_episode"] = [asdict(r) for r in self.rows]
        del out["rows"]
        return out

    def write(self, path: Path) -> None:
        write_json(path, self.to_dict())

    def brief(self) -> dict[str, Any]:
        """The aggregate numbers, without the per-episode rows (a periodic evaluation's record)."""
        return {"success_rate": self.success_rate, "mean_return": self.mean_return,
                "mean_env_return": self.mean_env_return, "mean_length": self.mean_length,
                "components": self.components}

    def summary(self) -> str:
        success = "n/a" if self.success_rate is None else f"{self.success_rate:.2f}"
        normalized = "" if self.normalized_score is None else f"  normalized_score={self.normalized_score:.1f}"
        return (f"success_rate={success}  mean_return={self.mean_return:.2f} ± {self.std_return:.2f}  "
                f"env_return={self.mean_env_return:.2f}{normalized}  episodes={self.episodes}")


@dataclass
class Episode:
    """How one episode of :func:`run_episode` went."""

    seed: int
    length: int
    terminated: bool
    truncated: bool
    info: dict[str, Any]  # the last step's info
    frames: list[np.ndarray]  # the reset frame and one per step, when rendered

    @property
    def success(self) -> bool | None:
        flag = self.info.get("is_success")
        return None if flag is None else bool(flag)


def run_episode(env: gym.Env, act: Callable[[Any], Any], *, seed: int, render: bool = False,
                max_steps: int | None = None,
                on_step: Callable[[Any, SupportsFloat, dict[str, Any]], None] | None = None) -> Episode:
    """The one episode loop: reset ``env`` with ``seed``, step ``act(obs)`` until the episode ends
    (or ``max_steps``), calling ``on_step(action, reward, info)`` after each step. ``render`` keeps
    the reset frame and every post-step frame."""
    obs, info = env.reset(seed=seed)
    frames = [np.asarray(env.render())] if render else []
    length, terminated, truncated = 0, False, False
    while not (terminated or truncated) and (max_steps is None or length < max_steps):
        action = act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        length += 1
        if render:
            frames.append(np.asarray(env.render()))
        if on_step is not None:
            on_step(action, reward, info)
    return Episode(seed, length, bool(terminated), bool(truncated), info, frames)


def policy_actor(policy: Any, *, deterministic: bool) -> Callable[[Any], Any]:
    """``act(obs)`` of an SB3-shaped policy."""
    return lambda obs: policy.predict(obs, deterministic=deterministic)[0]


def reference_actor(env: gym.Env, reference: Callable[[Any], np.ndarray]) -> Callable[[Any], Any]:
    """``act(obs)`` of an adapter's scripted reference policy, which reads the live env."""
    return lambda obs: np.asarray(reference(env.unwrapped), dtype=env.action_space.dtype)


@dataclass
class _RewardSums:
    """An episode's return, the simulator's own return and each reward term's sum (an ``on_step``)."""

    ret: float = 0.0
    env_ret: float = 0.0
    components: dict[str, float] = field(default_factory=dict)

    def __call__(self, action: Any, reward: SupportsFloat, info: dict[str, Any]) -> None:
        self.ret += float(reward)
        self.env_ret += float(info.get("reward/env", reward))
        for key, value in info.items():
            if key.startswith("reward/"):
                self.components[key[7:]] = self.components.get(key[7:], 0.0) + float(value)


def evaluate(policy: Any, task: Any, *, episodes: int, deterministic: bool = True, seed: int = 0,
             video_dir: Path | None = None, video_episodes: int = 0, fps: int | None = None,
             progress: Any = None) -> EvalResult:
    """Run ``episodes`` episodes of ``task.make_env()`` (a :class:`workbench.task.Task`) with ``policy``.

    Episode ``i`` resets with seed ``seed + EVAL_SEED_OFFSET + i`` so the same seed gives the
    same evaluation. The first ``video_episodes`` episodes are rendered to mp4 in ``video_dir``.
    """
    record = video_dir is not None and video_episodes > 0
    env = task.make_env(render_mode="rgb_array" if record else None, evaluation=True)
    act = policy_actor(policy, deterministic=deterministic)
    rows: list[EpisodeResult] = []
    videos: list[str] = []
    try:
        for i in range(episodes):
            sums = _RewardSums()
            filming = record and i < video_episodes
            ep = run_episode(env, act, seed=seed + EVAL_SEED_OFFSET + i, render=filming, on_step=sums)
            rows.append(EpisodeResult(i, ep.seed, sums.ret, sums.env_ret, ep.length, ep.success, sums.components,
                                      ep.info.get("instruction")))
            if filming:
                assert video_dir is not None
                videos.append(str(write_video(video_dir / f"episode_{i:03d}.mp4", ep.frames,
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
        success_metric=task.success_doc(), rows=rows, videos=videos, per_instruction=_per_instruction(rows))


def _per_instruction(rows: list[EpisodeResult]) -> dict[str, dict[str, Any]] | None:
    groups: dict[str, list[EpisodeResult]] = {}
    for row in rows:
        if row.instruction is not None:
            groups.setdefault(str(row.instruction), []).append(row)
    if not groups:
        return None
    out: dict[str, dict[str, Any]] = {}
    for text, group in sorted(groups.items()):
        flags = [r.success for r in group if r.success is not None]
        out[text] = {"episodes": len(group), "success_rate": float(np.mean(flags)) if flags else None}
    return out


# ----------------------------------------------------------------------------- watching a policy


@dataclass
class Trajectory:
    """One watched episode: how it ended, its actions and the chosen StateView fields over time
    (what Auto MC-Reward's trajectory analyzer reads)."""

    success: bool | None
    end: str
    length: int
    actions: list[Any]
    fields: dict[str, list[float]]  # scalar fields per step (vectors are reduced to their norm)


def _scalar(value: np.ndarray) -> float:
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 or value.size == 1 else float(np.linalg.norm(value))


def _action_value(action: Any) -> Any:
    a = np.asarray(action)
    return int(a) if a.ndim == 0 or (a.size == 1 and np.issubdtype(a.dtype, np.integer)) \
        else [round(float(x), 3) for x in a.ravel()]


class _Watch:
    """The actions and the followed StateView fields of one episode, step by step (an ``on_step``)."""

    def __init__(self, env: gym.Env, schema: Any, wanted: frozenset[str]):
        self.env, self.schema, self.wanted = env, schema, wanted
        self.actions: list[Any] = []
        self.series: dict[str, list[float]] = {f: [] for f in wanted}

    def __call__(self, action: Any, reward: SupportsFloat, info: dict[str, Any]) -> None:
        self.actions.append(_action_value(action))
        if self.wanted:
            state = self.schema.read(self.env.unwrapped, self.wanted)
            for name in self.wanted:
                self.series[name].append(_scalar(state[name]))


def record_trajectories(policy: Any, task: Any, *, episodes: int, seed: int,
                        fields: Sequence[str] = (), deterministic: bool = True) -> list[Trajectory]:
    """Watch ``policy`` for ``episodes`` seeded episodes of ``task`` (held-out starts, apart from
    the evaluation's), following ``fields`` of the StateView step by step."""
    schema = task.profile.schema
    wanted = frozenset(f for f in fields if f in schema.names)
    env = task.make_env()
    act = policy_actor(policy, deterministic=deterministic)
    out: list[Trajectory] = []
    try:
        for i in range(episodes):
            watch = _Watch(env, schema, wanted)
            ep = run_episode(env, act, seed=seed + 2 * EVAL_SEED_OFFSET + i, on_step=watch)
            success = ep.success
            end = str(ep.info.get(END_CAUSE_KEY)
                      or ("success" if success else "terminated" if ep.terminated else "timeout"))
            out.append(Trajectory(success, end, ep.length, watch.actions, watch.series))
    finally:
        env.close()
    return out


def _component_stats(rows: list[EpisodeResult]) -> dict[str, dict[str, float]]:
    names = sorted({name for r in rows for name in r.components})
    stats = {}
    for name in names:
        sums = np.array([r.components.get(name, 0.0) for r in rows])
        stats[name] = {"mean": float(sums.mean()), "min": float(sums.min()), "max": float(sums.max())}
    return stats


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """``frames`` as an H.264 mp4 at ``path`` (written beside and renamed)."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        writer: Any  # imageio's FFMPEG writer (its stubs type the base class)
        with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=int(fps), codec="libx264",
                                macro_block_size=1, quality=7) as writer:
            for frame in frames:
                writer.append_data(frame)
    return path
