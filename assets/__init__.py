"""The workbench's data files (MJCF models, small data files), installed as the package
``workbench.assets``.

The files live in the repository's top-level ``assets/`` folder; ``setup.py`` maps that folder to
the package ``workbench.assets`` (a wheel holds them in ``workbench/assets/``, an editable install
reads them here). Code finds a file through :func:`asset_path`, never through a path of its own::

    from workbench.assets import asset_path
    xml = asset_path("planar_push.xml")

A new file is installed when ``[tool.setuptools.package-data]`` in pyproject.toml matches it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["asset_path"]


def asset_path(name: str) -> Path:
    """The file ``name`` (e.g. ``"planar_push.xml"``) of the installed assets, as a path on disk
    (simulators open their models by path). Raises FileNotFoundError, naming the assets folder,
    when there is no such file."""
    root = files(__name__)
    resource = root.joinpath(name)
    if not isinstance(resource, Path):  # e.g. a zip import: MuJoCo cannot open a member of an archive
        raise FileNotFoundError(f"asset {name!r} is not a file on disk ({resource!r}): install the "
                                "rl-workbench wheel unpacked (pip does)")
    if not resource.is_file():
        raise FileNotFoundError(f"no asset {name!r} in {root} (the package workbench.assets, sourced from "
                                "the repository's assets/ folder)")
    return resource
