"""``learner.hyperparams`` of the QD learners, validated before anything runs: a mistake is one
TaskError naming the file, the key and the fix (exit 2)."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.qd.rollout import parse_field
from workbench.errors import TaskError
from workbench.registry import SIMS
from workbench.spec import validate_learner_hyperparams

if TYPE_CHECKING:
    from workbench.spec import TaskSpec

__all__ = ["OutcomeGrid", "QDHyperparams", "KEYS", "LEARNED_SPACE", "parse_hyperparams"]


class OutcomeGrid(BaseModel):
    """The task's ground-truth outcome grid (evaluation only: coverage, plots)."""

    model_config = ConfigDict(extra="forbid")
    fields: list[str] = Field(min_length=1, max_length=3)
    low: list[float]
    high: list[float]
    cells: list[int]

    @model_validator(mode="after")
    def _same_lengths(self) -> OutcomeGrid:
        n = len(self.fields)
        if not (len(self.low) == len(self.high) == len(self.cells) == n):
            raise ValueError(f"fields, low, high and cells need one entry per field ({n})")
        if any(c < 1 or c > 1000 for c in self.cells):
            raise ValueError("cells must be from 1 to 1000 per field")
        if any(lo >= hi for lo, hi in zip(self.low, self.high)):
            raise ValueError("each low must be below its high")
        return self


class QDHyperparams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    descriptor: list[str] = Field(default_factory=list, max_length=8,
                                  description="StateView fields at episode end (name or name[i])")
    descriptor_bounds: list[tuple[float, float]] | None = None
    descriptor_cells: int = Field(20, ge=1, le=1000)
    outcome_grid: OutcomeGrid | None = None
    population: int = Field(32, ge=2, le=100_000)
    parents: int | None = Field(None, ge=1, le=100_000, description="ns: most novel offspring kept (population // 4)")
    hidden: list[int] = Field(default_factory=lambda: [16], max_length=8)
    init_sigma: float = Field(1.0, gt=0, le=100)
    sigma: float = Field(0.1, gt=0, le=100)
    k: int = Field(15, ge=1, le=1000)
    novelty_threshold: float = Field(0.05, ge=0)
    emitter: Literal["gaussian", "iso_line"] = "iso_line"
    line_sigma: float = Field(0.2, ge=0, le=100)
    emitters: int = Field(2, ge=1, le=64)
    workers: int = Field(1, ge=1, le=256)
    executor: Literal["local", "ray"] = Field("local", description="where rollouts run: local processes, or Ray "
                                              "tasks ($RAY_ADDRESS's cluster, else a local runtime)")
    # serene
    chunk_evaluations: int = Field(320, ge=2, le=10_000_000,
                                   description="serene: evaluations per chunk of the meta-scheduler")
    exploration_fraction: float = Field(0.5, gt=0, le=1, description="serene: a chunk's share for exploration")
    emitter_type: Literal["elitist", "cma"] = "elitist"
    emitter_population: int = Field(10, ge=2, le=100_000, description="serene: genomes per emitter generation")
    bootstrap_generations: int = Field(5, ge=1, le=10_000, description="serene: generations of a new emitter "
                                       "before its improvement counts (and of each later turn)")
    stagnation_generations: int = Field(5, ge=1, le=100_000, description="serene: generations without a better "
                                        "best reward before an emitter stops")
    max_candidates: int = Field(10, ge=1, le=100_000, description="serene: emitter candidates kept (most novel)")
    # taxons / stax: the behaviour space learned from frames (policies/qd/behaviour.py)
    frames: int | None = Field(None, ge=1, le=16, description="frames per episode the autoencoder reads "
                               "(taxons: 1, the final frame; stax: 4)")
    frame_size: int = Field(64, ge=16, le=256, description="frames are resized to frame_size x frame_size")
    latent_dim: int = Field(10, ge=1, le=256, description="the learned descriptor's length")
    ae_epochs: int = Field(20, ge=1, le=10_000, description="most epochs of one autoencoder training")
    ae_patience: int | None = Field(None, ge=0, le=10_000, description="epochs without a better held-out "
                                    "loss before a training stops (0: never; taxons 0, stax 3)")
    ae_batch_size: int = Field(64, ge=1, le=100_000)
    ae_lr: float = Field(1e-3, gt=0, le=1)
    ae_max_samples: int = Field(2000, ge=10, le=10_000_000, description="most frames one training reads")
    retrain_every: int = Field(10, ge=1, le=1_000_000, description="generations between autoencoder trainings "
                               "(the first is after generation 1)")
    retrain_growth: float | None = Field(None, ge=1, le=100, description="factor on the interval after each "
                                         "training (taxons 1: fixed; stax 1.5: growing)")
    surprise_probability: float = Field(0.5, ge=0, le=1, description="taxons: chance that a generation's "
                                        "parents are the most surprising rather than the most novel")

    @model_validator(mode="after")
    def _checks(self) -> QDHyperparams:
        if any(h < 1 or h > 4096 for h in self.hidden):
            raise ValueError("hidden layer sizes must be from 1 to 4096")
        if self.parents is not None and self.parents > self.population:
            raise ValueError(f"parents ({self.parents}) must be at most population ({self.population})")
        if self.descriptor_bounds is not None and any(lo >= hi for lo, hi in self.descriptor_bounds):
            raise ValueError("each descriptor bound [low, high] needs low < high")
        return self

    @field_validator("frame_size")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError("frame_size must be a multiple of 8 (three stride-2 convolutions): e.g. 64")
        return value

    def check_serene(self) -> tuple[str, str] | None:
        """(key, problem) when the serene keys do not fit together, else None."""
        smallest = max(self.population, self.emitter_population)
        if self.chunk_evaluations < smallest:
            return ("chunk_evaluations", f"chunk_evaluations ({self.chunk_evaluations}) must hold at least one "
                    f"generation: population ({self.population}) and emitter_population ({self.emitter_population})")
        if self.exploration_fraction * self.chunk_evaluations < self.population:
            return ("exploration_fraction", f"exploration_fraction x chunk_evaluations "
                    f"({self.exploration_fraction:g} x {self.chunk_evaluations}) is less than one exploration "
                    f"generation (population {self.population})")
        return None


