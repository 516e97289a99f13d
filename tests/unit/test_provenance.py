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


def _documented_keys(section: str) -> list[str]:
    text = DOC.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(volimg_[a-z_]+)` \|", text, flags=re.M)


def test_the_doc_lists_exactly_the_stamp_keys() -> None:
    assert sorted(_documented_keys("Keys")) == sorted(STAMP_KEYS)


def test_the_doc_lists_exactly_the_mark_keys() -> None:
    from volimg.provenance import MARK_KEYS

    assert sorted(_documented_keys("The mark")) == sorted(MARK_KEYS)


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
        {"replicate": False, "rule": Rule.DEFAULT_STORE},
        {"also_stores": ("fast",), "intent_by": "replicate --store fast", "intent_at": "x"},
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


# --- the mark: a volume's image metadata that makes the image born volimg's ---------


def test_a_mark_survives_the_round_trip_through_volume_image_metadata() -> None:
    from volimg.provenance import MARK_KEYS, Mark

    intended = stamp(image_id="", replicate=False, also_stores=("archive", "cheap"))
    mark = Mark.for_upload("run-1", "boot-vol-2026-11-30", intended)
    metadata = mark.metadata()
    assert set(metadata) == set(MARK_KEYS)
    assert metadata["volimg_mark"] == "1"  # a fixed value: Glance filters on it
    assert not any(k.startswith(("os_glance", "image_id")) for k in metadata)
    assert Mark.from_properties(metadata) == mark


def test_a_mark_claims_only_the_image_its_run_named() -> None:
    from volimg.provenance import Mark

    mark = Mark.for_upload("run-1", "boot-vol-2026-11-30", stamp(image_id=""))
    assert mark.claims("boot-vol-2026-11-30")
    # An image made from the volume by anyone else while the mark was there carries
    # the mark too, under another name: not this run's image.
    assert not mark.claims("boot-vol-horizon")
    assert not mark.claims("")


def test_a_marked_image_is_unfinished_until_volimgs_own_upload_stamp_is_on_it() -> None:
    from volimg.provenance import Mark, unfinished_mark

    mark = Mark.for_upload("run-1", "img-name", stamp(image_id=""))
    born = dict(mark.metadata())
    assert unfinished_mark("img-1", "img-name", born) == mark
    assert unfinished_mark("img-1", "another-name", born) is None
    filter_stamp = stamp(stamped_by=StampedBy.GLANCE_FILTER, source_volume=None).properties()
    assert unfinished_mark("img-1", "img-name", {**born, **filter_stamp}) == mark
    finished = mark.stamp_for("img-1", stamped_at="2026-11-30T07:00:00Z")
    assert finished.image_id == "img-1"
    assert finished.stamped_by is StampedBy.UPLOAD
    assert unfinished_mark("img-1", "img-name", {**born, **finished.properties()}) is None


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"volimg_mark": "1", "volimg_mark_run": "run=r;vol=v"},  # no name digest
        {"volimg_mark": "2", "volimg_mark_run": "run=r;vol=v;name=abc;rule=default-store"},
        {"volimg_mark": "1", "volimg_mark_run": "run=r;vol=v;name=abc;rule=nonsense"},
        {"volimg_mark_run": "run=r;vol=v;name=abc;rule=default-store"},
    ],
)
def test_a_malformed_or_foreign_mark_is_no_mark(metadata: dict[str, str]) -> None:
    from volimg.provenance import Mark

    assert Mark.from_properties(metadata) is None


def test_only_volimgs_own_upload_stamp_is_an_own_upload() -> None:
    assert stamp().is_own_upload
    assert not stamp(stamped_by=StampedBy.ADOPT).is_own_upload
    assert not stamp(stamped_by=StampedBy.GLANCE_FILTER).is_own_upload
