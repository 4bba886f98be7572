"""A small exception hierarchy. User mistakes are :class:`WorkbenchError`s: the CLI prints their
message (no traceback) and exits 2. Anything else is a bug and may show a traceback."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "WorkbenchError",
    "TaskError",
    "RewardCodeRejected",
    "MissingDependency",
    "RunDirError",
    "RewardRuntimeError",
    "RewardGuardError",
]


class WorkbenchError(Exception):
    """A mistake the user can fix; ``str(err)`` is the whole message shown to them."""

    exit_code = 2


class TaskError(WorkbenchError):
    """A task file that cannot be used: names the file, the key and the fix."""

    def __init__(self, message: str, *, file: str | Path | None = None, key: str | None = None,
                 hint: str | None = None):
        self.file = str(file) if file is not None else None
        self.key = key
        self.hint = hint
        self.message = message
        where = self.file or "<task>"
        if key:
            where += f": {key}"
        text = f"{where}: {message}"
        if hint:
            text += f"\n  fix: {hint}"
        super().__init__(text)


class RewardCodeRejected(WorkbenchError):
    """A reward program that failed the sandbox or the pre-flight checks; carries the report."""

    def __init__(self, message: str, report: object | None = None):
        self.report = report
        super().__init__(message)


class MissingDependency(WorkbenchError):
    """An optional dependency is needed for this feature; the message says what to install."""

    def __init__(self, what: str, extra: str, module: str):
        super().__init__(
            f"{what} needs the Python package '{module}', which is not installed.\n"
            f'  fix: pip install "rl-workbench[{extra}]"'
        )


class RunDirError(WorkbenchError):
    """A run directory that does not exist or is not a workbench run."""


class RewardRuntimeError(WorkbenchError):
    """An accepted reward program failed while training: it raised on a state the pre-flight
    did not sample, or broke the run-time guard. The message names the program and the call."""


class RewardGuardError(RewardRuntimeError):
    """A reward call ran past its time limit or returned a non-finite value."""
