"""QD evaluation throughput: episodes/s with W rollout workers vs 1 (policies/qd/rollout.py), and
optionally a small coverage comparison of ns, serene (elitist and CMA-ES emitters), map_elites,
cma_me and random_search at equal evaluations on the maze (tasks/qd/maze_ns.yaml; serene:
tasks/qd/maze_serene.yaml).

Throughput: the same population of genomes (the maze task, 200-step episodes) is evaluated by an
:class:`Evaluator` with 1 worker (in this process) and with W worker processes (each builds its env
once; worker start-up is not timed), trials alternating so machine noise hits both; medians are
reported. The issue's target is ratio >= 0.8 x W, which needs W free cores: on a shared 2-core
machine the ratio says as much about the other load as about the pool.

Coverage (``--coverage``): each learner runs through ``workbench.pipeline.train_and_evaluate`` at the
same budget (so the same number of episodes) and seeds; the table shows coverage of the 20 x 20
ground-truth grid, reward areas found, evaluations to the first reward and the mean over seeds of
the best reward per area found (SERENE's emitters exist to raise it). Last line:
``ratio=<W-worker episodes/s / 1-worker episodes/s>``.

    .venv/bin/python benchmarks/qd_throughput.py [--workers 2] [--episodes 64] [--trials 3]
        [--coverage] [--steps 200000] [--seeds 0 1 2] [--learners ns serene serene_cma map_elites ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from policies.qd.genome import MLPController
from policies.qd.rollout import Evaluator
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parent.parent
MAZE = REPO / "tasks" / "qd" / "maze_ns.yaml"
SERENE = REPO / "tasks" / "qd" / "maze_serene.yaml"


def throughput(workers: int, episodes: int, trials: int) -> tuple[float, float]:
    task = Task.build(load_task(MAZE))
    probe = task.make_env()
    controller = MLPController.for_spaces(probe.observation_space, probe.action_space, (16,))
    probe.close()
    genomes = np.random.default_rng(0).normal(0, 1, (episodes, controller.n_params))
    pools = {w: Evaluator(task.env_fns(1)[0], controller, descriptor=["x", "y"], outcome=[], seed=0, workers=w)
             for w in (1, workers)}
    rates: dict[int, list[float]] = {1: [], workers: []}
    try:
        for _ in range(trials):
            for w, pool in pools.items():
                start = time.perf_counter()
                pool.evaluate(genomes, 0)
                rates[w].append(episodes / (time.perf_counter() - start))
    finally:
        for pool in pools.values():
            pool.close()
    return statistics.median(rates[1]), statistics.median(rates[workers])


def coverage_table(steps: int, seeds: list[int], only: list[str] | None = None) -> None:
    from workbench.pipeline import train_and_evaluate

    learners = {
        "ns": [],
        "serene": [],
        "serene_cma": ["learner.hyperparams.emitter_type=cma"],
        "map_elites": ["learner.hyperparams={descriptor: [x, y], descriptor_bounds: [[-1, 1], [-1, 1]], "
                       "population: 32, outcome_grid: {fields: [x, y], low: [-1, -1], high: [1, 1], "
                       "cells: [20, 20]}}"],
        "cma_me": ["learner.hyperparams={descriptor: [x, y], descriptor_bounds: [[-1, 1], [-1, 1]], "
                   "population: 32, outcome_grid: {fields: [x, y], low: [-1, -1], high: [1, 1], cells: [20, 20]}}"],
        "random_search": ["learner.hyperparams={population: 32, outcome_grid: {fields: [x, y], low: [-1, -1], "
                          "high: [1, 1], cells: [20, 20]}}"],
    }
    import json

    print(f"\ncoverage at {steps} env steps ({steps // 200} episodes of 200 steps), seeds {seeds}")
    print(f"{'learner':<14}{'coverage':>18}{'areas found':>16}{'evals to 1st reward':>28}"
          f"{'best reward/area':>20}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in learners.items():
            if only and name not in only:
                continue
            cov, areas, first, best = [], [], [], []
            task, learner = (SERENE, "serene") if name.startswith("serene") else (MAZE, name)
            for seed in seeds:
                spec = load_task(task, [f"learner.name={learner}", *overrides, f"training.total_steps={steps}",
                                        f"training.seed={seed}", "evaluation.episodes=1", "evaluation.video=false"])
                result = train_and_evaluate(spec, Path(tmp) / name)
                qd = json.loads((result.run.path / "qd.json").read_text())
                cov.append(qd["coverage"])
                areas.append(qd["n_reward_areas_found"])
                first.append(qd["evaluations_to_first_reward"])
                best.extend(qd["best_reward_per_area"].values())
                if learner == "serene":
                    s = qd["serene"]
                    print(f"  {name} seed {seed}: exploration {s['exploration_evaluations']}, exploitation "
                          f"{s['exploitation_evaluations']} evaluations, emitters born {s['emitters_born']}, "
                          f"stopped {s['emitters_stopped']}, novel offspring {s['novel_from_emitters']}, "
                          f"areas {qd['reward_areas_found']}", flush=True)
            firsts = ", ".join("-" if f is None else str(f) for f in first)
            print(f"{name:<14}{np.mean(cov):>11.3f} ± {np.std(cov):.3f}{np.mean(areas):>12.2f} / 3"
                  f"{firsts:>28}{(np.mean(best) if best else float('nan')):>20.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--coverage", action="store_true")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learners", nargs="+", default=None, help="coverage for these learners only")
    args = parser.parse_args()
    if args.coverage:
        coverage_table(args.steps, args.seeds, args.learners)
    one, many = throughput(args.workers, args.episodes, args.trials)
    print(f"\nmaze episodes/s ({args.episodes} episodes of 200 steps, median of {args.trials}):")
    print(f"  1 worker: {one:8.1f}   {args.workers} workers: {many:8.1f}   "
          f"target >= {0.8 * args.workers:.1f}x")
    print(f"ratio={many / one:.3f}")


if __name__ == "__main__":
    main()
