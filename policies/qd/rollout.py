"""Full-episode rollouts of a population of genomes, in this process (1 worker) or on an executor
(W local worker processes, or Ray tasks) whose workers each build their env once from the env factory.

An evaluation is identified by its index in the run (0, 1, 2, ...): its episode resets with a seed
derived from (training seed, index) only, so the outcome of a genome does not depend on which
worker ran it, and W workers give exactly what 1 gives. The genome list of a generation is split
into W contiguous chunks, one per worker; the results come back in genome order.

A learner that learns its descriptor from pixels (TAXONS, STAX) asks for ``frames``: the env is
built with ``render_mode="rgb_array"`` and each outcome carries K frames of the episode, resized to
``frame_size`` squared, taken at the ends of K equal parts of the ``horizon`` (the last one the final
frame; an episode that ends early repeats its final frame).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from policies.qd.genome import MLPController
from workbench.errors import WorkbenchError
from workbench.executor import Executor, LocalExecutor, WorkerDied
from workbench.wrappers import TaskWrapper

__all__ = ["Outcome", "Evaluator", "FrameSpec", "episode_seed", "read_fields", "parse_field", "frame_steps"]


@dataclass
class Outcome:
    """How one genome's episode ended."""

    descriptor: np.ndarray  # the learner's descriptor (StateView fields at episode end)
    outcome: np.ndarray  # the ground-truth outcome (evaluation only), empty when the task has none
    ret: float  # the episode's return under the task's reward
    length: int
    area: str | None  # the reward area of the last step's info["reward_area"], if the env names one
    frames: np.ndarray | None = None  # (K, size, size, 3) uint8 when the evaluator records frames
    index: int = -1  # the evaluation's index in the run (0-based): archives record it per member


@dataclass(frozen=True)
class FrameSpec:
    """Which frames an outcome carries: ``count`` frames of ``size`` x ``size`` pixels over an
    episode of ``horizon`` steps."""

    count: int
    size: int
    horizon: int