# Keys each learner reads (others are refused: a key that does nothing is a mistake).
_COMMON = {"outcome_grid", "population", "hidden", "init_sigma", "workers", "executor"}
KEYS: dict[str, set[str]] = {
    "ns": _COMMON | {"descriptor", "sigma", "k", "novelty_threshold", "parents"},
    "map_elites": _COMMON | {"descriptor", "descriptor_bounds", "descriptor_cells", "sigma", "emitter", "line_sigma"},
    "cma_me": _COMMON | {"descriptor", "descriptor_bounds", "descriptor_cells", "sigma", "emitters"},
    "random_search": _COMMON,
    "serene": _COMMON | {"descriptor", "sigma", "k", "novelty_threshold", "parents", "chunk_evaluations",
                         "exploration_fraction", "emitter_type", "emitter_population", "bootstrap_generations",
                         "stagnation_generations", "max_candidates"},
}
_LEARNED = {"frames", "frame_size", "latent_dim", "ae_epochs", "ae_patience", "ae_batch_size", "ae_lr",
            "ae_max_samples", "retrain_every", "retrain_growth"}
KEYS["taxons"] = (KEYS["ns"] - {"descriptor"}) | _LEARNED | {"surprise_probability"}
KEYS["stax"] = (KEYS["serene"] - {"descriptor"}) | _LEARNED
LEARNED_SPACE = ("taxons", "stax")  # learners whose descriptor is learned from frames
_NEEDS = {"ns": ("descriptor",), "map_elites": ("descriptor", "descriptor_bounds"),
          "cma_me": ("descriptor", "descriptor_bounds"), "random_search": (), "serene": ("descriptor",),
          "taxons": (), "stax": ()}
