"""LaRe: latent rewards for episodic tasks (Qu et al., AAAI 2025).

When the only feedback is one return at the end of an episode, an LLM writes an *encoder*
``encode_factors(state, action) -> {name: float}`` (a handful of interpretable latent factors,
checked under the sandbox's rules like any reward code), and a small torch *decoder*
``r̂ = f_ψ(φ(s, a))`` learns per-step rewards from those factors by return decomposition, so
that they add up to the episodic return. The agent (PPO/SAC from the spine) trains on r̂.

Pieces, in data-flow order:

- :class:`EpisodicReward` (per env): withholds the env reward until the episode ends and then
  pays the episode's total; the true per-step reward stays in ``info["reward/env"]``. With a
  factor function it also leaves ``φ(s, a)`` in ``info[FACTORS_KEY]``.
- :func:`verify_encoder` / :func:`synthesize_encoders`: the paper's self-verification — several
  candidates (distinct seeds), each run in the isolated sandbox on real states (contract, shape,
  finiteness, every factor varies), repaired with the exact reason; the verified ones are merged.
  :func:`synthesize_sketch_encoders` (``mode: sketch``, the default for the embedded model): each
  candidate is a reward sketch whose terms are the factors, compiled as an encoder and verified alike.
- :class:`RewardDecoder`: the MLP and the two losses, LaRe's ``(R/T − mean_{t∈S} r̂_t)²`` over
  random subsets S of K steps, and plain RD's ``(R − Σ_t r̂_t)²``.
- :class:`LatentRewardVec` (vector level, through ``BuiltReward.vec_wrapper``): keeps a replay of
  recent whole episodes, refits the decoder every ``update_every`` env steps, relabels every
  reward with r̂, and reports ``reward/lare*`` terms (TensorBoard via the learner's callback).
- :class:`EpisodicSource` (``source: episodic``, the raw-episodic baseline) and
  :class:`LaReSource` (``source: lare``; ``factors: state`` is the RD-on-state baseline).
"""

from __future__ import annotations

import ast
import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
from pydantic import Field, ValidationError
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from reward_synthesis.language.sketch_synthesis import SketchModeOptions
from reward_synthesis.llm.sources import (
    check_llm_source,
    code_blocks,
    extract_code,
    failure_text,
    keep_failed,
    make_client,
    prompt_template,
    resolve_mode,
    space_bounds,
    task_for,
    with_detail,
)
from reward_synthesis.program import EnvRewardSource
from reward_synthesis.safety.checks import CheckReport, CheckResult
from workbench.errors import RewardCodeRejected, RewardRuntimeError, TaskError, WorkbenchError
from workbench.reward import BuiltReward, validate_options
from workbench.state import State

if TYPE_CHECKING:
    from reward_synthesis.llm import LLMClient
    from workbench.state import StateSchema
    from workbench.task import Task

__all__ = ["FACTORS_KEY", "ENCODER_ENTRY", "EpisodicReward", "StateActionFactors", "EncoderFactors",
           "LatentEncoder", "verify_encoder", "EncoderAttempt", "EncoderSynthesis", "encoder_messages",
           "extract_encoder", "synthesize_encoders", "RewardDecoder", "LatentRewardVec", "EpisodicSource",
           "LaReSource"]

# Where EpisodicReward leaves φ(s, a) for the vector-level decoder (popped there, never logged).
FACTORS_KEY = "lare/factors"
ENCODER_ENTRY = "encode_factors"
MAX_ENCODER_CALL_S = 2e-3  # per call, like a reward program's budget: it runs every env step
_CONSTANT_STD = 1e-9

# Appended to an encoder so the sandbox's compute_reward contract checks it: a dict return comes
# back as components (str keys, scalar floats, the same names every call). Plain, checked code.
_SHIM = f'''

def compute_reward(state, action):
    factors = {ENCODER_ENTRY}(state, action)
    if isinstance(factors, (list, tuple)):
        raise TypeError("{ENCODER_ENTRY} returned a list or tuple; return a dict such as "
                        "{{'progress': 1.0, 'effort': 0.2}} so every factor has a name")
    if not isinstance(factors, dict):
        raise TypeError("{ENCODER_ENTRY} must return a dict that maps factor names to floats")
    return 0.0, factors
'''


def _shimmed(source: str) -> str:
    return source.rstrip() + "\n" + _SHIM


# ============================================================================ episodic wrapper


FactorFn = Callable[[Any, np.ndarray, gym.Env], np.ndarray]


class EpisodicReward(gym.Wrapper):
    """Pays 0 on every step and the episode's total on its last step (``withhold=False`` passes
    the per-step reward through). ``info["reward/episodic"]`` is what was paid; TaskWrapper's
    ``info["reward/env"]`` keeps the true per-step reward for logging and evaluation.

    ``factors(obs_before, action, env)`` -> φ(s, a), left in ``info[FACTORS_KEY]`` (computed
    inside the env, before a vector env's auto-reset, so a terminal step has its own factors).
    """

    def __init__(self, env: gym.Env, *, withhold: bool = True, factors: FactorFn | None = None):
        super().__init__(env)
        self.withhold = withhold
        self.factors = factors
        self._return = 0.0
        self._obs: Any = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._return = 0.0
        self._obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        if self.factors is not None:
            info[FACTORS_KEY] = self.factors(self._obs, np.asarray(action), self.env)
        self._obs = obs
        if self.withhold:
            reward = self._return if (terminated or truncated) else 0.0
        info["reward/episodic"] = float(reward)
        return obs, reward, terminated, truncated, info


