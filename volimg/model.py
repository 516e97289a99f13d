"""Small frozen values that the gateway returns and the rest of volimg works on.

They hold what volimg needs and nothing else, in volimg's own terms: an image's
stores are a tuple, not the comma-joined string Glance puts in the ``stores`` field.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

# A task silent this long is dead (see ImportTask.looks_dead).
STALE_AFTER = timedelta(minutes=5)

# Glance image statuses (glance/domain/__init__.py): an upload ends in one of these.
IMAGE_ACTIVE = "active"
IMAGE_DEAD_STATUSES = ("killed", "deleted", "pending_delete")
# Statuses of an image whose data is still on its way.
IMAGE_FILLING_STATUSES = ("queued", "saving", "uploading", "importing")


def _frozen_mapping(data: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data or {}))


def version_tuple(version: str) -> tuple[int, int]:
    """An API microversion such as "3.71" as a comparable (3, 71)."""
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


def parse_time(value: str | None) -> datetime | None:
    """An OpenStack timestamp (ISO 8601, UTC, with or without Z or microseconds)."""
    if not value:
        return None
    from datetime import timezone

    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def format_time(value: datetime | str | None) -> str:
    """A moment as volimg prints it everywhere, in messages and documents alike:
    ``2026-12-03T11:41:06Z`` (UTC, seconds), whatever form Glance or Cinder gave it in
    (some add microseconds, some no zone). A string that is no ISO 8601 time (a stamp
    another tool wrote) is shown as it is rather than failing the report."""
    from datetime import timezone

    try:
        moment = parse_time(value) if isinstance(value, str) or value is None else value
    except ValueError:
        return str(value)
    if moment is None:
        return "an unknown time"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 volume``, ``2 volumes``: every count volimg writes in words goes through
    here, so that no output says ``1 stamped images`` (``plural`` for the irregular
    ones, ``copy``/``copies``)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def split_stores(value: str | None) -> tuple[str, ...]:
    """Glance's comma-separated store lists (``stores``, ``os_glance_*``) as a tuple."""
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Volume:
    id: str
    name: str
    status: str
    size: int
    volume_type: str | None
    # volume_image_metadata: what Cinder copied from the image the volume was made from.
    image_metadata: Mapping[str, str] = field(default_factory=_frozen_mapping)
    # The volume's own metadata (what --selector matches) and its project, which Cinder
    # shows to anyone allowed to see the volume (os-vol-tenant-attr:tenant_id).
    metadata: Mapping[str, str] = field(default_factory=_frozen_mapping)
    project_id: str | None = None

    @property
    def base_image_id(self) -> str | None:
        """The image the volume was created from (Cinder's x-openstack-base-image-ref)."""
        return self.image_metadata.get("image_id") or None

    @property
    def label(self) -> str:
        """How messages name the volume: its name, shell-quoted when it needs it
        ('my vol'), else its ID."""
        return shlex.quote(self.name) if self.name else self.id


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    status: str
    stores: tuple[str, ...] = ()
    disk_format: str | None = None
    container_format: str | None = None
    visibility: str | None = None
    owner: str | None = None
    created_at: str | None = None
    size: int | None = None
    checksum: str | None = None
    # Import bookkeeping Glance keeps as image properties while copy-image runs.
    import_task: str | None = None
    importing_to_stores: tuple[str, ...] = ()
    failed_import: tuple[str, ...] = ()
    protected: bool = False
    tags: tuple[str, ...] = ()
    updated_at: str | None = None
    # Custom (non-core) properties, as strings: the provenance stamp lives here.
    properties: Mapping[str, str] = field(default_factory=_frozen_mapping)

    @property
    def is_active(self) -> bool:
        return self.status == IMAGE_ACTIVE


@dataclass(frozen=True)
class Store:
    id: str
    description: str = ""
    is_default: bool = False
    read_only: bool = False


