"""VLA policies on an instruction suite (``--suite``: PlanarPush, the default, or ManiSkill3): behaviour
cloning, then GRAPE or SRPO from the same cloned policy at equal rollout budgets, scored on the held-out
instructions.

Per seed: ``tasks/vla/<suite>_bc.yaml`` trains BC for ``--bc-updates`` updates; ``grape`` and
``srpo`` each start from that run (``learner.hyperparams.init``) and spend ``--rollout-steps`` env
steps of their own rollouts (a finished BC run of the same seed and budget in ``--runs-dir`` is reused).
Every policy is evaluated by ``workbench.pipeline`` on the held-out
phrasings (``evaluation.sim_kwargs.instructions: heldout``), ``--episodes`` episodes spread evenly over
the six goals. Record the demonstrations first (the task file says how). Also printed: BC's
throughput (samples/s) and the rollout learners' env steps/s, and the device they ran on.
With ``--throughput B [B ...]`` it first times ``--throughput-updates`` BC updates at each batch size B
on the task's device and at the first on the CPU, side by side: samples/s, peak GPU memory, and the
device's speed-up over the CPU (``--seeds`` none skips the success table).
Last line: ``ratio=<best of GRAPE / SRPO mean success over BC's>``.

    .venv/bin/python benchmarks/vla.py [--suite planar_push|maniskill] [--seeds 0 1 2] [--bc-updates 12000]
        [--rollout-steps 32000] [--episodes 60] [--jobs 2] [--set key=value ...] [--runs-dir DIR]
        [--throughput 64 256 1024]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from _stats import mean_std  # benchmarks/ is the script directory

REPO = Path(__file__).resolve().parent.parent


def bc_spec(suite: str, learner: str, seed: int, budget: int, episodes: int, extra: list[str]) -> Any:
    from workbench.spec import load_task

    name = {"vla_bc": "bc"}.get(learner, learner)
    return load_task(REPO / "tasks" / "vla" / f"{suite}_{name}.yaml", [
        f"training.seed={seed}", f"training.total_steps={budget}", f"evaluation.episodes={episodes}",
        "evaluation.video_episodes=1", *extra])


def row(learner: str, seed: int, run: Path, seconds: float | None, batch_size: int) -> dict[str, Any]:
    record = json.loads((run / "vla" / "vla.json").read_text())
    info = json.loads((run / "run.json").read_text())
    evaluation = json.loads((run / "eval.json").read_text())
    return {"learner": learner, "seed": seed, "seconds": seconds, "success": evaluation["success_rate"],
            "per_instruction": evaluation.get("per_instruction"), "run": str(run.resolve()),
            "train_seconds": info.get("train_seconds"), "steps_per_second": info.get("train_steps_per_second"),
            "rounds": record.get("rounds", []), "batch_size": batch_size,
            "device": record.get("device"), "peak_gpu_memory_mb": record.get("peak_gpu_memory_mb")}


def train(suite: str, learner: str, seed: int, budget: int, episodes: int, extra: list[str],
          root: str) -> dict[str, Any]:
    from rich.console import Console

    from workbench.pipeline import train_and_evaluate

    spec = bc_spec(suite, learner, seed, budget, episodes, extra)
    started = time.perf_counter()
    result = train_and_evaluate(spec, Path(root), quiet=True, console=Console(quiet=True))
    return row(learner, seed, result.run.path, time.perf_counter() - started,
               spec.learner.hyperparams.get("batch_size", 64))


def finished_bc(suite: str, seed: int, updates: int, episodes: int, extra: list[str],
                root: str) -> dict[str, Any] | None:
    """A finished BC run in ``root`` of this seed, budget and hyperparameters (a rerun of the benchmark
    keeps it; one trained with other settings is not reused)."""
    import yaml

    spec = bc_spec(suite, "vla_bc", seed, updates, episodes, extra)
    for run in sorted(Path(root).glob(f"{suite}_vla_bc__vla_bc__s{seed}__*")):
        info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
        if info.get("status") != "finished" or info.get("steps") != updates or not (run / "eval.json").is_file():
            continue
        saved = yaml.safe_load((run / "task.yaml").read_text()) or {}
        if (saved.get("learner") or {}).get("hyperparams") == dict(spec.learner.hyperparams):
            return row("vla_bc", seed, run, info.get("train_seconds"), spec.learner.hyperparams.get("batch_size", 64))
    return None


def throughput(suite: str, batch_sizes: list[int], updates: int, extra: list[str]) -> None:
    """BC updates/s of the task's network on its device at each batch size, and on the CPU at the first."""
    import numpy as np
    import torch

    from policies.vla.config import parse_hyperparams
    from policies.vla.data import load_demos
    from policies.vla.learners import VLALearner, device_record
    from policies.vla.model import VLAPolicy, resolve_device
    from workbench.spec import load_task

    spec = load_task(REPO / "tasks" / "vla" / f"{suite}_bc.yaml", extra)
    hp = parse_hyperparams("vla_bc", spec, file=str(spec.source_path))
    demos = load_demos(hp.dataset or "", file=str(spec.source_path), key="learner.hyperparams.dataset")
    env = spec_env(spec)
    device = resolve_device(hp.device)
    runs = [(device, b) for b in batch_sizes]
    if device.type != "cpu":
        runs.append((torch.device("cpu"), batch_sizes[0]))
    print(f"BC throughput: {len(demos)} demonstration steps, {updates} timed updates after 20 warm-up ones")
    print("| device | batch | updates/s | samples/s | peak GPU memory (MB) |")
    print("|---|---|---|---|---|")
    rates: dict[tuple[str, int], float] = {}
    for where, batch in runs:
        torch.manual_seed(0)
        if where.type == "cuda":
            torch.cuda.reset_peak_memory_stats(where)
        policy = VLAPolicy(VLALearner.new_network(hp, env), device=where)
        optimizer = torch.optim.AdamW(policy.net.parameters(), lr=hp.lr)
        sized = hp.model_copy(update={"batch_size": batch})
        rng = np.random.default_rng(0)
        VLALearner().clone(policy, optimizer, demos, sized, rng, 0, 20)
        if where.type == "cuda":
            torch.cuda.synchronize(where)
        started = time.perf_counter()
        VLALearner().clone(policy, optimizer, demos, sized, rng, 20, 20 + updates)  # returns a float: synced
        rate = updates / (time.perf_counter() - started)
        rates[(where.type, batch)] = rate * batch
        peak = device_record(where).get("peak_gpu_memory_mb", "-")
        print(f"| {where.type} | {batch} | {rate:.0f} | {rate * batch:.0f} | {peak} |", flush=True)
    env.close()
    if device.type != "cpu":
        b = batch_sizes[0]
        print(f"{device.type} over cpu at batch {b}: {rates[(device.type, b)] / rates[('cpu', b)]:.1f}x; "
              f"best {device.type} samples/s {max(v for (d, _), v in rates.items() if d == device.type):.0f}")


