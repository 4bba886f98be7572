"""Learned dynamics for offline RL: a probabilistic ensemble (MOPO), a dynamics reward learned
adversarially (MOREC) and the rollouts that use them.

- :class:`Ensemble`: members predict a Gaussian over (next state - state, reward) from (state,
  action), trained by likelihood on bootstrapped data with held-out early stopping; the members of
  lowest held-out error are the elites that roll out.
- :class:`DynamicsReward`: a discriminator between dataset transitions and the ensemble's own,
  trained against the ensemble, which is trained at the same time to fool it beside its likelihood
  (MOREC's adversarial loop); the reward of a transition is the mean output of the last
  ``snapshots`` discriminators, so it does not swing with the latest one.
- :func:`rollouts`: MOPO's (one elite's sample per step, an uncertainty penalty) or MOREC's filtered
  ones (``candidates`` next states per step, one drawn by a softmax over their dynamics reward; a
  rollout ends when the drawn transition's dynamics reward falls below the threshold, calibrated
  on the picks the model makes from held-out dataset states).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.datasets import Transitions

__all__ = ["Ensemble", "TerminalModel", "DynamicsReward", "RolloutBatch", "RolloutStats", "rollouts", "pick",
           "fit_ensemble", "fit_terminal", "fit_dynamics_reward", "split"]


class _Normalizer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: np.ndarray, *, floor: float = 0.0) -> None:
        """Standardise by the data's mean and std; ``floor`` x the median std is the least std a
        dimension gets (a dimension constant in the data, e.g. a goal's position within an episode,
        would otherwise scale any deviation from it up by 1e6)."""
        std = x.std(0)
        least = floor * float(np.median(std[std > 0])) if floor and (std > 0).any() else 0.0
        self.mean.copy_(torch.as_tensor(x.mean(0), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(std, least) + 1e-6, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _EnsembleLinear(nn.Module):
    """``members`` independent linear layers applied at once to [members, batch, in]."""

    def __init__(self, members: int, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(members, n_in, n_out) / np.sqrt(2 * n_in))
        self.bias = nn.Parameter(torch.zeros(members, 1, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class Ensemble(nn.Module):
    """Gaussian ensemble over (Δstate, reward) given (state, action); log-variance softly bounded."""

    def __init__(self, obs_dim: int, act_dim: int, *, members: int, hidden: int, layers: int, elites: int):
        super().__init__()
        self.obs_dim, self.act_dim, self.members = obs_dim, act_dim, members
        out = obs_dim + 1
        sizes = [obs_dim + act_dim] + [hidden] * layers
        self.trunk = nn.ModuleList(_EnsembleLinear(members, a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = _EnsembleLinear(members, hidden, 2 * out)
        self.max_logvar = nn.Parameter(torch.full((out,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((out,), -10.0))
        self.inputs = _Normalizer(obs_dim + act_dim)
        self.register_buffer("elite_idx", torch.arange(elites))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance [members, batch, obs_dim + 1]; inputs [batch, .] or [members, batch, .]."""
        x = self.inputs(torch.cat([obs, act], -1))
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        for layer in self.trunk:
            x = nn.functional.silu(layer(x))
        mean, logvar = self.head(x).chunk(2, dim=-1)
        logvar = self.max_logvar - nn.functional.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + nn.functional.softplus(logvar - self.min_logvar)
        return mean, logvar

    def nll(self, obs: torch.Tensor, act: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Gaussian negative log-likelihood (up to a constant), summed over members, plus the bound penalty."""
        mean, logvar = self(obs, act)
        loss = (((mean - target) ** 2) * torch.exp(-logvar) + logvar).mean(dim=(1, 2)).sum()
        return loss + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())

    @torch.no_grad()
    def member_errors(self, obs: torch.Tensor, act: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        mean, _ = self(obs, act)
        return ((mean - target) ** 2).mean(dim=(1, 2)).numpy()

    @torch.no_grad()
    def log_likelihood(self, obs: torch.Tensor, act: torch.Tensor, target: torch.Tensor) -> float:
        """Mean Gaussian log-likelihood per dimension of ``target`` under the elites' mixture mean
        (each elite's density averaged), the held-out figure the run reports."""
        mean, logvar = self(obs, act)
        mean, logvar = mean[self.elite_idx], logvar[self.elite_idx]
        per = -0.5 * (((mean - target) ** 2) * torch.exp(-logvar) + logvar + np.log(2 * np.pi))
        mixture = torch.logsumexp(per.sum(-1), dim=0) - np.log(len(self.elite_idx))
        return float(mixture.mean() / target.shape[-1])

    def sample(self, obs: torch.Tensor, act: torch.Tensor, *, n: int, generator: torch.Generator,
               reparam: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` draws per state, each from a uniformly chosen elite: next states [n, B, obs],
        rewards [n, B] and the uncertainty max over elites of the std's norm [B]."""
        with torch.set_grad_enabled(reparam):
            mean, logvar = self(obs, act)
            mean, std = mean[self.elite_idx], torch.exp(0.5 * logvar[self.elite_idx])
            pick = torch.randint(len(self.elite_idx), (n, obs.shape[0]), generator=generator)
            cols = torch.arange(obs.shape[0]).expand(n, -1)
            noise = torch.randn(n, obs.shape[0], mean.shape[-1], generator=generator)
            draw = mean[pick, cols] + std[pick, cols] * noise
            uncertainty = std.norm(dim=-1).amax(dim=0)
        return obs + draw[..., :-1], draw[..., -1], uncertainty.detach()


class TerminalModel(nn.Module):
    """P(the episode ends at this next state), learned from the dataset's terminal flags."""

    def __init__(self, obs_dim: int, hidden: int = 128):
        super().__init__()
        self.inputs = _Normalizer(obs_dim)
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 1))
        self.register_buffer("never", torch.tensor(True))

    def forward(self, next_obs: torch.Tensor) -> torch.Tensor:
        if bool(self.never):
            return torch.zeros(next_obs.shape[:-1], dtype=torch.bool)
        return self.net(self.inputs(next_obs)).squeeze(-1) > 0


class DynamicsReward(nn.Module):
    """The mean of past discriminators' P(dataset transition) for (state, action, next state)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int):
        super().__init__()
        self.inputs = _Normalizer(2 * obs_dim + act_dim)
        self.hidden = hidden
        self.dims = (obs_dim, act_dim)
        self.current = self._net()
        self.snapshots = nn.ModuleList()
        self.register_buffer("threshold", torch.tensor(0.0))

    def _net(self) -> nn.Module:
        obs_dim, act_dim = self.dims
        return nn.Sequential(nn.Linear(2 * obs_dim + act_dim, self.hidden), nn.SiLU(),
                             nn.Linear(self.hidden, self.hidden), nn.SiLU(), nn.Linear(self.hidden, 1))

    def features(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        obs, act = torch.broadcast_to(obs, next_obs.shape), torch.broadcast_to(act, next_obs.shape[:-1]
                                                                               + act.shape[-1:])
        return self.inputs(torch.cat([obs, act, next_obs - obs], -1))

    def logits(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return self.current(self.features(obs, act, next_obs)).squeeze(-1)

    @torch.no_grad()
    def forward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        x = self.features(obs, act, next_obs)
        nets = list(self.snapshots) or [self.current]
        return torch.stack([torch.sigmoid(net(x).squeeze(-1)) for net in nets]).mean(0)

    def snapshot(self, keep: int) -> None:
        self.snapshots.append(copy.deepcopy(self.current).requires_grad_(False))
        while len(self.snapshots) > keep:
            del self.snapshots[0]


# ----------------------------------------------------------------------------- training


def _tensors(data: Transitions, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    obs = torch.as_tensor(data.observations[idx])
    act = torch.as_tensor(data.actions[idx])
    nxt = torch.as_tensor(data.next_observations[idx])
    target = torch.cat([nxt - obs, torch.as_tensor(data.rewards[idx]).unsqueeze(-1)], -1)
    return obs, act, nxt, target


def split(n: int, holdout: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    k = max(1, min(n - 1, int(round(n * holdout)))) if n > 1 else 0
    return order[k:], order[:k]


def fit_ensemble(model: Ensemble, data: Transitions, *, train: np.ndarray, held: np.ndarray, lr: float,
                 batch_size: int, max_epochs: int, patience: int, rng: np.random.Generator,
                 on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Likelihood training on bootstrapped batches (each member its own resample of ``train``),
    stopped when no member's held-out error improved by 1% for ``patience`` epochs; each member keeps
    its best weights and the elites are the members of lowest held-out error."""
    obs, act, _, target = _tensors(data, np.arange(len(data)))
    model.inputs.fit(np.concatenate([data.observations[train], data.actions[train]], -1))
    h_obs, h_act, h_target = obs[held], act[held], target[held]
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    boot = np.stack([rng.choice(train, len(train)) for _ in range(model.members)])
    best = model.member_errors(h_obs, h_act, h_target)
    best_state = copy.deepcopy(model.state_dict())
    since, epoch = 0, 0
    for epoch in range(1, max_epochs + 1):
        order = rng.permuted(boot, axis=1)
        for start in range(0, len(train), batch_size):
            idx = torch.as_tensor(order[:, start:start + batch_size])
            loss = model.nll(obs[idx], act[idx], target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        errors = model.member_errors(h_obs, h_act, h_target)
        better_np = errors < best * 0.99
        if better_np.any():
            better = torch.as_tensor(better_np)
            state = model.state_dict()
            for name, value in state.items():  # per member: keep the better members' weights
                if value.dim() >= 1 and value.shape[0] == model.members and name.startswith(("trunk", "head")):
                    best_state[name][better] = value[better].detach().clone()
            best = np.where(better_np, errors, best)
            since = 0
        else:
            since += 1
        if on_epoch is not None:
            on_epoch(epoch, float(best.mean()))
        if since >= patience:
            break
    for name in ("max_logvar", "min_logvar"):
        best_state[name] = model.state_dict()[name]
    best_state["inputs.mean"], best_state["inputs.std"] = model.inputs.mean, model.inputs.std
    best_state["elite_idx"] = torch.as_tensor(np.argsort(best)[:len(model.elite_idx)])
    model.load_state_dict(best_state)
    return {"epochs": epoch, "holdout_mse": [float(e) for e in best],
            "elites": [int(i) for i in model.elite_idx],
            "holdout_log_likelihood": model.log_likelihood(h_obs, h_act, h_target)}


def fit_terminal(model: TerminalModel, data: Transitions, *, epochs: int = 20, rng: np.random.Generator) -> dict:
    """Train the terminal classifier (class-balanced), or mark it ``never`` when the data has no terminal."""
    positives = int(data.terminals.sum())
    model.never.fill_(positives == 0)
    if positives == 0:
        return {"terminals": 0}
    x = torch.as_tensor(data.next_observations)
    y = torch.as_tensor(data.terminals, dtype=torch.float32)
    model.inputs.fit(data.next_observations)
    weight = torch.tensor((len(y) - positives) / positives)
    opt = torch.optim.Adam(model.net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(len(y)), max(1, len(y) // 256)):
            i = torch.as_tensor(idx)
            loss = nn.functional.binary_cross_entropy_with_logits(model.net(model.inputs(x[i])).squeeze(-1), y[i],
                                                                  pos_weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        predicted = model(x)
    return {"terminals": positives, "recall": float(predicted[y > 0].float().mean()),
            "false_positive_rate": float(predicted[y == 0].float().mean())}


def fit_dynamics_reward(reward: DynamicsReward, model: Ensemble, data: Transitions, *, train: np.ndarray,
                        held: np.ndarray, steps: int, batch_size: int, lr: float, model_lr: float,
                        adversarial_weight: float, snapshots: int, snapshot_every: int, quantile: float,
                        candidates: int, temperature: float, generator: torch.Generator,
                        rng: np.random.Generator) -> dict[str, Any]:
    """MOREC's adversarial loop: each step the discriminator learns to tell dataset transitions
    from the ensemble's (reparameterised) samples of the same (state, action), and the ensemble
    learns to fool it beside its likelihood. Snapshots every ``snapshot_every`` steps.

    Afterwards the truncation threshold is calibrated on the model itself where it is on firm
    ground: the ``quantile`` of the dynamics reward of the transitions a rollout step would pick
    (``candidates`` drawn, one by the softmax) from held-out dataset states and actions. A rollout
    then stops where its pick is less plausible than nearly all picks made from real states, i.e.
    where it has drifted off the data. (Calibrating on real transitions instead would stop nearly
    every rollout at its first step while the discriminator tells model from data easily.)"""
    obs, act, nxt, target = _tensors(data, np.arange(len(data)))
    # the floor keeps the discriminator from telling model samples apart by their noise alone on
    # dimensions the data holds constant (PlanarPush's goal: 0.94 vs 0.0006, every rollout unfiltered)
    reward.inputs.fit(np.concatenate([data.observations, data.actions,
                                      data.next_observations - data.observations], -1), floor=0.1)
    d_opt = torch.optim.Adam(reward.current.parameters(), lr=lr)
    m_opt = torch.optim.Adam(model.parameters(), lr=model_lr)
    bce = nn.functional.binary_cross_entropy_with_logits
    h_obs, h_act, h_nxt, h_target = obs[held], act[held], nxt[held], target[held]
    before = model.log_likelihood(h_obs, h_act, h_target)
    history = []
    for step in range(1, steps + 1):
        i = torch.as_tensor(rng.choice(train, batch_size))
        fake, _, _ = model.sample(obs[i], act[i], n=1, generator=generator, reparam=True)
        fake = fake[0]
        real_logit = reward.logits(obs[i], act[i], nxt[i])
        fake_logit = reward.logits(obs[i], act[i], fake.detach())
        d_loss = bce(real_logit, torch.ones_like(real_logit)) + bce(fake_logit, torch.zeros_like(fake_logit))
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        fooled = reward.logits(obs[i], act[i], fake)
        m_loss = model.nll(obs[i], act[i], target[i]) / model.members \
            + adversarial_weight * bce(fooled, torch.ones_like(fooled))
        m_opt.zero_grad()
        m_loss.backward()
        m_opt.step()
        if step % snapshot_every == 0 or step == steps:
            reward.snapshot(snapshots)
            with torch.no_grad():
                accuracy = 0.5 * (float((real_logit > 0).float().mean()) + float((fake_logit < 0).float().mean()))
            history.append({"step": step, "disc_loss": float(d_loss.detach()), "disc_accuracy": accuracy})
    with torch.no_grad():
        real_scores = reward(h_obs, h_act, h_nxt)
        fake, _, _ = model.sample(h_obs, h_act, n=candidates, generator=generator)
        fake_scores = reward(h_obs, h_act, fake)
        picked = fake_scores[pick(fake_scores, temperature, generator), torch.arange(len(h_obs))]
    reward.threshold.fill_(float(torch.quantile(picked, quantile)) if quantile > 0 else 0.0)
    return {"steps": steps, "history": history, "threshold": float(reward.threshold),
            "heldout_dynamics_reward": float(real_scores.mean()),
            "model_dynamics_reward": float(fake_scores.mean()),
            "picked_dynamics_reward": float(picked.mean()),
            "holdout_log_likelihood_before": before,
            "holdout_log_likelihood_after": model.log_likelihood(h_obs, h_act, h_target)}


# ----------------------------------------------------------------------------- rollouts


def pick(scores: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """For each column of ``scores`` [candidates, B], a candidate index drawn by softmax(scores / temperature)."""
    return torch.multinomial(torch.softmax(scores / temperature, dim=0).T, 1, generator=generator).squeeze(-1)


@dataclass
class RolloutBatch:
    observations: np.ndarray
    actions: np.ndarray  # as the policy gave them (env scale)
    rewards: np.ndarray  # model reward minus the uncertainty penalty
    next_observations: np.ndarray
    dones: np.ndarray


@dataclass
class RolloutStats:
    transitions: int = 0
    mean_length: float = 0.0  # steps a rollout ran before it ended (horizon, terminal or truncation)
    truncated: float = 0.0  # share of rollouts stopped by the dynamics reward
    mean_dynamics_reward: float | None = None  # of the transitions kept (morec)
    mean_penalty: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def rollouts(start: np.ndarray, act: Callable[[np.ndarray], np.ndarray], model: Ensemble, terminal: TerminalModel, *,
             horizon: int, penalty: float, generator: torch.Generator, dynamics_reward: DynamicsReward | None = None,
             candidates: int = 1, temperature: float = 1.0) -> tuple[RolloutBatch, RolloutStats]:
    """Roll ``act`` (batched, numpy) out in the model from ``start`` states for up to ``horizon``
    steps. With ``dynamics_reward`` (MOREC) each step draws ``candidates`` next states, picks one by
    a softmax over their dynamics reward / ``temperature`` and stops a rollout (dropping that
    transition) when the pick's dynamics reward is below ``dynamics_reward.threshold``."""
    obs = torch.as_tensor(start, dtype=torch.float32)
    alive = torch.arange(len(obs))
    lengths = np.zeros(len(obs), dtype=np.int64)
    cut = np.zeros(len(obs), dtype=bool)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "act", "rew", "next", "done")}
    scores: list[torch.Tensor] = []
    penalties: list[torch.Tensor] = []
    for _ in range(horizon):
        if len(alive) == 0:
            break
        action = torch.as_tensor(act(obs.numpy()), dtype=torch.float32)
        n = candidates if dynamics_reward is not None else 1
        nxt, rew, uncertainty = model.sample(obs, action, n=n, generator=generator)
        keep = torch.ones(len(obs), dtype=torch.bool)
        if dynamics_reward is not None:
            score = dynamics_reward(obs, action, nxt)  # [n, B]
            choice = pick(score, temperature, generator)
            cols = torch.arange(len(obs))
            nxt, rew, score = nxt[choice, cols], rew[choice, cols], score[choice, cols]
            keep = score >= dynamics_reward.threshold
            scores.append(score[keep])
        else:
            nxt, rew = nxt[0], rew[0]
        done = terminal(nxt)
        r = rew - penalty * uncertainty
        penalties.append((penalty * uncertainty)[keep])
        out["obs"].append(obs[keep].numpy())
        out["act"].append(action[keep].numpy())
        out["rew"].append(r[keep].numpy())
        out["next"].append(nxt[keep].numpy())
        out["done"].append(done[keep].numpy())
        lengths[alive[keep].numpy()] += 1
        cut[alive[~keep].numpy()] = True
        go_on = keep & ~done
        obs, alive = nxt[go_on], alive[go_on]
    batch = RolloutBatch(*(np.concatenate(out[k]) if out[k] else np.zeros((0,)) for k in
                           ("obs", "act", "rew", "next", "done")))
    kept = torch.cat(scores) if scores else torch.zeros(0)
    pens = torch.cat(penalties) if penalties else torch.zeros(0)
    stats = RolloutStats(transitions=len(batch.rewards), mean_length=float(lengths.mean()), truncated=float(cut.mean()),
                         mean_dynamics_reward=float(kept.mean()) if dynamics_reward is not None and len(kept) else None,
                         mean_penalty=float(pens.mean()) if len(pens) else 0.0)
    return batch, stats
