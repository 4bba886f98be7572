"""Perceptual rewards from a few demonstrations (Sermanet, Xu & Levine 2016, "Unsupervised
Perceptual Rewards for Imitation Learning"), on CLIP image embeddings.

Learning (:func:`learn`; ``workbench reward perceptual`` on the console), from n demo videos embedded frame by frame:

1. **Step discovery.** Each demo ``x[0:T]`` is cut into ``k`` contiguous steps, boundaries
   ``0 < b_1 < … < b_{k-1} < T`` (step ``i`` is frames ``[b_{i-1}, b_i)``), minimising the
   within-step sum of squared deviations ``Σ_i Σ_{t∈step i} ‖x_t − μ_i‖²`` exactly by dynamic
   programming (each step at least ``min_frames`` long). First with each demo's own step means,
   then — so that "step i" means the same thing in every demo — alternating with means shared
   across demos (segmental k-means: re-split every demo against the pooled step means, re-pool,
   until no boundary moves); each round can only lower the shared-means objective.
2. **Feature selection.** For step ``i``, every embedding dimension ``d`` is scored by how well it
   separates the step's frames (all demos pooled) from the other steps' frames,
   ``|μ_in − μ_out| / (σ_in + σ_out + ε)``; the top ``M`` (``features_per_step``) are kept.
3. **Per-step reward.** A Gaussian naive-Bayes score on those ``M`` features, step ``i`` against
   the rest, with variances floored at ``variance_floor × var(all frames)`` — the mean per-feature
   log-likelihood ratio ``s_i(x) = (1/M) Σ_{d∈S_i} [log N(x_d; μ_in,d, v_in,d) − log N(x_d; μ_out,d, v_out,d)]``
   — turned into a probability by a logistic fitted on the demos: ``r_i(x) = sigmoid(a_i·s_i(x) + c_i)``
   with ``a_i = (m_in − m_out) / v``, ``c_i = −a_i·(m_in + m_out)/2`` from the mean ``m`` of ``s_i`` on
   the step's and the other steps' frames and their mean variance ``v`` (a 1-D Gaussian discriminant).
   Why fitted: the plain naive-Bayes sum ``M·s_i`` is overconfident when features are correlated
   (CLIP's are) and the plain mean ``s_i`` is diluted when few of the ``M`` features carry the step;
   the fitted slope follows how separable the demos' steps really are, whatever ``M``.
4. **Total**, weighting later steps more (the paper's ``2^(i-1)``, steps numbered from 1):
   ``R(x) = Σ_i 2^(i-1)·r_i(x) / Σ_i 2^(i-1)``, in ``[0, 1]``; on a frame that is clearly in step
   ``i`` alone it is about ``2^(i-1) / (2^k − 1)``, so it climbs as the task progresses.

Everything is numpy and deterministic. The learned model is one JSON file (format version,
backbone model/pretrained tag and a probe embedding that pins the exact weights, k, the
selected features and per-step statistics, the discovered boundaries per demo, fit diagnostics);
floats are written with ``repr`` precision, so a load gives back exactly the saved numbers.

Use in a task: ``reward: {source: perceptual, file: rewards/x_perceptual.json, model: ...}``.
The backbone must be the one the model was learned with (checked by name and probe).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reward_synthesis.pixels.perceptual.demos import file_sha256
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from reward_synthesis.pixels.vlm import ClipBackbone

__all__ = [
    "FORMAT", "FORMAT_VERSION", "RUN_FILE", "DEFAULT_MODEL", "DEFAULT_PRETRAINED",
    "segment_costs", "best_partition", "segment", "discover_steps", "labels_from_boundaries",
    "separation_scores", "StepModel", "DemoRecord", "PerceptualModel", "fit", "probe_frame", "learn",
]

FORMAT = "workbench-perceptual"
FORMAT_VERSION = 1
RUN_FILE = "reward/perceptual.json"  # the run directory's copy of the learned model
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
PROBE_MIN_COSINE = 0.98  # same weights give ~1.0 (CPU vs GPU kernels differ in the 4th digit)
REWARD_FORMULA = ("r_i = sigmoid(slope * s_i + offset), s_i = mean over d in features of "
                  "[log N(x_d; mean_in, var_in) - log N(x_d; mean_out, var_out)]; "
                  "total = sum_i 2^(i-1) r_i / sum_i 2^(i-1), i = 1..k")


# ----------------------------------------------------------------------------- step discovery


def _prefix_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s1 = np.zeros((len(x) + 1, x.shape[1]))
    s2 = np.zeros(len(x) + 1)
    np.cumsum(x, axis=0, out=s1[1:])
    np.cumsum(np.einsum("td,td->t", x, x), out=s2[1:])
    return s1, s2


def _valid(n: int, min_frames: int) -> np.ndarray:
    a, b = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    return b - a >= min_frames


def segment_costs(x: np.ndarray, *, min_frames: int = 1, means: np.ndarray | None = None) -> list[np.ndarray]:
    """Cost matrices ``C[a, b]`` of making frames ``x[a:b]`` one step (``inf`` if shorter than
    ``min_frames``): the sum of squared deviations from the segment's own mean (``means=None``,
    one matrix) or from each shared step mean ``means[i]`` (one matrix per step)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    s1, s2 = _prefix_sums(x)
    valid = _valid(n, min_frames)
    ds2 = s2[None, :] - s2[:, None]
    if means is None:
        cost = np.full((n + 1, n + 1), np.inf)
        for a in range(n):
            d = s1[a + 1:] - s1[a]
            own = ds2[a, a + 1:] - np.einsum("bd,bd->b", d, d) / np.arange(1, n - a + 1)
            cost[a, a + 1:] = np.maximum(own, 0.0)  # prefix-sum cancellation can dip below 0
        return [np.where(valid, cost, np.inf)]
    length = np.arange(n + 1)[None, :] - np.arange(n + 1)[:, None]
    out = []
    for mu in np.asarray(means, dtype=np.float64):
        p = s1 @ mu
        cost = ds2 - 2.0 * (p[None, :] - p[:, None]) + length * float(mu @ mu)
        out.append(np.where(valid, np.maximum(cost, 0.0), np.inf))
    return out


