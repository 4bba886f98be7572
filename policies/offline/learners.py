"""Offline learners behind the Learner contract: ``bc``, ``mopo`` and ``morec``, on a Minari dataset.

``training.total_steps`` is the number of policy updates (gradient steps), not env steps: an
offline learner never steps the simulator while it trains (evaluation does, with the task's own
success metric). Every learner trains stable-baselines3's SAC networks and saves an SB3 policy,
so ``workbench eval`` loads them like any SAC run:

- ``bc``: SAC's actor regressed onto the dataset's actions (behaviour cloning, the baseline).
- ``mopo``: a probabilistic dynamics ensemble fit to the dataset; SAC (SB3's own ``train``) on
  batches mixing dataset transitions (``real_ratio``) with short model rollouts whose reward is
  penalised by the ensemble's uncertainty (Yu et al. 2020).
- ``morec``: MOPO whose ensemble is also trained adversarially against a discriminator, whose
  snapshots give a dynamics reward that filters much longer rollouts (Luo et al. 2024).

Models are trained once per run (``offline/dynamics.pt``, written atomically); the policy phase
checkpoints every ``training.checkpoint_every`` updates (the SAC model, the model-rollout buffer
and the random states), so a killed run resumes where its last checkpoint left it.
"""

from __future__ import annotations

import inspect
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from policies.offline.config import OfflineHyperparams, parse_hyperparams
from workbench.datasets import (
    Transitions,
    check_spaces,
    load_transitions,
    open_dataset,
    reference_scores,
    require_minari,
)
from workbench.errors import TaskError
from workbench.learner import FitHooks, TrainingInterrupted
from workbench.registry import SIMS
from workbench.runs import atomic_path, write_json

if TYPE_CHECKING:
    from policies.sb3 import SB3Policy
    from workbench.runs import Run
    from workbench.spec import TaskSpec

__all__ = ["OfflineLearner", "BCLearner", "MOPOLearner", "MORECLearner", "MixedReplay"]

STATE_FILE = "offline_state.pkl"
DYNAMICS_FILE = "dynamics.pt"
RECORD_FILE = "offline.json"


def _key(name: str) -> str:
    return f"learner.hyperparams.{name}"


class MixedReplay:
    """What SAC samples its batches from: ``real_ratio`` of each batch from the dataset's buffer,
    the rest from the model-rollout buffer (all from the dataset while that is empty)."""

    def __init__(self, real: Any, model: Any | None, real_ratio: float):
        self.real, self.model, self.real_ratio = real, model, real_ratio

    def sample(self, batch_size: int, env: Any = None) -> Any:
        import torch
        from stable_baselines3.common.type_aliases import ReplayBufferSamples

        model_size = 0 if self.model is None else self.model.size()
        n_real = batch_size if model_size == 0 else int(round(batch_size * self.real_ratio))
        parts = []
        if n_real:
            parts.append(self.real.sample(n_real, env=env))
        if batch_size - n_real:
            parts.append(self.model.sample(batch_size - n_real, env=env))
        if len(parts) == 1:
            return parts[0]
        return ReplayBufferSamples(*(None if a is None else torch.cat([a, b]) for a, b in zip(*parts)))


def _buffer(size: int, observation_space: gym.Space, action_space: gym.Space) -> Any:
    from stable_baselines3.common.buffers import ReplayBuffer

    return ReplayBuffer(max(1, size), observation_space, action_space, device="cpu", n_envs=1,
                        handle_timeout_termination=False)


def _extend(buffer: Any, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            dones: np.ndarray) -> None:
    """Append transitions to an SB3 ReplayBuffer of one env at once (oldest overwritten when full)."""
    n = len(rewards)
    if n == 0:
        return
    if n > buffer.buffer_size:
        obs, actions, rewards, next_obs, dones = (x[-buffer.buffer_size:] for x in (obs, actions, rewards,
                                                                                   next_obs, dones))
        n = buffer.buffer_size
    idx = (buffer.pos + np.arange(n)) % buffer.buffer_size
    buffer.observations[idx, 0] = obs
    buffer.next_observations[idx, 0] = next_obs
    buffer.actions[idx, 0] = actions
    buffer.rewards[idx, 0] = rewards
    buffer.dones[idx, 0] = dones
    buffer.full = buffer.full or buffer.pos + n >= buffer.buffer_size
    buffer.pos = int((buffer.pos + n) % buffer.buffer_size)


