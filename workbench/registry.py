"""Short names -> classes, imported lazily so an optional dependency fails only when used.

A name is either registered (``"ppo"``) or a direct ``"package.module:Attr"`` reference, so a
user can plug in their own simulator, reward source or learner without touching this file.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

__all__ = ["Registry", "UnknownName", "SIMS", "REWARDS", "LEARNERS"]


class UnknownName(LookupError):
    """Raised with a message listing the valid names; callers turn it into a TaskError."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(
            f"unknown {kind} {name!r}{hint}; valid: {', '.join(valid)}, or 'package.module:Class'"
        )


class Registry:
    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self._entries = dict(entries)

    def register(self, name: str, target: str) -> None:
        """Register ``name`` -> ``"module:Attr"``. Re-registering a name replaces it."""
        if ":" not in target:
            raise ValueError(f"target must look like 'package.module:Attr', got {target!r}")
        self._entries[name] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or ":" in name

    def target(self, name: str) -> str:
        if name in self._entries:
            return self._entries[name]
        if ":" in name:
            return name
        raise UnknownName(self.kind, name, self.names())

    def get(self, name: str) -> Any:
        """Import and return the registered attribute (usually a class)."""
        module_name, _, attr = self.target(name).partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                raise UnknownName(self.kind, name, self.names()) from None
            raise
        try:
            return getattr(module, attr)
        except AttributeError:
            raise UnknownName(self.kind, name, self.names()) from None

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)


SIMS = Registry(
    "simulator",
    {
        "mujoco": "workbench.sims.mujoco:MujocoAdapter",
        "highway": "workbench.sims.highway:HighwayAdapter",
        "carla": "workbench.sims.carla:CarlaAdapter",
        "crafter": "workbench.sims.crafter:CrafterAdapter",
        "minedojo": "workbench.sims.minedojo:MineDojoAdapter",
        "maniskill": "workbench.sims.maniskill:ManiSkillAdapter",
        "rocket_league": "workbench.sims.rocket_league:RocketLeagueAdapter",
    },
)
REWARDS = Registry(
    "reward source",
    {
        "env": "reward_synthesis.program:EnvRewardSource",
        "code": "reward_synthesis.program:CodeRewardSource",
        "text2reward": "reward_synthesis.text2reward:Text2RewardSource",
        "clip_goal": "reward_synthesis.vlm_rewards:ClipGoalSource",
        "goal_baseline": "reward_synthesis.vlm_rewards:GoalBaselineSource",
        "perceptual": "reward_synthesis.perceptual:PerceptualSource",
        "auto_mc": "reward_synthesis.auto_mc:AutoMCSource",
        "episodic": "reward_synthesis.lare:EpisodicSource",
        "lare": "reward_synthesis.lare:LaReSource",
    },
)
LEARNERS = Registry(
    "learner",
    {"ppo": "policies.sb3:PPOLearner", "sac": "policies.sb3:SACLearner"},
)