@dataclass(frozen=True)
class GlanceInfo:
    """What Glance says about its stores (GET /v2/info/stores) and import methods."""

    stores: tuple[Store, ...]
    import_methods: tuple[str, ...]

    @property
    def multi_store(self) -> bool:
        return bool(self.stores)

    @property
    def default_store(self) -> str | None:
        for store in self.stores:
            if store.is_default:
                return store.id
        return None

    @property
    def copy_image_enabled(self) -> bool:
        return "copy-image" in self.import_methods

    def store(self, store_id: str) -> Store | None:
        for store in self.stores:
            if store.id == store_id:
                return store
        return None


@dataclass(frozen=True)
class VolumeTypeInfo:
    """A volume type and the Glance store its extra spec ``image_service:store_id`` names.

    Cinder hides extra specs from non-admins by default (policy
    ``volume_extension:types_extra_specs:read_sensitive``), so ``specs_visible`` says
    whether ``store`` can be trusted to mean "no store".
    """

    name: str
    store: str | None = None
    specs_visible: bool = True
    # True when the store was inferred from where Glance put an upload (non-admins).
    store_learned: bool = False


@dataclass(frozen=True)
class UploadAccepted:
    """Cinder's 202 answer to os-volume_upload_image."""

    image_id: str
    request_id: str | None = None  # names Cinder's user messages about this upload


@dataclass(frozen=True)
class ImportTask:
    """One Glance task from GET /v2/images/{id}/tasks."""

    id: str
    status: str  # pending | processing | success | failure
    message: str
    request_id: str | None
    created_at: str | None = None
    updated_at: str | None = None
    # The stores the task copies to (its ``input.backend``), set before the 202, unlike
    # the image's os_glance_importing_to_stores, which the task sets a moment later.
    stores: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in ("success", "failure")

    def looks_dead(self, now: datetime) -> bool:
        """No progress for longer than a running copy ever goes without reporting.

        Glance's copy task refreshes ``updated_at`` about once a minute; five silent
        minutes mean the glance-api worker running it is gone. Glance itself waits
        for ``takeover_at`` before it lets another import take the lock.
        """
        moment = parse_time(self.updated_at or self.created_at)
        return moment is not None and now - moment >= STALE_AFTER

    def takeover_at(self) -> datetime | None:
        """When Glance lets a new import take over this task's import lock.

        glance/api/v2/images.py ``_enforce_import_lock``: a task that has not been
        updated for 60 minutes (120 while it is still ``pending``) is considered dead,
        and the next import request preempts it. A running copy refreshes
        ``updated_at`` about once a minute ("Copied N MiB").
        """
        moment = parse_time(self.updated_at or self.created_at)
        if moment is None:
            return None
        return moment + timedelta(minutes=120 if self.status == "pending" else 60)


@dataclass(frozen=True)
class UserMessage:
    """A Cinder user message (GET /v3/messages), Cinder's own account of a failure."""

    event_id: str
    user_message: str
    request_id: str | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class CloudIdentity:
    """Who volimg is talking as; decides what Cinder and Glance policy will allow."""

    project_id: str | None
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


@dataclass(frozen=True)
class QuotaUsage:
    """One of Glance's per-project quotas, as ``GET /v2/info/usage`` reports it.

    Glance counts ``image_size_total`` and ``image_stage_total`` in MiB and the two
    ``image_count_*`` in images (glance/quota/keystone.py ``get_usage``); a negative
    limit is Keystone's "unlimited".
    """

    name: str
    usage: int
    limit: int

    @property
    def unlimited(self) -> bool:
        return self.limit < 0

    @property
    def headroom(self) -> int:
        """What is left before Glance refuses (never below 0)."""
        return max(0, self.limit - self.usage)


@dataclass(frozen=True)
class ImageEndpoint:
    """An image (Glance) endpoint of the Keystone catalog, as the token carries it."""

    region: str | None
    interface: str
    url: str


@dataclass(frozen=True)
class CinderVersions:
    """The microversion range Cinder's ``GET /v3/`` version document advertises."""

    min_version: str | None
    max_version: str | None

    def allows(self, microversion: str) -> bool:
        """The API accepts requests at ``microversion``."""
        if self.max_version is None:
            return microversion == "3.0"
        return version_tuple(self.max_version) >= version_tuple(microversion)
