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


# Field names may not shadow State's own methods.
_RESERVED_NAMES = frozenset({"items", "keys", "values", "get", "to_arrays"})


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
        if not self.name.isidentifier() or self.name.startswith("_") or self.name in _RESERVED_NAMES:
            raise ValueError(f"field name {self.name!r} must be a public Python identifier, "
                             f"not one of {sorted(_RESERVED_NAMES)}")

    def describe(self) -> str:
        shape = "scalar" if self.shape == () else f"shape {self.shape}"
        where = f", {self.frame}" if self.frame else ""
        return f"{self.name}: np.ndarray  # {shape}, {self.unit}{where}. {self.doc}"


_F64 = np.dtype(np.float64)


def _frozen_copy(value: Any) -> np.ndarray:
    # ndarray.copy() is the cheaper path for the common case (a float64 view of MjData).
    array = value.copy() if type(value) is np.ndarray and value.dtype is _F64 else np.array(value, dtype=_F64)
    array.flags.writeable = False
    return array


class State(Mapping[str, np.ndarray]):
    """An immutable snapshot of a StateView. Attribute and mapping access; arrays are read-only copies.

    Fields live in the instance ``__dict__`` so ``state.fingertip_pos`` is a plain attribute
    lookup: reward code reads it every env step.
    """

    def __init__(self, values: Mapping[str, Any]):
        self.__dict__.update({name: _frozen_copy(value) for name, value in values.items()})

    @classmethod
    def _from_frozen(cls, values: dict[str, np.ndarray]) -> State:
        """Wrap arrays that are already read-only copies (the StateSchema.read hot path)."""
        state = cls.__new__(cls)
        state.__dict__.update(values)
        return state

    def __getattr__(self, name: str) -> np.ndarray:  # only called for names that are not fields
        raise AttributeError(f"state has no field {name!r}; fields are: {', '.join(sorted(self.__dict__))}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("State is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("State is read-only")

    def __getitem__(self, name: str) -> np.ndarray:
        return self.__dict__[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict__)

    def __len__(self) -> int:
        return len(self.__dict__)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={np.array2string(v, precision=3)}" for k, v in self.__dict__.items())
        return f"State({inner})"

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain writable copies, e.g. to save as ``.npz``."""
        return {k: np.array(v) for k, v in self.__dict__.items()}


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

    def read(self, env: Any, fields: frozenset[str] | None = None) -> State:
        """Read the declared fields (or only ``fields``) from the live (unwrapped) env."""
        raw = self.reader(env)
        values: dict[str, np.ndarray] = {}
        for f in self.fields:
            if fields is not None and f.name not in fields:
                continue
            value = _frozen_copy(raw[f.name])
            if value.shape != f.shape:
                raise RuntimeError(
                    f"StateView {self.task}.{f.name}: reader gave shape {value.shape}, "
                    f"declared {f.shape} (adapter bug)"
                )
            values[f.name] = value
        return State._from_frozen(values)

    def describe(self) -> str:
        """A compact Pythonic class stub of the fields — the text an LLM is shown."""
        lines = [f"class State:  # {self.task}"]
        if self.doc:
            lines.append(f'    """{self.doc}"""')
        lines.extend(f"    {f.describe()}" for f in self.fields)
        return "\n".join(lines)
