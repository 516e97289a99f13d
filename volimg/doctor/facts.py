"""The doctor's vocabulary: what the checks read and what they write.

The statuses and the check names (``CHECKS``, in the order they are reported), the
bounds on what one run reads (``volimg.checkup`` keeps to them), the facts
(``DoctorFacts``, with ``Unread`` for a read the cloud refused or failed, and
``EndpointStores`` for each image endpoint of the catalog), the row (``Check``) and the
report it adds up to (``DoctorReport``), and the small text helpers every check writes
its details with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from volimg.model import (
    CinderVersions,
    CloudIdentity,
    GlanceInfo,
    Image,
    ImportTask,
    QuotaUsage,
    Volume,
    VolumeTypeInfo,
)

# Statuses, from the worst.
FAIL = "fail"
WARN = "warn"
SKIPPED = "skipped"
OK = "ok"
STATUSES = (OK, WARN, FAIL, SKIPPED)

# The checks, in the order they are reported (docs/doctor.md has a section for each).
MULTI_STORE = "multi-store"
COPY_IMAGE = "copy-image"
TYPE_STORE = "volume-type-store"
BASE_STORES = "base-image-stores"
ENDPOINTS = "image-endpoints"
POLICY = "copy-image-policy"
QUOTA = "glance-quota"
LOCKS = "stale-import-locks"
CINDER_API = "cinder-microversions"
FORCE_UPLOAD = "force-upload"
CHECKS = (
    MULTI_STORE,
    COPY_IMAGE,
    TYPE_STORE,
    BASE_STORES,
    ENDPOINTS,
    POLICY,
    QUOTA,
    LOCKS,
    CINDER_API,
    FORCE_UPLOAD,
)

# Bounds on what one run reads, whatever the size of the project (docs/doctor.md).
MAX_LOCK_TASK_READS = 10  # images whose import tasks are read for the stale-lock check
MAX_BASE_IMAGES = 200  # distinct base images looked up (40 a request: 5 requests)
MAX_OTHER_ENDPOINTS = 16  # image endpoints of other regions asked for their stores

_EXAMPLES = 5  # names quoted in a detail before "and N more"


@dataclass(frozen=True)
class Check:
    """One row of the doctor's report."""

    check: str  # one of CHECKS
    status: str  # ok | warn | fail | skipped
    subject: str  # what the row is about: a store, a volume type, an endpoint...
    detail: str  # one line: what the doctor saw
    fix: str | None = None  # the setting, file or command to change; None when ok


@dataclass(frozen=True)
class Unread:
    """A read the doctor could not make: the cloud refused it (403, 404) or failed."""

    reason: str
    refused: bool = False


@dataclass(frozen=True)
class EndpointStores:
    """What one image endpoint of the catalog knows of stores."""

    region: str | None
    url: str
    stores: tuple[str, ...] | Unread | None  # None: a single store (404)
    current: bool = False  # the endpoint volimg itself talks to


@dataclass(frozen=True, kw_only=True)
class DoctorFacts:
    """Everything the checks look at, read once (``volimg.checkup.gather``)."""

    identity: CloudIdentity
    endpoint: str  # the image endpoint volimg talks to
    glance: GlanceInfo
    cinder: CinderVersions
    volumes: tuple[Volume, ...]  # the project's volumes (of --volume-type, if given)
    volume_types: tuple[VolumeTypeInfo, ...] | Unread
    wanted_types: tuple[str, ...] = ()  # --volume-type; empty: every type
    base_images: Mapping[str, Image] | Unread = field(default_factory=lambda: MappingProxyType({}))
    base_images_unread: int = 0  # distinct base images beyond MAX_BASE_IMAGES
    endpoints: tuple[EndpointStores, ...] = ()
    endpoints_unread: int = 0  # image endpoints beyond MAX_OTHER_ENDPOINTS
    usage: tuple[QuotaUsage, ...] | Unread | None = None  # None: no /v2/info/usage
    stamped: tuple[Image, ...] | Unread = ()
    # Import tasks of the locked stamped images examined (at most MAX_LOCK_TASK_READS);
    # None for an image whose tasks could not be read.
    lock_tasks: Mapping[str, tuple[ImportTask, ...] | None] = field(
        default_factory=lambda: MappingProxyType({})
    )
    now: datetime


@dataclass(frozen=True)
class DoctorReport:
    """The rows, and what they add up to."""

    checks: tuple[Check, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Rows per status, every status present (0 when none)."""
        seen = Counter(c.status for c in self.checks)
        return {status: seen.get(status, 0) for status in STATUSES}

    @property
    def result(self) -> str:
        """``fail`` when any check failed, else ``warn`` when any warned, else ``ok``."""
        statuses = {c.status for c in self.checks}
        return FAIL if FAIL in statuses else WARN if WARN in statuses else OK

    @property
    def exit_code(self) -> int:
        """0 when no check failed (warnings allowed), 3 when any did."""
        return 3 if self.result == FAIL else 0


# --- helpers ------------------------------------------------------------------------------


def _some(names: Iterable[str]) -> str:
    """A short list for a one-line detail: the first few, then how many more."""
    listed = list(dict.fromkeys(names))
    if len(listed) <= _EXAMPLES:
        return ", ".join(listed) or "none"
    return f"{', '.join(listed[:_EXAMPLES])} and {len(listed) - _EXAMPLES} more"


def _unread(check: str, subject: str, unread: Unread, fix: str) -> Check:
    """The row of a check whose read failed: skipped when refused, else warn."""
    if unread.refused:
        return Check(check, SKIPPED, subject, f"not allowed to read it: {unread.reason}", fix)
    return Check(check, WARN, subject, f"could not read it: {unread.reason}", fix)
