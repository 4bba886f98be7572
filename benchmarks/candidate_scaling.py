"""Eureka's candidate training on 1 worker vs W workers: K fixed, known-good Reacher programs,
each trained on the proxy budget, side by side in one run.

Both sides go through ``reward_synthesis.language.eureka.train_programs`` (spawned worker processes, one
torch thread each, the Task built in the child, checkpoint evaluations, the final evaluation), so
worker start-up is part of both timings. The last line is ``ratio=<speedup ÷ W>`` (target ≥ 0.8
per worker). Other work on the machine takes cores too (with the kernel's autogroup scheduling, one
busy session elsewhere leaves this one a single core of two), so the load average and a control are
printed: the speedup W pure-Python loops get from W processes, i.e. the parallelism on offer now.

    .venv/bin/python benchmarks/candidate_scaling.py [--workers 2] [--proxy-steps 32768] [--trials 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

from reward_synthesis.language.eureka import train_programs
from workbench.reward import BuiltReward
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parent.parent


def _spin(n: int) -> float:
    start = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - start


def available_speedup(workers: int, n: int = 8_000_000) -> float:
    """How much faster ``workers`` CPU-bound loops finish in ``workers`` processes than in one."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    times = []
    for procs in (1, workers):
        with ctx.Pool(procs) as pool:
            pool.map(_spin, [1000] * procs)  # started and warm
            start = time.perf_counter()
            pool.map(_spin, [n] * workers, chunksize=1)
            times.append(time.perf_counter() - start)
    return times[0] / times[1]

_TEMPLATE = """\
import numpy as np

def compute_reward(state, action):
    distance = float(np.linalg.norm(state.fingertip_to_target))
    effort = {effort} * float(np.sum(np.square(action)))
    bonus = {bonus} * float(np.exp(-((distance / {width}) ** 2)))
    return -{scale} * distance + bonus - effort, {{"distance": -{scale} * distance, "bonus": bonus, "effort": -effort}}
"""

# reacher_precise.py plus variants of the same shape: valid programs that pass the checks.
PROGRAMS = [(REPO / "tasks/mujoco/rewards/reacher_precise.py").read_text()] + [
    _TEMPLATE.format(effort=e, bonus=b, width=w, scale=s)
    for e, b, w, s in [(0.01, 1.0, 0.02, 1.0), (0.1, 0.5, 0.05, 2.0), (0.05, 2.0, 0.03, 0.5),
                       (0.02, 1.0, 0.01, 1.5), (0.1, 0.0, 0.02, 1.0), (0.01, 0.3, 0.1, 1.0), (0.05, 1.0, 0.02, 3.0)]
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=str(REPO / "tasks/mujoco/reacher.yaml"))
    parser.add_argument("--candidates", type=int, default=4, help=f"K programs (at most {len(PROGRAMS)})")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--proxy-steps", type=int, default=32768)
    parser.add_argument("--trials", type=int, default=1)
    args = parser.parse_args()

    task = Task.build(load_task(args.task), reward=BuiltReward(None, "benchmark"))
    programs = PROGRAMS[: args.candidates]
    print(f"{len(programs)} candidates x {args.proxy_steps:,} proxy steps ({task.spec.sim.env_id}, "
          f"{task.spec.learner.name}, n_envs {task.spec.training.n_envs}); {os.cpu_count()} cores; "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def timed(workers: int) -> tuple[float, float]:
        """Wall seconds, and the CPU seconds the worker processes used (all of them, start-up included)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        runs = train_programs(task, programs, proxy_steps=args.proxy_steps, seeds=[0], workers=workers)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        bad = [r.error for rs in runs for r in rs if not r.ok]
        if bad:
            raise SystemExit(f"a known-good program failed to train: {bad[0]}")
        return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

    control = available_speedup(args.workers)
    serial: list[tuple[float, float]] = []
    parallel: list[tuple[float, float]] = []
    for _ in range(args.trials):  # alternate, so a change in the machine's load hits both sides
        serial.append(timed(1))
        parallel.append(timed(args.workers))
    one, many = min(serial)[0], min(parallel)[0]
    speedup = one / many

    def trials(times: list[tuple[float, float]]) -> str:
        return ", ".join(f"{wall:.1f} s wall / {cpu:.1f} s cpu" for wall, cpu in times)

    print(f"1 worker:  {one:7.1f} s   (trials: {trials(serial)})")
    print(f"{args.workers} workers: {many:7.1f} s   (trials: {trials(parallel)})")
    print(f"speedup {speedup:.2f}x with {args.workers} workers; "
          f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"control: {args.workers} pure-Python loops ran {control:.2f}x (before) and "
          f"{available_speedup(args.workers):.2f}x (after) faster in {args.workers} processes than in 1")
    print(f"ratio={speedup / args.workers:.3f}")


if __name__ == "__main__":
    main()
