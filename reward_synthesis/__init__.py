"""The reward layer: everything that turns a goal into a reward program, in visible parts.

    program.py   the spine's sources: the env's own reward (``env``) and a checked program file (``code``)
    safety/      the gate every program passes: sandbox (static rules, restricted namespace), worker
                 (the isolated pre-flight process), checks (pre-flight), guard + limits (run time)
    language/    rewards from words: text2reward, sketches (typed terms -> compiled programs), the Eureka
                 search, Auto MC-Reward, the reward library
    pixels/      rewards from camera frames: CLIP backbones (vlm), CLIP goal sources, combine, perceptual/
    episodic/    episodic returns and LaRe's latent-factor decoders
    llm/         the OpenAI-compatible client, cache/replay, embedded server, prompts/ and what every
                 LLM-driven source shares (sources.py)

Every source implements the core's reward contract (:mod:`workbench.reward`) and is found through
the registry (``reward: {source: NAME}``); the names below are importable for code that builds on
them. Each is imported on first use (PEP 562), so importing ``reward_synthesis`` loads no torch.
"""

from __future__ import annotations

from workbench.exports import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; type checkers read it as True

__all__ = ["EnvRewardSource", "CodeRewardSource", "CodeRewardProgram", "preflight",
           "check_inputs", "CheckReport", "static_check", "Text2RewardSource", "Sketch", "SketchInvalid",
           "sketch_schema", "validate_sketch", "compile_sketch", "AutoMCSource", "RewardLibrary",
           "ClipGoalSource", "GoalBaselineSource", "PerceptualSource", "EpisodicSource", "LaReSource"]

# Which module defines each public name.
_MODULES: dict[str, tuple[str, ...]] = {
    "reward_synthesis.program": ("EnvRewardSource", "CodeRewardSource", "CodeRewardProgram"),
    "reward_synthesis.safety.checks": ("preflight", "check_inputs", "CheckReport"),
    "reward_synthesis.safety.sandbox": ("static_check",),
    "reward_synthesis.language.text2reward": ("Text2RewardSource",),
    "reward_synthesis.language.sketches": ("Sketch", "SketchInvalid", "sketch_schema", "validate_sketch",
                                           "compile_sketch"),
    "reward_synthesis.language.auto_mc": ("AutoMCSource",),
    "reward_synthesis.language.library": ("RewardLibrary",),
    "reward_synthesis.pixels.vlm_rewards": ("ClipGoalSource", "GoalBaselineSource"),
    "reward_synthesis.pixels.perceptual.source": ("PerceptualSource",),
    "reward_synthesis.episodic.lare": ("EpisodicSource", "LaReSource"),
}

if TYPE_CHECKING:
    from reward_synthesis.episodic.lare import EpisodicSource, LaReSource
    from reward_synthesis.language.auto_mc import AutoMCSource
    from reward_synthesis.language.library import RewardLibrary
    from reward_synthesis.language.sketches import Sketch, SketchInvalid, compile_sketch, sketch_schema, validate_sketch
    from reward_synthesis.language.text2reward import Text2RewardSource
    from reward_synthesis.pixels.perceptual.source import PerceptualSource
    from reward_synthesis.pixels.vlm_rewards import ClipGoalSource, GoalBaselineSource
    from reward_synthesis.program import CodeRewardProgram, CodeRewardSource, EnvRewardSource
    from reward_synthesis.safety.checks import CheckReport, check_inputs, preflight
    from reward_synthesis.safety.sandbox import static_check

__getattr__, __dir__ = lazy_exports(globals(), _MODULES)
