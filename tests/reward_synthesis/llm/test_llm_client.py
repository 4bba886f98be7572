"""The LLM client against the REAL local server (llama.cpp + SmolLM2-135M-Instruct) over HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from llm_helpers import MisbehavingServer, closed_port, forward, send_json

from reward_synthesis.llm import LLMCacheMiss, LLMClient, LLMConfig, ResponseCache, local_model_name

PROMPT = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name three colours."},
]
TRANSCRIPT_FIELDS = {"ts", "endpoint", "model", "messages", "params", "text", "prompt_tokens",
                     "completion_tokens", "latency_s", "cached", "error", "attempt", "key", "finish_reason"}


def _lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_same_seed_same_text_other_seeds_differ(llm_env: dict, tmp_path: Path) -> None:
    cfg = LLMConfig(base_url=llm_env["url"], temperature=1.0, max_tokens=12)
    # Separate caches, so every answer below really comes from the server.
    first = LLMClient(cfg, cache=ResponseCache(tmp_path / "c1")).chat(PROMPT, seed=7)
    again = LLMClient(cfg, cache=ResponseCache(tmp_path / "c2")).chat(PROMPT, seed=7)
    assert not first.cached and not again.cached
    assert first.text and first.text == again.text
    others = {LLMClient(cfg, cache=ResponseCache(tmp_path / f"o{s}")).chat(PROMPT, seed=s).text for s in (1, 2, 3)}
    assert others - {first.text}, "the seed does not reach the server: every seed gave the same text"


def test_chat_result_and_transcript(llm_env: dict, tmp_path: Path) -> None:
    transcript = tmp_path / "run" / "llm" / "transcript.jsonl"
    client = LLMClient(LLMConfig(base_url=llm_env["url"], max_tokens=6), transcript=transcript,
                       cache=ResponseCache(tmp_path / "cache"))
    res = client.chat(PROMPT, temperature=0.0)
    assert client.model == local_model_name()  # model=None: the one model the server lists
    # Replies are streamed; llama.cpp reports no usage in a stream: completion tokens are its
    # events (one per token), the prompt's are not known.
    assert res.model and res.prompt_tokens is None
    assert 0 < res.completion_tokens <= 6 and res.finish_reason in ("length", "stop")
    assert not res.truncated and res.received_chars is None
    assert res.latency_s > 0 and not res.cached and len(res.key) == 64
    (line,) = _lines(transcript)
    assert TRANSCRIPT_FIELDS <= set(line)
    assert line["endpoint"] == llm_env["url"] and line["model"] == local_model_name() and line["messages"] == PROMPT
    assert line["params"] == {"temperature": 0.0, "max_tokens": 6, "stop": None, "seed": 0, "response_format": None}
    assert line["text"] == res.text and line["cached"] is False and line["error"] is None
    assert line["prompt_tokens"] == res.prompt_tokens and line["completion_tokens"] == res.completion_tokens
    # Appends, never rewrites.
    client.chat(PROMPT, temperature=0.0, seed=1)
    assert len(_lines(transcript)) == 2


def test_max_tokens_and_stop_reach_the_server(llm_env: dict, tmp_path: Path) -> None:
    client = LLMClient(LLMConfig(base_url=llm_env["url"], temperature=0.0), cache=ResponseCache(tmp_path))
    short = client.chat(PROMPT, max_tokens=3)
    assert short.completion_tokens == 3 and short.finish_reason == "length"
    full = client.chat(PROMPT, max_tokens=24)
    assert len(full.text) > 2
    cut = full.text[len(full.text) // 2:][:1]
    if cut.strip():
        stopped = client.chat(PROMPT, max_tokens=24, stop=[cut])
        assert cut not in stopped.text and full.text.startswith(stopped.text)


def test_json_grammar(llm_env: dict, tmp_path: Path) -> None:
    client = LLMClient(LLMConfig(base_url=llm_env["url"], temperature=0.0), cache=ResponseCache(tmp_path))
    msgs = [{"role": "user", "content": 'Reply with a JSON object like {"reward": 1.0}.'}]
    res = client.chat(msgs, max_tokens=32, response_format={"type": "json_object"})
    assert res.text.lstrip().startswith("{")
    if res.finish_reason == "stop":
        assert isinstance(json.loads(res.text), dict)


def test_cache_replays_without_server_and_offline(llm_env: dict, tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache")
    transcript = tmp_path / "t.jsonl"
    online = LLMClient(LLMConfig(base_url=llm_env["url"], max_tokens=8), transcript=transcript, cache=cache)
    first = online.chat(PROMPT, seed=5)
    second = online.chat(PROMPT, seed=5)
    assert not first.cached and second.cached and second.text == first.text and second.key == first.key
    assert len(cache) == 1 and cache.path(first.key).is_file()
    assert [ln["cached"] for ln in _lines(transcript)] == [False, True]

    # A re-run: same requests, the endpoint is down -> answers come from the cache, no network.
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    rerun = LLMClient(LLMConfig(base_url=dead, model=local_model_name(), max_tokens=8, max_retries=0), cache=cache)
    assert rerun.chat(PROMPT, seed=5).text == first.text
    offline = LLMClient(LLMConfig(base_url=dead, model=local_model_name(), max_tokens=8), cache=cache, offline=True)
    replay = offline.chat(PROMPT, seed=5)
    assert replay.cached and replay.text == first.text
    # The local default (base_url=None) also replays offline without starting anything.
    local_offline = LLMClient(LLMConfig(max_tokens=8), cache=cache, offline=True)
    assert local_offline.chat(PROMPT, seed=5).text == first.text and local_offline.endpoint == "local"


def test_offline_miss_names_the_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_LLM_GGUF", raising=False)
    transcript = tmp_path / "t.jsonl"
    long_ask = "Write a reward for stacking the red cube on the blue cube. " * 5
    client = LLMClient(LLMConfig(), cache=ResponseCache(tmp_path / "empty"), offline=True, transcript=transcript)
    with pytest.raises(LLMCacheMiss) as info:
        client.chat([{"role": "system", "content": "sys"}, {"role": "user", "content": long_ask}], seed=3)
    text = str(info.value)
    assert local_model_name() in text and info.value.key in text and str(tmp_path / "empty") in text
    assert long_ask[:100] in text and long_ask[:200] not in text  # the first ~120 characters
    (line,) = _lines(transcript)
    assert line["error"].startswith("cache miss") and line["key"] == info.value.key


def test_cache_key_covers_every_parameter(llm_env: dict, tmp_path: Path) -> None:
    client = LLMClient(LLMConfig(base_url=llm_env["url"], max_tokens=4), cache=ResponseCache(tmp_path))
    base = client.chat(PROMPT)
    variants = [client.chat(PROMPT, seed=1), client.chat(PROMPT, temperature=0.1), client.chat(PROMPT, max_tokens=5),
                client.chat(PROMPT, stop=["\n\n"]), client.chat(PROMPT[1:])]
    assert not any(v.cached for v in variants)
    assert len({base.key, *(v.key for v in variants)}) == 6
    assert client.chat(PROMPT, stop="\n\n").cached  # a string stop is the same request as [string]


def test_local_default_uses_the_running_server(llm_env: dict, tmp_path: Path) -> None:
    client = LLMClient(LLMConfig(max_tokens=4), cache=ResponseCache(tmp_path))  # base_url=None
    assert client.endpoint == "local"
    res = client.chat(PROMPT)
    assert client.endpoint == llm_env["url"] and res.text and client.model == local_model_name()


def test_flaky_endpoint_recovers_after_retries(llm_env: dict, tmp_path: Path) -> None:
    """A real proxy in front of the real server fails twice with 500, then forwards: the third try wins."""

    def flaky(handler, n):
        if n <= 2:
            send_json(handler, 500, {"error": {"message": "warming up"}})
        else:
            body = json.loads(json.dumps(srv.requests[-1]))
            forward(handler, llm_env["url"], body)

    transcript = tmp_path / "t.jsonl"
    with MisbehavingServer(flaky) as srv:
        client = LLMClient(LLMConfig(base_url=srv.url, model=local_model_name(), max_tokens=4, backoff_s=0.01),
                           cache=ResponseCache(tmp_path / "c"), transcript=transcript)
        t0 = time.monotonic()
        res = client.chat(PROMPT)
    assert res.text and time.monotonic() - t0 < 30
    assert len(srv.requests) == 3
    lines = _lines(transcript)
    assert [ln["attempt"] for ln in lines] == [1, 2, 3]
    assert "HTTP 500" in lines[0]["error"] and lines[2]["error"] is None and lines[2]["text"] == res.text
