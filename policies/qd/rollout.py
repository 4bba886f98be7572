"""Full-episode rollouts of a population of genomes, in this process (1 worker) or in W worker
processes that each build their env once from the env factory.

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

import multiprocessing as mp
import signal
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from policies.qd.genome import MLPController
from workbench.errors import WorkbenchError
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


def _worker(conn: Any, payload: bytes) -> None:
    import cloudpickle

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it checkpoints and stops us
    runner = None
    try:
        runner = _Runner(*cloudpickle.loads(payload))
        conn.send(("ready", None))
        while True:
            try:
                msg = conn.recv()
            except EOFError:  # the parent is gone (killed): end quietly
                return
            if msg[0] == "close":
                return
            try:
                conn.send(("ok", runner.run(msg[1], msg[2])))
            except WorkbenchError as err:  # a user-fixable error (e.g. a reward program's)
                conn.send(("user_error", f"{type(err).__name__}\n{err}"))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except Exception:
        try:
            conn.send(("error", traceback.format_exc()))
        except (BrokenPipeError, OSError):
            pass
    finally:
        if runner is not None:
            runner.close()
        conn.close()


class Evaluator:
    """Evaluates genomes as full episodes with ``workers`` processes (1: in this process)."""

    def __init__(self, env_fn: Callable[..., gym.Env], controller: MLPController, *, descriptor: Sequence[str],
                 outcome: Sequence[str], seed: int, workers: int = 1, frames: FrameSpec | None = None):
        self.workers = int(workers)
        self._local: _Runner | None = None
        self._procs: list[tuple[Any, Any]] = []
        if self.workers <= 1:
            self._local = _Runner(env_fn, controller, descriptor, outcome, seed, frames)
            return
        import cloudpickle

        payload = cloudpickle.dumps((env_fn, controller, list(descriptor), list(outcome), seed, frames))
        ctx = mp.get_context("forkserver")
        try:
            for _ in range(self.workers):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(child, payload), daemon=True)
                proc.start()
                child.close()
                self._procs.append((proc, parent))
            for _, conn in self._procs:
                self._receive(conn)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _receive(conn: Any) -> Any:
        try:
            kind, value = conn.recv()
        except EOFError:
            raise RuntimeError("a rollout worker died (see its output above)") from None
        if kind == "user_error":
            name, _, message = value.partition("\n")
            raise WorkbenchError(message)
        if kind == "error":
            raise RuntimeError(f"a rollout worker failed:\n{value}")
        return value

    def evaluate(self, genomes: np.ndarray, first_index: int) -> list[Outcome]:
        genomes = np.asarray(genomes, dtype=np.float64)
        indices = list(range(first_index, first_index + len(genomes)))
        if self._local is not None:
            return self._local.run(genomes, indices)
        chunks = [c for c in np.array_split(np.arange(len(genomes)), len(self._procs)) if len(c)]
        for (_, conn), chunk in zip(self._procs, chunks):
            conn.send(("run", genomes[chunk], [indices[i] for i in chunk]))
        results: list[Outcome] = []
        for (_, conn), _chunk in zip(self._procs, chunks):
            results.extend(self._receive(conn))
        return results

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None
        for _proc, conn in self._procs:
            try:
                conn.send(("close",))
            except (BrokenPipeError, OSError):
                pass
        for proc, conn in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            conn.close()
        self._procs = []