def spec_env(spec: Any) -> Any:
    from workbench.registry import SIMS

    return SIMS.get(spec.sim.name)().make_env(spec.sim)


def bc_for_seed(suite: str, seed: int, bc_updates: int, episodes: int, extra: list[str], root: str) -> dict[str, Any]:
    return (finished_bc(suite, seed, bc_updates, episodes, extra, root)
            or train(suite, "vla_bc", seed, bc_updates, episodes, extra, root))


def report(row: dict[str, Any]) -> dict[str, Any]:
    print(f"  {row['learner']} seed {row['seed']}: held-out success {_fmt([row['success']])} "
          f"({row['seconds'] or 0:.0f} s)", flush=True)
    return row


def _fmt(values: list[float | None], spec: str = ".2f") -> str:
    return mean_std(values, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["planar_push", "maniskill"], default="planar_push",
                        help="tasks/vla/<suite>_{bc,grape,srpo}.yaml")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--bc-updates", type=int, default=12_000)
    parser.add_argument("--rollout-steps", type=int, default=32_000)
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", dest="extra", action="append", default=[], help="override for every run")
    parser.add_argument("--runs-dir", default=None)
    parser.add_argument("--throughput", nargs="*", type=int, default=[], metavar="BATCH",
                        help="time BC updates at these batch sizes first")
    parser.add_argument("--throughput-updates", type=int, default=300)
    args = parser.parse_args()
    import torch

    if args.throughput:
        throughput(args.suite, args.throughput, args.throughput_updates, args.extra)
        if not args.seeds:
            return

    root = args.runs_dir or tempfile.mkdtemp(prefix="vla-bench-")
    rows: list[dict[str, Any]] = []
    # spawn, not fork: the parent may hold a CUDA context (the throughput section), which a forked child
    # cannot use. GRAPE and SRPO of a seed start as soon as its BC run is done, side by side.
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        bcs = {pool.submit(bc_for_seed, args.suite, s, args.bc_updates, args.episodes, args.extra, root): s
               for s in args.seeds}
        later = []
        for future in as_completed(bcs):
            rows.append(report(future.result()))
            init = f"learner.hyperparams.init={Path(rows[-1]['run']).resolve()}"  # absolute: read from anywhere
            later += [pool.submit(train, args.suite, learner, bcs[future], args.rollout_steps, args.episodes,
                                  [init, *args.extra], root) for learner in ("grape", "srpo")]
        for future in as_completed(later):
            rows.append(report(future.result()))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"\nBC {args.bc_updates} updates; GRAPE / SRPO {args.rollout_steps} rollout env steps from that BC policy; "
          f"{args.episodes} held-out episodes; seeds {args.seeds}; device {device}; runs in {root}")
    print("| learner | seeds | held-out success | per seed | throughput | peak GPU memory (MB) |")
    print("|---|---|---|---|---|---|")
    means: dict[str, float] = {}
    for learner in ("vla_bc", "grape", "srpo"):
        group = sorted((r for r in rows if r["learner"] == learner), key=lambda r: r["seed"])
        success = [r["success"] for r in group]
        means[learner] = statistics.fmean([s for s in success if s is not None] or [float("nan")])
        if learner == "vla_bc":
            rate = _fmt([r["steps_per_second"] * r["batch_size"] for r in group if r["steps_per_second"]], ".0f")
            speed = f"{rate} samples/s"
        else:
            speed = f"{_fmt([r['steps_per_second'] for r in group if r['steps_per_second']], '.0f')} env steps/s"
        peak = _fmt([r["peak_gpu_memory_mb"] for r in group], ".0f")
        print(f"| {learner} | {len(group)} | {_fmt(success)} | {', '.join(_fmt([s]) for s in success)} | "
              f"{speed} | {peak} |")
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
