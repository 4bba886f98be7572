"""LaRe vs raw episodic reward vs RD-on-state, on episodic HalfCheetah and Hopper, same budget.

Every cell is a real `workbench run` (CLI subprocess, its own runs dir) of the shipped tasks:

- ``episodic``  tasks/mujoco/<env>_episodic.yaml (the env return, paid once at episode end)
- ``lare``      tasks/mujoco/<env>_lare.yaml (hand-written encoder's latent factors, LaRe loss)
- ``rd_state``  the same task with ``reward.factors=state`` (the decoder on observation + action)

All methods get the same PPO (``--fast``: 64x64 nets, 5 epochs, for these 2-core machines) and the
same step budget. Reported per cell: the final evaluation's mean env return and success rate
(deterministic policy, the task's own metric), mean ± std over seeds, and a plot of the training
curves of the per-step env reward (``reward/env`` in TensorBoard, the same for every method).
The last line is ``ratio=<LaRe final env return ÷ raw episodic's>``, averaged over the envs.

    .venv/bin/python benchmarks/lare_compare.py --steps 50000 --seeds 0 1 2 --jobs 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ENVS = ("half_cheetah", "hopper")
METHODS: dict[str, tuple[str, list[str]]] = {
    "episodic": ("{env}_episodic.yaml", []),
    "lare": ("{env}_lare.yaml", []),
    "rd_state": ("{env}_lare.yaml", ["reward.factors=state"]),
}
FAST = ["learner.hyperparams.policy_kwargs.net_arch={pi: [64, 64], vf: [64, 64]}",
        "learner.hyperparams.n_epochs=5", "learner.hyperparams.n_steps=1024", "learner.hyperparams.batch_size=64"]


def run_cell(env: str, method: str, seed: int, steps: int, root: Path, fast: bool) -> dict:
    task_file, extra = METHODS[method]
    out = root / f"{env}__{method}__s{seed}"
    done = list(out.glob("*/eval.json"))
    if not done:  # a rerun of the script reuses finished cells
        sets = [*extra, f"training.total_steps={steps}", f"training.seed={seed}", "training.eval_every=0",
                f"training.checkpoint_every={steps}", "evaluation.episodes=10", "evaluation.video=false",
                *(FAST if fast else [])]
        cmd = [sys.executable, "-m", "workbench.cli", "run", str(REPO / "tasks/mujoco" / task_file.format(env=env)),
               "--quiet", "--runs-dir", str(out)] + [a for s in sets for a in ("--set", s)]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "WORKBENCH_RUNS_DIR": str(out)})
        if proc.returncode != 0:
            raise RuntimeError(f"{env}/{method}/s{seed} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        print(f"  {env:13s} {method:9s} s{seed}: {time.perf_counter() - started:.0f} s", flush=True)
        done = list(out.glob("*/eval.json"))
    run_dir = done[0].parent
    ev = json.loads(done[0].read_text())
    return {"env": env, "method": method, "seed": seed, "return": ev["mean_env_return"],
            "success": ev["success_rate"], "curve": curve(run_dir),
            "sps": json.loads((run_dir / "run.json").read_text()).get("train_steps_per_second")}


def curve(run_dir: Path) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: list[tuple[int, float]] = []
    for events in sorted((run_dir / "tb").glob("*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "reward/env" in acc.Tags()["scalars"]:
            points += [(e.step, e.value) for e in acc.Scalars("reward/env")]
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000, help="env steps per run (the same for every cell)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--jobs", type=int, default=1, help="cells run at once")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "lare_compare")
    parser.add_argument("--full-ppo", action="store_true", help="the tasks' own RL Zoo PPO instead of --fast's")
    args = parser.parse_args()

    cells = [(e, m, s) for e in args.envs for s in args.seeds for m in args.methods]
    print(f"{len(cells)} runs of {args.steps} steps -> {args.out}", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda c: run_cell(*c, args.steps, args.out, not args.full_ppo), cells))

    print(f"\nfinal evaluation (10 episodes, deterministic), mean ± std over seeds {args.seeds}, {args.steps} steps")
    print(f"{'env':14s}{'method':10s}{'env return':>22s}{'success':>10s}{'steps/s':>9s}")
    ratios = []
    for env in args.envs:
        means = {}
        for method in args.methods:
            sel = [r for r in rows if r["env"] == env and r["method"] == method]
            ret = np.array([r["return"] for r in sel])
            succ = np.array([r["success"] or 0.0 for r in sel])
            means[method] = ret.mean()
            print(f"{env:14s}{method:10s}{ret.mean():12.1f} ± {ret.std():7.1f}{succ.mean():10.2f}"
                  f"{np.mean([r['sps'] or 0 for r in sel]):9.0f}")
        if "lare" in means and "episodic" in means and means["episodic"] != 0:
            ratios.append(means["lare"] / means["episodic"])
    plot(rows, args)
    print(f"ratio={float(np.mean(ratios)) if ratios else float('nan'):.3f}")


def plot(rows: list[dict], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.envs), figsize=(6 * len(args.envs), 4), squeeze=False)
    for ax, env in zip(axes[0], args.envs):
        for method in args.methods:
            curves = [r["curve"] for r in rows if r["env"] == env and r["method"] == method and r["curve"]]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            steps = np.array([p[0] for p in curves[0][:n]])
            values = np.array([[p[1] for p in c[:n]] for c in curves])
            ax.plot(steps, values.mean(0), label=method)
            ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2)
        ax.set_title(f"{env} (episodic feedback)")
        ax.set_xlabel("env steps")
        ax.set_ylabel("per-step env reward (training)")
        ax.legend()
    fig.tight_layout()
    path = args.out / "lare_compare.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
