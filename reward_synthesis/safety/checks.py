"""Pre-flight checks: is a reward program safe and sane on states from the real task?

:func:`preflight` runs the sandbox's AST check, then the program itself in an isolated,
resource-limited process on sampled states (:func:`collect_samples`), and judges what came back:
the output contract, finiteness, scale, variation, speed, the reference policy's preference and
whether the state (not the action alone) moves the reward. It never raises for a bad program;
the :class:`CheckReport` says what failed and why, and can be raised as
:class:`~workbench.errors.RewardCodeRejected`.

A batched program (``compute_reward_batch``, see :mod:`reward_synthesis.safety.sandbox`) goes through
the same checks on its batch of all samples, plus ``batch_consistency``: its result for the N
samples stacked must equal its results for each sample alone (a batch of one) within
:data:`BATCH_TOLERANCE`, so a program that mixes envs (``np.linalg.norm(d)`` without
``axis=-1``, ``x - x.mean()``) is rejected before it trains anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reward_synthesis.safety.sandbox import IsolatedResult, run_isolated, static_check
from workbench.errors import RewardCodeRejected
from workbench.evaluate import run_episode
from workbench.state import State, StateSchema

__all__ = ["CHECK_NAMES", "CheckReport", "CheckResult", "Preference", "collect_samples",
           "collect_preference", "check_inputs", "preflight", "SAMPLES_SEED", "BATCH_TOLERANCE"]

SAMPLES_SEED = 12345
BATCH_TOLERANCE = 1e-9  # |batch - alone| <= tol * max(1, |alone|)

CHECK_NAMES = ("static", "isolated_run", "output_contract", "batch_consistency", "finite", "scale",
               "non_constant", "time_budget", "preference", "state_dependence")
_SKIPPED = "skipped: "
_CONSTANT_STD = 1e-9

Sample = tuple[State, np.ndarray]


@dataclass(frozen=True)
class Preference:
    """Episodes of the task's scripted reference policy, of random actions and of one constant
    (idle) action. An accepted program gives the reference episodes a higher mean return than the
    random ones (``preference``), and, with the action held fixed, their states a higher score than
    both the random and the idle episodes' states (``state_dependence``). The idle baseline catches a
    reward for keeping still (the size of the joint velocities as a cost): random actions thrash, so
    against them alone such a reward passes. It is judged on states only, so that an action cost
    (which a constant action never pays) cannot rank standing still first by itself."""

    reference: list[list[Sample]]
    random: list[list[Sample]]
    idle: list[list[Sample]] = field(default_factory=list)

    def flat(self) -> list[Sample]:
        return [s for ep in self.reference + self.random + self.idle for s in ep]


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    # The reward components the check holds responsible (preference and state_dependence: those whose
    # own episode return ranks a baseline above the reference policy), for a synthesis loop to steer away from.
    blamed: tuple[str, ...] = ()

    @property
    def skipped(self) -> bool:
        return self.detail.startswith(_SKIPPED)


@dataclass
class CheckReport:
    """The verdict on one program; ``sha256`` is of its source text (UTF-8)."""

    program: str
    sha256: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def reasons(self) -> list[str]:
        """``"name: detail"`` for each failed check, leaving out the ones merely skipped."""
        return [f"{r.name}: {r.detail}" for r in self.results if not r.passed and not r.skipped]

    def to_dict(self) -> dict[str, Any]:
        return {
            "program": self.program,
            "sha256": self.sha256,
            "accepted": self.accepted,
            "results": [{"name": r.name, "passed": r.passed, "detail": r.detail,
                         **({"blamed": list(r.blamed)} if r.blamed else {})}
                        for r in self.results],
        }

    def render(self) -> str:
        """One line per check: ``PASS  name  detail``."""
        width = max((len(r.name) for r in self.results), default=0)
        return "\n".join(
            f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {' '.join(r.detail.split())}"
            for r in self.results
        )

    def raise_if_rejected(self) -> None:
        """Raise :class:`RewardCodeRejected` (carrying this report) unless accepted."""
        if not self.accepted:
            listing = "\n".join(f"  - {reason}" for reason in self.reasons)
            raise RewardCodeRejected(
                f"reward program {self.program} failed pre-flight checks:\n{listing}", report=self
            )


def preflight(source: str, samples: Sequence[Sample], *, program: str = "<reward>",
              per_call_budget_s: float = 2e-3, max_abs_reward: float = 1e3,
              cpu_seconds: float = 10, wall_seconds: float = 30,
              memory_mb: int = 2048, preference: Preference | None = None) -> CheckReport:
    """Run the checks in :data:`CHECK_NAMES` order; stop at the first failure and report the
    rest as skipped. ``program`` labels the report and the violation messages.

    With ``preference`` the program also scores those episodes (in the same isolated run) and
    must rank the reference policy's above the random ones.

    ``state_dependence`` scores every state again with one fixed action: the reward must still vary
    over the samples, and (with ``preference``) still rank the reference episodes higher. A reward
    that only an action cost moves (a bonus whose condition always holds plus ``-|action|^2``)
    passes every other check yet teaches nothing about the goal."""
    if not samples:
        raise ValueError("preflight needs at least one sample; see collect_samples()")
    n_plain = len(samples)
    fixed = samples[0][1]
    # state_dependence's own isolated run: [samples | preference episodes], all with one fixed action.
    held = [(s, fixed) for s, _ in [*samples, *(preference.flat() if preference is not None else [])]]
    if preference is not None:
        samples = list(samples) + preference.flat()
    text = source if isinstance(source, str) else repr(source)
    report = CheckReport(program, hashlib.sha256(text.encode("utf-8", "replace")).hexdigest())

    def isolated() -> CheckResult:
        result = run_isolated(source, samples, filename=program, cpu_seconds=cpu_seconds,
                              wall_seconds=wall_seconds, memory_mb=memory_mb)
        runs["run"] = result
        return _check_isolated_run(result, cpu_seconds, memory_mb, wall_seconds)

    runs: dict[str, IsolatedResult] = {}
    steps: list[tuple[str, Callable[[], CheckResult]]] = [
        ("static", lambda: _check_static(source, program)),
        ("isolated_run", isolated),
        ("output_contract", lambda: _check_output_contract(runs["run"])),
        ("batch_consistency", lambda: _check_batch_consistency(runs["run"])),
        ("finite", lambda: _check_finite(runs["run"])),
        ("scale", lambda: _check_scale(runs["run"], max_abs_reward)),
        ("non_constant", lambda: _check_non_constant(runs["run"])),
        ("time_budget", lambda: _check_time_budget(runs["run"], per_call_budget_s)),
        ("preference", lambda: _check_preference(runs["run"], n_plain, preference)),
        ("state_dependence", lambda: _check_state_dependence(
            run_isolated(source, held, filename=program, cpu_seconds=cpu_seconds, wall_seconds=wall_seconds,
                         memory_mb=memory_mb), n_plain, preference)),
    ]
    failed: str | None = None
    for name, step in steps:
        if failed is not None:
            report.results.append(CheckResult(name, False, f"{_SKIPPED}{failed} failed"))
            continue
        result = step()
        report.results.append(result)
        if not result.passed:
            failed = name
    return report


# -- the checks ---------------------------------------------------------------------------------


def _check_static(source: str, program: str) -> CheckResult:
    violations = static_check(source, program)
    if not violations:
        return CheckResult("static", True, "AST allow-list: no violations")
    shown = "; ".join(str(v) for v in violations[:10])
    more = f" (+{len(violations) - 10} more)" if len(violations) > 10 else ""
    count = f"{len(violations)} violation{'s' if len(violations) != 1 else ''}"
    return CheckResult("static", False, f"{count}: {shown}{more}")


def _check_isolated_run(run: IsolatedResult, cpu_seconds: float, memory_mb: int,
                        wall_seconds: float) -> CheckResult:
    # A bad return value is the next check's business: the program itself ran fine.
    if run.ok or run.error_kind == "bad_output":
        limits = f"{cpu_seconds:g} s CPU, {memory_mb} MB, {wall_seconds:g} s wall"
        return CheckResult("isolated_run", True, f"{run.n_calls} call(s) in a separate process "
                                                 f"({limits}) in {run.wall_seconds:.2f} s")
    return CheckResult("isolated_run", False, f"{run.error_kind}: {run.error}")


def _check_output_contract(run: IsolatedResult) -> CheckResult:
    if not run.ok:
        return CheckResult("output_contract", False, run.error)
    if run.batched:
        shape = f"[{run.n_calls}]"
        if run.components:
            return CheckResult("output_contract", True, f"batched: returns (totals {shape}, "
                                                        f"{{{', '.join(run.components)}}} {shape} each) "
                                                        f"for a batch of {run.n_calls}, and for each sample alone")
        return CheckResult("output_contract", True, f"batched: returns totals {shape} (no components) for a "
                                                    f"batch of {run.n_calls}, and for each sample alone")
    if run.components:
        names = ", ".join(run.components)
        return CheckResult("output_contract", True, f"returns (total, {{{names}}})")
    return CheckResult("output_contract", True, "returns a number (no components)")


def _check_batch_consistency(run: IsolatedResult) -> CheckResult:
    if not run.batched:
        return CheckResult("batch_consistency", True, "not run: a single-state program (compute_reward)")
    assert run.single_totals is not None and run.single_components is not None
    problems = []
    for label, batch, alone in [("total", run.totals, run.single_totals)] + [
            (f"component {name!r}", run.components[name], run.single_components[name]) for name in run.components]:
        same = np.isclose(batch, alone, rtol=BATCH_TOLERANCE, atol=BATCH_TOLERANCE, equal_nan=True)
        bad = np.flatnonzero(~same)
        if bad.size:
            i = int(bad[0])
            problems.append(f"{label} differs at {bad.size} of {batch.size} samples (first: sample {i}, "
                            f"{float(batch[i])!r} in the batch vs {float(alone[i])!r} alone)")
    if problems:
        return CheckResult("batch_consistency", False,
                           f"the batch of {run.n_calls} samples gives other results than each sample alone: "
                           + "; ".join(problems) + ". Row i of every result must depend on row i of state "
                           "and action only: reduce per env with axis=-1 (np.linalg.norm(d, axis=-1), "
                           "np.sum(np.square(action), axis=-1)), never over the whole batch")
    return CheckResult("batch_consistency", True, f"the batch of {run.n_calls} equals each sample alone "
                                                  f"(within {BATCH_TOLERANCE:g})")


def _check_finite(run: IsolatedResult) -> CheckResult:
    problems = []
    for label, values in [("total", run.totals)] + [
        (f"component {name!r}", v) for name, v in run.components.items()
    ]:
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            problems.append(f"{label} is nan/inf at {bad.size} of {values.size} samples "
                            f"(first: sample {int(bad[0])}, value {values[bad[0]]})")
    if problems:
        return CheckResult("finite", False, "; ".join(problems))
    return CheckResult("finite", True, f"all values finite over {run.n_calls} samples")


def _check_scale(run: IsolatedResult, max_abs_reward: float) -> CheckResult:
    peak = float(np.max(np.abs(run.totals)))
    if peak > max_abs_reward:
        return CheckResult("scale", False, f"max |total| = {peak:.4g} exceeds {max_abs_reward:g}; "
                                           "rescale the reward")
    if peak == 0.0:
        return CheckResult("scale", False, f"total is exactly 0 at all {run.n_calls} samples")
    return CheckResult("scale", True, f"max |total| = {peak:.4g} (limit {max_abs_reward:g})")


def _check_non_constant(run: IsolatedResult) -> CheckResult:
    spread = float(np.std(run.totals))
    if spread > _CONSTANT_STD:
        return CheckResult("non_constant", True, f"total varies across {run.n_calls} samples "
                                                 f"(std {spread:.4g})")
    for name, values in run.components.items():
        component_spread = float(np.std(values))
        if component_spread > _CONSTANT_STD:
            return CheckResult("non_constant", True, f"total is constant but component {name!r} "
                                                     f"varies (std {component_spread:.4g})")
    return CheckResult("non_constant", False, f"total and every component are constant across "
                                              f"{run.n_calls} samples (total = "
                                              f"{float(run.totals[0]):.6g}); it cannot guide "
                                              "learning")


def _check_time_budget(run: IsolatedResult, per_call_budget_s: float) -> CheckResult:
    median = float(np.median(run.call_seconds))
    slowest = float(np.max(run.call_seconds))
    detail = (f"median {median * 1e3:.3g} ms per call (budget {per_call_budget_s * 1e3:.3g} ms, "
              f"slowest {slowest * 1e3:.3g} ms)")
    ok = median <= per_call_budget_s
    if run.batched:  # call_seconds are the batches of one; the whole batch must fit the budget per sample
        per_sample = run.batch_seconds / max(1, run.n_calls)
        detail += (f"; the batch of {run.n_calls} took {run.batch_seconds * 1e3:.3g} ms "
                   f"({per_sample * 1e6:.3g} µs per sample)")
        ok = ok and per_sample <= per_call_budget_s
    return CheckResult("time_budget", ok, detail)


def _episode_returns(totals: np.ndarray, start: int,
                     preference: Preference) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-episode returns of the reference, the random and the idle episodes, scored from ``totals[start:]``."""
    returns: dict[str, list[float]] = {"reference": [], "random": [], "idle": []}
    i = start
    for label, episodes in (("reference", preference.reference), ("random", preference.random),
                            ("idle", preference.idle)):
        for ep in episodes:
            returns[label].append(float(np.sum(totals[i:i + len(ep)])))
            i += len(ep)
    return np.array(returns["reference"]), np.array(returns["random"]), np.array(returns["idle"])


