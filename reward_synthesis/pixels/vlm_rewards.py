"""Rewards from what the camera sees, scored by CLIP: VLM-RL's contrasting language goals and
VLM-RM's goal-baseline projection.

``clip_goal`` (VLM-RL, Huang et al. 2024): ``raw = α·cos(img, positive) − β·cos(img, negative)``.
``goal_baseline`` (VLM-RM, Rocamonde et al. 2023): ``raw = 1 − ½‖α·proj_L(e) + (1−α)·e − g‖²`` with
``L`` the line through the baseline and goal embeddings (α = 0 is plain cosine similarity).

Calibration: the raw score is mapped to ``vlm = clip((raw − lo) / (hi − lo), 0, 1)`` with the window
``[lo, hi]`` fitted from quantiles of rollout frames of this very task (random actions, plus the
task's reference policy when it has one) instead of a hand-picked constant; the fitted window is
written into the run's resolved task so a resume or a later ``workbench eval`` scores identically.

Composition: ``terms:`` names a state-side reward program (sandbox-checked like every program) and
``combine:`` an expression over ``vlm``, ``vlm_raw``, ``env``, ``terms`` and the program's
components, e.g. VLM-RL's ``"vlm * speed * center * angle + collision"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from reward_synthesis.pixels.combine import Combine, CombineError, compile_combine
from reward_synthesis.pixels.vlm import ClipBackbone, load_backbone
from reward_synthesis.program import build_code_program
from workbench.errors import TaskError, WorkbenchError
from workbench.reward import BuiltReward, SourceOptions, validate_options

if TYPE_CHECKING:
    import gymnasium as gym

    from workbench.sims.base import TaskProfile
    from workbench.spec import TaskSpec

__all__ = [
    "PixelOptions", "PixelReward", "PixelSourceBase", "ClipGoalSource", "GoalBaselineSource",
    "clip_goal_scores", "goal_baseline_scores", "fit_window", "collect_frames", "TERMS_FILE",
]

TERMS_FILE = "reward/terms.py"  # where a run keeps its copy of the state-side terms program
BUILTIN_NAMES = ("vlm", "vlm_raw", "env", "terms")


# ----------------------------------------------------------------------------- scores


def clip_goal_scores(image_emb: np.ndarray, positive: np.ndarray, negative: np.ndarray,
                     alpha: float, beta: float) -> np.ndarray:
    """VLM-RL's contrasting-language-goal score for unit embeddings ``[N, D]``."""
    return alpha * image_emb @ positive - beta * image_emb @ negative


def goal_baseline_scores(image_emb: np.ndarray, goal: np.ndarray, baseline: np.ndarray, alpha: float) -> np.ndarray:
    """VLM-RM's ``1 − ½‖α·proj_L(e) + (1−α)·e − g‖²``, ``L`` the line through ``baseline`` and ``goal``."""
    direction = goal - baseline
    norm = float(np.linalg.norm(direction))
    if norm < 1e-8:
        projected = np.broadcast_to(baseline, image_emb.shape)
    else:
        d = direction / norm
        projected = baseline + ((image_emb - baseline) @ d)[:, None] * d
    mixed = alpha * projected + (1.0 - alpha) * image_emb
    return 1.0 - 0.5 * np.sum((mixed - goal) ** 2, axis=1)


def fit_window(raw: np.ndarray, quantiles: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(x) for x in np.quantile(raw, quantiles))
    return lo, hi


# ----------------------------------------------------------------------------- the FrameReward


