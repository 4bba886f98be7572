"""What a QD run leaves in its run directory besides the normal ones:

    qd.json                 coverage, reward areas found, best reward per area, evaluations to the
                            first reward, steps / episodes / generations, the per-generation history
    coverage.png            the ground-truth outcome grid: cells reached (colour: best reward there),
                            the reward areas drawn on top
    qd/<name>.pkl           the ribs archives (pickles of the ribs objects: pickle.load gives them back)
    qd/<name>.npz           the same archives' data (solution, objective, measures) as plain arrays
    qd/areas/<area>/        the best genome of each reward area found, a policy directory
                            (``workbench.learner.load_policy`` loads it), and ``episode.mp4``: the
                            very episode that found it, replayed (when ``evaluation.video`` is on)
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from policies.qd.genome import MLPController, MLPPolicy
from workbench.runs import atomic_path, write_json

if TYPE_CHECKING:
    from policies.qd.config import QDHyperparams
    from workbench.runs import Run
    from workbench.spec import TaskSpec

# (``learner`` is a policies.qd.learners.QDLearner and ``state`` its QDState; not imported here, which
# would be an import cycle.)
__all__ = ["write_outputs", "qd_summary", "replay_video", "QD_FILE", "COVERAGE_PNG", "AREA_VIDEO"]

QD_FILE = "qd.json"
COVERAGE_PNG = "coverage.png"
AREA_VIDEO = "episode.mp4"


def replay_video(env_fn: Callable[..., Any], policy: MLPPolicy, seed: int, index: int, path: Path) -> dict[str, Any]:
    """Replay evaluation ``index`` of the run (its genome, its episode seed) with frames, into an
    mp4 at ``path``; returns the replayed return and reward area (they equal the search's: the
    episode depends on the genome and seed only, and the policy acts as the rollouts did)."""
    from policies.qd.rollout import episode_seed
    from workbench.evaluate import policy_actor, run_episode, write_video

    env = env_fn(render_mode="rgb_array")
    try:
        total = [0.0]

        def on_step(action: Any, reward: Any, info: dict[str, Any]) -> None:
            total[0] += float(reward)

        episode = run_episode(env, policy_actor(policy, deterministic=True), seed=episode_seed(seed, index),
                              render=True, on_step=on_step)
        write_video(path, episode.frames, env.metadata.get("render_fps", 30))
    finally:
        env.close()
    area = episode.info.get("reward_area")
    return {"replayed_return": total[0], "replayed_area": None if area is None else str(area)}


def qd_summary(state: Any, reward_areas: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    names = [a["name"] for a in reward_areas]
    found = sorted(state.areas, key=lambda n: (n not in names, names.index(n) if n in names else 0, n))
    return {
        "budget_steps": budget, "steps": state.steps, "episodes": state.evaluations,
        "evaluations": state.evaluations, "generations": state.generation,
        "coverage": None if state.coverage is None else float(state.coverage.stats.coverage),
        "cells_reached": None if state.coverage is None else int(state.coverage.stats.num_elites),
        "cells": None if state.coverage is None else int(state.coverage.cells),
        "reward_areas": names, "reward_areas_found": found,
        "n_reward_areas_found": len(found), "n_reward_areas": len(names) or None,
        "best_reward_per_area": {n: float(state.areas[n]["best_reward"]) for n in found},
        "evaluations_to_area": {n: int(state.areas[n]["first_evaluation"]) for n in found},
        "evaluations_to_first_reward": state.first_reward_evaluation,
        "best_reward": None if state.best is None else float(state.best["reward"]),
        "train_seconds": round(state.seconds, 3),
        "episodes_per_second": round(state.evaluations / state.seconds, 2) if state.seconds else None,
        "history": state.history,
    }


def _archive_arrays(archive: Any) -> dict[str, np.ndarray]:
    data = archive.data()
    return {k: np.asarray(data[k]) for k in ("solution", "objective", "measures") if k in data}


def write_outputs(run: Run, spec: TaskSpec, learner: Any, state: Any, controller: MLPController,
                  reward_areas: list[dict[str, Any]], hp: QDHyperparams,
                  env_fn: Callable[..., Any] | None = None) -> dict[str, Any]:
    out = run.subdir("qd")
    archives = dict(learner.archives(state.algo))
    if state.coverage is not None:
        archives["coverage_archive"] = state.coverage
    for stem, archive in archives.items():
        with atomic_path(out / f"{stem}.pkl") as tmp, open(tmp, "wb") as fh:
            pickle.dump(archive, fh, protocol=pickle.HIGHEST_PROTOCOL)
        with atomic_path(out / f"{stem}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **_archive_arrays(archive))
    replays = {}
    for name, area in state.areas.items():
        policy = MLPPolicy(controller, area["genome"], {"area": name, "reward": area["best_reward"],
                                                        "evaluation": area["evaluation"]})
        policy.save(out / "areas" / name)
        if env_fn is not None and spec.evaluation.video:
            replays[name] = replay_video(env_fn, policy, spec.training.seed, area["evaluation"] - 1,
                                         out / "areas" / name / AREA_VIDEO)
    summary = qd_summary(state, reward_areas, spec.training.total_steps)
    if replays:
        summary["area_videos"] = {n: {"file": f"qd/areas/{n}/{AREA_VIDEO}", **r} for n, r in replays.items()}
    summary["learner"] = learner.name
    summary.update(learner.summary(state.algo))
    summary.update(learner.write_files(state.algo, out))
    summary["archives"] = {stem: {"file": f"qd/{stem}.pkl", "size": len(a)} for stem, a in archives.items()}
    if state.coverage is not None and hp.outcome_grid is not None:
        plot_coverage(state.coverage, hp, reward_areas, run.path / COVERAGE_PNG,
                      title=f"{spec.name}: {learner.name}, seed {spec.training.seed}: coverage "
                            f"{summary['coverage']:.1%}, areas {len(state.areas)}/{len(reward_areas) or '?'}, "
                            f"{state.evaluations} episodes")
        summary["coverage_png"] = COVERAGE_PNG
    write_json(run.path / QD_FILE, summary)
    return summary


def plot_coverage(archive: Any, hp: QDHyperparams, reward_areas: list[dict[str, Any]], path: Any, *,
                  title: str) -> None:
    """A heatmap of the outcome grid (2-D: as is; 1-D: one row; 3-D: the first two axes, max over
    the third): reached cells coloured by the best reward there, unreached cells blank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    grid = hp.outcome_grid
    assert grid is not None
    dims = list(grid.cells)
    values = np.full(dims, np.nan)
    data = archive.data()
    if len(data["index"]):
        idx = np.unravel_index(np.asarray(data["index"]), dims)
        values[idx] = np.asarray(data["objective"])
    if values.ndim == 1:
        values = values[:, None]
    elif values.ndim == 3:
        values = np.nanmax(values, axis=2) if np.isfinite(values).any() else values[..., 0]
    lows, highs = list(grid.low), list(grid.high)
    if len(lows) == 1:
        lows, highs = lows + [0.0], highs + [1.0]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    reached = np.isfinite(values)
    shown = np.where(reached, values, np.nan)
    im = ax.imshow(shown.T, origin="lower", extent=(lows[0], highs[0], lows[1], highs[1]), cmap="viridis",
                   vmin=min(0.0, float(np.nanmin(shown))) if reached.any() else 0.0,
                   vmax=max(1e-9, float(np.nanmax(shown))) if reached.any() else 1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="best episode reward in the cell")
    if len(grid.fields) >= 2:
        for area in reward_areas:
            c, r = area.get("center"), area.get("radius")
            if c is not None and r is not None and len(c) >= 2:
                ax.add_patch(Circle((c[0], c[1]), r, fill=False, edgecolor="red", linewidth=1.5))
                ax.annotate(area["name"], (c[0], c[1] + r), color="red", ha="center", va="bottom", fontsize=8)
    ax.set_xlabel(grid.fields[0])
    ax.set_ylabel(grid.fields[1] if len(grid.fields) > 1 else "")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
