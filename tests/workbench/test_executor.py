"""The executors behind sweeps and reward searches: a job's own error is its result, a job whose
worker dies fails alone (WorkerDied) while the others finish, on the local pool and on a local Ray
runtime (127.0.0.1 only); a sweep runs its trials as Ray tasks and resumes on either executor."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from workbench_testing import REPO

from workbench.executor import Executor, LocalExecutor, RayExecutor, RayOptions, WorkerDied, make_executor

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


def _outcomes(executor: Executor) -> list[object]:
    with executor:
        futures = [executor.submit(pow, 2, 3), executor.submit(os._exit, 3), executor.submit(math.sqrt, -1.0),
                   executor.submit(pow, 3, 2)]
        out: list[object] = []
        for future in futures:
            try:
                out.append(future.result(timeout=120))
            except Exception as err:  # noqa: BLE001 - the outcome under test
                out.append(err)
    return out


def _check(outcomes: list[object]) -> None:
    assert outcomes[0] == 8 and outcomes[3] == 9  # the jobs beside the crash finish
    assert isinstance(outcomes[1], WorkerDied) and "died" in str(outcomes[1])
    assert isinstance(outcomes[2], ValueError) and "math domain error" in str(outcomes[2])


def test_a_local_job_whose_worker_dies_fails_alone() -> None:
    _check(_outcomes(LocalExecutor(2)))


def test_a_ray_job_whose_worker_dies_fails_alone(ray_runtime: None) -> None:
    executor = make_executor("ray", 2, RayOptions(cpus=1))
    assert isinstance(executor, RayExecutor) and executor.jobs == 2
    _check(_outcomes(executor))
    assert ray.is_initialized()  # it joined the runtime it found, and leaves it up


def test_a_ray_job_asking_for_more_gpus_than_the_cluster_has_is_refused(ray_runtime: None) -> None:
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="gpus_per_trial: 0"):
        RayExecutor(RayOptions(gpus=0.5), 1)


def test_a_sweep_runs_its_trials_as_ray_tasks_and_a_local_rerun_keeps_them(ray_runtime: None, tmp_path: Path) -> None:
    from test_sweep import TINY

    from workbench.sweep import load_sweep, run_sweep

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(task=REPO / "tasks" / "mujoco" / "reacher.yaml", steps=256, seeds="[0]", jobs=2)
                    + "executor: ray\nray: {cpus_per_trial: 1}\n")
    out = tmp_path / "sweep"
    result = run_sweep(load_sweep(path), path, out)
    assert [r["status"] for r in result.trials] == ["finished", "finished"]
    for row in result.trials:
        run = Path(row["run"])
        assert run.parent == out / "trials" / row["id"]
        assert row["score"] == json.loads((run / "eval.json").read_text())["mean_return"]
        assert "default_worker.py" in " ".join(json.loads((run / "run.json").read_text())["command"])  # a Ray worker
    again = run_sweep(load_sweep(path, executor="local", jobs=1), path, out)  # how trials run is no part of them
    assert all(r.get("kept") for r in again.trials)

    from workbench.report import write_report

    page = write_report(out).read_text()  # the sweep's page links each trial's own page
    assert '<table id="summary">' in page and page.count('/report.html">m0') == 2
    assert all((Path(r["run"]) / "report.html").is_file() for r in again.trials)



@pytest.mark.slow  # 17 s on 2 cores; the Ray sweep above keeps Ray in the default suite
def test_a_search_samples_configurations_with_optuna_on_ray_tune(ray_runtime: None, tmp_path: Path) -> None:
    from test_sweep import TINY

    from workbench.sweep import load_sweep, run_sweep

    body = TINY.format(task=REPO / "tasks" / "mujoco" / "reacher.yaml", steps=256, seeds="[0]", jobs=2)
    body = body[:body.index("axes:")] + body[body.index("seeds:"):]  # a search has no axes
    path = tmp_path / "search.yaml"
    path.write_text(body + "executor: ray\nsearch:\n  samples: 2\n  space:\n"
                    "    learner.hyperparams.learning_rate: {loguniform: [1.0e-5, 1.0e-3]}\n"
                    "    learner.hyperparams.n_epochs: {randint: [1, 3]}\n")
    out = tmp_path / "search"
    result = run_sweep(load_sweep(path), path, out)
    assert len(result.trials) == 2 and [r["status"] for r in result.trials] == ["finished"] * 2
    for row in result.trials:
        config = row["config"]
        assert 1e-5 <= config["learner.hyperparams.learning_rate"] <= 1e-3
        assert config["learner.hyperparams.n_epochs"] in (1, 2, 3)
        run = Path(row["run"])
        assert run.parent == out / "trials" / row["id"]
        assert row["score"] == json.loads((run / "eval.json").read_text())["mean_return"]
        assert f"n_epochs: {config['learner.hyperparams.n_epochs']}" in (run / "task.yaml").read_text()
    record = json.loads((out / "sweep.json").read_text())
    best = max(result.trials, key=lambda r: r["score"])
    assert record["best"] == {"method": best["method"], "config": best["config"]}
    assert len(result.summary) == 2  # each configuration is a method with its seeds' statistics
    from workbench.report import write_report

    assert f'<p id="best"><b>best</b>: {best["method"]}</p>' in write_report(out).read_text()


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_closing_on_ctrl_c_stops_the_jobs_and_leaves_no_future_pending(kind: str,
                                                                       request: pytest.FixtureRequest) -> None:
    import time

    if kind == "ray":
        request.getfixturevalue("ray_runtime")
    executor = make_executor(kind, 1, RayOptions(cpus=1))
    futures = [executor.submit(time.sleep, 60) for _ in range(3)]  # one running, two queued behind it
    time.sleep(1.0)
    started = time.monotonic()
    executor.close(terminate=True)
    assert time.monotonic() - started < 30  # not the minute the running job would take
    for future in futures:
        assert future.done()
        assert future.cancelled() or isinstance(future.exception(), Exception)
