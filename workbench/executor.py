"""Where training jobs run: the local executor, a pool of spawned worker processes.

Workers ignore Ctrl-C (the parent owns it: it stops them, and each run resumes from its last
checkpoint), and a worker whose parent dies (``kill -9`` of the sweep) ends itself instead of
training on unseen. Spawned, not forked: a job may use CUDA or SAPIEN, which a child forked from a
process that already did cannot. The sweep runs its trials here; moving Eureka's candidate training
and the other search loops onto it (and a Ray executor beside it) is the rest of issue 19.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

__all__ = ["LocalExecutor"]

T = TypeVar("T")
PARENT_POLL_S = 1.0


def _orphan_watch(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:  # the parent died: its pool is gone, so is the reason to go on
            os._exit(1)


def _init_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True, name="orphan-watch").start()


class LocalExecutor:
    """``jobs`` worker processes on this machine."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self._pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker, initargs=(os.getpid(),))

    def map_unordered(self, fn: Callable[..., T], calls: list[tuple[Any, ...]]) -> Iterator[tuple[int, Future[T]]]:
        """``fn(*args)`` for each call; yields (index of the call, its finished future) as they end."""
        futures = {self._pool.submit(fn, *args): i for i, args in enumerate(calls)}
        for future in as_completed(futures):
            yield futures[future], future

    def close(self, *, terminate: bool = False) -> None:
        if terminate:  # Ctrl-C: the workers ignore SIGINT, so stop them here
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.close(terminate=kind is not None)
