"""Offline RL on the workbench's own datasets: behaviour cloning, MOPO and MOPO+MOREC side by side.

For each env and dataset mix (``tasks/offline/<env>_<learner>.yaml`` with
``learner.hyperparams.dataset=<env>-<mix>-v0``; record the datasets first with
``scripts/offline_datasets.sh``) every learner trains through ``workbench.pipeline.train_and_evaluate``
at the same update budget and seeds, and is evaluated online in the simulator. The table gives the
D4RL-normalised score (0 = random policy, 100 = the dataset's expert reference, from its metadata),
and for the model-based learners the rollout fidelity: the mean length a model rollout ran before it
ended, the share stopped by the dynamics reward (MOREC), the mean dynamics reward of the kept
transitions and the dynamics ensemble's held-out log-likelihood per dimension. Runs go two at a time
in worker processes (``--jobs``). Last line: ``ratio=<MOREC / MOPO mean normalised score>``.

    .venv/bin/python benchmarks/offline.py [--envs hopper halfcheetah] [--mixes medium-replay]
        [--learners bc mopo morec] [--seeds 0 1 2] [--updates 20000] [--episodes 10] [--jobs 2]
        [--set key=value ...] [--model-set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from _stats import mean_std  # benchmarks/ is the script directory

REPO = Path(__file__).resolve().parent.parent


def one(env: str, mix: str, learner: str, seed: int, updates: int, episodes: int, extra: list[str],
        root: str) -> dict[str, Any]:
    from rich.console import Console

    from workbench.pipeline import train_and_evaluate
    from workbench.spec import load_task

    spec = load_task(REPO / "tasks" / "offline" / f"{env}_{learner}.yaml", [
        f"learner.hyperparams.dataset={env}-{mix}-v0", f"training.seed={seed}", f"training.total_steps={updates}",
        f"training.checkpoint_every={max(1000, updates // 4)}", "training.eval_every=0",
        f"evaluation.episodes={episodes}", "evaluation.video=false", *extra])
    started = time.perf_counter()
    result = train_and_evaluate(spec, Path(root), quiet=True, console=Console(quiet=True))
    record = json.loads((result.run.path / "offline" / "offline.json").read_text())
    rollouts = record.get("rollouts") or {}
    return {"env": env, "mix": mix, "learner": learner, "seed": seed, "seconds": time.perf_counter() - started,
            "normalized": result.evaluation.normalized_score, "env_return": result.evaluation.mean_env_return,
            "success": result.evaluation.success_rate,
            "length": rollouts.get("mean_length"), "truncated": rollouts.get("truncated"),
            "dyn_reward": rollouts.get("mean_dynamics_reward"),
            "loglik": (record.get("dynamics") or {}).get("holdout_log_likelihood"),
            "loglik_after": (record.get("dynamics_reward") or {}).get("holdout_log_likelihood_after"),
            "run": str(result.run.path)}


def _fmt(values: list[float | None], spec: str = ".1f") -> str:
    return mean_std(values, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["hopper", "halfcheetah"])
    parser.add_argument("--mixes", nargs="+", default=["medium-replay"])
    parser.add_argument("--learners", nargs="+", default=["bc", "mopo", "morec"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", dest="extra", action="append", default=[], help="override for every run")
    parser.add_argument("--model-set", dest="model_extra", action="append", default=[],
                        help="override for the model-based runs (mopo, morec) only")
    parser.add_argument("--runs-dir", default=None)
    args = parser.parse_args()
    root = args.runs_dir or tempfile.mkdtemp(prefix="offline-bench-")
    jobs = [(e, m, lr, s) for e in args.envs for m in args.mixes for lr in args.learners for s in args.seeds]
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one, e, m, lr, s, args.updates, args.episodes,
                               args.extra + (args.model_extra if lr != "bc" else []), root) for e, m, lr, s in jobs]
        for future in futures:
            row = future.result()
            rows.append(row)
            print(f"  {row['env']} {row['mix']} {row['learner']} seed {row['seed']}: normalised "
                  f"{_fmt([row['normalized']])} ({row['seconds']:.0f} s)", flush=True)
    print(f"\n{args.updates} updates per run, {args.episodes} evaluation episodes, seeds {args.seeds}; runs in {root}")
    header = ("env", "dataset", "learner", "normalised score", "env return", "success", "rollout length", "truncated",
              "dynamics reward", "model loglik/dim")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    means: dict[str, list[float]] = {}
    for e in args.envs:
        for m in args.mixes:
            for lr in args.learners:
                group = [r for r in rows if (r["env"], r["mix"], r["learner"]) == (e, m, lr)]
                scores = [r["normalized"] for r in group]
                means.setdefault(lr, []).extend(s for s in scores if s is not None)
                loglik = [r["loglik_after"] if r["loglik_after"] is not None else r["loglik"] for r in group]
                print(f"| {e} | {m} | {lr} | {_fmt(scores)} | {_fmt([r['env_return'] for r in group], '.0f')} | "
                      f"{_fmt([r['success'] for r in group], '.2f')} | "
                      f"{_fmt([r['length'] for r in group])} | {_fmt([r['truncated'] for r in group], '.2f')} | "
                      f"{_fmt([r['dyn_reward'] for r in group], '.2f')} | {_fmt(loglik, '.2f')} |")
    mopo, morec = means.get("mopo"), means.get("morec")
    # a ratio of normalised scores means something only while MOPO is above the random policy
    ratio = statistics.fmean(morec) / statistics.fmean(mopo) if mopo and morec and statistics.fmean(mopo) > 0 \
        else float("nan")
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
