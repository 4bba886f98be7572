"""Perceptual rewards from a few demonstrations (Sermanet, Xu & Levine 2016), on CLIP image
embeddings: :mod:`.model` (step discovery, feature selection, the classifier, the model file),
:mod:`.demos` (demo files and recording them), :mod:`.source` (the ``perceptual`` reward source).
"""

from reward_synthesis.pixels.perceptual.demos import DEMO_SUFFIXES, find_demos, read_demo, read_demos, record_demos
from reward_synthesis.pixels.perceptual.model import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    RUN_FILE,
    PerceptualModel,
    discover_steps,
    fit,
    learn,
)
from reward_synthesis.pixels.perceptual.source import PerceptualReward, PerceptualSource, learning_model_file

__all__ = ["DEMO_SUFFIXES", "find_demos", "read_demo", "read_demos", "record_demos", "DEFAULT_MODEL",
           "DEFAULT_PRETRAINED", "RUN_FILE", "PerceptualModel", "discover_steps", "fit", "learn", "PerceptualReward",
           "PerceptualSource", "learning_model_file"]
