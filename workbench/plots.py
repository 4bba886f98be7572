"""Training curves of a run as a picture: ``curves.png`` in the run directory.

Read from the run's episode monitor (``monitor/*.monitor.csv``): the episode return under the
training reward and, where the task has a success metric, the success rate, each as a moving
average over episodes against environment steps.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from workbench.runs import atomic_path

__all__ = ["read_episodes", "write_training_curves", "CURVES_FILE"]

CURVES_FILE = "curves.png"


def read_episodes(monitor_dir: Path) -> dict[str, np.ndarray]:
    """Every finished training episode in wall-clock order: ``return``, ``length``, ``success``
    (NaN where unknown) and ``steps`` (cumulative env steps at its end)."""
    rows: list[tuple[float, float, int, float]] = []
    for path in sorted(monitor_dir.glob("*.monitor.csv")):
        with open(path, newline="") as fh:
            fh.readline()  # the monitor's JSON header line
            for row in csv.DictReader(fh):
                success = row.get("is_success", "")
                flag = 1.0 if success == "True" else 0.0 if success == "False" else np.nan
                rows.append((float(row["t"]), float(row["r"]), int(row["l"]), flag))
    rows.sort()
    t, r, length, success = (np.array(c) for c in zip(*rows)) if rows else (np.zeros(0),) * 4
    return {"return": r, "length": length, "success": success, "steps": np.cumsum(length)}


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window:
        window = max(1, len(values))
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def write_training_curves(run_path: Path, *, title: str = "", window: int = 20) -> Path | None:
    """Draw ``curves.png``; None when no episode has finished yet."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    episodes = read_episodes(run_path / "monitor")
    if len(episodes["return"]) == 0:
        return None
    has_success = bool(np.any(np.isfinite(episodes["success"])))
    fig, axes = plt.subplots(1, 2 if has_success else 1, figsize=(10 if has_success else 5.5, 3.6), squeeze=False)
    steps = episodes["steps"]
    w = min(window, len(steps))
    ax = axes[0][0]
    ax.plot(steps, episodes["return"], color="0.8", linewidth=0.8, label="episode")
    ax.plot(steps[w - 1:], _smooth(episodes["return"], w), color="C0", label=f"mean of {w}")
    ax.set(xlabel="environment steps", ylabel="return (training reward)")
    ax.legend(loc="best", fontsize=8)
    if has_success:
        ok = np.isfinite(episodes["success"])
        ax = axes[0][1]
        ax.plot(steps[ok][w - 1:] if ok.sum() >= w else steps[ok],
                _smooth(episodes["success"][ok], w), color="C2")
        ax.set(xlabel="environment steps", ylabel=f"success rate (mean of {w} episodes)", ylim=(-0.02, 1.02))
    for ax in axes[0]:
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 150k, 1.5M: raw step counts run together
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = run_path / CURVES_FILE
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out
