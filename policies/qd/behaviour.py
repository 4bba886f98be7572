"""A behaviour space learned from pixels, for TAXONS and STAX (Paolo et al. 2020, 2024).

A convolutional autoencoder (torch) reads K frames of an episode (64 x 64 RGB by default, the K
frames stacked on the channel axis). Its bottleneck is the agent's descriptor; its reconstruction
error is the agent's *surprise* (high where the autoencoder has seen little like it). The
descriptors are the bottleneck values standardised by the mean and spread of the last training
set, so thresholds such as ``novelty_threshold`` are in units of that spread, whatever the scale
the network happens to learn.

The autoencoder is retrained on a schedule (:class:`RetrainSchedule`): TAXONS every
``retrain_every`` generations, STAX at intervals that grow by ``retrain_growth``; each training
holds out a fifth of the frames and stops after ``ae_patience`` epochs without a better held-out
loss (0: runs all ``ae_epochs``), keeping the best weights. After a retrain every stored descriptor
is computed again from its frames (re-embedding), which is why the frames of every evaluation are
kept: :class:`FrameStore`, an append-only file in the run directory, row i = evaluation i.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from policies.qd.learners import EVALUATION_FIELD, evaluations
from policies.qd.rollout import FrameSpec
from workbench.errors import MissingDependency, TaskError

if TYPE_CHECKING:
    import gymnasium as gym

    from policies.qd.config import QDHyperparams
    from policies.qd.rollout import Outcome
    from workbench.runs import Run
    from workbench.spec import TaskSpec

__all__ = ["FrameStore", "LearnedSpace", "AESettings", "RetrainSchedule", "LearnedSpaceMixin", "FRAMES_FILE",
           "AUTOENCODER_FILE", "RECONSTRUCTIONS_PNG", "plot_reconstructions"]

FRAMES_FILE = "frames.u8"
AUTOENCODER_FILE = "autoencoder.pt"
RECONSTRUCTIONS_PNG = "reconstructions.png"  # in the run directory, beside coverage.png


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependency("the learned behaviour space of taxons and stax", "qd", "torch") from None
    return torch


class FrameStore:
    """Every evaluation's frames in one append-only file of uint8 rows of ``shape``; row i holds
    evaluation i. A checkpoint records how many rows it has seen; resuming truncates to that, so
    rows written after the last checkpoint (a run killed mid-generation) are dropped."""

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.row = int(np.prod(self.shape))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)

    def __len__(self) -> int:
        return self.path.stat().st_size // self.row

    def truncate(self, rows: int) -> None:
        if len(self) < rows:
            raise RuntimeError(f"{self.path} holds {len(self)} frame rows, the checkpoint expects {rows}; the run "
                               "directory was changed by hand (start a new run)")
        with open(self.path, "r+b") as fh:
            fh.truncate(rows * self.row)

    def append(self, frames: np.ndarray) -> None:
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.shape[1:] != self.shape:
            raise ValueError(f"frames of shape {frames.shape[1:]}, the store holds {self.shape}")
        with open(self.path, "ab") as fh:
            fh.write(frames.tobytes())
            fh.flush()

    def read(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, *self.shape), dtype=np.uint8)
        rows = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(len(self), *self.shape))
        return np.array(rows[ids])


@dataclass(frozen=True)
class AESettings:
    latent_dim: int = 10
    epochs: int = 20
    patience: int = 0  # epochs without a better held-out loss before stopping (0: all epochs)
    batch_size: int = 64
    lr: float = 1e-3
    max_samples: int = 2000  # frames per training, drawn at random when more are stored


@dataclass
class RetrainSchedule:
    """Retrain after generation 1 (the initial population), then after ``every`` more generations,
    the interval multiplied by ``growth`` after each retrain (1: fixed, TAXONS; > 1: growing, STAX)."""

    every: int
    growth: float = 1.0
    next_generation: int = 1
    interval: float = 0.0

    def due(self, generation: int) -> bool:
        return generation >= self.next_generation

    def advance(self, generation: int) -> None:
        self.interval = float(self.every) if self.interval == 0.0 else self.interval * self.growth
        self.next_generation = generation + max(1, int(round(self.interval)))


def _build(torch: Any, channels: int, size: int, latent: int) -> Any:
    nn = torch.nn
    side = size // 8  # three stride-2 convolutions

    class FrameAutoencoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Conv2d(channels, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(),
                nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * side * side, latent))
            self.decoder = nn.Sequential(
                nn.Linear(latent, 32 * side * side), nn.ReLU(), nn.Unflatten(1, (32, side, side)),
                nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(16, channels, 4, 2, 1), nn.Sigmoid())

        def forward(self, x: Any) -> tuple[Any, Any]:
            z = self.encoder(x)
            return z, self.decoder(z)

    return FrameAutoencoder()


class LearnedSpace:
    """The autoencoder, its standardisation and its training record. Pickles to plain bytes (the
    weights as a torch state dict), so a QD checkpoint holds it like any other state."""

    def __init__(self, frame_shape: tuple[int, ...], settings: AESettings, seed: int):
        count, size, size2, rgb = frame_shape
        if size != size2 or size % 8 or rgb != 3:
            raise ValueError(f"frames of shape {frame_shape}: the autoencoder reads square RGB frames, a multiple of 8")
        self.frame_shape = tuple(frame_shape)
        self.settings = settings
        self.seed = int(seed)
        self.mean = np.zeros(settings.latent_dim)
        self.scale = np.ones(settings.latent_dim)
        self.trainings: list[dict[str, Any]] = []
        torch = _torch()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model = _build(torch, 3 * count, size, settings.latent_dim)

    # -- pickling: the weights as bytes
    def __getstate__(self) -> dict[str, Any]:
        torch = _torch()
        buf = io.BytesIO()
        torch.save(self.model.state_dict(), buf)
        state = {k: v for k, v in self.__dict__.items() if k != "model"}
        state["weights"] = buf.getvalue()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        torch = _torch()
        weights = state.pop("weights")
        self.__dict__.update(state)
        count, size = self.frame_shape[0], self.frame_shape[1]
        self.model = _build(torch, 3 * count, size, self.settings.latent_dim)
        self.model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))

    def _tensor(self, frames: np.ndarray) -> Any:
        torch = _torch()
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.uint8))  # (B, K, S, S, 3)
        b, k, s, _, c = x.shape
        return x.permute(0, 1, 4, 2, 3).reshape(b, k * c, s, s).float().div_(255.0)

    def encode(self, frames: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(descriptors (B, latent_dim), surprise (B,)): standardised bottleneck values and the mean
        squared reconstruction error of each agent's frames."""
        torch = _torch()
        zs, errs = [], []
        self.model.eval()
        with torch.no_grad():
            for i in range(0, len(frames), batch):
                x = self._tensor(frames[i:i + batch])
                z, recon = self.model(x)
                zs.append(z.double().numpy())
                errs.append(((recon - x) ** 2).mean(dim=(1, 2, 3)).double().numpy())
        if not zs:
            return np.zeros((0, self.settings.latent_dim)), np.zeros(0)
        return (np.concatenate(zs) - self.mean) / self.scale, np.concatenate(errs)

    def reconstruct(self, frames: np.ndarray) -> np.ndarray:
        """The autoencoder's reconstruction of ``frames`` (B, K, S, S, 3), as uint8 frames."""
        torch = _torch()
        self.model.eval()
        with torch.no_grad():
            recon = self.model(self._tensor(frames))[1]
        b, k, s = frames.shape[0], frames.shape[1], frames.shape[2]
        out = recon.reshape(b, k, 3, s, s).permute(0, 1, 3, 4, 2).mul(255.0).round().clamp(0, 255)
        return out.to(torch.uint8).numpy()

    def train(self, frames: np.ndarray, rng: np.random.Generator, *, generation: int) -> dict[str, Any]:
        """Fit the autoencoder to ``frames`` (at most ``max_samples`` of them, drawn with ``rng``),
        early-stopped on a held-out fifth when ``patience`` > 0; then re-standardise on them."""
        torch = _torch()
        s = self.settings
        started = time.perf_counter()
        if len(frames) > s.max_samples:
            frames = frames[np.sort(rng.choice(len(frames), s.max_samples, replace=False))]
        order = rng.permutation(len(frames))
        held = order[:len(frames) // 5] if s.patience > 0 and len(frames) >= 10 else order[:0]
        fit = order[len(held):]
        x_fit, x_held = self._tensor(frames[fit]), self._tensor(frames[held])
        opt = torch.optim.Adam(self.model.parameters(), lr=s.lr)
        best, best_state, stale, epochs, train_loss = np.inf, None, 0, 0, float("nan")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**31 - 1)))
            for _ in range(s.epochs):
                self.model.train()
                perm = torch.randperm(len(x_fit))
                total = 0.0
                for i in range(0, len(x_fit), s.batch_size):
                    batch = x_fit[perm[i:i + s.batch_size]]
                    loss = ((self.model(batch)[1] - batch) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(batch)
                epochs += 1
                train_loss = total / max(1, len(x_fit))
                if not len(x_held):
                    continue
                self.model.eval()
                with torch.no_grad():
                    held_loss = float(((self.model(x_held)[1] - x_held) ** 2).mean())
                if held_loss < best - 1e-7:
                    best, stale = held_loss, 0
                    best_state = {k: v.clone() for k, v in self.model.state_dict().items()}
                else:
                    stale += 1
                    if stale >= s.patience:
                        break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.mean, self.scale = np.zeros(s.latent_dim), np.ones(s.latent_dim)
        raw, _ = self.encode(frames)
        self.mean = raw.mean(axis=0)
        self.scale = np.maximum(raw.std(axis=0), 1e-6)
        record = {"generation": generation, "frames": int(len(frames)), "epochs": epochs,
                  "train_loss": round(train_loss, 6), "held_out_loss": None if best == np.inf else round(best, 6),
                  "seconds": round(time.perf_counter() - started, 3)}
        self.trainings.append(record)
        return record

    def save(self, path: Path) -> None:
        """The weights and standardisation as a torch file (``torch.load(path)``)."""
        from workbench.runs import atomic_path

        torch = _torch()
        with atomic_path(Path(path)) as tmp:
            torch.save({"state_dict": self.model.state_dict(), "mean": self.mean, "scale": self.scale,
                        "frame_shape": self.frame_shape, "latent_dim": self.settings.latent_dim}, tmp)


class LearnedSpaceMixin:
    """What a QD learner needs to search in the learned space; put it before the learner it
    extends (``class TaxonsLearner(LearnedSpaceMixin, NoveltySearchLearner)``). The learner's
    ``tell`` calls :meth:`embed` first (frames stored, descriptors and surprise computed) and
    :meth:`after_generation` last (the autoencoder retrained when due, every stored descriptor
    re-embedded). ``learned_archives`` names the algo keys of the ribs archives to re-embed;
    :meth:`reembed_more` re-embeds whatever else holds descriptors."""

    name: ClassVar[str]
    default_frames: ClassVar[int] = 1
    default_patience: ClassVar[int] = 0
    default_growth: ClassVar[float] = 1.0
    learned_archives: ClassVar[tuple[str, ...]] = ("archive",)
    _store: FrameStore | None = None

    def frame_count(self, hp: QDHyperparams) -> int:
        return hp.frames or self.default_frames

    def descriptor_dim(self, hp: QDHyperparams, probe: gym.Env) -> int:
        if "rgb_array" not in (probe.metadata.get("render_modes") or []):
            raise TaskError(f"{self.name} learns its descriptor from frames, and this env does not render rgb_array",
                            key="learner.name", hint="use ns or serene with a hand descriptor for this task")
        return hp.latent_dim

    def frame_spec(self, hp: QDHyperparams, spec: TaskSpec) -> FrameSpec | None:
        assert spec.sim.max_episode_steps is not None  # parse_hyperparams asks for it
        return FrameSpec(self.frame_count(hp), hp.frame_size, int(spec.sim.max_episode_steps))

    def _shape(self, hp: QDHyperparams) -> tuple[int, int, int, int]:
        return (self.frame_count(hp), hp.frame_size, hp.frame_size, 3)

    def learned_init(self, algo: dict[str, Any], hp: QDHyperparams, rng: np.random.Generator) -> None:
        settings = AESettings(latent_dim=hp.latent_dim, epochs=hp.ae_epochs,
                              patience=self.default_patience if hp.ae_patience is None else hp.ae_patience,
                              batch_size=hp.ae_batch_size, lr=hp.ae_lr, max_samples=hp.ae_max_samples)
        algo["space"] = LearnedSpace(self._shape(hp), settings, seed=int(rng.integers(0, 2**31 - 1)))
        algo["schedule"] = RetrainSchedule(hp.retrain_every,
                                           self.default_growth if hp.retrain_growth is None else hp.retrain_growth)
        algo.update(frames_stored=0, generations_told=0, last_ids=np.zeros(0, dtype=np.int64), trained=False,
                    ground_truth=[])

    def attach(self, algo: dict[str, Any], run: Run, hp: QDHyperparams) -> None:
        self._store = FrameStore(run.subdir("qd") / FRAMES_FILE, self._shape(hp))
        self._store.truncate(algo["frames_stored"])

    @property
    def store(self) -> FrameStore:
        assert self._store is not None, "attach() opens the frame store"
        return self._store

    def embed(self, algo: dict[str, Any], outcomes: list[Outcome]) -> None:
        frames = np.stack([o.frames for o in outcomes])  # type: ignore[misc]
        ids = evaluations(outcomes)
        if ids[0] != algo["frames_stored"]:
            raise RuntimeError(f"frame rows out of step: evaluation {ids[0]}, {algo['frames_stored']} rows stored")
        self.store.append(frames)
        algo["frames_stored"] += len(frames)
        algo["ground_truth"].extend(np.asarray(o.outcome, dtype=np.float32) for o in outcomes)
        descriptors, surprise = algo["space"].encode(frames)
        for o, d in zip(outcomes, descriptors):
            o.descriptor = d
        algo["last_surprise"], algo["last_ids"], algo["trained"] = surprise, ids, False

    def encode_ids(self, algo: dict[str, Any], ids: np.ndarray, chunk: int = 512) -> np.ndarray:
        """Descriptors of stored evaluations, read from the frame store in chunks."""
        ids = np.asarray(ids, dtype=np.int64)
        parts = [algo["space"].encode(self.store.read(ids[i:i + chunk]))[0] for i in range(0, len(ids), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, algo["space"].settings.latent_dim))

    def after_generation(self, algo: dict[str, Any]) -> None:
        algo["generations_told"] += 1
        generation, schedule = algo["generations_told"], algo["schedule"]
        if not schedule.due(generation):
            return
        ids = [np.asarray(algo[k].data("evaluation"), dtype=np.int64) for k in self.learned_archives]
        train_ids = np.unique(np.concatenate([*ids, algo["last_ids"]]))
        algo["space"].train(self.store.read(train_ids), algo["rng"], generation=generation)
        self.reembed(algo)
        schedule.advance(generation)
        algo["trained"] = True

    def reembed(self, algo: dict[str, Any]) -> None:
        """Every archive rebuilt with its members' new descriptors (one batch add into an empty
        archive keeps every member: ribs compares a batch with the archive before it)."""
        for key in self.learned_archives:
            old = algo[key]
            data = old.data()
            ids = np.asarray(data["evaluation"], dtype=np.int64)
            new = type(old)(solution_dim=old.solution_dim, measure_dim=old.measure_dim, k_neighbors=old.k_neighbors,
                            novelty_threshold=old.novelty_threshold, local_competition=old.local_competition,
                            seed=int(algo["rng"].integers(0, 2**31 - 1)), extra_fields=EVALUATION_FIELD)
            if len(ids):
                new.add(np.asarray(data["solution"]), objective=np.asarray(data["objective"]),
                        measures=self.encode_ids(algo, ids), evaluation=ids)
            algo[key] = new
        self.reembed_more(algo)

    def reembed_more(self, algo: dict[str, Any]) -> None:
        """Descriptors held outside the archives (none here)."""

    def learned_info(self, algo: dict[str, Any]) -> dict[str, Any]:
        return {"ae_trained": bool(algo["trained"])}

    def outcome_r2(self, algo: dict[str, Any]) -> float | None:
        """How much of the ground-truth outcome (the outcome grid's fields, evaluation only) the
        learned descriptors of the novelty archive's members explain: R² of a least-squares affine
        map from descriptor to outcome (1: the outcome is a linear read-out; 0: none of it)."""
        truth = algo["ground_truth"]
        archive = algo[self.learned_archives[0]]
        if not truth or not len(truth[0]) or len(archive) < 3:
            return None
        ids = np.asarray(archive.data("evaluation"), dtype=np.int64)
        x = np.column_stack([np.asarray(archive.data("measures")), np.ones(len(ids))])
        y = np.stack([truth[i] for i in ids]).astype(np.float64)
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        total = ((y - y.mean(axis=0)) ** 2).sum()
        return None if total == 0 else round(float(1.0 - ((y - x @ coef) ** 2).sum() / total), 4)

    def learned_summary(self, algo: dict[str, Any]) -> dict[str, Any]:
        space: LearnedSpace = algo["space"]
        return {"autoencoder": {"outcome_r2": self.outcome_r2(algo), "frames": space.frame_shape[0],
                                "frame_size": space.frame_shape[1],
                                "latent_dim": space.settings.latent_dim, "trainings": space.trainings,
                                "next_training_generation": algo["schedule"].next_generation,
                                "frames_stored": algo["frames_stored"], "file": f"qd/{AUTOENCODER_FILE}"}}

    def write_files(self, algo: dict[str, Any], out: Path) -> dict[str, Any]:
        algo["space"].save(out / AUTOENCODER_FILE)
        archive = algo[self.learned_archives[0]]
        if not len(archive):
            return {}
        ids = np.asarray(archive.data("evaluation"), dtype=np.int64)
        picks = np.sort(ids[np.linspace(0, len(ids) - 1, min(8, len(ids))).astype(int)])
        plot_reconstructions(self.store.read(picks), algo["space"].reconstruct(self.store.read(picks)), picks,
                             out.parent / RECONSTRUCTIONS_PNG)
        return {"reconstructions_png": RECONSTRUCTIONS_PNG}


def plot_reconstructions(frames: np.ndarray, recon: np.ndarray, ids: np.ndarray, path: Path) -> None:
    """A PNG: for each agent a column of its K frames, above the autoencoder's reconstruction of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from workbench.runs import atomic_path

    n, k = frames.shape[0], frames.shape[1]
    fig, axes = plt.subplots(2 * k, n, figsize=(1.2 * n, 1.25 * 2 * k), squeeze=False)
    for col in range(n):
        for f in range(k):
            for row, source in ((f, frames), (k + f, recon)):
                ax = axes[row][col]
                ax.imshow(source[col, f])
                ax.set_xticks([])
                ax.set_yticks([])
        axes[0][col].set_title(f"eval {ids[col] + 1}", fontsize=6)
    axes[0][0].set_ylabel("frames", fontsize=7)
    axes[k][0].set_ylabel("autoencoder", fontsize=7)
    fig.suptitle("archive members: episode frames (top) and their reconstructions (bottom)", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
