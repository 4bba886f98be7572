"""The LLM layer: one client for any OpenAI-compatible chat endpoint, with retries, a JSONL
transcript, a response cache that replays without a server, and an embedded local server
(llama.cpp + an embedded small model, Gemma 3 270M by default) used when no endpoint is configured.

    from reward_synthesis.llm import LLMClient, LLMConfig
    client = LLMClient(LLMConfig().resolve({"base_url": cli_url}), transcript=run.path / "llm/transcript.jsonl")
    answer = client.chat([{"role": "user", "content": "..."}], seed=3).text

The client speaks the OpenAI chat protocol with the standard library (streamed replies, read with a
cap; see :mod:`.client`); ``llama_cpp`` is imported only inside the server process.
"""

from .cache import ResponseCache, default_cache_dir
from .client import ChatResult, LLMClient, LLMConfig
from .errors import LLMCacheMiss, LLMError, LLMNotInstalled, LLMRequestError, LLMServerError, LLMUnavailable
from .models import local_model_name
from .server import ensure_server, server_status, start_server, stop_server

__all__ = [
    "LLMConfig",
    "LLMClient",
    "ChatResult",
    "ResponseCache",
    "default_cache_dir",
    "ensure_server",
    "start_server",
    "server_status",
    "stop_server",
    "local_model_name",
    "LLMError",
    "LLMUnavailable",
    "LLMRequestError",
    "LLMCacheMiss",
    "LLMServerError",
    "LLMNotInstalled",
]
