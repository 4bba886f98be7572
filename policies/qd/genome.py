"""A genome is the flat parameter vector of a small numpy MLP controller; :class:`MLPPolicy` is one
genome behind the Policy contract (predict/save/load, ``policy.json``), so ``workbench eval``
replays it through the normal evaluator."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.learner import POLICY_FILE
from workbench.runs import atomic_path, write_json

__all__ = ["MLPController", "MLPPolicy", "POLICY_NAME"]

# policy.json records the class's target, which load_policy accepts only as the target of a
# registered rl_workbench.policies name (tanh_mlp).
POLICY_NAME = "policies.qd:MLPPolicy"


@dataclass(frozen=True)
class MLPController:
    """obs -> tanh hidden layers -> tanh output scaled to the action box ``[low, high]``.

    The genome holds, layer after layer, the weight matrix (inputs x outputs, row-major) and then
    the bias. An action bound that is not finite is taken as +-1."""

    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...] = (16,)
    low: tuple[float, ...] = field(default=())
    high: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        for name, value in (("low", self.low), ("high", self.high)):
            if not value:
                object.__setattr__(self, name, (-1.0 if name == "low" else 1.0,) * self.act_dim)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    @classmethod
    def for_spaces(cls, observation_space: Any, action_space: Any, hidden: tuple[int, ...]) -> MLPController:
        low = np.where(np.isfinite(action_space.low), action_space.low, -1.0).astype(float)
        high = np.where(np.isfinite(action_space.high), action_space.high, 1.0).astype(float)
        return cls(int(np.prod(observation_space.shape)), int(np.prod(action_space.shape)), tuple(hidden),
                   tuple(low.ravel().tolist()), tuple(high.ravel().tolist()))

    @property
    def sizes(self) -> list[int]:
        return [self.obs_dim, *self.hidden, self.act_dim]

    @property
    def n_params(self) -> int:
        s = self.sizes
        return sum(a * b + b for a, b in zip(s[:-1], s[1:]))

    def layers(self, genome: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        genome = np.asarray(genome, dtype=np.float64)
        if genome.shape != (self.n_params,):
            raise ValueError(f"genome of shape {genome.shape}, the controller has {self.n_params} parameters")
        out, i, s = [], 0, self.sizes
        for a, b in zip(s[:-1], s[1:]):
            w = genome[i:i + a * b].reshape(a, b)
            i += a * b
            out.append((w, genome[i:i + b]))
            i += b
        return out

    def act(self, layers: list[tuple[np.ndarray, np.ndarray]], obs: Any) -> np.ndarray:
        """The action for one observation, or a batch of them (leading axis), as float32: the
        search's rollouts and the saved policy give the env the very same numbers."""
        x = np.asarray(obs, dtype=np.float64)
        single = x.ndim <= 1
        h = x.reshape(1, -1) if single else x.reshape(x.shape[0], -1)
        for w, b in layers:
            h = np.tanh(h @ w + b)
        low, high = np.asarray(self.low), np.asarray(self.high)
        action = (low + (h + 1.0) * 0.5 * (high - low)).astype(np.float32)
        return action[0] if single else action

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MLPController:
        return cls(int(data["obs_dim"]), int(data["act_dim"]), tuple(data["hidden"]), tuple(data["low"]),
                   tuple(data["high"]))


class MLPPolicy:
    """One genome of an :class:`MLPController` (deterministic: ``deterministic`` is ignored)."""

    def __init__(self, controller: MLPController, genome: np.ndarray, info: dict[str, Any] | None = None):
        self.controller = controller
        self.genome = np.asarray(genome, dtype=np.float64).copy()
        self.info = dict(info or {})
        self._layers = controller.layers(self.genome)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        return self.controller.act(self._layers, observation), state

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "genome.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, self.genome)
        write_json(directory / POLICY_FILE, {"class": POLICY_NAME, "controller": self.controller.to_dict(),
                                             **({"info": self.info} if self.info else {})})

    @classmethod
    def load(cls, directory: Path) -> MLPPolicy:
        directory = Path(directory)
        meta = json.loads((directory / POLICY_FILE).read_text())
        genome = np.load(directory / "genome.npy", allow_pickle=False)
        return cls(MLPController.from_dict(meta["controller"]), genome, meta.get("info"))
