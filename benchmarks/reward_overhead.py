"""Env steps/s with a sandbox-accepted code reward vs the bare gymnasium env, side by side.

Both loops step the same env id with the same pre-sampled actions; trials alternate so machine
noise hits both. A third loop runs the same program without the run-time guard (no watchdog,
no size-checked operators, no read-only action copy, no finiteness check) to show what the
guard costs. The last line is ``ratio=<wrapped steps/s ÷ bare steps/s>`` (target ≥ 0.95).

    .venv/bin/python benchmarks/reward_overhead.py [--task tasks/mujoco/reacher.yaml] [--steps 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from reward_synthesis import sandbox
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parent.parent


def steps_per_second(env: gym.Env, actions: np.ndarray) -> float:
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return len(actions) / (time.perf_counter() - start)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=str(REPO / "tasks/mujoco/reacher.yaml"),
                        help="a task whose reward is `source: code`")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()

    task = Task.build(load_task(args.task))
    assert task.reward.program is not None, "pick a task with a code reward"
    bare = gym.make(task.spec.sim.env_id, **task.spec.sim.kwargs)
    wrapped = task.make_env()
    unguarded = Task(task.spec, task.adapter, task.profile,
                     dataclasses.replace(task.reward, program=UnguardedProgram(task.reward.program))).make_env()
    rng = np.random.default_rng(0)
    space = bare.action_space
    actions = rng.uniform(space.low, space.high, size=(args.steps, *space.shape)).astype(space.dtype)

    steps_per_second(bare, actions[:1000])  # warm up both
    steps_per_second(wrapped, actions[:1000])
    steps_per_second(unguarded, actions[:1000])
    bare_sps, wrapped_sps, unguarded_sps = [], [], []
    for _ in range(args.trials):
        bare_sps.append(steps_per_second(bare, actions))
        wrapped_sps.append(steps_per_second(wrapped, actions))
        unguarded_sps.append(steps_per_second(unguarded, actions))
    b, w, u = statistics.median(bare_sps), statistics.median(wrapped_sps), statistics.median(unguarded_sps)
    print(f"task: {task.spec.name} ({task.spec.sim.env_id}), reward: {task.reward.description}")
    print(f"bare gymnasium env      {b:10,.0f} steps/s  (median of {args.trials})")
    print(f"workbench + code reward {w:10,.0f} steps/s  (median of {args.trials})")
    print(f"  same, without guard   {u:10,.0f} steps/s  (median of {args.trials})")
    print(f"per-step overhead       {1e6 * (1 / w - 1 / b):10.1f} µs, of which the guard {1e6 * (1 / w - 1 / u):.1f} µs "
          f"(guarded/unguarded = {w / u:.3f})")
    print(f"ratio={w / b:.3f}")


if __name__ == "__main__":
    main()
