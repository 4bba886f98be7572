"""A small vision-language-action network and the policy that wraps it.

The VLA reads the camera image (a CNN with a spatial softmax: image keypoints, as in Levine et al.'s
visuomotor policies), the instruction (a frozen all-MiniLM-L6-v2 sentence embedding,
``workbench.text.embed``) and the arm's joint state, and writes each action dimension as one of
``bins`` tokens (OpenVLA's discretisation: 256 uniform bins over the action range). Token
log-probabilities give the trajectory likelihoods GRAPE and SRPO optimise.

A saved policy is a Hugging Face-style directory: ``config.json`` (the architecture) and
``model.safetensors`` (the weights), plus ``policy.json`` naming :class:`VLAPolicy`.
:meth:`VLAPolicy.from_pretrained` builds the network from a ``config.json`` and loads the weights
from a local directory, which is also how a user brings a checkpoint trained elsewhere.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.errors import RunDirError
from workbench.learner import POLICY_FILE
from workbench.runs import atomic_path, write_json

__all__ = ["VLAConfig", "VLA", "VLAPolicy", "InstructionCache", "resolve_device"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class VLAConfig:
    """The architecture (all a checkpoint needs besides its weights)."""

    image_size: int
    proprio_dim: int
    action_low: list[float]
    action_high: list[float]
    bins: int = 256
    channels: int = 32
    keypoints: int = 32
    text_dim: int = 384
    hidden: int = 256
    layers: int = 2
    feature_stride: int = 2  # the second conv's stride: 1 keeps a finer keypoint map (slower)
    architecture: str = "workbench-vla-v2"
    text_encoder: str = "all-MiniLM-L6-v2"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def action_dim(self) -> int:
        return len(self.action_low)


class SpatialSoftmax(nn.Module):
    """Each channel's expected (x, y) image position under a softmax over its pixels."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, c, h, w = features.shape
        weights = torch.softmax(features.reshape(b, c, h * w), dim=-1).reshape(b, c, h, w)
        ys = torch.linspace(-1.0, 1.0, h, device=features.device, dtype=features.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=features.device, dtype=features.dtype)
        x = (weights.sum(dim=2) * xs).sum(dim=-1)
        y = (weights.sum(dim=3) * ys).sum(dim=-1)
        return torch.cat([x, y], dim=1)


