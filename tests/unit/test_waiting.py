"""The one polling policy: deadline, passing faults, and a clock that never sleeps."""

from __future__ import annotations

import itertools

import pytest

from volimg.errors import CloudError, NotFoundInCloud
from volimg.results import DEFAULT_POLL_INTERVAL
from volimg.waiting import (
    LATE_SHARE,
    MAX_CONSECUTIVE_POLL_ERRORS,
    MIN_POLL_GAP,
    Clock,
    Deadline,
    PollTimedOut,
    poll,
)


class FakeClock:
    """Time moves only when volimg sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, sleep=self.sleep)


def test_polls_until_done_and_reports_every_result() -> None:
    fake = FakeClock()
    results = iter(["queued", "saving", "saving", "saving", "saving", "active"])
    seen: list[str] = []

    status = poll(
        lambda: next(results),
        done=lambda s: s == "active",
        deadline=Deadline(fake.clock(), 60),
        interval=2,
        on_poll=seen.append,
    )

    assert status == "active"
    assert seen == ["queued", "saving", "saving", "saving", "saving", "active"]
    assert fake.slept == [1, 1, 1, 1, 1, 1]  # the first poll one gap after the request


def test_gives_up_at_the_deadline_with_the_last_thing_seen() -> None:
    fake = FakeClock()

    with pytest.raises(PollTimedOut) as info:
        poll(lambda: "saving", done=lambda s: False, deadline=Deadline(fake.clock(), 5), interval=2)

    assert info.value.last == "saving"
    assert sum(fake.slept) == pytest.approx(5)
    assert fake.slept == [1, 1, 1, 1, 1]  # the last sleep ends at the deadline


def test_a_passing_fault_is_polled_through() -> None:
    fake = FakeClock()
    answers = iter([CloudError("503", status=503), CloudError("reset"), "active"])

    def fetch() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert (
        poll(fetch, done=lambda s: True, deadline=Deadline(fake.clock(), 60), interval=1)
        == "active"
    )


def test_a_fault_that_persists_is_reported() -> None:
    fake = FakeClock()
    calls = 0

    def fetch() -> str:
        nonlocal calls
        calls += 1
        raise CloudError("503", status=503)

    with pytest.raises(CloudError):
        poll(fetch, done=lambda s: True, deadline=Deadline(fake.clock(), 600), interval=1)
    assert calls == MAX_CONSECUTIVE_POLL_ERRORS + 1


def test_a_definite_answer_is_not_polled_again() -> None:
    fake = FakeClock()
    calls = 0

    def fetch() -> str:
        nonlocal calls
        calls += 1
        raise NotFoundInCloud("gone", status=404)

    with pytest.raises(NotFoundInCloud):
        poll(fetch, done=lambda s: True, deadline=Deadline(fake.clock(), 600), interval=1)
    assert calls == 1


def test_a_fault_still_there_at_the_deadline_is_a_timeout() -> None:
    fake = FakeClock()

    def fetch() -> str:
        raise CloudError("502", status=502)

    with pytest.raises(PollTimedOut) as info:
        poll(fetch, done=lambda s: True, deadline=Deadline(fake.clock(), 1), interval=2)
    assert isinstance(info.value.last, CloudError)


def _poll_times(duration: float, interval: float = DEFAULT_POLL_INTERVAL) -> list[float]:
    """When volimg polls (seconds after the request) for a step the cloud ends at ``duration``."""
    fake = FakeClock()
    start = fake.now
    times: list[float] = []

    def fetch() -> bool:
        times.append(fake.now - start)
        return fake.now - start >= duration

    poll(fetch, done=bool, deadline=Deadline(fake.clock(), 7200), interval=interval)
    return times


def test_the_gap_grows_with_the_wait_and_stops_at_the_interval() -> None:
    times = _poll_times(3600)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert times[0] == MIN_POLL_GAP
    assert gaps[0] == MIN_POLL_GAP
    assert gaps == sorted(gaps)
    assert max(gaps) == DEFAULT_POLL_INTERVAL
    assert len(times) < 3600 / 2 / 4  # a fixed 2 s interval would poll 1800 times


@pytest.mark.parametrize("duration", [0.1, 1, 1.01, 5, 9.99, 20, 20.5, 60, 61.7, 600, 3600])
def test_the_end_is_seen_soon_and_without_more_than_one_poll_a_second(duration: float) -> None:
    """The bounds docs/performance.md states, computed on the fake clock."""
    times = _poll_times(duration)
    late = times[-1] - duration
    assert late <= max(MIN_POLL_GAP, LATE_SHARE * duration) + 1e-9
    assert len(times) / times[-1] <= 1 / MIN_POLL_GAP  # polls per second over the wait


def test_a_short_interval_caps_the_gap() -> None:
    """Tests and the sandbox demo poll fast with a small interval."""
    times = _poll_times(1, interval=0.02)
    assert times[0] == pytest.approx(0.02)
    assert times[-1] - 1 <= 0.02 + 1e-9
