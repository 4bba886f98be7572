"""The house rule, checked on every module's imports (module level and inside functions alike):
the core (``workbench/`` outside the simulator adapters and the CLI shell ``workbench/cli.py``) imports no leaf, and the
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


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """module -> the project's modules it imports (module level and inside functions). ``from
    package import name`` counts as importing the submodule when ``name`` is one."""
    names = {_module_name(p): p for p in MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                # a package import runs its __init__ only: the edge goes to the deepest module named
                while target and target not in names:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def test_no_import_cycle() -> None:
    """No two modules import each other, directly or around a loop, wherever the imports stand
    (a function-level import is still a cycle of responsibilities)."""
    graph = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("path", [p for p in MODULES if _room(p) in LEAVES],
                         ids=[str(p.relative_to(REPO)) for p in MODULES if _room(p) in LEAVES])
def test_leaves_print_nothing(path: Path) -> None:
    """The console belongs to the CLI (workbench/cli.py): a leaf reports through callbacks and
    return values, never through a rich Console of its own."""
    bad = [f"{path.relative_to(REPO)}:{line} imports {module}" for line, module in _imports(path)
           if module.split(".")[0] in ("rich", "typer")]
    assert not bad, "\n".join(bad)
