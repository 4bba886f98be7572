"""`workbench run` PPO training fps vs plain stable-baselines3 PPO, same env and hyperparameters.

Plain: ``make_vec_env(env_id)`` + ``PPO(...).learn(steps)``. Ours: the full pipeline (task
wrapper, Monitor, TensorBoard, reward-component logging, checkpoints, progress hooks) via
``workbench.pipeline.start_run``, timed around training only (``run.json: train_seconds``).
Trials alternate; the last line is ``ratio=<ours fps ÷ plain fps>`` (target ≥ 0.97).

    .venv/bin/python benchmarks/ppo_fps.py [--task tasks/mujoco/reacher.yaml] [--steps 40000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from workbench.pipeline import start_run
from workbench.spec import load_task

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=str(REPO / "tasks/mujoco/reacher.yaml"))
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()

    # The env's own reward on both sides, so the env is identical (reward_overhead.py measures
    # the cost of a code reward separately).
    overrides = [f"training.total_steps={args.steps}", "training.eval_every=0", "evaluation.episodes=1",
                 "evaluation.video=false", "learner.name=ppo", "reward={source: env}"]
    spec = load_task(args.task, overrides)
    hp = dict(spec.learner.hyperparams)
    hp.setdefault("device", "cpu")

    def plain() -> float:
        torch.set_num_threads(spec.learner.torch_threads)
        venv = make_vec_env(spec.sim.env_id, n_envs=spec.training.n_envs, seed=spec.training.seed,
                            env_kwargs=dict(spec.sim.kwargs))
        if spec.learner.normalize:
            from stable_baselines3.common.vec_env import VecNormalize

            venv = VecNormalize(venv, gamma=hp.get("gamma", 0.99))
        model = PPO(spec.learner.policy, venv, seed=spec.training.seed, **hp)
        start = time.perf_counter()
        model.learn(args.steps)
        return args.steps / (time.perf_counter() - start)

    def ours(root: Path) -> float:
        result = start_run(Path(args.task), overrides, runs_root=root, quiet=True, console=Console(quiet=True))
        return json.loads((result.run.path / "run.json").read_text())["train_steps_per_second"]

    plain_fps, our_fps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.trials):
            plain_fps.append(plain())
            our_fps.append(ours(Path(tmp) / f"t{i}"))
    p, o = statistics.median(plain_fps), statistics.median(our_fps)
    print(f"task: {spec.name} ({spec.sim.env_id}), reward source: {spec.reward.source}, "
          f"{spec.training.n_envs} envs, {args.steps} steps")
    print(f"plain SB3 PPO   {p:9,.0f} steps/s  trials {[round(x) for x in plain_fps]}")
    print(f"workbench run   {o:9,.0f} steps/s  trials {[round(x) for x in our_fps]}")
    print(f"ratio={o / p:.3f}")


if __name__ == "__main__":
    main()
