"""SIGINT and SIGTERM at the CLI's edge: the first stops cleanly, the second at once.

The first signal becomes an exception in the main thread (a ``KeyboardInterrupt``
that carries the signal's number), so the run stops the way Ctrl-C stops it: the
executor says what exists and how to finish, and the exit code tells the two apart
(130 for SIGINT, 143 for SIGTERM, as a shell reports a process killed by them). A
second signal while that clean stop is under way, of either kind, ends the process at
once, with one line on stderr and no traceback: whoever sends it has stopped waiting.

The exit code is always the first signal's: the clean stop may already have written
its report, whose ``error.exit_code`` is the process's (docs/json.md). Once the
process's own block is over (the report is out and only the interpreter's shutdown is
left), later signals are ignored: Python resets its handlers to the default action
while it shuts down, and a SIGINT then would kill the process with status -2 (130 in
a shell) under a report that says 143.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from volimg.errors import exit_code_for_signal

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupt(KeyboardInterrupt):
    """A signal that asks volimg to stop; ``signum`` is which one."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopFlag:
    """Set once a run of many items is stopped (a signal, the deadline): no new item
    starts, and the running ones stop at their next wait.

    Python delivers a signal to the main thread only, so the workers of a pool never
    see it: the main thread catches it, sets this flag, and the workers must notice.
    They sleep through it (``sleep`` is their clock's sleep): a worker waiting on the
    cloud wakes at once and raises ``Interrupt`` with the signal's number, so a running
    upload or repair stops at its next wait exactly as the signal stops one in the main
    thread, and its outcome says what it had requested. ``deadline`` tells a stop for
    ``--deadline`` from a signal (its sleep raises ``Interrupt`` too, with SIGINT).
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int = signal.SIGINT
        self.deadline = False

    def set(self, signum: int) -> None:
        self.signum = signum
        self.event.set()

    def set_deadline(self) -> None:
        self.deadline = True
        self.event.set()

    def sleep(self, seconds: float) -> None:
        """The workers' sleep: a stopped run interrupts them as the signal did."""
        if self.event.wait(seconds):
            raise Interrupt(self.signum)


class _Handler:
    """Raise on the first signal; exit at once on any later one."""

    def __init__(self, exit_now: Callable[[int], Any]) -> None:
        self.first: int | None = None
        self.exit_now = exit_now

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.first is None:
            self.first = signum
            raise Interrupt(signum)
        name, first = signal.Signals(signum).name, signal.Signals(self.first).name
        again = f"{name} again" if signum == self.first else f"{name} after {first}"
        os.write(2, f"volimg: {again}: stopping at once\n".encode())
        self.exit_now(int(exit_code_for_signal(self.first)))


@contextmanager
def handled(
    exit_now: Callable[[int], Any] = os._exit, *, keep_after_signal: bool = False
) -> Iterator[None]:
    """Handle SIGINT and SIGTERM as above while the block runs (main thread only).

    Outside the main thread (Python only delivers signals there), or inside a block
    that already handles them, this does nothing. With ``keep_after_signal`` (the
    process's entry point), a block that has seen a signal leaves SIGINT and SIGTERM
    ignored: the process is ending with the first signal's exit code, and a later
    signal must not change it (Python would otherwise restore the default actions
    while it shuts down, and be killed by the second signal).
    """
    if threading.current_thread() is not threading.main_thread() or isinstance(
        signal.getsignal(signal.SIGINT), _Handler
    ):
        yield
        return
    handler = _Handler(exit_now)
    previous = {signum: signal.signal(signum, handler) for signum in HANDLED}
    try:
        yield
    finally:
        ending = keep_after_signal and handler.first is not None
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_IGN if ending else old)