def _blame(run: IsolatedResult, start: int, preference: Preference, idle: bool) -> tuple[list[str], str]:
    """The components whose own episode return ranks a baseline (random, and with ``idle`` the
    constant action) above the reference episodes', and the words that name them."""
    against = []
    for name, values in run.components.items():
        ref, rnd, still = _episode_returns(values, start, preference)
        best = max(rnd.mean(), still.mean() if idle and still.size else -np.inf)
        if ref.mean() < best:
            against.append((name, float(ref.mean()), float(best)))
    words = ("; the terms that rank a baseline above the reference: " + ", ".join(
        f"{name!r} ({r:.3g} vs {x:.3g})" for name, r, x in against)) if against else ""
    return [name for name, _, _ in against], words


def _check_preference(run: IsolatedResult, start: int, preference: Preference | None) -> CheckResult:
    if preference is None:
        return CheckResult("preference", True, "not run: the task ships no reference policy")
    ref, rnd, _ = _episode_returns(run.totals, start, preference)
    detail = (f"reference policy {ref.mean():.3g} ± {ref.std():.2g} per episode vs random "
              f"{rnd.mean():.3g} ± {rnd.std():.2g} ({len(ref)} + {len(rnd)} episodes)")
    if ref.mean() > rnd.mean():
        return CheckResult("preference", True, detail)
    blamed, words = _blame(run, start, preference, idle=False)
    return CheckResult("preference", False, f"{detail}: the reward prefers random actions to the scripted "
                                            f"solution{words}", blamed=tuple(blamed))


