"""One client for any OpenAI-compatible chat endpoint, with retries, a transcript and a cache.

``LLMClient(config).chat(messages)`` asks for ONE completion (endpoints differ on ``n``, so it is not
offered: draw several samples as several requests with different seeds). Every attempt is appended
to the transcript, every answer stored in the response cache; a request found in the cache replays
without a server, and ``offline=True`` never touches the network.

With ``base_url=None`` the workbench's own local server (:mod:`.server`) is started on first use.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.errors import WorkbenchError

from .cache import ResponseCache, request_key
from .errors import LLMCacheMiss, LLMRequestError, LLMUnavailable

__all__ = ["LLMConfig", "LLMClient", "ChatResult", "ENV_URL", "ENV_MODEL", "ENV_API_KEY_ENV"]

ENV_URL = "WORKBENCH_LLM_URL"
ENV_MODEL = "WORKBENCH_LLM_MODEL"
ENV_API_KEY_ENV = "WORKBENCH_LLM_API_KEY_ENV"
NO_KEY = "sk-no-key-required"  # local servers ignore the key, but the openai client wants one
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
                    raise LLMUnavailable(url, f"GET {url}/models failed ({type(e).__name__}: {e}), so the "
                                              f"model name could not be found (or set --llm-model)", tries) from None
                time.sleep(min(self.config.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
        if len(models) == 1:
            return models[0]
        listed = ", ".join(models[:8]) + (", ..." if len(models) > 8 else "") if models else "none"
        raise WorkbenchError(f"{url} serves {len(models)} models ({listed}); which one is not configured\n"
                             f"  fix: pass --llm-model NAME (or set {ENV_MODEL})")

    def _api_key(self) -> str:
        return os.environ.get(self.config.api_key_env) or NO_KEY

    def _openai(self) -> Any:
        if self._client is None:
            try:
                import openai
            except ImportError:  # pragma: no cover - openai is in the llm extra
                from workbench.errors import MissingDependency

                raise MissingDependency("the LLM client", "llm", "openai") from None
            url = self._ensure_endpoint()
            kwargs: dict[str, Any] = {}
            if _is_loopback(url):  # never send a request for 127.0.0.1 through a proxy from the env
                kwargs["http_client"] = openai.DefaultHttpxClient(trust_env=False, timeout=self.config.timeout_s)
            self._client = openai.OpenAI(base_url=url, api_key=self._api_key(), timeout=self.config.timeout_s,
                                         max_retries=0, **kwargs)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------- chat

    def chat(self, messages: list[dict[str, Any]], *, temperature: float | None = None,
             max_tokens: int | None = None, stop: str | list[str] | None = None, seed: int | None = None,
             response_format: dict[str, Any] | None = None) -> ChatResult:
        """One completion for ``messages``. ``None`` arguments take the config's value; ``stop`` is a
        string or list of strings; ``response_format`` is passed through (e.g. ``{"type":
        "json_object"}``, which the local server enforces with a JSON grammar)."""
        messages = _check_messages(messages)
        cfg = self.config
        params: dict[str, Any] = {
            "temperature": cfg.temperature if temperature is None else float(temperature),
            "max_tokens": cfg.max_tokens if max_tokens is None else int(max_tokens),
            "stop": [stop] if isinstance(stop, str) else (list(stop) if stop else None),
            "seed": cfg.seed if seed is None else int(seed),
            "response_format": response_format,
        }
        model = self.model
        key = request_key(model, messages, params)
        record = {"model": model, "messages": messages, "params": params, "key": key}

        t0 = time.monotonic()
        entry = self.cache.get(key)
        if entry is not None:
            result = ChatResult(text=entry["text"], model=entry.get("model", model),
                                prompt_tokens=entry.get("prompt_tokens"),
                                completion_tokens=entry.get("completion_tokens"),
                                latency_s=time.monotonic() - t0, cached=True,
                                finish_reason=entry.get("finish_reason"), key=key)
            self._log(record, result=result, attempt=0)
            return result
        if self.offline:
            err = LLMCacheMiss(model, _last_user(messages), key, str(self.cache.directory))
            self._log(record, error=f"cache miss (offline): {key}", attempt=0)
            raise err
        result = self._request(record)
        self.cache.put(key, {"model": result.model, "endpoint": self.endpoint, "messages": messages,
                             "params": params, "text": result.text, "finish_reason": result.finish_reason,
                             "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                             "latency_s": round(result.latency_s, 4),
                             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return result

    def _request(self, record: dict[str, Any]) -> ChatResult:
        import openai

        cfg = self.config
        params = record["params"]
        kwargs: dict[str, Any] = {"model": record["model"], "messages": record["messages"],
                                  "temperature": params["temperature"], "max_tokens": params["max_tokens"]}
        for name in ("stop", "seed", "response_format"):
            if params[name] is not None:
                kwargs[name] = params[name]
        tries = cfg.max_retries + 1
        what = "no attempt made"
        for attempt in range(1, tries + 1):
            client = self._openai()
            url = self.endpoint
            t0 = time.monotonic()
            retry_after: float | None = None
            try:
                resp = client.chat.completions.create(**kwargs)
            except openai.APITimeoutError:
                what = f"request timed out after {cfg.timeout_s:g} s"
            except openai.APIConnectionError as e:
                what = f"connection failed ({_cause(e)})"
                if cfg.base_url is None:  # the local server may have died: find or restart it next try
                    self.close()
                    self._base_url = None
            except openai.APIStatusError as e:
                status = e.status_code
                message = _status_message(e)
                if status == 429 or status >= 500:
                    what = f"HTTP {status} ({message})"
                    retry_after = _retry_after(e)
                else:
                    self._log(record, error=f"HTTP {status}: {message}", attempt=attempt, latency=time.monotonic() - t0)
                    raise LLMRequestError(url, status, message, _hint_for(status, url, cfg)) from None
            except openai.APIError as e:  # e.g. an answer that is not an OpenAI response at all
                self._log(record, error=f"{type(e).__name__}: {e}", attempt=attempt, latency=time.monotonic() - t0)
                raise LLMRequestError(url, None, f"{type(e).__name__}: {e}",
                                      "check that the URL is an OpenAI-compatible endpoint ending in /v1") from None
            else:
                latency = time.monotonic() - t0
                result = self._result(resp, record, latency, url, attempt)
                self._log(record, result=result, attempt=attempt)
                return result
            self._log(record, error=what, attempt=attempt, latency=time.monotonic() - t0)
            if attempt < tries:
                delay = min(cfg.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                delay *= 1.0 + 0.1 * random.random()  # a little jitter: parallel callers do not sync up
                if retry_after is not None:
                    delay = max(delay, min(retry_after, MAX_BACKOFF_S))
                time.sleep(delay)
        raise LLMUnavailable(self.config.base_url or self.endpoint, what, tries)

    def _result(self, resp: Any, record: dict[str, Any], latency: float, url: str, attempt: int) -> ChatResult:
        choices = getattr(resp, "choices", None) or []
        if not choices or getattr(choices[0], "message", None) is None:
            self._log(record, error="answer without choices", attempt=attempt, latency=latency)
            raise LLMRequestError(url, None, "the endpoint answered without any choices",
                                  "check that the URL is an OpenAI-compatible chat endpoint ending in /v1")
        choice = choices[0]
        usage = getattr(resp, "usage", None)
        return ChatResult(text=choice.message.content or "", model=getattr(resp, "model", None) or record["model"],
                          prompt_tokens=getattr(usage, "prompt_tokens", None),
                          completion_tokens=getattr(usage, "completion_tokens", None),
                          latency_s=latency, cached=False, finish_reason=getattr(choice, "finish_reason", None),
                          key=record["key"])

    # ------------------------------------------------------------------------- transcript

    def _log(self, record: dict[str, Any], *, result: ChatResult | None = None, error: str | None = None,
             attempt: int, latency: float | None = None) -> None:
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
            "prompt_tokens": result.prompt_tokens if result else None,
            "completion_tokens": result.completion_tokens if result else None,
            "latency_s": round(result.latency_s if result else (latency or 0.0), 4),
            "error": error,
        }
        if result is not None and result.model != record["model"]:
            line["response_model"] = result.model
        _append_line(self.transcript, json.dumps(line, ensure_ascii=False) + "\n")


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


def _status_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        if isinstance(inner, str):
            return inner[:300]
    text = str(getattr(exc, "message", "") or exc)
    return text[:300]


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
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

