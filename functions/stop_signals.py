"""SIGINT/SIGTERM for a long-running loop, handled without locks: the local runner
(``python -m local.run``) and the Redis subscriber (``python -m functions.subscriber``) share it.

A Python signal handler runs in the main thread between two bytecodes of whatever it was
doing -- possibly inside ``Event.wait`` holding the event's lock, which ``Event.set`` in the
handler would then wait for forever (a double Ctrl-C deadlocked the runner that way). So the
handler does nothing; the C-level handler writes the signal number to a pipe
(``signal.set_wakeup_fd``) and a watcher thread turns the bytes into :attr:`StopSignals.stop`
and a call of ``on_stop`` (first signal: stop in order) and a call of ``on_hurry`` (second
signal: stop now).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any


class StopSignals:
    """Install once, in the main thread; then wait on :attr:`stop` or let ``on_stop`` act."""

    def __init__(self, on_stop: Callable[[signal.Signals], None] | None = None,
                 on_hurry: Callable[[], None] | None = None) -> None:
        self.stop = threading.Event()
        self.received = 0
        self.on_stop = on_stop
        self.on_hurry = on_hurry
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)

    def install(self) -> None:
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handler)
        threading.Thread(target=self._watch, name="signals", daemon=True).start()

    @staticmethod
    def _handler(signum: int, frame: Any) -> None:
        """Nothing to do here: the wakeup fd already carries the signal to the watcher."""

    def _watch(self) -> None:
        while True:
            data = os.read(self._read_fd, 64)
            if not data:
                return
            self.received += len(data)
            if self.received == len(data) and self.on_stop is not None:
                self.on_stop(signal.Signals(data[0]))
            self.stop.set()
            if self.received >= 2 and self.on_hurry is not None:
                self.on_hurry()
                return