def _check_state_dependence(run: IsolatedResult, n_plain: int, preference: Preference | None) -> CheckResult:
    """``run`` scored the samples, then the preference episodes, each with one fixed action."""
    if not run.ok:  # the same program passed on the real actions: a fixed action broke it
        return CheckResult("state_dependence", False, f"with the action held fixed: {run.error_kind}: {run.error}")
    # As non_constant: over every scored state (a success bonus may hold in the reference episodes
    # only), and a varying component counts too.
    fixed = run.totals
    spreads = {"total": float(np.std(fixed))} | {
        f"component {name!r}": float(np.std(v)) for name, v in run.components.items()}
    what, spread = max(spreads.items(), key=lambda kv: kv[1])
    if spread <= _CONSTANT_STD:
        return CheckResult("state_dependence", False, f"with the action held fixed the total is the same in all "
                                                      f"{fixed.size} sampled states ({float(fixed[0]):.6g}): only the "
                                                      "action moves this reward, so it says nothing about the goal. "
                                                      "Add a term of the state fields the goal is about (a distance "
                                                      "or a speed), and make every bonus condition hold in some "
                                                      "states only")
    detail = f"with the action held fixed the {what} still varies over the samples (std {spread:.4g})"
    if preference is None:
        return CheckResult("state_dependence", True, detail)
    ref, rnd, idle = _episode_returns(run.totals, n_plain, preference)
    margin = _CONSTANT_STD * max(1.0, abs(float(rnd.mean())))
    states = (f"the reference episodes' states score {ref.mean():.3g} per episode vs the random episodes' "
              f"{rnd.mean():.3g}" + (f" and the idle episodes' {idle.mean():.3g}" if idle.size else "") +
              " with the action held fixed")
    if ref.mean() > rnd.mean() + margin and (not idle.size or ref.mean() > idle.mean() + margin):
        return CheckResult("state_dependence", True, f"{detail}; {states}")
    blamed, words = _blame(run, n_plain, preference, idle=True)
    if idle.size and ref.mean() > rnd.mean() + margin:  # random actions lose; keeping still wins
        return CheckResult("state_dependence", False, f"{states}: the reward pays more for the states of "
                                                      "standing still than for the scripted solution's. Reward "
                                                      f"progress toward the goal, not the absence of motion{words}",
                           blamed=tuple(blamed))
    return CheckResult("state_dependence", False, f"{states}: what the reward pays for in the state does not "
                                                  "favour the scripted solution, so only the action terms rank it "
                                                  "first. Reward the state fields the goal is about (e.g. the "
                                                  f"distance the goal asks to close){words}", blamed=tuple(blamed))


