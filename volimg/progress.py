"""Progress in words: what each event says, and how far Glance's copies have got.

Shared by the plain log (``_LineLog``: one timestamped line per change, for cron and
CI) and the terminal panels in ``volimg.live``, which both sit above this module:
``CopyTracker`` follows Glance's copies, ``describe`` and ``milestone`` put an event
in one line, ``LiveView`` is what a terminal panel must offer. No rich here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from volimg import events as ev
from volimg.model import format_time
from volimg.output import Output
from volimg.output import comma_list as comma_list  # here first; volimg.render needs it alone

if TYPE_CHECKING:
    from rich.console import RenderableType


class LiveView(Protocol):
    """A terminal panel that events update."""

    def update(self, event: ev.Event) -> None: ...

    def render(self) -> RenderableType: ...


MIB = 1024 * 1024
PERCENT_EVERY = 10.0
"""Seconds between two plain progress lines that only report more bytes copied."""
_COPIED = re.compile(r"Copied (\d+) MiB")


def human_bytes(count: float) -> str:
    """Binary units, as Glance counts: 512.0 MiB, 1.0 GiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class CopyTracker:
    """Which store Glance is copying, and how many bytes it has copied there.

    Glance copies the requested stores one after another, in the order asked
    (glance/async_/flows/api_image_import.py builds one linear flow), and its task
    message "Copied N MiB" counts the store in progress (``_ImportToStore`` reports
    ``total_bytes`` of the current ``set_image_data``). The message the store before
    left stays until the next store's first report, so a message seen when a store
    becomes current is not counted for it.
    """

    def __init__(self) -> None:
        self.order: tuple[str, ...] = ()
        self.size: int | None = None
        self.finished: set[str] = set()
        self.current: str | None = None
        self.copied: int | None = None  # bytes in the current store, once reported
        self._stale_message = ""

    def update(self, event: ev.Event) -> None:
        if isinstance(event, ev.UploadFinished):
            self.size = event.image.size or self.size
        elif isinstance(event, ev.CopyRequested):
            self.order, self.finished = event.stores, set()
            self.size = event.image_size or self.size
            self._advance("")
        elif isinstance(event, ev.CopyProgress):
            self.size = event.image_size or self.size
            self.finished.update(event.done, event.failed)
            self._advance(event.message)
            match = _COPIED.search(event.message)
            if match and self.current is not None and event.message != self._stale_message:
                self.copied = int(match.group(1)) * MIB
        elif isinstance(event, ev.StoreSettled) and event.store in self.order:
            self.finished.add(event.store)
            self._advance(self._stale_message)

    def _advance(self, message: str) -> None:
        current = next((s for s in self.order if s not in self.finished), None)
        if current != self.current:
            self.current, self.copied, self._stale_message = current, None, message

    def percent(self) -> int | None:
        if self.copied is None or not self.size:
            return None
        return min(100, self.copied * 100 // self.size)

    def summary(self) -> str:
        """E.g. "archive 50% of 1.0 GiB" ("" while nothing is known)."""
        percent = self.percent()
        if percent is None or self.current is None or self.size is None:
            return ""
        return f"{self.current} {percent}% of {human_bytes(self.size)}"


class _LineLog:
    """Plain progress: one line per change, with a UTC timestamp, for logs and cron.

    A change of state is a line at once; a line that only says more was copied comes
    at most every PERCENT_EVERY seconds (of the run's own clock).
    """

    def __init__(self, console: Output, wall_clock: Callable[[], datetime]) -> None:
        self.file = console.file
        self.wall_clock = wall_clock
        self.tracker = CopyTracker()
        self.last: tuple[object, ...] | None = None
        self.last_state: tuple[object, ...] | None = None
        self.last_progress_at = float("-inf")

    def write(self, event: ev.Event) -> None:
        self.tracker.update(event)
        text = describe(event)
        if text is None:
            return
        state: tuple[object, ...] | None = None
        if isinstance(event, ev.CopyProgress):
            state = (type(event), event.task_status, event.done, event.failed)
            summary = self.tracker.summary()
            text += f"; {summary}" if summary else ""
        elif isinstance(event, ev.UploadProgress):
            state = (type(event), event.image_status, event.volume_status)
        key = (type(event), text)
        if key == self.last:
            return
        if state is not None:
            if state == self.last_state and event.elapsed - self.last_progress_at < PERCENT_EVERY:
                return
            self.last_state, self.last_progress_at = state, event.elapsed
        self.last = key
        stamp = format_time(self.wall_clock())
        self.file.write(f"{stamp} {text}\n")
        self.file.flush()


def milestone(event: ev.Event) -> str | None:
    """One line for an event worth a line of its own (None: progress only)."""
    if isinstance(event, ev.PhaseStarted):
        return f"{event.phase}: {event.detail}"
    if isinstance(event, ev.UploadStarted):
        return f"upload: Cinder accepted; image {event.image_id} ({event.image_name})"
    if isinstance(event, ev.UploadFinished):
        return f"wait: image {event.image.id} is active in {comma_list(event.image.stores)}"
    if isinstance(event, ev.CopyRequested):
        return (
            f"replicate: Glance accepted copy-image to {comma_list(event.stores)} "
            f"(request {event.request_id or '?'})"
        )
    if isinstance(event, ev.StoreSettled):
        detail = f" ({event.detail})" if event.detail else ""
        return f"store {event.store}: {event.outcome}{detail}"
    if isinstance(event, ev.Notice):
        return f"note: {event.message}"
    return None


def describe(event: ev.Event) -> str | None:
    """One line for any event, progress included (the plain, non-terminal log)."""
    if isinstance(event, ev.UploadProgress):
        size = f" ({human_bytes(event.image_size)})" if event.image_size else ""
        return f"wait: image {event.image_status}{size}, volume {event.volume_status}"
    if isinstance(event, ev.CopyProgress):
        message = f", {event.message}" if event.message else ""
        return (
            f"replicate: task {event.task_status}{message}; "
            f"copied {comma_list(event.done)}, failed {comma_list(event.failed)}"
        )
    return milestone(event)
