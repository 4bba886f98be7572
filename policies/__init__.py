"""The learners: leaves behind the core's Learner and Policy contracts (:mod:`workbench.learner`).

A task names its learner through the registry (``learner: {name: ppo}``,
``workbench.registry.LEARNERS``); these classes are importable here for code that builds on them
(``from policies import PPOLearner``). Each is imported on first use (PEP 562), so importing
``policies`` loads no torch.
"""

from __future__ import annotations

from workbench.exports import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; type checkers read it as True

__all__ = ["SB3Learner", "PPOLearner", "SACLearner", "SB3Policy"]

# Which module defines each public name.
_MODULES: dict[str, tuple[str, ...]] = {
    "policies.sb3": ("SB3Learner", "PPOLearner", "SACLearner", "SB3Policy"),
}

if TYPE_CHECKING:
    from policies.sb3 import PPOLearner, SACLearner, SB3Learner, SB3Policy

__getattr__, __dir__ = lazy_exports(globals(), _MODULES)
