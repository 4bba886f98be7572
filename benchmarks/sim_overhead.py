"""Env steps/s of the bare simulator library vs our adapter vs the full task env, per simulator.

For each sim, three envs step the same pre-sampled actions; trials alternate them so machine
noise hits all three, and the median is reported:

- **bare**: the library stepped directly. ManiSkill: ``gym.make("PushCube-v1", obs_mode="state",
  sim_backend="cpu", num_envs=1, ...)`` with the control mode, reward mode and render backend our
  adapter passes, no render mode. Rocket League: rlgym v2's ``RLGym`` over ``RocketSimEngine``
  with the adapter's action parser (lookup table, repeated ``tick_skip`` ticks) and team size,
  and rlgym's own obs builder (``DefaultObs``), reward (``TouchReward``) and done conditions
  (``GoalCondition``, ``TimeoutCondition`` at the task's episode length), stepped with
  ``{agent: action}`` dicts.
- **adapter**: ``task.adapter.make_env(task.spec.sim)``, the env a task wraps, without the reward.
- **adapter + reward**: ``Task.build(load_task(path)).make_env()``, the shipped code reward and
  the StateView reads it needs.

Tasks: ``tasks/maniskill/push_cube.yaml`` and ``tasks/rocket_league/touch_ball.yaml``. The last
line is ``ratio=<adapter + reward steps/s ÷ bare steps/s>``; with ``--sim all`` one
``ratio_<sim>=`` line per sim comes first and ``ratio=`` is the smaller (worst) of them. Targets:
≥ 0.75 for ManiSkill (a SAPIEN step is slow, but the StateView reads torch tensors from the live
scene) and ≥ 0.6 for Rocket League (a RocketSim step is cheap, so our Python per step weighs
more). ManiSkill is skipped, saying why, where it is not installed or SAPIEN finds no Vulkan
device; a lone ``--sim maniskill`` then ends with ``ratio=nan``.

    .venv/bin/python benchmarks/sim_overhead.py [--sim {maniskill,rocket_league,all}] [--steps N] [--trials 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
from reward_overhead import steps_per_second  # same loop; ManiSkill's 1-element torch bools pass `or`

from workbench.spec import load_task, validate_sim_kwargs
from workbench.task import Task

REPO = Path(__file__).resolve().parent.parent
TASKS = {"maniskill": REPO / "tasks/maniskill/push_cube.yaml",
         "rocket_league": REPO / "tasks/rocket_league/touch_ball.yaml"}
TARGETS = {"maniskill": 0.75, "rocket_league": 0.6}
# Bare ~300 (ManiSkill) and ~10k (Rocket League) steps/s on 2 CPU cores: 3 envs x 5 trials
# stays near 20-50 s per sim.
DEFAULT_STEPS = {"maniskill": 1000, "rocket_league": 5000}

Run = Callable[[np.ndarray], float]  # actions -> steps/s


def maniskill_skip_reason() -> str | None:
    if importlib.util.find_spec("mani_skill") is None:
        return 'mani_skill is not installed: pip install "rl-workbench[maniskill]"'
    from workbench.sims.maniskill import vulkan_available

    ok, why = vulkan_available()
    return None if ok else why


def bare_maniskill(task: Task) -> Run:
    import mani_skill.envs  # noqa: F401  (registers the envs)

    from workbench.sims.maniskill import ManiSkillOptions

    # The kwargs our adapter passes that change what a step computes; no render mode, no wrapper.
    opts = validate_sim_kwargs(ManiSkillOptions, task.spec.sim.kwargs)
    env = gym.make(task.spec.sim.env_id, obs_mode="state", sim_backend="cpu", render_backend="cpu", num_envs=1,
                   control_mode=opts.control_mode, reward_mode=opts.reward_mode)
    return lambda actions: steps_per_second(env, actions)


def bare_rocket_league(task: Task) -> Run:
    from rlgym.api import RLGym
    from rlgym.rocket_league import action_parsers, done_conditions, obs_builders, reward_functions, sim, state_mutators

    from workbench.sims.rocket_league import BLUE, TICK_RATE

    probe = task.adapter.make_env(task.spec.sim)
    cfg = probe.unwrapped.config  # the resolved options: tick_skip, episode length, opponent
    probe.close()
    assert cfg.opponent == "none", "the bare loop steps one agent; pick a task without an opponent"
    env = RLGym(
        state_mutator=state_mutators.MutatorSequence(state_mutators.FixedTeamSizeMutator(blue_size=1, orange_size=0),
                                                     state_mutators.KickoffMutator()),
        obs_builder=obs_builders.DefaultObs(zero_padding=None),
        action_parser=action_parsers.RepeatAction(action_parsers.LookupTableAction(), repeats=cfg.tick_skip),
        reward_fn=reward_functions.TouchReward(),
        termination_cond=done_conditions.GoalCondition(),
        truncation_cond=done_conditions.TimeoutCondition(cfg.max_steps * cfg.tick_skip / TICK_RATE),
        transition_engine=sim.RocketSimEngine())

    def run(actions: np.ndarray) -> float:
        rows = actions.reshape(-1, 1)  # rlgym's parsers take one (1,) array per agent
        env.reset()
        start = time.perf_counter()
        for row in rows:
            _, _, terminated, truncated = env.step({BLUE: row})
            if terminated[BLUE] or truncated[BLUE]:
                env.reset()
        return len(rows) / (time.perf_counter() - start)

    return run


BARE: dict[str, Callable[[Task], Run]] = {"maniskill": bare_maniskill, "rocket_league": bare_rocket_league}


def compare(sim: str, steps: int, trials: int) -> float:
    """Print one sim's table; return adapter + reward steps/s ÷ bare steps/s."""
    task = Task.build(load_task(TASKS[sim]))
    adapter_env = task.adapter.make_env(task.spec.sim)
    full_env = task.make_env()
    runs: dict[str, Run] = {
        "bare simulator": BARE[sim](task),
        "workbench adapter": lambda a: steps_per_second(adapter_env, a),
        "adapter + code reward": lambda a: steps_per_second(full_env, a),
    }
    rng = np.random.default_rng(0)
    space = adapter_env.action_space
    if isinstance(space, gym.spaces.Discrete):
        actions = rng.integers(space.start, space.start + space.n, size=steps)
    else:
        actions = rng.uniform(space.low, space.high, size=(steps, *space.shape)).astype(space.dtype)

    for run in runs.values():  # warm up all three (first resets, caches)
        run(actions[: max(1, min(1000, steps // 5))])
    sps: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(trials):
        for name, run in runs.items():
            sps[name].append(run(actions))
    med = {name: statistics.median(values) for name, values in sps.items()}
    bare = med["bare simulator"]

    print(f"{sim}: {task.spec.name} ({task.spec.sim.env_id}), reward: {task.reward.description}")
    print(f"  {'':22} {'steps/s':>10}  {'overhead vs bare':>16}  ({steps} steps, median of {trials})")
    for name, value in med.items():
        print(f"  {name:22} {value:10,.0f}  {1e6 * (1 / value - 1 / bare):13.1f} µs")
    ratio = med["adapter + code reward"] / bare
    print(f"  target: ratio >= {TARGETS[sim]}: {'met' if ratio >= TARGETS[sim] else 'MISSED'}")
    adapter_env.close()
    full_env.close()
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", choices=[*TASKS, "all"], default="all")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"steps per trial (default per sim: {DEFAULT_STEPS})")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()

    sims = list(TASKS) if args.sim == "all" else [args.sim]
    ratios: dict[str, float] = {}
    for sim in sims:
        skip = maniskill_skip_reason() if sim == "maniskill" else None
        if skip is not None:
            print(f"{sim}: skipped: {skip}")
            continue
        ratios[sim] = compare(sim, args.steps or DEFAULT_STEPS[sim], args.trials)
    if len(sims) > 1:
        for sim, ratio in ratios.items():
            print(f"ratio_{sim}={ratio:.3f}")
    print(f"ratio={min(ratios.values()) if ratios else math.nan:.3f}")


if __name__ == "__main__":
    main()
