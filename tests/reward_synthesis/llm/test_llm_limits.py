"""The LLM client's limits against hostile endpoints: real ``http.server``s on 127.0.0.1 that send
huge, broken or endless answers (they test our limits, they do not stand in for an LLM)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from llm_helpers import MisbehavingServer, chunk_event, reply_events, send_json, send_stream
from llm_helpers import hostile_client as _client
from llm_helpers import transcript_lines as _lines

from reward_synthesis.llm import LLMClient, LLMConfig, LLMRequestError, LLMUnavailable, ResponseCache
from workbench.errors import WorkbenchError

MSG = [{"role": "user", "content": "Write a reward."}]
BIG = 50 * 1024 * 1024  # what a hostile endpoint offers to send


def _disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _endless(piece: str = "x" * 4096, total: int = BIG):
    sent = 0
    while sent < total:
        yield chunk_event(piece)
        sent += len(piece)
    yield chunk_event(None, "stop")
    yield "data: [DONE]\n\n"


def test_a_huge_streamed_reply_is_cut_at_the_cap_and_the_stream_closed(tmp_path: Path) -> None:
    sent: list[int] = []

    def huge(handler, n):
        sent.append(send_stream(handler, _endless()))

    with MisbehavingServer(huge) as srv:
        client = _client(srv.url, tmp_path, max_reply_chars=10_000)
        res = client.chat(MSG)
        deadline = time.monotonic() + 10
        while not sent and time.monotonic() < deadline:  # the server thread notices the client left
            time.sleep(0.05)
    assert srv.requests[0]["stream"] is True
    assert len(res.text) == 10_000 and res.truncated and res.received_chars > 10_000
    assert sent and sent[0] < 5 * 1024 * 1024, "the client kept reading past the cap"
    (line,) = _lines(tmp_path)
    assert line["truncated"] is True and line["received_chars"] == res.received_chars
    assert line["max_reply_chars"] == 10_000 and len(line["text"]) == 10_000
    entry = client.cache.get(res.key)
    assert entry is not None and len(entry["text"]) == 10_000 and entry["truncated"] is True
    assert _disk(tmp_path) < 200_000  # transcript + cache entry, not 250 MB
    # The replay from the cache says so too.
    again = client.chat(MSG)
    assert again.cached and again.truncated and len(again.text) == 10_000


def test_a_huge_answer_without_streaming_is_refused_unread(tmp_path: Path) -> None:
    def huge_json(handler, n):
        body = b'{"choices": [{"message": {"role": "assistant", "content": "' + b"y" * BIG + b'"}}]}'
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    with MisbehavingServer(huge_json) as srv:
        client = _client(srv.url, tmp_path, max_reply_chars=4096, max_retries=3)
        with pytest.raises(LLMRequestError) as info:
            client.chat(MSG)
    text = str(info.value)
    assert "without streaming" in text and "max_reply_chars" in text and "Traceback" not in text
    assert len(srv.requests) == 1  # a protocol error is not retried
    (line,) = _lines(tmp_path)
    assert "without streaming" in line["error"] and line["text"] is None
    assert len(client.cache) == 0 and _disk(tmp_path) < 100_000


def test_a_long_answer_without_streaming_is_truncated(tmp_path: Path) -> None:
    def plain(handler, n):  # an endpoint that ignores `stream` but answers a sane size
        send_json(handler, 200, {"model": "m", "choices": [{"message": {"content": "z" * 9000},
                                                            "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 7, "completion_tokens": 900}})

    with MisbehavingServer(plain) as srv:
        res = _client(srv.url, tmp_path, max_reply_chars=1000).chat(MSG)
    assert res.text == "z" * 1000 and res.truncated and res.received_chars == 9000
    assert res.prompt_tokens == 7 and res.finish_reason == "stop"


@pytest.mark.parametrize("answer", [
    pytest.param(lambda h: send_json(h, 200, "not an object"), id="json-not-object"),
    pytest.param(lambda h: (h.send_response(200), h.send_header("Content-Type", "application/json"),
                            h.send_header("Content-Length", "9"), h.end_headers(), h.wfile.write(b"not json{")),
                 id="invalid-json"),
    pytest.param(lambda h: send_json(h, 200, {"id": "x", "object": "chat.completion"}), id="no-choices"),
    pytest.param(lambda h: send_stream(h, ["data: {not json\n\n"]), id="stream-invalid-json"),
    pytest.param(lambda h: send_stream(h, [chunk_event("a"), 'data: {"choices": 3}\n\n']), id="stream-bad-choices"),
    pytest.param(lambda h: send_stream(h, ['data: {"choices": [{"delta": {"content": 5}}]}\n\n']),
                 id="stream-content-not-text"),
])
def test_protocol_errors_are_one_request_error_with_the_transcript_kept(tmp_path: Path, answer) -> None:
    with MisbehavingServer(lambda h, n: answer(h)) as srv:
        client = _client(srv.url, tmp_path, max_retries=2)
        with pytest.raises(LLMRequestError) as info:
            client.chat(MSG)
    assert isinstance(info.value, WorkbenchError)  # the CLI: one message, exit 2
    assert "broke the protocol" in str(info.value) and "fix:" in str(info.value)
    assert len(srv.requests) == 1
    (line,) = _lines(tmp_path)
    assert line["error"] and "broke the protocol" in line["error"] and line["messages"] == MSG


def test_an_endless_line_is_refused(tmp_path: Path) -> None:
    def no_newline(handler, n):
        send_stream(handler, (b"data: " + b"a" * 65536 for _ in range(2000)))

    with MisbehavingServer(no_newline) as srv:
        with pytest.raises(LLMRequestError, match="longer than"):
            _client(srv.url, tmp_path, max_reply_chars=1024).chat(MSG)


def test_a_trickling_stream_is_cut_at_the_timeout(tmp_path: Path) -> None:
    """Keep-alive comments every 50 ms never let a read time out: the whole request is bounded."""

    def trickle(handler, n):
        def pings():
            yield chunk_event("def compute_reward(")
            while True:
                time.sleep(0.05)
                yield ": ping\n\n"
        send_stream(handler, pings())

    with MisbehavingServer(trickle) as srv:
        client = _client(srv.url, tmp_path, timeout_s=0.5, max_retries=1)
        t0 = time.monotonic()
        with pytest.raises(LLMUnavailable) as info:
            client.chat(MSG)
        elapsed = time.monotonic() - t0
    assert elapsed < 3.0, f"two 0.5 s tries took {elapsed:.1f} s"
    assert "timed out after 0.5 s" in str(info.value) and "--timeout" in str(info.value)
    lines = _lines(tmp_path)
    assert [ln["attempt"] for ln in lines] == [1, 2]
    assert all("timed out" in ln["error"] and ln["partial_text"] == "def compute_reward(" for ln in lines)


def test_a_stream_cut_short_is_retried_not_taken(tmp_path: Path) -> None:
    def cut(handler, n):
        if n == 1:  # [DONE] without a finish_reason: llama.cpp's answer when another request interrupted it
            send_stream(handler, [chunk_event("def comp"), "data: [DONE]\n\n"])
        elif n == 2:  # the connection drops mid-reply
            send_stream(handler, [chunk_event("def comp")])
        else:
            send_stream(handler, reply_events("def compute_reward(state, action):\n    return 0.0, {}\n"))

    with MisbehavingServer(cut) as srv:
        res = _client(srv.url, tmp_path, max_retries=2).chat(MSG)
    assert res.text.startswith("def compute_reward") and res.finish_reason == "stop" and len(srv.requests) == 3
    errors = [ln["error"] for ln in _lines(tmp_path)]
    assert "without a finish_reason" in errors[0] and "before the reply was complete" in errors[1]
    assert errors[2] is None


def test_an_error_answer_is_read_with_a_cap_and_cleaned(tmp_path: Path) -> None:
    def shouting(handler, n):
        send_json(handler, 400, {"error": {"message": "\x1b[31mbad\x1b[0m " + "m" * 1_000_000}})

    with MisbehavingServer(shouting) as srv:
        with pytest.raises(LLMRequestError) as info:
            _client(srv.url, tmp_path).chat(MSG)
    text = str(info.value)
    assert "\x1b" not in text and "bad" in text and len(text) < 1000


def test_http_500_hint_names_the_endpoint_not_the_local_server(tmp_path: Path) -> None:
    def broken(handler, n):
        send_json(handler, 500, {"error": {"message": "kaput"}})

    with MisbehavingServer(broken) as srv:
        with pytest.raises(LLMUnavailable) as info:
            _client(srv.url, tmp_path, max_retries=0).chat(MSG)
    text = str(info.value)
    assert "HTTP 500 (kaput)" in text and f"the endpoint {srv.url} answered but failed" in text
    assert "workbench llm serve" not in text
    # Through the CLI: one message, exit 2.
    import subprocess

    proc = subprocess.run([sys.executable, "-c", (
        "from workbench.cli_errors import user_errors\n"
        "from reward_synthesis.llm import LLMClient, LLMConfig, ResponseCache\n"
        "import sys, typer\n"
        "@user_errors\n"
        "def main():\n"
        f"    LLMClient(LLMConfig(base_url={srv.url!r}, model='m', max_retries=0), "
        f"cache=ResponseCache({str(tmp_path / 'c')!r})).chat([{{'role': 'user', 'content': 'x'}}])\n"
        "typer.run(main)\n")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_the_embedded_server_hint_is_about_that_server() -> None:
    from reward_synthesis.llm.client import _unavailable_fix

    embedded = _unavailable_fix(LLMConfig(), "http://127.0.0.1:1/v1", "HTTP 500 (kaput)")
    assert "embedded server" in embedded and "workbench llm stop" in embedded
    given = _unavailable_fix(LLMConfig(base_url="http://h:1/v1"), "http://h:1/v1", "HTTP 500 (kaput)")
    assert "workbench llm" not in given and "another endpoint" in given


def test_a_redirect_is_not_followed(tmp_path: Path) -> None:
    def moved(handler, n):
        handler.send_response(307)
        handler.send_header("Location", "http://127.0.0.1:9/elsewhere")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with MisbehavingServer(moved) as srv:
        with pytest.raises(LLMRequestError, match="redirects"):
            _client(srv.url, tmp_path).chat(MSG)
        assert len(srv.requests) == 1


def test_a_url_that_is_not_http_is_refused_up_front() -> None:
    for bad in ("file:///etc/passwd", "ftp://h/v1", "localhost:8080/v1"):
        with pytest.raises(WorkbenchError, match="not an http"):
            LLMConfig().resolve({"base_url": bad})


@pytest.mark.slow  # passes alone; times out late in the full default suite (tests/conftest.py watches for the cause)
def test_interrupted_request_is_logged_and_hangs_up(tmp_path: Path) -> None:
    left = threading.Event()

    def slow(handler, n):
        def pings():
            yield chunk_event("def ")
            while True:
                time.sleep(0.05)
                yield ": ping\n\n"
        send_stream(handler, pings())
        left.set()  # send_stream returns once a write fails: the client hung up

    with MisbehavingServer(slow) as srv:
        client = _client(srv.url, tmp_path, timeout_s=30)
        # a real SIGINT, as Ctrl-C sends: it interrupts the main thread's blocking socket read
        # (_thread.interrupt_main only sets a flag, which a read looping in C may not check for 30 s)
        timer = threading.Timer(0.5, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            client.chat(MSG)
        assert left.wait(5), "the server never saw the client leave"
    (line,) = _lines(tmp_path)
    assert line["error"].startswith("interrupted (KeyboardInterrupt)") and line["partial_text"] == "def "


def test_the_client_needs_no_openai_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client speaks the protocol with the standard library: no unguarded `import openai`."""
    monkeypatch.setitem(sys.modules, "openai", None)  # `import openai` now raises ImportError
    with MisbehavingServer(lambda h, n: send_stream(h, reply_events("hello"))) as srv:
        assert _client(srv.url, tmp_path).chat(MSG).text == "hello"


