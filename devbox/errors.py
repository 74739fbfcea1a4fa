"""The few exception types devbox raises; the CLI turns them into one line and an exit code."""

from __future__ import annotations


class DevboxError(Exception):
    """A runtime failure the user can act on: message says what is wrong, hint what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(DevboxError):
    """Bad input: a flag, a name, a mount. Exit code 2, like click's own usage errors."""

    exit_code = 2


class NotFoundError(DevboxError):
    """A box, image or host that does not exist."""


class GpuBusyError(DevboxError):
    """The GPUs a box needs are held by other boxes: placement moves on to the next host."""
