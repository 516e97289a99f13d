"""Background work: what the real services do after they have answered 202.

Cinder's volume manager and Glance's task executor run outside the API request; here
each such piece of work is a daemon thread that sleeps for its simulated duration.
Stopping the sandbox wakes every sleeper so nothing outlives it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Jobs:
    """Starts background jobs and stops them all at once."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def spawn(self, name: str, work: Callable[[], None]) -> None:
        """Run `work` in a daemon thread, unless the sandbox is stopping."""
        if self._stop.is_set():
            return

        def run() -> None:
            try:
                work()
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"sandbox-{name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def sleep(self, seconds: float) -> bool:
        """Sleep; False if the sandbox began stopping meanwhile (the job should return)."""
        if seconds > 0:
            self._stop.wait(seconds)
        return not self._stop.is_set()

    def stop(self, timeout: float = 2.0) -> None:
        """Wake every sleeping job and wait (bounded) for them to finish."""
        self._stop.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no job runs (tests use it to let asynchronous work settle)."""
        deadline = threading.Event()
        remaining = timeout
        step = 0.005
        while remaining > 0:
            with self._lock:
                if not self._threads:
                    return True
            deadline.wait(step)
            remaining -= step
        return False
