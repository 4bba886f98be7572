"""What the instruction suites share (``PlanarPushInstruct-v0``, ``ManiSkillInstruct-v0``): each goal or
task named by ``train`` phrasings (what demonstrations and rollouts use) and ``heldout`` ones (for
evaluation), and the rule by which a reset picks an instruction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

__all__ = ["SPLITS", "Phrased", "split_pairs", "choose_instruction"]

SPLITS = ("train", "heldout", "all")


class Phrased(Protocol):
    @property
    def train(self) -> tuple[str, ...]: ...

    @property
    def heldout(self) -> tuple[str, ...]: ...


def split_pairs(table: Mapping[str, Phrased], split: str) -> list[tuple[str, str]]:
    """(instruction, key) pairs of a split of ``table``, in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"instructions={split!r}: one of {', '.join(SPLITS)}")
    out = []
    for key, phrased in table.items():
        texts = {"train": phrased.train, "heldout": phrased.heldout}.get(split, phrased.train + phrased.heldout)
        out.extend((text, key) for text in texts)
    return out


def choose_instruction(pairs: Sequence[tuple[str, str]], table: Mapping[str, Phrased], options: dict[str, Any] | None,
                       seed: int | None, rng: np.random.Generator) -> tuple[str, str]:
    """The (instruction, key) a reset takes: ``options["instruction"]`` (any split's), else pair
    ``seed % n`` of the env's split (consecutive seeds cover it evenly), else a random one."""
    wanted = (options or {}).get("instruction")
    if wanted is not None:
        known = dict(split_pairs(table, "all"))
        if wanted not in known:
            raise ValueError(f"unknown instruction {wanted!r}; known: {sorted(known)}")
        return wanted, known[wanted]
    if seed is not None:
        return pairs[seed % len(pairs)]
    return pairs[int(rng.integers(len(pairs)))]
