"""The real CLI in subprocesses, on tiny budgets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from workbench_testing import kill_after_checkpoint, wait_for_checkpoint

REPO = Path(__file__).resolve().parents[2]
REACHER = REPO / "tasks" / "mujoco" / "reacher.yaml"


def wb(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def _run_dir(root: Path) -> Path:
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return run


def _steps_in_zip(model_zip: Path) -> int:
    with zipfile.ZipFile(model_zip) as z:
        return int(json.loads(z.read("data"))["num_timesteps"])


@pytest.mark.parametrize("what,expect", [("tasks", "reacher.yaml"), ("sims", "Reacher-v5"),
                                         ("rewards", "code"), ("learners", "learning_rate")])
def test_list(what: str, expect: str) -> None:
    proc = wb("list", what, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert expect in proc.stdout


def test_list_unknown_is_a_user_error() -> None:
    proc = wb("list", "robots")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "tasks|sims|rewards|learners" in proc.stderr


def test_validate_shows_state_view_and_success() -> None:
    proc = wb("validate", str(REACHER))
    assert proc.returncode == 0, proc.stderr
    assert "fingertip_pos: np.ndarray" in proc.stdout
    assert "within 0.02 m" in proc.stdout
    assert "reacher_precise.py" in proc.stdout


def test_run_writes_a_complete_run_directory(tiny_task: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = wb("run", str(tiny_task), "--runs-dir", str(runs), "--quiet", "--set", "evaluation.video=true",
              "--set", "evaluation.video_episodes=1")
    assert proc.returncode == 0, proc.stderr
    run = _run_dir(runs)
    assert run.name.startswith("tiny__ppo__s0__")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["steps"] == 512
    assert {"torch", "stable-baselines3", "gymnasium", "mujoco"} <= set(info["versions"])
    assert "--runs-dir" in info["command"]
    resolved = (run / "task.yaml").read_text()
    assert "total_steps: 512" in resolved
    ev = json.loads((run / "eval.json").read_text())
    assert {"mean_return", "std_return", "success_rate", "episodes", "per_episode"} <= set(ev)
    assert ev["episodes"] == 3 and len(ev["per_episode"]) == 3
    assert all(row["length"] == 50 for row in ev["per_episode"])
    assert (run / "curves.png").stat().st_size > 0  # 512 steps / 50-step episodes: ten episodes drawn
    (video,) = ev["videos"]
    assert Path(video).stat().st_size > 1000
    assert _steps_in_zip(run / "model" / "model.zip") == 512
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 512
    assert list((run / "tb").rglob("events.out.tfevents.*"))
    assert list((run / "monitor").glob("*.monitor.csv"))

    # workbench eval re-scores the saved policy.
    proc = wb("eval", str(run), "--episodes", "2", "--no-video")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "eval.json").read_text())["episodes"] == 2


def test_same_seed_gives_same_evaluation(tiny_task: Path, tmp_path: Path) -> None:
    results = []
    for i in range(2):
        runs = tmp_path / f"runs{i}"
        proc = wb("run", str(tiny_task), "--runs-dir", str(runs), "--quiet", "--seed", "3")
        assert proc.returncode == 0, proc.stderr
        run = _run_dir(runs)
        assert "__s3__" in run.name
        results.append([row["ret"] for row in json.loads((run / "eval.json").read_text())["per_episode"]])
    assert results[0] == results[1]


def test_code_reward_run_records_program_and_components(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = wb("run", str(REACHER), "--runs-dir", str(runs), "--quiet",
              "--set", "training.total_steps=1024", "--set", "training.n_envs=2",
              "--set", "learner.hyperparams.n_steps=256", "--set", "learner.hyperparams.batch_size=64",
              "--set", "training.eval_every=0", "--set", "evaluation.episodes=2", "--set", "evaluation.video=false")
    assert proc.returncode == 0, proc.stderr
    run = _run_dir(runs)
    record = json.loads((run / "reward" / "reward.json").read_text())
    program = (run / "reward" / "program.py").read_text()
    import hashlib

    assert record["sha256"] == hashlib.sha256(program.encode()).hexdigest()
    assert record["checks"]["accepted"] is True
    # The resolved task in the run points at the run's own copy of the program.
    assert "path: reward/program.py" in (run / "task.yaml").read_text()
    # Every reward component is logged to TensorBoard next to SB3's own metrics.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = list((run / "tb").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"reward/distance", "reward/control", "reward/precision", "reward/env"} <= tags, tags


def _long_tiny_task(tiny_task: Path) -> list[str]:
    return [str(tiny_task), "--set", "training.total_steps=200000", "--set", "training.checkpoint_every=1024",
            "--set", "learner.hyperparams.n_steps=256"]


def test_sigkill_then_resume_continues_step_count(tiny_task: Path, tmp_path: Path) -> None:
    run = kill_after_checkpoint(_long_tiny_task(tiny_task), tmp_path / "runs", 2048, timeout=240)
    step = json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    assert step >= 2048
    # Finish quickly: the resumed run keeps its config, so shorten it the way a user would not —
    # by editing the resolved task — to keep the test small.
    resolved = (run / "task.yaml").read_text().replace("total_steps: 200000", f"total_steps: {step + 1024}")
    (run / "task.yaml").write_text(resolved)
    before = {p.name: p.read_text().splitlines() for p in (run / "monitor").glob("*.monitor.csv")}
    proc2 = wb("run", "--resume", str(run), "--quiet")
    assert proc2.returncode == 0, proc2.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["resumed_from"] == step and info["status"] == "finished"
    assert _steps_in_zip(run / "model" / "model.zip") == step + 1024
    assert info["steps"] == step + 1024  # the true count, not the configured budget
    # The episode history is appended to, not overwritten: the header and the episodes that ended
    # by the checkpoint are kept, the ones after it (trained again) are dropped, so the episode
    # lengths add up to the steps trained, less the episodes still running at the end.
    from workbench.plots import read_episodes

    for name, lines in before.items():
        after = (run / "monitor" / name).read_text().splitlines()
        kept = next((i for i, (a, b) in enumerate(zip(after, lines)) if a != b), len(lines))
        assert kept >= len(lines) - 12 and kept > 2  # at most the episodes of one checkpoint interval
        assert len(after) > len(lines)  # and the resumed episodes follow
    lengths = read_episodes(run / "monitor")["length"]
    assert step + 1024 - 2 * 50 <= lengths.sum() <= step + 1024  # 2 envs, 50-step episodes


def _default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and Python then installs no Ctrl-C
    # handler: the child must get the disposition a terminal user's process has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_saves_checkpoint_and_exits_cleanly(tiny_task: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "run", *_long_tiny_task(tiny_task),
                             "--runs-dir", str(runs), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    run = wait_for_checkpoint(runs, 1024, proc, timeout=240)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "workbench run --resume" in stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted"
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == info["steps"] and latest["step"] >= 1024


def test_resume_of_a_non_run_dir_is_a_user_error(tmp_path: Path) -> None:
    proc = wb("run", "--resume", str(tmp_path))
    assert proc.returncode == 2 and "not a workbench run directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_reward_check_accepts_a_good_program() -> None:
    program = REPO / "tasks" / "mujoco" / "rewards" / "reacher_precise.py"
    proc = wb("reward", "check", "--task", str(REACHER), str(program))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accepted" in proc.stdout
    for check in ("static", "isolated_run", "finite", "scale", "non_constant", "time_budget"):
        assert check in proc.stdout


@pytest.mark.parametrize("body,reason", [
    ("import os\ndef compute_reward(state, action):\n    return 0.0\n", "import of 'os'"),
    ("def compute_reward(state, action):\n    return float('nan')\n", "finite"),
    ("def compute_reward(state, action):\n    return 1.0\n", "non_constant"),
    ("def compute_reward(state, action):\n    return float(state.no_such_field[0])\n", "no_such_field"),
    # Runs fine, finite, varied -- but pays for moving AWAY from the target: the scripted
    # reference policy scores below random actions.
    ("import numpy as np\ndef compute_reward(state, action):\n"
     "    return float(np.linalg.norm(state.fingertip_to_target))\n", "prefers random actions"),
])
def test_reward_check_rejects_with_reasons(tmp_path: Path, body: str, reason: str) -> None:
    program = tmp_path / "bad.py"
    program.write_text(body)
    proc = wb("reward", "check", "--task", str(REACHER), str(program))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "rejected" in proc.stdout and reason in proc.stdout
    assert "Traceback" not in proc.stderr


def test_run_with_a_rejected_program_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "r.py").write_text("def compute_reward(state, action):\n    return open('/etc/passwd')\n")
    task = tmp_path / "t.yaml"
    task.write_text("sim: {env_id: Reacher-v5}\nreward: {source: code, path: r.py}\n"
                    "learner: {name: ppo}\ntraining: {total_steps: 64}\n")
    proc = wb("run", str(task), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "call to 'open' is not allowed" in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing half-made


# ----------------------------------------------------------------------------- hostile input (issue 13)

MALFORMED = REPO / "tests" / "data" / "malformed_tasks"
USER_ERROR_SECONDS = 90  # a generous bound on shared 2-core machines; a hang or a slow read blows it


def _cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: int = 120) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=None if env is None else {**os.environ, **env})
    return proc, time.monotonic() - start


def _assert_one_user_error(proc: subprocess.CompletedProcess[str], elapsed: float, *expected: str) -> None:
    """Exit 2, one message (the error and its fix) naming what is expected, nothing raw."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "\x1b" not in text
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) == 2 and lines[1].startswith("  fix: "), proc.stderr
    for e in expected:
        assert e in proc.stderr, (e, proc.stderr)
    assert elapsed < USER_ERROR_SECONDS


