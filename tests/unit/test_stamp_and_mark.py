"""The stamp and the mark as Glance and Cinder store them: every value, both ways.

tests/unit/test_provenance.py holds the round trips of the usual stamps; these pin what
it left open (each was a surviving mutant of the ``provenance`` mutation target,
docs/testing.md): the exact strings written, the fields a round trip of the usual
stamps never varies, what a stamp or mark written with fewer fields reads as, and the
once-per periods on a machine whose clock is not UTC.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from volimg.provenance import (
    KEY_ALSO_STORES,
    KEY_MARK,
    KEY_MARK_RUN,
    KEY_PRUNE,
    KEY_REPLICATE,
    Mark,
    Period,
    Rule,
    Stamp,
    StampedBy,
    _fields,
    name_digest,
    period_bounds,
    period_key,
    stamp_time,
)

STAMPED_AT = "2026-11-30T06:30:00Z"


def stamp(**changes: object) -> Stamp:
    fields: dict[str, object] = {
        "image_id": "img-1",
        "stamped_by": StampedBy.UPLOAD,
        "stamped_at": STAMPED_AT,
        "source_volume": "vol-1",
        "base_image": "base-1",
        "type_store": None,
        "rule": Rule.BASE_STORES,
    }
    fields.update(changes)
    return Stamp(**fields)  # type: ignore[arg-type]


# --- the stamp ------------------------------------------------------------------------


def test_a_stamp_writes_booleans_and_lists_as_docs_provenance_md_shows_them() -> None:
    props = stamp(prune=False, replicate=True, also_stores=("cheap", "archive")).properties()
    assert (props[KEY_PRUNE], props[KEY_REPLICATE], props[KEY_ALSO_STORES]) == (
        "false",
        "true",
        "cheap,archive",
    )
    props = stamp(prune=True, replicate=False).properties()
    assert (props[KEY_PRUNE], props[KEY_REPLICATE]) == ("true", "false")


@pytest.mark.parametrize(
    "changes",
    [
        {"replicate": True},
        {"also_stores": ("cheap", "archive")},
        {"prune": True, "replicate": True, "also_stores": ("a", "b", "c")},
    ],
)
def test_the_stamps_other_round_trips_leave_out_hold_too(changes: dict[str, object]) -> None:
    original = stamp(**changes)
    assert Stamp.from_properties("img-1", original.properties()) == original


def test_a_stamp_with_only_the_required_keys_reads_with_the_defaults() -> None:
    """An older volimg, or a hand-written stamp, may leave keys out."""
    minimal = {
        "volimg_schema": "1",
        "volimg_image": "img-1",
        "volimg_stamped_by": "adopt",
        "volimg_rule": "default-store",
    }
    assert Stamp.from_properties("img-1", minimal) == Stamp(
        image_id="img-1",
        stamped_by=StampedBy.ADOPT,
        stamped_at="",
        source_volume=None,
        base_image=None,
        type_store=None,
        rule=Rule.DEFAULT_STORE,
    )


# --- the mark ---------------------------------------------------------------------------


def test_a_marks_metadata_is_the_documented_line() -> None:
    intended = stamp(
        image_id="",
        type_store="archive",
        rule=Rule.TYPE_STORE,
        prune=True,
        replicate=True,
        also_stores=("cheap", "fast"),
        period="2026-11-30",
    )
    mark = Mark.for_upload("run-1", "boot-vol-x", intended)
    assert mark.metadata() == {
        KEY_MARK: "1",
        KEY_MARK_RUN: f"run=run-1;vol=vol-1;name={name_digest('boot-vol-x')};at={STAMPED_AT};"
        "period=2026-11-30;base=base-1;type=archive;rule=volume-type-store;prune=1;"
        "replicate=1;also=cheap,fast",
    }
    plain = Mark.for_upload("run-2", "boot-vol-y", stamp(image_id="", base_image=None))
    assert plain.metadata()[KEY_MARK_RUN] == (
        f"run=run-2;vol=vol-1;name={name_digest('boot-vol-y')};at={STAMPED_AT};"
        "period=;base=none;type=none;rule=base-image-stores;prune=0;replicate=;also="
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"type_store": "archive", "rule": Rule.TYPE_STORE},
        {"base_image": None, "rule": Rule.DEFAULT_STORE},
        {"source_volume": None},
        {"replicate": True},
        {"replicate": False, "prune": True},
        {"replicate": None, "prune": False, "period": None},
        {"period": "2026-W49", "also_stores": ("cheap",)},
    ],
)
def test_every_field_of_a_mark_round_trips(changes: dict[str, object]) -> None:
    mark = Mark.for_upload("run-1", "boot-vol-x", stamp(image_id="", **changes))
    assert Mark.from_properties(mark.metadata()) == mark


def test_a_mark_with_only_its_run_name_and_rule_reads_with_the_defaults() -> None:
    props = {KEY_MARK: "1", KEY_MARK_RUN: "run=r1;name=abc;rule=default-store"}
    assert Mark.from_properties(props) == Mark(
        run="r1",
        image_name_digest="abc",
        marked_at="",
        intended=Stamp(
            image_id="",
            stamped_by=StampedBy.UPLOAD,
            stamped_at="",
            source_volume=None,
            base_image=None,
            type_store=None,
            rule=Rule.DEFAULT_STORE,
        ),
    )


@pytest.mark.parametrize("fields", ["run=r1;rule=default-store", "name=abc;rule=default-store"])
def test_a_mark_needs_both_its_run_and_its_image_name(fields: str) -> None:
    assert Mark.from_properties({KEY_MARK: "1", KEY_MARK_RUN: fields}) is None


def test_a_mark_field_splits_at_its_first_equals_sign() -> None:
    assert _fields("run=a=b;also=x;junk;=;name=") == {"run": "a=b", "also": "x", "": "", "name": ""}


def test_the_name_digest_is_sixteen_hex_digits_of_sha256() -> None:
    digest = name_digest("boot-vol-20261130T063000Z")
    assert digest == hashlib.sha256(b"boot-vol-20261130T063000Z").hexdigest()[:16]
    assert len(digest) == 16


def test_finishing_a_mark_stamps_the_image_at_the_time_given() -> None:
    mark = Mark.for_upload("run-1", "n", stamp(image_id=""))
    finished = mark.stamp_for("img-9", stamped_at="2026-12-01T00:00:00Z")
    assert (finished.image_id, finished.stamped_at) == ("img-9", "2026-12-01T00:00:00Z")
    assert (finished.source_volume, finished.base_image, finished.rule) == (
        "vol-1",
        "base-1",
        Rule.BASE_STORES,
    )


# --- once-per periods -------------------------------------------------------------------


@pytest.fixture
def local_time_in_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's own time zone is UTC+9: periods must still be UTC's."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_in_tokyo")
def test_a_stamps_time_is_utc_in_whole_seconds_whatever_the_machines_time_zone() -> None:
    new_york = timezone(timedelta(hours=-5))
    assert stamp_time(datetime(2026, 11, 30, 18, 5, 9, 999999, tzinfo=new_york)) == (
        "2026-11-30T23:05:09Z"
    )


@pytest.mark.usefixtures("local_time_in_tokyo")
@pytest.mark.parametrize(
    ("period", "key", "start"),
    [
        (Period.HOUR, "2026-12-31T23Z", datetime(2026, 12, 31, 23)),
        (Period.DAY, "2026-12-31", datetime(2026, 12, 31)),
        (Period.WEEK, "2026-W53", datetime(2026, 12, 28)),
        (Period.MONTH, "2026-12", datetime(2026, 12, 1)),
    ],
)
def test_periods_are_utcs_whatever_the_machines_time_zone(
    period: Period, key: str, start: datetime
) -> None:
    moment = datetime(2027, 1, 1, 8, 59, 59, tzinfo=timezone(timedelta(hours=9)))
    assert datetime.now().astimezone().utcoffset() == timedelta(hours=9)
    assert period_key(period, moment) == key
    assert period_bounds(period, moment)[0] == start.replace(tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        (Period.HOUR, datetime(2026, 11, 30, 6), datetime(2026, 11, 30, 7)),
        (Period.DAY, datetime(2026, 11, 30), datetime(2026, 12, 1)),
        (Period.WEEK, datetime(2026, 11, 30), datetime(2026, 12, 7)),
        (Period.MONTH, datetime(2026, 11, 1), datetime(2026, 12, 1)),
    ],
)
def test_a_periods_bounds_are_whole_and_a_month_ends_where_the_next_begins(
    period: Period, start: datetime, end: datetime
) -> None:
    moment = datetime(2026, 11, 30, 6, 30, 15, 123456, tzinfo=timezone.utc)
    assert period_bounds(period, moment) == (
        start.replace(tzinfo=timezone.utc),
        end.replace(tzinfo=timezone.utc),
    )
