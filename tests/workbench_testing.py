"""Constants and helpers the test modules share (importable because tests/ is on sys.path via its conftest)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The CLIP architecture tests build with random weights: real code path, meaningless scores.
TEST_CLIP = ["reward.model=ViT-S-32", "reward.pretrained=null"]

SHIPPED = sorted((REPO / "tasks").rglob("*.yaml"))
# Shipped tasks whose build is slow (a SAPIEN scene, a CLIP model: 6-11 s each on 2 cores) and whose
# simulator and reward source other shipped tasks already build in the default suite (push_cube,
# highway_state): the tests that build every shipped task build these in `make test-slow` only.
SLOW_BUILDS = frozenset({"pick_cube", "stack_cube", "maniskill_bc", "maniskill_grape", "maniskill_srpo",
                         "highway_clg"})


def shipped_params() -> list:
    """SHIPPED as pytest params named by file stem, the SLOW_BUILDS marked slow."""
    import pytest

    return [pytest.param(p, id=p.stem, marks=pytest.mark.slow if p.stem in SLOW_BUILDS else ())
            for p in SHIPPED]
PIXEL_SOURCES = ("clip_goal", "goal_baseline")


def load_shipped(path: Path, tmp: Path):
    """A shipped task's spec as the tests can build it here: CARLA tasks skip (with the reason)
    when no server answers, ManiSkill tasks when no Vulkan device can be had; pixel rewards use
    the random-weight test backbone; a perceptual task gets a throwaway model learned from two
    recorded reference demos (it ships without one: making it needs real CLIP weights)."""
    import pytest

    from workbench.errors import TaskError
    from workbench.spec import load_task, parse_yaml

    raw = parse_yaml(path.read_text(), file=str(path))
    sim, reward = raw.get("sim", {}), raw.get("reward", {})
    if sim.get("name") == "carla":
        from workbench.sims.carla import probe_server

        kwargs = sim.get("kwargs", {})
        try:
            probe_server(kwargs.get("host", "127.0.0.1"), int(kwargs.get("port", 2000)), 2.0)
        except TaskError as err:
            pytest.skip(f"no CARLA server: {err.message}")
    if sim.get("name") == "maniskill":
        pytest.importorskip("mani_skill",
                            reason="ManiSkill is an optional extra: pip install 'rl-workbench[maniskill]'")
        from workbench.sims.maniskill import vulkan_available

        ok, why = vulkan_available()
        if not ok:
            pytest.skip(why)
    if raw.get("learner", {}).get("name") in DATASET_LEARNERS:
        record_tiny_dataset(raw["learner"]["hyperparams"]["dataset"], path)
    source = reward.get("source")
    if source == "perceptual":
        from rich.console import Console

        from workbench.cli import learn_perceptual

        quiet = Console(quiet=True)
        learn_perceptual(path, tmp / "demos", 2, record=2, out_file=tmp / "model.json",
                  overrides=[*TEST_CLIP, "sim.max_episode_steps=20"], console=quiet, status=quiet)
        return load_task(path, [*TEST_CLIP, f"reward.file={tmp / 'model.json'}"])
    if source in PIXEL_SOURCES:
        return load_task(path, [*TEST_CLIP, "reward.calibration_steps=16"])
    return load_task(path)


DATASET_LEARNERS = ("bc", "mopo", "morec", "vla_bc", "grape", "srpo")  # their tasks name a Minari dataset


def record_tiny_dataset(name: str, task_file: Path, *, episodes: int = 4, steps: int = 50,
                        refs: tuple[float, float | None] = (-20.0, 200.0), policy: str = "random",
                        overrides: list[str] | None = None) -> None:
    """A small Minari dataset ``name`` of ``policy`` (random, or the adapter's scripted ``reference``)
    in the env of ``task_file`` (episodes of at most ``steps`` steps), unless the tests' dataset root
    (conftest) has it: what an offline or VLA task reads."""
    from workbench.datasets import RandomPolicy, list_datasets, policy_acts, record_rollouts, reference_acts
    from workbench.spec import load_task
    from workbench.task import Task

    if any(d["id"] == name for d in list_datasets()):
        return
    task = Task.build(load_task(task_file, [f"sim.max_episode_steps={steps}", *(overrides or [])], learner=False))
    env = task.make_env()
    space = env.action_space
    env.close()
    act = reference_acts(task) if policy == "reference" else policy_acts(RandomPolicy(space, 0), deterministic=False)
    record_rollouts(task, act, name=name, episodes=episodes, seed=0, refs=refs,
                    policy_record={"kind": policy, "describe": f"{policy} actions (tests)"})


def set_args(overrides: list[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]`` for the CLI."""
    return [arg for item in overrides for arg in ("--set", item)]


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``workbench ARGS`` in a fresh process, from the repository root."""
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def wait_for_checkpoint(root: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    """The run directory under ``root`` once its ``checkpoints/latest.json`` reaches ``step`` (the
    run in ``proc`` must still be going)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "run exited early"
        for latest in root.glob("*/checkpoints/latest.json"):
            try:
                if json.loads(latest.read_text())["step"] >= step:
                    return latest.parent.parent
            except (json.JSONDecodeError, KeyError):
                pass
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


def kill_after_checkpoint(run_args: list[str], root: Path, step: int, timeout: float = 120) -> Path:
    """Start ``workbench run RUN_ARGS --runs-dir ROOT --quiet`` in a fresh process, SIGKILL it once
    its checkpoint reaches ``step``, and return its run directory (a run killed mid-training)."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "run", *run_args, "--runs-dir", str(root),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        return wait_for_checkpoint(root, step, proc, timeout)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def resume_to(run: Path, total: int, *, budget: str = "total_steps: 1000000") -> subprocess.CompletedProcess[str]:
    """``workbench run --resume RUN`` after setting its resolved task's budget to ``total`` steps (a
    test's shortcut: a killed long run finishes a few generations later)."""
    resolved = (run / "task.yaml").read_text()
    assert budget in resolved, f"{run}/task.yaml has no {budget!r}"
    (run / "task.yaml").write_text(resolved.replace(budget, f"total_steps: {total}"))
    return cli("run", "--resume", str(run), "--quiet")


def qd_archive(run: Path, stem: str):  # noqa: ANN201 - a ribs archive (ribs is an optional extra)
    """The ribs archive a QD run wrote as ``qd/<stem>.pkl``."""
    import pickle

    with open(run / "qd" / f"{stem}.pkl", "rb") as fh:
        return pickle.load(fh)
