"""Error handling of the LLM client against endpoints that are down or misbehave: real sockets and
real ``http.server``s on 127.0.0.1 (they test our retries, they do not stand in for an LLM)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from llm_helpers import MisbehavingServer, closed_port, send_json
from llm_helpers import hostile_client as _client
from llm_helpers import transcript_lines as _lines
from pydantic import ValidationError

from reward_synthesis.llm import LLMClient, LLMConfig, LLMRequestError, LLMUnavailable, ResponseCache
from workbench.errors import WorkbenchError

MSG = [{"role": "user", "content": "Say hi."}]


def test_endpoint_down_is_unavailable_after_retries(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    client = _client(url, tmp_path, max_retries=2)
    t0 = time.monotonic()
    with pytest.raises(LLMUnavailable) as info:
        client.chat(MSG)
    assert time.monotonic() - t0 < 5
    text = str(info.value)
    assert url in text and "failed after 3 tries" in text and "connection failed" in text
    assert "workbench llm serve" in text and "WORKBENCH_LLM_URL" in text and "--llm-url" in text
    assert isinstance(info.value, WorkbenchError)
    lines = _lines(tmp_path)
    assert [ln["attempt"] for ln in lines] == [1, 2, 3]
    assert all(ln["error"] and ln["text"] is None and ln["endpoint"] == url for ln in lines)
    assert len(client.cache) == 0  # failures are never cached
    # model=None asks the endpoint which model it serves: that is retried and reported the same way.
    no_model = LLMClient(LLMConfig(base_url=url, max_retries=1, backoff_s=0.01), cache=ResponseCache(tmp_path / "c2"))
    with pytest.raises(LLMUnavailable, match="failed after 2 tries"):
        no_model.chat(MSG)


def test_timeout_is_retried_then_unavailable(tmp_path: Path) -> None:
    def slow(handler, n):
        time.sleep(1.5)
        send_json(handler, 200, {})

    with MisbehavingServer(slow) as srv:
        client = _client(srv.url, tmp_path, max_retries=1, timeout_s=0.3)
        t0 = time.monotonic()
        with pytest.raises(LLMUnavailable) as info:
            client.chat(MSG)
        elapsed = time.monotonic() - t0
    assert len(srv.requests) == 2
    assert elapsed < 1.4  # the client gave up on each try, it did not wait for the slow answer
    assert "timed out after 0.3 s" in str(info.value) and "failed after 2 tries" in str(info.value)


def test_http_500_is_retried_with_backoff_then_unavailable(tmp_path: Path) -> None:
    def broken(handler, n):
        send_json(handler, 500, {"error": {"message": "kaput"}})

    with MisbehavingServer(broken) as srv:
        client = _client(srv.url, tmp_path, max_retries=3)
        client.config.backoff_s = 0.05
        with pytest.raises(LLMUnavailable) as info:
            client.chat(MSG)
    assert len(srv.requests) == 4
    gaps = [b - a for a, b in zip(srv.times, srv.times[1:])]
    assert gaps[0] >= 0.05 and gaps[2] >= 0.2  # 0.05, 0.1, 0.2: exponential
    assert "HTTP 500 (kaput)" in str(info.value) and "failed after 4 tries" in str(info.value)
    # The request carried the parameters, and no `n`.
    req = srv.requests[0]
    assert req["messages"] == MSG and req["model"] == "m" and req["seed"] == 0 and "n" not in req


def test_429_is_retried_and_400_is_not(tmp_path: Path) -> None:
    def limited(handler, n):
        send_json(handler, 429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"})

    with MisbehavingServer(limited) as srv:
        with pytest.raises(LLMUnavailable, match="HTTP 429"):
            _client(srv.url, tmp_path, max_retries=1).chat(MSG)
    assert len(srv.requests) == 2

    def bad(handler, n):
        send_json(handler, 400, {"error": {"message": "context too long"}})

    with MisbehavingServer(bad) as srv:
        with pytest.raises(LLMRequestError) as info:
            _client(srv.url, tmp_path / "b", max_retries=3).chat(MSG)
    assert len(srv.requests) == 1
    assert "HTTP 400" in str(info.value) and "context too long" in str(info.value)


def test_401_names_the_key_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_KEY", raising=False)

    def denied(handler, n):
        send_json(handler, 401, {"error": {"message": "bad key"}})

    with MisbehavingServer(denied) as srv:
        with pytest.raises(LLMRequestError) as info:
            _client(srv.url, tmp_path, api_key_env="MY_KEY").chat(MSG)
    assert "$MY_KEY" in str(info.value)


def test_api_key_is_read_from_the_named_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def record(handler, n):
        seen.append(handler.headers.get("Authorization"))
        send_json(handler, 400, {"error": {"message": "stop here"}})

    monkeypatch.setenv("MY_KEY", "sk-test-123")
    with MisbehavingServer(record) as srv:
        with pytest.raises(LLMRequestError):
            _client(srv.url, tmp_path, api_key_env="MY_KEY").chat(MSG)
    assert seen == ["Bearer sk-test-123"]


def test_config_resolve_env_then_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_LLM_URL", "http://env:1/v1")
    monkeypatch.setenv("WORKBENCH_LLM_MODEL", "env-model")
    monkeypatch.setenv("WORKBENCH_LLM_API_KEY_ENV", "ENV_KEY")
    base = LLMConfig(base_url="http://yaml:1/v1", temperature=0.2)
    cfg = base.resolve({"model": "cli-model", "base_url": None, "max_tokens": 64})
    assert cfg.base_url == "http://env:1/v1" and cfg.model == "cli-model" and cfg.api_key_env == "ENV_KEY"
    assert cfg.temperature == 0.2 and cfg.max_tokens == 64
    assert base.base_url == "http://yaml:1/v1"  # resolve returns a copy
    with pytest.raises(WorkbenchError, match="unknown LLM setting 'n'"):
        base.resolve({"n": 4})
    with pytest.raises(WorkbenchError, match="max_retries"):
        base.resolve({"max_retries": -1})
    with pytest.raises(ValidationError):
        LLMConfig(n=2)  # extra="forbid"
