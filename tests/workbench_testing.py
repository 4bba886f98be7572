"""Constants the test modules share (importable because tests/ is on sys.path via its conftest)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The CLIP architecture tests build with random weights: real code path, meaningless scores.
TEST_CLIP = ["reward.model=ViT-S-32", "reward.pretrained=null"]

SHIPPED = sorted((REPO / "tasks").rglob("*.yaml"))
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
