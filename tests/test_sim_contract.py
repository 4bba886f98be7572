"""The simulator adapter contract (:class:`workbench.sims.base.SimAdapter`) held against the code on
both sides of it: every registered adapter class has the contract's methods with exactly its
parameters (names and kinds, in order), and every call the workbench makes through an adapter
binds to the contract's signatures.

The registry's own check (``Registry.get``) sees only that the methods exist; a protocol that says
``profile(spec)`` while every adapter and ``Task`` use ``profile(spec, env)`` passes it. This does
not. Adapter modules import their simulators inside methods, so importing the classes is cheap."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.registry import SIMS
from workbench.sims.base import SimAdapter

REPO = Path(__file__).resolve().parent.parent
METHODS = ("make_env", "profile", "env_ids")
# Built-in adapters: the registry names whose classes live in workbench/sims/ (an installed
# third-party plug-in is its own package's business).
BUILT_IN = sorted(name for name in SIMS.names() if SIMS.target(name).startswith("workbench.sims."))


def _parameters(func) -> list[tuple[str, inspect._ParameterKind]]:
    return [(p.name, p.kind) for p in inspect.signature(func).parameters.values()]


def _mismatches(cls: type, protocol: type = SimAdapter) -> list[str]:
    """What in ``cls`` departs from ``protocol``'s methods: a missing method, parameters that differ
    in name, kind or order, or a default the protocol has (callers may omit it) and ``cls`` lacks.
    ``cls`` may add defaults (e.g. ``env=None``)."""
    found = []
    for method in METHODS:
        want, have = getattr(protocol, method), getattr(cls, method, None)
        if not callable(have):
            found.append(f"{cls.__name__} has no method {method}")
            continue
        if _parameters(have) != _parameters(want):
            found.append(f"{cls.__name__}.{method}{inspect.signature(have)} differs from the contract's "
                         f"{method}{inspect.signature(want)}")
            continue
        for p in inspect.signature(want).parameters.values():
            if p.default is not p.empty and inspect.signature(have).parameters[p.name].default is p.empty:
                found.append(f"{cls.__name__}.{method}: {p.name} has no default (the contract's: {p.default!r})")
    return found


def test_built_in_adapters_are_registered() -> None:
    assert {"mujoco", "highway", "crafter", "maniskill"} <= set(BUILT_IN)


@pytest.mark.parametrize("name", BUILT_IN)
def test_adapter_implements_the_contract(name: str) -> None:
    cls = SIMS.get(name)
    assert not _mismatches(cls), "\n".join(_mismatches(cls))
    assert cls.name == name, f"{cls.__name__}.name is {cls.name!r}, registered as {name!r}"


def test_the_check_catches_drift() -> None:
    """The drift this test was written for (issue 14): a contract whose ``profile`` lacks ``env``."""

    class OldContract:
        def make_env(self, spec, *, render_mode=None): ...
        def profile(self, spec): ...
        def env_ids(self): ...

    class Adapter:
        def make_env(self, spec, *, render_mode=None): ...
        def profile(self, spec, env=None): ...
        def env_ids(self): ...

    assert _mismatches(Adapter, OldContract) == [
        "Adapter.profile(self, spec, env=None) differs from the contract's profile(self, spec)"]
    assert not _mismatches(Adapter)

    class Renamed(Adapter):
        def make_env(self, sim, *, render_mode=None): ...

    class PositionalRenderMode(Adapter):
        def make_env(self, spec, render_mode=None): ...

    class NoDefault(Adapter):
        def make_env(self, spec, *, render_mode): ...

    assert len(_mismatches(Renamed)) == len(_mismatches(PositionalRenderMode)) == len(_mismatches(NoDefault)) == 1


def _adapter_calls() -> list[tuple[str, str, int, list[str]]]:
    """Every call of a contract method on something named ``adapter`` (``adapter.profile(...)``,
    ``self.adapter.make_env(...)``) in the packages: (where, method, positional count, keywords)."""
    calls = []
    for top in ("workbench", "reward_synthesis", "policies"):
        for path in sorted((REPO / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in METHODS):
                    continue
                receiver = node.func.value
                named = receiver.id if isinstance(receiver, ast.Name) else getattr(receiver, "attr", "")
                if named.lower() != "adapter":
                    continue
                if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
                    continue  # *args / **kwargs: nothing to check statically
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                calls.append((where, node.func.attr, len(node.args), [k.arg for k in node.keywords]))
    return calls


def test_workbench_calls_adapters_through_the_contract() -> None:
    calls = _adapter_calls()
    assert {"make_env", "profile"} <= {method for _, method, _, _ in calls}, calls
    bad = []
    for where, method, positional, keywords in calls:
        try:
            inspect.signature(getattr(SimAdapter, method)).bind(None, *[None] * positional,
                                                               **dict.fromkeys(keywords))
        except TypeError as err:
            bad.append(f"{where}: adapter.{method} called with {positional} positional and "
                       f"{keywords} keyword arguments: {err}")
    assert not bad, "\n".join(bad)


def test_adapter_modules_import_no_simulator() -> None:
    """Importing every built-in adapter class (what ``workbench list`` does) loads no simulator
    package and no learner stack: those are imported inside the methods."""
    heavy = ("mujoco", "carla", "crafter", "highway_env", "mani_skill", "sapien", "minedojo",
             "rocketsim", "rlgym", "torch", "stable_baselines3")
    code = (
        "import sys\n"
        "from workbench.registry import SIMS\n"
        f"for name in {BUILT_IN!r}: SIMS.get(name)\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"adapter modules import {out.stdout.strip()} at module level"