class OfflineLearner:
    """The policy-update loop shared by the offline learners; subclasses add models and rollouts."""

    name: ClassVar[str]

    # ------------------------------------------------------------------ validation
    @classmethod
    def validate_spec(cls, spec: TaskSpec, *, file: str) -> None:
        require_minari()
        hp = parse_hyperparams(cls.name, spec, file=file)
        from stable_baselines3 import SAC

        accepted = set(inspect.signature(SAC.__init__).parameters) - {"self", "policy", "env", "seed", "verbose",
                                                                       "tensorboard_log", "_init_setup_model"}
        for key in hp.sac:
            if key not in accepted:
                raise TaskError(f"SAC has no argument {key!r}", file=file, key=_key(f"sac.{key}"),
                                hint="SAC's own keywords, e.g. learning_rate, gamma, tau, ent_coef")
        dataset = open_dataset(hp.dataset, file=file, key=_key("dataset"))
        env = SIMS.get(spec.sim.name)().make_env(spec.sim)
        try:
            check_spaces(dataset, env, file=file, key=_key("dataset"))
        finally:
            env.close()

    @classmethod
    def reference_scores(cls, spec: TaskSpec) -> tuple[float, float] | None:
        """The dataset's (random, expert) returns: ``eval.json`` gets the D4RL-normalised score."""
        hp = parse_hyperparams(cls.name, spec, file=spec.source_path or "<task>")
        try:
            return reference_scores(open_dataset(hp.dataset, file=spec.source_path, key=_key("dataset")))
        except TaskError:  # the dataset was deleted since: the evaluation goes on without the score
            return None

    @classmethod
    def load_checkpoint(cls, directory: Path, spec: TaskSpec) -> SB3Policy:
        from policies.sb3 import SB3Policy

        return SB3Policy.from_checkpoint(directory, "sac")

    # ------------------------------------------------------------------ to override
    def prepare(self, hp: OfflineHyperparams, data: Transitions, run: Run, rng: np.random.Generator,
                env: gym.Env) -> dict[str, Any]:
        """Models trained (or loaded from the run) before the policy updates; a record for offline.json."""
        return {}

    def round(self, model: Any, hp: OfflineHyperparams, data: Transitions, rng: np.random.Generator,
              buffer: Any) -> dict:
        """Called every ``rollout_every`` updates: refill the model ``buffer``; returns the round's stats."""
        return {}

    def update(self, model: Any, hp: OfflineHyperparams, updates: int) -> None:
        """``updates`` policy gradient steps."""
        model.train(gradient_steps=updates, batch_size=hp.batch_size)

    def model_buffer(self, hp: OfflineHyperparams, env: gym.Env) -> Any | None:
        return None

    # ------------------------------------------------------------------ the loop
    def fit(self, spec: TaskSpec, env_fns: Sequence[Callable[[], gym.Env]], budget: int, run: Run, *,
            hooks: FitHooks, resume: bool = False) -> SB3Policy:
        import torch
        from stable_baselines3 import SAC
        from stable_baselines3.common.logger import configure

        from policies.sb3 import SB3Policy

        torch.set_num_threads(spec.learner.torch_threads)
        file = spec.source_path or "<task>"
        hp = parse_hyperparams(self.name, spec, file=file)
        dataset = open_dataset(hp.dataset, file=file, key=_key("dataset"))
        env = env_fns[0]()  # never stepped: SAC reads its spaces
        try:
            check_spaces(dataset, env, file=file, key=_key("dataset"))
            data = load_transitions(dataset)
            rng = np.random.default_rng(np.random.SeedSequence([spec.training.seed, 17]))
            torch.manual_seed(spec.training.seed)
            started = time.perf_counter()
            record = {"learner": self.name, "dataset": hp.dataset, "transitions": len(data),
                      "dataset_return_mean": float(data.episode_returns.mean()),
                      **self.prepare(hp, data, run, rng, env)}
            record["model_seconds"] = round(time.perf_counter() - started, 1)
            checkpoint = run.latest_checkpoint() if resume else None
            if checkpoint is not None:
                model = SAC.load(checkpoint[1] / "model.zip", env=env, device="cpu")
                with open(checkpoint[1] / STATE_FILE, "rb") as fh:  # our own run's file, like SB3's zip
                    state = pickle.load(fh)
                rng, model_buffer = state["rng"], state["model_buffer"]
                torch.set_rng_state(state["torch_rng"])
                self.restore(state)
                rounds = state["rounds"]
            else:
                kwargs = {"learning_starts": 0, "policy_kwargs": {"net_arch": list(hp.hidden)}, **hp.sac}
                model = SAC("MlpPolicy", env, seed=spec.training.seed, device="cpu", verbose=0, **kwargs)
                model_buffer = self.model_buffer(hp, env)
                rounds = []
            model.set_logger(configure(str(run.subdir("tb")), ["tensorboard"]))
            real = _buffer(len(data), env.observation_space, env.action_space)
            _extend(real, data.observations, model.policy.scale_action(np.clip(data.actions, env.action_space.low,
                                                                               env.action_space.high)),
                    data.rewards, data.next_observations, data.terminals)
            model.replay_buffer = MixedReplay(real, model_buffer, hp.real_ratio)  # type: ignore[assignment]
            step = checkpoint[0] if checkpoint else 0
            saved = step
            next_eval = (step // hooks.eval_every + 1) * hooks.eval_every if hooks.eval_every else 0
            chunk = min(hp.rollout_every, hooks.checkpoint_every, 100)
            try:
                while step < budget:
                    if model_buffer is not None and step % hp.rollout_every == 0:
                        rounds.append({"update": step, **self.round(model, hp, data, rng, model_buffer)})
                    n = min(chunk, budget - step, hp.rollout_every - step % hp.rollout_every)
                    self.update(model, hp, n)
                    step += n
                    model.num_timesteps = step
                    if hooks.on_steps is not None:
                        hooks.on_steps(step)
                    if step % hooks.checkpoint_every < n or step >= budget:
                        saved = self._checkpoint(run, model, step, rng, model_buffer, rounds)
                        model.logger.dump(step)
                    if next_eval and step >= next_eval and hooks.on_eval is not None:
                        hooks.on_eval(step, SB3Policy(model))
                        next_eval = (step // hooks.eval_every + 1) * hooks.eval_every
            except KeyboardInterrupt:
                raise TrainingInterrupted(saved) from None
            record["rounds"] = rounds
            record["rollouts"] = _summarise(rounds)
            record["updates"] = step
            write_json(run.subdir("offline") / RECORD_FILE, record)
            return SB3Policy(model)
        finally:
            env.close()

    def restore(self, state: dict[str, Any]) -> None:
        """Learner-specific state from a checkpoint (the dynamics generator's random state)."""

    def extra_state(self) -> dict[str, Any]:
        return {}

    def _checkpoint(self, run: Run, model: Any, step: int, rng: np.random.Generator, model_buffer: Any,
                    rounds: list[dict[str, Any]]) -> int:
        import torch

        from policies.sb3 import SB3Policy

        directory = run.new_checkpoint_dir(step)
        SB3Policy(model).save(directory)
        state = {"rng": rng, "model_buffer": model_buffer, "torch_rng": torch.get_rng_state(), "rounds": rounds,
                 **self.extra_state()}
        with atomic_path(directory / STATE_FILE) as tmp, open(tmp, "wb") as fh:
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        run.commit_checkpoint(step, directory)
        run.update_info(steps=step)
        return step


def _summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Rollout fidelity over the run: mean length before it ended, share truncated, dynamics reward."""
    if not rounds or "mean_length" not in rounds[0]:
        return {}
    keys = ("mean_length", "truncated", "mean_penalty", "mean_dynamics_reward", "transitions")
    out = {}
    for k in keys:
        values = [r[k] for r in rounds if r.get(k) is not None]
        out[k] = float(np.mean(values)) if values else None
    return out


class BCLearner(OfflineLearner):
    """Behaviour cloning: SAC's actor regressed (mean squared error) onto the dataset's actions."""

    name = "bc"

    def update(self, model: Any, hp: OfflineHyperparams, updates: int) -> None:
        import torch

        actor, real = model.actor, model.replay_buffer.real
        actor.set_training_mode(True)
        for _ in range(updates):
            batch = real.sample(hp.batch_size)
            loss = torch.nn.functional.mse_loss(actor(batch.observations, deterministic=True), batch.actions)
            actor.optimizer.zero_grad()
            loss.backward()
            actor.optimizer.step()
        model.logger.record("train/bc_loss", float(loss.detach()))


class MOPOLearner(OfflineLearner):
    """MOPO: SAC on dataset + penalised short rollouts of a probabilistic dynamics ensemble."""

    name = "mopo"

    def model_buffer(self, hp: OfflineHyperparams, env: gym.Env) -> Any:
        assert hp.rollout_length is not None
        return _buffer(hp.rollout_batch * hp.rollout_length * hp.retain_rounds, env.observation_space,
                       env.action_space)

    def prepare(self, hp: OfflineHyperparams, data: Transitions, run: Run, rng: np.random.Generator,
                env: gym.Env) -> dict[str, Any]:
        import torch

        from policies.offline.dynamics import Ensemble, TerminalModel, fit_ensemble, fit_terminal, split

        obs_dim, act_dim = data.observations.shape[1], data.actions.shape[1]
        self.dynamics = Ensemble(obs_dim, act_dim, members=hp.ensemble, hidden=hp.model_hidden,
                                 layers=hp.model_layers, elites=hp.elites)
        self.terminal = TerminalModel(obs_dim)
        self.dynamics_reward = self.make_dynamics_reward(hp, obs_dim, act_dim)
        self.generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        path = run.subdir("offline") / DYNAMICS_FILE
        if path.is_file():  # a resumed run: the models it trained before
            saved = torch.load(path, weights_only=False)
            self.dynamics.load_state_dict(saved["dynamics"])
            self.terminal.load_state_dict(saved["terminal"])
            if self.dynamics_reward is not None:
                self.dynamics_reward.load_state_dict(saved["dynamics_reward"])
            return dict(saved["record"])
        train, held = split(len(data), hp.holdout, np.random.default_rng(rng.integers(2**31)))
        record: dict[str, Any] = {"dynamics": fit_ensemble(
            self.dynamics, data, train=train, held=held, lr=hp.model_lr, batch_size=hp.model_batch_size,
            max_epochs=hp.model_max_epochs, patience=hp.model_patience, rng=rng)}
        record["terminal"] = fit_terminal(self.terminal, data, rng=rng)
        record.update(self.fit_more(hp, data, train, held, rng))
        with atomic_path(path) as tmp:
            torch.save({"dynamics": self.dynamics.state_dict(), "terminal": self.terminal.state_dict(),
                        "dynamics_reward": None if self.dynamics_reward is None else self.dynamics_reward.state_dict(),
                        "record": record}, tmp)
        return record

    def make_dynamics_reward(self, hp: OfflineHyperparams, obs_dim: int, act_dim: int) -> Any:
        return None

    def fit_more(self, hp: OfflineHyperparams, data: Transitions, train: np.ndarray, held: np.ndarray,
                 rng: np.random.Generator) -> dict[str, Any]:
        return {}

    def round(self, model: Any, hp: OfflineHyperparams, data: Transitions, rng: np.random.Generator,
              buffer: Any) -> dict:
        from policies.offline.dynamics import rollouts

        assert hp.rollout_length is not None and hp.penalty is not None
        start = data.observations[rng.integers(0, len(data), hp.rollout_batch)]
        batch, stats = rollouts(start, lambda o: model.predict(o, deterministic=False)[0], self.dynamics,
                                self.terminal, horizon=hp.rollout_length, penalty=hp.penalty,
                                generator=self.generator, dynamics_reward=self.dynamics_reward,
                                candidates=hp.candidates, temperature=hp.temperature)
        if len(batch.rewards):
            space = model.action_space
            _extend(buffer, batch.observations,
                    model.policy.scale_action(np.clip(batch.actions, space.low, space.high)), batch.rewards,
                    batch.next_observations, batch.dones)
        out = asdict(stats)
        out.pop("extra")
        return out

    def extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class MORECLearner(MOPOLearner):
    """MOREC: MOPO with a dynamics reward learned adversarially that filters long model rollouts."""

    name = "morec"

    def make_dynamics_reward(self, hp: OfflineHyperparams, obs_dim: int, act_dim: int) -> Any:
        from policies.offline.dynamics import DynamicsReward

        return DynamicsReward(obs_dim, act_dim, hp.disc_hidden)

    def fit_more(self, hp: OfflineHyperparams, data: Transitions, train: np.ndarray, held: np.ndarray,
                 rng: np.random.Generator) -> dict[str, Any]:
        from policies.offline.dynamics import fit_dynamics_reward

        return {"dynamics_reward": fit_dynamics_reward(
            self.dynamics_reward, self.dynamics, data, train=train, held=held, steps=hp.adversarial_steps,
            batch_size=hp.model_batch_size, lr=hp.disc_lr, model_lr=hp.model_lr * 0.1,
            adversarial_weight=hp.adversarial_weight, snapshots=hp.snapshots, snapshot_every=hp.snapshot_every,
            quantile=hp.threshold_quantile, candidates=hp.candidates, temperature=hp.temperature,
            generator=self.generator, rng=rng)}
