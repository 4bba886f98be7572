"""The perceptual reward source: ``reward: {source: perceptual, file: rewards/x.json, model: ...}``
scores camera frames with a model learned from demos (:mod:`.model`), on the CLIP backbone it was
learned with (checked by name and probe embedding)."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from reward_synthesis.pixels.perceptual.model import REWARD_FORMULA, RUN_FILE, PerceptualModel
from reward_synthesis.pixels.vlm_rewards import PixelOptions, PixelReward, PixelSourceBase
from workbench.errors import TaskError, WorkbenchError
from workbench.reward import BuiltReward

if TYPE_CHECKING:
    import gymnasium as gym

    from reward_synthesis.pixels.vlm import ClipBackbone
    from workbench.sims.base import TaskProfile
    from workbench.spec import TaskSpec

__all__ = ["PerceptualReward", "PerceptualSource", "learning_model_file"]

_LEARNING: contextvars.ContextVar[bool] = contextvars.ContextVar("perceptual_learning", default=False)


@contextlib.contextmanager
def learning_model_file() -> Iterator[None]:
    """While the model file is being learned it need not exist yet: validate_spec skips that check."""
    token = _LEARNING.set(True)
    try:
        yield
    finally:
        _LEARNING.reset(token)


@dataclass
class _Scorer:
    """The scorer a PixelReward calls; keeps the last per-step rewards for the step components."""

    model: PerceptualModel
    text: str  # the exact file text the model came from (the run keeps a copy)
    last: np.ndarray | None = None

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        self.last = self.model.step_rewards(emb)
        return self.model.total(self.last)


@dataclass
class PerceptualReward(PixelReward):
    """A PixelReward that also reports each step's reward as ``step_<i>`` (1-based)."""

    def __call__(self, frames: np.ndarray, terms: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        total, components = super().__call__(frames, terms)
        scorer: _Scorer = self.scorer  # type: ignore[assignment]
        if scorer.last is not None:
            components.update({f"step_{i + 1}": scorer.last[:, i] for i in range(scorer.last.shape[1])})
        return total, components


class PerceptualSource(PixelSourceBase):
    ("""``reward: {source: perceptual, file: rewards/x.json}`` — steps and features learned from demos """
     """(Sermanet et al. 2016).""")

    name: ClassVar[str] = "perceptual"

    class Options(PixelOptions):
        file: str = Field(min_length=1, description="the learned perceptual model (JSON), relative to the task file")
        calibration_steps: int = Field(0, ge=0, le=100_000,
                                       description="0 = the model's own [0, 1] total (it is calibrated on the demos)")

    @classmethod
    def model_path(cls, spec: TaskSpec, opts: Any) -> Path:
        path = Path(opts.file).expanduser()
        return path if path.is_absolute() else spec.base_dir / path

    @classmethod
    def validate_spec(cls, spec: TaskSpec, *, file: str) -> None:
        super().validate_spec(spec, file=file)
        opts = cls.Options.model_validate(spec.reward.options)
        path = cls.model_path(spec, opts)
        if not path.is_file():
            if _LEARNING.get():
                return
            raise TaskError(f"perceptual reward model not found: {path}", file=file, key="reward.file",
                            hint=f"learn it from demos: workbench reward perceptual --task {file} --demos DIR "
                                 f"--record 10 --steps 3")
        try:
            learned = PerceptualModel.load(path)
        except WorkbenchError as err:
            raise TaskError(str(err), file=file, key="reward.file") from None
        found = learned.mismatch(opts.model, opts.pretrained)
        if found is not None:
            key, why = found
            raise TaskError(why, file=file, key=key,
                            hint=f"set {key}: {learned.model if key == 'reward.model' else learned.pretrained}, or "
                                 f"learn it again: workbench reward perceptual --task {file} --demos DIR "
                                 f"--steps {learned.k}")

    @classmethod
    def make_scorer(cls, opts: Any, backbone: ClipBackbone) -> Callable[[np.ndarray], np.ndarray]:
        path = Path(opts.file)  # absolute: build() resolves it against the task file
        text = path.read_text(encoding="utf-8")
        learned = PerceptualModel.from_json(text, file=str(path))
        learned.check_backbone(backbone, file=str(path))
        return _Scorer(learned, text)

    @classmethod
    def describe(cls, opts: Any) -> str:
        learned = PerceptualModel.load(Path(opts.file))
        return (f"perceptual reward: {learned.k} steps learned from {len(learned.demos)} demos "
                f"({Path(opts.file).name}, {learned.params.get('features_per_step')} features per step)")

    @classmethod
    def build(cls, spec: TaskSpec, profile: TaskProfile, env: gym.Env) -> BuiltReward:
        from workbench.spec import RewardSpec

        # make_scorer only sees the options: hand it the file's absolute path.
        path = cls.model_path(spec, cls.Options.model_validate(spec.reward.options))
        reward = RewardSpec.model_validate({**spec.reward.model_dump(mode="json"), "file": str(path)})
        built = super().build(spec.model_copy(update={"reward": reward}), profile, env)
        pixel = built.frame_reward
        assert isinstance(pixel, PixelReward) and isinstance(pixel.scorer, _Scorer)
        scorer = pixel.scorer
        built.frame_reward = PerceptualReward(**{f.name: getattr(pixel, f.name) for f in dataclasses.fields(pixel)})
        built.files[RUN_FILE] = scorer.text
        assert built.resolved is not None
        built.resolved["file"] = RUN_FILE  # relative to the run's task.yaml, i.e. the run directory
        built.record["perceptual"] = {
            "file": str(path), "sha256": hashlib.sha256(scorer.text.encode()).hexdigest(), "k": scorer.model.k,
            "demos": [d.name for d in scorer.model.demos], "reward": REWARD_FORMULA,
            "total_by_step": scorer.model.fit_info.get("total_by_step"),
        }
        return built
