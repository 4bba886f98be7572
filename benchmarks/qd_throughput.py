"""QD evaluation throughput: episodes/s with W rollout workers vs 1 (policies/qd/rollout.py), and
optionally a coverage comparison of ns, taxons, serene (elitist and CMA-ES emitters), stax,
map_elites, cma_me and random_search at equal evaluations on the maze, billiard and arm tasks
(tasks/qd/<env>_ns.yaml; a learner's own <env>_<learner>.yaml where there is one, else the ns file
with the learner's keys), and of stable-baselines3 PPO at the same env-step budget.

Throughput: the same population of genomes (the maze task, 200-step episodes) is evaluated by an
:class:`Evaluator` with 1 worker (in this process) and with W worker processes (each builds its env
once; worker start-up is not timed), trials alternating so machine noise hits both; medians are
reported. The issue's target is ratio >= 0.8 x W, which needs W free cores: on a shared 2-core
machine the ratio says as much about the other load as about the pool.

Coverage (``--coverage``): each learner runs through ``workbench.pipeline.train_and_evaluate`` at the
same budget (so the same number of episodes) and seeds; the table shows coverage of the task's
ground-truth outcome grid, reward areas found, evaluations to the first reward and the mean over seeds of
the best reward per area found (SERENE's emitters exist to raise it). PPO (``ppo``) trains on the
same task's envs (4 of them, SB3 defaults) for the same env steps; its coverage is that of the
outcomes (the grid's StateView fields at episode end) of all its training episodes on the same
grid, its areas those its training episodes ended in (the same count a QD learner gets: every
episode it ran). Last line:
``ratio=<W-worker episodes/s / 1-worker episodes/s>``.

    .venv/bin/python benchmarks/qd_throughput.py [--workers 2] [--episodes 64] [--trials 3]
        [--coverage] [--envs maze billiard arm] [--steps 200000] [--seeds 0 1 2]
        [--learners ns taxons serene stax serene_cma map_elites cma_me random_search ppo]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from policies.qd.genome import MLPController
from policies.qd.rollout import Evaluator, read_fields
from workbench.spec import load_task
from workbench.task import Task

REPO = Path(__file__).resolve().parent.parent
MAZE = REPO / "tasks" / "qd" / "maze_ns.yaml"


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


LEARNERS = ["ns", "taxons", "serene", "stax", "serene_cma", "map_elites", "cma_me", "random_search", "ppo"]


def learner_overrides(env: str, name: str) -> tuple[Path, list[str]]:
    """The task file and ``--set`` overrides that run ``name`` on ``env``: the env's own
    ``<env>_<learner>.yaml`` where there is one, else its ``<env>_ns.yaml`` with the learner's keys
    (the learned-space keys of ``maze_<learner>.yaml``; grids over the ns file's outcome grid)."""
    import yaml

    qd = REPO / "tasks" / "qd"
    learner = "serene" if name == "serene_cma" else name
    ns = yaml.safe_load((qd / f"{env}_ns.yaml").read_text())["learner"]["hyperparams"]
    grid, common = ns["outcome_grid"], {"population": ns["population"], "hidden": ns["hidden"],
                                        "outcome_grid": ns["outcome_grid"]}
    extra = ["learner.hyperparams.emitter_type=cma"] if name == "serene_cma" else []
    own = qd / f"{env}_{learner}.yaml"
    if own.is_file():
        return own, extra
    if learner in ("taxons", "stax", "serene"):
        maze = yaml.safe_load((qd / f"maze_{learner}.yaml").read_text())["learner"]["hyperparams"]
        hp = {k: v for k, v in maze.items() if k not in ("outcome_grid", "descriptor")}
        hp.update(common)
        if learner == "serene":
            hp["descriptor"] = ns["descriptor"]
    elif learner in ("map_elites", "cma_me"):
        hp = {**common, "descriptor": ns["descriptor"], "descriptor_bounds": [list(b) for b in zip(grid["low"],
                                                                                                grid["high"])]}
    else:  # random_search
        hp = dict(common)
    return qd / f"{env}_ns.yaml", [f"learner.name={learner}", f"learner.hyperparams={json.dumps(hp)}", *extra]


def coverage_table(env: str, steps: int, seeds: list[int], only: list[str] | None = None) -> None:
    from workbench.pipeline import train_and_evaluate

    episode = load_task(REPO / "tasks" / "qd" / f"{env}_ns.yaml").sim.max_episode_steps or 0
    print(f"\n{env}: coverage at {steps} env steps ({steps // episode} episodes of {episode} steps), seeds {seeds}")
    print(f"{'learner':<14}{'coverage':>18}{'areas found':>16}{'evals to 1st reward':>28}"
          f"{'best reward/area':>20}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in LEARNERS:
            if only and name not in only:
                continue
            cov, areas, first, best, n_areas = [], [], [], [], None
            for seed in seeds:
                if name == "ppo":
                    qd = ppo_outcomes(env, steps, seed)
                else:
                    task, overrides = learner_overrides(env, name)
                    spec = load_task(task, [*overrides, f"training.total_steps={steps}", f"training.seed={seed}",
                                            "evaluation.episodes=1", "evaluation.video=false"])
                    result = train_and_evaluate(spec, Path(tmp) / name)
                    qd = json.loads((result.run.path / "qd.json").read_text())
                n_areas = qd["n_reward_areas"]
                cov.append(qd["coverage"])
                areas.append(qd["n_reward_areas_found"])
                first.append(qd["evaluations_to_first_reward"])
                best.extend(qd["best_reward_per_area"].values())
                learned = qd.get("autoencoder", {}).get("outcome_r2")
                print(f"  {name} seed {seed}: areas {qd['reward_areas_found']}"
                      + (f", learned-space outcome R2 {learned}" if learned is not None else ""), flush=True)
            firsts = ", ".join("-" if f is None else str(f) for f in first)
            print(f"{name:<14}{np.mean(cov):>11.3f} ± {np.std(cov):.3f}{np.mean(areas):>12.2f} / {n_areas or '?'}"
                  f"{firsts:>28}{(np.mean(best) if best else float('nan')):>20.3f}", flush=True)


class _OutcomeProbe(gym.Wrapper):
    """Puts the outcome grid's StateView fields at an episode's end into its last info (PPO's
    envs reset themselves, so the callback cannot read them afterwards)."""

    def __init__(self, env: gym.Env, fields: list[str]):
        super().__init__(env)
        self.fields = fields

    def step(self, action):  # type: ignore[no-untyped-def]
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = {**info, "qd_outcome": read_fields(self.env, self.fields)}
        return obs, reward, terminated, truncated, info


def ppo_outcomes(env: str, steps: int, seed: int, n_envs: int = 4) -> dict:
    """SB3 PPO (its defaults, ``n_envs`` envs) on the env's ns task for ``steps`` env steps; the
    qd.json keys the table reads, from the outcome and reward area of every training episode."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    task = Task.build(load_task(REPO / "tasks" / "qd" / f"{env}_ns.yaml", [f"training.seed={seed}"]))
    grid = task.spec.learner.hyperparams["outcome_grid"]
    low, high, cells = (np.asarray(grid[k], dtype=float) for k in ("low", "high", "cells"))
    reached: set[tuple[int, ...]] = set()
    record: dict = {"episodes": 0, "first": None, "best": {}}

    class Outcomes(BaseCallback):
        def _on_step(self) -> bool:
            for done, info, reward in zip(self.locals["dones"], self.locals["infos"], self.locals["rewards"]):
                if not done:
                    continue
                record["episodes"] += 1
                where = np.floor((info["qd_outcome"] - low) / (high - low) * cells).astype(int)
                reached.add(tuple(np.clip(where, 0, cells.astype(int) - 1)))
                area = info.get("reward_area")
                if area is not None and reward > 0:
                    record["first"] = record["first"] or record["episodes"]
                    record["best"][area] = max(record["best"].get(area, 0.0), float(reward))
            return True

    probe = task.make_env()
    n_areas = len(getattr(probe.unwrapped, "reward_areas", []) or []) or None
    probe.close()
    fns = [lambda f=f: _OutcomeProbe(f(), list(grid["fields"])) for f in task.env_fns(n_envs)]
    venv = task.wrap_vec(DummyVecEnv(fns))
    PPO("MlpPolicy", venv, seed=seed, verbose=0, device="cpu").learn(steps, callback=Outcomes())
    venv.close()
    return {"coverage": len(reached) / float(np.prod(cells)), "n_reward_areas_found": len(record["best"]),
            "evaluations_to_first_reward": record["first"], "best_reward_per_area": record["best"],
            "reward_areas_found": sorted(record["best"]), "n_reward_areas": n_areas}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--coverage", action="store_true")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learners", nargs="+", default=None, choices=LEARNERS,
                        help="coverage for these learners only")
    parser.add_argument("--envs", nargs="+", default=["maze"], choices=["maze", "billiard", "arm"],
                        help="coverage on these tasks (tasks/qd/<env>_ns.yaml and the like)")
    args = parser.parse_args()
    if args.coverage:
        for env in args.envs:
            coverage_table(env, args.steps, args.seeds, args.learners)
    one, many = throughput(args.workers, args.episodes, args.trials)
    print(f"\nmaze episodes/s ({args.episodes} episodes of 200 steps, median of {args.trials}):")
    print(f"  1 worker: {one:8.1f}   {args.workers} workers: {many:8.1f}   "
          f"target >= {0.8 * args.workers:.1f}x")
    print(f"ratio={many / one:.3f}")


if __name__ == "__main__":
    main()
