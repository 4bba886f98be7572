"""The run-time guard: every call of an accepted reward program during training is bounded.

The pre-flight (:mod:`reward_synthesis.safety.checks`) runs a program on sample states in a limited child
process once; training then calls it in-process every env step. The guard keeps that second
phase honest:

* **Time.** A watchdog thread (one per process) checks the call in flight every
  ``period`` seconds; once a call has run longer than its ``timeout_s`` it raises
  :class:`RewardTimeout` inside the calling thread (``PyThreadState_SetAsyncExc``), again at
  every period until the call ends. ``RewardTimeout`` derives from ``BaseException`` and the
  sandbox refuses bare ``except:``, so a program cannot swallow it. This interrupts any
  Python-level loop. It cannot interrupt one C call that holds the interpreter (Python checks
  for pending exceptions between bytecodes only): :mod:`reward_synthesis.safety.limits` bounds the sizes
  such a call can work on, and as the last resort a **hard timer** in C (``faulthandler``)
  ends the process after :data:`HARD_TIMEOUT_S` seconds in which the watchdog thread could not
  run at all, printing every thread's stack. The run's last periodic checkpoint is intact then.
* **Values.** The total and every component must be finite (for a batched program: every
  env's, :func:`check_finite_batch`).

A violation raises :class:`RewardGuardError` naming the program, the call and what happened; the
learner saves a checkpoint and the run is marked ``failed`` (see ``workbench.pipeline``).
"""

from __future__ import annotations

import ctypes
import faulthandler
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from workbench.errors import RewardGuardError

__all__ = ["RewardTimeout", "RewardGuardError", "Watchdog", "guarded_call", "check_finite",
           "check_finite_batch", "DEFAULT_TIMEOUT_S", "HARD_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 2.0
HARD_TIMEOUT_S = 300.0


class RewardTimeout(BaseException):
    """Raised inside a reward call that ran past its time limit (not an ``Exception``, so that
    ``except Exception`` in the program cannot catch it)."""


class Watchdog:
    """One daemon thread per process that bounds the reward call in flight.

    The calling thread registers each call (under a lock, so that a timeout never lands after the
    call was cleared) and clears it after; the watchdog looks every ``period`` seconds.

    The hard timer is a dead man's switch for the one thing the watchdog cannot stop, a C call that
    holds the interpreter: the first call arms it, and the watchdog pushes its deadline back on
    every look. Only a process in which no thread could run Python for ``hard_timeout_s`` (a
    runaway C call) reaches the deadline. It is disarmed after 10 s without reward calls, so idle
    processes and ones stopped with Ctrl-Z between runs are left alone.
    """

    _instance: Watchdog | None = None
    _instance_lock = threading.Lock()

    def __init__(self, period: float = 0.05, hard_timeout_s: float = HARD_TIMEOUT_S):
        self.period = period
        self.hard_timeout_s = hard_timeout_s
        self.lock = threading.Lock()
        # (thread id, deadline) of the call in flight, or None; calls counts every call.
        self.inflight: tuple[int, float] | None = None
        self.calls = 0
        self.armed_until = 0.0  # the hard timer's deadline (monotonic), 0 when disarmed
        self.fired = 0
        self._thread = threading.Thread(target=self._loop, name="reward-watchdog", daemon=True)
        self._thread.start()

    @classmethod
    def get(cls) -> Watchdog:
        """The process's watchdog, started on first use (a forked child starts its own)."""
        instance = cls._instance
        if instance is not None:
            return instance
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    @classmethod
    def _forget(cls) -> None:  # in a forked child: the parent's thread did not come along
        cls._instance = None
        cls._instance_lock = threading.Lock()

    def _arm(self, now: float) -> None:
        faulthandler.dump_traceback_later(self.hard_timeout_s, exit=True, file=sys.__stderr__)
        self.armed_until = now + self.hard_timeout_s

    def start_call(self, deadline: float) -> None:
        with self.lock:
            self.inflight = (threading.get_ident(), deadline)
            self.calls += 1
            if not self.armed_until:
                self._arm(time.monotonic())

    def end_call(self) -> None:
        with self.lock:
            self.inflight = None

    def _loop(self) -> None:
        seen_calls, active_until = 0, 0.0
        while True:
            now = time.monotonic()
            with self.lock:
                call = self.inflight
                if call is not None or self.calls != seen_calls:
                    seen_calls, active_until = self.calls, now + 10.0
                if call is not None and now > call[1]:
                    self.fired += 1
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(call[0]),
                                                               ctypes.py_object(RewardTimeout))
                if self.armed_until:
                    if call is None and now >= active_until:
                        faulthandler.cancel_dump_traceback_later()
                        self.armed_until = 0.0
                    elif now + self.hard_timeout_s - self.armed_until > 1.0:
                        self._arm(now)
            time.sleep(self.period)


