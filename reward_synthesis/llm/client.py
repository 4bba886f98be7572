"""One client for any OpenAI-compatible chat endpoint, with retries, a transcript and a cache.

``LLMClient(config).chat(messages)`` asks for ONE completion (endpoints differ on ``n``, so it is not
offered: draw several samples as several requests with different seeds). Every attempt is appended
to the transcript, every answer stored in the response cache; a request found in the cache replays
without a server, and ``offline=True`` never touches the network.

With ``base_url=None`` the workbench's own local server (:mod:`.server`) is started on first use.

Limits: every reply is STREAMED (``stream: true``) and read with a cap (``max_reply_chars``): a
longer reply is cut there, the connection is closed (a streaming server stops generating when its
client goes away) and the transcript records ``truncated: true`` with the characters received. A
request that times out (``timeout_s``, the whole request) or is interrupted also closes its
connection, so an abandoned reply does not keep the server busy. An answer that breaks the protocol
(not JSON, no choices, an oversized event) is one :class:`LLMRequestError`; every attempt, failed
or not, is in the transcript.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workbench.errors import WorkbenchError

from .cache import ResponseCache, request_key
from .errors import SERVE_FIX, LLMCacheMiss, LLMRequestError, LLMUnavailable

__all__ = ["LLMConfig", "LLMClient", "ChatResult", "ENV_URL", "ENV_MODEL", "ENV_API_KEY_ENV", "SCHEMA_MODES",
           "schema_response_format"]

ENV_URL = "WORKBENCH_LLM_URL"
ENV_MODEL = "WORKBENCH_LLM_MODEL"
ENV_API_KEY_ENV = "WORKBENCH_LLM_API_KEY_ENV"
NO_KEY = "sk-no-key-required"  # local servers ignore the key; some proxies want a bearer token
MAX_BACKOFF_S = 60.0


class LLMConfig(BaseModel):
    """Where and how to ask. ``base_url=None`` means the embedded local server; ``model=None``
    means whatever the endpoint serves (the local model, or the one model a server lists)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(600.0, gt=0)  # the local CPU server queues requests: prompts take a while
    max_retries: int = Field(3, ge=0)
    backoff_s: float = Field(1.0, ge=0)  # first retry waits this long, each next one twice as long
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(768, ge=1)
    seed: int | None = 0
    # A reward program is a few kB: a longer reply is cut here (and the stream closed), so it never
    # fills the disk, the cache or the next repair request.
    max_reply_chars: int = Field(65_536, ge=256, le=16 * 1024 * 1024)
    # How a JSON-schema reply (``chat(..., json_schema=...)``) is constrained: "grammar" sends
    # llama-cpp-python's ``{"type": "json_object", "schema": ...}`` (its server turns the schema into a
    # GBNF grammar and samples only tokens it allows); "json_schema" sends OpenAI's structured-output
    # form; "prompt" sends no constraint (the caller shows the schema and validates). "auto": grammar
    # for the embedded server, json_schema for a configured endpoint.
    schema_mode: Literal["auto", "grammar", "json_schema", "prompt"] = "auto"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not (urlparse(value).scheme in ("http", "https") and urlparse(value).hostname):
            raise ValueError(f"{value!r} is not an http(s) URL: give one like http://HOST:PORT/v1")
        return value

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> LLMConfig:
        """A copy with ``$WORKBENCH_LLM_URL``, ``$WORKBENCH_LLM_MODEL``, ``$WORKBENCH_LLM_API_KEY_ENV``
        applied, then ``overrides`` (CLI options; ``None`` values are "not given")."""
        changes: dict[str, Any] = {}
        for env, field in ((ENV_URL, "base_url"), (ENV_MODEL, "model"), (ENV_API_KEY_ENV, "api_key_env")):
            value = os.environ.get(env)
            if value:
                changes[field] = value
        for key, value in (overrides or {}).items():
            if key not in type(self).model_fields:
                raise WorkbenchError(f"unknown LLM setting {key!r}\n  fix: use one of "
                                     f"{', '.join(type(self).model_fields)}")
            if value is not None:
                changes[key] = value
        try:
            return type(self).model_validate({**self.model_dump(), **changes})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise WorkbenchError(f"invalid LLM settings: {problems}") from None


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    cached: bool
    finish_reason: str | None
    key: str = ""  # the response-cache key of the request
    truncated: bool = False  # the reply was longer than max_reply_chars and was cut there
    received_chars: int | None = None  # when truncated: characters received before the client stopped reading
    constraint: str | None = None  # how a json_schema request was constrained (see SCHEMA_MODES), else None