def test_a_missing_server_package_gives_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from reward_synthesis.llm import LLMNotInstalled
    from reward_synthesis.llm.server import check_installed

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    monkeypatch.setenv("WORKBENCH_LLM_GGUF", str(tmp_path / "m.gguf"))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(LLMNotInstalled, match=r'pip install "rl-workbench\[llm\]"') as info:
        check_installed()
    assert "uvicorn" in str(info.value) and isinstance(info.value, WorkbenchError)


# ----------------------------------------------------------------------------- the real local server


def _cpu_seconds(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _busy_after(pid: int, seconds: float = 1.5) -> float:
    before = _cpu_seconds(pid)
    time.sleep(seconds)
    return _cpu_seconds(pid) - before


GENERATE_LONG = [{"role": "user", "content": "Write Python code for a complete chess engine with move generation, "
                                             "search and evaluation."}]


def test_an_abandoned_reply_stops_the_local_server(llm_env: dict, tmp_path: Path) -> None:
    """A request that times out while its reply streams: closing the connection stops llama.cpp's
    generation at once (measured: a non-streamed request kept it busy ~2 min), so the next request
    does not queue behind it."""
    from reward_synthesis.llm.server import server_status

    pid = server_status()["pid"]
    client = LLMClient(LLMConfig(timeout_s=2.0, max_retries=0, max_tokens=4000, temperature=0.2, seed=11),
                       cache=ResponseCache(tmp_path / "c"), transcript=tmp_path / "llm" / "transcript.jsonl")
    with pytest.raises(LLMUnavailable, match="timed out after 2 s"):
        client.chat(GENERATE_LONG)
    (line,) = _lines(tmp_path)
    assert line["partial_text"], "the reply had not started streaming: nothing was abandoned mid-generation"
    assert server_status()["pid"] == pid  # no restart was needed
    assert _busy_after(pid) < 0.5, "the server kept generating the abandoned reply"
    t0 = time.monotonic()
    LLMClient(LLMConfig(max_tokens=4), cache=ResponseCache(tmp_path / "c2")).chat([{"role": "user", "content": "Hi."}])
    assert time.monotonic() - t0 < 15  # the remaining ~3900 tokens would take over a minute


def test_a_request_abandoned_during_its_prompt_restarts_the_local_server(llm_env: dict, tmp_path: Path) -> None:
    """llama.cpp cannot interrupt prompt processing (a 4k-token prompt: ~50 s on one thread), so the
    client restarts the embedded server (same port) when it gives up before the reply began."""
    from reward_synthesis.llm.server import server_status

    before = server_status()
    long_prompt = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * 250 + "Summarize."}]
    client = LLMClient(LLMConfig(timeout_s=1.0, max_retries=0, max_tokens=8, seed=int(time.time())),
                       cache=ResponseCache(tmp_path / "c"), transcript=tmp_path / "llm" / "transcript.jsonl")
    with pytest.raises(LLMUnavailable, match="restarted it"):
        client.chat(long_prompt)
    after = server_status()
    assert after["pid"] != before["pid"] and after["port"] == before["port"]  # llm_env["url"] still works
    assert _busy_after(after["pid"]) < 0.5
    t0 = time.monotonic()
    LLMClient(LLMConfig(base_url=llm_env["url"], max_tokens=4), cache=ResponseCache(tmp_path / "c2")).chat(
        [{"role": "user", "content": "Hi."}])
    assert time.monotonic() - t0 < 15  # behind the abandoned prompt it would wait ~25 s more


