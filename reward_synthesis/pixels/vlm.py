"""The vision-language backbone every pixel reward uses: open_clip models, batched on CPU or GPU.

A :class:`ClipBackbone` embeds camera frames and prompts into CLIP's joint space (unit vectors).
Frames are preprocessed as one tensor batch (resize shorter side, centre crop, normalise — the
same steps as open_clip's PIL transform, done on the whole batch) so n envs' frames of one step
cost one forward pass. Text embeddings are cached per prompt.

Weights: ``pretrained`` is an open_clip tag (``laion2b_s34b_b79k``, from the Hugging Face cache or
the network; ``HF_HUB_OFFLINE=1`` is respected) or a local checkpoint file. ``pretrained: null``
builds the architecture with random weights: only useful to test plumbing, and said loudly.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import MissingDependency, WorkbenchError

__all__ = ["ClipBackbone", "load_backbone", "resolve_device", "RANDOM_WEIGHTS_WARNING"]

RANDOM_WEIGHTS_WARNING = ("WARNING: CLIP model {model!r} has RANDOM weights (pretrained: null): its rewards "
                          "carry no meaning. Set reward.pretrained to an open_clip tag or a checkpoint file.")


def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError:
        raise MissingDependency("pixel rewards (clip_goal, goal_baseline, perceptual)", "vlm",
                                "open_clip_torch") from None
    return open_clip


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WorkbenchError(f"device {device!r} asked for, but torch sees no CUDA device\n"
                             "  fix: set reward.device: cpu (or auto), or run on a machine with a GPU")
    return device


@dataclass(frozen=True)
class _Preprocess:
    """open_clip's image transform as batch tensor ops: size, crop and normalisation constants."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str

    @classmethod
    def from_transform(cls, transform: Any) -> _Preprocess:
        size, mean, std, interp = 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic"
        for t in getattr(transform, "transforms", ()):
            kind = type(t).__name__
            if kind == "Resize":
                s = t.size
                size = int(s if isinstance(s, int) else min(s))
                interp = str(getattr(t.interpolation, "value", t.interpolation))
            elif kind == "CenterCrop":
                size = int(min(t.size))
            elif kind == "Normalize":
                mean, std = tuple(float(x) for x in t.mean), tuple(float(x) for x in t.std)
        return cls(size, mean, std, interp if interp in ("bicubic", "bilinear", "nearest") else "bicubic")


@dataclass
class ClipBackbone:
    """An open_clip model in eval mode, with batched frame preprocessing and a prompt cache."""

    model_name: str
    pretrained: str | None
    device: str
    model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    prep: _Preprocess
    batch_size: int = 64
    _text_cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def random_weights(self) -> bool:
        return self.pretrained is None

    @property
    def embed_dim(self) -> int:
        return int(self.encode_text(["a"]).shape[1])

    # ------------------------------------------------------------------ text
    def encode_text(self, prompts: Sequence[str]) -> np.ndarray:
        """Unit-norm text embeddings ``[len(prompts), D]`` (float32), each prompt encoded once."""
        import torch

        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing:
            with torch.inference_mode():
                tokens = self.tokenizer(missing).to(self.device)
                emb = self.model.encode_text(tokens).float()
                emb = emb / emb.norm(dim=-1, keepdim=True)
            for prompt, row in zip(missing, emb.cpu().numpy()):
                self._text_cache[prompt] = row
        return np.stack([self._text_cache[p] for p in prompts])

    # ------------------------------------------------------------------ images
    def preprocess(self, frames: np.ndarray) -> Any:
        """``[N, H, W, 3]`` uint8 frames -> normalised ``[N, 3, S, S]`` float tensor on the device."""
        import torch
        import torch.nn.functional as F

        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames shaped [N, H, W, 3], got {frames.shape}")
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        h, w = x.shape[-2:]
        s = self.prep.size
        scale = s / min(h, w)
        nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode=self.prep.interpolation,
                              antialias=self.prep.interpolation != "nearest",
                              align_corners=False if self.prep.interpolation != "nearest" else None)
        top, left = (nh - s) // 2, (nw - s) // 2
        x = x[..., top:top + s, left:left + s].clamp_(0.0, 1.0)
        mean = torch.tensor(self.prep.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.prep.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """Unit-norm image embeddings ``[N, D]`` (float32), in forward passes of ``batch_size``."""
        import torch

        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        out = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                x = self.preprocess(frames[start:start + self.batch_size])
                emb = self.model.encode_image(x).float()
                out.append((emb / emb.norm(dim=-1, keepdim=True)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)


_CACHE: dict[tuple[str, str | None, str], ClipBackbone] = {}
_LOCK = threading.Lock()


def load_backbone(model: str, pretrained: str | None, *, device: str = "auto", base_dir: Path | None = None,
                  file: str | None = None) -> ClipBackbone:
    """Build (once per process) the open_clip ``model`` with ``pretrained`` weights on ``device``.

    ``pretrained`` that names an existing file (relative to ``base_dir``) is loaded from disk.
    Errors name the reward keys to fix; they never start a download that cannot succeed offline.
    """
    open_clip = _import_open_clip()
    dev = resolve_device(device)
    weights = pretrained
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_absolute() and base_dir is not None and (base_dir / path).is_file():
            path = base_dir / path
        if path.is_file():
            weights = str(path.resolve())
    key = (model, weights, dev)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if model not in open_clip.list_models():
            import difflib

            close = difflib.get_close_matches(model, open_clip.list_models(), n=3)
            raise WorkbenchError(f"{file or 'task'}: reward.model: unknown open_clip model {model!r}\n"
                                 f"  fix: use one of open_clip.list_models(), e.g. {', '.join(close) or 'ViT-B-32'}")
        if weights is not None and not Path(weights).is_file():
            tags = open_clip.list_pretrained_tags_by_model(model)
            if weights not in tags:
                looks_like_path = any(c in weights for c in "/\\") or weights.endswith((".bin", ".pt", ".safetensors"))
                what = "no such checkpoint file" if looks_like_path else f"unknown pretrained tag for {model}"
                raise WorkbenchError(f"{file or 'task'}: reward.pretrained: {what}: {weights!r}\n"
                                     f"  fix: a checkpoint file path, or one of: {', '.join(tags) or '(none)'}")
        import torch

        try:
            # Random weights are seeded so a run, its resume and its evaluation score alike.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                clip, _, transform = open_clip.create_model_and_transforms(model, pretrained=weights, device=dev)
        except Exception as err:  # network/cache failure: open_clip/huggingface_hub raise many types
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            raise WorkbenchError(
                f"{file or 'task'}: reward.pretrained: could not load {weights!r} weights for {model}: "
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}\n"
                f"  fix: download them where there is internet (open_clip caches them under HF_HOME), copy the "
                f"cache here, or point reward.pretrained at the checkpoint file"
                + (" (HF_HUB_OFFLINE=1 is set: only the local cache is used)" if offline else "")) from None
        clip.eval()
        if weights is None:
            print(RANDOM_WEIGHTS_WARNING.format(model=model), file=sys.stderr, flush=True)
        backbone = ClipBackbone(model, weights, dev, clip, open_clip.get_tokenizer(model),
                                _Preprocess.from_transform(transform))
        _CACHE[key] = backbone
        return backbone