# What each constraint mode means (recorded in the transcript as ``constraint.mode``).
SCHEMA_MODES = {
    "grammar": "llama.cpp grammar from the JSON schema (response_format json_object + schema): enforced while sampling",
    "json": "llama.cpp JSON grammar only (the schema could not be turned into a grammar): any JSON; validated after",
    "json_schema": "OpenAI structured output (response_format json_schema, strict): enforced by the endpoint",
    "prompt": "no decoding constraint: the schema is in the prompt; validated and repaired after",
}


def _grammar_converts(schema: Mapping[str, Any]) -> bool | None:
    """Whether llama-cpp-python turns ``schema`` into a grammar (its server otherwise falls back to
    plain JSON without a word); None when llama_cpp is not importable here."""
    try:
        from llama_cpp import llama_grammar
    except Exception:  # noqa: BLE001 - not installed, or a broken native library: cannot tell
        return None
    try:
        llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except Exception:  # noqa: BLE001 - any failure here is the server's silent fallback
        return False
    return True


def schema_response_format(schema: Mapping[str, Any], mode: str, *, name: str = "reply") -> tuple[
        dict[str, Any] | None, str]:
    """The ``response_format`` for a JSON-schema request in ``mode`` ("grammar", "json_schema" or
    "prompt"), and the constraint actually in force (a key of :data:`SCHEMA_MODES`)."""
    if mode == "grammar":
        converts = _grammar_converts(schema)
        return {"type": "json_object", "schema": dict(schema)}, "json" if converts is False else "grammar"
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema), "strict": True}}, mode
    if mode == "prompt":
        return None, mode
    raise ValueError(f"unknown schema mode {mode!r}: use grammar, json_schema or prompt")


def _schema_digest(schema: Mapping[str, Any]) -> str:
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_loopback(url: str) -> bool:
    host = (urlparse(url).hostname or "").lower()
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _last_user(messages: list[dict[str, Any]]) -> str:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            content = msg.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise TypeError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or "role" not in msg or "content" not in msg:
            raise TypeError(f"messages[{i}] must be a dict with 'role' and 'content', got {msg!r}")
        out.append(dict(msg))
    return out


