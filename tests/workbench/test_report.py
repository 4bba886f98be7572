"""`workbench report`: one self-contained page per run or sweep, checked as written and as rendered by
a real headless Chromium (Debian's package; `make install-dev` installs it): the page renders, its
videos decode, and its evaluation table shows eval.json's numbers."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest
from rich.console import Console

from workbench.report import REPORT_FILE, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Reacher run with the reacher_precise program and one video, and its report."""
    from workbench.pipeline import start_run

    root = tmp_path_factory.mktemp("report")
    task = root / "tiny.yaml"
    program = Path(__file__).resolve().parents[2] / "tasks" / "mujoco" / "rewards" / "reacher_precise.py"
    task.write_text("name: tiny\nsim: {env_id: Reacher-v5}\n"
                    f"reward: {{source: code, path: {program}}}\n"
                    "learner: {name: ppo, hyperparams: {n_steps: 64, batch_size: 64, n_epochs: 2}}\n"
                    "training: {total_steps: 256, n_envs: 2, checkpoint_every: 256}\n"
                    "evaluation: {episodes: 3, video: true, video_episodes: 1}\n")
    run = start_run(task, [], runs_root=root / "runs", quiet=True, console=Console(quiet=True)).run.path
    write_report(run)
    return run


def _eval_rows(page: str) -> dict[str, str]:
    table = re.search(r'<table id="eval">(.*?)</table>', page, re.S)
    assert table is not None
    return {html.unescape(k): html.unescape(v) for k, v in
            re.findall(r"<tr><td>([^<]*)</td><td[^>]*>([^<]*)</td></tr>", table.group(1))}


def test_a_run_report_holds_the_task_reward_numbers_and_video(reported_run: Path) -> None:
    page = (reported_run / REPORT_FILE).read_text()
    evaluation = json.loads((reported_run / "eval.json").read_text())
    rows = _eval_rows(page)
    assert rows["success_rate"] == f"{evaluation['success_rate']:.4g}"
    assert rows["mean_return"] == f"{evaluation['mean_return']:.4g}" and rows["episodes"] == "3"
    assert "def compute_reward" in html.unescape(page)  # the program, escaped
    assert "precision" in page and '<table id="terms">' in page  # per-term statistics over the episodes
    assert page.count("<video ") == 1 and 'src="data:video/mp4;base64,' in page
    assert 'src="data:image/png;base64,' in page  # curves.png, inline: the page needs no other file
    assert "total_steps: 256" in page


def test_a_directory_that_is_neither_run_nor_sweep_is_a_clear_error(tmp_path: Path) -> None:
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="neither a run directory"):
        write_report(tmp_path)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (make install-dev installs Debian's package)")
def test_the_report_renders_in_headless_chromium_with_its_video_loaded(reported_run: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--dump-dom",
         (reported_run / REPORT_FILE).as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "<h1>Run " in dom and '<table id="eval">' in dom
    loaded = re.findall(r'<video[^>]*data-loaded="([^"]*)"', dom)
    assert len(loaded) == 1 and loaded[0] != "error", dom[:500]
    (video,) = sorted((reported_run / "videos").glob("*.mp4"))
    _, seconds = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert float(loaded[0]) == pytest.approx(seconds, abs=0.05)  # the browser decoded the whole clip
    evaluation = json.loads((reported_run / "eval.json").read_text())
    assert _eval_rows(dom)["success_rate"] == f"{evaluation['success_rate']:.4g}"