def _before_fork() -> None:
    """A forked child must not inherit an armed hard timer: faulthandler's timer thread does not
    come along, and the child's first re-arm would wait on it for ever (a fork-started async
    vector env hung so). Hold the watchdog's lock so it cannot re-arm until the fork is done."""
    watchdog = Watchdog._instance
    if watchdog is not None:
        watchdog.lock.acquire()
        if watchdog.armed_until:
            faulthandler.cancel_dump_traceback_later()


def _after_fork_in_parent() -> None:
    watchdog = Watchdog._instance
    if watchdog is not None:
        if watchdog.armed_until:
            watchdog._arm(time.monotonic())
        watchdog.lock.release()


# The child starts its own watchdog on its first call (the parent's thread did not come along).
os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=Watchdog._forget)


def _flush() -> None:
    """A Python-level call: a timeout raised as the program returned lands here, inside the
    guarded block."""


def guarded_call(fn: Callable[..., Any], args: tuple[Any, ...], *, timeout_s: float,
                 describe: Callable[[], str], kwargs: dict[str, Any] | None = None) -> Any:
    """``fn(*args)`` with the watchdog's time limit; a timeout becomes :class:`RewardGuardError`.

    ``describe()`` names the program and the call, for the message.
    """
    watchdog = Watchdog.get()
    started = time.monotonic()
    try:
        watchdog.start_call(started + timeout_s)
        try:
            return fn(*args, **kwargs) if kwargs else fn(*args)
        finally:
            watchdog.end_call()
            _flush()
    except RewardTimeout:
        watchdog.inflight = None
        elapsed = time.monotonic() - started
        raise RewardGuardError(f"{describe()} ran longer than its limit of {timeout_s:g} s "
                               f"(stopped after {elapsed:.1f} s)") from None


def check_finite(total: float, components: dict[str, float], describe: Callable[[], str]) -> None:
    """Raise :class:`RewardGuardError` unless the total and every component are finite numbers."""
    probe = total + sum(components.values())
    if probe - probe == 0.0:  # every term finite (inf - inf and nan - nan are nan); cheap per step
        return
    if math.isfinite(total) and all(math.isfinite(v) for v in components.values()):
        return  # finite terms whose sum overflowed
    bad = [name for name, v in components.items() if not math.isfinite(v)]
    what = f"component(s) {', '.join(bad)}" if bad else "total"
    value = total if not bad else components[bad[0]]
    raise RewardGuardError(f"{describe()} returned a non-finite {what} ({value}); a NaN or inf "
                           "reward would poison training")


def check_finite_batch(total: np.ndarray, components: dict[str, np.ndarray], describe: Callable[[], str]) -> None:
    """:func:`check_finite` for a batched program's ``[N]`` arrays; the message names the env."""
    probe = sum(total.tolist())
    for values in components.values():
        probe += sum(values.tolist())
    if probe - probe == 0.0:  # every term finite; a few list sums, cheap per vector step
        return
    for what, values in [("total", total), *((f"component {name}", v) for name, v in components.items())]:
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise RewardGuardError(f"{describe()} returned a non-finite {what} ({values[bad[0]]}) for env "
                                   f"{int(bad[0])} of {len(values)}; a NaN or inf reward would poison training")
