"""The VLA learners behind the Learner contract: ``vla_bc``, ``grape`` and ``srpo``.

- ``vla_bc``: behaviour cloning of demonstrations; ``training.total_steps`` is the number of updates.
- ``grape`` / ``srpo``: start from a VLA (``init``: a run, or ``bc_updates`` of cloning the
  ``dataset`` first, trained once per run and kept in ``vla/bc/``), then improve it from its own
  rollouts in rounds; ``training.total_steps`` counts the rollouts' env steps. Each round runs
  ``group`` episodes for each of ``instructions_per_round`` training instructions, then updates the
  policy (see :mod:`policies.vla.objectives`) and checkpoints. ``vla/vla.json`` records every round.

Everything runs on CPU at small scale; ``device: cuda`` (or ``auto`` with a GPU present) moves the
network to the GPU with bfloat16 autocast. Rollouts step the CPU simulator in lockstep, one batched
forward pass per step for the whole group.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from policies.vla.config import VLAHyperparams, parse_hyperparams
from policies.vla.data import Demos, Trajectory, check_demo_spaces, check_instruction_env, load_demos, rollout_group
from policies.vla.model import VLA, VLAConfig, VLAPolicy, resolve_device
from policies.vla.objectives import (
    bc_loss,
    grape_scores,
    group_advantages,
    grpo_loss,
    keep_group,
    kmeans,
    preference_pairs,
    progress_rewards,
    random_shift,
    tpo_loss,
    trajectory_logp,
)
from workbench.datasets import open_dataset, require_minari
from workbench.errors import TaskError
from workbench.learner import FitHooks, TrainingInterrupted
from workbench.registry import SIMS
from workbench.runs import atomic_path, write_json

if TYPE_CHECKING:
    from workbench.runs import Run
    from workbench.spec import TaskSpec

__all__ = ["VLALearner", "VLABCLearner", "GRAPELearner", "SRPOLearner"]

STATE_FILE = "vla_state.pt"
RECORD_FILE = "vla.json"


def _key(name: str) -> str:
    return f"learner.hyperparams.{name}"


def _init_dir(init: str, base: Path, *, file: str) -> Path:
    """The model directory an ``init`` names: a run directory (its model/) or a model directory."""
    path = Path(init).expanduser()
    path = path if path.is_absolute() else base / path
    for candidate in (path / "model", path):
        if (candidate / "config.json").is_file():
            return candidate
    raise TaskError(f"init {init!r} holds no VLA checkpoint", file=file, key=_key("init"),
                    hint="a finished vla_bc run directory, or a directory with config.json and model.safetensors")


def _autocast(device: torch.device) -> Any:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def device_record(device: torch.device) -> dict[str, Any]:
    """Where a fit ran, and on a GPU its peak memory (what the run.json of a GPU run should say)."""
    if device.type != "cuda":
        return {"device": device.type}
    return {"device": device.type, "gpu": torch.cuda.get_device_name(device),
            "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}


@torch.no_grad()
def keypoint_spread(policy: VLAPolicy, demos: Demos, rng: np.random.Generator, n: int = 32) -> float:
    """How much the image keypoints vary across demonstration frames: a blind encoder (dead units,
    constant keypoints) shows as 0 long before the success rate says why."""
    idx = rng.integers(0, len(demos), n)
    keypoints = policy.net.encode_image(torch.as_tensor(demos.images[idx], device=policy.device))
    return float(keypoints.std(0).mean())


class VLALearner:
    """Behaviour cloning, shared by all three; ``rounds`` learners then learn from rollouts."""

    name: ClassVar[str]
    rounds: ClassVar[bool] = False

    # ------------------------------------------------------------------ validation
    @classmethod
    def validate_spec(cls, spec: TaskSpec, *, file: str) -> None:
        hp = parse_hyperparams(cls.name, spec, file=file)
        if hp.device == "cuda" and not torch.cuda.is_available():
            raise TaskError("device: cuda, and torch sees no GPU here", file=file, key=_key("device"),
                            hint="device: auto (cuda when present, else cpu) or cpu")
        env = SIMS.get(spec.sim.name)().make_env(spec.sim)
        try:
            check_instruction_env(env.observation_space, file=file, learner=cls.name)
            if not getattr(env.unwrapped, "instruction_set", None):
                raise TaskError(f"{spec.sim.env_id} names no instructions (instruction_set)", file=file,
                                key="sim.env_id", hint="use an instruction suite (README: 'Vision-language-action')")
            if hp.init is not None and cls.rounds:
                _init_dir(hp.init, spec.base_dir, file=file)
            elif hp.dataset is not None:
                require_minari()
                check_demo_spaces(open_dataset(hp.dataset, file=file, key=_key("dataset")), env, file=file,
                                  key=_key("dataset"))
        finally:
            env.close()

    @classmethod
    def load_checkpoint(cls, directory: Path, spec: TaskSpec) -> VLAPolicy:
        return VLAPolicy.load(directory)

    # ------------------------------------------------------------------ the network
    @staticmethod
    def new_network(hp: VLAHyperparams, env: gym.Env) -> VLA:
        space, actions = env.observation_space, env.action_space
        assert isinstance(space, gym.spaces.Dict) and isinstance(actions, gym.spaces.Box)
        config = VLAConfig(image_size=int(space["image"].shape[0]), proprio_dim=int(space["proprio"].shape[0]),
                           action_low=[float(x) for x in actions.low], action_high=[float(x) for x in actions.high],
                           bins=hp.bins, channels=hp.channels, keypoints=hp.keypoints, hidden=hp.hidden,
                           layers=hp.layers, feature_stride=hp.feature_stride)
        return VLA(config)

    # ------------------------------------------------------------------ behaviour cloning
    def clone(self, policy: VLAPolicy, optimizer: torch.optim.Optimizer, demos: Demos, hp: VLAHyperparams,
              rng: np.random.Generator, start: int, stop: int,
              after: Callable[[int, torch.Tensor], None] | None = None) -> float:
        """BC updates ``start`` .. ``stop``; ``after(step, loss)`` after each (``loss`` stays a tensor:
        reading it waits for the GPU, so a caller reads it only when it records it)."""
        net, device = policy.net, policy.device
        text = torch.as_tensor(policy.instructions(demos.texts), device=device)
        # The demonstrations go to the device once (a few hundred MB of uint8 images at most) and
        # batches are gathered there: a per-batch host-to-GPU copy would bound a GPU's throughput.
        # On CPU these are views of the arrays, no copy.
        images, proprio, instruction, actions = (torch.as_tensor(a, device=device) for a in (
            demos.images if hp.shift <= 0 else np.empty(0, np.uint8), demos.proprio, demos.instruction,
            demos.actions))
        loss = torch.tensor(float("nan"))
        net.train()
        for step in range(start + 1, stop + 1):
            idx = rng.integers(0, len(demos), hp.batch_size)
            at = torch.as_tensor(idx, device=device)
            image = (images[at] if hp.shift <= 0
                     else torch.as_tensor(random_shift(demos.images[idx], hp.shift, rng), device=device))
            with _autocast(device):
                loss = bc_loss(net, image, proprio[at], text[instruction[at]], actions[at], hp.label_sigma)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss = loss.detach()
            if after is not None:
                after(step, loss)
        return float(loss)

    # ------------------------------------------------------------------ fit
    def fit(self, spec: TaskSpec, env_fns: Sequence[Callable[[], gym.Env]], budget: int, run: Run, *,
            hooks: FitHooks, resume: bool = False) -> VLAPolicy:
        file = spec.source_path or "<task>"
        hp = parse_hyperparams(self.name, spec, file=file)
        torch.set_num_threads(spec.learner.torch_threads)
        torch.manual_seed(spec.training.seed)
        device = resolve_device(hp.device)
        rng = np.random.default_rng(np.random.SeedSequence([spec.training.seed, 23]))
        probe = env_fns[0]()
        try:
            check_instruction_env(probe.observation_space, file=file, learner=self.name)
            net = self.new_network(hp, probe)
            instructions = list(getattr(probe.unwrapped, "instruction_set", []))
        finally:
            probe.close()
        policy = VLAPolicy(net, device=device, seed=spec.training.seed)
        if self.rounds:
            return self.fit_rounds(spec, env_fns, budget, run, hooks, resume, hp, policy, rng, instructions)
        return self.fit_bc(spec, budget, run, hooks, resume, hp, policy, rng)

    def fit_bc(self, spec: TaskSpec, budget: int, run: Run, hooks: FitHooks, resume: bool, hp: VLAHyperparams,
               policy: VLAPolicy, rng: np.random.Generator) -> VLAPolicy:
        file = spec.source_path or "<task>"
        assert hp.dataset is not None
        demos = load_demos(hp.dataset, file=file, key=_key("dataset"))
        optimizer = torch.optim.AdamW(policy.net.parameters(), lr=hp.lr)
        step, record = self._restore(run, resume, policy, optimizer, rng)
        if not record:
            record = {"learner": self.name, "dataset": hp.dataset, "episodes": demos.episodes,
                      "transitions": len(demos), "instructions": demos.texts, "bc": []}
        saved = step
        started, spent = time.perf_counter(), float(record.get("seconds", 0.0))
        next_eval = (step // hooks.eval_every + 1) * hooks.eval_every if hooks.eval_every else 0

        def after(i: int, loss: torch.Tensor) -> None:
            nonlocal saved, next_eval
            if hooks.on_steps is not None and (i % 10 == 0 or i == budget):
                hooks.on_steps(i)
            if i % 100 == 0 or i == budget:
                record["bc"].append({"update": i, "loss": float(loss),
                                     "keypoint_std": keypoint_spread(policy, demos, rng)})
            if i % hooks.checkpoint_every == 0 or i == budget:
                record["seconds"] = round(spent + time.perf_counter() - started, 1)
                saved = self._checkpoint(run, i, policy, optimizer, rng, record)
            if next_eval and i >= next_eval and hooks.on_eval is not None:
                hooks.on_eval(i, policy)
                next_eval = (i // hooks.eval_every + 1) * hooks.eval_every

        try:
            self.clone(policy, optimizer, demos, hp, rng, step, budget, after)
        except KeyboardInterrupt:
            raise TrainingInterrupted(saved) from None
        write_json(run.subdir("vla") / RECORD_FILE, record | device_record(policy.device))
        return policy

    # ------------------------------------------------------------------ rounds (grape, srpo)
    def start_policy(self, spec: TaskSpec, run: Run, hp: VLAHyperparams, policy: VLAPolicy,
                     rng: np.random.Generator) -> dict[str, Any]:
        """The VLA the rounds start from: ``init``, or BC of the dataset (once per run, kept in vla/bc/)."""
        file = spec.source_path or "<task>"
        if hp.init is not None:
            directory = _init_dir(hp.init, spec.base_dir, file=file)
            policy.net.load_state_dict(VLAPolicy.from_pretrained(directory).net.state_dict())
            return {"init": str(directory)}
        kept = run.subdir("vla") / "bc"
        if (kept / "config.json").is_file():
            policy.net.load_state_dict(VLAPolicy.from_pretrained(kept).net.state_dict())
            return {"init": "vla/bc", "bc_updates": hp.bc_updates}
        assert hp.dataset is not None
        demos = load_demos(hp.dataset, file=file, key=_key("dataset"))
        optimizer = torch.optim.AdamW(policy.net.parameters(), lr=hp.lr)
        loss = self.clone(policy, optimizer, demos, hp, rng, 0, hp.bc_updates)
        tmp = kept.with_name("bc.tmp")
        policy.save(tmp)
        tmp.replace(kept)
        return {"init": "vla/bc", "bc_updates": hp.bc_updates, "bc_loss": loss, "dataset": hp.dataset}

    def fit_rounds(self, spec: TaskSpec, env_fns: Sequence[Callable[[], gym.Env]], budget: int, run: Run,
                   hooks: FitHooks, resume: bool, hp: VLAHyperparams, policy: VLAPolicy, rng: np.random.Generator,
                   instructions: list[str]) -> VLAPolicy:
        optimizer = torch.optim.AdamW(policy.net.parameters(), lr=hp.rl_lr)
        step, record = self._restore(run, resume, policy, optimizer, rng)
        if not record:
            record = {"learner": self.name, **self.start_policy(spec, run, hp, policy, rng), "rounds": [],
                      "instructions": instructions}
            self.begin(policy)
        envs = [env_fns[0]() for _ in range(hp.group)]
        saved = step
        next_eval = (step // hooks.eval_every + 1) * hooks.eval_every if hooks.eval_every else 0
        try:
            while step < budget:
                started = time.perf_counter()
                chosen = rng.choice(len(instructions), size=min(hp.instructions_per_round, len(instructions)),
                                    replace=False)
                groups = []
                for i in chosen:
                    seeds = rng.integers(0, 1_000_000, hp.group)
                    groups.append(rollout_group(envs, lambda obs: policy.sample(obs, temperature=hp.temperature),
                                                instructions[int(i)], seeds))
                step += sum(t.length for g in groups for t in g)
                stats = self.learn(policy, optimizer, groups, hp, rng)
                stats.update(round=len(record["rounds"]) + 1, env_steps=step,
                             success=float(np.mean([t.success for g in groups for t in g])),
                             seconds=round(time.perf_counter() - started, 2))
                record["rounds"].append(stats)
                if hooks.on_steps is not None:
                    hooks.on_steps(step)
                saved = self._checkpoint(run, step, policy, optimizer, rng, record)
                if next_eval and step >= next_eval and hooks.on_eval is not None:
                    hooks.on_eval(step, policy)
                    next_eval = (step // hooks.eval_every + 1) * hooks.eval_every
        except KeyboardInterrupt:
            raise TrainingInterrupted(saved) from None
        finally:
            for env in envs:
                env.close()
        write_json(run.subdir("vla") / RECORD_FILE, record | device_record(policy.device))
        return policy

    def begin(self, policy: VLAPolicy) -> None:
        """Before the first round of a run (not on resume): e.g. freeze an encoder."""

    def learn(self, policy: VLAPolicy, optimizer: torch.optim.Optimizer, groups: list[list[Trajectory]],
              hp: VLAHyperparams, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def tensors(self, policy: VLAPolicy, t: Trajectory) -> tuple[torch.Tensor, ...]:
        d = policy.device
        text = torch.as_tensor(policy.instructions([t.instruction]), device=d)
        return (torch.as_tensor(t.images, device=d), torch.as_tensor(t.proprio, device=d), text,
                torch.as_tensor(t.tokens, device=d))

    # ------------------------------------------------------------------ checkpoints
    def extra_state(self) -> dict[str, Any]:
        return {}

    def restore_extra(self, state: dict[str, Any], policy: VLAPolicy) -> None:
        pass

    def _checkpoint(self, run: Run, step: int, policy: VLAPolicy, optimizer: torch.optim.Optimizer,
                    rng: np.random.Generator, record: dict[str, Any]) -> int:
        directory = run.new_checkpoint_dir(step)
        policy.save(directory)
        state = {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                 "sampler": policy.generator.get_state(), "rng": rng.bit_generator.state, "record": record,
                 **self.extra_state()}
        with atomic_path(directory / STATE_FILE) as tmp:
            torch.save(state, tmp)
        run.commit_checkpoint(step, directory)
        run.update_info(steps=step)
        return step

    def _restore(self, run: Run, resume: bool, policy: VLAPolicy, optimizer: torch.optim.Optimizer,
                 rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
        checkpoint = run.latest_checkpoint() if resume else None
        if checkpoint is None:
            return 0, {}
        step, directory = checkpoint
        policy.net.load_state_dict(VLAPolicy.from_pretrained(directory).net.state_dict())
        # our own run's file; a GPU run's optimizer state loads anywhere (load_state_dict moves it)
        state = torch.load(directory / STATE_FILE, weights_only=False, map_location="cpu")
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        policy.generator.set_state(state["sampler"])
        rng.bit_generator.state = state["rng"]
        self.restore_extra(state, policy)
        return step, state["record"]


class VLABCLearner(VLALearner):
    """Behaviour cloning of the demonstrations (``training.total_steps`` updates)."""

    name = "vla_bc"


class GRAPELearner(VLALearner):
    """GRAPE: trajectory-wise preference optimisation against the policy at the round's start."""

    name = "grape"
    rounds = True

    def learn(self, policy: VLAPolicy, optimizer: torch.optim.Optimizer, groups: list[list[Trajectory]],
              hp: VLAHyperparams, rng: np.random.Generator) -> dict[str, Any]:
        reference = copy.deepcopy(policy.net).eval()  # iterative: this round's starting policy
        for p in reference.parameters():
            p.requires_grad_(False)
        prepared = []
        n_pairs = 0
        for group in groups:
            scores = grape_scores([t.success for t in group], [float(t.rewards.mean()) for t in group],
                                  [float(t.logp.mean()) for t in group], success_weight=hp.success_weight,
                                  cost_weight=hp.cost_weight, likelihood_weight=hp.likelihood_weight)
            pairs = preference_pairs(scores)
            if not pairs:
                continue
            tensors = [self.tensors(policy, t) for t in group]
            with torch.no_grad(), _autocast(policy.device):
                ref = torch.stack([trajectory_logp(reference, *x).sum() for x in tensors])
            prepared.append((tensors, ref, pairs))
            n_pairs += len(pairs)
        losses, margins = [], []
        policy.net.train()
        for _ in range(hp.epochs):
            for k in rng.permutation(len(prepared)):
                tensors, ref, pairs = prepared[int(k)]
                with _autocast(policy.device):
                    logp = torch.stack([trajectory_logp(policy.net, *x).sum() for x in tensors])
                w, l_ = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
                loss = tpo_loss(logp[w], logp[l_], ref[w], ref[l_], hp.beta)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.net.parameters(), 1.0)
                optimizer.step()
                losses.append(float(loss.detach()))
                margins.append(float(((logp[w] - ref[w]) - (logp[l_] - ref[l_])).mean().detach()))
        return {"pairs": n_pairs, "groups_used": len(prepared), "tpo_loss": float(np.mean(losses)) if losses else None,
                "margin": float(np.mean(margins)) if margins else None}


