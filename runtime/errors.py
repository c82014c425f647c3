"""Named exceptions of the runtime. Each message says what went wrong, with which input, and the fix."""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BundleError",
    "DeadlineExceeded",
    "EdgefuseError",
    "EngineClosed",
    "InputError",
    "Overloaded",
]


class EdgefuseError(Exception):
    """Base of every error the runtime raises on purpose."""


class InputError(EdgefuseError, ValueError):
    """A request input is unusable. `.name` is the input; the message gives the fix."""

    def __init__(self, name: str, problem: str, fix: str) -> None:
        self.name, self.problem, self.fix = name, problem, fix
        super().__init__(f"{name}: {problem}; {fix}")


class BundleError(EdgefuseError):
    """The bundle is missing, malformed or tampered with. `.name` is the file or manifest field."""

    def __init__(self, name: str, problem: str, fix: str = "re-export the bundle with `edgefuse compress`") -> None:
        self.name, self.problem, self.fix = name, problem, fix
        super().__init__(f"{name}: {problem}; {fix}")


class BackendError(EdgefuseError):
    """A backend could not be created or failed while running a graph."""


class Overloaded(EdgefuseError):
    """The admission queue is full: back off and retry, or raise `max_queue`."""


class DeadlineExceeded(EdgefuseError, TimeoutError):
    """The request's deadline passed while it was queued or running."""


class EngineClosed(EdgefuseError):
    """The engine is shutting down or closed and admits no new requests."""
