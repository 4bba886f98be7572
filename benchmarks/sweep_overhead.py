"""A 4-trial sweep's wall time: the same trials run one after another in this process
(``start_run`` in a loop, no pool), then through ``workbench sweep`` on each executor (``local``: the
process pool; ``ray``: a local Ray runtime, started and stopped by the sweep, its start included) with
one trial at a time and with ``--jobs`` at once. Trials: Reacher PPO, 2 rewards x 2 seeds, ``--steps``
each, video off. Prints each wall time and each executor's overhead per trial (one trial at a time
against the plain loop: worker start, imports, the sweep record, Ray's scheduling).
Last line: ``ratio=<sequential loop wall time / local sweep wall time with --jobs workers>``.

    .venv/bin/python benchmarks/sweep_overhead.py [--steps 20000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
SWEEP = """\
name: overhead
task: {task}
set: {{training.total_steps: {steps}, training.checkpoint_every: {steps}, training.eval_every: 0,
      evaluation: {{episodes: 10, video: false}}}}
axes:
  reward: [{{source: env}}, {{source: code, path: rewards/reacher_precise.py}}]
seeds: [0, 1]
metric: success_rate
jobs: {jobs}
executor: {executor}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    from workbench.pipeline import start_run
    from workbench.sweep import load_sweep, plan_trials, run_sweep

    root = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    task = REPO / "tasks" / "mujoco" / "reacher.yaml"
    walls: dict[str, float] = {}
    started = time.perf_counter()  # the same trials, one after another, in this process
    for trial in plan_trials(load_sweep(_write(root / "plain.yaml", task, args.steps, 1, "local"))):
        start_run(task, list(trial.overrides), runs_root=root / "sequential", quiet=True, console=Console(quiet=True))
    walls["sequential"] = time.perf_counter() - started
    executors = ["local"] + (["ray"] if importlib.util.find_spec("ray") else [])
    for executor in executors:
        for jobs in (1, args.jobs):
            path = _write(root / f"{executor}{jobs}.yaml", task, args.steps, jobs, executor)
            started = time.perf_counter()
            run_sweep(load_sweep(path), path, root / f"{executor}-jobs{jobs}")
            walls[f"{executor}, {jobs} at once"] = time.perf_counter() - started
    trials = 4
    print(f"4 trials (Reacher PPO, {args.steps} steps each); runs in {root}")
    print("| how | wall s | per trial s | loop / this |")
    print("|---|---|---|---|")
    for how, wall in walls.items():
        print(f"| {how} | {wall:.1f} | {wall / trials:.1f} | {walls['sequential'] / wall:.3f} |")
    for executor in executors:
        overhead = (walls[f"{executor}, 1 at once"] - walls["sequential"]) / trials
        print(f"{executor} executor overhead per trial (1 at once vs the loop): {overhead:.1f} s")
    if "ray" not in executors:
        print("ray: not installed (pip install -e '.[ray]'), no row")
    print(f"ratio={walls['sequential'] / walls[f'local, {args.jobs} at once']:.3f}")


def _write(path: Path, task: Path, steps: int, jobs: int, executor: str) -> Path:
    path.write_text(SWEEP.format(task=task, steps=steps, jobs=jobs, executor=executor))
    return path

if __name__ == "__main__":
    main()
