"""PPO and SAC from stable-baselines3 behind the Learner protocol — configured, not rewritten.

Hyperparameters are the SB3 constructor's own keyword arguments. Checkpoints (model, replay
buffer, VecNormalize statistics) are written to a fresh directory and only then pointed to by
``latest.json``, so a run killed at any moment resumes from its last complete checkpoint.
"""

from __future__ import annotations

import inspect
import json
import math
import pickle
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor, ResultsWriter
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper, VecMonitor, VecNormalize

from workbench.errors import TaskError, WorkbenchError
from workbench.learner import POLICY_FILE, CheckpointState, FitHooks, TrainingInterrupted, TrainingStopped
from workbench.runs import atomic_path, atomic_write, write_json

if TYPE_CHECKING:
    from workbench.runs import Run
    from workbench.spec import TaskSpec

__all__ = ["SB3Learner", "PPOLearner", "SACLearner", "SB3Policy"]

# RL Zoo's convention for schedules in config files: "lin_3e-4" decays linearly from 3e-4 to 0.
_SCHEDULABLE = {"learning_rate", "clip_range", "clip_range_vf"}


# policy_kwargs.activation_fn may be named in YAML; SB3 wants the torch class.
_ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "elu": "ELU", "leaky_relu": "LeakyReLU", "gelu": "GELU",
                "silu": "SiLU"}


def _resolve_schedules(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """YAML-friendly values -> what SB3 takes: ``lin_<x>`` schedules, activation names."""
    out = dict(hyperparams)
    policy_kwargs = out.get("policy_kwargs")
    if isinstance(policy_kwargs, dict) and isinstance(policy_kwargs.get("activation_fn"), str):
        import torch.nn

        out["policy_kwargs"] = {**policy_kwargs,
                                "activation_fn": getattr(torch.nn, _ACTIVATIONS[policy_kwargs["activation_fn"]])}
    for key in _SCHEDULABLE & out.keys():
        value = out[key]
        if isinstance(value, str) and value.startswith("lin_"):
            start = float(value.removeprefix("lin_"))
            out[key] = lambda progress_remaining, start=start: progress_remaining * start
    return out


def _check_schedule(key: str, value: Any, file: str) -> None:
    if key not in _SCHEDULABLE or not isinstance(value, str):
        return
    try:
        ok = value.startswith("lin_") and float(value.removeprefix("lin_")) >= 0
    except ValueError:
        ok = False
    if not ok:
        raise TaskError(f"{value!r} is not a number or a schedule", file=file, key=f"learner.hyperparams.{key}",
                        hint="write a number (3e-4) or a linear schedule (lin_3e-4)")


# Arguments the workbench sets itself; a task may not pass them as hyperparameters.
_RESERVED = {"self", "policy", "env", "seed", "tensorboard_log", "verbose", "_init_setup_model"}
_ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC}
# Arguments that take a Python object, which a task file cannot express.
_PYTHON_OBJECTS = {"action_noise", "replay_buffer_class", "rollout_buffer_class"}

# ----------------------------------------------------------------------------- hyperparameter table
# SB3 checks few constructor arguments itself: a negative n_steps is an AssertionError, a float
# buffer_size a TypeError, a bad ent_coef string a ValueError, all mid-`run`. Each rule returns
# None for a valid value, else what a valid value is. Upper bounds are sanity caps (a buffer or a
# rollout of that size does not fit in memory), not tuning advice.
_Rule = Callable[[Any], "str | None"]
_BIG = 10**8


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= 1e300  # finite, and no OverflowError


def _integer(lo: int, hi: int = _BIG, *, also: tuple[int, ...] = ()) -> _Rule:
    what = f"an integer from {lo} to {hi}" + "".join(f" or {a}" for a in also)
    return lambda v: None if _is_int(v) and (lo <= v <= hi or v in also) else what