class StateActionFactors:
    """The RD-on-state baseline's φ: the flattened observation before the step and the action."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space, self.action_space = observation_space, action_space
        self.names = ([f"obs{i}" for i in range(gym.spaces.flatdim(observation_space))]
                      + [f"act{i}" for i in range(gym.spaces.flatdim(action_space))])

    def __call__(self, obs: Any, action: np.ndarray, env: gym.Env) -> np.ndarray:
        return np.concatenate([gym.spaces.flatten(self.observation_space, obs),
                               gym.spaces.flatten(self.action_space, action)]).astype(np.float32)


# ============================================================================ the encoder


class LatentEncoder:
    """One or more sandbox-accepted encoder files, concatenated: ``(state, action) -> φ``.

    ``names`` are the verified factor names per file (the verification run's order); with more
    than one file they are prefixed ``c<k>.``. Picklable (a subprocess env reloads the code).
    """

    def __init__(self, sources: Sequence[tuple[str, str]], names: Sequence[Sequence[str]]):
        if not sources or len(sources) != len(names):
            raise ValueError("an encoder needs at least one source and the factor names of each")
        self.sources = [(str(f), str(t)) for f, t in sources]
        self.per_file = [list(n) for n in names]
        multi = len(self.sources) > 1
        self.names = [f"c{k}.{n}" if multi else n for k, ns in enumerate(self.per_file) for n in ns]
        self._load()

    def _load(self) -> None:
        from reward_synthesis.safety.sandbox import load_program

        self._fns = [load_program(_shimmed(text), filename=filename) for filename, text in self.sources]

    def __getstate__(self) -> dict[str, Any]:
        return {"sources": self.sources, "per_file": self.per_file, "names": self.names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load()

    def __call__(self, state: State, action: np.ndarray) -> np.ndarray:
        from reward_synthesis.safety.guard import DEFAULT_TIMEOUT_S, check_finite, guarded_call
        from reward_synthesis.safety.sandbox import describe_exception, normalize_output

        out: list[float] = []
        for fn, (filename, text), names in zip(self._fns, self.sources, self.per_file):
            describe = lambda filename=filename: f"LaRe encoder {filename}"  # noqa: E731
            try:  # the same run-time guard as a reward program: bounded time, finite factors
                value = guarded_call(fn, (state, action), timeout_s=DEFAULT_TIMEOUT_S, describe=describe)
                total, factors = normalize_output(value)
            except RewardRuntimeError:
                raise
            except Exception as err:  # untrusted code: say where, never a bare traceback
                raise RewardRuntimeError(f"LaRe encoder raised during training: "
                                         f"{describe_exception(err, filename, _shimmed(text))}") from None
            check_finite(total, factors, describe)
            if list(factors) != names:
                raise RewardRuntimeError(f"LaRe encoder {filename} returned factors {list(factors)}, "
                                         f"verified with {names}")
            out.extend(factors.values())
        return np.asarray(out, dtype=np.float32)


class EncoderFactors:
    """φ for ``factors: llm``: the encoder on the StateView after the step and the action."""

    def __init__(self, encoder: LatentEncoder, schema: StateSchema):
        self.encoder, self.schema = encoder, schema
        self.names = encoder.names

    def __call__(self, obs: Any, action: np.ndarray, env: gym.Env) -> np.ndarray:
        frozen = np.atleast_1d(np.array(action, dtype=np.float64))
        frozen.setflags(write=False)
        return self.encoder(self.schema.read(env.unwrapped), frozen)


def _defines_entry(source: str) -> str | None:
    """None when ``encode_factors(state, action)`` is defined at top level (or the code does not
    parse, which the static check words better), else why not."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None  # the static check reports it with file, line and column
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == ENCODER_ENTRY:
            if len(stmt.args.args) != 2:
                return f"{ENCODER_ENTRY} must take exactly two parameters (state, action)"
            return None
    return f"the code must define {ENCODER_ENTRY}(state, action) at top level"


def verify_encoder(source: str, samples: Sequence[tuple[State, np.ndarray]], *, filename: str = "<encoder>",
                   max_factors: int = 16, per_call_budget_s: float = MAX_ENCODER_CALL_S,
                   cpu_seconds: float = 10, wall_seconds: float = 30) -> tuple[CheckReport, list[str]]:
    """LaRe's self-verification of one encoder on real ``(state after step, action)`` samples.

    Checks in order (the first failure skips the rest): ``entry_point``, ``static`` (the sandbox
    allow-list), ``isolated_run`` (a resource-limited child process), ``output_contract`` (a dict
    of scalar floats, same names every call), ``factor_count``, ``finite``, ``varies`` (each factor
    changes across states), ``time_budget``. Returns the report and the factor names.
    """
    from reward_synthesis.safety.sandbox import run_isolated, static_check

    report = CheckReport(filename, hashlib.sha256(source.encode("utf-8", "replace")).hexdigest())
    names: list[str] = []
    failed: list[str] = []

    def add(name: str, passed: bool, detail: str) -> bool:
        if failed:
            report.results.append(CheckResult(name, False, f"skipped: {failed[0]} failed"))
            return False
        report.results.append(CheckResult(name, passed, detail))
        if not passed:
            failed.append(name)
        return passed

    why = _defines_entry(source)
    add("entry_point", why is None, why or f"defines {ENCODER_ENTRY}(state, action)")
    run = None
    if not failed:
        program = _shimmed(source)
        violations = static_check(program, filename)
        add("static", not violations, "\n".join(str(v) for v in violations) or "allow-list passed")
        if not failed:
            run = run_isolated(program, samples, filename=filename, cpu_seconds=cpu_seconds,
                               wall_seconds=wall_seconds)
    if run is None:
        add("isolated_run", False, "")
    elif run.ok:
        add("isolated_run", True, f"{run.n_calls} calls in {run.wall_seconds:.2f} s")
    elif run.error_kind == "bad_output":
        add("isolated_run", True, f"{run.n_calls} calls before the failure")
    else:
        add("isolated_run", False, f"{run.error_kind}: {run.error}")
    ok_run = run is not None and run.ok
    if run is not None and run.error_kind == "bad_output":
        add("output_contract", False, run.error.replace("compute_reward", ENCODER_ENTRY)
            .replace("a number, or a tuple (total, components) with components a dict[str, float]",
                     "a dict that maps factor names to floats"))
    else:
        add("output_contract", ok_run, f"dict of {len(run.components)} factors" if ok_run else "")
    if ok_run:
        names = list(run.components)
    add("factor_count", 1 <= len(names) <= max_factors,
        f"{len(names)} factors ({', '.join(names)})" + ("" if 1 <= len(names) <= max_factors
                                                        else f"; return between 1 and {max_factors}"))
    values = {n: np.asarray(run.components[n], dtype=np.float64) for n in names} if ok_run else {}
    bad = [(n, int(np.flatnonzero(~np.isfinite(v))[0])) for n, v in values.items() if not np.all(np.isfinite(v))]
    add("finite", not bad, "; ".join(f"factor {n!r} is {values[n][i]} at sample {i}" for n, i in bad)
        or "all factors finite")
    flat = [n for n, v in values.items() if float(np.std(v)) <= _CONSTANT_STD]
    add("varies", not flat,
        f"factors {flat} are constant over {run.n_calls if run else 0} real states (a constant factor "
        "carries no information; read the state fields that change)" if flat
        else "every factor varies across states")
    per_call = float(np.median(run.call_seconds)) if ok_run and run.n_calls else 0.0
    add("time_budget", per_call <= per_call_budget_s,
        f"median {per_call * 1e6:.0f} µs per call (budget {per_call_budget_s * 1e6:.0f} µs)")
    return report, names


def _reasons(report: CheckReport) -> str:
    return "\n".join(f"- {r}" for r in report.reasons) or "the checks failed"


# ============================================================================ LLM synthesis


@dataclass
class EncoderAttempt:
    """One reply for one candidate and the verdict on it."""

    candidate: int
    attempt: int
    seed: int
    reply: str
    code: str | None
    accepted: bool
    reason: str
    factors: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    sha256: str | None = None
    latency_s: float = 0.0
    cached: bool = False
    sketch: dict[str, Any] | None = None  # mode sketch: the reward sketch the encoder was compiled from


@dataclass
class EncoderSynthesis:
    goal: str
    model: str
    attempts: list[EncoderAttempt] = field(default_factory=list)

    @property
    def verified(self) -> list[EncoderAttempt]:
        """The accepted attempt of each candidate that has one, in candidate order."""
        return [a for a in self.attempts if a.accepted]

    def to_dict(self) -> dict[str, Any]:
        return {"goal": self.goal, "model": self.model, "verified": len(self.verified),
                "attempts": [asdict(a) for a in self.attempts]}


def encoder_messages(task: Task, goal: str, *, max_factors: int) -> list[dict[str, str]]:
    env = task.make_env()
    try:
        shape, low, high = space_bounds(env.action_space)
    finally:
        env.close()
    user = prompt_template("lare_user").format(
        env_id=task.spec.sim.env_id, state_description=task.profile.schema.describe(), action_shape=shape,
        action_low=low, action_high=high, success=task.success_doc(), goal=goal)
    return [{"role": "system", "content": prompt_template("lare_system").format(max_factors=max_factors)},
            {"role": "user", "content": user}]


def extract_encoder(reply: str) -> str | None:
    """The fenced block that defines ``encode_factors``, else whatever code the reply has."""
    for _, body in code_blocks(reply):
        if f"def {ENCODER_ENTRY}" in body:
            return body.strip() + "\n"
    return extract_code(reply)


def synthesize_encoders(task: Task, goal: str, client: LLMClient, samples: Sequence[tuple[State, np.ndarray]], *,
                        candidates: int = 3, attempts: int = 3, seed: int = 0, max_factors: int = 8,
                        on_attempt: Callable[[EncoderAttempt], None] | None = None) -> EncoderSynthesis:
    """``candidates`` independent encoders (request seeds ``seed + 1000·c + i``), each repaired up
    to ``attempts`` times with the verifier's exact reason. Every reply and verdict is kept."""
    base = encoder_messages(task, goal, max_factors=max_factors)
    result = EncoderSynthesis(goal=goal, model=str(client.model))
    for c in range(candidates):
        conversation = list(base)
        for i in range(attempts):
            request_seed = seed + 1000 * c + i
            reply = client.chat(conversation, seed=request_seed)
            code = extract_encoder(reply.text)
            if code is None:
                attempt = EncoderAttempt(c, i, request_seed, reply.text, None, False,
                                         f"the reply has no code: put {ENCODER_ENTRY}(state, action) in a "
                                         "```python block", latency_s=reply.latency_s, cached=reply.cached)
            else:
                report, names = verify_encoder(code, samples, filename=f"encoder_c{c}_a{i}.py",
                                               max_factors=max_factors)
                attempt = EncoderAttempt(c, i, request_seed, reply.text, code, report.accepted,
                                         "" if report.accepted else _reasons(report), names if report.accepted else [],
                                         report.to_dict(), report.sha256, reply.latency_s, reply.cached)
            result.attempts.append(attempt)
            if on_attempt is not None:
                on_attempt(attempt)
            if attempt.accepted:
                break
            conversation = conversation + [
                {"role": "assistant", "content": reply.text},
                {"role": "user", "content": prompt_template("lare_repair").format(reason=attempt.reason)}]
    return result


def synthesize_sketch_encoders(task: Task, goal: str, client: LLMClient, samples: Sequence[tuple[State, np.ndarray]],
                               *, candidates: int = 3, attempts: int = 3, seed: int = 0, max_factors: int = 8,
                               top_fields: int | None = None, on_attempt: Callable[[EncoderAttempt], None] | None = None
                               ) -> EncoderSynthesis:
    """Mode sketch: each candidate's encoder is a reward sketch whose terms are the latent factors.

    Every reply is a schema-constrained sketch (:func:`~reward_synthesis.language.sketch_synthesis.
    synthesize_sketch`, one fresh request each: validated, compiled and pre-flighted as a reward),
    compiled as an encoder (``compile_sketch(form="encoder")``) and verified like a written one
    (:func:`verify_encoder`: every factor varies, in budget). Request seeds ``seed + 1000·c + i``.
    So a small model's encoders no longer depend on free code it cannot write."""
    from reward_synthesis.language.sketch_synthesis import TOP_FIELDS, synthesize_sketch
    from reward_synthesis.language.sketches import compile_sketch

    result = EncoderSynthesis(goal=goal, model=str(client.model))
    env = task.make_env()
    try:
        space = env.action_space
    finally:
        env.close()
    for c in range(candidates):
        for i in range(attempts):
            request_seed = seed + 1000 * c + i
            synthesis = synthesize_sketch(task, goal, client, samples, attempts=1, seed=request_seed,
                                          top_fields=TOP_FIELDS if top_fields is None else top_fields, repairs=0)
            sketch_attempt = synthesis.attempts[0]
            if sketch_attempt.sketch is not None:  # a reward's gain: the decoder weighs the factors itself
                sketch_attempt.sketch.pop("gain", None)
            common = {"latency_s": sketch_attempt.latency_s, "cached": sketch_attempt.cached,
                      "sketch": sketch_attempt.sketch}
            if not sketch_attempt.accepted or sketch_attempt.sketch is None:
                attempt = EncoderAttempt(c, i, request_seed, sketch_attempt.reply, None, False,
                                         sketch_attempt.reason or "the sketch was rejected", **common)
            else:
                code = compile_sketch(sketch_attempt.sketch, task.profile.schema, action_space=space, form="encoder")
                report, names = verify_encoder(code, samples, filename=f"encoder_c{c}_a{i}.py",
                                               max_factors=max_factors)
                attempt = EncoderAttempt(c, i, request_seed, sketch_attempt.reply, code, report.accepted,
                                         "" if report.accepted else _reasons(report), names if report.accepted else [],
                                         report.to_dict(), report.sha256, **common)
            result.attempts.append(attempt)
            if on_attempt is not None:
                on_attempt(attempt)
            if attempt.accepted:
                break
    return result


# ============================================================================ the decoder


class RewardDecoder:
    """``r̂ = f_ψ(φ)``: an MLP on standardized factors, fit by return decomposition.

    ``loss="lare"``: ``(R/T − (1/K)·Σ_{t∈S} r̂_t)²`` with S ``subsequence`` steps drawn from the
    episode (the paper's estimator; cost independent of T). ``loss="rd"``: ``(R − Σ_t r̂_t)²``
    over whole episodes, computed as ``((R − Σ_t r̂_t)/T)²`` — the same minimizer, on a scale a
    fixed learning rate can take for 1000-step episodes.
    """

    def __init__(self, dim: int, *, hidden: Sequence[int] = (64, 64), lr: float = 1e-3,
                 loss: Literal["lare", "rd"] = "lare", subsequence: int = 64, seed: int = 0):
        import torch

        self.dim, self.loss_kind, self.subsequence = dim, loss, subsequence
        self._gen = torch.Generator().manual_seed(seed)
        self._rng = np.random.default_rng(seed)
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the initial weights, without disturbing the agent's stream
        layers: list[Any] = []
        width = dim
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
            width = h
        layers.append(torch.nn.Linear(width, 1))
        self.net = torch.nn.Sequential(*layers)
        torch.random.set_rng_state(torch_state)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.mean = np.zeros(dim, dtype=np.float32)
        self.std = np.ones(dim, dtype=np.float32)
        self.fitted = 0  # number of fit() calls

    def _norm(self, x: np.ndarray) -> Any:
        import torch

        return torch.as_tensor((np.asarray(x, dtype=np.float32) - self.mean) / self.std)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``[N, D]`` factors -> ``[N]`` per-step rewards."""
        import torch

        with torch.no_grad():
            return self.net(self._norm(x)).squeeze(-1).numpy().astype(np.float64)

    def fit(self, episodes: Sequence[tuple[np.ndarray, float]], *, steps: int = 50, batch: int = 32) -> float:
        """``steps`` gradient steps on batches of ``batch`` episodes ``(φ [T, D], R)``; the mean loss.
        The factor standardization is refreshed from these episodes first."""
        import torch

        if not episodes:
            raise ValueError("the decoder needs at least one episode")
        stacked = np.concatenate([x for x, _ in episodes])
        self.mean = stacked.mean(0).astype(np.float32)
        self.std = np.maximum(stacked.std(0), 1e-6).astype(np.float32)
        losses = []
        for _ in range(steps):
            pick = self._rng.integers(0, len(episodes), size=min(batch, len(episodes)))
            chosen = [episodes[i] for i in pick]
            lengths = np.array([len(x) for x, _ in chosen], dtype=np.float32)
            returns = torch.as_tensor(np.array([r for _, r in chosen], dtype=np.float32))
            if self.loss_kind == "lare":
                idx = [self._rng.integers(0, len(x), size=self.subsequence) for x, _ in chosen]
                x = self._norm(np.stack([ep[i] for (ep, _), i in zip(chosen, idx)]))  # [B, K, D]
                pred = self.net(x).squeeze(-1).mean(1)
                loss = ((returns / torch.as_tensor(lengths) - pred) ** 2).mean()
            else:
                t_max = int(lengths.max())
                x = np.zeros((len(chosen), t_max, self.dim), dtype=np.float32)
                mask = np.zeros((len(chosen), t_max), dtype=np.float32)
                for b, (ep, _) in enumerate(chosen):
                    x[b, :len(ep)], mask[b, :len(ep)] = ep, 1.0
                mask_t = torch.as_tensor(mask)
                x_t = self._norm(x.reshape(-1, self.dim)).reshape(len(chosen), t_max, self.dim)
                total = (self.net(x_t).squeeze(-1) * mask_t).sum(1)
                loss = (((returns - total) / torch.as_tensor(lengths)) ** 2).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
        self.fitted += 1
        return float(np.mean(losses))

    def attributions(self, x: np.ndarray) -> np.ndarray:
        """Mean |gradient × input| per factor (on standardized factors): how much each factor moves
        r̂ (absolute, since signed terms of a centred factor average out to zero)."""
        inp = self._norm(x).requires_grad_(True)
        self.net(inp).sum().backward()
        self.net.zero_grad(set_to_none=True)
        return (inp.grad * inp).abs().mean(0).detach().numpy().astype(np.float64)

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "mean": self.mean, "std": self.std,
                "fitted": self.fitted, "dim": self.dim, "loss": self.loss_kind}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["dim"]) != self.dim:
            raise ValueError(f"decoder state has {state['dim']} factors, this decoder {self.dim}")
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.mean, self.std = np.asarray(state["mean"]), np.asarray(state["std"])
        self.fitted = int(state["fitted"])


# ============================================================================ relabelling


STATE_FILE = "decoder.pt"


class LatentRewardVec(VecEnvWrapper):
    """Relabels a vector env's rewards with the decoder's r̂, training it alongside the agent.

    Completed episodes ``(φ [T, D], R)`` (R: the sum of what the env paid, i.e. the episodic
    return) go into a replay of the ``replay_episodes`` most recent; every ``update_every`` env
    steps, once ``warmup_episodes`` are in, the decoder takes ``updates`` gradient steps. Until
    its first fit the env's own (episodic) reward passes through. Every info gets ``reward/lare``
    (r̂) and, after the first fit, ``reward/lare_loss``, ``reward/lare_return`` (mean episodic
    return of the last 20 episodes), ``reward/lare_updates`` and ``reward/lare_attr/<factor>``.

    The decoder is part of every training checkpoint (:class:`workbench.learner.CheckpointState`):
    saved beside the model, restored on resume, so policy and decoder always match.
    """

    def __init__(self, venv: VecEnv, decoder: RewardDecoder, names: Sequence[str], *, update_every: int = 1000,
                 updates: int = 50, batch_episodes: int = 32, replay_episodes: int = 200,
                 warmup_episodes: int = 4):
        super().__init__(venv)
        if len(names) != decoder.dim:
            raise ValueError(f"{len(names)} factor names for a decoder of {decoder.dim} inputs")
        self.decoder, self.names = decoder, list(names)
        self.update_every, self.updates, self.batch_episodes = update_every, updates, batch_episodes
        self.warmup_episodes = warmup_episodes
        self.replay: deque[tuple[np.ndarray, float]] = deque(maxlen=replay_episodes)
        self.steps = 0
        self._next_update = update_every
        self._x: list[list[np.ndarray]] = [[] for _ in range(self.num_envs)]
        self._r = np.zeros(self.num_envs)
        self._returns: deque[float] = deque(maxlen=20)
        self.metrics: dict[str, float] = {}
        self._attr_keys = [f"reward/lare_attr/{n}" for n in self.names]

    def reset(self) -> Any:
        self._x = [[] for _ in range(self.num_envs)]
        self._r[:] = 0.0
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        try:
            x = np.stack([info.pop(FACTORS_KEY) for info in infos]).astype(np.float32)
        except KeyError:
            raise RuntimeError(f"LatentRewardVec needs {FACTORS_KEY!r} in every info: wrap each env in "
                               "EpisodicReward(..., factors=...)") from None
        self._r += rewards
        for i in range(self.num_envs):
            self._x[i].append(x[i])
            if dones[i]:
                self.replay.append((np.stack(self._x[i]), float(self._r[i])))
                self._returns.append(float(self._r[i]))
                self._x[i], self._r[i] = [], 0.0
        self.steps += self.num_envs
        if self.steps >= self._next_update:
            self._next_update = self.steps + self.update_every
            if len(self.replay) >= self.warmup_episodes:
                self._update()
        relabelled = self.decoder.predict(x) if self.decoder.fitted else np.asarray(rewards, dtype=np.float64)
        for i, info in enumerate(infos):
            info["reward/lare"] = float(relabelled[i])
            info.update(self.metrics)
        return obs, relabelled.astype(np.float32), dones, infos

    def _update(self) -> None:
        episodes = list(self.replay)
        loss = self.decoder.fit(episodes, steps=self.updates, batch=self.batch_episodes)
        recent = np.concatenate([x for x, _ in episodes[-8:]])
        attr = self.decoder.attributions(recent[-4096:])
        self.metrics = {"reward/lare_loss": loss, "reward/lare_updates": float(self.decoder.fitted),
                        "reward/lare_return": float(np.mean(self._returns)) if self._returns else 0.0,
                        **{k: float(v) for k, v in zip(self._attr_keys, attr)}}

    def save_checkpoint(self, directory: Path) -> None:
        self._save(directory / STATE_FILE)

    def load_checkpoint(self, directory: Path) -> None:
        if (directory / STATE_FILE).is_file():  # absent in checkpoints from before the first fit
            self._load(directory / STATE_FILE)

    def _save(self, path: Path) -> None:
        import torch

        from workbench.runs import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({"decoder": self.decoder.state_dict(), "steps": self.steps, "names": self.names,
                        "metrics": self.metrics}, tmp)

    def _load(self, path: Path) -> None:
        import torch

        data = torch.load(path, weights_only=False)  # our own run file, like SB3's checkpoints
        if list(data["names"]) != self.names:
            raise RuntimeError(f"{path}: decoder factors {data['names']} differ from the encoder's {self.names}")
        self.decoder.load_state_dict(data["decoder"])
        self.steps = int(data["steps"])
        self._next_update = self.steps + self.update_every
        self.metrics = dict(data["metrics"])


# ============================================================================ reward sources


class EpisodicSource(EnvRewardSource):
    """``reward: {source: episodic}`` — the raw-episodic baseline: the env's return, paid once at
    the end of each episode (0 on every other step)."""

    @classmethod
    def build(cls, spec: Any, profile: Any, env: gym.Env) -> BuiltReward:
        return BuiltReward(None, f"the env's return ({spec.sim.env_id}) paid at episode end only",
                           env_wrapper=EpisodicReward)


def _encoder_paths(encoder: str | list[str] | None) -> list[str]:
    return [] if encoder is None else [encoder] if isinstance(encoder, str) else list(encoder)


class LaReSource:
    """``reward: {source: lare, ...}`` — LaRe latent rewards (see the module docstring)."""

    class Options(SketchModeOptions):  # mode: the LLM writes encoder code, or sketches whose terms are factors
        episodic: bool = True  # withhold the env reward until the episode ends
        factors: Literal["llm", "state"] = "llm"  # state: RD on the raw observation + action
        encoder: str | list[str] | None = None  # hand-written encoder file(s); none: the LLM writes them
        candidates: int = Field(3, ge=1, le=16)
        attempts: int = Field(3, ge=1, le=20)
        max_factors: int = Field(8, ge=1, le=64)
        loss: Literal["lare", "rd"] = "lare"
        subsequence: int = Field(64, ge=1)
        hidden: list[int] = [64, 64]
        lr: float = Field(1e-3, gt=0)
        update_every: int = Field(1000, ge=1)
        updates: int = Field(50, ge=1)
        batch_episodes: int = Field(32, ge=1)
        replay_episodes: int = Field(200, ge=1)
        warmup_episodes: int = Field(4, ge=1)

    @classmethod
    def validate_spec(cls, spec: Any, *, file: str) -> None:
        from reward_synthesis.llm import LLMConfig

        opts = validate_options(cls.Options, spec, file)
        for path in _encoder_paths(opts.encoder):
            full = Path(path) if Path(path).is_absolute() else spec.base_dir / path
            if not full.is_file():
                raise TaskError(f"encoder file not found: {full}", file=file, key="reward.encoder",
                                hint="give a .py file defining encode_factors(state, action) -> dict, relative "
                                     "to the task file, or leave encoder out to have the LLM write it")
        if opts.factors == "llm" and not opts.encoder and not (opts.goal or spec.goal):
            raise TaskError("lare needs a goal in words for the LLM to write the encoder", file=file,
                            key="reward.goal", hint="set `goal:` at the top of the task, `reward.goal:`, or "
                                                    "`reward.encoder: path.py`")
        try:
            LLMConfig.model_validate(opts.llm)
        except ValidationError as err:
            from workbench.spec import pydantic_error_to_task_error

            raise pydantic_error_to_task_error(err, file=file, prefix="reward.llm.", model=LLMConfig) from None

    @classmethod
    def check(cls, spec: Any, profile: Any, env: gym.Env) -> BuiltReward:
        """``workbench validate``: with hand-written encoders (or ``factors: state``) the reward is
        built as for a run (no LLM); else the encoder prompt and the endpoint, without synthesizing."""
        opts = cls.Options.model_validate(spec.reward.options)
        if opts.factors == "state" or _encoder_paths(opts.encoder):
            return cls.build(spec, profile, env)
        task = task_for(spec, profile, "checking")
        goal = opts.goal or spec.goal
        extra = f", {opts.candidates} encoder candidate{'s' if opts.candidates != 1 else ''}"
        if resolve_mode(opts.mode, opts.llm) == "sketch":
            from reward_synthesis.language.sketch_synthesis import SCHEMA_NAME, sketch_request
            from reward_synthesis.safety.checks import SAMPLES_SEED, collect_samples

            samples = collect_samples(env, profile.schema, n=opts.samples, seed=SAMPLES_SEED)  # as the run's
            request = sketch_request(task, goal, top_fields=opts.top_fields, samples=samples)
            return check_llm_source("lare", spec, opts.llm, request.messages, offline=opts.offline, seed=opts.seed,
                                    extra=extra + ", mode sketch", json_schema=request.schema,
                                    schema_name=SCHEMA_NAME)
        messages = encoder_messages(task, goal, max_factors=opts.max_factors)
        return check_llm_source("lare", spec, opts.llm, messages, offline=opts.offline, seed=opts.seed, extra=extra)

    @classmethod
    def build(cls, spec: Any, profile: Any, env: gym.Env) -> BuiltReward:
        from reward_synthesis.safety.checks import SAMPLES_SEED, collect_samples

        opts = cls.Options.model_validate(spec.reward.options)
        files: dict[str, str] = {}
        record: dict[str, Any] = {"factors": opts.factors, "loss": opts.loss, "episodic": opts.episodic}
        resolved = spec.reward.model_dump(mode="json")
        if opts.factors == "state":
            factor_fn: StateActionFactors | EncoderFactors = StateActionFactors(env.observation_space,
                                                                                env.action_space)
            what = f"RD on the raw observation + action ({len(factor_fn.names)} inputs)"
            resolved.pop("encoder", None)  # not used, and its path would not resolve from the run dir
        else:
            samples = collect_samples(env, profile.schema, n=opts.samples, seed=SAMPLES_SEED)
            sources = cls._encoders(spec, profile, opts, samples, files, record)
            reports = [verify_encoder(text, samples, filename=name, max_factors=opts.max_factors)
                       for name, text in sources]
            checks = {name: report.to_dict() for (name, _), (report, _) in zip(sources, reports)}
            files["reward/encoder_checks.json"] = json.dumps(checks, indent=2)
            for (name, _), (report, _) in zip(sources, reports):
                if not report.accepted:
                    raise RewardCodeRejected(f"LaRe encoder {name} failed verification:\n{report.render()}", report)
            encoder = LatentEncoder(sources, [n for _, n in reports])
            factor_fn = EncoderFactors(encoder, profile.schema)
            run_paths = []
            for k, (_, text) in enumerate(sources):
                files[f"reward/encoder_{k}.py"] = text
                run_paths.append(f"reward/encoder_{k}.py")
            resolved["encoder"] = run_paths  # relative to the run's task.yaml: rebuilt without an LLM
            record["checks"] = checks
            what = f"{len(encoder.names)} latent factors ({', '.join(encoder.names)})"
        record["factor_names"] = list(factor_fn.names)
        names = list(factor_fn.names)

        def env_wrapper(e: gym.Env, withhold: bool = opts.episodic, fn: Any = factor_fn) -> gym.Env:
            return EpisodicReward(e, withhold=withhold, factors=fn)

        def vec_wrapper(venv: VecEnv) -> VecEnv:
            decoder = RewardDecoder(len(names), hidden=opts.hidden, lr=opts.lr, loss=opts.loss,
                                    subsequence=opts.subsequence, seed=spec.training.seed)
            return LatentRewardVec(venv, decoder, names, update_every=opts.update_every, updates=opts.updates,
                                   batch_episodes=opts.batch_episodes, replay_episodes=opts.replay_episodes,
                                   warmup_episodes=opts.warmup_episodes)

        paid = "at episode end only" if opts.episodic else "every step"
        return BuiltReward(None, f"LaRe ({opts.loss} loss) decoder on {what}; env return paid {paid}",
                           files=files, record=record, resolved=resolved, env_wrapper=env_wrapper,
                           vec_wrapper=vec_wrapper)

    @classmethod
    def _encoders(cls, spec: Any, profile: Any, opts: LaReSource.Options, samples: list[tuple[State, np.ndarray]],
                  files: dict[str, str], record: dict[str, Any]) -> list[tuple[str, str]]:
        """``(filename, text)`` of the encoders: the task's files, else the LLM's verified candidates."""
        paths = _encoder_paths(opts.encoder)
        if paths:
            out = []
            for p in paths:
                full = Path(p) if Path(p).is_absolute() else spec.base_dir / p
                out.append((str(full), full.read_text(encoding="utf-8", errors="replace")))
            record["encoder_source"] = "file"
            return out
        import tempfile

        from workbench.registry import SIMS
        from workbench.runs import default_runs_root
        from workbench.task import Task

        goal = opts.goal or spec.goal
        task = Task(spec, SIMS.get(spec.sim.name)(), profile, BuiltReward(None, "synthesizing"))
        attempts: list[EncoderAttempt] = []
        with tempfile.TemporaryDirectory() as tmp:
            transcript = Path(tmp) / "transcript.jsonl"
            client = make_client(opts.llm, transcript=transcript, offline=opts.offline)
            mode = resolve_mode(opts.mode, opts.llm)
            try:
                if mode == "sketch":
                    result = synthesize_sketch_encoders(task, goal, client, samples, candidates=opts.candidates,
                                                        attempts=opts.attempts, seed=opts.seed,
                                                        max_factors=opts.max_factors, top_fields=opts.top_fields,
                                                        on_attempt=attempts.append)
                else:
                    result = synthesize_encoders(task, goal, client, samples, candidates=opts.candidates,
                                                 attempts=opts.attempts, seed=opts.seed, max_factors=opts.max_factors,
                                                 on_attempt=attempts.append)
            except (WorkbenchError, KeyboardInterrupt) as err:  # the LLM failed: keep what there is
                partial = {"goal": goal, "error": failure_text(err), "attempts": [asdict(a) for a in attempts]}
                kept = keep_failed(spec.name, "lare_failed", {
                    "llm/lare_transcript.jsonl": transcript.read_text() if transcript.is_file() else "",
                    "reward/lare_synthesis.json": json.dumps(partial, indent=2)})
                raise with_detail(err, f"replies so far and the LLM transcript: {kept}") from None
            finally:
                client.close()
            files["llm/lare_transcript.jsonl"] = transcript.read_text() if transcript.is_file() else ""
        files["reward/lare_synthesis.json"] = json.dumps(result.to_dict(), indent=2)
        record.update(encoder_source="llm", goal=goal, llm_model=result.model, candidates=opts.candidates,
                      verified=len(result.verified), mode=mode)
        for a in result.verified:  # mode sketch: the sketch each encoder was compiled from, to read or edit
            if a.sketch is not None:
                files[f"reward/encoder_c{a.candidate}.sketch.json"] = json.dumps(a.sketch, indent=2) + "\n"
        if not result.verified:
            from workbench.runs import atomic_write

            kept = default_runs_root() / "synth" / f"{spec.name}__lare_failed__{time.strftime('%Y%m%d-%H%M%S')}"
            for relative, text in files.items():
                atomic_write(kept / relative, text)
            lines = "\n".join(f"  candidate {a.candidate} attempt {a.attempt}: {a.reason.splitlines()[0]}"
                              for a in result.attempts)
            raise RewardCodeRejected(
                f"lare: none of {opts.candidates} encoder candidates from {result.model} passed verification:\n"
                f"{lines}\n  replies and verdicts: {kept}\n  fix: raise reward.attempts / reward.candidates, "
                "point reward.llm.base_url at a stronger model, or write the encoder yourself "
                "(reward.encoder: path.py)")
        return [(f"encoder_c{a.candidate}.py", a.code or "") for a in result.verified]