class LLMClient:
    """``chat(messages) -> ChatResult`` against ``config``'s endpoint.

    ``transcript``: a JSONL file every attempt is appended to (``run_dir/llm/transcript.jsonl``).
    ``cache``: the response cache (default :meth:`ResponseCache.default`).
    ``offline``: answer only from the cache; a missing answer raises :class:`LLMCacheMiss`.
    """

    def __init__(self, config: LLMConfig | None = None, *, transcript: str | Path | None = None,
                 cache: ResponseCache | None = None, offline: bool = False):
        self.config = config if config is not None else LLMConfig()
        self.transcript = Path(transcript) if transcript is not None else None
        self.cache = cache if cache is not None else ResponseCache.default()
        self.offline = bool(offline)
        self._base_url: str | None = self.config.base_url.rstrip("/") if self.config.base_url else None
        self._model: str | None = self.config.model
        self._client: Any = None

    def __repr__(self) -> str:
        return (f"LLMClient(endpoint={self.endpoint!r}, model={self._model!r}, offline={self.offline}, "
                f"cache={self.cache!r})")

    # ------------------------------------------------------------------------- endpoint and model

    @property
    def endpoint(self) -> str:
        """The base URL, or ``"local"`` while the local server has not been needed yet."""
        return self._base_url or "local"

    def _ensure_endpoint(self) -> str:
        if self._base_url is None:
            from .server import ensure_server

            self._base_url = ensure_server()
        return self._base_url

    @property
    def model(self) -> str:
        """The model name requests are sent (and cached) under."""
        if self._model is None:
            self._model = self._resolve_model()
        return self._model

    def _resolve_model(self) -> str:
        if self.config.base_url is None:
            from .server import local_model_name

            return local_model_name()
        if self.offline:
            raise WorkbenchError(
                f"offline mode needs the model name of {self.config.base_url} to find cached answers\n"
                f"  fix: pass --llm-model NAME (or set {ENV_MODEL}) as in the run that recorded them")
        from .server import list_models

        url = self._ensure_endpoint()
        tries = self.config.max_retries + 1
        for attempt in range(1, tries + 1):
            try:
                models = list_models(url, timeout_s=min(self.config.timeout_s, 30.0), api_key=self._api_key())
                break
            except Exception as e:  # noqa: BLE001 - any failure here means "cannot ask the server"
                if attempt == tries:
                    what = (f"GET {url}/models failed ({type(e).__name__}: {_clean(str(e))}), so the model name "
                            f"could not be found (or set --llm-model)")
                    raise LLMUnavailable(url, what, tries, fix=_unavailable_fix(self.config, url, what)) from None
                time.sleep(min(self.config.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
        if len(models) == 1:
            return models[0]
        listed = ", ".join(models[:8]) + (", ..." if len(models) > 8 else "") if models else "none"
        raise WorkbenchError(f"{url} serves {len(models)} models ({listed}); which one is not configured\n"
                             f"  fix: pass --llm-model NAME (or set {ENV_MODEL})")

    def _api_key(self) -> str:
        return os.environ.get(self.config.api_key_env) or NO_KEY

    def _http(self) -> urllib.request.OpenerDirector:
        """The HTTP opener (the standard library's: one connection per request), made on first use."""
        if self._client is None:
            url = self._ensure_endpoint()
            handlers: list[Any] = [_NoRedirects()]
            if _is_loopback(url):  # never send a request for 127.0.0.1 through a proxy from the environment
                handlers.append(urllib.request.ProxyHandler({}))
            self._client = urllib.request.build_opener(*handlers)
        return self._client

    def close(self) -> None:
        """Forget the opener (each request has its own connection, closed when it ends)."""
        self._client = None

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------- chat

    def chat(self, messages: list[dict[str, Any]], *, temperature: float | None = None,
             max_tokens: int | None = None, stop: str | list[str] | None = None, seed: int | None = None,
             response_format: dict[str, Any] | None = None, json_schema: Mapping[str, Any] | None = None,
             schema_name: str = "reply") -> ChatResult:
        """One completion for ``messages``. ``None`` arguments take the config's value; ``stop`` is a
        string or list of strings; ``response_format`` is passed through (e.g. ``{"type":
        "json_object"}``, which the local server enforces with a JSON grammar).

        ``json_schema``: ask for a reply matching this JSON schema, constrained as
        ``config.schema_mode`` says (the embedded server: a grammar made from the schema; an
        endpoint: OpenAI's ``json_schema`` response format; "prompt": none). The constraint in force
        is in ``ChatResult.constraint`` and the transcript; the schema's digest is part of the cache
        key, so a free-text reply never answers a schema request. Validate the reply anyway: a
        grammar does not enforce numeric ranges."""
        messages = _check_messages(messages)
        cfg = self.config
        params, constraint = self._request_params(temperature, max_tokens, stop, seed, response_format,
                                                  json_schema, schema_name)
        model = self.model
        key = request_key(model, messages, params)
        record = {"model": model, "messages": messages, "params": params, "key": key, "constraint": constraint}
        in_force_mode = constraint["mode"] if constraint else None

        t0 = time.monotonic()
        entry = self.cache.get(key)
        if entry is not None and not self._cut_shorter_than_now(entry):
            text, truncated = str(entry["text"]), bool(entry.get("truncated"))
            received = entry.get("received_chars") if truncated else None
            if len(text) > cfg.max_reply_chars:  # recorded under a larger cap
                received, text, truncated = len(text), text[:cfg.max_reply_chars], True
            result = ChatResult(text=text, model=entry.get("model", model),
                                prompt_tokens=entry.get("prompt_tokens"),
                                completion_tokens=entry.get("completion_tokens"),
                                latency_s=time.monotonic() - t0, cached=True,
                                finish_reason=entry.get("finish_reason"), key=key, truncated=truncated,
                                received_chars=received, constraint=in_force_mode)
            self._log(record, result=result, attempt=0)
            return result
        if self.offline:
            err = LLMCacheMiss(model, _last_user(messages), key, str(self.cache.directory))
            self._log(record, error=f"cache miss (offline): {key}", attempt=0)
            raise err
        result = self._request(record)
        if in_force_mode is not None:
            result = dataclasses.replace(result, constraint=in_force_mode)
        self.cache.put(key, {"constraint": constraint,
                             "model": result.model, "endpoint": self.endpoint, "messages": messages,
                             "params": params, "text": result.text, "finish_reason": result.finish_reason,
                             "truncated": result.truncated, "received_chars": result.received_chars,
                             "max_reply_chars": cfg.max_reply_chars,
                             "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                             "latency_s": round(result.latency_s, 4),
                             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return result

    def _request_params(self, temperature: float | None, max_tokens: int | None, stop: str | list[str] | None,
                        seed: int | None, response_format: dict[str, Any] | None,
                        json_schema: Mapping[str, Any] | None, schema_name: str,
                        ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The request's sampling parameters (what its cache key is made of) and, for a
        ``json_schema`` request, the constraint in force."""
        constraint: dict[str, Any] | None = None
        if json_schema is not None:
            if response_format is not None:
                raise TypeError("give json_schema or response_format, not both")
            cfg = self.config
            mode = cfg.schema_mode if cfg.schema_mode != "auto" else (
                "grammar" if cfg.base_url is None else "json_schema")
            response_format, in_force = schema_response_format(json_schema, mode, name=schema_name)
            constraint = {"mode": in_force, "requested": mode, "schema_name": schema_name,
                          "schema_sha256": _schema_digest(json_schema), "how": SCHEMA_MODES[in_force]}
        params = self._params(temperature, max_tokens, stop, seed, response_format)
        if constraint is not None:  # "prompt" sends no response_format: the digest still keys the request
            params["json_schema_sha256"] = constraint["schema_sha256"]
            params["constraint"] = constraint["mode"]
        return params, constraint

    def _params(self, temperature: float | None = None, max_tokens: int | None = None,
                stop: str | list[str] | None = None, seed: int | None = None,
                response_format: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = self.config
        return {
            "temperature": cfg.temperature if temperature is None else float(temperature),
            "max_tokens": cfg.max_tokens if max_tokens is None else int(max_tokens),
            "stop": [stop] if isinstance(stop, str) else (list(stop) if stop else None),
            "seed": cfg.seed if seed is None else int(seed),
            "response_format": response_format,
        }

    def check_available(self, messages: list[dict[str, Any]] | None = None, *, seed: int | None = None,
                        timeout_s: float = 5.0, json_schema: Mapping[str, Any] | None = None,
                        schema_name: str = "reply") -> str:
        """Whether a request could be answered now, WITHOUT asking for a completion (``workbench
        validate`` answers in seconds): offline, whether the request for ``messages`` (with
        ``json_schema``: that schema request, as :meth:`chat` would key it) is cached;
        the embedded server, that it runs or can start (model file and llama-cpp-python present:
        nothing is started); a URL, that ``GET /models`` answers within ``timeout_s`` (and, with no
        model configured, lists exactly one). Raises what the request would raise; returns one line
        saying what it found."""
        cfg = self.config
        if self.offline:
            model = self.model
        elif cfg.base_url is None:
            from .server import check_installed, local_model_name, server_status

            model = cfg.model or local_model_name()
            state = server_status()
            if state is not None:
                where = f"embedded server running at {state['url']} (pid {state['pid']})"
            else:
                where = f"embedded server not running; it can start (model {check_installed().name})"
        else:
            from .server import list_models

            url = cfg.base_url.rstrip("/")
            try:
                models = list_models(url, timeout_s=min(timeout_s, cfg.timeout_s), api_key=self._api_key())
            except Exception as e:  # noqa: BLE001 - any failure here means "cannot ask the server"
                what = f"GET {url}/models failed ({type(e).__name__}: {_clean(str(e))})"
                raise LLMUnavailable(url, what, 1, fix=_unavailable_fix(cfg, url, what)) from None
            listed = ", ".join(models[:5]) + (", ..." if len(models) > 5 else "")
            if cfg.model is None:
                if len(models) != 1:
                    raise WorkbenchError(f"{url} serves {len(models)} models ({listed or 'none'}); which one is "
                                         f"not configured\n  fix: set llm.model (or --llm-model NAME, {ENV_MODEL})")
                model = models[0]
                where = f"endpoint {url} reachable (serves {model})"
            else:
                model = cfg.model
                note = "" if model in models or not models else f"; {model} is not in its list: {listed}"
                where = f"endpoint {url} reachable{note}"
        if messages is None:
            return where
        params, _ = self._request_params(None, None, None, seed, None, json_schema, schema_name)
        key = request_key(model, _check_messages(messages), params)
        if self.cache.get(key) is not None:
            return (where + "; " if not self.offline else "offline: ") + "the first request is cached (replays)"
        if self.offline:
            raise LLMCacheMiss(model, _last_user(messages), key, str(self.cache.directory))
        return where

    def _cut_shorter_than_now(self, entry: dict[str, Any]) -> bool:
        """A cached reply that was truncated under a smaller cap than today's is asked again
        (online): the full reply may now fit. Offline it is replayed as recorded."""
        if self.offline or not entry.get("truncated"):
            return False
        return int(entry.get("max_reply_chars") or 0) < self.config.max_reply_chars

    def _request(self, record: dict[str, Any]) -> ChatResult:
        cfg = self.config
        params = record["params"]
        body: dict[str, Any] = {"model": record["model"], "messages": record["messages"],
                                "temperature": params["temperature"], "max_tokens": params["max_tokens"],
                                # Streamed: the reply is read with a cap, and closing the connection
                                # stops a streaming server's generation (timeouts, Ctrl-C, the cap).
                                "stream": True, "stream_options": {"include_usage": True}}
        for name in ("stop", "seed", "response_format"):
            if params[name] is not None:
                body[name] = params[name]
        tries = cfg.max_retries + 1
        what = "no attempt made"
        for attempt in range(1, tries + 1):
            client = self._http()
            url = self.endpoint
            t0 = time.monotonic()
            retry: _Retry | None = None
            elapsed = 0.0
            reader = _Reader(url, cfg, t0 + cfg.timeout_s, f"request timed out after {cfg.timeout_s:g} s")
            with self._in_flight() as marker:
                try:
                    reply = self._attempt(client, url, body, reader)
                except _Retry as r:
                    retry, what, elapsed = r, r.what, time.monotonic() - t0
                    if r.abandoned and self._abandoned(url, marker, reader):
                        what += " (the embedded server was still reading the prompt: restarted it)"
                    if r.reconnect:
                        self.close()  # a fresh connection next time
                        if cfg.base_url is None:  # the local server may have died: find or restart it next try
                            self._base_url = None
                except LLMRequestError as e:
                    self._log(record, error=e.log_line, attempt=attempt, latency=time.monotonic() - t0)
                    raise
                except BaseException as e:  # Ctrl-C, or a bug: the connection is closed already
                    self.close()
                    self._log(record, error=f"interrupted ({type(e).__name__}); the request was abandoned",
                              attempt=attempt, latency=time.monotonic() - t0, partial=reader.partial())
                    self._abandoned(url, marker, reader)
                    raise
            if retry is None:
                result = ChatResult(text=reply.text, model=reply.model or record["model"],
                                    prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                                    latency_s=time.monotonic() - t0, cached=False,
                                    finish_reason=reply.finish_reason, key=record["key"],
                                    truncated=reply.truncated,
                                    received_chars=reply.received_chars if reply.truncated else None)
                self._log(record, result=result, attempt=attempt)
                return result
            self._log(record, error=what, attempt=attempt, latency=elapsed, partial=retry.partial)
            if attempt < tries:
                delay = min(cfg.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                delay *= 1.0 + 0.1 * random.random()  # a little jitter: parallel callers do not sync up
                if retry is not None and retry.retry_after is not None:
                    delay = max(delay, min(retry.retry_after, MAX_BACKOFF_S))
                time.sleep(delay)
        raise LLMUnavailable(self.config.base_url or self.endpoint, what, tries,
                             fix=_unavailable_fix(cfg, self.config.base_url or self.endpoint, what))

    def _in_flight(self) -> contextlib.AbstractContextManager[Path | None]:
        if self.config.base_url is not None:
            return contextlib.nullcontext(None)
        from .server import request_in_flight

        return request_in_flight()

    def _abandoned(self, url: str, marker: Path | None, reader: _Reader) -> bool:
        """The client gave up on a request to the embedded server before any of the reply arrived:
        the server is still reading the prompt, which llama.cpp cannot interrupt (minutes for a long
        one), so it is restarted unless others wait on it. Once a reply streams, closing the
        connection has already stopped it."""
        if marker is None or reader.events:
            return False
        from .server import restart_abandoned

        return restart_abandoned(url, marker)

    def _attempt(self, opener: urllib.request.OpenerDirector, url: str, body: dict[str, Any],
                 reader: _Reader) -> _Reply:
        """One POST: a :class:`_Reply`, or :class:`_Retry` (worth another try), or
        :class:`LLMRequestError` (the endpoint refused it or broke the protocol). However it ends,
        the connection is closed: a streaming server stops generating an abandoned reply."""
        cfg = self.config
        if not url.lower().startswith(("http://", "https://")):
            raise LLMRequestError(url, None, "not an http(s) URL", "the URL must look like http://HOST:PORT/v1")
        deadline = reader.deadline
        timed_out = reader.timed_out
        request = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode("utf-8"),
                                         method="POST", headers={
                                             "Content-Type": "application/json",
                                             "Accept": "text/event-stream, application/json",
                                             "Accept-Encoding": "identity",
                                             "Authorization": f"Bearer {self._api_key()}",
                                             "User-Agent": "rl-workbench"})
        dog = _Watchdog()
        try:
            try:
                resp = opener.open(request, timeout=cfg.timeout_s)
            except urllib.error.HTTPError as e:  # an error answer: its status and body are read below
                resp = e
            try:
                dog.arm(_socket_of(resp), deadline)
                return reader.read(resp)
            finally:
                dog.disarm()
                _hang_up(resp)
        except (_Retry, LLMRequestError) as e:
            if dog.fired and not getattr(e, "abandoned", False):  # the watchdog cut the stream at the deadline
                raise _Retry(timed_out, reconnect=True, abandoned=True, partial=reader.partial()) from None
            raise
        except TimeoutError:
            raise _Retry(timed_out, reconnect=True, abandoned=True, partial=reader.partial()) from None
        except urllib.error.URLError as e:  # before an answer: DNS, refused, TLS, connect timeout
            if isinstance(e.reason, TimeoutError):
                raise _Retry(timed_out, reconnect=True, abandoned=True) from None
            raise _Retry(f"connection failed ({_clean(str(e.reason))})", reconnect=True) from None
        except (OSError, http.client.HTTPException) as e:  # the connection broke, or the watchdog cut it
            if dog.fired:
                raise _Retry(timed_out, reconnect=True, abandoned=True, partial=reader.partial()) from None
            raise _Retry(f"connection failed ({_clean(_cause(e))})", reconnect=True,
                         partial=reader.partial()) from None

    # ------------------------------------------------------------------------- transcript

    def _log(self, record: dict[str, Any], *, result: ChatResult | None = None, error: str | None = None,
             attempt: int, latency: float | None = None, partial: str | None = None) -> None:
        if self.transcript is None:
            return
        line = {
            "ts": time.time(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "endpoint": self.endpoint,
            "model": record["model"],
            "messages": record["messages"],
            "params": record["params"],
            "key": record["key"],
            "attempt": attempt,
            "cached": bool(result and result.cached),
            "text": result.text if result else None,
            "finish_reason": result.finish_reason if result else None,
            "truncated": bool(result and result.truncated),
            "prompt_tokens": result.prompt_tokens if result else None,
            "completion_tokens": result.completion_tokens if result else None,
            "latency_s": round(result.latency_s if result else (latency or 0.0), 4),
            "error": error,
        }
        if record.get("constraint") is not None:  # which decoding constraint a schema request used
            line["constraint"] = record["constraint"]
        if result is not None and result.truncated:
            line["received_chars"] = result.received_chars
            line["max_reply_chars"] = self.config.max_reply_chars
        if partial:  # what a failed attempt had received (at most max_reply_chars)
            line["partial_text"] = partial
        if result is not None and result.model != record["model"]:
            line["response_model"] = result.model
        _append_line(self.transcript, json.dumps(line, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- reading a reply


ERROR_BODY_BYTES = 64 * 1024  # of an HTTP error answer, for its message


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is not followed (a POST would silently become a GET): it is answered as an error."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _socket_of(resp: Any) -> socket.socket | None:
    """The socket under a urllib response (or HTTPError), to shut it down from another thread."""
    fp = getattr(resp, "fp", None)
    for _ in range(4):
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
        if isinstance(sock, socket.socket):
            return sock
        fp = getattr(fp, "fp", None)
    return None


def _hang_up(resp: Any) -> None:
    """Close the connection now (shut down, so the server sees its client leave at once)."""
    sock = _socket_of(resp)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    try:
        resp.close()
    except (OSError, http.client.HTTPException):
        pass


def _chunks(resp: Any, size: int = 65_536) -> Iterator[bytes]:
    """The body as it arrives (``read1``: whatever is there, never waiting to fill ``size``)."""
    read = getattr(resp, "read1", None) or resp.read
    while True:
        chunk = read(size)
        if not chunk:
            return
        yield chunk


class _Retry(Exception):
    """An attempt failed in a way another try may not: timeout, connection, HTTP 5xx/429."""

    def __init__(self, what: str, *, retry_after: float | None = None, reconnect: bool = False,
                 abandoned: bool = False, partial: str | None = None):
        super().__init__(what)
        self.what = what
        self.abandoned = abandoned  # the client gave up (timeout) while the server may still be working
        self.retry_after = retry_after
        self.reconnect = reconnect
        self.partial = partial


@dataclass
class _Reply:
    text: str
    model: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    truncated: bool
    received_chars: int


class _Watchdog:
    """Shuts the response's socket down at the deadline, so a server that trickles bytes (keep-alive
    pings, a token a minute) cannot stretch one request past ``timeout_s``: a socket timeout bounds
    each read, not the whole request."""

    def __init__(self) -> None:
        self.fired = False
        self._timer: threading.Timer | None = None

    def arm(self, sock: socket.socket | None, deadline: float) -> None:
        if sock is None:
            return

        def fire() -> None:
            self.fired = True
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read; the server sees the client leave
            except OSError:
                pass

        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), fire)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class _Reader:
    """Reads one chat answer with limits: a streamed one (server-sent events) chunk by chunk, a
    plain JSON one (an endpoint that ignored ``stream``) up to a byte limit."""

    def __init__(self, url: str, cfg: LLMConfig, deadline: float, timed_out: str):
        self.url = url
        self.cfg = cfg
        cap = self.cap = cfg.max_reply_chars
        self.deadline = deadline
        self.timed_out = timed_out
        # Each streamed token is a JSON event of ~150 bytes around a few characters; a JSON string
        # escapes a character in up to 6 bytes.
        self.line_limit = 8 * cap + 65_536
        self.stream_limit = 256 * cap + (1 << 20)
        self.parts: list[str] = []
        self.events = 0  # data events received: 0 means the server had not begun the reply

    def partial(self) -> str | None:
        return "".join(self.parts) or None

    def _protocol(self, problem: str) -> LLMRequestError:
        return LLMRequestError(self.url, None, problem,
                               "check that the URL is an OpenAI-compatible chat endpoint ending in /v1",
                               verb="broke the protocol")

    def read(self, resp: Any) -> _Reply:
        status = int(getattr(resp, "status", None) or resp.code)
        if 300 <= status < 400:
            raise self._protocol(f"HTTP {status}: it redirects (to {_snippet(resp.headers.get('location') or '?')}); "
                                 f"give the URL it redirects to")
        if status >= 400:
            message = _error_message(_read_capped(resp, ERROR_BODY_BYTES)[0], str(getattr(resp, "reason", "")))
            if status == 429 or status >= 500:
                raise _Retry(f"HTTP {status} ({message})", retry_after=_retry_after(resp.headers))
            raise LLMRequestError(self.url, status, message, _hint_for(status, self.url, self.cfg))
        if status != 200:
            raise self._protocol(f"HTTP {status} instead of 200 to POST {self.url}/chat/completions")
        kind = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "text/event-stream":
            return self._read_stream(resp)
        return self._read_json(resp)

    def _json_object(self, text: Any, what: str) -> dict[str, Any]:
        """``text`` parsed as a JSON object, or a protocol error naming ``what`` it was."""
        try:
            parsed = json.loads(text)
        except ValueError as e:
            raise self._protocol(f"{what} is not JSON ({e}): {_snippet(text)}") from None
        if not isinstance(parsed, dict):
            raise self._protocol(f"{what} is not a JSON object: {_snippet(text)}")
        return parsed

    def _read_json(self, resp: Any) -> _Reply:
        raw, more = _read_capped(resp, self.line_limit)
        if more:
            raise self._protocol(f"it answered with more than {self.line_limit} bytes without streaming "
                                 f"(the reply cap is {self.cap} characters: llm.max_reply_chars); stopped reading")
        data = self._json_object(raw, "the answer")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict) \
                or not isinstance(choices[0].get("message"), dict):
            raise self._protocol("the answer has no choices[0].message")
        content = choices[0]["message"].get("content")
        if content is not None and not isinstance(content, str):
            raise self._protocol(f"choices[0].message.content is a {type(content).__name__}, not text")
        text = content or ""
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        truncated = len(text) > self.cap
        return _Reply(text[:self.cap], _str_or_none(data.get("model")), _str_or_none(choices[0].get("finish_reason")),
                      _int_or_none(usage.get("prompt_tokens")), _int_or_none(usage.get("completion_tokens")),
                      truncated, len(text))

    def _read_stream(self, resp: Any) -> _Reply:
        kept = received = pieces = 0
        model = finish = None
        usage: dict[str, Any] = {}
        done = truncated = False
        for data in self._events(resp):
            self.events += 1
            if data.strip() == "[DONE]":
                done = True
                break
            event = self._json_object(data, "a streamed event")
            if "error" in event:
                raise _Retry(f"the endpoint reported an error mid-stream ({_error_message(data, '')})",
                             partial=self.partial())
            model = _str_or_none(event.get("model")) or model
            if isinstance(event.get("usage"), dict):
                usage = event["usage"]
            choices = event.get("choices")
            if choices is None and "usage" in event:
                continue
            if not isinstance(choices, list):
                raise self._protocol(f"a streamed event has no choices list: {_snippet(data)}")
            if not choices:
                continue
            choice = choices[0]
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if delta is None:
                delta = {}
            if not isinstance(choice, dict) or not isinstance(delta, dict):
                raise self._protocol(f"a streamed choice is not a JSON object with a delta: {_snippet(data)}")
            content = delta.get("content")
            if content is not None and not isinstance(content, str):
                raise self._protocol(f"a streamed delta.content is a {type(content).__name__}, not text")
            if content:
                pieces += 1
                received += len(content)
                room = self.cap - kept
                if len(content) > room:  # the cap: keep what fits, stop reading (closing stops the server)
                    self.parts.append(content[:room])
                    kept = self.cap
                    truncated = True
                    break
                self.parts.append(content)
                kept += len(content)
            if choice.get("finish_reason"):
                finish = str(choice["finish_reason"])
        if not truncated and finish is None:
            if not done:
                raise _Retry("the stream ended before the reply was complete (no finish_reason)",
                             reconnect=True, partial=self.partial())
            raise _Retry("the endpoint ended the stream without a finish_reason (the reply was cut short, "
                         "e.g. another request interrupted it)", partial=self.partial())
        # Servers that do not report usage in a stream (llama.cpp) send one event per token.
        completion = _int_or_none(usage.get("completion_tokens"))
        return _Reply("".join(self.parts), model, finish, _int_or_none(usage.get("prompt_tokens")),
                      completion if completion is not None else (pieces if not truncated else None),
                      truncated, received)

    def _events(self, resp: Any) -> Iterator[str]:
        """The ``data`` of each server-sent event, with every line and the whole stream bounded."""
        buf = b""
        data: list[bytes] = []
        size = total = 0
        for chunk in _chunks(resp):
            total += len(chunk)
            if total > self.stream_limit:
                raise self._protocol(f"it streamed more than {self.stream_limit} bytes for one reply; stopped reading")
            if time.monotonic() > self.deadline:
                raise _Retry(self.timed_out, reconnect=True, abandoned=True, partial=self.partial())
            buf += chunk
            start = 0
            while True:
                end = buf.find(b"\n", start)
                if end < 0:
                    break
                line = buf[start:end].rstrip(b"\r")
                start = end + 1
                if not line:
                    if data:
                        yield b"\n".join(data).decode("utf-8", errors="replace")
                        data, size = [], 0
                    continue
                name, _, value = line.partition(b":")
                if name == b"data":
                    value = value[1:] if value.startswith(b" ") else value
                    data.append(value)
                    size += len(value)
                    if size > self.line_limit:
                        raise self._protocol(f"a streamed event is longer than {self.line_limit} bytes")
            buf = buf[start:]
            if len(buf) > self.line_limit:
                raise self._protocol(f"a streamed line is longer than {self.line_limit} bytes")
        if data:  # the last event, without its blank line
            yield b"\n".join(data).decode("utf-8", errors="replace")


def _read_capped(resp: Any, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether there was more (left unread)."""
    out = bytearray()
    for chunk in _chunks(resp):
        out += chunk
        if len(out) > limit:
            return bytes(out[:limit]), True
    return bytes(out), False


def _clean(text: str, limit: int = 300) -> str:
    """One line of printable text: a server's words never carry terminal escapes into our messages."""
    text = "".join(c if c.isprintable() else " " if c in "\n\r\t" else "?" for c in text).strip()
    return text[:limit] + ("..." if len(text) > limit else "")


def _snippet(raw: bytes | str, limit: int = 120) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return repr(_clean(text, limit))


def _error_message(raw: bytes | str, fallback: str) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for key in ("message", "detail"):
                if inner.get(key):
                    return _clean(str(inner[key]))
        elif isinstance(inner, str):
            return _clean(inner)
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return _clean(text) or fallback or "no message"


def _str_or_none(value: Any) -> str | None:
    return _clean(value, 200) if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _append_line(path: Path, line: str) -> None:
    """One ``write`` on an O_APPEND descriptor per line: concurrent writers do not interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = line.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # only on exotic file systems
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


def _cause(exc: BaseException) -> str:
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    text = str(seen) or type(seen).__name__
    return text if seen is not exc else (str(exc) or type(exc).__name__)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _hint_for(status: int, url: str, cfg: LLMConfig) -> str | None:
    if status in (401, 403):
        return f"set the API key in ${cfg.api_key_env} (or name another variable with {ENV_API_KEY_ENV})"
    if status == 404:
        return (f"check the URL (OpenAI-compatible endpoints usually end in /v1: {url}) and the model name "
                f"({cfg.model or 'not set'}; --llm-model / {ENV_MODEL})")
    return None


def _unavailable_fix(cfg: LLMConfig, url: str, what: str) -> str:
    """What to do when every try failed: for the embedded server, about that server; for a URL the
    user gave, about that endpoint (it is theirs: the workbench cannot start it)."""
    if what.startswith("request timed out"):
        return (f"raise the timeout (--timeout SECONDS, or reward.llm.timeout_s; now {cfg.timeout_s:g} s), "
                f"ask for less (llm.max_tokens), or use a faster endpoint (--llm-url URL)")
    if cfg.base_url is None:
        if what.startswith("HTTP"):
            return ("the embedded server failed: its log says why (`workbench llm status` shows where); "
                    "`workbench llm stop` makes the next request start a fresh one, or use another endpoint "
                    "with --llm-url URL (or WORKBENCH_LLM_URL=URL)")
        return SERVE_FIX
    if what.startswith(("HTTP", "the endpoint")):
        return (f"the endpoint {url} answered but failed: check that server (its log says why) and try again "
                f"later, or point --llm-url (WORKBENCH_LLM_URL) at another endpoint")
    return (f"check that an OpenAI-compatible server listens at {url} (the workbench's own local server: "
            f"`workbench llm serve`, or leave --llm-url out to use it), or point --llm-url "
            f"(WORKBENCH_LLM_URL) at another endpoint")
