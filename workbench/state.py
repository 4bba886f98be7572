"""The StateView contract: named, typed, unit-documented quantities read from a live simulator.

A simulator adapter declares a :class:`StateSchema` (a tuple of :class:`Field`) and a reader
that fills it from the live env. Reward code and the LLM see the same schema: reward code
reads values as attributes (``state.fingertip_pos``); the LLM is shown :meth:`StateSchema.describe`,
which is generated from the fields and so cannot drift from what the code reads.

Values in a :class:`State` are read-only copies: reward code can never change the simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Field", "State", "StateSchema"]


@dataclass(frozen=True)
class Field:
    """One named quantity: ``fingertip_pos: (3,) m, world frame — where the fingertip is``."""

    name: str
    shape: tuple[int, ...]
    unit: str
    doc: str
    frame: str = ""
    dtype: str = "float64"

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.startswith("_"):
            raise ValueError(f"field name {self.name!r} must be a public Python identifier")

    def describe(self) -> str:
        shape = "scalar" if self.shape == () else f"shape {self.shape}"
        where = f", {self.frame}" if self.frame else ""
        return f"{self.name}: np.ndarray  # {shape}, {self.unit}{where}. {self.doc}"


class State(Mapping[str, np.ndarray]):
    """An immutable snapshot of a StateView. Attribute and mapping access; arrays are read-only copies."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]):
        frozen: dict[str, np.ndarray] = {}
        for name, value in values.items():
            array = np.array(value, dtype=np.float64, copy=True)
            array.setflags(write=False)
            frozen[name] = array
        object.__setattr__(self, "_values", frozen)

    def __getattr__(self, name: str) -> np.ndarray:
        values = object.__getattribute__(self, "_values")
        try:
            return values[name]
        except KeyError:
            raise AttributeError(
                f"state has no field {name!r}; fields are: {', '.join(sorted(values))}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("State is read-only")

    def __getitem__(self, name: str) -> np.ndarray:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={np.array2string(v, precision=3)}" for k, v in self._values.items())
        return f"State({inner})"

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain writable copies, e.g. to save as ``.npz``."""
        return {k: np.array(v) for k, v in self._values.items()}


@dataclass(frozen=True)
class StateSchema:
    """The declared fields of a task's StateView and the function that reads them from an env."""

    task: str
    fields: tuple[Field, ...]
    reader: Callable[[Any], Mapping[str, Any]]
    doc: str = ""

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in StateSchema for {self.task}: {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def read(self, env: Any) -> State:
        """Read every declared field from the live (unwrapped) env and check its shape."""
        raw = self.reader(env)
        values: dict[str, Any] = {}
        for f in self.fields:
            value = np.asarray(raw[f.name], dtype=np.float64)
            if value.shape != f.shape:
                raise RuntimeError(
                    f"StateView {self.task}.{f.name}: reader gave shape {value.shape}, "
                    f"declared {f.shape} (adapter bug)"
                )
            values[f.name] = value
        return State(values)

    def describe(self) -> str:
        """A compact Pythonic class stub of the fields — the text an LLM is shown."""
        lines = [f"class State:  # {self.task}"]
        if self.doc:
            lines.append(f'    """{self.doc}"""')
        lines.extend(f"    {f.describe()}" for f in self.fields)
        return "\n".join(lines)
