"""Demonstrations and rollouts for the VLA learners: what they train on.

Demonstrations are Minari datasets recorded in an instruction task (``workbench data collect
TASK.yaml --policy reference``): per step the camera image, the joint state, the instruction and
the action. Rollouts are the policy's own episodes, run a group at a time in lockstep so one batched
forward pass acts for every env.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from workbench.datasets import open_dataset
from workbench.errors import TaskError

__all__ = ["Demos", "load_demos", "check_instruction_env", "Trajectory", "rollout_group"]

OBS_KEYS = ("image", "proprio", "instruction")


@dataclass
class Demos:
    images: np.ndarray  # (N, H, W, 3) uint8
    proprio: np.ndarray  # (N, P) float32
    instruction: np.ndarray  # (N,) index into texts
    texts: list[str]
    actions: np.ndarray  # (N, A) float32
    episodes: int

    def __len__(self) -> int:
        return len(self.actions)


def check_instruction_env(space: gym.Space, *, file: str, learner: str) -> None:
    """The task's env observes what a VLA reads: a Dict with an image, a joint state and an instruction."""
    if not isinstance(space, gym.spaces.Dict) or set(OBS_KEYS) - set(space.spaces):
        raise TaskError(f"{learner} needs an instruction task (observations: image, proprio, instruction); "
                        f"this env observes {type(space).__name__}", file=file, key="sim.env_id",
                        hint="use an instruction suite, e.g. env_id: workbench/PlanarPushInstruct-v0 "
                             "(tasks/vla/planar_push_bc.yaml)")


def check_demo_spaces(dataset: Any, env: gym.Env, *, file: str, key: str) -> None:
    ours, theirs = env.observation_space, dataset.observation_space
    if not isinstance(theirs, gym.spaces.Dict) or set(OBS_KEYS) - set(theirs.spaces):
        raise TaskError(f"dataset {dataset.spec.dataset_id!r} holds no instruction demonstrations (observations: "
                        f"{type(theirs).__name__})", file=file, key=key,
                        hint="record them in this task: workbench data collect TASK.yaml --policy reference "
                             "--episodes 200 --out ID")
    assert isinstance(ours, gym.spaces.Dict)
    for name in ("image", "proprio"):
        if ours[name].shape != theirs[name].shape:
            raise TaskError(f"dataset {dataset.spec.dataset_id!r} has {name} of shape {theirs[name].shape}; this "
                            f"task's env has {ours[name].shape}", file=file, key=key,
                            hint="record the demonstrations with this task's sim.kwargs (e.g. image_size)")
    if dataset.action_space.shape != env.action_space.shape:
        raise TaskError(f"dataset {dataset.spec.dataset_id!r} has actions of shape {dataset.action_space.shape}; "
                        f"this task's env has {env.action_space.shape}", file=file, key=key,
                        hint="name demonstrations recorded in this task's env (`workbench data list`)")


def load_demos(name: str, *, file: str, key: str) -> Demos:
    dataset = open_dataset(name, file=file, key=key)
    images, proprio, instructions, actions = [], [], [], []
    texts: dict[str, int] = {}
    episodes = 0
    for episode in dataset.iterate_episodes():
        obs = episode.observations
        steps = len(episode.actions)
        images.append(np.asarray(obs["image"][:steps], dtype=np.uint8))
        proprio.append(np.asarray(obs["proprio"][:steps], dtype=np.float32))
        instructions.extend(texts.setdefault(str(t), len(texts)) for t in list(obs["instruction"])[:steps])
        actions.append(np.asarray(episode.actions, dtype=np.float32))
        episodes += 1
    if not episodes:
        raise TaskError(f"dataset {name!r} has no episodes", file=file, key=key, hint="record some demonstrations")
    return Demos(np.concatenate(images), np.concatenate(proprio), np.asarray(instructions), list(texts),
                 np.concatenate(actions), episodes)


@dataclass
class Trajectory:
    """One rollout: the observations it acted on, the tokens it sampled and how it went."""

    instruction: str
    seed: int
    images: np.ndarray  # (T, H, W, 3): the observation before each action
    proprio: np.ndarray  # (T, P)
    tokens: np.ndarray  # (T, A)
    logp: np.ndarray  # (T,) log-probability of each action when it was sampled
    rewards: np.ndarray  # (T,) the task's reward (through the reward layer)
    final_image: np.ndarray  # the observation after the last action
    success: bool

    @property
    def length(self) -> int:
        return len(self.tokens)


Sampler = Callable[[dict[str, Any]], tuple[np.ndarray, np.ndarray, np.ndarray]]


def rollout_group(envs: Sequence[gym.Env], sample: Sampler, instruction: str, seeds: Sequence[int]) -> list[Trajectory]:
    """One episode per env (env i reset with ``seeds[i]`` and the ``instruction``), stepped in
    lockstep: ``sample(batch_obs) -> (actions, tokens, logp)`` acts for every live env at once."""
    assert len(envs) == len(seeds)
    obs = [env.reset(seed=int(s), options={"instruction": instruction})[0] for env, s in zip(envs, seeds)]
    record: list[dict[str, list[Any]]] = [{"images": [], "proprio": [], "tokens": [], "logp": [], "rewards": []}
                                          for _ in envs]
    alive = list(range(len(envs)))
    success = [False] * len(envs)
    while alive:
        batch = {"image": np.stack([obs[i]["image"] for i in alive]),
                 "proprio": np.stack([obs[i]["proprio"] for i in alive]),
                 "instruction": [obs[i]["instruction"] for i in alive]}
        actions, tokens, logp = sample(batch)
        still = []
        for j, i in enumerate(alive):
            r = record[i]
            r["images"].append(obs[i]["image"])
            r["proprio"].append(obs[i]["proprio"])
            r["tokens"].append(tokens[j])
            r["logp"].append(float(logp[j]))
            obs[i], reward, terminated, truncated, info = envs[i].step(actions[j])
            r["rewards"].append(float(reward))
            if terminated or truncated:
                success[i] = bool(info.get("is_success", False))
            else:
                still.append(i)
        alive = still
    return [Trajectory(instruction, int(seeds[i]), np.stack(r["images"]), np.stack(r["proprio"]),
                       np.stack(r["tokens"]), np.asarray(r["logp"]), np.asarray(r["rewards"]),
                       np.asarray(obs[i]["image"]), success[i]) for i, r in enumerate(record)]