def _expect_line(path: Path) -> str:
    return path.read_text().splitlines()[0].removeprefix("# expect: ")


_PLUGIN_TASKS = {
    "sim.name": "sim: {{name: '{n}', env_id: Reacher-v5}}\nlearner: {{name: ppo}}\n",
    "learner.name": "sim: {{env_id: Reacher-v5}}\nlearner: {{name: '{n}'}}\n",
    "reward.source": "sim: {{env_id: Reacher-v5}}\nreward: {{source: '{n}'}}\nlearner: {{name: ppo}}\n",
}


_PLUGIN_NAMES = ["os:abort", "sys:exit", "tempfile:mkdtemp"]


# Each name under each key once in the default suite; the whole cross product under `make test-slow`.
@pytest.mark.parametrize("key, name", [
    pytest.param(key, name, marks=() if i == j else pytest.mark.slow)
    for i, key in enumerate(sorted(_PLUGIN_TASKS)) for j, name in enumerate(_PLUGIN_NAMES)])
def test_plugin_names_cannot_call_what_a_task_names(tmp_path: Path, key: str, name: str) -> None:
    """Once: os:abort killed `validate` (SIGABRT), sys:exit exited 0, tempfile:mkdtemp made a directory."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    task = tmp_path / "t.yaml"
    task.write_text(_PLUGIN_TASKS[key].format(n=name) + "training: {total_steps: 100}\n")
    proc, elapsed = _cli("validate", str(task), env={"TMPDIR": str(scratch)})
    _assert_one_user_error(proc, elapsed, str(task), f"{key}: unknown ", repr(name), "valid: ")
    assert list(scratch.iterdir()) == []


def test_list_tasks_parses_files_and_imports_nothing_they_name(tmp_path: Path) -> None:
    site, tasks, marker = tmp_path / "site", tmp_path / "tasks", tmp_path / "imported"
    site.mkdir()
    tasks.mkdir()
    # A module that would pass every contract, and says when it is imported.
    (site / "wb_marker.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "class Thing:\n    make_env = profile = env_ids = validate_spec = build = fit = None\n")
    for key, body in _PLUGIN_TASKS.items():
        (tasks / f"{key.replace('.', '_')}.yaml").write_text(body.format(n="wb_marker:Thing")
                                                           + "training: {total_steps: 100}\n")
    (tasks / "good.yaml").write_text('goal: "\\e[31mred\\e[0m"\nsim: {env_id: Reacher-v5}\nlearner: {name: ppo}\n'
                                     "training: {total_steps: 100}\n")
    proc, _ = _cli("list", "tasks", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    for key in _PLUGIN_TASKS:
        assert f"{key.replace('.', '_')}.yaml  invalid: " in proc.stdout and f"{key}: unknown" in proc.stdout
    assert "good.yaml  mujoco:Reacher-v5  reward=env  learner=ppo  — \\x1b[31mred\\x1b[0m" in proc.stdout
    assert "\x1b" not in proc.stdout


@pytest.mark.parametrize("name", ["deep_flow_sequence", "deep_flow_mapping", "duplicate_top_key", "seed_too_large",
                                  "negative_n_steps", "sac_train_freq_list", "python_object_hyperparam",
                                  "xml_file_not_xml", "ansi_in_sim_name"])
def test_validate_rejects_hostile_input_with_one_message(name: str) -> None:
    path = MALFORMED / f"{name}.yaml"
    proc, elapsed = _cli("validate", str(path))
    _assert_one_user_error(proc, elapsed, str(path), _expect_line(path))


@pytest.mark.parametrize("name", ["seed_too_large", "negative_n_steps"])
def test_run_rejects_what_validate_rejects_before_making_a_run_directory(tmp_path: Path, name: str) -> None:
    """Both once passed `validate`, then crashed `run` with a traceback, leaving a run marked running."""
    path = MALFORMED / f"{name}.yaml"
    proc, elapsed = _cli("run", str(path), "--runs-dir", str(tmp_path / "runs"), "--quiet")
    _assert_one_user_error(proc, elapsed, str(path), _expect_line(path))
    assert not (tmp_path / "runs").exists()


def test_run_seed_option_is_bounded(tmp_path: Path) -> None:
    proc, elapsed = _cli("run", str(REACHER), "--seed", str(2**64), "--runs-dir", str(tmp_path / "runs"))
    _assert_one_user_error(proc, elapsed, "training.seed")
    assert not (tmp_path / "runs").exists()


def test_validate_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    """MuJoCo and the YAML reader once waited forever for a writer."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc, elapsed = _cli("validate", str(fifo), timeout=60)
    _assert_one_user_error(proc, elapsed, str(fifo), "is a FIFO, not a regular file")

    including = tmp_path / "including.xml"
    including.write_text(f'<mujoco><include file="{fifo.name}"/><worldbody/></mujoco>')
    for xml in (fifo, including):
        task = tmp_path / f"{xml.stem}_task.yaml"
        task.write_text(f"sim: {{env_id: Reacher-v5, kwargs: {{xml_file: {xml}}}}}\nlearner: {{name: ppo}}\n"
                        "training: {total_steps: 100}\n")
        proc, elapsed = _cli("validate", str(task), timeout=60)
        _assert_one_user_error(proc, elapsed, str(task), "sim.kwargs.xml_file", f"{fifo}", "is a FIFO")


