"""The learners: leaves behind the core's Learner and Policy contracts (:mod:`workbench.learner`).

A task names its learner through the registry (``learner: {name: ppo}``,
``workbench.registry.LEARNERS``); these classes are importable here for code that builds on them
(``from policies import PPOLearner``). Each is imported on first use (PEP 562), so importing
``policies`` loads no torch.
"""

from __future__ import annotations

from importlib import import_module as _import_module

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; type checkers read it as True

__all__ = ["SB3Learner", "PPOLearner", "SACLearner", "SB3Policy"]

# Which module defines each public name.
_MODULES: dict[str, tuple[str, ...]] = {
    "policies.sb3": ("SB3Learner", "PPOLearner", "SACLearner", "SB3Policy"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

if TYPE_CHECKING:
    from policies.sb3 import PPOLearner, SACLearner, SB3Learner, SB3Policy


def __getattr__(name: str) -> object:
    """Import a public name's module on first use and keep the name here."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
