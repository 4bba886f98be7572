"""The curated public API (each package's ``__all__``) and what the installed distribution holds.

Every public name resolves; the names are imported lazily (PEP 562), so ``import workbench`` stays
cheap (no torch, no SB3, no gymnasium) and the lazy table reaches only modules the house rule lets
the package import; what type checkers see (the ``if TYPE_CHECKING:`` imports) is the same list.
A built wheel carries every package and the top-level ``assets/`` as ``workbench.assets``.
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("workbench", "workbench.sims", "policies", "reward_synthesis")
HEAVY = ("torch", "stable_baselines3", "gymnasium", "mujoco")


def _python(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and return its stdout."""
    environ = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"} | env
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                         env=environ)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _init(package: str) -> Path:
    return REPO.joinpath(*package.split("."), "__init__.py")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__ and len(set(module.__all__)) == len(module.__all__), "duplicates in __all__"
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


@pytest.mark.parametrize("package", PACKAGES)
def test_type_checkers_see_the_same_names(package: str) -> None:
    """The ``if TYPE_CHECKING:`` imports (what mypy and editors read) are exactly ``__all__``."""
    tree = ast.parse(_init(package).read_text())
    seen = [alias.asname or alias.name
            for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
            for stmt in node.body if isinstance(stmt, ast.ImportFrom) for alias in stmt.names]
    assert sorted(seen) == sorted(importlib.import_module(package).__all__)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_public_name_is_a_submodule(package: str) -> None:
    """``from workbench import evaluate`` would give the function or the module depending on what was
    imported before (importing a submodule sets the package attribute): no public name may be one."""
    module = importlib.import_module(package)
    submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
    assert not submodules & set(module.__all__)


def test_lazy_imports_follow_the_house_rule() -> None:
    """The lazy tables import by string, which tests/test_house_rules.py cannot see: the core's
    reaches only the core, a leaf's only itself."""
    import policies
    import reward_synthesis
    import workbench

    assert all(m.startswith("workbench.") for m in workbench._MODULES), workbench._MODULES
    assert all(m.startswith("policies.") for m in policies._MODULES), policies._MODULES
    assert all(m.startswith("reward_synthesis.") for m in reward_synthesis._MODULES), reward_synthesis._MODULES


def test_import_workbench_is_light() -> None:
    loaded = _python(f"import sys, workbench, workbench.sims, policies, reward_synthesis; "
                     f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert loaded == "[]", f"import workbench loads {loaded}"
    # The first use of a name imports what it needs, and only then.
    assert _python("import sys; from workbench import Task; print('torch' in sys.modules)") == "True"


def test_mujoco_gl_default_and_version() -> None:
    assert _python("import os, workbench; print(os.environ['MUJOCO_GL'])") == "egl"
    assert _python("import os, workbench; print(os.environ['MUJOCO_GL'])", MUJOCO_GL="osmesa") == "osmesa"
    import workbench

    assert workbench.__version__ == metadata.version("rl-workbench")


def test_asset_path() -> None:
    from workbench.assets import asset_path

    xml = asset_path("planar_push.xml")
    assert xml.is_file() and b"<mujoco" in xml.read_bytes()
    with pytest.raises(FileNotFoundError, match="no asset 'missing.xml'"):
        asset_path("missing.xml")


def test_wheel_holds_every_package_and_the_assets(tmp_path: Path) -> None:
    """A regular (non-editable) install: build the wheel from a copy of the tree and look inside."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("assets", "workbench", "reward_synthesis", "policies"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "--no-index", "-q", "-w", str(tmp_path / "dist")],
                         capture_output=True, text=True, timeout=300, cwd=src)
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    files = set(zipfile.ZipFile(wheel).namelist())
    assets = sorted(p.name for p in (REPO / "assets").iterdir() if p.suffix == ".xml")
    assert assets and {f"workbench/assets/{name}" for name in assets} <= files
    assert "workbench/assets/__init__.py" in files
    # Every source package ships (the package list is made in setup.py).
    modules = {str(p.relative_to(REPO)) for top in ("workbench", "reward_synthesis", "policies")
               for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= files, sorted(modules - files)
