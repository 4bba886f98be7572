"""Env steps/s with a sandbox-accepted code reward vs the bare gymnasium env, side by side.

Two figures, each measured with the same pre-sampled actions for every loop and trials that
alternate the loops so machine noise hits all of them (medians are reported):

* **Single-state path, one env** (``--task``, default ``tasks/mujoco/reacher.yaml``,
  ``compute_reward``): the bare ``gym.make`` env vs ``Task.make_env()`` (the program called once
  per env step under the run-time guard) vs the same program without the guard (no watchdog, no
  size-checked operators, no read-only action copy, no finiteness check: what the guard costs).
* **Batched path, ``--envs`` envs** (``--batched-task``, default
  ``tasks/mujoco/reacher_batched.yaml``, ``compute_reward_batch``): a stable-baselines3
  ``DummyVecEnv`` of bare ``gym.make`` envs vs a ``DummyVecEnv`` of ``Task.make_env(batched=True)``
  envs under ``Task.wrap_vec`` (each env reads the StateView fields the program needs; one
  guarded call per vector step scores all envs), which is what training steps. Three more loops
  split the overhead: the TaskWrapper with no reward program (``reward/env`` and the success
  metric, which every task pays); the same plus the StateView read the program needs inside each
  env step (the adapter's reader and the copy into the row); and the batched plumbing with a
  program that only returns one state column (read, hand-over, stacking, the guarded call).

Time is the main thread's CPU time by default (``--clock cpu``, ``time.thread_time``): every
loop runs in this thread (DummyVecEnv), and on a shared machine the wall clock also counts the
time other tenants hold the cores. ``--clock wall`` uses ``time.perf_counter``.

The last line is ``ratio=<batched steps/s ÷ bare vector steps/s>`` (target ≥ 0.95).

    .venv/bin/python benchmarks/reward_overhead.py [--steps 20000] [--envs 8] [--trials 5] [--clock cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from reward_synthesis.program import CodeRewardProgram
from reward_synthesis.safety import sandbox
from workbench.reward import BuiltReward
from workbench.spec import load_task
from workbench.task import Task
from workbench.wrappers import StatePacking, TaskWrapper

REPO = Path(__file__).resolve().parent.parent
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}
# The plumbing alone: a batched program that reads one field and does no arithmetic.
ONE_COLUMN = "def compute_reward_batch(state, action):\n    return state.fingertip_to_target[:, 0]\n"


def steps_per_second(env: gym.Env, actions: np.ndarray, clock: Callable[[], float] = time.perf_counter) -> float:
    env.reset(seed=0)
    start = clock()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return len(actions) / (clock() - start)


def vec_steps_per_second(venv: VecEnv, actions: np.ndarray, clock: Callable[[], float]) -> float:
    """Env steps/s (vector steps x envs); the vector env resets finished envs itself."""
    venv.seed(0)
    venv.reset()
    start = clock()
    for action in actions:
        venv.step(action)
    return actions.shape[0] * actions.shape[1] / (clock() - start)


class UnguardedProgram:
    """The guarded program's source run the way it was before the run-time guard: compiled as
    written in the restricted namespace, called directly. For this comparison only."""

    def __init__(self, guarded: object):
        self.name, self.inputs = guarded.name, guarded.inputs
        namespace = sandbox._namespace()
        exec(compile(guarded.source, guarded.filename, "exec"), namespace)  # noqa: S102 - accepted code
        self.fn = namespace["compute_reward"]

    def __call__(self, state, action, next_state):
        return sandbox.normalize_output(self.fn(next_state, action))


class ReadsState(TaskWrapper):
    """A TaskWrapper without a reward that reads, inside each step, what a batched program's
    envs read (``StatePacking.pack_into`` a row): the StateView read on its own."""

    def __init__(self, env: gym.Env, task: Task, inputs: frozenset[str] | None):
        super().__init__(env, task.profile.schema, success=task.profile.success,
                         success_threshold=task.spec.evaluation.success_threshold)
        self.reads = StatePacking(task.profile.schema, inputs)
        self.row_targets = self.reads.targets(np.zeros(self.reads.size))

    def step(self, action):
        out = super().step(action)
        self.reads.pack_into(self._raw, self.row_targets)
        return out


def alternate(loops: dict[str, Callable[[], float]], trials: int) -> dict[str, float]:
    for run in loops.values():  # warm up
        run()
    results: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(trials):
        for name, run in loops.items():
            results[name].append(run())
    return {name: statistics.median(values) for name, values in results.items()}


def single_state(path: str, steps: int, trials: int, clock: Callable[[], float]) -> None:
    task = Task.build(load_task(path))
    assert task.reward.program is not None, "pick a task with a code reward"
    bare = gym.make(task.spec.sim.env_id, **task.spec.sim.kwargs)
    wrapped = task.make_env()
    unguarded = Task(task.spec, task.adapter, task.profile,
                     dataclasses.replace(task.reward, program=UnguardedProgram(task.reward.program))).make_env()
    space = bare.action_space
    actions = np.random.default_rng(0).uniform(space.low, space.high, size=(steps, *space.shape)).astype(space.dtype)
    sps = alternate({"bare": lambda: steps_per_second(bare, actions, clock),
                     "wrapped": lambda: steps_per_second(wrapped, actions, clock),
                     "unguarded": lambda: steps_per_second(unguarded, actions, clock)}, trials)
    b, w, u = sps["bare"], sps["wrapped"], sps["unguarded"]
    print(f"single-state path, 1 env — task: {task.spec.name} ({task.spec.sim.env_id}), "
          f"reward: {task.reward.description}")
    print(f"  bare gymnasium env          {b:10,.0f} steps/s  (median of {trials})")
    print(f"  workbench + code reward     {w:10,.0f} steps/s")
    print(f"    same, without guard       {u:10,.0f} steps/s")
    print(f"  per-step overhead {1e6 * (1 / w - 1 / b):.1f} µs, of which the guard {1e6 * (1 / w - 1 / u):.1f} µs "
          f"(guarded/unguarded = {w / u:.3f})")
    print(f"  single-state ratio {w / b:.3f}")


def batched(path: str, n_envs: int, steps: int, trials: int, clock: Callable[[], float]) -> float:
    task = Task.build(load_task(path))
    assert task.program_batched, f"{path}: pick a task whose code reward defines compute_reward_batch"
    spec = task.spec
    no_reward = Task(spec, task.adapter, task.profile, BuiltReward(None, "none"))
    plumbing = Task(spec, task.adapter, task.profile,
                    BuiltReward(CodeRewardProgram(ONE_COLUMN, filename="one_column.py"), "one column"))
    inputs = task.reward.program.inputs
    venvs = {
        "bare": DummyVecEnv([lambda: gym.make(spec.sim.env_id, **spec.sim.kwargs) for _ in range(n_envs)]),
        "no_reward": DummyVecEnv(no_reward.env_fns(n_envs)),
        "read": DummyVecEnv([lambda: ReadsState(task.adapter.make_env(spec.sim), task, inputs) for _ in range(n_envs)]),
        "plumbing": plumbing.wrap_vec(DummyVecEnv(plumbing.env_fns(n_envs))),
        "batched": task.wrap_vec(DummyVecEnv(task.env_fns(n_envs))),
    }
    space = venvs["bare"].action_space
    vector_steps = max(1, steps // n_envs)
    actions = np.random.default_rng(0).uniform(space.low, space.high,
                                               size=(vector_steps, n_envs, *space.shape)).astype(space.dtype)
    calls = task.reward.program.calls
    sps = alternate({name: (lambda v=venv: vec_steps_per_second(v, actions, clock)) for name, venv in venvs.items()},
                    trials)
    runs = (trials + 1) * vector_steps
    assert task.reward.program.calls - calls == runs, "one program call per vector step"
    b, t = sps["bare"], sps["batched"]
    per_vector_step = {name: n_envs * 1e6 / value for name, value in sps.items()}  # µs
    base = per_vector_step["bare"]
    wrapper = per_vector_step["no_reward"] - base
    read_us = per_vector_step["read"] - per_vector_step["no_reward"]
    plumbing_us = per_vector_step["plumbing"] - per_vector_step["read"]
    program_us = per_vector_step["batched"] - per_vector_step["plumbing"]
    print(f"batched path, {n_envs} envs (DummyVecEnv) — task: {spec.name} ({spec.sim.env_id}), "
          f"reward: {task.reward.description}")
    print(f"  bare gymnasium vector       {b:10,.0f} env steps/s  (median of {trials}; {base:.0f} µs per vector step)")
    print(f"  workbench + batched reward  {t:10,.0f} env steps/s  ({runs} guarded calls, one per vector step)")
    print(f"  overhead per vector step {per_vector_step['batched'] - base:.1f} µs "
          f"(a 0.95 ratio allows {base / 0.95 - base:.1f} µs):")
    fields = ", ".join(sorted(inputs)) if inputs else "all fields"
    rows = [("TaskWrapper without a reward (reward/env, success)", wrapper, sps["no_reward"]),
            (f"+ StateView read in each env step ({fields})", read_us, sps["read"]),
            ("+ hand-over, stacking, one guarded call (1-column program)", plumbing_us, sps["plumbing"]),
            ("+ the program's own arithmetic", program_us, t)]
    for label, us, value in rows:
        print(f"    {label:<60} {us:6.1f} µs  -> {value / b:.3f}")
    return t / b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=str(REPO / "tasks/mujoco/reacher.yaml"),
                        help="single-state figure: a task whose reward is a compute_reward code file")
    parser.add_argument("--batched-task", default=str(REPO / "tasks/mujoco/reacher_batched.yaml"),
                        help="batched figure: a task whose reward is a compute_reward_batch code file")
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per trial and loop")
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: this thread's CPU time (robust on shared machines); wall: perf_counter")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    print(f"clock: {args.clock} (time.{clock.__name__})")
    single_state(args.task, args.steps, args.trials, clock)
    ratio = batched(args.batched_task, args.envs, args.steps, args.trials, clock)
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
