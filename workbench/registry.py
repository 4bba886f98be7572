"""Plug-in names -> classes checked against their contract, imported lazily so an optional
dependency fails only when used.

A name is either a built-in short name (``"ppo"``, ``"mujoco"``) or the name of an installed
entry point in the registry's group, the packaging convention for third-party plug-ins::

    # the plug-in's own pyproject.toml
    [project.entry-points."rl_workbench.learners"]
    my_learner = "my_package.learners:MyLearner"

Groups: ``rl_workbench.sims``, ``rl_workbench.rewards``, ``rl_workbench.learners`` (and
``rl_workbench.policies`` for the classes a saved ``policy.json`` names). The workbench declares
its own plug-ins the same way in its pyproject.toml; the built-in table below holds the same
names so they resolve before the package is (re)installed, and a built-in name cannot be
shadowed by another distribution. There is no free ``"package.module:Attr"`` form: a task file
cannot make the workbench import a module of its choosing.

After import, the object must be a class with every method of its contract (:attr:`Registry.contract`),
checked before anything of it is called. Every failure is a :class:`PluginError` (a
:class:`~workbench.errors.TaskError` keyed by the task key, e.g. ``sim.name``) whose message lists
the valid names.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import sys
from typing import Any

from workbench.errors import TaskError, WorkbenchError

__all__ = ["Registry", "PluginError", "UnknownName", "SIMS", "REWARDS", "LEARNERS", "POLICIES"]


def _show(name: object, limit: int = 80) -> str:
    """A name as it may appear in a message: repr (escapes control characters), bounded."""
    text = repr(name)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


class PluginError(TaskError, LookupError):
    """A plug-in name that does not resolve to a class implementing its contract."""

    def __init__(self, message: str, *, kind: str, name: str, key: str | None, hint: str):
        self.kind, self.name = kind, name
        super().__init__(message, key=key, hint=hint)


class UnknownName(PluginError):
    """A name that is neither built in nor an installed entry point; the hint lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str], *, key: str | None = None,
                 group: str | None = None):
        self.valid = valid
        close = difflib.get_close_matches(name, valid, n=1) if isinstance(name, str) else []
        near = f" (did you mean {close[0]!r}?)" if close else ""
        hint = f"valid: {', '.join(valid)}"
        if group:
            hint += f"; an installed plug-in declares an entry point in group {group!r}"
        super().__init__(f"unknown {kind} {_show(name)}{near}", kind=kind, name=name, key=key, hint=hint)


_INSTALLED: dict[tuple[str, tuple[str, ...]], dict[str, importlib.metadata.EntryPoint]] = {}


