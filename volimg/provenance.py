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
from dataclasses import dataclass, replace
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
KEY_REPLICATE = "volimg_replicate"
KEY_INTENT_BY = "volimg_intent_by"
KEY_INTENT_AT = "volimg_intent_at"

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
    KEY_REPLICATE,
    KEY_INTENT_BY,
    KEY_INTENT_AT,
)

# The mark: volume image metadata volimg sets just before it asks Cinder to upload.
# Cinder copies a volume's custom image metadata onto the image it creates, before its
# 202 (cinder/volume/api.py copy_volume_to_image -> _merge_volume_image_meta), so the
# image is born carrying the mark, with no write to Glance during the upload.
# Two keys, so that removing the mark from the volume afterwards costs two requests
# (os-unset_image_metadata takes one key); image metadata values are text in Cinder
# (parameter_types.image_metadata, "mysql_text") and in Glance, not 255 characters.
KEY_MARK = "volimg_mark"  # always SCHEMA: Glance lists marked images with ?volimg_mark=1
KEY_MARK_RUN = "volimg_mark_run"  # run id, volume, image name digest, time, intent
MARK_KEYS = (KEY_MARK, KEY_MARK_RUN)

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
    # --no-replicate: the upload stayed where it landed although it had a base image.
    # None: not recorded (stamps before this key, adopt, the Glance filter).
    replicate: bool | None = None
    intent_by: str = ""  # the command that last set the intent, e.g. "replicate --store fast"
    intent_at: str = ""  # when (UTC), as stamped_at

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
        if self.replicate is not None:
            props[KEY_REPLICATE] = "true" if self.replicate else "false"
        if self.intent_by:
            props[KEY_INTENT_BY] = self.intent_by
            props[KEY_INTENT_AT] = self.intent_at or self.stamped_at
        return props

    @property
    def is_own_upload(self) -> bool:
        """Made by volimg's own upload (not adopted, not the Glance filter's)."""
        return self.stamped_by is StampedBy.UPLOAD

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
            replicate={"true": True, "false": False}.get(props.get(KEY_REPLICATE, "")),
            intent_by=props.get(KEY_INTENT_BY, ""),
            intent_at=props.get(KEY_INTENT_AT, ""),
        )


def _fields(value: str) -> dict[str, str]:
    """``a=1;b=2`` -> {"a": "1", "b": "2"}; a part without ``=`` is ignored."""
    return dict(part.split("=", 1) for part in value.split(";") if "=" in part)


def name_digest(name: str) -> str:
    """A short digest of an image name: the mark names its image without its length."""
    import hashlib  # not at import time: `volimg --help` imports this module

    return hashlib.sha256(name.encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class Mark:
    """What a run puts on a volume so that the image Cinder makes is born volimg's.

    The mark travels onto every image made from the volume while it is there, by
    anyone (Horizon, the OpenStack CLI), and onto volumes cloned from it. So it names
    the one image it is for: the run's id and a digest of the image name the run asked
    Cinder for. An image carrying a mark whose digest is not its own name's is not
    this run's image (``claims``). A mark is not a stamp: it says "volimg created this
    image and had not finished it"; finishing writes the stamp and removes the mark
    from the image, and the run removes it from the volume once Cinder lets it
    (``os-unset_image_metadata`` is refused while the volume is ``uploading``).
    """

    run: str
    image_name_digest: str
    marked_at: str
    intended: Stamp  # the stamp the image gets when finished; its image_id is ""

    @classmethod
    def for_upload(cls, run: str, image_name: str, intended: Stamp) -> Mark:
        return cls(
            run=run,
            image_name_digest=name_digest(image_name),
            marked_at=intended.stamped_at,
            intended=intended,
        )

    @property
    def volume_id(self) -> str | None:
        return self.intended.source_volume

    def metadata(self) -> dict[str, str]:
        """The volume image metadata of this mark: ``{volimg_mark: 1, volimg_mark_run: ...}``."""
        stamp = self.intended
        replicate = "" if stamp.replicate is None else ("1" if stamp.replicate else "0")
        run = ";".join(
            [
                f"run={self.run}",
                f"vol={stamp.source_volume or UNKNOWN}",
                f"name={self.image_name_digest}",
                f"at={self.marked_at}",
                f"period={stamp.period or ''}",
                f"base={stamp.base_image or NONE}",
                f"type={stamp.type_store or NONE}",
                f"rule={stamp.rule.value}",
                f"prune={'1' if stamp.prune else '0'}",
                f"replicate={replicate}",
                f"also={','.join(stamp.also_stores)}",
            ]
        )
        return {KEY_MARK: SCHEMA, KEY_MARK_RUN: run}

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> Mark | None:
        """The mark in image properties or volume image metadata, or None."""
        fields = _fields(props.get(KEY_MARK_RUN, ""))
        if props.get(KEY_MARK) != SCHEMA or not fields.get("run") or not fields.get("name"):
            return None
        try:
            rule = Rule(fields.get("rule", ""))
        except ValueError:
            return None
        volume = fields.get("vol") or UNKNOWN
        base = fields.get("base") or NONE
        type_store = fields.get("type") or NONE
        intended = Stamp(
            image_id="",
            stamped_by=StampedBy.UPLOAD,
            stamped_at=fields.get("at", ""),
            source_volume=None if volume == UNKNOWN else volume,
            base_image=None if base == NONE else base,
            type_store=None if type_store == NONE else type_store,
            rule=rule,
            prune=fields.get("prune") == "1",
            also_stores=tuple(s for s in fields.get("also", "").split(",") if s),
            period=fields.get("period") or None,
            replicate={"1": True, "0": False}.get(fields.get("replicate", "")),
        )
        return cls(
            run=fields["run"],
            image_name_digest=fields["name"],
            marked_at=fields.get("at", ""),
            intended=intended,
        )

    def claims(self, image_name: str) -> bool:
        """Is an image of this name the one this mark's run created?"""
        return self.volume_id is not None and name_digest(image_name) == self.image_name_digest

    def stamp_for(self, image_id: str, *, stamped_at: str) -> Stamp:
        """The finished stamp of the image this mark claims."""
        return replace(self.intended, image_id=image_id, stamped_at=stamped_at)


def unfinished_mark(image_id: str, image_name: str, props: Mapping[str, str]) -> Mark | None:
    """The mark of a volimg upload that was never finished, or None.

    An image is unfinished when it carries a mark that claims it (its name) and no
    stamp of volimg's own upload; a Glance-filter stamp does not finish it (the filter
    knows neither the volume nor the run's intent).
    """
    mark = Mark.from_properties(props)
    if mark is None or not mark.claims(image_name):
        return None
    stamp = Stamp.from_properties(image_id, props)
    if stamp is not None and stamp.is_own_upload:
        return None
    return mark


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