@dataclass
class PixelReward:
    """A :class:`workbench.reward.FrameReward`: embed a batch of frames once, score,
    calibrate, combine with the state-side terms."""

    name: str
    backbone: ClipBackbone
    scorer: Callable[[np.ndarray], np.ndarray]  # unit image embeddings [N, D] -> raw scores [N]
    window: tuple[float, float] | None
    combine: Combine

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        if self.window is None:
            return raw
        lo, hi = self.window
        return np.clip((raw - lo) / (hi - lo), 0.0, 1.0)

    def raw_scores(self, frames: np.ndarray) -> np.ndarray:
        return np.asarray(self.scorer(self.backbone.encode_frames(frames)), dtype=np.float64)

    def __call__(self, frames: np.ndarray, terms: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raw = self.raw_scores(frames)
        vlm = self.calibrate(raw)
        n = len(raw)
        values = {"terms": np.zeros(n), "env": np.zeros(n), **terms, "vlm": vlm, "vlm_raw": raw}
        total = np.broadcast_to(self.combine(values), (n,)).astype(np.float64)
        return total, {"vlm": vlm, "vlm_raw": raw}


# ----------------------------------------------------------------------------- frames


def collect_frames(spec: TaskSpec, profile: TaskProfile, *, steps: int, seed: int = 0,
                   max_episode_steps: int = 200) -> np.ndarray:
    """``steps`` rendered frames of this task: half from the reference policy (if the task has one),
    the rest from random actions, resetting at episode ends."""
    from workbench.registry import SIMS

    env = SIMS.get(spec.sim.name)().make_env(spec.sim, render_mode="rgb_array")
    frames: list[np.ndarray] = []
    try:
        env.action_space.seed(seed)
        policies: list[Callable[[], Any]] = [env.action_space.sample]
        if profile.reference is not None:
            policies.insert(0, lambda: profile.reference(env.unwrapped))
        per_policy = [steps // len(policies)] * len(policies)
        per_policy[-1] += steps - sum(per_policy)
        for k, (act, budget) in enumerate(zip(policies, per_policy)):
            env.reset(seed=seed + k)
            t = 0
            while budget > 0:
                _, _, terminated, truncated, _ = env.step(np.asarray(act(), dtype=env.action_space.dtype))
                frames.append(np.asarray(env.render()))
                budget -= 1
                t += 1
                if terminated or truncated or t >= max_episode_steps:
                    env.reset()
                    t = 0
    finally:
        env.close()
    return np.stack(frames)


# ----------------------------------------------------------------------------- sources


class PixelOptions(SourceOptions):
    """Options every CLIP-scored source shares (the keys of ``reward:`` besides ``source``)."""

    model: str = Field("ViT-B-32", description="open_clip architecture (open_clip.list_models())")
    pretrained: str | None = Field(
        "laion2b_s34b_b79k",
        description="open_clip pretrained tag or checkpoint file; null = random weights (tests only)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto | cpu | cuda[:n]")
    batch_size: int = Field(64, gt=0, le=4096, description="frames per forward pass")
    terms: str | None = Field(None, description="state-side reward program file combined with the pixel score")
    combine: str | None = Field(None, description="expression over vlm, vlm_raw, env, terms and the terms' components")
    calibration_steps: int = Field(256, ge=0, le=100_000,
                                   description="rollout frames that fit the window; 0 = raw scores")
    window: tuple[float, float] | None = Field(None, description="fixed [lo, hi] normalisation window (skips fitting)")
    window_quantiles: tuple[float, float] = Field((0.01, 0.99), description="quantiles of rollout scores -> window")
    samples: int = Field(256, gt=0, le=100_000, description="states sampled for the terms program's pre-flight")

    @model_validator(mode="after")
    def _check(self) -> PixelOptions:
        if self.window is not None and not self.window[0] < self.window[1]:
            raise ValueError("window must be [lo, hi] with lo < hi")
        q0, q1 = self.window_quantiles
        if not 0.0 <= q0 < q1 <= 1.0:
            raise ValueError("window_quantiles must satisfy 0 <= lo < hi <= 1")
        return self


class PixelSourceBase:
    """Shared build steps; subclasses give ``Options`` and ``make_scorer``."""

    Options: ClassVar[type[PixelOptions]] = PixelOptions
    name: ClassVar[str] = "pixel"

    @classmethod
    def make_scorer(cls, opts: Any, backbone: ClipBackbone) -> Callable[[np.ndarray], np.ndarray]:
        raise NotImplementedError

    @classmethod
    def describe(cls, opts: Any) -> str:
        raise NotImplementedError

    @classmethod
    def _terms_path(cls, spec: TaskSpec, opts: PixelOptions) -> Path | None:
        if opts.terms is None:
            return None
        path = Path(opts.terms)
        return path if path.is_absolute() else spec.base_dir / path

    @classmethod
    def validate_spec(cls, spec: TaskSpec, *, file: str) -> None:
        opts = validate_options(cls.Options, spec, file)
        path = cls._terms_path(spec, opts)
        if path is not None and not path.is_file():
            raise TaskError(f"terms program not found: {path}", file=file, key="reward.terms",
                            hint="give a .py file defining compute_reward(state, action), relative to the task file")
        if opts.combine is not None:
            # Names are checked again at build time, against the terms program's components.
            try:
                compile_combine(opts.combine, None)
            except CombineError as err:
                raise TaskError(f"bad combine expression: {err}", file=file, key="reward.combine",
                                hint='e.g. "vlm * speed * center + collision"') from None

    @classmethod
    def build(cls, spec: TaskSpec, profile: TaskProfile, env: gym.Env) -> BuiltReward:
        file = spec.source_path
        opts = cls.Options.model_validate(spec.reward.options)
        backbone = load_backbone(opts.model, opts.pretrained, device=opts.device, base_dir=spec.base_dir, file=file)
        backbone.batch_size = opts.batch_size
        scorer = cls.make_scorer(opts, backbone)

        terms_built: BuiltReward | None = None
        names = list(BUILTIN_NAMES)
        terms_path = cls._terms_path(spec, opts)
        if terms_path is not None:
            terms_built = build_code_program(terms_path, profile, env, samples=opts.samples)
            names += sorted(_component_names(terms_built.program, env, profile))
        expression = opts.combine or ("vlm + terms" if terms_path is not None else "vlm")
        try:
            combine = compile_combine(expression, names)
        except CombineError as err:
            raise TaskError(f"bad combine expression: {err}", file=file, key="reward.combine",
                            hint="names come from the terms program's components and vlm, vlm_raw, env, "
                                 "terms") from None

        record: dict[str, Any] = {"model": opts.model, "pretrained": backbone.pretrained,
                                  "random_weights": backbone.random_weights, "device": backbone.device,
                                  "combine": expression}
        window = opts.window
        if window is None and opts.calibration_steps > 0:
            frames = collect_frames(spec, profile, steps=opts.calibration_steps, seed=spec.training.seed)
            raw = np.asarray(scorer(backbone.encode_frames(frames)), dtype=np.float64)
            lo, hi = fit_window(raw, opts.window_quantiles)
            if not hi - lo > 1e-9:
                raise WorkbenchError(
                    f"{file}: reward: the {cls.name} scores of {len(raw)} rollout frames are all {lo:.6g}: "
                    f"the prompts cannot tell this task's frames apart\n"
                    f"  fix: check the camera (sim.kwargs) shows the scene, reword the prompts, or set reward.window")
            window = (lo, hi)
            record["calibration"] = {"window": [lo, hi], "frames": int(len(raw)),
                                     "quantiles": list(opts.window_quantiles),
                                     "raw": {"min": float(raw.min()), "max": float(raw.max()),
                                             "mean": float(raw.mean()), "std": float(raw.std())}}
        elif window is not None:
            record["calibration"] = {"window": list(window), "from": "task file"}

        reward = PixelReward(cls.name, backbone, scorer, window, combine)
        resolved = spec.reward.model_dump(mode="json")
        if window is not None:
            resolved["window"] = [float(window[0]), float(window[1])]
        if backbone.pretrained is not None and Path(backbone.pretrained).is_file():
            resolved["pretrained"] = backbone.pretrained  # absolute: the run dir is elsewhere
        files: dict[str, str] = {}
        if terms_built is not None:
            files[TERMS_FILE] = terms_built.source_text or ""
            resolved["terms"] = TERMS_FILE
            record["terms"] = {"file": str(terms_path), "sha256": terms_built.program.sha256,  # type: ignore[union-attr]
                               "checks": terms_built.report.to_dict() if terms_built.report else None}
        weights = "RANDOM weights" if backbone.random_weights else opts.pretrained
        description = f"{cls.describe(opts)} [{opts.model}, {weights}; combine: {expression}]"
        return BuiltReward(terms_built.program if terms_built else None, description, record=record,
                           files=files, frame_reward=reward, resolved=resolved)


def _component_names(program: Any, env: gym.Env, profile: TaskProfile) -> set[str]:
    from reward_synthesis.safety.checks import collect_samples

    (state, action), = collect_samples(env, profile.schema, n=1)
    _, components = program(state, action, state)
    return set(components)


class ClipGoalSource(PixelSourceBase):
    """``reward: {source: clip_goal, positive: ..., negative: ...}`` — VLM-RL's CLG reward."""

    name = "clip_goal"

    class Options(PixelOptions):
        positive: str = Field(min_length=1, description="what success looks like, in words")
        negative: str = Field(min_length=1, description="what to avoid, in words (the contrast)")
        alpha: float = Field(1.0, ge=0, description="weight of the positive similarity")
        beta: float = Field(1.0, ge=0, description="weight of the negative similarity")

    @classmethod
    def make_scorer(cls, opts: Any, backbone: ClipBackbone) -> Callable[[np.ndarray], np.ndarray]:
        pos, neg = backbone.encode_text([opts.positive, opts.negative])
        return lambda emb: clip_goal_scores(emb, pos, neg, opts.alpha, opts.beta)

    @classmethod
    def describe(cls, opts: Any) -> str:
        return f"CLIP contrasting goals: +{opts.alpha:g}·'{opts.positive}' −{opts.beta:g}·'{opts.negative}'"


class GoalBaselineSource(PixelSourceBase):
    """``reward: {source: goal_baseline, goal: ..., baseline: ..., alpha: 0.5}`` — VLM-RM."""

    name = "goal_baseline"

    class Options(PixelOptions):
        goal: str = Field(min_length=1, description="the goal state, in words")
        baseline: str = Field(min_length=1, description="a neutral description of the scene")
        alpha: float = Field(0.5, ge=0, le=1, description="projection strength; 0 = plain cosine")
        calibration_steps: int = Field(0, ge=0, le=100_000, description="0 = the formula's raw value (VLM-RM)")

    @classmethod
    def make_scorer(cls, opts: Any, backbone: ClipBackbone) -> Callable[[np.ndarray], np.ndarray]:
        goal, baseline = backbone.encode_text([opts.goal, opts.baseline])
        return lambda emb: goal_baseline_scores(emb, goal, baseline, opts.alpha)

    @classmethod
    def describe(cls, opts: Any) -> str:
        return f"CLIP goal-baseline (α={opts.alpha:g}): '{opts.goal}' vs '{opts.baseline}'"
