"""The response cache on its own: keys, files, the default directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from reward_synthesis.llm import ResponseCache, default_cache_dir
from reward_synthesis.llm.cache import request_key

MSGS = [{"role": "user", "content": "hi"}]
PARAMS = {"temperature": 0.7, "max_tokens": 8, "stop": None, "seed": 0}


def test_key_is_canonical_and_covers_inputs() -> None:
    key = request_key("m", MSGS, PARAMS)
    assert len(key) == 64
    assert key == request_key("m", [{"content": "hi", "role": "user"}], dict(reversed(list(PARAMS.items()))))
    assert key == request_key("m", MSGS, {**PARAMS, "response_format": None})  # None params are dropped
    assert request_key("m", MSGS, {**PARAMS, "stop": "x"}) == request_key("m", MSGS, {**PARAMS, "stop": ["x"]})
    others = {request_key("m2", MSGS, PARAMS), request_key("m", [{"role": "user", "content": "hi!"}], PARAMS),
              *(request_key("m", MSGS, {**PARAMS, k: v}) for k, v in
                (("temperature", 0.0), ("max_tokens", 9), ("stop", ["\n"]), ("seed", 1)))}
    assert key not in others and len(others) == 6


def test_put_get_and_torn_files(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = request_key("m", MSGS, PARAMS)
    assert cache.get(key) is None and key not in cache and len(cache) == 0
    path = cache.put(key, {"text": "hello", "model": "m"})
    assert path == cache.path(key) and path.parent.name == key[:2]
    assert cache.get(key)["text"] == "hello" and key in cache and len(cache) == 1
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    path.write_text('{"key": "' + key + '", "te')  # a torn file counts as a miss, not a crash
    assert cache.get(key) is None


def test_default_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WORKBENCH_LLM_CACHE", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "rl-workbench" / "llm"
    monkeypatch.setenv("WORKBENCH_LLM_CACHE", str(tmp_path / "c"))
    assert ResponseCache.default().directory == tmp_path / "c"