def best_partition(costs: Sequence[np.ndarray]) -> tuple[list[int], float]:
    """Exact DP: the cut of frames ``[0, T)`` into ``len(costs)`` ordered steps, step ``i`` costing
    ``costs[i][a, b]``, of least total cost. Returns the ``k-1`` boundaries and that cost."""
    n = costs[0].shape[0] - 1
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    back = np.zeros((len(costs), n + 1), dtype=np.int64)
    for i, cost in enumerate(costs):
        total = best[:, None] + cost  # [end of previous step, end of this one]
        back[i] = np.argmin(total, axis=0)  # ties -> the earliest boundary: deterministic
        best = total[back[i], np.arange(n + 1)]
    if not np.isfinite(best[n]):
        raise ValueError(f"{n} frames cannot be cut into {len(costs)} steps")
    bounds, end = [], n
    for i in range(len(costs) - 1, 0, -1):
        end = int(back[i][end])
        bounds.append(end)
    return bounds[::-1], float(best[n])


def segment(x: np.ndarray, k: int, *, min_frames: int = 2) -> list[int]:
    """Boundaries of the least-variance cut of one feature sequence ``[T, D]`` into ``k`` steps."""
    return best_partition(segment_costs(x, min_frames=min_frames) * k)[0]


def labels_from_boundaries(n: int, boundaries: Sequence[int]) -> np.ndarray:
    """Step index (0-based) of each of ``n`` frames."""
    return np.searchsorted(np.asarray(boundaries, dtype=np.int64), np.arange(n), side="right")


def _step_means(seqs: Sequence[np.ndarray], bounds: Sequence[Sequence[int]], k: int) -> np.ndarray:
    x = np.concatenate(seqs)
    labels = np.concatenate([labels_from_boundaries(len(s), b) for s, b in zip(seqs, bounds)])
    return np.stack([x[labels == i].mean(axis=0) for i in range(k)])


