"""The runner's and the subscriber's signal handling: the Python-level handler takes no lock, so a second signal
arriving while the main thread is inside ``Event.wait`` (holding the event's lock) cannot
deadlock it, as ``Event.set()`` in the handler did; the first signal asks for a stop, the
second hurries."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from functions.stop_signals import StopSignals

HURRIED = threading.Event()


@pytest.fixture()
def signals() -> Iterator[StopSignals]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    HURRIED.clear()
    stop = StopSignals()
    stop.on_hurry = HURRIED.set  # the runner's on_hurry kills the children and exits
    stop.install()
    yield stop
    signal.set_wakeup_fd(-1)
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_the_handler_returns_while_the_stop_events_lock_is_held(signals):
    handler = signal.getsignal(signal.SIGINT)
    assert callable(handler)
    with signals.stop._cond:  # what the main thread holds inside stop.wait()
        t = threading.Thread(target=handler, args=(signal.SIGINT, None), daemon=True)
        t.start()
        t.join(2)
        assert not t.is_alive(), "the signal handler blocked on the stop event's lock"


def test_first_signal_stops_second_hurries(signals):
    os.kill(os.getpid(), signal.SIGTERM)
    assert signals.stop.wait(5)
    assert not HURRIED.wait(0.2)
    os.kill(os.getpid(), signal.SIGINT)
    assert HURRIED.wait(5)
    assert signals.received == 2
