"""Plug-in names resolve only to built-in names or installed entry points, and only to classes
implementing their contract; nothing named in a task file or a policy.json is imported otherwise.

Third-party plug-ins are real distributions here: a ``*.dist-info`` folder with an
``entry_points.txt`` on sys.path, which is what ``pip install`` leaves behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from workbench.errors import RunDirError, TaskError
from workbench.registry import LEARNERS, POLICIES, REWARDS, SIMS, PluginError, UnknownName

REPO = Path(__file__).resolve().parents[2]

PLUGIN_MODULE = '''
import os
from pathlib import Path

from policies.sb3 import PPOLearner

if os.environ.get("WB_TEST_MARKER"):
    Path(os.environ["WB_TEST_MARKER"]).write_text("imported")


class ThirdPartyPPO(PPOLearner):
    """A third-party learner: PPO under another name."""


class NotALearner:
    """Has no fit/validate_spec/load_checkpoint."""

    def __init__(self):
        raise AssertionError("a class failing its contract must never be instantiated")


def not_a_class():
    raise AssertionError("a function named by an entry point must never be called")
'''

ENTRY_POINTS = """[rl_workbench.learners]
third_party_ppo = wb_test_plugin:ThirdPartyPPO
no_contract = wb_test_plugin:NotALearner
a_function = wb_test_plugin:not_a_class
broken = wb_test_plugin_missing:Thing
"""


def _install_fake_plugin(site: Path) -> Path:
    """What `pip install wb-test-plugin` would leave in site-packages."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "wb_test_plugin.py").write_text(PLUGIN_MODULE)
    info = site / "wb_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wb-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = _install_fake_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("wb_test_plugin", None)


def test_builtin_tables_match_the_entry_points_in_pyproject() -> None:
    """One lookup, two declarations of the project's own plug-ins: they must agree."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    for registry in (SIMS, REWARDS, LEARNERS, POLICIES):
        table = {name: registry.target(name) for name in registry._entries}
        assert declared[registry.group] == table, registry.group


@pytest.mark.parametrize("name", ["os:abort", "sys:exit", "tempfile:mkdtemp", "policies.sb3:PPOLearner",
                                  "workbench.sims.mujoco:MujocoAdapter", "", "mujoco\x1b[2J"])
def test_module_paths_and_unknown_names_are_refused_before_any_import(name: str) -> None:
    for registry in (SIMS, REWARDS, LEARNERS):
        registry.names()  # importlib.metadata's own lazy imports happen here, not below
    before = set(sys.modules)
    for registry in (SIMS, REWARDS, LEARNERS):
        assert name not in registry
        with pytest.raises(UnknownName) as info:
            registry.get(name)
        assert info.value.key == registry.key
        assert ", ".join(registry.names()) in info.value.hint
        assert "\x1b" not in info.value.message  # shown as repr: \x1b
    assert set(sys.modules) == before


def test_every_builtin_name_resolves_to_a_class_implementing_its_contract() -> None:
    for registry in (SIMS, REWARDS, LEARNERS, POLICIES):
        for name in registry.names():
            cls = registry.get(name)
            assert isinstance(cls, type)
            assert all(callable(getattr(cls, m)) for m in registry.contract)


def test_installed_entry_point_plugins_are_found_and_checked(plugin_site: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    monkeypatch.setenv("WB_TEST_MARKER", str(marker))
    names = LEARNERS.names()
    assert {"ppo", "sac", "third_party_ppo", "no_contract", "a_function", "broken"} <= set(names)
    assert not marker.exists()  # listing names imports nothing

    cls = LEARNERS.get("third_party_ppo")
    assert cls.__name__ == "ThirdPartyPPO" and marker.exists()

    with pytest.raises(PluginError, match="does not implement the learner contract: "
                                          "no validate_spec, fit, load_checkpoint") as info:
        LEARNERS.get("no_contract")
    assert info.value.key == "learner.name"
    with pytest.raises(PluginError, match="is a function, not a class"):
        LEARNERS.get("a_function")
    with pytest.raises(PluginError, match="cannot be imported: ModuleNotFoundError"):
        LEARNERS.get("broken")


def test_task_naming_an_entry_point_validates_and_a_bad_one_is_keyed(plugin_site: Path, tmp_path: Path) -> None:
    from workbench.spec import load_task

    def task(learner: str) -> Path:
        path = tmp_path / f"{learner}.yaml"
        path.write_text(f"sim: {{env_id: Reacher-v5}}\nlearner: {{name: {learner}, hyperparams: {{n_steps: 64}}}}\n"
                        "training: {total_steps: 100}\n")
        return path

    spec = load_task(task("third_party_ppo"))
    assert spec.learner.name == "third_party_ppo"
    # The plug-in validates its own section: PPO's hyperparameter table applies to the subclass.
    with pytest.raises(TaskError, match="learner.hyperparams.nsteps: PPO has no hyperparameter 'nsteps'"):
        load_task(task("third_party_ppo"), ["learner.hyperparams.nsteps=64"])
    for bad, why in (("no_contract", "does not implement"), ("a_function", "not a class")):
        with pytest.raises(TaskError, match=why) as info:
            load_task(task(bad))
        assert info.value.key == "learner.name" and info.value.file == str(task(bad))


def test_cli_runs_a_third_party_learner_through_its_entry_point(tmp_path: Path) -> None:
    site = _install_fake_plugin(tmp_path / "site")
    task = tmp_path / "t.yaml"
    task.write_text("sim: {env_id: Reacher-v5}\nlearner: {name: third_party_ppo}\ntraining: {total_steps: 100}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = subprocess.run([sys.executable, "-m", "workbench.cli", "list", "learners"], capture_output=True,
                            text=True, timeout=120, env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "third_party_ppo: stable-baselines3 PPO" in listed.stdout
    assert "no_contract: unavailable:" in listed.stdout and "broken: unavailable:" in listed.stdout
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "validate", str(task)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "learner     third_party_ppo" in proc.stdout


def _policy_dir(tmp_path: Path, named: object) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "policy.json").write_text(json.dumps({"class": named, "algo": "ppo"}))
    return model


@pytest.mark.parametrize("named", ["wb_test_plugin:ThirdPartyPPO", "os:system", "subprocess:Popen", 7,
                                   "policies.sb3:SACLearner"])
def test_policy_json_cannot_name_an_arbitrary_class(plugin_site: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, named: object) -> None:
    from workbench.learner import load_policy

    marker = tmp_path / "imported"
    monkeypatch.setenv("WB_TEST_MARKER", str(marker))
    with pytest.raises(RunDirError, match="unknown policy class") as info:
        load_policy(_policy_dir(tmp_path, named))
    valid = str(info.value).split("valid: ", 1)[1].split("\n", 1)[0]
    assert "sb3" in valid.replace(",", " ").split()  # the registered names are listed
    assert not marker.exists()


def test_policy_json_with_the_registered_target_still_loads(tmp_path: Path) -> None:
    """Runs record ``policies.sb3:SB3Policy`` (SB3Policy.save): exactly a registered target."""
    assert POLICIES.name_of_target("policies.sb3:SB3Policy") == "sb3"
    assert POLICIES.name_of_target("policies.sb3:SB3Policy.load") is None
