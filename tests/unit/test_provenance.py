"""The provenance stamp: its keys, its round trip, inherited stamps and periods."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from volimg.provenance import (
    STAMP_KEYS,
    Period,
    Rule,
    Stamp,
    StampedBy,
    period_bounds,
    period_key,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "provenance.md"


def stamp(**changes: object) -> Stamp:
    fields: dict[str, object] = {
        "image_id": "img-1",
        "stamped_by": StampedBy.UPLOAD,
        "stamped_at": "2026-11-30T06:30:00Z",
        "source_volume": "vol-1",
        "base_image": "base-1",
        "type_store": None,
        "rule": Rule.BASE_STORES,
        "prune": True,
        "also_stores": ("archive",),
        "period": "2026-11-30",
    }
    fields.update(changes)
    return Stamp(**fields)  # type: ignore[arg-type]


def test_the_doc_lists_exactly_the_stamp_keys() -> None:
    documented = re.findall(r"^\| `(volimg_[a-z_]+)` \|", DOC.read_text(), flags=re.M)
    assert sorted(documented) == sorted(STAMP_KEYS)


def test_a_stamp_survives_the_round_trip_through_glance_properties() -> None:
    original = stamp()
    props = original.properties()
    assert all(isinstance(v, str) for v in props.values())
    assert not any(k.startswith("os_glance") for k in props)
    assert set(props) <= set(STAMP_KEYS)
    assert Stamp.from_properties("img-1", props) == original


@pytest.mark.parametrize(
    "changes",
    [
        {"base_image": None, "rule": Rule.DEFAULT_STORE},
        {"type_store": "archive", "rule": Rule.TYPE_STORE, "also_stores": ()},
        {"source_volume": None, "stamped_by": StampedBy.GLANCE_FILTER, "period": None},
        {"type_store": "unknown", "prune": False},
    ],
)
def test_every_kind_of_stamp_round_trips(changes: dict[str, object]) -> None:
    original = stamp(**changes)
    assert Stamp.from_properties("img-1", original.properties()) == original


def test_a_stamp_inherited_from_an_ancestor_image_is_not_this_images() -> None:
    """Cinder copies custom properties of the base image to images of its volumes."""
    inherited = stamp(image_id="ancestor").properties()
    assert Stamp.from_properties("img-1", inherited) is None


@pytest.mark.parametrize(
    "props",
    [
        {},
        {"volimg_schema": "2", "volimg_image": "img-1"},
        {**stamp().properties(), "volimg_rule": "whatever"},
        {**stamp().properties(), "volimg_stamped_by": ""},
    ],
)
def test_unknown_or_partial_stamps_are_not_read(props: dict[str, str]) -> None:
    assert Stamp.from_properties("img-1", props) is None


AT = datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("period", "key", "start", "end"),
    [
        (Period.HOUR, "2026-12-31T23Z", datetime(2026, 12, 31, 23), datetime(2027, 1, 1)),
        (Period.DAY, "2026-12-31", datetime(2026, 12, 31), datetime(2027, 1, 1)),
        (Period.WEEK, "2026-W53", datetime(2026, 12, 28), datetime(2027, 1, 4)),
        (Period.MONTH, "2026-12", datetime(2026, 12, 1), datetime(2027, 1, 1)),
    ],
)
def test_periods_are_utc_calendar_periods(
    period: Period, key: str, start: datetime, end: datetime
) -> None:
    assert period_key(period, AT) == key
    assert period_bounds(period, AT) == (
        start.replace(tzinfo=timezone.utc),
        end.replace(tzinfo=timezone.utc),
    )


def test_the_doc_example_of_a_year_with_53_iso_weeks_is_right() -> None:
    assert "the week of 2026-12-31 is\n`2026-W53`" in DOC.read_text()
    assert period_key(Period.WEEK, AT) == "2026-W53"


def test_a_period_key_does_not_depend_on_the_callers_time_zone() -> None:
    from datetime import timedelta

    tokyo = AT.astimezone(timezone(timedelta(hours=9)))  # 2027-01-01 08:59 local
    assert period_key(Period.DAY, tokyo) == "2026-12-31"
