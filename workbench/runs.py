"""The run directory: everything needed to reproduce or audit a run, written atomically.

Layout of ``runs/{task}__{learner}__s{seed}__{time}/``::

    task.yaml           the resolved task (what actually ran)      task.source.yaml  the file as given
    run.json            command, versions, seeds, status, steps    reward/           program, sha256, check report
    tb/                 TensorBoard logs                           monitor/          per-episode CSVs
    checkpoints/        step_<N>/ + latest.json (written last)     model/            the final policy
    eval.json           evaluation                                 videos/           mp4s
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import RunDirError

__all__ = ["Run", "atomic_write", "atomic_path", "write_json", "package_versions", "default_runs_root"]

RUN_FILE = "run.json"
TASK_FILE = "task.yaml"
KEEP_CHECKPOINTS = 2


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success fsync and rename it over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix: writers like imageio pick the format from it.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; run files are meant to be shared
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write(target: Path, data: str | bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def write_json(target: Path, obj: Any) -> None:
    atomic_write(target, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("rl-workbench", "torch", "stable-baselines3", "gymnasium", "mujoco", "numpy", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def default_runs_root() -> Path:
    return Path(os.environ.get("WORKBENCH_RUNS_DIR", "runs"))


@dataclass
class Run:
    path: Path

    # ------------------------------------------------------------------ creation / opening
    @classmethod
    def create(cls, root: Path, *, task: str, learner: str, seed: int, resolved: dict[str, Any],
               source_path: str | None) -> Run:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{task}__{learner.replace(':', '.')}__s{seed}__{stamp}"
        path = Path(root) / base
        n = 1
        while path.exists():  # two runs started within the same second
            n += 1
            path = Path(root) / f"{base}-{n}"
        path.mkdir(parents=True)
        run = cls(path)
        atomic_write(path / TASK_FILE, yaml.safe_dump(resolved, sort_keys=False))
        if source_path and Path(source_path).is_file():
            shutil.copyfile(source_path, path / "task.source.yaml")
        write_json(path / RUN_FILE, {
            "name": path.name, "command": sys.argv, "cwd": os.getcwd(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": seed,
            "versions": package_versions(), "host": platform.node(), "status": "created", "steps": 0,
        })
        return run

    @classmethod
    def open(cls, path: str | Path) -> Run:
        path = Path(path)
        if not (path / RUN_FILE).is_file() or not (path / TASK_FILE).is_file():
            raise RunDirError(f"{path}: not a workbench run directory (no {RUN_FILE} / {TASK_FILE})\n"
                              "  fix: pass a directory made by `workbench run`, e.g. runs/reacher__sac__s0__...")
        return cls(path)

    # ------------------------------------------------------------------ metadata
    @property
    def name(self) -> str:
        return self.path.name

    def info(self) -> dict[str, Any]:
        return json.loads((self.path / RUN_FILE).read_text())

    def update_info(self, **fields: Any) -> None:
        info = self.info()
        info.update(fields)
        write_json(self.path / RUN_FILE, info)

    def resolved_task(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / TASK_FILE).read_text())

    def subdir(self, name: str) -> Path:
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoints(self) -> Path:
        return self.subdir("checkpoints")

    def new_checkpoint_dir(self, step: int) -> Path:
        d = self.checkpoints / f"step_{step:010d}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        return d

    def commit_checkpoint(self, step: int, directory: Path) -> None:
        """Point ``latest.json`` at a fully written checkpoint, then prune old ones."""
        write_json(self.checkpoints / "latest.json", {"step": step, "dir": directory.name})
        keep = sorted(p for p in self.checkpoints.glob("step_*") if p.is_dir())
        for old in keep[:-KEEP_CHECKPOINTS]:
            if old != directory:
                shutil.rmtree(old, ignore_errors=True)

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        latest = self.path / "checkpoints" / "latest.json"
        if not latest.is_file():
            return None
        data = json.loads(latest.read_text())
        directory = self.path / "checkpoints" / data["dir"]
        return (int(data["step"]), directory) if directory.is_dir() else None
