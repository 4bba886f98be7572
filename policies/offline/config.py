"""``learner.hyperparams`` of the offline learners (``bc``, ``mopo``, ``morec``), validated before
anything runs: a mistake is one TaskError naming the file, the key and the fix (exit 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from workbench.errors import TaskError
from workbench.spec import validate_learner_hyperparams

if TYPE_CHECKING:
    from workbench.spec import TaskSpec

__all__ = ["OfflineHyperparams", "KEYS", "parse_hyperparams"]


class OfflineHyperparams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(description="a local Minari dataset id (`workbench data list`)")
    batch_size: int = Field(256, ge=2, le=100_000)
    # SAC (stable-baselines3): its constructor's own keys, e.g. learning_rate, gamma, tau, ent_coef
    sac: dict[str, Any] = Field(default_factory=dict)
    hidden: list[int] = Field(default_factory=lambda: [256, 256], max_length=8, description="actor / critic layers")
    # the dynamics ensemble (MOPO)
    ensemble: int = Field(7, ge=1, le=64, description="members of the probabilistic ensemble")
    elites: int = Field(5, ge=1, le=64, description="members kept (best held-out error) for rollouts")
    model_hidden: int = Field(200, ge=8, le=4096)
    model_layers: int = Field(4, ge=1, le=8)
    model_lr: float = Field(1e-3, gt=0, le=1)
    model_batch_size: int = Field(256, ge=2, le=100_000)
    # MOPO trains the ensemble to convergence on a GPU; on 2 CPU cores one epoch of a 30k-transition
    # dataset takes ~1-2 s at these sizes, and 200 epochs were still improving it by 1% (Hopper)
    model_max_epochs: int = Field(50, ge=1, le=100_000)
    model_patience: int = Field(5, ge=1, le=10_000, description="epochs without a 1% better held-out error")
    holdout: float = Field(0.1, gt=0, lt=1, description="share of transitions held out of model training")
    # model rollouts
    rollout_length: int | None = Field(None, ge=1, le=1000, description="horizon (mopo 5, morec 100)")
    rollout_batch: int = Field(1000, ge=1, le=1_000_000, description="rollouts started per rollout round")
    rollout_every: int = Field(250, ge=1, le=1_000_000, description="policy updates between rollout rounds")
    retain_rounds: int = Field(5, ge=1, le=1000, description="rounds of model transitions kept in the buffer")
    real_ratio: float = Field(0.05, ge=0, le=1, description="share of each SAC batch from the dataset")
    penalty: float | None = Field(None, ge=0, le=1000, description="uncertainty penalty λ (mopo 1.0, morec 0.1)")
    # morec: the dynamics reward (a discriminator between dataset and model transitions)
    adversarial_steps: int = Field(1000, ge=1, le=10_000_000, description="discriminator / model update pairs")
    adversarial_weight: float = Field(0.1, ge=0, le=100, description="weight of fooling the discriminator in "
                                      "the model's loss (beside its likelihood)")
    disc_hidden: int = Field(256, ge=8, le=4096)
    disc_lr: float = Field(3e-4, gt=0, le=1)
    snapshots: int = Field(5, ge=1, le=100, description="past discriminators averaged into the dynamics reward")
    snapshot_every: int = Field(200, ge=1, le=1_000_000, description="adversarial steps between snapshots")
    candidates: int = Field(10, ge=1, le=1000, description="next states drawn per rollout step")
    temperature: float = Field(0.1, gt=0, le=100, description="softmax temperature over candidates' dynamics reward")
    threshold_quantile: float = Field(0.05, ge=0, lt=1, description="a rollout stops when its pick's dynamics "
                                      "reward is below this quantile of the picks made from held-out dataset states")


_COMMON = {"dataset", "batch_size", "sac", "hidden"}
_MODEL = {"ensemble", "elites", "model_hidden", "model_layers", "model_lr", "model_batch_size", "model_max_epochs",
          "model_patience", "holdout", "rollout_length", "rollout_batch", "rollout_every", "retain_rounds",
          "real_ratio", "penalty"}
KEYS: dict[str, set[str]] = {
    "bc": {"dataset", "batch_size", "hidden", "sac"},
    "mopo": _COMMON | _MODEL,
    "morec": _COMMON | _MODEL | {"adversarial_steps", "adversarial_weight", "disc_hidden", "disc_lr", "snapshots",
                                 "snapshot_every", "candidates", "temperature", "threshold_quantile"},
}
DEFAULTS: dict[str, dict[str, Any]] = {"mopo": {"rollout_length": 5, "penalty": 1.0},
                                       "morec": {"rollout_length": 100, "penalty": 0.1}}


def _key(name: str) -> str:
    return f"learner.hyperparams.{name}"


def parse_hyperparams(learner: str, spec: TaskSpec, *, file: str) -> OfflineHyperparams:
    raw = dict(spec.learner.hyperparams)
    if "dataset" not in raw:
        raise TaskError(f"{learner} learns from a dataset and none is named", file=file, key=_key("dataset"),
                        hint="add learner.hyperparams.dataset: ID (`workbench data list` shows the local ones)")
    hp = validate_learner_hyperparams(OfflineHyperparams, {**DEFAULTS.get(learner, {}), **raw}, learner=learner,
                                      keys=KEYS[learner], file=file,
                                      hint="see the README section 'Offline RL' for each key")
    if hp.elites > hp.ensemble:
        raise TaskError(f"elites ({hp.elites}) must be at most ensemble ({hp.ensemble})", file=file,
                        key=_key("elites"), hint="lower elites or raise ensemble")
    if any(h < 1 or h > 4096 for h in hp.hidden):
        raise TaskError("hidden layer sizes must be from 1 to 4096", file=file, key=_key("hidden"),
                        hint="e.g. hidden: [256, 256]")
    return hp