# -- samples ------------------------------------------------------------------------------------


def collect_samples(env: Any, schema: StateSchema, *, n: int = 64, seed: int = 0) -> list[Sample]:
    """``n`` pairs ``(state after the step, action)`` from random actions in ``env``.

    Seeds the action space and the first reset with ``seed``; resets when an episode ends.
    """
    env.action_space.seed(seed)
    env.reset(seed=seed)
    samples: list[Sample] = []
    for _ in range(n):
        action = env.action_space.sample()
        _, _, terminated, truncated, _ = env.step(action)
        samples.append((schema.read(env.unwrapped), _frozen_action(action)))
        if terminated or truncated:
            env.reset()
    return samples


def _frozen_action(action: Any) -> np.ndarray:
    frozen = np.atleast_1d(np.array(action, dtype=np.float64))
    frozen.setflags(write=False)
    return frozen


def _episode(env: Any, schema: StateSchema, act: Callable[[], Any], seed: int, max_steps: int) -> list[Sample]:
    """One episode of ``act()`` (through the workbench's one episode loop) as (post-step state, action) pairs."""
    episode: list[Sample] = []

    def on_step(action: Any, reward: Any, info: dict[str, Any]) -> None:
        episode.append((schema.read(env.unwrapped), _frozen_action(action)))

    run_episode(env, lambda obs: np.asarray(act(), dtype=env.action_space.dtype), seed=seed, max_steps=max_steps,
                on_step=on_step)
    return episode


