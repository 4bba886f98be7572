"""The VLA learners' objectives, as small functions the learners compose and the tests check alone.

- Behaviour cloning: cross-entropy of the demonstrated action tokens, with Gaussian-smoothed targets
  (neighbouring bins are near-misses, not errors) and random-shift image augmentation.
- GRAPE (Zhang et al. 2024): each trajectory scored by success, the task's stage costs (its reward per
  step) and the policy's own likelihood; within an instruction's group, every higher-scored trajectory
  is preferred to every lower one; trajectory-wise DPO (TPO) against a frozen reference policy.
- SRPO (2025): successful trajectories of the policy itself are the reference. Their final scenes,
  embedded by a frozen image encoder, are clustered; every trajectory of a group is rewarded by how
  close its final scene came to a success cluster (1 for a success), advantages are normalised in the
  group, and a clipped-ratio update (GRPO) follows. Groups where all or none succeeded teach nothing
  and are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from policies.vla.model import VLA

__all__ = ["random_shift", "bc_loss", "trajectory_logp", "tpo_loss", "grape_scores", "preference_pairs",
           "kmeans", "progress_rewards", "keep_group", "group_advantages", "grpo_loss"]


def random_shift(images: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Each image shifted by up to ``pad`` pixels (edge-padded, then cropped back): DrQ's augmentation."""
    if pad <= 0:
        return images
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    dy, dx = rng.integers(0, 2 * pad + 1, n), rng.integers(0, 2 * pad + 1, n)
    return np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def bc_loss(net: VLA, image: torch.Tensor, proprio: torch.Tensor, text: torch.Tensor, actions: torch.Tensor,
            label_sigma: float) -> torch.Tensor:
    logits = net(image, proprio, text)
    tokens = net.tokens(actions)
    logq = torch.log_softmax(logits.float(), dim=-1)
    if label_sigma <= 0:
        return -logq.gather(-1, tokens.unsqueeze(-1)).mean() * net.config.action_dim
    bins = torch.arange(net.config.bins, device=logits.device, dtype=torch.float32)
    target = torch.exp(-0.5 * ((bins - tokens.unsqueeze(-1).float()) / label_sigma) ** 2)
    target = target / target.sum(-1, keepdim=True)
    return -(target * logq).sum(-1).sum(-1).mean()


def trajectory_logp(net: VLA, images: torch.Tensor, proprio: torch.Tensor, text: torch.Tensor,
                    tokens: torch.Tensor) -> torch.Tensor:
    """Per-step log-probabilities of a trajectory's tokens under ``net`` (shape (T,))."""
    logits = net(images, proprio, text.expand(len(images), -1))
    return net.log_prob(logits, tokens)


def tpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, chosen_ref: torch.Tensor, rejected_ref: torch.Tensor,
             beta: float) -> torch.Tensor:
    """Trajectory-wise DPO: −log σ(β[(log π(ζw) − log π_ref(ζw)) − (log π(ζl) − log π_ref(ζl))]), averaged
    over pairs; each argument holds one trajectory log-likelihood per pair."""
    margin = (chosen - chosen_ref) - (rejected - rejected_ref)
    return -F.logsigmoid(beta * margin).mean()


def grape_scores(success: Sequence[bool], mean_reward: Sequence[float], mean_logp: Sequence[float], *,
                 success_weight: float, cost_weight: float, likelihood_weight: float) -> np.ndarray:
    """GRAPE's trajectory score: success, stage costs (the task reward's mean per step, standardised in
    the group) and the policy's own mean log-likelihood per step (standardised too)."""
    def standard(x: Sequence[float]) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64)
        return (a - a.mean()) / (a.std() + 1e-8)

    return (success_weight * np.asarray(success, dtype=np.float64) + cost_weight * standard(mean_reward)
            + likelihood_weight * standard(mean_logp))


def preference_pairs(scores: np.ndarray, *, margin: float = 1e-6) -> list[tuple[int, int]]:
    """(preferred, rejected) index pairs of a group: every trajectory over every lower-scored one."""
    n = len(scores)
    return [(i, j) for i in range(n) for j in range(n) if scores[i] > scores[j] + margin]


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 20) -> np.ndarray:
    """k-means centres (k-means++ start, Lloyd's iterations) of ``points`` (N, D); k is capped at N."""
    k = min(k, len(points))
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d = np.min([((points - c) ** 2).sum(-1) for c in centres], axis=0)
        pick = rng.choice(len(points), p=d / d.sum()) if d.sum() > 0 else rng.integers(len(points))
        centres.append(points[pick])
    c = np.stack(centres)
    for _ in range(iterations):
        labels = ((points[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        c = np.stack([points[labels == j].mean(0) if np.any(labels == j) else c[j] for j in range(k)])
    return c


def progress_rewards(latents: np.ndarray, success: Sequence[bool], centres: np.ndarray) -> np.ndarray:
    """SRPO's progress reward of each trajectory of a group: 1 for a success; for a failure
    exp(−d / scale) in (0, 1), d its final scene's latent distance to the nearest success cluster and
    scale the group's median such distance (so the closest failures get the most)."""
    success = np.asarray(success, dtype=bool)
    d = np.sqrt(((latents[:, None] - centres[None]) ** 2).sum(-1)).min(1)
    failed = d[~success]
    scale = float(np.median(failed)) if len(failed) else 1.0
    rewards = np.exp(-d / max(scale, 1e-8))
    rewards[success] = 1.0
    return rewards


def keep_group(success: Sequence[bool], low: float, high: float) -> bool:
    """Whether a group teaches anything: its success share within [low, high], and not all one way."""
    s = np.asarray(success, dtype=np.float64)
    return bool(0.0 < s.mean() < 1.0 and low <= s.mean() <= high)


def group_advantages(rewards: np.ndarray) -> np.ndarray:
    return (rewards - rewards.mean()) / (rewards.std() + 1e-8)


def grpo_loss(new_logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor, clip: float) -> torch.Tensor:
    """The clipped-ratio surrogate (PPO's, per step, with each trajectory's group advantage)."""
    ratio = torch.exp(new_logp - old_logp)
    return -torch.min(ratio * advantage, ratio.clamp(1.0 - clip, 1.0 + clip) * advantage).mean()
