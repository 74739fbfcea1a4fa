"""Steps a signal must not cut in two: an engine call whose answer is the only way to undo it."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

# Ctrl-C, a kill, a dropped session: what a user sends to stop a command.
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block ends, then act on the first that came.

    A container created by a request that a signal interrupted exists, but its id (how `up`
    removes it again) was never read. A second signal within the block acts at once: a user
    who asks twice means it. Off the main thread (where Python runs no handlers) it holds nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, FrameType | None]] = []
    previous = {sig: signal.getsignal(sig) for sig in STOPS}

    def hold(signum: int, frame: FrameType | None) -> None:
        if pending:
            _restore(previous)
            _act(previous[signum], signum, frame)
        pending.append((signum, frame))

    for sig in STOPS:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        _restore(previous)
    if pending:
        signum, frame = pending[0]
        _act(previous[signum], signum, frame)


def _restore(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]


def _act(handler: object, signum: int, frame: FrameType | None) -> None:
    """What `handler` (the one held back) does with the signal."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)  # restored already: the default ends the process
