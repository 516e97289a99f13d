"""The provenance stamp: what volimg writes on every image it makes, adopts or audits.

Cinder drops the link between a new image and where it came from: it filters
``image_id`` out of the volume's image metadata (``glance_core_properties``) and sends
the base image only as the ``x-openstack-base-image-ref`` header, which Glance ignores.
So volimg stamps its images itself, with Glance custom properties (JSON-patch ``add``)
and one tag, as soon as Cinder names the image. Audit, retention and the once-per-period
batch all find volimg's images by this stamp, with server-side filters.

Pure: no I/O. docs/provenance.md documents every key; a test checks that it documents
exactly ``STAMP_KEYS``.

One trap: Cinder copies a base image's custom properties to every image uploaded from a
volume made from it. A volume made from a volimg image therefore carries that image's
stamp, and so does any image uploaded from it by anything else. ``volimg_image`` names
the image a stamp was written for; a stamp whose ``volimg_image`` is not the image's
own id was inherited and is not volimg's (``Stamp.from_properties`` returns None).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum

SCHEMA = "1"
TAG = "volimg"

# Property keys. Never os_glance* (Glance reserves them: PATCH answers 403).
KEY_SCHEMA = "volimg_schema"
KEY_IMAGE = "volimg_image"
KEY_STAMPED_BY = "volimg_stamped_by"
KEY_STAMPED_AT = "volimg_stamped_at"
KEY_SOURCE_VOLUME = "volimg_source_volume"
KEY_BASE_IMAGE = "volimg_base_image"
KEY_TYPE_STORE = "volimg_type_store"
KEY_RULE = "volimg_rule"
KEY_PRUNE = "volimg_prune"
KEY_ALSO_STORES = "volimg_also_stores"
KEY_PERIOD = "volimg_period"

STAMP_KEYS = (
    KEY_SCHEMA,
    KEY_IMAGE,
    KEY_STAMPED_BY,
    KEY_STAMPED_AT,
    KEY_SOURCE_VOLUME,
    KEY_BASE_IMAGE,
    KEY_TYPE_STORE,
    KEY_RULE,
    KEY_PRUNE,
    KEY_ALSO_STORES,
    KEY_PERIOD,
)

NONE = "none"  # base image / type store: there was none
UNKNOWN = "unknown"  # type store hidden from the caller, or source volume not known


class StampedBy(str, Enum):
    """Where a stamp came from (``volimg audit`` shows it)."""

    UPLOAD = "upload"  # volimg upload, one volume or a batch
    ADOPT = "adopt"  # volimg adopt: an image volimg did not make
    GLANCE_FILTER = "glance-filter"  # volimg.glance_filter inside glance-api


class Rule(str, Enum):
    """Which of the placement rules decided where the image goes."""

    TYPE_STORE = "volume-type-store"  # rule 1: image_service:store_id wins
    BASE_STORES = "base-image-stores"  # rule 2: every store of the base image
    DEFAULT_STORE = "default-store"  # rule 3: Glance's default store


@dataclass(frozen=True, kw_only=True)
class Stamp:
    """The provenance of one image, as volimg reads and writes it."""

    image_id: str
    stamped_by: StampedBy
    stamped_at: str  # ISO 8601 UTC, whole seconds
    source_volume: str | None  # None: not known (adopted without --volume, Glance filter)
    base_image: str | None  # None: the volume was not made from an image
    type_store: str | None  # None: no type store; UNKNOWN: hidden from the stamper
    rule: Rule
    prune: bool = False  # prune intent: the image should be only in its target stores
    also_stores: tuple[str, ...] = ()
    period: str | None = None  # once-per period key (batch --once-per)

    def properties(self) -> dict[str, str]:
        """The Glance properties of this stamp (all strings, as Glance stores them)."""
        props = {
            KEY_SCHEMA: SCHEMA,
            KEY_IMAGE: self.image_id,
            KEY_STAMPED_BY: self.stamped_by.value,
            KEY_STAMPED_AT: self.stamped_at,
            KEY_SOURCE_VOLUME: self.source_volume or UNKNOWN,
            KEY_BASE_IMAGE: self.base_image or NONE,
            KEY_TYPE_STORE: self.type_store or NONE,
            KEY_RULE: self.rule.value,
            KEY_PRUNE: "true" if self.prune else "false",
        }
        if self.also_stores:
            props[KEY_ALSO_STORES] = ",".join(self.also_stores)
        if self.period:
            props[KEY_PERIOD] = self.period
        return props

    @classmethod
    def from_properties(cls, image_id: str, props: Mapping[str, str]) -> Stamp | None:
        """The stamp on an image, or None if it has none of its own (or an unknown one)."""
        if props.get(KEY_SCHEMA) != SCHEMA or props.get(KEY_IMAGE) != image_id:
            return None
        try:
            stamped_by = StampedBy(props.get(KEY_STAMPED_BY, ""))
            rule = Rule(props.get(KEY_RULE, ""))
        except ValueError:
            return None
        source = props.get(KEY_SOURCE_VOLUME) or UNKNOWN
        base = props.get(KEY_BASE_IMAGE) or NONE
        type_store = props.get(KEY_TYPE_STORE) or NONE
        also = props.get(KEY_ALSO_STORES, "")
        return cls(
            image_id=image_id,
            stamped_by=stamped_by,
            stamped_at=props.get(KEY_STAMPED_AT, ""),
            source_volume=None if source == UNKNOWN else source,
            base_image=None if base == NONE else base,
            type_store=None if type_store == NONE else type_store,
            rule=rule,
            prune=props.get(KEY_PRUNE) == "true",
            also_stores=tuple(s for s in also.split(",") if s),
            period=props.get(KEY_PERIOD) or None,
        )


def stamp_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- once-per periods -------------------------------------------------------------


class Period(str, Enum):
    """``--once-per``: UTC calendar periods; a week starts on Monday (ISO 8601)."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def period_key(period: Period, moment: datetime) -> str:
    """The key of the period ``moment`` falls in, e.g. ``2026-11-30`` for a day.

    Keys of different periods never look alike: ``2026-11-30T06Z`` (hour),
    ``2026-11-30`` (day), ``2026-W49`` (ISO week), ``2026-11`` (month).
    """
    utc = moment.astimezone(timezone.utc)
    if period is Period.HOUR:
        return utc.strftime("%Y-%m-%dT%HZ")
    if period is Period.DAY:
        return utc.strftime("%Y-%m-%d")
    if period is Period.WEEK:
        year, week, _ = utc.isocalendar()
        return f"{year}-W{week:02d}"
    return utc.strftime("%Y-%m")


def period_bounds(period: Period, moment: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the period ``moment`` falls in, in UTC."""
    utc = moment.astimezone(timezone.utc)
    if period is Period.HOUR:
        start = utc.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    day = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAY:
        return day, day + timedelta(days=1)
    if period is Period.WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end
