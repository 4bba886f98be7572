"""A 4-trial sweep's wall time: the same trials run one after another in this process
(``start_run`` in a loop, no pool), through ``workbench sweep`` with one worker, and with ``--jobs``
workers. Trials: Reacher PPO, 2 rewards x 2 seeds, ``--steps`` each, video off. Prints each wall time
and the per-trial overhead of the sweep's executor (spawned worker processes, imports, the sweep
record) over the plain loop. Ray is not built yet, so it has no row.
Last line: ``ratio=<sequential loop wall time / sweep wall time with --jobs workers>``.

    .venv/bin/python benchmarks/sweep_overhead.py [--steps 20000] [--jobs 2]
"""

from __future__ import annotations

import argparse
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
    for jobs in (1, args.jobs):
        path = root / f"sweep{jobs}.yaml"
        path.write_text(SWEEP.format(task=task, steps=args.steps, jobs=jobs))
        spec = load_sweep(path)
        if "sequential" not in walls:  # the same trials, one after another, in this process
            started = time.perf_counter()
            for trial in plan_trials(spec):
                start_run(task, list(trial.overrides), runs_root=root / "sequential", quiet=True,
                          console=Console(quiet=True))
            walls["sequential"] = time.perf_counter() - started
        started = time.perf_counter()
        run_sweep(spec, path, root / f"jobs{jobs}")
        walls[f"sweep, {jobs} worker{'s' if jobs > 1 else ''}"] = time.perf_counter() - started
    trials = 4
    print(f"4 trials (Reacher PPO, {args.steps} steps each); runs in {root}")
    print("| how | wall s | per trial s |")
    print("|---|---|---|")
    for how, wall in walls.items():
        print(f"| {how} | {wall:.1f} | {wall / trials:.1f} |")
    one = walls["sweep, 1 worker"]
    print(f"executor overhead per trial (1 worker vs the loop): {(one - walls['sequential']) / trials:.1f} s")
    print("ray: not built")
    print(f"ratio={walls['sequential'] / walls[f'sweep, {args.jobs} workers']:.3f}")


if __name__ == "__main__":
    main()
