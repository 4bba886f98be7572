"""Every shipped QD task (tasks/qd/*.yaml) runs end to end through `workbench run` and `workbench
eval` (the CLI in-process), at a tiny budget: 4 genomes x 20-step episodes, two generations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("ribs", reason="the QD learners need the qd extra: pip install 'rl-workbench[qd]'")

from workbench_testing import REPO, set_args  # noqa: E402

from workbench.cli import app  # noqa: E402

QD_TASKS = sorted((REPO / "tasks" / "qd").glob("*.yaml"))
EPISODE, POP = 20, 4
EXTRA = {  # what each learner needs to fit two tiny generations
    "serene": ["learner.hyperparams.chunk_evaluations=8", "learner.hyperparams.emitter_population=4"],
    "stax": ["learner.hyperparams.chunk_evaluations=8", "learner.hyperparams.emitter_population=4",
             "learner.hyperparams.frame_size=16", "learner.hyperparams.ae_epochs=1"],
    "taxons": ["learner.hyperparams.frame_size=16", "learner.hyperparams.ae_epochs=1"],
}


@pytest.mark.parametrize("path", QD_TASKS, ids=[p.stem for p in QD_TASKS])
def test_each_qd_task_runs_and_evaluates_end_to_end(path: Path, tmp_path: Path) -> None:
    learner = yaml.safe_load(path.read_text())["learner"]["name"]
    overrides = [f"sim.max_episode_steps={EPISODE}", f"learner.hyperparams.population={POP}",
                 f"training.total_steps={2 * POP * EPISODE}", "evaluation.episodes=1", "evaluation.video=false",
                 *EXTRA.get(learner, [])]
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(path), "--runs-dir", str(tmp_path), "--quiet", *set_args(overrides)])
    assert result.exit_code == 0, result.output
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    qd = json.loads((run / "qd.json").read_text())
    assert qd["learner"] == learner and qd["generations"] == 2 and qd["episodes"] == 2 * POP
    assert qd["n_reward_areas"] and qd["cells_reached"] >= 1 and (run / "coverage.png").is_file()
    (run / "eval.json").unlink()
    result = runner.invoke(app, ["eval", str(run), "--episodes", "1", "--no-video"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval.json").read_text())["episodes"] == 1
