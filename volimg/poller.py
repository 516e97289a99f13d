"""One poller for a whole batch: listings, not a GET per volume per second.

A batch of N volumes waited on with one GET per volume and image per poll sends about
2N requests a second, most of them answering "still uploading". The ``Poller`` reads
the state of every image the batch waits on with Glance listings (``id=in:...``, 40
IDs a request, ``Gateway.images_by_ids``) and, only while some upload has shown no data
for a while, Cinder's list of uploading volumes (``status=uploading``), once per tick
for the whole batch. Each waiting step (``volimg.steps``) reads its object from the
last tick's snapshot and sleeps until the next tick: the steps' decisions stay the
same, only where their readings come from changes (``volimg.steps.job.Job.wait``).

What a listing can and cannot say, and how the steps make up for it:

- An upload is over when its image is ``active`` (Cinder writes the image's data,
  then restores the volume's status); a failed upload's image is deleted by Cinder, so
  it drops out of the listing. Only an image that stays ``queued`` (a protected image
  Cinder could not delete, or a Cinder that never started) needs Cinder: after
  ``QUEUED_BEFORE_CINDER`` seconds the poller adds the uploading-volumes list to its
  ticks, and a volume missing from it has left ``uploading``.
- A copy is over when the image's import lock (``os_glance_import_task``, taken before
  Glance's 202) is gone; the image's ``stores`` and ``os_glance_failed_import`` say how
  each store went. The import's task is read once, and only when a store is missing.

Each wait keeps the single wait's schedule (``volimg.waiting.next_poll_gap``: its
first reading one gap after its request); a tick serves every wait that is due, and
no two ticks come closer than ``TICK_SPACING``, so waits due together share a listing. A passing fault (a 5xx, no connection) is a tick that saw
nothing, up to ``MAX_CONSECUTIVE_POLL_ERRORS`` in a row; then, or for any other error,
every waiter gets the error, as its own poll would have raised it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from volimg.errors import CloudError, VolimgError
from volimg.waiting import (
    MAX_CONSECUTIVE_POLL_ERRORS,
    Clock,
    Deadline,
    PollTimedOut,
    is_passing_fault,
    next_poll_gap,
)

if TYPE_CHECKING:
    from volimg.gateway import Gateway
    from volimg.model import Image

T = TypeVar("T")

# How long an upload's image may stay queued (no data from Cinder yet) before the
# poller asks Cinder whether the volume is still uploading.
QUEUED_BEFORE_CINDER = 10.0
# How often a waiter looks whether its run was stopped while it waits for a tick.
TICK_LOOK = 0.2
# The least time between two ticks: waits due within it share one listing, read at
# most this much after they were due.
TICK_SPACING = 0.25


@dataclass
class _Follower:
    image_id: str
    volume_id: str | None
    since: float
    due: float  # when this wait wants its next reading: the single wait's schedule


@dataclass
class Snapshot:
    """What the last tick read: images by ID, and the volumes Cinder says are uploading."""

    tick: int = 0
    read_at: float = float("-inf")  # when the tick's first request was sent (monotonic)
    images: dict[str, Image] = field(default_factory=dict)
    uploading: frozenset[str] | None = None  # None: Cinder not asked on this tick
    error: VolimgError | None = None


class Poller:
    """Reads every followed image (and, when needed, uploading volumes) once per tick.

    Thread-safe: the batch's workers follow objects and wait on ticks; the ticks run in
    one background thread, started with the first follower and stopped by ``close``.
    """

    def __init__(self, gateway: Gateway, clock: Clock, interval: float) -> None:
        self._gateway = gateway
        self._clock = clock
        self._interval = interval
        self._changed = threading.Condition()
        self._followers: dict[int, _Follower] = {}
        self._next_key = 0
        self._snapshot = Snapshot()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the waiters' side -------------------------------------------------------------

    def follow(self, image_id: str, volume_id: str | None = None) -> int:
        """Start reading ``image_id`` (and ``volume_id``'s upload) on every tick."""
        with self._changed:
            key = self._next_key
            self._next_key += 1
            since = self._clock.monotonic()
            due = since + next_poll_gap(0.0, self._interval)
            self._followers[key] = _Follower(image_id, volume_id, since, due)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="volimg-poller", daemon=True)
                self._thread.start()
            self._changed.notify_all()
            return key

    def unfollow(self, key: int) -> None:
        with self._changed:
            self._followers.pop(key, None)

    def image(self, image_id: str) -> Image | None:
        """The image as the last tick listed it; None when the listing did not have it."""
        snapshot = self._snapshot
        if snapshot.error is not None:
            raise snapshot.error
        return snapshot.images.get(image_id)

    def still_uploading(self, volume_id: str) -> bool | None:
        """Whether Cinder listed the volume as uploading on the last tick; None: not asked."""
        snapshot = self._snapshot
        if snapshot.uploading is None:
            return None
        return volume_id in snapshot.uploading

    def wait(
        self,
        key: int,
        fetch: Callable[[], T],
        *,
        done: Callable[[T], bool],
        deadline: Deadline,
        on_poll: Callable[[T], None] | None = None,
    ) -> T:
        """``fetch`` (a read of the snapshot) after each tick, until ``done`` holds.

        Raises ``PollTimedOut`` with the last reading when the deadline passes first,
        and the tick's error when the poller gave up on the cloud.
        """
        # Only a tick whose reading began after this wait began counts: one that was
        # already under way may show the image as it was before the request the
        # caller just sent (no import lock yet, for a copy).
        with self._changed:
            follower = self._followers.get(key)
            since = follower.since if follower is not None else self._clock.monotonic()
            seen = self._snapshot.tick
        last: T | None = None
        try:
            while True:
                self._await_tick(seen, since, deadline, last)
                seen = self._snapshot.tick
                last = fetch()
                if on_poll is not None:
                    on_poll(last)
                if done(last):
                    return last
        finally:
            self.unfollow(key)

    def _await_tick(self, seen: int, since: float, deadline: Deadline, last: object) -> None:
        """Block until a tick after ``seen`` whose reading began at ``since`` or later."""
        while True:
            with self._changed:
                current = self._snapshot
                if current.tick != seen:
                    seen = current.tick
                    if current.read_at >= since or current.error is not None:
                        return
                if deadline.expired:
                    raise PollTimedOut(last)
                self._changed.wait(timeout=min(deadline.remaining, TICK_LOOK))
            # The waiter's own sleep: a stopped batch (volimg.signals.StopFlag)
            # interrupts the wait here, as it interrupts a single poll's sleep.
            deadline.clock.sleep(0)

    def close(self) -> None:
        """Stop ticking (the batch is over); waiters still waiting time out."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    # -- the ticks ---------------------------------------------------------------------

    def _run(self) -> None:
        errors_in_a_row = 0
        last_tick = self._clock.monotonic()
        while True:
            with self._changed:
                while not self._closed:
                    due = self._due(last_tick)
                    now = self._clock.monotonic()
                    if due is not None and now >= due:
                        break
                    # Woken by a follower joining or leaving, or by close: look again.
                    self._changed.wait(timeout=None if due is None else due - now)
                if self._closed:
                    return
                followers = list(self._followers.values())
            last_tick = self._clock.monotonic()
            if not followers:
                continue
            self._served(last_tick)
            try:
                snapshot = self._read(followers)
            except VolimgError as exc:
                errors_in_a_row += 1
                passing = isinstance(exc, CloudError) and is_passing_fault(exc)
                if passing and errors_in_a_row <= MAX_CONSECUTIVE_POLL_ERRORS:
                    continue  # a tick that saw nothing
                snapshot = Snapshot(error=exc)
            except Exception as exc:  # noqa: BLE001 - a waiter must hear of it, not hang
                # Not a cloud answer volimg knows (a bug, a malformed listing): every
                # waiter gets it as an error, instead of waiting out its --timeout.
                snapshot = Snapshot(
                    error=CloudError(
                        f"the batch's poller could not read the cloud: {exc!r}",
                        hint="run volimg audit to see where each image is; please report this",
                    )
                )
            else:
                errors_in_a_row = 0
            with self._changed:
                snapshot.tick = self._snapshot.tick + 1
                self._snapshot = snapshot
                self._changed.notify_all()

    def _due(self, last_tick: float) -> float | None:
        """When the next tick is due (None: nobody to read for); hold ``_changed``.

        Each wait keeps the single wait's schedule (``next_poll_gap``: its first reading
        one gap after its request, the next one gap after that ...), so that it learns
        of its end no later than a wait of its own would; the ticks serve every wait
        that is due, and come no closer than ``TICK_SPACING``, so that waits due within
        it share one listing.
        """
        if not self._followers:
            return None
        earliest = min(f.due for f in self._followers.values())
        return max(earliest, last_tick + min(TICK_SPACING, self._interval))

    def _served(self, tick: float) -> None:
        """After a tick: each wait it was due for is due again one gap on.

        A wait not yet due keeps its time: a reading before it would mostly find the
        request still running, and pushing it back a whole gap would make that wait
        learn of its end up to a gap late (a whole second for a one-second copy).
        """
        with self._changed:
            for follower in self._followers.values():
                if follower.due <= tick:
                    follower.due = tick + next_poll_gap(tick - follower.since, self._interval)

    def _read(self, followers: list[_Follower]) -> Snapshot:
        """One tick: the followed images, and Cinder's uploading volumes when needed."""
        now = self._clock.monotonic()
        read_at = now
        image_ids = sorted({f.image_id for f in followers})
        last = self._snapshot.images
        ask_cinder = any(
            f.volume_id is not None
            and now - f.since >= QUEUED_BEFORE_CINDER
            and (f.image_id not in last or last[f.image_id].status == "queued")
            for f in followers
        )
        uploading: frozenset[str] | None = None
        if ask_cinder:
            uploading = frozenset(v.id for v in self._gateway.volumes_in_status("uploading"))
        images = self._gateway.images_by_ids(image_ids)
        return Snapshot(
            read_at=read_at,
            images={image.id: image for image in images},
            uploading=uploading,
        )