def test_no_restart_while_another_request_waits(llm_env: dict, tmp_path: Path) -> None:
    """The server is shared: an abandoned prompt does not kill it while another request is in flight."""
    from reward_synthesis.llm.server import request_in_flight, server_status

    before = server_status()["pid"]
    long_prompt = [{"role": "user", "content": "A lazy dog sleeps under the old oak tree. " * 40 + "Summarize."}]
    client = LLMClient(LLMConfig(timeout_s=1.0, max_retries=0, max_tokens=8, seed=int(time.time())),
                       cache=ResponseCache(tmp_path / "c"))
    with request_in_flight():  # as if another caller were waiting on the server
        with pytest.raises(LLMUnavailable) as info:
            client.chat(long_prompt)
    assert "restarted" not in str(info.value) and server_status()["pid"] == before


def test_concurrent_streams_queue_instead_of_cutting_each_other_short(llm_env: dict, tmp_path: Path) -> None:
    """llama_cpp.server by default ends a streamed reply when another request waits
    (interrupt_requests): the embedded server is started without that, so callers queue."""
    results: dict[int, object] = {}

    def ask(i: int) -> None:
        client = LLMClient(LLMConfig(base_url=llm_env["url"], max_tokens=48, temperature=0.7, seed=100 + i,
                                     max_retries=0),
                           cache=ResponseCache(tmp_path / f"c{i}"), transcript=tmp_path / f"t{i}.jsonl")
        try:
            results[i] = client.chat(GENERATE_LONG)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.3)  # the second arrives while the first streams
    for t in threads:
        t.join(120)
    for i in range(2):
        assert not isinstance(results[i], Exception), results[i]
        assert results[i].finish_reason in ("length", "stop")