class VLA(nn.Module):
    def __init__(self, config: VLAConfig):
        super().__init__()
        self.config = c = config
        # GroupNorm + GELU: with plain ReLUs every unit of the second conv died within 10k BC updates
        # (lr 1e-3), the keypoints went constant and the policy was blind (3% success)
        groups = math.gcd(8, c.channels)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c.channels, 5, stride=2, padding=2), nn.GroupNorm(groups, c.channels), nn.GELU(),
            nn.Conv2d(c.channels, c.channels, 3, stride=c.feature_stride, padding=1), nn.GroupNorm(groups, c.channels),
            nn.GELU(), nn.Conv2d(c.channels, c.keypoints, 3, padding=1), SpatialSoftmax())
        self.text = nn.Sequential(nn.Linear(c.text_dim, c.hidden), nn.ReLU())
        trunk: list[nn.Module] = []
        width = 2 * c.keypoints + c.proprio_dim + c.hidden
        for _ in range(c.layers):
            trunk += [nn.Linear(width, c.hidden), nn.ReLU()]
            width = c.hidden
        self.trunk = nn.Sequential(*trunk)
        self.head = nn.Linear(width, c.action_dim * c.bins)
        self.register_buffer("low", torch.tensor(c.action_low, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(c.action_high, dtype=torch.float32))

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """Image keypoints from uint8 (B, H, W, 3) frames."""
        return self.encoder(image.permute(0, 3, 1, 2).float() / 255.0)

    def forward(self, image: torch.Tensor, proprio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Action-token logits, shape (B, action_dim, bins)."""
        x = torch.cat([self.encode_image(image), proprio.float(), self.text(text.float())], dim=1)
        return self.head(self.trunk(x)).reshape(-1, self.config.action_dim, self.config.bins)

    # tokens <-> actions ---------------------------------------------------------------------
    def tokens(self, actions: torch.Tensor) -> torch.Tensor:
        unit = (actions.float() - self.low) / (self.high - self.low)
        return torch.round(unit.clamp(0.0, 1.0) * (self.config.bins - 1)).long()

    def actions(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.low + tokens.float() / (self.config.bins - 1) * (self.high - self.low)

    def log_prob(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probability of each step's action (summed over its dimensions), shape (B,)."""
        return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(-1)


class InstructionCache:
    """Instruction embeddings, computed once per distinct text."""

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            from workbench.text import embed

            for text, vector in zip(missing, embed(missing)):
                self._cache[text] = vector.astype(np.float32)
        return np.stack([self._cache[t] for t in texts])


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class VLAPolicy:
    """The SB3-shaped policy ``workbench eval`` runs: ``predict(obs)`` on one observation dict
    (image, proprio, instruction) or a batch of them (arrays stacked, instructions a list)."""

    def __init__(self, net: VLA, *, device: torch.device | str = "cpu", seed: int = 0):
        self.net = net.to(device)
        self.device = torch.device(device)
        self.instructions = InstructionCache()
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def batch(self, obs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        image = np.asarray(obs["image"])
        single = image.ndim == 3
        texts = [obs["instruction"]] if single else list(obs["instruction"])
        proprio = np.asarray(obs["proprio"], dtype=np.float32)
        if single:
            image, proprio = image[None], proprio[None]
        to = self.device
        return (torch.as_tensor(image, device=to), torch.as_tensor(proprio, device=to),
                torch.as_tensor(self.instructions(texts), device=to), single)

    @torch.no_grad()
    def sample(self, obs: dict[str, Any], *, deterministic: bool = False,
               temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(actions, tokens, log-probs) for a batch of observations."""
        image, proprio, text, _ = self.batch(obs)
        self.net.eval()
        logits = self.net(image, proprio, text)
        if deterministic:
            tokens = logits.argmax(-1)
        else:
            probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
            tokens = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=self.generator)
            tokens = tokens.reshape(probs.shape[:-1]).to(logits.device)
        logp = self.net.log_prob(logits, tokens)
        return (self.net.actions(tokens).cpu().numpy(), tokens.cpu().numpy(), logp.cpu().numpy())

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        single = np.asarray(observation["image"]).ndim == 3
        actions, _, _ = self.sample(observation, deterministic=deterministic)
        return (actions[0] if single else actions), state

    # saving ---------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / CONFIG_FILE, asdict(self.net.config))
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}, str(tmp))
        write_json(directory / POLICY_FILE, {"class": "vla"})

    @classmethod
    def load(cls, directory: Path) -> VLAPolicy:
        return cls.from_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str = "cpu") -> VLAPolicy:
        """A VLA from a local checkpoint directory: its ``config.json`` builds the network and
        ``model.safetensors`` fills it (a missing or misshapen weight is an error, not ignored)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config_file, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        if not config_file.is_file() or not weights.is_file():
            raise RunDirError(f"{directory}: not a VLA checkpoint (needs {CONFIG_FILE} and {WEIGHTS_FILE})\n"
                              "  fix: point at a vla_bc / grape / srpo run's model/ directory")
        try:
            raw = json.loads(config_file.read_text())
            config = VLAConfig(**raw)
        except (ValueError, TypeError) as err:
            raise RunDirError(f"{config_file}: not a VLA config ({err})\n"
                              "  fix: a config.json written by VLAPolicy.save") from None
        net = VLA(config)
        try:
            net.load_state_dict(load_file(str(weights)))
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0][:300]
            raise RunDirError(f"{weights}: does not fit {config_file} ({first})\n"
                              "  fix: keep a checkpoint's config.json and weights together") from None
        return cls(net, device=resolve_device(device))