def idle_action(space: Any) -> Any:
    """One constant action that does as little as the space allows: the middle of a Box (0 for a
    symmetric one), the first of a Discrete (Crafter's noop), the first of each MultiDiscrete entry."""
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        low, high = (np.where(np.isfinite(b), b, 0.0) for b in (space.low, space.high))
        return ((low + high) / 2).astype(space.dtype)
    if isinstance(space, spaces.Discrete):
        return space.start
    if isinstance(space, spaces.MultiDiscrete):
        return np.asarray(space.start, dtype=space.dtype) if hasattr(space, "start") else np.zeros_like(space.nvec)
    return space.sample()  # any other space: a sample, held for the whole episode


def collect_preference(env: Any, schema: StateSchema, reference: Callable[[Any], Any] | None, *,
                       episodes: int = 4, seed: int = 0, max_steps: int = 200) -> Preference | None:
    """Episodes of ``reference(env.unwrapped) -> action``, of random actions and of one constant
    action (:func:`idle_action`) from the same seeded starts; None when the task has no reference policy."""
    if reference is None:
        return None
    env.action_space.seed(seed)
    ref = [_episode(env, schema, lambda: reference(env.unwrapped), seed + i, max_steps) for i in range(episodes)]
    rnd = [_episode(env, schema, env.action_space.sample, seed + i, max_steps) for i in range(episodes)]
    still = idle_action(env.action_space)
    idle = [_episode(env, schema, lambda: still, seed + i, max_steps) for i in range(episodes)]
    return Preference(ref, rnd, idle)


def check_inputs(env: Any, profile: Any, *, n: int = 256,
                 seed: int = SAMPLES_SEED) -> tuple[list[Sample], Preference | None]:
    """What every pre-flight on a task uses: ``n`` random-action states, and preference episodes
    when the task's profile (a :class:`workbench.sims.base.TaskProfile`) ships a reference policy."""
    samples = collect_samples(env, profile.schema, n=n, seed=seed)
    return samples, collect_preference(env, profile.schema, profile.reference, seed=seed)
