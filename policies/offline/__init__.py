"""Offline RL learners (``bc``, ``mopo``, ``morec``) on Minari datasets recorded by ``workbench data collect``."""

from policies.offline.learners import BCLearner, MOPOLearner, MORECLearner, OfflineLearner

__all__ = ["OfflineLearner", "BCLearner", "MOPOLearner", "MORECLearner"]
