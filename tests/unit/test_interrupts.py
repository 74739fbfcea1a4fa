"""Steps a signal must not cut in two (devbox/interrupts.py), with real signals to this process."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from devbox import interrupts


class Stopped(Exception):
    pass


@pytest.fixture
def raising_handler():
    """SIGTERM raises, as the CLI's handler does; restored afterwards."""

    def stop(signum: int, _frame: object) -> None:
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_a_signal_in_the_block_acts_once_the_block_is_done(raising_handler: None) -> None:
    done = []
    with pytest.raises(Stopped), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("the rest of the block")  # e.g. putting the new box on the undo list
    assert done == ["the rest of the block"]
    assert signal.getsignal(signal.SIGTERM) is not interrupts  # the raising handler is back
    with pytest.raises(Stopped):
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_second_signal_in_the_block_acts_at_once(raising_handler: None) -> None:
    done = []
    with pytest.raises(Stopped), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("after the first")
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("after the second")
    assert done == ["after the first"]


def test_a_block_without_signals_leaves_the_handlers_as_they_were(raising_handler: None) -> None:
    before = {sig: signal.getsignal(sig) for sig in interrupts.STOPS}
    with interrupts.deferred():
        pass
    assert {sig: signal.getsignal(sig) for sig in interrupts.STOPS} == before


def test_off_the_main_thread_it_holds_nothing() -> None:
    # signal.signal works on the main thread only; the TUI calls the core from workers.
    seen: list[object] = []

    def worker() -> None:
        with interrupts.deferred():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]
