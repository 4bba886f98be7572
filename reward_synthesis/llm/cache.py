"""Response cache: a finished chat request replays from disk, so a re-run needs no server.

One JSON file per request, named by the sha256 of the canonical JSON of (model, messages, params),
written atomically. Params include everything that changes the answer: temperature, max_tokens,
stop, seed (and response_format when given). Requests that differ only in seed are different keys:
to draw several samples for one prompt, give each its own seed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from workbench.runs import atomic_write

__all__ = ["ResponseCache", "request_key", "default_cache_dir"]

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$WORKBENCH_LLM_CACHE`` or ``~/.cache/rl-workbench/llm``."""
    env = os.environ.get("WORKBENCH_LLM_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "rl-workbench" / "llm"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def request_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of (model, messages, params). ``None`` params are dropped,
    so adding a new optional parameter later does not change existing keys."""
    clean = {k: v for k, v in params.items() if v is not None}
    if isinstance(clean.get("stop"), str):
        clean["stop"] = [clean["stop"]]
    payload = {"model": model, "messages": messages, "params": clean}
    return hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()


class ResponseCache:
    """A directory of ``<key[:2]>/<key>.json`` files, one per answered request."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()

    @classmethod
    def default(cls) -> ResponseCache:
        return cls(default_cache_dir())

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r})"

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None when absent (or unreadable: a torn file counts as absent)."""
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or "text" not in entry:
            return None
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> Path:
        entry = {"format": CACHE_FORMAT, "key": key, **entry}
        target = self.path(key)
        atomic_write(target, json.dumps(entry, indent=1, ensure_ascii=False) + "\n")
        return target

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(1 for _ in self.directory.glob("*/*.json"))