def _real(lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False, none: bool = False,
          schedule: bool = False) -> _Rule:
    what = "a number" + (f" {'>' if lo_open else '>='} {lo:g}" if lo > -math.inf else "") \
        + (f" and <= {hi:g}" if hi < math.inf else "") + (" or null" if none else "") \
        + (" or a schedule (lin_3e-4)" if schedule else "")

    def check(v: Any) -> str | None:
        if (none and v is None) or (schedule and isinstance(v, str)):  # schedules: _check_schedule
            return None
        ok = _is_real(v) and (v > lo if lo_open else v >= lo) and v <= hi
        return None if ok else what
    return check


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _mapping(v: Any) -> str | None:
    return None if v is None or isinstance(v, dict) else "a mapping of keyword arguments"


def _device(v: Any) -> str | None:
    ok = isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:[0-9]{1,3})?", v) is not None
    return None if ok else "auto, cpu, cuda or cuda:N"


def _sac_ent_coef(v: Any) -> str | None:
    if isinstance(v, str):
        head, _, init = v.partition("_")
        try:
            ok = head == "auto" and (not init or (math.isfinite(float(init)) and float(init) > 0))
        except ValueError:
            ok = False
        return None if ok else "auto, auto_<initial value > 0> (auto_0.1) or a number >= 0"
    return _real(0)(v)


def _target_entropy(v: Any) -> str | None:
    return None if v == "auto" or _is_real(v) else "auto or a number"


_COMMON: dict[str, _Rule] = {
    "learning_rate": _real(0, lo_open=True, schedule=True),
    "gamma": _real(0, 1),
    "use_sde": _boolean,
    "sde_sample_freq": _integer(-1),
    "stats_window_size": _integer(1, 10**6),
    "policy_kwargs": _mapping,
    "device": _device,
}
_HYPERPARAM_RULES: dict[str, dict[str, _Rule]] = {
    "ppo": {
        **_COMMON,
        "n_steps": _integer(1),
        "batch_size": _integer(1),
        "n_epochs": _integer(1, 10**6),
        "gae_lambda": _real(0, 1),
        "clip_range": _real(0, lo_open=True, schedule=True),
        "clip_range_vf": _real(0, lo_open=True, none=True, schedule=True),
        "normalize_advantage": _boolean,
        "ent_coef": _real(0),
        "vf_coef": _real(0),
        "max_grad_norm": _real(0, lo_open=True),
        "rollout_buffer_kwargs": _mapping,
        "target_kl": _real(0, lo_open=True, none=True),
    },
    "sac": {
        **_COMMON,
        "buffer_size": _integer(1),
        "learning_starts": _integer(0),
        "batch_size": _integer(1),
        "tau": _real(0, 1),
        "train_freq": _integer(1),  # env steps between updates (a YAML list is not SB3's tuple)
        "gradient_steps": _integer(1, also=(-1,)),
        "replay_buffer_kwargs": _mapping,
        "optimize_memory_usage": _boolean,
        "n_steps": _integer(1, 10**4),
        "ent_coef": _sac_ent_coef,
        "target_update_interval": _integer(1),
        "target_entropy": _target_entropy,
        "use_sde_at_warmup": _boolean,
    },
}
# policy_kwargs: the policy class's own keyword arguments, less those SB3 passes itself and the
# ones that take a Python object (activation_fn takes a name: _ACTIVATIONS).
_POLICY_KWARG_RULES: dict[str, _Rule] = {
    "ortho_init": _boolean, "log_std_init": _real(-20, 20), "full_std": _boolean, "use_expln": _boolean,
    "squash_output": _boolean, "share_features_extractor": _boolean, "normalize_images": _boolean,
    "n_critics": _integer(1, 100), "clip_mean": _real(0, lo_open=True), "optimizer_kwargs": _mapping,
    "features_extractor_kwargs": _mapping,
}
_POLICY_KWARGS_EXCLUDED = {"self", "observation_space", "action_space", "lr_schedule", "use_sde",  # SB3 passes them
                           "features_extractor_class", "optimizer_class", "features_extractor"}  # Python objects


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:56] + "..."


def _net_arch(v: Any) -> str | None:
    def layers(x: Any) -> bool:
        return isinstance(x, list) and all(_is_int(n) and 1 <= n <= 65536 for n in x) and len(x) <= 64

    ok = v is None or layers(v) or (isinstance(v, dict) and bool(v) and all(
        k in ("pi", "vf", "qf") and layers(x) for k, x in v.items()))
    return None if ok else "a list of layer sizes ([64, 64]) or {pi: [...], vf: [...]} / {pi: [...], qf: [...]}"