class Registry:
    """Names of one kind of plug-in -> classes implementing ``contract`` (method names)."""

    def __init__(self, kind: str, entries: dict[str, str], *, group: str | None = None, key: str | None = None,
                 contract: tuple[str, ...] = ()):
        self.kind = kind
        self.group = group
        self.key = key
        self.contract = contract
        self._entries: dict[str, str] = {}
        for name, target in entries.items():
            self.register(name, target)

    def register(self, name: str, target: str) -> None:
        """Register ``name`` -> ``"module:Attr"`` from Python code (never from a task file).
        Re-registering a name replaces it."""
        match = importlib.metadata.EntryPoint.pattern.match(target)
        if not match or not match.group("attr"):
            raise ValueError(f"target must look like 'package.module:Attr', got {target!r}")
        self._entries[name] = target

    # ------------------------------------------------------------------ names
    def _installed(self) -> dict[str, importlib.metadata.EntryPoint]:
        """The group's entry points (scanning the installed distributions takes ~8 ms: cached
        for as long as sys.path is unchanged)."""
        if self.group is None:
            return {}
        key = (self.group, tuple(sys.path))
        found = _INSTALLED.get(key)
        if found is None:
            found = {}
            for ep in importlib.metadata.entry_points(group=self.group):
                found.setdefault(ep.name, ep)  # the first distribution on sys.path wins, as for imports
            if len(_INSTALLED) > 16:
                _INSTALLED.clear()
            _INSTALLED[key] = found
        return found

    def names(self) -> list[str]:
        """Every valid name: the built-in ones and the installed entry points. Imports nothing."""
        return sorted(set(self._entries) | set(self._installed()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._installed())

    def _entry_point(self, name: str) -> importlib.metadata.EntryPoint:
        """The one lookup: a built-in name first, then an installed entry point."""
        if isinstance(name, str):
            if name in self._entries:
                return importlib.metadata.EntryPoint(name, self._entries[name], self.group or "")
            ep = self._installed().get(name)
            if ep is not None:
                return ep
        raise UnknownName(self.kind, name, self.names(), key=self.key, group=self.group)

    def target(self, name: str) -> str:
        """``"module:Attr"`` of a valid name (imports nothing)."""
        return self._entry_point(name).value

    def name_of_target(self, target: str) -> str | None:
        """The valid name whose target is exactly ``target`` (for records that stored the target)."""
        for name in self.names():
            if self.target(name) == target:
                return name
        return None

    # ------------------------------------------------------------------ loading
    def get(self, name: str) -> Any:
        """Import the named class and check it implements the contract; nothing of it is called."""
        ep = self._entry_point(name)
        try:
            obj = ep.load()
        except WorkbenchError:
            raise  # e.g. MissingDependency: already says what to install
        except Exception as err:
            raise PluginError(f"{self.kind} {_show(name)} ({ep.value}) cannot be imported: "
                              f"{type(err).__name__}: {str(err)[:300]}", kind=self.kind, name=name,
                              key=self.key, hint="reinstall the package that provides it, or pick another: "
                                                 + ", ".join(self.names())) from None
        if not isinstance(obj, type):
            raise PluginError(f"{self.kind} {_show(name)} ({ep.value}) is a {type(obj).__name__}, not a class",
                              kind=self.kind, name=name, key=self.key,
                              hint=f"point the entry point at a class; valid names: {', '.join(self.names())}")
        missing = [m for m in self.contract if not callable(getattr(obj, m, None))]
        if missing:
            raise PluginError(f"{self.kind} {_show(name)} ({ep.value}) does not implement the {self.kind} "
                              f"contract: no {', '.join(missing)}", kind=self.kind, name=name, key=self.key,
                              hint=f"a {self.kind} class has {', '.join(self.contract)}; "
                                   f"valid names: {', '.join(self.names())}")
        return obj

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
        "mujoco_qd": "workbench.sims.mujoco_qd:MujocoQDAdapter",
    },
    group="rl_workbench.sims", key="sim.name", contract=("make_env", "profile", "env_ids"),
)
REWARDS = Registry(
    "reward source",
    {
        "env": "reward_synthesis.program:EnvRewardSource",
        "code": "reward_synthesis.program:CodeRewardSource",
        "text2reward": "reward_synthesis.language.text2reward:Text2RewardSource",
        "clip_goal": "reward_synthesis.pixels.vlm_rewards:ClipGoalSource",
        "goal_baseline": "reward_synthesis.pixels.vlm_rewards:GoalBaselineSource",
        "perceptual": "reward_synthesis.pixels.perceptual.source:PerceptualSource",
        "auto_mc": "reward_synthesis.language.auto_mc:AutoMCSource",
        "episodic": "reward_synthesis.episodic.lare:EpisodicSource",
        "lare": "reward_synthesis.episodic.lare:LaReSource",
        "sketch": "reward_synthesis.language.sketch_source:SketchRewardSource",
    },
    group="rl_workbench.rewards", key="reward.source", contract=("validate_spec", "build"),
)
LEARNERS = Registry(
    "learner",
    {"ppo": "policies.sb3:PPOLearner", "sac": "policies.sb3:SACLearner",
     "ns": "policies.qd:NoveltySearchLearner", "map_elites": "policies.qd:MapElitesLearner",
     "cma_me": "policies.qd:CMAMELearner", "random_search": "policies.qd:RandomSearchLearner",
     "serene": "policies.qd:SereneLearner", "taxons": "policies.qd:TaxonsLearner",
     "stax": "policies.qd:StaxLearner", "bc": "policies.offline:BCLearner", "mopo": "policies.offline:MOPOLearner",
     "morec": "policies.offline:MORECLearner", "vla_bc": "policies.vla:VLABCLearner",
     "grape": "policies.vla:GRAPELearner", "srpo": "policies.vla:SRPOLearner"},
    group="rl_workbench.learners", key="learner.name", contract=("validate_spec", "fit", "load_checkpoint"),
)
# The classes a saved policy directory's policy.json may name (``workbench eval`` loads them).
POLICIES = Registry(
    "policy class",
    {"sb3": "policies.sb3:SB3Policy", "tanh_mlp": "policies.qd:MLPPolicy", "vla": "policies.vla:VLAPolicy"},
    group="rl_workbench.policies", key=None, contract=("predict", "save", "load"),
)
