"""``learner.hyperparams`` of the VLA learners (``vla_bc``, ``grape``, ``srpo``), validated before
anything runs: a mistake is one TaskError naming the file, the key and the fix (exit 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench.errors import TaskError
from workbench.spec import validate_learner_hyperparams

if TYPE_CHECKING:
    from workbench.spec import TaskSpec

__all__ = ["VLAHyperparams", "KEYS", "parse_hyperparams"]


class VLAHyperparams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # where the policy starts
    dataset: str | None = Field(None, description="Minari dataset of demonstrations (`workbench data list`)")
    init: str | None = Field(None, description="a run directory (or its model/) holding a VLA to start from")
    bc_updates: int = Field(3000, ge=0, le=10_000_000, description="behaviour-cloning updates before the "
                            "rollout rounds when no init is given (grape, srpo)")
    # the network
    bins: int = Field(256, ge=2, le=4096, description="action tokens per dimension (OpenVLA: 256)")
    channels: int = Field(32, ge=4, le=512, description="image encoder channels")
    keypoints: int = Field(32, ge=2, le=512, description="spatial-softmax keypoints of the image encoder")
    feature_stride: int = Field(2, ge=1, le=2, description="stride of the image encoder's second conv: 1 keeps "
                                "a keypoint map of half the image size instead of a quarter (~2.5x slower)")
    hidden: int = Field(256, ge=8, le=8192, description="trunk width")
    layers: int = Field(2, ge=1, le=16, description="trunk layers")
    # behaviour cloning
    batch_size: int = Field(64, ge=1, le=100_000)
    lr: float = Field(1e-3, gt=0, le=1)
    # Measured on the PlanarPush pusher's demonstrations (state input, 6000 updates, 40 episodes): BC
    # with 256 tokens succeeded 35% at σ = 2 bins, 48% at 6 and 58% at 12 (MSE regression: 70%)
    label_sigma: float = Field(12.0, ge=0, le=1000, description="std (in bins) of the Gaussian-smoothed "
                               "token targets; 0 is one-hot cross-entropy")
    # off by default: where the instruction's goal is lies in world terms, and a shifted image moves
    # the puck against it (DrQ's shift suits tasks where only relative positions matter)
    shift: int = Field(0, ge=0, le=32, description="random-shift image augmentation (pixels)")
    # rollout rounds (grape, srpo): training.total_steps counts their env steps
    group: int = Field(8, ge=2, le=1024, description="rollouts per instruction per round")
    instructions_per_round: int = Field(4, ge=1, le=1024)
    temperature: float = Field(1.0, gt=0, le=100, description="sampling temperature of the rollouts")
    rl_lr: float = Field(1e-4, gt=0, le=1)
    epochs: int = Field(2, ge=1, le=1000, description="passes over a round's data")
    # grape: trajectory-wise preference optimisation
    beta: float = Field(0.1, gt=0, le=1000, description="TPO's β (the DPO temperature)")
    success_weight: float = Field(1.0, ge=0, description="GRAPE score: weight of task success")
    cost_weight: float = Field(1.0, ge=0, description="GRAPE score: weight of the stage cost (the task "
                               "reward's mean per step)")
    likelihood_weight: float = Field(0.1, ge=0, description="GRAPE score: weight of the policy's mean "
                                     "log-likelihood per step")
    # srpo: self-referential progress rewards, GRPO-style updates
    clip: float = Field(0.2, gt=0, le=10, description="the clipped-ratio ε")
    clusters: int = Field(3, ge=1, le=64, description="k-means clusters of successful trajectories")
    min_success: float = Field(0.1, ge=0, le=1, description="groups with a lower success share are dropped")
    max_success: float = Field(0.9, ge=0, le=1, description="groups with a higher success share are dropped")
    # where it runs
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when present, else cpu")


_NET = {"bins", "channels", "keypoints", "feature_stride", "hidden", "layers", "device"}
_BC = {"dataset", "batch_size", "lr", "label_sigma", "shift"}
_ROUNDS = {"init", "bc_updates", "group", "instructions_per_round", "temperature", "rl_lr", "epochs"}
KEYS: dict[str, set[str]] = {
    "vla_bc": _NET | _BC,
    "grape": _NET | _BC | _ROUNDS | {"beta", "success_weight", "cost_weight", "likelihood_weight"},
    "srpo": _NET | _BC | _ROUNDS | {"clip", "clusters", "min_success", "max_success"},
}


def _key(name: str) -> str:
    return f"learner.hyperparams.{name}"


def parse_hyperparams(learner: str, spec: TaskSpec, *, file: str) -> VLAHyperparams:
    raw: dict[str, Any] = dict(spec.learner.hyperparams)
    hp = validate_learner_hyperparams(VLAHyperparams, raw, learner=learner, keys=KEYS[learner], file=file,
                                      hint="see the README section 'Vision-language-action policies'")
    if hp.dataset is None and (learner == "vla_bc" or hp.init is None):
        raise TaskError(f"{learner} needs demonstrations to start from and none are named", file=file,
                        key=_key("dataset" if learner == "vla_bc" else "init"),
                        hint="add learner.hyperparams.dataset: ID (record one: workbench data collect TASK.yaml "
                             "--policy reference --episodes 200 --out ID)" +
                             ("" if learner == "vla_bc" else ", or init: a vla_bc run directory"))
    if hp.min_success > hp.max_success:
        raise TaskError(f"min_success ({hp.min_success}) is above max_success ({hp.max_success})", file=file,
                        key=_key("min_success"), hint="e.g. min_success: 0.1, max_success: 0.9")
    return hp
