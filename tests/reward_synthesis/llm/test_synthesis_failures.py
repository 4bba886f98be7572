"""Syntheses whose LLM fails (times out, breaks the protocol, answers 50 MB) end with one message,
exit 2, and keep everything they had: the transcript, the attempts, and a record saying why. The
endpoints are real ``http.server``s on 127.0.0.1 that misbehave on purpose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from llm_helpers import MisbehavingServer, chunk_event, reply_events, send_stream

REPO = Path(__file__).resolve().parents[3]
REACHER = REPO / "tasks" / "mujoco" / "reacher.yaml"
REACHER_T2R = REPO / "tasks" / "mujoco" / "reacher_text2reward.yaml"
AUTO_MC = REPO / "tasks" / "minecraft" / "collect_wood_automc.yaml"
NO_CODE = "I would reward the fingertip for being close to the target."


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_LLM_")}
    env.update(WORKBENCH_LLM_STATE_DIR=str(tmp_path / "state"), WORKBENCH_LLM_CACHE=str(tmp_path / "cache"),
               WORKBENCH_RUNS_DIR=str(tmp_path / "runs"))
    return env


def _wb(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=600, env=_env(tmp_path))


def _lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def _trickle(handler, n):  # headers, then keep-alive comments: only the whole-request timeout ends it
    def pings():
        while True:
            time.sleep(0.05)
            yield ": ping\n\n"
    send_stream(handler, pings())


def test_synth_timeout_exits_2_and_keeps_the_transcript(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with MisbehavingServer(_trickle) as srv:
        t0 = time.monotonic()
        proc = _wb(tmp_path, "reward", "synth", "--task", str(REACHER), "--llm-url", srv.url, "--model", "m",
                   "--timeout", "0.5", "--attempts", "2", "--samples", "16", "--out", str(out))
        elapsed = time.monotonic() - t0
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "timed out after 0.5 s" in proc.stderr and "--timeout" in proc.stderr
    assert len(srv.requests) == 4 and elapsed < 60  # 1 + 3 retries of 0.5 s, not 600 s each
    lines = _lines(out / "llm" / "transcript.jsonl")
    assert len(lines) == 4 and all("timed out after 0.5 s" in ln["error"] for ln in lines)
    synthesis = json.loads((out / "synthesis.json").read_text())
    assert synthesis["accepted"] is False and synthesis["attempts"] == [] and "timed out" in synthesis["error"]


def test_synth_protocol_error_midway_keeps_the_attempts_so_far(tmp_path: Path) -> None:
    def first_ok_then_garbage(handler, n):
        if n == 1:
            send_stream(handler, reply_events(NO_CODE))
        else:
            send_stream(handler, ["data: <html>oops</html>\n\n"])

    out = tmp_path / "out"
    with MisbehavingServer(first_ok_then_garbage) as srv:
        proc = _wb(tmp_path, "reward", "synth", "--task", str(REACHER), "--llm-url", srv.url, "--model", "m",
                   "--attempts", "3", "--samples", "16", "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "broke the protocol" in proc.stderr and "not JSON" in proc.stderr
    assert len(srv.requests) == 2  # a protocol error is not retried
    synthesis = json.loads((out / "synthesis.json").read_text())
    assert [a["reply"] for a in synthesis["attempts"]] == [NO_CODE] and "broke the protocol" in synthesis["error"]
    assert (out / "attempts" / "attempt_0.reply.txt").read_text() == NO_CODE
    errors = [ln["error"] for ln in _lines(out / "llm" / "transcript.jsonl")]
    assert errors[0] is None and "not JSON" in errors[1]


def test_synth_with_50_mb_replies_keeps_kilobytes(tmp_path: Path) -> None:
    def huge(handler, n):
        def endless():
            for _ in range(50 * 256):  # 50 MB in 4 KiB pieces
                yield chunk_event("x" * 4096)
            yield chunk_event(None, "stop")
            yield "data: [DONE]\n\n"
        send_stream(handler, endless())

    out = tmp_path / "out"
    with MisbehavingServer(huge) as srv:
        proc = _wb(tmp_path, "reward", "synth", "--task", str(REACHER), "--llm-url", srv.url, "--model", "m",
                   "--attempts", "2", "--samples", "16", "--out", str(out))
    assert proc.returncode == 1, proc.stderr  # no code in the replies: none accepted, an ordinary outcome
    cap = 65_536  # the default max_reply_chars
    repair = srv.requests[1]["messages"]
    assert repair[-2]["role"] == "assistant" and len(repair[-2]["content"]) == cap  # never more than the cap
    for name in ("attempt_0.reply.txt", "attempt_1.reply.txt"):
        assert len((out / "attempts" / name).read_text()) == cap
    lines = _lines(out / "llm" / "transcript.jsonl")
    assert all(ln["truncated"] and ln["received_chars"] > cap for ln in lines)
    on_disk = sum(p.stat().st_size for root in (out, tmp_path / "cache") for p in root.rglob("*") if p.is_file())
    assert on_disk < 2_000_000, f"{on_disk} bytes on disk for two capped replies"


def test_run_keeps_the_transcript_when_the_llm_times_out(tmp_path: Path) -> None:
    with MisbehavingServer(_trickle) as srv:
        proc = _wb(tmp_path, "run", str(REACHER_T2R), "--runs-dir", str(tmp_path / "r"), "--quiet",
                   "--set", f"reward.llm.base_url={srv.url}", "--set", "reward.llm.model=m",
                   "--set", "reward.llm.timeout_s=0.5", "--set", "reward.llm.max_retries=0",
                   "--set", "reward.few_shot=0", "--set", "reward.samples=16")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "timed out after 0.5 s" in proc.stderr and "attempts so far and the LLM transcript:" in proc.stderr
    (kept,) = list((tmp_path / "runs" / "synth").iterdir())
    assert kept.name.startswith("reacher_text2reward__failed__") and str(kept) in proc.stderr
    (line,) = _lines(kept / "llm" / "transcript.jsonl")
    assert "timed out" in line["error"]
    assert "timed out" in json.loads((kept / "reward" / "synthesis.json").read_text())["error"]


def test_automc_protocol_error_keeps_the_record(tmp_path: Path) -> None:
    def garbage(handler, n):
        send_stream(handler, ['data: {"choices": "none"}\n\n'])

    out = tmp_path / "out"
    with MisbehavingServer(garbage) as srv:
        proc = _wb(tmp_path, "reward", "automc", "--task", str(AUTO_MC), "--llm-url", srv.url, "--model", "m",
                   "--rounds", "1", "--samples", "16", "--timeout", "30", "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "broke the protocol" in proc.stderr
    assert str(out) in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert "broke the protocol" in summary["error"] and summary["rounds"][0]["reason"].startswith("stopped:")
    (line,) = _lines(out / "llm" / "transcript.jsonl")
    assert "broke the protocol" in line["error"]
