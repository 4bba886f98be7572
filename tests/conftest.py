"""Shared fixtures. Tests run real things at small scale: real MuJoCo, real SB3, the real CLI."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# No CLIP weights can be fetched here: fail fast instead of ~46 s of download retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests never talk to the user's shared local LLM server (a busy one stalls the suite for minutes):
# a test that needs an LLM takes the `llm_env` fixture (its own server); any other LLM call fails
# fast against this closed port.
os.environ["WORKBENCH_LLM_URL"] = "http://127.0.0.1:9/v1"
# Offline datasets (Minari) the tests record go to a throwaway root, never the user's ~/.minari
# (the CLI subprocesses inherit it).
os.environ["MINARI_DATASETS_PATH"] = tempfile.mkdtemp(prefix="workbench-minari-")

REPO = Path(__file__).resolve().parent.parent
TASKS = REPO / "tasks"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def tiny_task(tmp_path: Path) -> Path:
    """A Reacher task with a budget of a few hundred steps, for CLI and pipeline tests."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\n"
        "sim: {env_id: Reacher-v5}\n"
        "learner: {name: ppo, hyperparams: {n_steps: 64, batch_size: 64, n_epochs: 2}}\n"
        "training: {total_steps: 512, n_envs: 2, checkpoint_every: 256}\n"
        "evaluation: {episodes: 3, video: false}\n"
    )
    return path
