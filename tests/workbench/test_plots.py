"""The run's curves.png, drawn from its episode monitor."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.plots import read_episodes, write_training_curves


def _monitor(path: Path, rows: list[tuple[float, int, float, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ['#{"t_start": 0, "env_id": "None"}', "r,l,t,is_success"]
    lines += [f"{r},{length},{t},{s}" for r, length, t, s in rows]
    path.write_text("\n".join(lines) + "\n")


def test_episodes_merge_monitors_in_time_order_with_cumulative_steps(tmp_path: Path) -> None:
    _monitor(tmp_path / "monitor" / "env0.monitor.csv", [(1.0, 10, 0.5, "False"), (3.0, 20, 2.0, "True")])
    _monitor(tmp_path / "monitor" / "env1.monitor.csv", [(2.0, 5, 1.0, "")])
    ep = read_episodes(tmp_path / "monitor")
    np.testing.assert_array_equal(ep["return"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(ep["steps"], [10, 15, 35])
    assert ep["success"][0] == 0.0 and np.isnan(ep["success"][1]) and ep["success"][2] == 1.0


def test_curves_png_is_written_and_nothing_without_episodes(tmp_path: Path) -> None:
    assert write_training_curves(tmp_path) is None
    rows = [(float(i % 7), 50, float(i), "True" if i % 3 else "False") for i in range(60)]
    _monitor(tmp_path / "monitor" / "vec.monitor.csv", rows)
    out = write_training_curves(tmp_path, title="tiny")
    assert out == tmp_path / "curves.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