class SRPOLearner(VLALearner):
    """SRPO: progress rewards from the policy's own successes in a frozen latent space; GRPO updates."""

    name = "srpo"
    rounds = True
    memory_size = 64  # successful final-scene latents kept per instruction

    def __init__(self) -> None:
        self.encoder: torch.nn.Module | None = None
        self.memory: dict[str, np.ndarray] = {}

    def begin(self, policy: VLAPolicy) -> None:
        self.encoder = copy.deepcopy(policy.net.encoder).eval()  # the starting policy's image encoder, frozen
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def extra_state(self) -> dict[str, Any]:
        assert self.encoder is not None
        return {"encoder": self.encoder.state_dict(), "memory": self.memory}

    def restore_extra(self, state: dict[str, Any], policy: VLAPolicy) -> None:
        self.memory = dict(state["memory"])
        self.begin(policy)  # the architecture; the frozen weights are the checkpoint's
        assert self.encoder is not None
        self.encoder.load_state_dict(state["encoder"])

    @torch.no_grad()
    def latent(self, policy: VLAPolicy, images: np.ndarray) -> np.ndarray:
        assert self.encoder is not None
        x = torch.as_tensor(images, device=policy.device).permute(0, 3, 1, 2).float() / 255.0
        return self.encoder.to(policy.device)(x).cpu().numpy()

    def learn(self, policy: VLAPolicy, optimizer: torch.optim.Optimizer, groups: list[list[Trajectory]],
              hp: VLAHyperparams, rng: np.random.Generator) -> dict[str, Any]:
        kept = []
        progress = []
        for group in groups:
            success = [t.success for t in group]
            latents = self.latent(policy, np.stack([t.final_image for t in group]))
            instruction = group[0].instruction
            if any(success):
                memory = np.concatenate([self.memory.get(instruction, latents[:0]), latents[np.asarray(success)]])
                self.memory[instruction] = memory[-self.memory_size:]
            if not keep_group(success, hp.min_success, hp.max_success):
                continue
            rewards = progress_rewards(latents, success, kmeans(self.memory[instruction], hp.clusters, rng))
            progress.append(float(rewards[~np.asarray(success)].mean()))
            kept.append((group, group_advantages(rewards)))
        losses = []
        policy.net.train()
        for _ in range(hp.epochs):
            for k in rng.permutation(len(kept)):
                group, advantages = kept[int(k)]
                new, old, adv = [], [], []
                for t, a in zip(group, advantages):
                    with _autocast(policy.device):
                        new.append(trajectory_logp(policy.net, *self.tensors(policy, t)))
                    old.append(torch.as_tensor(t.logp, dtype=torch.float32, device=policy.device))
                    adv.append(torch.full((t.length,), float(a), device=policy.device))
                loss = grpo_loss(torch.cat(new), torch.cat(old), torch.cat(adv), hp.clip)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.net.parameters(), 1.0)
                optimizer.step()
                losses.append(float(loss.detach()))
        return {"groups_kept": len(kept), "groups": len(groups),
                "failed_progress": float(np.mean(progress)) if progress else None,
                "grpo_loss": float(np.mean(losses)) if losses else None}