def frame_steps(count: int, horizon: int) -> list[int]:
    """The step counts after which the frames are taken: the ends of ``count`` equal parts."""
    return [max(1, round(horizon * (i + 1) / count)) for i in range(count)]


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.uint8)
    if frame.shape[:2] == (size, size):
        return frame[..., :3]
    from PIL import Image

    return np.asarray(Image.fromarray(frame[..., :3]).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def episode_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def parse_field(item: str) -> tuple[str, int | None]:
    """``"x"`` -> ("x", None); ``"fingertip_pos[1]"`` -> ("fingertip_pos", 1)."""
    name, bracket, rest = item.partition("[")
    if not bracket:
        return name, None
    if not rest.endswith("]") or not rest[:-1].isdigit():
        raise ValueError(f"{item!r}: write a field name or name[index]")
    return name, int(rest[:-1])


def _task_wrapper(env: gym.Env) -> TaskWrapper:
    e: Any = env
    while not isinstance(e, TaskWrapper):
        if not hasattr(e, "env"):
            raise TypeError("the env factory gave an env without the task's TaskWrapper")
        e = e.env
    return e


def read_fields(env: gym.Env, items: Sequence[str]) -> np.ndarray:
    """The named StateView values of the live env, flattened into one vector."""
    if not items:
        return np.zeros(0)
    wrapper = _task_wrapper(env)
    parsed = [parse_field(i) for i in items]
    state = wrapper.schema.read(env.unwrapped, frozenset(n for n, _ in parsed))
    parts = []
    for name, index in parsed:
        value = np.asarray(state[name], dtype=np.float64).ravel()
        parts.append(value if index is None else value[index:index + 1])
    return np.concatenate(parts)


class _Runner:
    """One env and the episode loop (what a worker process holds)."""

    def __init__(self, env_fn: Callable[..., gym.Env], controller: MLPController, descriptor: Sequence[str],
                 outcome: Sequence[str], seed: int, frames: FrameSpec | None = None):
        self.env = env_fn(render_mode="rgb_array") if frames is not None else env_fn()
        self.controller, self.descriptor, self.outcome, self.seed = controller, list(descriptor), list(outcome), seed
        self.frames = frames
        self._at = frame_steps(frames.count, frames.horizon) if frames is not None else []

    def run(self, genomes: np.ndarray, indices: Sequence[int]) -> list[Outcome]:
        out = []
        for genome, index in zip(genomes, indices):
            layers = self.controller.layers(genome)
            obs, _ = self.env.reset(seed=episode_seed(self.seed, index))
            ret, length, done, info = 0.0, 0, False, {}
            shots: list[np.ndarray] = []
            while not done:
                obs, reward, terminated, truncated, info = self.env.step(self.controller.act(layers, obs))
                ret += float(reward)
                length += 1
                done = terminated or truncated
                if self.frames is not None and (length in self._at or done) and len(shots) < self.frames.count:
                    shots.extend([self._frame()] * (self.frames.count - len(shots) if done else 1))
            area = info.get("reward_area")
            out.append(Outcome(read_fields(self.env, self.descriptor), read_fields(self.env, self.outcome), ret,
                               length, str(area) if area is not None else None,
                               np.stack(shots) if self.frames is not None else None, int(index)))
        return out

    def _frame(self) -> np.ndarray:
        assert self.frames is not None
        frame = self.env.render()
        if frame is None:
            raise WorkbenchError("the env rendered no frame (render_mode rgb_array): this learner reads frames")
        return _resize(np.asarray(frame), self.frames.size)

    def close(self) -> None:
        self.env.close()


# The runner of each evaluation setup in this worker process (its env built once), by payload digest;
# a worker of a shared executor keeps at most a few.
_RUNNERS: dict[str, _Runner] = {}
KEEP_RUNNERS = 2


def _evaluate_chunk(key: str, payload: bytes, genomes: np.ndarray, indices: list[int]) -> list[Outcome]:
    """One executor job: a contiguous chunk of a generation, on this worker's runner for the setup."""
    try:
        runner = _RUNNERS.get(key)
        if runner is None:
            import cloudpickle

            while len(_RUNNERS) >= KEEP_RUNNERS:
                _RUNNERS.pop(next(iter(_RUNNERS))).close()
            runner = _RUNNERS[key] = _Runner(*cloudpickle.loads(payload))
        return runner.run(genomes, indices)
    except WorkbenchError as err:  # a user-fixable error (e.g. a reward program's): its message crosses over
        raise WorkbenchError(str(err)) from None


class Evaluator:
    """Evaluates genomes as full episodes: in this process (``workers`` 1 and no executor), or as one
    job per contiguous chunk on an executor (:mod:`workbench.executor`: a local pool of ``workers``
    processes by default, or Ray), each worker building the env once."""

    def __init__(self, env_fn: Callable[..., gym.Env], controller: MLPController, *, descriptor: Sequence[str],
                 outcome: Sequence[str], seed: int, workers: int = 1, frames: FrameSpec | None = None,
                 executor: Executor | None = None):
        self._local: _Runner | None = None
        self._executor = executor
        self._owned = False
        if executor is None and int(workers) <= 1:
            self.workers = 1
            self._local = _Runner(env_fn, controller, descriptor, outcome, seed, frames)
            return
        import cloudpickle

        self._payload = cloudpickle.dumps((env_fn, controller, list(descriptor), list(outcome), seed, frames))
        self._key = hashlib.sha256(self._payload).hexdigest()
        if self._executor is None:
            self._executor = LocalExecutor(int(workers))
            self._owned = True
        self.workers = self._executor.jobs

    def evaluate(self, genomes: np.ndarray, first_index: int) -> list[Outcome]:
        genomes = np.asarray(genomes, dtype=np.float64)
        indices = list(range(first_index, first_index + len(genomes)))
        if self._local is not None:
            return self._local.run(genomes, indices)
        assert self._executor is not None
        chunks = [c for c in np.array_split(np.arange(len(genomes)), self.workers) if len(c)]
        futures = [self._executor.submit(_evaluate_chunk, self._key, self._payload, genomes[chunk],
                                         [indices[i] for i in chunk]) for chunk in chunks]
        results: list[Outcome] = []
        for future in futures:
            try:
                results.extend(future.result())
            except WorkerDied as err:
                raise RuntimeError(f"a rollout worker died: {err}") from None
        return results

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None
        if self._executor is not None and self._owned:
            self._executor.close()
        self._executor = None
