"""Lazy public names for a package's ``__init__`` (PEP 562), one way for every package.

A package lists which module defines each public name; a name's module is imported on first use
and the value kept in the package, so importing the package itself stays cheap (no torch, SB3 or
gymnasium until a name that needs them is used)::

    _MODULES = {"policies.sb3": ("PPOLearner", "SACLearner")}
    __getattr__, __dir__ = lazy_exports(globals(), _MODULES)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(namespace: dict[str, Any], modules: Mapping[str, tuple[str, ...]]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The package's ``__getattr__`` and ``__dir__`` for ``modules`` (module -> the names it defines)."""
    where = {name: module for module, names in modules.items() for name in names}
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ())})

    return __getattr__, __dir__
