"""The one error type of the models package: bad input, named, with the fix."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """An input or config value is wrong. `.name` is the input, the message says what is wrong and the fix."""

    def __init__(self, name: str, problem: str, fix: str) -> None:
        self.name, self.problem, self.fix = name, problem, fix
        super().__init__(f"{name}: {problem}; {fix}")