_PEAK_RSS = (
    "import resource, runpy, sys\n"
    "sys.argv = ['workbench', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('workbench.cli', run_name='__main__')\n"
    "finally:\n"
    "    print('peak_rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def test_a_1gb_task_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    """It was read whole before the size check (1.7 GB peak for a 1 GB file)."""
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: nothing on disk
    small = MALFORMED / "duplicate_top_key.yaml"
    peaks, stderr = {}, {}
    for path in (big, small):
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, "validate", str(path)], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert time.monotonic() - start < USER_ERROR_SECONDS
        stderr[path], peaks[path] = proc.stderr, int(proc.stderr.rsplit("peak_rss_kb ", 1)[1].split()[0])
    assert f"{big}: file is {1 << 30} bytes; a task file is at most" in stderr[big]
    assert peaks[big] - peaks[small] < 64 << 10, peaks  # KiB: the 1 GB file adds nothing measurable


def test_error_text_never_sends_control_characters_to_the_terminal(tmp_path: Path) -> None:
    task = tmp_path / "evil\x1b[2J\x1b]0;title\x07\r.yaml"
    task.write_text("sim: {env_id: Reacher-v5}\nlearner: {name: ppo}\nlearner: {name: sac}\n")
    proc, elapsed = _cli("validate", str(task))
    _assert_one_user_error(proc, elapsed, "evil\\x1b[2J\\x1b]0;title\\x07\\r.yaml", "duplicate key 'learner'")


@pytest.mark.parametrize("extra", [["--mode", "code", "--rounds", "2"], ["--mode", "sketch"],
                                   ["--mode", "sketch", "--rounds", "2", "--reweigh", "1"]])
def test_reweigh_outside_a_sketch_search_is_refused_with_the_fix(extra: list[str]) -> None:
    proc = wb("reward", "synth", "--task", "tasks/mujoco/reacher.yaml", "--reweigh", "0.1", *extra,
              cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2, proc.stderr
    assert "--reweigh" in proc.stderr and "fix: give positive factors other than 1, with --mode sketch and " \
        "--rounds 2 or more" in proc.stderr and "Traceback" not in proc.stderr