def _objective(seqs: Sequence[np.ndarray], bounds: Sequence[Sequence[int]], means: np.ndarray) -> float:
    total = 0.0
    for s, b in zip(seqs, bounds):
        total += float(np.sum((s - means[labels_from_boundaries(len(s), b)]) ** 2))
    return total


def discover_steps(seqs: Sequence[np.ndarray], k: int, *, min_frames: int = 2,
                   align_rounds: int = 10) -> tuple[list[list[int]], dict[str, Any]]:
    """Boundaries per demo for ``k`` steps that mean the same thing in every demo.

    Each demo is first split on its own (exact DP); then up to ``align_rounds`` rounds re-split
    every demo against step means pooled over all demos. Returns the boundaries and a summary
    (objective before/after alignment, rounds used)."""
    seqs = [np.asarray(s, dtype=np.float64) for s in seqs]
    bounds = [segment(s, k, min_frames=min_frames) for s in seqs]
    means = _step_means(seqs, bounds, k)
    info: dict[str, Any] = {"objective_independent": _objective(seqs, bounds, means), "align_rounds": 0}
    for r in range(align_rounds):
        new = [best_partition(segment_costs(s, min_frames=min_frames, means=means))[0] for s in seqs]
        if new == bounds:
            break
        bounds, means = new, _step_means(seqs, new, k)
        info["align_rounds"] = r + 1
    info["objective"] = _objective(seqs, bounds, means)
    return bounds, info


# ----------------------------------------------------------------------------- features and classifier


