"""Vision-language-action policies (``vla_bc``, ``grape``, ``srpo``) on instruction tasks."""

from policies.vla.learners import GRAPELearner, SRPOLearner, VLABCLearner, VLALearner
from policies.vla.model import VLAPolicy

__all__ = ["VLALearner", "VLABCLearner", "GRAPELearner", "SRPOLearner", "VLAPolicy"]
