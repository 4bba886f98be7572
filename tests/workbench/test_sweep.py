"""`workbench sweep`: every method at every seed as run directories, rliable's statistics over seeds,
a killed sweep that keeps its finished trials and resumes the rest, and one clear error per
malformed sweep file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import trim_mean
from workbench_testing import REPO, cli

from workbench.sweep import (
    interval,
    performance_profile,
    plan_trials,
    profile_band,
    stratified_interval,
    summarize,
)

TINY = """\
name: tiny
task: {task}
set:
  training.total_steps: {steps}
  training.n_envs: 2
  training.checkpoint_every: 256
  training.eval_every: 0
  learner.hyperparams: {{n_steps: 64, batch_size: 64, n_epochs: 2}}
  evaluation: {{episodes: 3, video: false}}
axes:
  reward:
    - {{source: env}}
    - {{source: code, path: rewards/reacher_precise.py}}
seeds: {seeds}
metric: mean_return
jobs: {jobs}
"""


def _sweep_file(tmp_path: Path, *, steps: int = 512, seeds: str = "[0, 1]", jobs: int = 2) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(task=REPO / "tasks" / "mujoco" / "reacher.yaml", steps=steps, seeds=seeds, jobs=jobs))
    return path


def test_a_sweep_runs_every_method_at_every_seed_and_summarises_them(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    done = cli("sweep", str(_sweep_file(tmp_path)), "--out", str(out))
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "sweep.json").read_text())
    assert [r["id"] for r in record["results"]] == ["m00-s0", "m00-s1", "m01-s0", "m01-s1"]
    summary = {m["method"]: m for m in json.loads((out / "summary.json").read_text())["methods"]}
    assert set(summary) == {"reward=source:env", "reward=source:code,path:rewards/reacher_precise.py"}
    for row in record["results"]:
        run = Path(row["run"])
        assert row["status"] == "finished" and run.parent == out / "trials" / row["id"]
        assert row["score"] == json.loads((run / "eval.json").read_text())["mean_return"]
        task = (run / "task.yaml").read_text()
        assert f"seed: {row['seed']}" in task and ("source: env" in task) == row["id"].startswith("m00")
    for method, entry in summary.items():
        scores = [r["score"] for r in record["results"] if r["method"] == method]
        assert entry["seeds"] == 2 and entry["mean"] == pytest.approx(np.mean(scores))
        assert entry["mean_low"] <= entry["mean"] <= entry["mean_high"]
    assert (out / "summary.csv").read_text().count("\n") == 3
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "IQM [CI]" in done.stdout and "m01-s1" in done.stdout

    again = cli("sweep", str(_sweep_file(tmp_path)), "--out", str(out), "--quiet")  # all kept: nothing runs
    assert again.returncode == 0, again.stderr
    assert all(r.get("kept") for r in json.loads((out / "sweep.json").read_text())["results"])
    other = cli("sweep", str(_sweep_file(tmp_path)), "--out", str(out), "--set", "training.total_steps=256")
    assert other.returncode == 2 and "holds another sweep" in other.stderr


def test_the_statistics_are_rliables_iqm_and_mean_with_percentile_bootstrap_intervals() -> None:
    scores = [1.0, 2.0, 3.0, 10.0, 4.0, 5.0, 6.0, 7.0]
    point, low, high = interval(scores, lambda x, axis=-1: trim_mean(x, 0.25, axis=axis))
    assert point == pytest.approx(trim_mean(scores, 0.25)) == pytest.approx(4.5)  # the middle 50%: 3, 4, 5, 6
    assert low < point < high and low >= 1.0 and high <= 10.0
    assert interval([2.0, 2.0, 2.0], np.mean) == (2.0, 2.0, 2.0)  # no spread: no interval
    assert interval([3.0], np.mean) == (3.0, 3.0, 3.0)
    rows = [{"method": "a", "status": "finished", "score": s} for s in (1.0, 2.0, 3.0)]
    rows.append({"method": "a", "status": "failed", "score": None})
    rows.append({"method": "b", "status": "failed", "score": None})
    (a, b) = summarize(rows, "mean_return")
    assert a["seeds"] == 3 and a["mean"] == 2.0 and a["iqm"] == pytest.approx(2.0)
    assert b["seeds"] == 0 and "mean" not in b
    profile = performance_profile([0.2, 0.5, 0.9], np.array([0.0, 0.2, 0.6, 0.9, 1.0]))
    np.testing.assert_allclose(profile, [1.0, 2 / 3, 1 / 3, 0.0, 0.0])  # fraction of seeds strictly above τ
    taus = np.linspace(0.0, 1.0, 21)
    scores = [0.2, 0.5, 0.9, 0.4, 0.7]
    low, high = profile_band(scores, taus)
    point = performance_profile(scores, taus)
    assert np.all(low <= point) and np.all(point <= high) and np.any(low < high)  # the band holds the profile
    assert np.all(np.diff(low) <= 0) and np.all(np.diff(high) <= 0)  # and falls with τ, like it
    assert low[0] == high[0] == 1.0 and low[-1] == high[-1] == 0.0  # every resample agrees at the ends


def test_trials_are_every_combination_of_the_axes_at_every_seed(tmp_path: Path) -> None:
    from workbench.sweep import load_sweep

    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\ntask: {REPO / 'tasks' / 'mujoco' / 'reacher.yaml'}\nseeds: [3, 4]\n"
                    "axes: {learner.hyperparams.gamma: [0.9, 0.99], training.n_envs: [2, 4]}\n")
    trials = plan_trials(load_sweep(path), ["evaluation.video=false"])
    assert len(trials) == 8 and len({t.id for t in trials}) == 8
    first = trials[0]
    assert first.method == "learner.hyperparams.gamma=0.9 training.n_envs=2" and first.seed == 3
    assert first.overrides == ("evaluation.video=false", "learner.hyperparams.gamma=0.9", "training.n_envs=2",
                               "training.seed=3")


@pytest.mark.parametrize(("body", "key", "words"), [
    ("name: x\ntask: TASK\nseeds: [0]\nbogus: 1\n", "bogus", "unknown key"),
    ("name: x\ntask: TASK\nexecutor: spark\n", "executor", "'local' or 'ray'"),
    ("name: x\ntask: TASK\nexecutor: ray\nray: {gpus_per_trial: -1}\n", "ray.gpus_per_trial", "greater than or equal"),
    ("name: x\ntask: TASK\nray: {adress: auto}\n", "ray.adress", "unknown key"),
    ("name: x\ntask: nowhere.yaml\n", "task", "no task file"),
    ("name: x\ntask: TASK\naxes: {training.seed: [1, 2]}\n", "axes.training.seed", "seeds have their own key"),
    ("name: x\ntask: TASK\naxes: {learner.hyperparams.gamma: []}\n", "axes.learner.hyperparams.gamma", "no values"),
    ("name: x\ntask: TASK\naxes: {learner.hyperparams.bogus_rate: [1]}\n", "bogus_rate", "bogus_rate"),
    ("name: x\ntask: TASK\nseeds: []\n", "seeds", "at least 1"),
    ("name: x\nseeds: [0]\n", "task", "one of the two"),
    ("name: x\ntask: TASK\ntasks: [TASK]\n", "task", "one of the two"),
    ("name: x\ntasks: [TASK, TASK]\n", "tasks", "share a file name"),
    ("name: x\ntasks: [TASK, nowhere.yaml]\n", "tasks", "no task file 'nowhere.yaml'"),
    ("name: x\ntask: TASK\nexecutor: ray\nsearch: {space: {learner.hyperparams.gamma: {choice: [0.9]}}}\n"
     "axes: {training.n_envs: [2]}\n", "search", "axes or a search, not both"),
    ("name: x\ntask: TASK\nsearch: {space: {learner.hyperparams.gamma: {choice: [0.9]}}}\n", "executor",
     "runs on Ray Tune"),
    ("name: x\ntask: TASK\nexecutor: ray\nsearch: {space: {learner.hyperparams.learning_rate: {normal: [0, 1]}}}\n",
     "search.space.learner.hyperparams.learning_rate", "give one of uniform, loguniform, randint, choice"),
    ("name: x\ntask: TASK\nexecutor: ray\nsearch: {space: {learner.hyperparams.learning_rate: "
     "{loguniform: [0, 0.1]}}}\n", "search.space.learner.hyperparams.learning_rate", "low > 0"),
    ("name: x\ntask: TASK\nexecutor: ray\nsearch: {space: {learner.hyperparams.gamma: {uniform: [0.9, 1.5]}}}\n",
     "gamma", "gamma"),
])
def test_a_malformed_sweep_file_is_one_error_naming_the_key(tmp_path: Path, body: str, key: str, words: str) -> None:
    from workbench.errors import TaskError
    from workbench.sweep import load_sweep, run_sweep

    path = tmp_path / "bad.yaml"
    path.write_text(body.replace("TASK", str(REPO / "tasks" / "mujoco" / "reacher.yaml")))
    with pytest.raises(TaskError) as info:
        run_sweep(load_sweep(path), path, tmp_path / "out")  # a bad method's task is found before any trial
    assert key in str(info.value) and words in str(info.value)
    assert not (tmp_path / "out").exists()


def test_the_cli_exits_2_without_a_traceback_on_a_malformed_sweep(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: x\ntask: {REPO / 'tasks' / 'mujoco' / 'reacher.yaml'}\nbogus: 1\n")
    done = cli("sweep", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "bogus: unknown key" in done.stderr and "Traceback" not in done.stderr
    assert "fix: see 'Sweeps' in README.md" in done.stderr


def _sigkill_sweep_when(ready: Callable[[], bool], path: Path, out: Path, timeout: float, never: str) -> None:
    """Start `workbench sweep` in a subprocess and SIGKILL it as soon as ``ready()`` holds."""
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "sweep", str(path), "--out", str(out), "-q"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            if time.monotonic() > deadline:
                pytest.fail(never)
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_a_killed_sweep_keeps_its_finished_trials_and_resumes_the_one_it_was_training(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    path = _sweep_file(tmp_path, steps=4096, seeds="[0]", jobs=1)

    def ready() -> bool:  # the first trial finished, the second has a checkpoint
        record = json.loads((out / "sweep.json").read_text()) if (out / "sweep.json").is_file() else {}
        first_done = any(r["id"] == "m00-s0" and r["status"] == "finished" for r in record.get("results", []))
        return first_done and bool(list((out / "trials" / "m01-s0").glob("*/checkpoints/step_*")))

    _sigkill_sweep_when(ready, path, out, 240, "the sweep never reached its second trial's first checkpoint")
    time.sleep(2.5)  # the orphaned worker notices its parent is gone and ends itself
    (second,) = list((out / "trials" / "m01-s0").glob("*/run.json"))
    assert json.loads(second.read_text())["status"] != "finished"
    first_run = json.loads((out / "sweep.json").read_text())["results"][0]["run"]

    done = cli("sweep", str(path), "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    results = {r["id"]: r for r in json.loads((out / "sweep.json").read_text())["results"]}
    assert results["m00-s0"]["kept"] and results["m00-s0"]["run"] == first_run
    assert results["m01-s0"]["status"] == "finished" and Path(results["m01-s0"]["run"]) == second.parent  # resumed
    assert len(list((out / "trials" / "m01-s0").glob("*/run.json"))) == 1


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_file_loads_and_its_tasks_check_out(path: Path) -> None:
    from workbench.spec import load_task
    from workbench.sweep import load_sweep

    spec = load_sweep(path)
    for trial in plan_trials(spec):
        load_task(path.parent / trial.task, list(trial.overrides))


@pytest.mark.slow
def test_a_killed_search_keeps_its_finished_trials_and_finishes_the_rest(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    body = TINY.format(task=REPO / "tasks" / "mujoco" / "reacher.yaml", steps=3072, seeds="[0]", jobs=1)
    path = tmp_path / "search.yaml"
    path.write_text(body[:body.index("axes:")] + body[body.index("seeds:"):] + "executor: ray\nsearch:\n"
                    "  samples: 3\n  space: {learner.hyperparams.learning_rate: {loguniform: [1.0e-5, 1.0e-3]}}\n")
    out = tmp_path / "search"

    def ready() -> bool:  # one trial evaluated, another one training
        return bool(list((out / "trials").glob("*/*/eval.json"))) and len(list((out / "trials").glob("*"))) >= 2

    _sigkill_sweep_when(ready, path, out, 300, "the search never finished a trial")
    kept = {p.parent for p in (out / "trials").glob("*/*/eval.json")}
    done = cli("sweep", str(path), "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "sweep.json").read_text())["results"]
    assert len(results) == 3 and all(r["status"] == "finished" for r in results)
    assert kept <= {Path(r["run"]) for r in results}  # a run that had finished is the trial's run, not redone


def test_several_tasks_get_statistics_per_task_and_a_stratified_one_over_all() -> None:
    from scipy.stats import trim_mean

    # Stratified: each resample keeps every task's seed count, so two tasks that each always score
    # the same give one pooled mean in every resample (a plain bootstrap of the 6 scores would not).
    assert stratified_interval([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.mean) == (0.5, 0.5, 0.5)
    point, low, high = stratified_interval([[0.1, 0.3, 0.2], [0.9, 0.7, 0.8, 1.0]],
                                           lambda x, axis=-1: trim_mean(x, 0.25, axis=axis))
    assert point == pytest.approx(trim_mean([0.1, 0.3, 0.2, 0.9, 0.7, 0.8, 1.0], 0.25)) and low <= point <= high
    rows = [{"task": task, "method": method, "status": "finished", "score": score}
            for task, method, score in [("a", "m1", 0.2), ("a", "m1", 0.4), ("b", "m1", 0.9), ("b", "m1", 1.0),
                                        ("a", "m2", 0.1), ("b", "m2", 0.5)]]
    summary = {(e["task"], e["method"]): e for e in summarize(rows, "success_rate")}
    assert set(summary) == {("a", "m1"), ("b", "m1"), ("a", "m2"), ("b", "m2"), ("all tasks", "m1"),
                            ("all tasks", "m2")}
    pooled = summary[("all tasks", "m1")]
    assert pooled["seeds"] == 4 and pooled["tasks"] == 2 and pooled["mean"] == pytest.approx(0.625)
    assert {e["task"] for e in summarize(rows, "mean_return")} == {"a", "b"}  # returns are not pooled across tasks


def test_a_sweep_over_two_tasks_runs_each_method_on_each(tmp_path: Path) -> None:
    from workbench.sweep import load_sweep, run_sweep

    for name, steps in (("short", 30), ("long", 50)):  # two Reacher tasks: episodes of 30 and 50 steps
        (tmp_path / f"{name}.yaml").write_text(
            f"name: {name}\nsim: {{env_id: Reacher-v5, max_episode_steps: {steps}}}\nlearner: {{name: ppo}}\n")
    body = TINY.format(task="TASK", steps=256, seeds="[0]", jobs=2)
    body = body.replace("task: TASK", "tasks: [short.yaml, long.yaml]")
    body = body[:body.index("axes:")] + body[body.index("seeds:"):]
    path = tmp_path / "two.yaml"
    path.write_text(body.replace("metric: mean_return", "metric: success_rate"))
    result = run_sweep(load_sweep(path), path, tmp_path / "out")
    assert [(r["id"], r["task"], r["status"]) for r in result.trials] == [
        ("t00-m00-s0", "short", "finished"), ("t01-m00-s0", "long", "finished")]
    for row in result.trials:
        evaluation = json.loads((Path(row["run"]) / "eval.json").read_text())
        assert {e["length"] for e in evaluation["per_episode"]} == {30 if row["task"] == "short" else 50}
    assert [(e["task"], e["seeds"]) for e in result.summary] == [("short", 1), ("long", 1), ("all tasks", 2)]
    assert (tmp_path / "out" / "summary.csv").read_text().splitlines()[0].startswith("task,method,")
