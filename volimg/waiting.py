"""Waiting for the cloud: one polling policy (tenacity), with an injectable clock.

Two concerns, two homes. Each single read may be retried at once by keystoneauth
(transport: a connection that failed, Glance's 503; ``gateway.CONNECT_RETRIES``), and
requests that change something never are. This module is the other home: it waits
for a condition, and treats a read that still failed (a 5xx, no connection) as a poll
that saw nothing, polling again a bounded number of times in a row and never past the
deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from volimg.errors import (
    CloudError,
    ConflictInCloud,
    NotFoundInCloud,
    RequestRejected,
    VolimgError,
)

if TYPE_CHECKING:
    import tenacity

T = TypeVar("T")

# How many failed polls in a row are tolerated before the fault is reported.
MAX_CONSECUTIVE_POLL_ERRORS = 5

# The polling schedule (docs/performance.md, "How volimg waits"). The gap before the
# next poll is LATE_SHARE of the time waited so far, never under MIN_POLL_GAP and never
# over the caller's interval. So volimg notices the end at most max(MIN_POLL_GAP,
# LATE_SHARE x the duration) late, and sends at most one poll per MIN_POLL_GAP: about
# 20 + 20 ln(T / 20 s) polls for a wait of T seconds below the cap, where a fixed 2 s
# interval sends T / 2.
MIN_POLL_GAP = 1.0
LATE_SHARE = 0.05


def next_poll_gap(waited: float, interval: float) -> float:
    """Seconds to sleep before the next poll, after ``waited`` seconds of waiting."""
    return min(interval, max(MIN_POLL_GAP, LATE_SHARE * waited))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Clock:
    """Time as volimg sees it; tests swap in a fake so that waiting never really sleeps."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    wall: Callable[[], datetime] = _utcnow  # timestamps and default image names


@dataclass
class Deadline:
    """A point in (monotonic) time after which volimg stops waiting."""

    clock: Clock
    seconds: float
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock.monotonic()

    @property
    def elapsed(self) -> float:
        return self.clock.monotonic() - self.started

    @property
    def remaining(self) -> float:
        return max(0.0, self.seconds - self.elapsed)

    @property
    def expired(self) -> bool:
        return self.remaining <= 0


class PollTimedOut(Exception):
    """The deadline passed before the condition held; carries the last thing seen."""

    def __init__(self, last: object) -> None:
        super().__init__("deadline passed")
        self.last = last


def is_passing_fault(exc: BaseException) -> bool:
    """A read that failed in a way a later identical read may not (5xx, no connection)."""
    if isinstance(exc, (NotFoundInCloud, ConflictInCloud, RequestRejected)):
        return False
    return isinstance(exc, CloudError) and (exc.status is None or exc.status >= 500)


def poll(
    fetch: Callable[[], T],
    *,
    done: Callable[[T], bool],
    deadline: Deadline,
    interval: float,
    on_poll: Callable[[T], None] | None = None,
) -> T:
    """Call ``fetch`` until ``done`` holds for its result, on ``next_poll_gap``'s schedule.

    The first poll comes one gap after the call: the caller has just asked the cloud
    for something, so an immediate poll would only see it still running. ``interval``
    caps the gap.

    Raises ``PollTimedOut`` when the deadline passes first, and the fetch's own error
    when it fails in a way that is not a passing fault, or too often in a row.
    """
    import tenacity  # here, not at the top: ``volimg --help`` imports this module

    errors_in_a_row = 0

    def observed_fetch() -> T:
        nonlocal errors_in_a_row
        try:
            result = fetch()
        except CloudError:
            errors_in_a_row += 1
            raise
        errors_in_a_row = 0
        if on_poll is not None:
            on_poll(result)
        return result

    def should_poll_again(state: tenacity.RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None:
            return True
        if outcome.failed:
            exc = outcome.exception()
            return (
                exc is not None
                and is_passing_fault(exc)
                and errors_in_a_row <= MAX_CONSECUTIVE_POLL_ERRORS
            )
        return not done(outcome.result())

    def stop(_state: tenacity.RetryCallState) -> bool:
        return deadline.expired

    clock = deadline.clock
    started = clock.monotonic()

    def wait(_state: tenacity.RetryCallState) -> float:
        return min(next_poll_gap(clock.monotonic() - started, interval), deadline.remaining)

    clock.sleep(min(next_poll_gap(0.0, interval), deadline.remaining))
    retrying = tenacity.Retrying(
        retry=should_poll_again,
        stop=stop,
        wait=wait,
        sleep=clock.sleep,
        reraise=True,
    )
    try:
        return retrying(observed_fetch)
    except tenacity.RetryError as exc:
        raise PollTimedOut(exc.last_attempt.result()) from None
    except CloudError as exc:
        # The deadline passed while the cloud was failing: that is a timeout, and the
        # fault is what was seen last.
        if deadline.expired and is_passing_fault(exc):
            raise PollTimedOut(exc) from exc
        raise


# How long to keep looking for the effect of a request that timed out: the service may
# still act on it.
IN_FLIGHT_GRACE = 30.0


def watch(
    look: Callable[[], T],
    *,
    seen: Callable[[T], bool],
    clock: Clock,
    seconds: float,
    interval: float,
) -> T:
    """Read with ``look`` until ``seen`` holds or ``seconds`` pass; the last reading.

    For what a timed-out request may still bring about: only reads, never resends.
    """
    try:
        return poll(look, done=seen, deadline=Deadline(clock, seconds), interval=interval)
    except PollTimedOut as timed_out:
        return timed_out.last  # type: ignore[return-value]


# Retries of the reads a batch starts with (``retry_while_starting``).
START_ATTEMPTS = 5
START_FIRST_WAIT = 1.0
START_MAX_WAIT = 30.0


def retry_while_starting(
    action: str,
    call: Callable[[], T],
    *,
    sleep: Callable[[float], None],
    attempts: int = START_ATTEMPTS,
    budget: float | None = None,
) -> T:
    """``call()``, tried again after a passing fault, up to ``attempts`` times in all.

    Only for reads made before anything is changed: Keystone's token request (a POST,
    but it creates nothing in the cloud), version discovery, listings and lookups. A
    passing fault is no connection or a 5xx (``volimg.waiting.is_passing_fault``);
    refused credentials, a 404 or a 400 are reported at once. keystoneauth's own
    retries cover one request and only some failures (a 503 on a read, a refused
    connection); Keystone's token request, a reset, a 502 or a discovery failure
    are not retried there, so without this one such answer ends a night's batch.
    Each retry is logged (``-v`` shows it), with what failed and when the next try is.
    ``budget`` bounds the time spent (e.g. what is left of ``--deadline``).
    """
    import logging

    import tenacity  # here: volimg --help must not pay for it

    def log_retry(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logging.getLogger("volimg.gateway").info(
            "%s failed (%s); retrying in %.1f s (attempt %d of %d)",
            action,
            error.message if isinstance(error, VolimgError) else error,
            wait,
            state.attempt_number + 1,
            attempts,
        )

    stop: Any = tenacity.stop_after_attempt(attempts)
    if budget is not None:
        stop = stop | tenacity.stop_after_delay(max(0.0, budget))
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_passing_fault),
        stop=stop,
        wait=tenacity.wait_random_exponential(multiplier=START_FIRST_WAIT, max=START_MAX_WAIT),
        sleep=sleep,
        before_sleep=log_retry,
        reraise=True,
    )
    return retrying(call)