class SB3Policy:
    """An SB3 model plus (optionally) the VecNormalize statistics its observations need."""

    def __init__(self, model: BaseAlgorithm, obs_normalizer: VecNormalize | None = None):
        self.model = model
        self.obs_normalizer = obs_normalizer

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        if self.obs_normalizer is not None:
            observation = self.obs_normalizer.normalize_obs(observation)
        return self.model.predict(observation, state, episode_start, deterministic)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "model.zip") as tmp:
            self.model.save(tmp)  # SB3 appends .zip only when the name has no suffix
        if self.obs_normalizer is not None:
            with atomic_path(directory / "vecnormalize.pkl") as tmp:
                self.obs_normalizer.save(tmp)
        algo = next(k for k, v in _ALGOS.items() if isinstance(self.model, v))
        write_json(directory / POLICY_FILE, {"class": "policies.sb3:SB3Policy", "algo": algo})

    @classmethod
    def load(cls, directory: Path) -> SB3Policy:
        meta = json.loads((directory / POLICY_FILE).read_text())
        return cls.from_checkpoint(directory, meta["algo"])

    @classmethod
    def from_checkpoint(cls, directory: Path, algo: str) -> SB3Policy:
        """Load ``model.zip`` (+ ``vecnormalize.pkl``) from a policy or checkpoint directory."""
        model = _ALGOS[algo].load(directory / "model.zip", device="cpu")
        normalizer = None
        if (directory / "vecnormalize.pkl").is_file():
            with open(directory / "vecnormalize.pkl", "rb") as fh:  # our own run file, like SB3's zip
                normalizer = pickle.load(fh)
            normalizer.training = False
        return cls(model, normalizer)


class _RunCallback(BaseCallback):
    """Progress, periodic evaluation, reward-component logging and checkpoints in one pass."""

    def __init__(self, learner: SB3Learner, run: Run, hooks: FitHooks, normalizer: VecNormalize | None):
        super().__init__()
        self.learner, self.run, self.hooks, self.normalizer = learner, run, hooks, normalizer
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0
        self._next_ckpt = 0
        self._next_eval = 0

    def _on_training_start(self) -> None:
        step = self.num_timesteps
        self._next_ckpt = step + self.hooks.checkpoint_every
        self._next_eval = step + self.hooks.eval_every if self.hooks.eval_every else 0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            for key, value in info.items():
                if key.startswith("reward/"):
                    self._sums[key] += value
            self._count += 1
        if self._count >= 1000:
            for key, total in self._sums.items():
                self.logger.record(key, total / self._count)
            self._sums.clear()
            self._count = 0
        step = self.num_timesteps
        if self.hooks.on_steps is not None:
            self.hooks.on_steps(step)
        if step >= self._next_ckpt:
            self.learner.save_checkpoint(self.model, self.run, self.normalizer)
            self._next_ckpt = step + self.hooks.checkpoint_every
        if self._next_eval and step >= self._next_eval and self.hooks.on_eval is not None:
            metrics = self.hooks.on_eval(step, SB3Policy(self.model, self.normalizer))
            for key, value in metrics.items():
                if value is not None:
                    self.logger.record(f"eval/{key}", value)
            self._next_eval = step + self.hooks.eval_every
        return True


