"""Helpers for the LLM tests: small real HTTP servers on 127.0.0.1 that misbehave on purpose."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from reward_synthesis.llm import LLMClient, LLMConfig, ResponseCache


def hostile_client(url: str, tmp_path: Path, **cfg: object) -> LLMClient:
    """A client for a test endpoint: fast retries, transcript and cache under ``tmp_path``."""
    config = LLMConfig(base_url=url, model="m", backoff_s=0.01, **cfg)
    return LLMClient(config, transcript=tmp_path / "llm" / "transcript.jsonl", cache=ResponseCache(tmp_path / "cache"))


def transcript_lines(tmp_path: Path) -> list[dict]:
    return [json.loads(ln) for ln in (tmp_path / "llm" / "transcript.jsonl").read_text().splitlines()]


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MisbehavingServer:
    """A real ``http.server`` on 127.0.0.1 in a thread. ``behave(handler, n)`` answers the n-th
    POST (1-based); the requests it saw are in ``self.requests``. ``models``: the ids ``GET
    /v1/models`` lists (None: GET answers 404)."""

    def __init__(self, behave: Callable[[BaseHTTPRequestHandler, int], None], *, models: list[str] | None = None):
        self.requests: list[dict] = []
        self.times: list[float] = []
        self.gets: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer.gets.append(self.path)
                if models is None or not self.path.rstrip("/").endswith("/models"):
                    send_json(self, 404, {"error": {"message": "not found"}})
                else:
                    send_json(self, 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in models]})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append(json.loads(body or b"{}"))
                outer.times.append(time.monotonic())
                behave(self, len(outer.requests))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> MisbehavingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, obj: object, headers: dict | None = None) -> None:
    data = json.dumps(obj).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    try:
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):  # the client gave up first (timeout tests)
        pass


def forward(handler: BaseHTTPRequestHandler, target_url: str, body: dict) -> None:
    """Relay a chat request to the real server and its answer back (a flaky proxy's good path)."""
    req = urllib.request.Request(target_url.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=120) as resp:  # streamed (the client asks so) or not: relayed as is
        data = resp.read()
        handler.send_response(resp.status)
        handler.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def send_stream(handler: BaseHTTPRequestHandler, events: Iterable[bytes | str]) -> int:
    """Answer with server-sent events (``text/event-stream``, connection closed at the end), each
    item sent as is (``str`` is UTF-8 encoded). Returns the bytes written before the client left."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True
    sent = 0
    try:
        for item in events:
            data = item.encode() if isinstance(item, str) else item
            handler.wfile.write(data)
            handler.wfile.flush()
            sent += len(data)
    except (BrokenPipeError, ConnectionResetError):  # the client went away
        pass
    return sent


def chunk_event(content: str | None = None, finish: str | None = None, model: str = "m") -> str:
    """One OpenAI ``chat.completion.chunk`` as an SSE event."""
    delta = {} if content is None else {"content": content}
    body = {"object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n"


def reply_events(text: str, *, pieces: int = 3, model: str = "m") -> list[str]:
    """A well-formed stream of ``text`` in ``pieces`` chunks, a finish_reason and [DONE]."""
    size = max(1, -(-len(text) // pieces))
    out = [chunk_event(text[i:i + size], model=model) for i in range(0, len(text), size)]
    return out + [chunk_event(None, "stop", model=model), "data: [DONE]\n\n"]
