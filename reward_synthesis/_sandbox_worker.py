"""Child-process entry point of :func:`reward_synthesis.sandbox.run_isolated`.

``python -m reward_synthesis._sandbox_worker WORKDIR`` reads ``program.txt``, ``manifest.json``
and ``samples.npz`` from WORKDIR, runs the program under the limits its parent set, and writes
``result.json``. Any failure of the *program* is written as a result; a missing result means the
process itself died (a limit, a signal), which the parent classifies.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from reward_synthesis.sandbox import describe_exception, load_program, normalize_output, reward_action
from workbench.errors import RewardCodeRejected
from workbench.state import State

__all__ = ["main"]


def _read_samples(workdir: Path) -> tuple[str, str, list[tuple[State, np.ndarray]]]:
    manifest = json.loads((workdir / "manifest.json").read_text(encoding="utf-8"))
    source = (workdir / "program.txt").read_text(encoding="utf-8")
    with np.load(workdir / "samples.npz", allow_pickle=False) as data:
        fields = {name: data[f"field{i}"] for i, name in enumerate(manifest["fields"])}
        actions = data["action"]
    samples = []
    for k in range(int(manifest["n"])):
        action = reward_action(actions[k])
        samples.append((State({name: values[k] for name, values in fields.items()}), action))
    return str(manifest["filename"]), source, samples


def _error_kind(err: BaseException) -> str:
    return "memory" if isinstance(err, MemoryError) else "exception"


def _run(filename: str, source: str, samples: list[tuple[State, np.ndarray]]) -> dict[str, Any]:
    result: dict[str, Any] = {"ok": False, "totals": [], "components": {}, "call_seconds": [],
                              "error_kind": None, "error": "", "failed_index": None}
    try:
        compute_reward = load_program(source, filename=filename)
    except RewardCodeRejected as err:
        cause = err.__cause__
        if cause is None:
            result.update(error_kind="rejected", error=str(err))
        else:  # the module body raised
            result.update(error_kind=_error_kind(cause),
                          error=f"while loading: {describe_exception(cause, filename, source)}")
        return result

    totals, seconds = result["totals"], result["call_seconds"]
    components: dict[str, list[float]] = result["components"]
    for index, (state, action) in enumerate(samples):
        started = time.perf_counter()
        try:
            value = compute_reward(state, action)
        except Exception as err:
            result.update(error_kind=_error_kind(err), failed_index=index,
                          error=f"sample {index}: {describe_exception(err, filename, source)}")
            return result
        elapsed = time.perf_counter() - started
        try:
            total, parts = normalize_output(value)
        except TypeError as err:
            result.update(error_kind="bad_output", failed_index=index,
                          error=f"sample {index}: {err}")
            return result
        if index > 0 and set(parts) != set(components):
            result.update(error_kind="bad_output", failed_index=index, error=(
                f"sample {index}: components {sorted(parts)} differ from sample 0's "
                f"{sorted(components)}; every call must return the same component names"))
            return result
        totals.append(total)
        seconds.append(elapsed)
        for name, part in parts.items():
            components.setdefault(name, []).append(part)
    result["ok"] = True
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    workdir = Path(args[0])
    warnings.simplefilter("ignore")  # numpy's divide-by-zero warnings are the checks' business
    filename, source, samples = _read_samples(workdir)
    result = _run(filename, source, samples)
    partial = workdir / "result.json.partial"
    partial.write_text(json.dumps(result), encoding="utf-8")
    os.replace(partial, workdir / "result.json")  # the parent never sees half a result
    return 0


if __name__ == "__main__":
    sys.exit(main())
