"""VLA policies on the PlanarPush instruction suite: behaviour cloning, then GRAPE or SRPO from the same
cloned policy at equal rollout budgets, scored on the held-out instructions.

Per seed: ``tasks/vla/planar_push_bc.yaml`` trains BC for ``--bc-updates`` updates; ``grape`` and
``srpo`` each start from that run (``learner.hyperparams.init``) and spend ``--rollout-steps`` env
steps of their own rollouts (a finished BC run of the same seed and budget in ``--runs-dir`` is reused).
Every policy is evaluated by ``workbench.pipeline`` on the held-out
phrasings (``evaluation.sim_kwargs.instructions: heldout``), ``--episodes`` episodes spread evenly over
the six goals. Record the demonstrations first (the task file says how). Also printed: BC's
throughput (samples/s) and the rollout learners' env steps/s, and the device they ran on.
Last line: ``ratio=<best of GRAPE / SRPO mean success over BC's>``.

    .venv/bin/python benchmarks/vla.py [--seeds 0 1 2] [--bc-updates 12000] [--rollout-steps 32000]
        [--episodes 60] [--jobs 2] [--set key=value ...] [--runs-dir DIR]
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


def train(learner: str, seed: int, budget: int, episodes: int, extra: list[str], root: str) -> dict[str, Any]:
    from rich.console import Console

    from workbench.pipeline import train_and_evaluate
    from workbench.spec import load_task

    name = {"vla_bc": "bc"}.get(learner, learner)
    spec = load_task(REPO / "tasks" / "vla" / f"planar_push_{name}.yaml", [
        f"training.seed={seed}", f"training.total_steps={budget}", f"evaluation.episodes={episodes}",
        "evaluation.video_episodes=1", *extra])
    started = time.perf_counter()
    result = train_and_evaluate(spec, Path(root), quiet=True, console=Console(quiet=True))
    seconds = time.perf_counter() - started
    record = json.loads((result.run.path / "vla" / "vla.json").read_text())
    info = json.loads((result.run.path / "run.json").read_text())
    return {"learner": learner, "seed": seed, "seconds": seconds, "success": result.evaluation.success_rate,
            "per_instruction": result.evaluation.per_instruction, "run": str(result.run.path),
            "train_seconds": info.get("train_seconds"), "steps_per_second": info.get("train_steps_per_second"),
            "rounds": record.get("rounds", []), "batch_size": spec.learner.hyperparams.get("batch_size", 64)}


def finished_bc(seed: int, updates: int, root: str) -> dict[str, Any] | None:
    """A finished BC run of this seed and budget in ``root`` (a rerun of the benchmark keeps it)."""
    for run in sorted(Path(root).glob(f"planar_push_vla_bc__vla_bc__s{seed}__*")):
        info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
        if info.get("status") == "finished" and info.get("steps") == updates and (run / "eval.json").is_file():
            evaluation = json.loads((run / "eval.json").read_text())
            return {"learner": "vla_bc", "seed": seed, "seconds": info.get("train_seconds"),
                    "success": evaluation["success_rate"], "per_instruction": evaluation.get("per_instruction"),
                    "run": str(run.resolve()), "train_seconds": info.get("train_seconds"),
                    "steps_per_second": info.get("train_steps_per_second"), "rounds": [], "batch_size": 64}
    return None


def one_seed(seed: int, bc_updates: int, rollout_steps: int, episodes: int, extra: list[str],
             root: str) -> list[dict[str, Any]]:
    bc = finished_bc(seed, bc_updates, root) or train("vla_bc", seed, bc_updates, episodes, extra, root)
    rows = [bc]
    for learner in ("grape", "srpo"):  # init: an absolute path (a relative one is read from the task's folder)
        rows.append(train(learner, seed, rollout_steps, episodes,
                          [f"learner.hyperparams.init={Path(bc['run']).resolve()}", *extra], root))
    return rows


def _fmt(values: list[float | None], spec: str = ".2f") -> str:
    return mean_std(values, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--bc-updates", type=int, default=12_000)
    parser.add_argument("--rollout-steps", type=int, default=32_000)
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", dest="extra", action="append", default=[], help="override for every run")
    parser.add_argument("--runs-dir", default=None)
    args = parser.parse_args()
    import torch

    root = args.runs_dir or tempfile.mkdtemp(prefix="vla-bench-")
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one_seed, s, args.bc_updates, args.rollout_steps, args.episodes, args.extra, root)
                   for s in args.seeds]
        for future in futures:
            for row in future.result():
                rows.append(row)
                print(f"  {row['learner']} seed {row['seed']}: held-out success {_fmt([row['success']])} "
                      f"({row['seconds']:.0f} s)", flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"\nBC {args.bc_updates} updates; GRAPE / SRPO {args.rollout_steps} rollout env steps from that BC policy; "
          f"{args.episodes} held-out episodes; seeds {args.seeds}; device {device}; runs in {root}")
    print("| learner | seeds | held-out success | per seed | throughput |")
    print("|---|---|---|---|---|")
    means: dict[str, float] = {}
    for learner in ("vla_bc", "grape", "srpo"):
        group = [r for r in rows if r["learner"] == learner]
        success = [r["success"] for r in group]
        means[learner] = statistics.fmean([s for s in success if s is not None] or [float("nan")])
        if learner == "vla_bc":
            rate = _fmt([r["steps_per_second"] * r["batch_size"] for r in group if r["steps_per_second"]], ".0f")
            throughput = f"{rate} samples/s"
        else:
            throughput = f"{_fmt([r['steps_per_second'] for r in group if r['steps_per_second']], '.0f')} env steps/s"
        print(f"| {learner} | {len(group)} | {_fmt(success)} | {', '.join(_fmt([s]) for s in success)} | "
              f"{throughput} |")
    instructions = sorted({t for r in rows for t in (r["per_instruction"] or {})})
    print("\n\n| instruction | " + " | ".join(("vla_bc", "grape", "srpo")) + " |")
    print("|---|---|---|---|")
    for text in instructions:
        cells = []
        for learner in ("vla_bc", "grape", "srpo"):
            vals = [(r["per_instruction"] or {}).get(text, {}).get("success_rate") for r in rows
                    if r["learner"] == learner]
            cells.append(_fmt(vals))
        print(f"| {text} | " + " | ".join(cells) + " |")
    for learner in ("grape", "srpo"):
        rounds = [x for r in rows if r["learner"] == learner for x in r["rounds"]]
        if rounds:
            first = statistics.fmean(x["success"] for x in rounds if x["round"] == 1)
            last_round = max(x["round"] for x in rounds)
            last = statistics.fmean(x["success"] for x in rounds if x["round"] == last_round)
            print(f"{learner}: rollout success (training instructions, sampled) round 1 {first:.2f} -> round "
                  f"{last_round} {last:.2f}")
    best = max(means["grape"], means["srpo"])
    ratio = best / means["vla_bc"] if means["vla_bc"] > 0 else float("nan")
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
