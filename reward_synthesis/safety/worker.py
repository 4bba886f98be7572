"""Child-process entry point of :func:`reward_synthesis.safety.sandbox.run_isolated`.

``python -m reward_synthesis.safety.worker WORKDIR`` reads ``program.txt``, ``manifest.json``
and ``samples.npz`` from WORKDIR, runs the program under the limits its parent set, and writes
``result.json``. Any failure of the *program* is written as a result; a missing result means the
process itself died (a limit, a signal), which the parent classifies.

A batched program (``compute_reward_batch``) is called once on all samples stacked, then on each
sample alone as a batch of one, so the parent can check that the two agree.
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

from reward_synthesis.safety.sandbox import (
    BATCH_ENTRY_POINT,
    describe_exception,
    entry_point_of,
    load_program,
    normalize_batch_output,
    normalize_output,
    reward_action,
)
from workbench.errors import RewardCodeRejected
from workbench.state import State

__all__ = ["main"]


def _read_inputs(workdir: Path) -> tuple[str, str, dict[str, np.ndarray], np.ndarray, int]:
    manifest = json.loads((workdir / "manifest.json").read_text(encoding="utf-8"))
    source = (workdir / "program.txt").read_text(encoding="utf-8")
    with np.load(workdir / "samples.npz", allow_pickle=False) as data:
        fields = {name: data[f"field{i}"] for i, name in enumerate(manifest["fields"])}
        actions = data["action"]
    return str(manifest["filename"]), source, fields, actions, int(manifest["n"])


def _read_samples(workdir: Path) -> tuple[str, str, list[tuple[State, np.ndarray]]]:
    filename, source, fields, actions, n = _read_inputs(workdir)
    samples = []
    for k in range(n):
        action = reward_action(actions[k])
        samples.append((State({name: values[k] for name, values in fields.items()}), action))
    return filename, source, samples


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


def _frozen(values: np.ndarray) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    array.flags.writeable = False
    return array


def _run_batched(filename: str, source: str, fields: dict[str, np.ndarray], actions: np.ndarray,
                 n: int) -> dict[str, Any]:
    """The batch of all ``n`` samples in one call, then each sample alone (a batch of one)."""
    result: dict[str, Any] = {"ok": False, "batched": True, "totals": [], "components": {},
                              "call_seconds": [], "batch_seconds": 0.0, "single_totals": [],
                              "single_components": {}, "error_kind": None, "error": "", "failed_index": None}
    try:
        compute = load_program(source, filename=filename, batched=True)
    except RewardCodeRejected as err:
        cause = err.__cause__
        if cause is None:
            result.update(error_kind="rejected", error=str(err))
        else:
            result.update(error_kind=_error_kind(cause),
                          error=f"while loading: {describe_exception(cause, filename, source)}")
        return result
    fields = {name: _frozen(values) for name, values in fields.items()}
    actions = reward_action(actions.reshape(n, -1) if actions.ndim == 1 else actions)

    def call(rows: slice, what: str) -> tuple[np.ndarray, dict[str, np.ndarray], float] | None:
        state = State._from_frozen({name: values[rows] for name, values in fields.items()})
        count = len(range(*rows.indices(n)))
        started = time.perf_counter()
        try:
            value = compute(state, actions[rows])
        except Exception as err:
            result.update(error_kind=_error_kind(err), error=f"{what}: {describe_exception(err, filename, source)}")
            return None
        elapsed = time.perf_counter() - started
        try:
            total, parts = normalize_batch_output(value, count, program=filename)
        except TypeError as err:
            result.update(error_kind="bad_output", error=f"{what}: {err}")
            return None
        return total, parts, elapsed

    batch = call(slice(0, n), f"the batch of all {n} samples")
    if batch is None:
        return result
    total, parts, elapsed = batch
    result.update(totals=total.tolist(), components={k: v.tolist() for k, v in parts.items()},
                  batch_seconds=elapsed)
    singles, seconds = result["single_totals"], result["call_seconds"]
    components: dict[str, list[float]] = result["single_components"]
    for index in range(n):
        one = call(slice(index, index + 1), f"sample {index} alone (a batch of 1)")
        if one is None:
            result["failed_index"] = index
            return result
        total, parts, elapsed = one
        if set(parts) != set(result["components"]):
            result.update(error_kind="bad_output", failed_index=index, error=(
                f"sample {index} alone (a batch of 1): components {sorted(parts)} differ from the batch's "
                f"{sorted(result['components'])}; every call must return the same component names"))
            return result
        singles.append(float(total[0]))
        seconds.append(elapsed)
        for name, part in parts.items():
            components.setdefault(name, []).append(float(part[0]))
    result["ok"] = True
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    workdir = Path(args[0])
    warnings.simplefilter("ignore")  # numpy's divide-by-zero warnings are the checks' business
    filename, source, fields, actions, n = _read_inputs(workdir)
    if entry_point_of(source) == BATCH_ENTRY_POINT:
        result = _run_batched(filename, source, fields, actions, n)
    else:
        filename, source, samples = _read_samples(workdir)
        result = _run(filename, source, samples)
    partial = workdir / "result.json.partial"
    partial.write_text(json.dumps(result), encoding="utf-8")
    os.replace(partial, workdir / "result.json")  # the parent never sees half a result
    return 0


if __name__ == "__main__":
    sys.exit(main())