def separation_scores(x: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Per-dimension ``|μ_in − μ_out| / (σ_in + σ_out + ε)`` of frames ``x[inside]`` vs the rest."""
    a, b = x[inside], x[~inside]
    eps = 1e-6 * float(x.std(axis=0).mean()) + 1e-12
    return np.abs(a.mean(0) - b.mean(0)) / (a.std(0) + b.std(0) + eps)


@dataclass(frozen=True)
class StepModel:
    """One step's selected feature indices and its naive-Bayes statistics (step vs the rest)."""

    features: np.ndarray  # int64 [M]
    score: np.ndarray  # separation score of each selected feature [M]
    mean_in: np.ndarray
    var_in: np.ndarray  # floored variances, the ones the classifier uses
    mean_out: np.ndarray
    var_out: np.ndarray
    slope: float  # the logistic on log_odds, fitted on the demos
    offset: float

    def log_odds(self, emb: np.ndarray) -> np.ndarray:
        """Mean per-feature log-likelihood ratio, step vs rest, for embeddings ``[N, D]``."""
        x = emb[:, self.features]
        ll_in = -0.5 * ((x - self.mean_in) ** 2 / self.var_in + np.log(self.var_in))
        ll_out = -0.5 * ((x - self.mean_out) ** 2 / self.var_out + np.log(self.var_out))
        return (ll_in - ll_out).mean(axis=1)

    def reward(self, emb: np.ndarray) -> np.ndarray:
        z = np.clip(self.slope * self.log_odds(emb) + self.offset, -60.0, 60.0)
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: v.tolist() if isinstance(v := getattr(self, f.name), np.ndarray) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepModel:
        arrays = {name: np.asarray(d[name], dtype=np.int64 if name == "features" else np.float64)
                  for name in ("features", "score", "mean_in", "var_in", "mean_out", "var_out")}
        m = len(arrays["features"])
        if m == 0 or any(a.shape != (m,) for a in arrays.values()):
            raise ValueError("a step's arrays must be non-empty and of one length")
        if not (np.all(arrays["var_in"] > 0) and np.all(arrays["var_out"] > 0)):
            raise ValueError("variances must be positive")
        slope, offset = float(d["slope"]), float(d["offset"])
        if not (math.isfinite(slope) and math.isfinite(offset)):
            raise ValueError("slope and offset must be finite")
        return cls(**arrays, slope=slope, offset=offset)

    @classmethod
    def fit(cls, x: np.ndarray, inside: np.ndarray, m: int, floor: np.ndarray) -> StepModel:
        """Top-``m`` features by separation score, their statistics, and the logistic's slope/offset."""
        score = separation_scores(x, inside)
        top = np.argsort(-score, kind="stable")[:m]
        a, b = x[inside][:, top], x[~inside][:, top]
        step = cls(top.astype(np.int64), score[top], a.mean(0), a.var(0) + floor[top], b.mean(0),
                   b.var(0) + floor[top], 1.0, 0.0)
        s = step.log_odds(x)
        m_in, m_out = float(s[inside].mean()), float(s[~inside].mean())
        gap = m_in - m_out
        v = 0.5 * (float(s[inside].var()) + float(s[~inside].var())) + 1e-6 * gap * gap + 1e-12
        slope = max(gap, 0.0) / v  # a score that ranks the rest above the step carries no reward signal
        return dataclasses.replace(step, slope=slope, offset=-slope * (m_in + m_out) / 2)


@dataclass(frozen=True)
class DemoRecord:
    name: str
    frames: int
    boundaries: list[int]
    sha256: str | None = None


def _dumps(obj: Any, indent: str = "") -> str:
    """JSON with a line per key and per list-of-objects item, number lists kept on one line
    (readable and diffable; floats keep ``repr`` precision)."""
    inner = indent + " "
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {_dumps(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        return "[\n" + ",\n".join(inner + _dumps(v, inner) for v in obj) + f"\n{indent}]"
    return json.dumps(obj, allow_nan=False)


@dataclass
class PerceptualModel:
    """A learned perceptual reward: embeddings ``[N, D]`` -> per-step rewards ``[N, k]`` -> total ``[N]``."""

    model: str  # open_clip architecture the features came from
    pretrained: str | None  # its weights tag / file (None = random weights)
    embed_dim: int
    probe: np.ndarray | None  # the backbone's embedding of probe_frame(): pins the exact weights
    steps: list[StepModel]
    demos: list[DemoRecord]
    params: dict[str, Any]  # features_per_step, min_frames, align_rounds, variance_floor
    fit_info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.steps)

    @property
    def weights(self) -> np.ndarray:
        w = 2.0 ** np.arange(self.k)
        return w / w.sum()

    def step_rewards(self, emb: np.ndarray) -> np.ndarray:
        emb = np.asarray(emb, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[1] != self.embed_dim:
            raise ValueError(f"expected embeddings [N, {self.embed_dim}], got {emb.shape}")
        return np.stack([s.reward(emb) for s in self.steps], axis=1)

    def total(self, step_rewards: np.ndarray) -> np.ndarray:
        return step_rewards @ self.weights

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        return self.total(self.step_rewards(emb))

    # ------------------------------------------------------------------ file
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": FORMAT_VERSION,
            "method": "perceptual reward (Sermanet, Xu & Levine 2016) on CLIP image embeddings",
            "backbone": {"model": self.model, "pretrained": self.pretrained, "embed_dim": self.embed_dim,
                         "probe": None if self.probe is None else self.probe.tolist()},
            "k": self.k, "reward": REWARD_FORMULA, "params": self.params,
            "demos": [dataclasses.asdict(d) for d in self.demos],
            "steps": [s.to_dict() for s in self.steps],
            "fit": self.fit_info,
        }

    def to_json(self) -> str:
        return _dumps(self.to_dict()) + "\n"

    def save(self, path: Path) -> None:
        from workbench.runs import atomic_write

        atomic_write(Path(path), self.to_json())

    @classmethod
    def from_json(cls, text: str, *, file: str = "<perceptual model>") -> PerceptualModel:
        def bad(why: str) -> WorkbenchError:
            return WorkbenchError(f"{file}: not a usable perceptual reward model: {why}\n"
                                  f"  fix: learn it again with "
                                  f"`workbench reward perceptual --task TASK --demos DIR --steps K`")

        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise bad(f"invalid JSON ({err})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise bad(f"'format' is not {FORMAT!r}")
        if d.get("version") != FORMAT_VERSION:
            raise bad(f"format version {d.get('version')!r}; this workbench reads version {FORMAT_VERSION}")
        try:
            bb = d["backbone"]
            steps = [StepModel.from_dict(s) for s in d["steps"]]
            model = cls(str(bb["model"]), None if bb["pretrained"] is None else str(bb["pretrained"]),
                        int(bb["embed_dim"]), None if bb.get("probe") is None else np.asarray(bb["probe"], np.float64),
                        steps, [DemoRecord(**x) for x in d["demos"]], dict(d["params"]), dict(d.get("fit") or {}))
        except (KeyError, TypeError, ValueError) as err:
            raise bad(f"{type(err).__name__}: {err}") from None
        if len(steps) < 2 or len(steps) != d.get("k"):
            raise bad(f"k={d.get('k')!r} but {len(steps)} step models")
        if any(int(s.features.min()) < 0 or int(s.features.max()) >= model.embed_dim for s in steps):
            raise bad(f"feature index outside the {model.embed_dim} embedding dimensions")
        return model

    @classmethod
    def load(cls, path: Path) -> PerceptualModel:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise WorkbenchError(f"{path}: cannot read the perceptual reward model: {err}\n"
                                 "  fix: point reward.file at the JSON file "
                                 "`workbench reward perceptual` wrote") from None
        return cls.from_json(text, file=str(path))

    # ------------------------------------------------------------------ backbone checks
    def mismatch(self, model: str, pretrained: str | None) -> tuple[str, str] | None:
        """``(key, why)`` if a backbone named ``model``/``pretrained`` cannot be the one this was
        learned with (names only; :meth:`check_backbone` compares the actual weights)."""
        if model != self.model:
            return "reward.model", f"the perceptual model was learned on {self.model!r} features, not {model!r}"
        if (pretrained is None) != (self.pretrained is None) or (
                pretrained is not None and self.pretrained is not None
                and not _looks_like_path(pretrained) and not _looks_like_path(self.pretrained)
                and pretrained != self.pretrained):
            return "reward.pretrained", (f"the perceptual model was learned with weights {self.pretrained!r}, "
                                         f"not {pretrained!r}")
        return None

    def check_backbone(self, backbone: ClipBackbone, *, file: str) -> None:
        """The backbone must produce the features this model was fitted on: same architecture,
        same embedding size, and (if recorded) the same embedding of the probe frame."""
        found = self.mismatch(backbone.model_name, backbone.pretrained)
        if found is not None and found[0] == "reward.model":
            raise WorkbenchError(f"{file}: {found[1]}\n  fix: set reward.model: {self.model}, or learn the "
                                 f"perceptual model again with this backbone")
        probe = backbone.encode_frames(probe_frame())[0].astype(np.float64)
        if probe.shape[0] != self.embed_dim:
            raise WorkbenchError(f"{file}: the backbone's embeddings have {probe.shape[0]} dimensions, the perceptual "
                                 f"model expects {self.embed_dim}\n  fix: use the backbone it was learned with")
        if self.probe is not None:
            cos = float(probe @ self.probe / (np.linalg.norm(probe) * np.linalg.norm(self.probe) + 1e-12))
            if cos < PROBE_MIN_COSINE:
                raise WorkbenchError(
                    f"{file}: the backbone's weights ({backbone.pretrained or 'RANDOM'}) are not the ones "
                    f"the perceptual model was learned with ({self.pretrained or 'RANDOM'}): "
                    f"probe-frame cosine {cos:.3f}\n"
                    f"  fix: use the same reward.model/reward.pretrained as when learning, or learn it again")


def _looks_like_path(s: str) -> bool:
    return any(c in s for c in "/\\") or s.endswith((".bin", ".pt", ".pth", ".safetensors"))


def probe_frame(size: int = 224) -> np.ndarray:
    """A fixed, structured test image ``[1, size, size, 3]``: its embedding fingerprints a backbone."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    rgb = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * np.pi * x) * np.cos(6 * np.pi * y)], axis=-1)
    return np.round(255 * rgb).astype(np.uint8)[None]


def fit(seqs: Sequence[np.ndarray], k: int, *, model: str, pretrained: str | None,
        probe: np.ndarray | None = None, names: Sequence[str] | None = None,
        sha256: Sequence[str | None] | None = None, features_per_step: int = 32, min_frames: int = 2,
        align_rounds: int = 10, variance_floor: float = 0.01) -> PerceptualModel:
    """Learn a :class:`PerceptualModel` from demo feature sequences ``[T_j, D]`` (see the module doc)."""
    if k < 2:
        raise ValueError("k must be at least 2 (one step has nothing to separate it from)")
    if min_frames < 1:
        raise ValueError("min_frames must be at least 1")
    if not seqs:
        raise ValueError("no demos")
    seqs = [np.asarray(s, dtype=np.float64) for s in seqs]
    dim = seqs[0].shape[1]
    for j, s in enumerate(seqs):
        if s.ndim != 2 or s.shape[1] != dim:
            raise ValueError(f"demo {j}: features shaped {s.shape}, expected [T, {dim}]")
        if len(s) < k * min_frames:
            raise ValueError(f"demo {j}: {len(s)} frames cannot make {k} steps of at least {min_frames} frames")
    bounds, seg_info = discover_steps(seqs, k, min_frames=min_frames, align_rounds=align_rounds)
    x = np.concatenate(seqs)
    labels = np.concatenate([labels_from_boundaries(len(s), b) for s, b in zip(seqs, bounds)])
    m = min(features_per_step, dim)
    floor = variance_floor * x.var(axis=0) + 1e-12
    steps = [StepModel.fit(x, labels == i, m, floor) for i in range(k)]
    names = list(names) if names is not None else [f"demo_{j:03d}" for j in range(len(seqs))]
    shas = list(sha256) if sha256 is not None else [None] * len(seqs)
    demos = [DemoRecord(n, len(s), [int(v) for v in b], h) for n, s, b, h in zip(names, seqs, bounds, shas)]
    params = {"features_per_step": m, "min_frames": min_frames, "align_rounds": align_rounds,
              "variance_floor": variance_floor}
    out = PerceptualModel(model, pretrained, dim, None if probe is None else np.asarray(probe, np.float64).ravel(),
                          steps, demos, params)
    # How the learned reward scores its own demos: the numbers a user checks first.
    per_step = out.step_rewards(x)
    totals = out.total(per_step)
    out.fit_info = {
        "segmentation": seg_info,
        "total_by_step": [float(totals[labels == i].mean()) for i in range(k)],
        "own_step_reward": [float(per_step[labels == i, i].mean()) for i in range(k)],
        "other_steps_reward": [float(per_step[labels != i, i].mean()) for i in range(k)],
    }
    return out


def learn(demos: Sequence[tuple[Path, np.ndarray]], k: int, backbone: ClipBackbone, *, model: str,
          features_per_step: int = 32, min_frames: int = 2,
          on_embedded: Callable[[int], None] | None = None) -> PerceptualModel:
    """Embed every demo's frames with ``backbone`` (``on_embedded(n)`` after each demo's ``n``
    frames) and :func:`fit` the model; the demos' names and sha256 are recorded in it."""
    features = []
    for _, frames in demos:
        features.append(backbone.encode_frames(frames))
        if on_embedded is not None:
            on_embedded(len(frames))
    probe = backbone.encode_frames(probe_frame())[0]
    paths = [p for p, _ in demos]
    return fit(features, k, model=model, pretrained=backbone.pretrained, probe=probe, names=[p.name for p in paths],
               sha256=[file_sha256(p) for p in paths], features_per_step=features_per_step, min_frames=min_frames)
