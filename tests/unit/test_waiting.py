"""The one polling policy: deadline, passing faults, and a clock that never sleeps."""

from __future__ import annotations

import pytest

from volimg.errors import CloudError, NotFoundInCloud
from volimg.waiting import MAX_CONSECUTIVE_POLL_ERRORS, Clock, Deadline, PollTimedOut, poll


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
    assert fake.slept == [0.25, 0.5, 1, 2, 2]  # quick at first, then every interval


def test_gives_up_at_the_deadline_with_the_last_thing_seen() -> None:
    fake = FakeClock()

    with pytest.raises(PollTimedOut) as info:
        poll(lambda: "saving", done=lambda s: False, deadline=Deadline(fake.clock(), 5), interval=2)

    assert info.value.last == "saving"
    assert sum(fake.slept) == pytest.approx(5)
    assert fake.slept == [0.25, 0.5, 1, 2, 1.25]  # the last sleep ends at the deadline


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
