"""Simulator adapters, one module per simulator, each a leaf behind the contract named here.

An adapter is found by its registry name (``workbench.registry.SIMS``, e.g. ``SIMS.get("mujoco")``),
never by importing its module here: a simulator's package is imported only when its env is made.
The contract (:mod:`workbench.sims.base`) is imported on first use (PEP 562).
"""

from __future__ import annotations

from importlib import import_module as _import_module

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; type checkers read it as True

__all__ = ["SimAdapter", "TaskProfile", "SuccessMetric"]

if TYPE_CHECKING:
    from workbench.sims.base import SimAdapter, SuccessMetric, TaskProfile


def __getattr__(name: str) -> object:
    """Import the contract on first use and keep the name here."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module("workbench.sims.base"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
