"""Where training jobs run: one small contract (:class:`Executor`: ``submit`` a picklable call, get
a :class:`concurrent.futures.Future`) and two engines behind it.

- :class:`LocalExecutor`: a pool of spawned worker processes on this machine. Workers ignore Ctrl-C
  (the parent owns it: it stops them, and each run resumes from its last checkpoint), and a worker
  whose parent dies (``kill -9`` of the sweep) ends itself instead of training on unseen. Spawned,
  not forked: a job may use CUDA or SAPIEN, which a child forked from a process that already did
  cannot. A worker that dies (a crash, the OOM killer) breaks a process pool and every job in it;
  the executor reruns those jobs one at a time, each in a fresh process, so only the culprit fails,
  with :class:`WorkerDied`.
- :class:`RayExecutor`: each call is a Ray task with its own resources (``cpus``, ``gpus``,
  fractional GPUs included) on a local Ray runtime or a cluster (``address: auto`` joins the one
  ``ray start`` made). A task whose worker dies fails alone, with :class:`WorkerDied` too.

Sweeps, Eureka's candidate training and Auto MC-Reward's proxy training take an executor, so a user
moves from a laptop to a cluster by changing one key (``executor: ray``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from workbench.errors import WorkbenchError

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "RayOptions", "WorkerDied", "make_executor"]

T = TypeVar("T")
PARENT_POLL_S = 1.0


class WorkerDied(RuntimeError):
    """The process running a job died (crashed, or was killed, e.g. out of memory)."""


class Executor:
    """The contract: ``submit(fn, *args)`` runs ``fn(*args)`` somewhere and returns a Future.
    ``fn`` and its arguments must pickle (a module-level function and plain data)."""

    jobs: int

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        raise NotImplementedError

    def close(self, *, terminate: bool = False) -> None:
        """Let running jobs finish (``terminate``: stop them now), then free the workers."""
        raise NotImplementedError

    def map_unordered(self, fn: Callable[..., T], calls: list[tuple[Any, ...]]) -> Iterator[tuple[int, Future[T]]]:
        """``fn(*args)`` for each call; yields (index of the call, its finished future) as they end."""
        futures = {self.submit(fn, *args): i for i, args in enumerate(calls)}
        for future in as_completed(futures):
            yield futures[future], future

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.close(terminate=kind is not None)


# ----------------------------------------------------------------------------- local


def _orphan_watch(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:  # the parent died: its pool is gone, so is the reason to go on
            os._exit(1)


def _init_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True, name="orphan-watch").start()


class LocalExecutor(Executor):
    """``jobs`` worker processes on this machine."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._pools: list[ProcessPoolExecutor] = []  # every pool made, for terminate
        self._alone = ThreadPoolExecutor(1, thread_name_prefix="isolated-rerun")  # one rerun at a time
        self._closed = False

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(os.getpid(),))
        self._pools.append(pool)
        return pool

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        outer: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the executor is closed")
            if self._pool is None:
                self._pool = self._new_pool(self.jobs)
            pool = self._pool
            inner = pool.submit(fn, *args)
        inner.add_done_callback(lambda done: self._settle(outer, done, pool, fn, args))
        outer.add_done_callback(lambda done: done.cancelled() and inner.cancel())  # cancelled: not run if queued
        return outer

    def _settle(self, outer: Future[T], inner: Future[T], pool: ProcessPoolExecutor,
                fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        if inner.cancelled() or outer.done():  # outer.done(): the caller cancelled it
            outer.cancel()
            return
        error = inner.exception()
        if isinstance(error, BrokenProcessPool):
            with self._lock:
                if self._pool is pool:  # the next submit makes a fresh pool
                    self._pool = None
                if self._closed:
                    outer.set_exception(WorkerDied("the executor was closed while the job ran"))
                    return
                # under the lock: close() cannot shut the rerun thread between the check and this
                self._alone.submit(self._rerun_alone, outer, fn, args)
        elif error is not None:
            outer.set_exception(error)
        else:
            outer.set_result(inner.result())

    def _rerun_alone(self, outer: Future[T], fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        with self._lock:
            if outer.done():  # the caller cancelled it
                return
            if self._closed:
                outer.set_exception(WorkerDied("the executor was closed before the job could rerun"))
                return
            pool = self._new_pool(1)
        try:
            outer.set_result(pool.submit(fn, *args).result())
        except BrokenProcessPool:
            outer.set_exception(WorkerDied("the worker process died (crashed, or was killed, e.g. out of memory)"))
        except BaseException as err:  # noqa: BLE001 - the job's own error is its result
            outer.set_exception(err)
        finally:
            pool.shutdown(wait=True)

    def close(self, *, terminate: bool = False) -> None:
        with self._lock:
            self._closed = True
            pools = list(self._pools)
        if terminate:  # Ctrl-C: the workers ignore SIGINT, so stop them here
            for pool in pools:
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.terminate()
        # The reruns first: each shuts its own pool, and two threads shutting one pool at once close
        # its result pipe twice (EBADF). Queued reruns still run, see the executor closed and fail
        # with WorkerDied, so no future is left pending.
        self._alone.shutdown(wait=True)
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- ray


@dataclass(frozen=True)
class RayOptions:
    """Where and with what each job runs on Ray."""

    address: str | None = None   # None: $RAY_ADDRESS if set, else a local runtime; "auto": the cluster `ray start` made
    cpus: float = 1.0            # per job
    gpus: float = 0.0            # per job; fractions share a GPU (0.5: two jobs per GPU)


def _call(fn: Callable[..., T], *args: Any) -> T:
    """What each Ray task runs (a Python function, so that any callable can be the job)."""
    return fn(*args)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise WorkbenchError("the ray executor needs Ray, which is not installed\n"
                             "  fix: pip install -e '.[ray]' (or executor: local)") from None
    return ray


class RayExecutor(Executor):
    """Each call one Ray task (``options.cpus`` / ``options.gpus`` each); ``jobs`` bounds how many run
    at once beyond what the resources allow (None: as many as the cluster fits)."""

    def __init__(self, options: RayOptions = RayOptions(), jobs: int | None = None):
        ray = _ray()
        self.options = options
        self._started = not ray.is_initialized()
        if self._started:  # a local runtime listens on 127.0.0.1 only: nothing of it is reachable from outside
            address = options.address or os.environ.get("RAY_ADDRESS") or "local"
            local = {"num_cpus": os.cpu_count(), "_node_ip_address": "127.0.0.1"} if address == "local" else {}
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                         **local)
            except ConnectionError as err:
                raise WorkbenchError(f"no Ray cluster at address {address!r}: {err}\n"
                                     "  fix: start one (`ray start --head` on the head node), or drop "
                                     "ray.address to use a local runtime") from None
        total = ray.cluster_resources()
        self.jobs = jobs or max(1, int(total.get("CPU", 1) // max(options.cpus, 1e-9)))
        if options.gpus > total.get("GPU", 0.0):
            raise WorkbenchError(f"each job asks for {options.gpus} GPU, and the Ray cluster has "
                                 f"{total.get('GPU', 0.0):g}\n"
                                 "  fix: ray.gpus_per_trial: 0, or join a cluster with GPUs")
        self._slots = threading.BoundedSemaphore(self.jobs)
        self._refs: set[Any] = set()  # tasks not yet settled (a settled one is let go: its result unpinned)
        self._outers: set[Future[Any]] = set()
        self._submitter = ThreadPoolExecutor(1, thread_name_prefix="ray-submit")
        self._closed = False

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._closed:
            raise RuntimeError("the executor is closed")
        outer: Future[T] = Future()
        self._outers.add(outer)
        outer.add_done_callback(self._outers.discard)
        self._submitter.submit(self._run, outer, fn, args)
        return outer

    def _run(self, outer: Future[T], fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        ray = _ray()
        self._slots.acquire()  # jobs at once, in submission order
        if self._closed:
            self._slots.release()
            outer.cancel()
            return
        try:
            remote = ray.remote(_call).options(num_cpus=self.options.cpus, num_gpus=self.options.gpus,
                                               max_retries=0)
            ref = remote.remote(fn, *args)
        except BaseException as err:  # noqa: BLE001 - e.g. arguments that do not pickle: the job's result
            self._slots.release()
            outer.set_exception(err)
            return
        self._refs.add(ref)

        def settle(done: Future[Any]) -> None:
            self._refs.discard(ref)
            self._slots.release()
            if outer.done():  # the caller cancelled it
                return
            error = done.exception()
            if error is None:
                outer.set_result(done.result())
            elif isinstance(error, ray.exceptions.RayTaskError):  # the job's own exception
                cause = getattr(error, "cause", None)
                outer.set_exception(cause if isinstance(cause, BaseException) else error.as_instanceof_cause())
            elif isinstance(error, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
                outer.set_exception(WorkerDied(f"the Ray worker running the job died: {error}"))
            else:
                outer.set_exception(error)

        ref.future().add_done_callback(settle)
        outer.add_done_callback(lambda done: done.cancelled() and ray.cancel(ref))

    def close(self, *, terminate: bool = False) -> None:
        ray = _ray()
        self._closed = True
        if terminate:
            for ref in list(self._refs):
                ray.cancel(ref, force=True)
        self._submitter.shutdown(wait=not terminate, cancel_futures=terminate)
        if terminate:
            for outer in list(self._outers):  # dropped before submission, or its task cancelled: not left pending
                outer.cancel()
        else:
            wait(list(self._outers))  # every submitted job settles its future
        if self._started and ray.is_initialized():
            ray.shutdown()


def make_executor(kind: str, jobs: int, ray: RayOptions | None = None) -> Executor:
    """``local`` (``jobs`` processes) or ``ray`` (``jobs`` Ray tasks at once)."""
    if kind == "ray":
        return RayExecutor(ray or RayOptions(), jobs)
    if kind == "local":
        return LocalExecutor(jobs)
    raise WorkbenchError(f"unknown executor {kind!r}\n  fix: local or ray")