class SB3Learner:
    algo: ClassVar[str]

    @property
    def algo_cls(self) -> type[BaseAlgorithm]:
        return _ALGOS[self.algo]

    @property
    def name(self) -> str:
        return self.algo

    # ------------------------------------------------------------------ validation
    @classmethod
    def valid_hyperparams(cls) -> list[str]:
        """The SB3 constructor's keyword arguments a task may set: not those the workbench sets,
        nor those that take a Python object (a class, an ActionNoise)."""
        params = inspect.signature(_ALGOS[cls.algo].__init__).parameters
        return sorted(p for p in params if p not in _RESERVED and p not in _PYTHON_OBJECTS)

    @classmethod
    def validate_spec(cls, spec: TaskSpec, *, file: str) -> None:
        algo = _ALGOS[cls.algo]
        valid = cls.valid_hyperparams()
        activation = spec.learner.hyperparams.get("policy_kwargs", {}).get("activation_fn") \
            if isinstance(spec.learner.hyperparams.get("policy_kwargs"), dict) else None
        if activation is not None and activation not in _ACTIVATIONS:
            raise TaskError(f"unknown activation {activation!r}", file=file,
                            key="learner.hyperparams.policy_kwargs.activation_fn",
                            hint=f"valid: {', '.join(_ACTIVATIONS)}")
        hyperparams = spec.learner.hyperparams
        for key, value in hyperparams.items():
            _check_schedule(key, value, file)
            if key not in valid:
                import difflib

                close = difflib.get_close_matches(key, valid, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise TaskError(f"{algo.__name__} has no hyperparameter {key!r}", file=file,
                                key=f"learner.hyperparams.{key}",
                                hint=f"{hint}valid: {', '.join(valid)}")
            rule = _HYPERPARAM_RULES[cls.algo].get(key)
            wanted = rule(value) if rule is not None else None
            if wanted:
                raise TaskError(f"{algo.__name__} {key} must be {wanted}, got {_short(value)}", file=file,
                                key=f"learner.hyperparams.{key}", hint=f"set {key} to {wanted}")
        if spec.learner.policy not in algo.policy_aliases:
            raise TaskError(f"unknown {algo.__name__} policy {spec.learner.policy!r}", file=file,
                            key="learner.policy", hint=f"valid: {', '.join(algo.policy_aliases)}")
        cls._validate_policy_kwargs(spec, file)
        cls._validate_combinations(spec, file)

    @classmethod
    def _validate_policy_kwargs(cls, spec: TaskSpec, file: str) -> None:
        policy_kwargs = spec.learner.hyperparams.get("policy_kwargs") or {}
        policy_cls = _ALGOS[cls.algo].policy_aliases[spec.learner.policy]
        valid = sorted(p for p in inspect.signature(policy_cls.__init__).parameters
                       if p not in _POLICY_KWARGS_EXCLUDED)
        for key, value in policy_kwargs.items():
            where = f"learner.hyperparams.policy_kwargs.{key}"
            if key not in valid:
                raise TaskError(f"{policy_cls.__name__} takes no argument {_short(key)}", file=file, key=where,
                                hint=f"valid: {', '.join(valid)}")
            rule = _net_arch if key == "net_arch" else _POLICY_KWARG_RULES.get(key)
            wanted = rule(value) if rule is not None else None
            if wanted:
                raise TaskError(f"policy_kwargs.{key} must be {wanted}, got {_short(value)}", file=file, key=where,
                                hint=f"set {key} to {wanted}")

    @classmethod
    def _validate_combinations(cls, spec: TaskSpec, file: str) -> None:
        """What SB3 asserts on (or raises) when the model is made, checked without making it."""
        hp = spec.learner.hyperparams
        if cls.algo == "ppo":
            n_steps, batch_size = hp.get("n_steps", 2048), hp.get("batch_size", 64)
            if hp.get("normalize_advantage", True):
                if batch_size <= 1:
                    raise TaskError("PPO needs batch_size > 1 when normalize_advantage is on (SB3 asserts)",
                                    file=file, key="learner.hyperparams.batch_size",
                                    hint="set batch_size >= 2, e.g. 64")
                if n_steps * spec.training.n_envs <= 1:
                    raise TaskError("PPO needs n_steps * training.n_envs > 1 when normalize_advantage is on "
                                    "(SB3 asserts)", file=file, key="learner.hyperparams.n_steps",
                                    hint="set n_steps >= 2, e.g. 512")
            if n_steps * spec.training.n_envs > _BIG:
                raise TaskError(f"a rollout of n_steps * n_envs = {n_steps * spec.training.n_envs} steps does "
                                "not fit in memory", file=file, key="learner.hyperparams.n_steps",
                                hint=f"keep n_steps * training.n_envs <= {_BIG}")
        else:
            buffer_kwargs = hp.get("replay_buffer_kwargs") or {}
            if hp.get("optimize_memory_usage") and buffer_kwargs.get("handle_timeout_termination", True):
                raise TaskError("SAC's ReplayBuffer cannot optimize_memory_usage while it handles timeouts "
                                "(SB3 raises)", file=file, key="learner.hyperparams.optimize_memory_usage",
                                hint="remove optimize_memory_usage, or set "
                                     "replay_buffer_kwargs: {handle_timeout_termination: false}")

    # ------------------------------------------------------------------ training
    @staticmethod
    def _vec(fns: list[Callable[[], gym.Env]], spec: TaskSpec, run: Run,
             wrap: Callable[[VecEnv], VecEnv] | None = None, *, resume_from: Path | None = None) -> VecEnv:
        """The training envs with their episode monitors. Resuming from the checkpoint directory
        ``resume_from`` appends to the monitor files (episodes that ended after that checkpoint
        are dropped: they are trained again), so curves and history cover the whole run."""
        monitor_dir = run.subdir("monitor")
        keywords = ("is_success",)  # TaskWrapper sets it at every episode end
        cutoff = (resume_from / "model.zip").stat().st_mtime if resume_from is not None else None
        names = ["vec"] if wrap is not None else [f"env{i}" for i in range(len(fns))]
        t_starts = {name: _reopen_monitor(monitor_dir / f"{name}.{Monitor.EXT}", cutoff) for name in names}

        def factory(i: int) -> Callable[[], gym.Env]:
            def make() -> gym.Env:
                env = fns[i]()
                if wrap is not None:
                    return env
                t_start = t_starts[f"env{i}"]
                monitor = Monitor(env, str(monitor_dir / f"env{i}"), info_keywords=keywords,
                                  override_existing=t_start is None)
                monitor.t_start = t_start or monitor.t_start
                return monitor
            return make

        if spec.training.vec_env == "subproc":
            # A user-fixable error in a worker (a reward program's) would end the worker process
            # and surface as a broken pipe: it travels back in info and is raised here instead.
            venv: VecEnv = _RaiseCarriedErrors(SubprocVecEnv([_carrying_errors(factory(i)) for i in range(len(fns))]))
        else:
            venv = DummyVecEnv([factory(i) for i in range(len(fns))])
        venv.seed(spec.training.seed)
        if wrap is not None:
            # The reward is replaced at the vector level, so episode returns are counted after it.
            t_start = t_starts["vec"]
            if t_start is None:
                return VecMonitor(wrap(venv), str(monitor_dir / "vec"), info_keywords=keywords)
            monitored = VecMonitor(wrap(venv), None, info_keywords=keywords)
            monitored.t_start = t_start
            monitored.results_writer = ResultsWriter(str(monitor_dir / "vec"), extra_keys=keywords,
                                                     override_existing=False)
            return monitored
        return venv

    def save_checkpoint(self, model: BaseAlgorithm, run: Run, normalizer: VecNormalize | None) -> int:
        step = int(model.num_timesteps)
        directory = run.new_checkpoint_dir(step)
        model.save(directory / "model.zip")
        for wrapper in _stateful_wrappers(model.get_env()):
            wrapper.save_checkpoint(directory)
        if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
            model.save_replay_buffer(directory / "replay_buffer.pkl")
        if normalizer is not None:
            normalizer.save(directory / "vecnormalize.pkl")
        run.commit_checkpoint(step, directory)
        run.update_info(steps=step)
        return step

    def fit(self, spec: TaskSpec, env_fns: Sequence[Callable[[], gym.Env]], budget: int, run: Run, *,
            hooks: FitHooks, resume: bool = False) -> SB3Policy:
        import torch

        torch.set_num_threads(spec.learner.torch_threads)
        checkpoint = run.latest_checkpoint() if resume else None
        venv: VecEnv = self._vec(list(env_fns), spec, run, hooks.wrap_vec,
                                 resume_from=checkpoint[1] if checkpoint else None)
        normalizer: VecNormalize | None = None
        if checkpoint is not None:
            _, ckpt = checkpoint
            for wrapper in _stateful_wrappers(venv):
                wrapper.load_checkpoint(ckpt)
            if (ckpt / "vecnormalize.pkl").is_file():
                normalizer = VecNormalize.load(str(ckpt / "vecnormalize.pkl"), venv)
                venv = normalizer
            model = self.algo_cls.load(ckpt / "model.zip", env=venv, device=self._device(spec),
                                       tensorboard_log=str(run.subdir("tb")))
            if (ckpt / "replay_buffer.pkl").is_file() and isinstance(model, OffPolicyAlgorithm):
                model.load_replay_buffer(ckpt / "replay_buffer.pkl")
        else:
            if spec.learner.normalize:
                normalizer = VecNormalize(venv, gamma=spec.learner.hyperparams.get("gamma", 0.99))
                venv = normalizer
            kwargs = _resolve_schedules(spec.learner.hyperparams)
            kwargs.setdefault("device", "cpu")
            model = self.algo_cls(spec.learner.policy, venv, seed=spec.training.seed, verbose=0,
                                  tensorboard_log=str(run.subdir("tb")), **kwargs)
        remaining = budget - int(model.num_timesteps)
        callback = _RunCallback(self, run, hooks, normalizer)
        try:
            if remaining > 0:
                model.learn(remaining, callback=callback, reset_num_timesteps=checkpoint is None,
                            tb_log_name=self.algo)
        except KeyboardInterrupt:
            step = self.save_checkpoint(model, run, normalizer)
            raise TrainingInterrupted(step) from None
        except WorkbenchError as err:  # e.g. a reward program broke the run-time guard
            step = self.save_checkpoint(model, run, normalizer)
            raise TrainingStopped(step, err) from None
        finally:
            venv.close()
        self.save_checkpoint(model, run, normalizer)
        return SB3Policy(model, normalizer)

    @classmethod
    def load_checkpoint(cls, directory: Path, spec: TaskSpec) -> SB3Policy:
        return SB3Policy.from_checkpoint(directory, cls.algo)

    @staticmethod
    def _device(spec: TaskSpec) -> str:
        return str(spec.learner.hyperparams.get("device", "cpu"))


_CARRIED_ERROR = "workbench/error"


class _CarryUserErrors(gym.Wrapper):
    """In a subprocess env: a :class:`WorkbenchError` from ``step`` ends the episode and rides back
    in ``info`` (the worker lives on); :class:`_RaiseCarriedErrors` raises it in the parent."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        try:
            obs, reward, terminated, truncated, info = self.env.step(action)
        except WorkbenchError as err:
            return self._last_obs, 0.0, True, False, {_CARRIED_ERROR: str(err)}
        self._last_obs = obs
        return obs, reward, terminated, truncated, info


def _carrying_errors(make: Callable[[], gym.Env]) -> Callable[[], gym.Env]:
    return lambda: _CarryUserErrors(make())


class _RaiseCarriedErrors(VecEnvWrapper):
    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            if _CARRIED_ERROR in info:
                raise WorkbenchError(info[_CARRIED_ERROR])
        return obs, rewards, dones, infos


def _reopen_monitor(path: Path, cutoff: float | None) -> float | None:
    """For a resumed run: keep the episodes of ``path`` that ended by the wall-clock time
    ``cutoff`` (the checkpoint's) and return the file's ``t_start`` so new rows continue its
    clock. None (start a fresh file) for a new run or a missing/unreadable file."""
    if cutoff is None or not path.is_file():
        return None
    with open(path, newline="") as fh:
        header_line = fh.readline()
        columns = fh.readline()
        rows = fh.readlines()
    try:
        t_start = float(json.loads(header_line.removeprefix("#"))["t_start"])
        t_index = columns.strip().split(",").index("t")
        kept = [row for row in rows if float(row.split(",")[t_index]) <= cutoff - t_start]
    except (ValueError, KeyError, IndexError):
        return None
    atomic_write(path, header_line + columns + "".join(kept))
    return t_start


def _stateful_wrappers(venv: VecEnv | None) -> list[CheckpointState]:
    """The wrappers in a VecEnv chain that keep learned state of their own."""
    found = []
    while venv is not None:
        if isinstance(venv, CheckpointState):
            found.append(venv)
        venv = getattr(venv, "venv", None)
    return found


class PPOLearner(SB3Learner):
    algo = "ppo"


class SACLearner(SB3Learner):
    algo = "sac"
