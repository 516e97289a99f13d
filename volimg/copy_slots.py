"""At most N copy-image imports in flight across a batch (``--max-copies``).

Each copy-image pulls the whole image into one glance-api node's staging directory
and writes the stores one after another; Glance runs a worker's imports on its
``[wsgi] task_pool_threads`` (16 by default, shared with every other user), counts them
against the ``image_count_uploading`` and ``image_stage_total`` quotas, and staging
disk must hold every image being copied. A batch of 32 that starts 32 copies at once
can fill all of that, and then every copy fails late. So a volume whose upload is
done waits here for a slot before it asks Glance to copy, and gives the slot back
when Glance's import has ended (copied, failed or given up on).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from volimg.waiting import Deadline, PollTimedOut

# The documented default of --max-copies: half of one glance-api worker's
# task_pool_threads, so a batch never takes all of a worker's import threads.
DEFAULT_MAX_COPIES = 8
# How often a volume waiting for a slot looks whether its run was stopped.
SLOT_LOOK = 0.2


class CopySlots:
    """A counting semaphore with a name for the wait; ``limit`` None or 0: no cap."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit or None
        self._slots = threading.BoundedSemaphore(self.limit) if self.limit else None
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0  # the most copies ever in flight at once (tests, bench)

    @contextmanager
    def slot(self, deadline: Deadline, on_wait: Callable[[int], None]) -> Iterator[float]:
        """Hold one slot for the block; yields the seconds waited for it.

        ``on_wait(in_flight)`` is called once when the slot is not free at once. The
        wait ends at the deadline (``PollTimedOut``) and, through the waiter's clock's
        sleep, when the run is stopped (``volimg.signals.StopFlag``).
        """
        waited = 0.0
        if self._slots is not None and not self._slots.acquire(blocking=False):
            on_wait(self.in_flight)
            began = deadline.clock.monotonic()
            while not self._slots.acquire(timeout=min(SLOT_LOOK, max(deadline.remaining, 0.0))):
                deadline.clock.sleep(0)  # a stopped batch interrupts the wait here
                if deadline.expired:
                    raise PollTimedOut(None)
            waited = deadline.clock.monotonic() - began
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            yield waited
        finally:
            with self._lock:
                self.in_flight -= 1
            if self._slots is not None:
                self._slots.release()
