"""The house rule, checked on every module's imports (module level and inside functions alike):
the core (``workbench/`` outside the simulator adapters and the CLI shell) imports no leaf, and the
leaves (``reward_synthesis/``, ``policies/``, the adapters) never import each other. Leaves are
found through the registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LEAVES = ("reward_synthesis", "policies")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute module a file imports, wherever the import statement stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _room(path: Path) -> str:
    """Which room a module lives in: 'core', 'cli', 'sims', or a leaf package's name."""
    rel = path.relative_to(REPO)
    if rel.parts[0] == "workbench":
        if rel.parts[1] == "sims":
            return "sims"
        return "cli" if rel.name == "cli.py" else "core"
    return rel.parts[0]


MODULES = sorted(p for top in ("workbench", *LEAVES) for p in (REPO / top).rglob("*.py"))


def test_every_package_is_walked() -> None:
    rooms = {_room(p) for p in MODULES}
    assert {"core", "cli", "sims", *LEAVES} <= rooms and len(MODULES) > 40


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(REPO)) for p in MODULES])
def test_imports_follow_the_house_rule(path: Path) -> None:
    room = _room(path)
    if room == "cli":
        return  # the outer shell mounts the leaves' commands
    forbidden = set(LEAVES) - {room}  # core and adapters import no leaf; a leaf imports no other leaf
    bad = [f"{path.relative_to(REPO)}:{line} imports {module}" for line, module in _imports(path)
           if module.split(".")[0] in forbidden]
    assert not bad, "\n".join(bad)