_EXAMPLE = {"descriptor": "descriptor: [x, y]", "descriptor_bounds": "descriptor_bounds: [[-1, 1], [-1, 1]]"}


def _key(name: str) -> str:
    return f"learner.hyperparams.{name}"


def parse_hyperparams(learner: str, spec: TaskSpec, *, file: str, check_fields: bool = True) -> QDHyperparams:
    hp = validate_learner_hyperparams(QDHyperparams, spec.learner.hyperparams, learner=learner, keys=KEYS[learner],
                                      file=file, hint="see the README section 'Quality-diversity explorers' for "
                                                      "each key")
    for needed in _NEEDS[learner]:
        if not getattr(hp, needed):
            raise TaskError(f"{learner} needs {needed}", file=file, key=_key(needed),
                            hint=f"add it under learner.hyperparams, e.g. {_EXAMPLE[needed]}")
    if learner in LEARNED_SPACE and spec.sim.max_episode_steps is None:
        raise TaskError(f"{learner} takes its frames at fixed points of the episode and needs its length",
                        file=file, key="sim.max_episode_steps", hint="set sim.max_episode_steps, e.g. 200")
    if learner in ("serene", "stax") and (problem := hp.check_serene()) is not None:
        where, msg = problem
        raise TaskError(msg, file=file, key=_key(where),
                        hint="raise chunk_evaluations (e.g. 10 x population), or lower population / "
                             "emitter_population")
    episode = spec.sim.max_episode_steps
    if episode is not None and spec.training.total_steps < hp.population * episode:
        raise TaskError(f"total_steps {spec.training.total_steps} is less than one generation "
                        f"(population {hp.population} x {spec.sim.max_episode_steps} steps)", file=file,
                        key="training.total_steps",
                        hint=f"set training.total_steps >= {hp.population * spec.sim.max_episode_steps}, or a "
                             "smaller population")
    if check_fields:
        _check_fields(hp, spec, file)
    return hp


def _check_fields(hp: QDHyperparams, spec: TaskSpec, file: str) -> None:
    """Every named StateView field exists (and is scalar or indexed within its vector)."""
    lists = [("descriptor", hp.descriptor)]
    if hp.outcome_grid is not None:
        lists.append(("outcome_grid.fields", hp.outcome_grid.fields))
    try:
        profile = SIMS.get(spec.sim.name)().profile(spec.sim)
    except TaskError as err:
        raise TaskError(err.message, file=file, key=err.key, hint=err.hint) from None
    shapes = {f.name: f.shape for f in profile.schema.fields}
    descriptor_size = 0
    for where, items in lists:
        for item in items:
            try:
                name, index = parse_field(item)
            except ValueError as err:
                raise TaskError(str(err), file=file, key=_key(where),
                                hint="e.g. [x, y] or [fingertip_pos[0]]") from None
            if name not in shapes:
                close = difflib.get_close_matches(name, list(shapes), n=1)
                near = f"did you mean {close[0]!r}? " if close else ""
                raise TaskError(f"the StateView of {spec.sim.env_id} has no field {name!r}", file=file,
                                key=_key(where), hint=f"{near}fields: {', '.join(shapes)}")
            size = 1
            for n in shapes[name]:
                size *= n
            if index is not None and index >= size:
                raise TaskError(f"{item}: {name} has {size} values", file=file, key=_key(where),
                                hint=f"index from 0 to {size - 1}")
            if where == "outcome_grid.fields" and index is None and size != 1:
                raise TaskError(f"{name} has {size} values; a grid axis is one number", file=file, key=_key(where),
                                hint=f"name one value: {name}[0]")
            if where == "descriptor":
                descriptor_size += 1 if index is not None else size
    if hp.descriptor_bounds is not None and len(hp.descriptor_bounds) != descriptor_size:
        raise TaskError(f"{len(hp.descriptor_bounds)} descriptor bounds for a descriptor of {descriptor_size} "
                        f"values ({', '.join(hp.descriptor)})", file=file, key=_key("descriptor_bounds"),
                        hint="give one [low, high] per descriptor value (a vector field counts each of its values)")
