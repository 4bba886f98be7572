"""``workbench report RUN_DIR|SWEEP_DIR``: one self-contained HTML page to look at (``report.html``).

A run's page: the task (its resolved YAML), the reward (its description, spec, program, sketch, or
CLIP goals, and the pre-flight checks), the learning curves (``curves.png``), the periodic
evaluations, the evaluation table (``eval.json``), per-term reward statistics over the evaluation
episodes, and the videos, inline. A sweep's page: the comparison table (``summary.json``), its plot
(``sweep.png``), every trial with its score and a link to the trial's own page (written too).

Self-contained: images and videos are embedded as data URIs, so the file can be mailed or copied
alone. Nothing runs but a few lines of inline script that mark each video once the browser has
decoded its first frame (``data-loaded``), which is what the headless-browser test reads.
"""

from __future__ import annotations

import base64
import html
import json
import statistics
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import WorkbenchError
from workbench.runs import RUN_FILE, TASK_FILE, atomic_write
from workbench.sweep import PLOT_FILE, SWEEP_FILE

__all__ = ["write_report", "run_report", "sweep_report", "REPORT_FILE"]

REPORT_FILE = "report.html"
MAX_VIDEOS = 6
MAX_VIDEO_BYTES = 16 << 20  # a bigger video is linked, not embedded

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
img { max-width: 100%; } video { margin: .3em; border: 1px solid #ccc; }
.muted { color: #777; } .bad { color: #b00; }
"""
MARK_VIDEOS = """
for (const v of document.querySelectorAll('video')) {
  const mark = () => { v.dataset.loaded = String(v.duration); };
  if (v.readyState >= 2) mark(); else v.addEventListener('loadeddata', mark);
  v.addEventListener('error', () => { v.dataset.loaded = 'error'; });
}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _esc("-" if value is None else value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return _esc(value)


def _table(header: list[str], rows: list[list[Any]], *, table_id: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{_num(c)}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool)
        else f"<td>{c if isinstance(c, _Html) else _esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{_esc(table_id)}"' if table_id else ""
    return f"<table{ident}><tr>{head}</tr>{body}</table>"


class _Html(str):
    """Markup already escaped (a link in a table cell)."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _page(title: str, sections: list[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{_esc(title)}</h1>\n" + "\n".join(sections)
            + f"\n<script>{MARK_VIDEOS}</script></body></html>\n")


# ----------------------------------------------------------------------------- a run


def _reward_section(run: Path) -> str:
    reward = run / "reward"
    info = _read_json(reward / "reward.json") or {}
    parts = ["<h2>Reward</h2>"]
    if info:
        parts.append(f"<p>{_esc(info.get('description', info.get('source', '')))}</p>")
        if info.get("spec"):
            parts.append(f"<pre>{_esc(yaml.safe_dump(info['spec'], sort_keys=False))}</pre>")
        checks = (info.get("checks") or {}).get("results") or []
        if checks:
            parts.append(_table(["check", "passed", "detail"],
                                [[c.get("name"), "yes" if c.get("passed") else "NO", c.get("detail", "")]
                                 for c in checks]))
        for key in ("goal", "goals", "contrast", "baseline"):  # language goals: synthesized or CLIP rewards
            if info.get(key):
                parts.append(f"<p><b>{_esc(key)}</b>: {_esc(info[key])}</p>")
    sketch = reward / "sketch.json"
    if sketch.is_file():
        parts.append(f"<h3>Sketch</h3><pre>{_esc(sketch.read_text())}</pre>")
    program = reward / "program.py"
    if program.is_file():
        parts.append(f'<h3>Program</h3><pre id="program">{_esc(program.read_text())}</pre>')
    if len(parts) == 1:
        parts.append('<p class="muted">no reward record in this run</p>')
    return "\n".join(parts)


def _eval_section(evaluation: dict[str, Any]) -> str:
    keys = ("success_rate", "mean_return", "std_return", "mean_env_return", "mean_length", "episodes",
            "normalized_score", "deterministic", "success_metric")
    rows = [[k, evaluation[k]] for k in keys if k in evaluation]
    parts = ["<h2>Evaluation</h2>", _table(["metric", "value"], rows, table_id="eval")]
    per_instruction = evaluation.get("per_instruction")
    if isinstance(per_instruction, dict) and per_instruction:
        parts.append("<h3>Per instruction</h3>")
        parts.append(_table(["instruction", "success rate", "episodes"],
                            [[k, v.get("success_rate"), v.get("episodes")] for k, v in per_instruction.items()
                             if isinstance(v, dict)]))
    episodes = [e for e in evaluation.get("per_episode") or [] if isinstance(e, dict)]
    terms = sorted({t for e in episodes for t in (e.get("components") or {})})
    if terms:
        rows = []
        for term in terms:
            values = [float(e["components"][term]) for e in episodes if term in (e.get("components") or {})]
            rows.append([term, statistics.fmean(values), statistics.pstdev(values), min(values), max(values),
                         len(values)])
        parts.append("<h3>Reward terms per episode</h3>")
        parts.append(_table(["term", "mean", "std", "min", "max", "episodes"], rows, table_id="terms"))
    if episodes:
        cols = [c for c in ("episode", "seed", "ret", "env_return", "length", "success", "instruction")
                if any(c in e for e in episodes)]
        parts.append(f"<details><summary>{len(episodes)} episodes</summary>"
                     + _table(cols, [[e.get(c, "") for c in cols] for e in episodes]) + "</details>")
    return "\n".join(parts)


def _videos_section(run: Path, evaluation: dict[str, Any]) -> str:
    names = [v for v in evaluation.get("videos") or [] if isinstance(v, str)]
    files = [run / "videos" / Path(v).name for v in names]  # eval.json names them as the run's cwd saw them
    files = [f for f in files if f.is_file()] or sorted((run / "videos").glob("*.mp4"))
    if not files:
        return ""
    tags = []
    for f in files[:MAX_VIDEOS]:
        if f.stat().st_size > MAX_VIDEO_BYTES:
            tags.append(f'<p><a href="{_esc(f.relative_to(run))}">{_esc(f.name)}</a> (too big to embed)</p>')
        else:
            tags.append(f'<video controls muted width="320" title="{_esc(f.name)}" '
                        f'src="{_data_uri(f, "video/mp4")}"></video>')
    more = f'<p class="muted">{len(files) - MAX_VIDEOS} more in videos/</p>' if len(files) > MAX_VIDEOS else ""
    return "<h2>Videos</h2>\n" + "\n".join(tags) + more


def run_report(run: Path) -> str:
    """The HTML of one run directory's page."""
    info = _read_json(run / RUN_FILE) or {}
    evaluation = _read_json(run / "eval.json")
    sections = [_table(["run", "status", "seed", "steps", "host", "created"],
                       [[run.name, info.get("status", "?"), info.get("seed", "-"), info.get("steps", "-"),
                         info.get("host", "-"), info.get("created", "-")]], table_id="run")]
    if info.get("error"):
        sections.append(f'<p class="bad">{_esc(info["error"])}</p>')
    task = yaml.safe_load((run / TASK_FILE).read_text()) or {}
    sim = task.get("sim") or {}
    sections.append(f"<h2>Task</h2><p><b>{_esc(sim.get('name', '?'))}</b> {_esc(sim.get('env_id', ''))}, "
                    f"learner <b>{_esc((task.get('learner') or {}).get('name', '?'))}</b>"
                    + (f"; goal: <i>{_esc(task['goal'])}</i>" if task.get("goal") else "") + "</p>")
    sections.append("<details open><summary>task.yaml</summary>"
                    f"<pre>{_esc((run / TASK_FILE).read_text())}</pre></details>")
    sections.append(_reward_section(run))
    sections.append("<h2>Training</h2>")
    if (run / "curves.png").is_file():
        sections.append(f'<img alt="learning curves" src="{_data_uri(run / "curves.png", "image/png")}">')
    else:
        sections.append('<p class="muted">no curves.png (the run has not finished)</p>')
    periodic = _read_json(run / "evaluations.json")
    if isinstance(periodic, list) and periodic:
        sections.append("<h3>Evaluations during training</h3>")
        sections.append(_table(["step", "success rate", "mean return", "mean env return"],
                               [[e.get("step"), e.get("success_rate"), e.get("mean_return"), e.get("mean_env_return")]
                                for e in periodic if isinstance(e, dict)]))
    if isinstance(evaluation, dict):
        sections.append(_eval_section(evaluation))
        sections.append(_videos_section(run, evaluation))
    else:
        sections.append('<h2>Evaluation</h2><p class="muted">no eval.json (the run has not been evaluated)</p>')
    return _page(f"Run {run.name}", sections)


# ----------------------------------------------------------------------------- a sweep


def sweep_report(sweep: Path) -> str:
    """The HTML of a sweep directory's page (each finished trial's page is written beside its run)."""
    record = _read_json(sweep / SWEEP_FILE) or {}
    summary = _read_json(sweep / "summary.json") or {}
    metric = summary.get("metric") or (record.get("sweep") or {}).get("metric", "score")
    confidence = int(100 * float(summary.get("confidence", 0.95)))
    files = record.get("task_files") or [record.get("task_file", "?")]
    sections = [f"<p>{len(record.get('results', []))} trials of <code>{_esc(', '.join(files))}</code>; "
                f"metric <b>{_esc(metric)}</b>, {confidence}% bootstrap intervals over seeds.</p>"]
    methods = summary.get("methods") or []
    if methods:
        def cell(m: dict[str, Any], k: str) -> str:
            return f"{m[k]:.3f} [{m[k + '_low']:.3f}, {m[k + '_high']:.3f}]" if k in m else "-"

        sections.append("<h2>Comparison</h2>")
        sections.append(_table(["task", "method", "seeds", "mean [CI]", "IQM [CI]"],
                               [[m.get("task", ""), m["method"], m["seeds"], cell(m, "mean"), cell(m, "iqm")]
                                for m in methods], table_id="summary"))
    best = summary.get("best") or record.get("best")
    if isinstance(best, dict):  # a search's best configuration
        sections.append(f'<p id="best"><b>best</b>: {_esc(best.get("method", ""))}</p>')
    if (sweep / PLOT_FILE).is_file():
        sections.append(f'<img alt="intervals and performance profiles" '
                        f'src="{_data_uri(sweep / PLOT_FILE, "image/png")}">')
    rows = []
    for row in record.get("results", []):
        run = Path(row["run"]) if row.get("run") else None
        if run is not None and (run / RUN_FILE).is_file() and (run / TASK_FILE).is_file():
            write_report(run)
            link = _Html(f'<a href="{_esc((run / REPORT_FILE).relative_to(sweep))}">{_esc(row["id"])}</a>')
        else:
            link = _Html(_esc(row["id"]))
        rows.append([link, row.get("task", ""), row.get("method"), row.get("seed"), row.get("status"),
                     row.get("score") if row.get("score") is not None else "-", row.get("error", "")])
    sections.append("<h2>Trials</h2>")
    sections.append(_table(["trial", "task", "method", "seed", "status", metric, "error"], rows, table_id="trials"))
    name = (record.get("sweep") or {}).get("name", sweep.name)
    return _page(f"Sweep {name}", sections)


def write_report(directory: Path) -> Path:
    """Write ``report.html`` into a run or sweep directory; returns its path."""
    directory = Path(directory)
    if (directory / SWEEP_FILE).is_file():
        page = sweep_report(directory)
    elif (directory / RUN_FILE).is_file() and (directory / TASK_FILE).is_file():
        page = run_report(directory)
    else:
        raise WorkbenchError(f"{directory}: neither a run directory ({RUN_FILE}, {TASK_FILE}) nor a sweep directory "
                             f"({SWEEP_FILE})\n  fix: pass a directory made by `workbench run` or `workbench sweep`")
    target = directory / REPORT_FILE
    atomic_write(target, page)
    return target
