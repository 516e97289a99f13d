"""``volimg doctor``'s checks: facts about the cloud in, one row per finding out.

When placement fails on a real cloud the cause is almost always the cloud's
configuration (docs/doctor.md). The checks here are pure: ``volimg.checkup`` reads the
cloud once into ``DoctorFacts`` (a bounded number of requests, never one per volume or
image) and ``diagnose`` turns them into ``Check`` rows, each with a status, the thing
it is about, one line of detail and the setting, file or command that fixes it. Each
check goes only as far as the APIs let the caller see and says ``skipped``, with the
reason, beyond that. Nothing here reads the cloud, prints or exits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
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

# Cinder: visibility and protected on os-volume_upload_image from 3.1; user messages
# from 3.3 (cinder/api/microversions.py).
UPLOAD_OPTIONS_MICROVERSION = "3.1"
MESSAGES_MICROVERSION = "3.3"
MIB_PER_GIB = 1024
NEARLY_USED = 0.9  # a quota this full warns

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


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _unread(check: str, subject: str, unread: Unread, fix: str) -> Check:
    """The row of a check whose read failed: skipped when refused, else warn."""
    if unread.refused:
        return Check(check, SKIPPED, subject, f"not allowed to read it: {unread.reason}", fix)
    return Check(check, WARN, subject, f"could not read it: {unread.reason}", fix)


def _store_list(glance: GlanceInfo) -> str:
    parts = []
    for store in glance.stores:
        flags = [
            f for f, on in (("default", store.is_default), ("read-only", store.read_only)) if on
        ]
        parts.append(store.id + (f" ({', '.join(flags)})" if flags else ""))
    return ", ".join(parts)


# --- Glance multi-store and copy-image ---------------------------------------------------


def check_multi_store(facts: DoctorFacts) -> list[Check]:
    """Multi-store is on (GET /v2/info/stores answers), and which store is the default."""
    glance = facts.glance
    if not glance.multi_store:
        return [
            Check(
                MULTI_STORE,
                WARN,
                facts.endpoint,
                "GET /v2/info/stores answers 404: Glance has a single store (enabled_backends "
                "is not set), so volimg uploads but has no stores to place images in",
                "glance-api.conf [DEFAULT] enabled_backends = ID:TYPE, ... and "
                "[glance_store] default_backend = ID, then restart glance-api",
            )
        ]
    if glance.default_store is None:
        return [
            Check(
                MULTI_STORE,
                WARN,
                facts.endpoint,
                f"{_plural(len(glance.stores), 'store')} ({_store_list(glance)}), none marked "
                "default: Cinder's uploads of a type without image_service:store_id have no "
                "store to land in",
                "glance-api.conf [glance_store] default_backend = ID",
            )
        ]
    return [
        Check(
            MULTI_STORE,
            OK,
            facts.endpoint,
            f"multi-store is on: {_plural(len(glance.stores), 'store')} ({_store_list(glance)}); "
            f"Cinder's uploads land in {glance.default_store} unless the volume type names a store",
        )
    ]


def check_copy_image(facts: DoctorFacts) -> list[Check]:
    """``copy-image`` is an enabled import method."""
    glance = facts.glance
    methods = ", ".join(glance.import_methods) or "none"
    subject = "enabled_import_methods"
    if not glance.multi_store:
        return [
            Check(
                COPY_IMAGE,
                SKIPPED,
                subject,
                f"Glance has a single store: copy-image has nowhere to copy (methods: {methods})",
                "enable multiple stores first (see multi-store)",
            )
        ]
    if glance.copy_image_enabled:
        return [Check(COPY_IMAGE, OK, subject, f"copy-image is enabled ({methods})")]
    return [
        Check(
            COPY_IMAGE,
            FAIL,
            subject,
            f"copy-image is not among Glance's import methods ({methods}): every copy "
            "between stores is refused with 400, and images stay in the store Cinder "
            "uploaded them to",
            "glance-api.conf [DEFAULT] enabled_import_methods: add copy-image, then restart "
            "glance-api",
        )
    ]


# --- volume types --------------------------------------------------------------------------


def check_volume_type_stores(facts: DoctorFacts) -> list[Check]:
    """Every volume type's ``image_service:store_id`` names a store this Glance has."""
    types = facts.volume_types
    if isinstance(types, Unread):
        return [
            _unread(
                TYPE_STORE,
                "volume types",
                types,
                "openstack volume type list --long (as an admin)",
            )
        ]
    by_name = {t.name: t for t in types}
    checks: list[Check] = []
    for name in facts.wanted_types:
        if name not in by_name:
            checks.append(
                Check(
                    TYPE_STORE,
                    FAIL,
                    name,
                    f"no volume type named {name!r} is visible to you",
                    "openstack volume type list (the name is case-sensitive)",
                )
            )
    chosen = [by_name[n] for n in facts.wanted_types if n in by_name] or (
        [] if facts.wanted_types else list(types)
    )
    if chosen and not any(t.specs_visible for t in chosen):
        checks.append(
            Check(
                TYPE_STORE,
                SKIPPED,
                "volume types",
                f"Cinder shows extra specs such as image_service:store_id to admins only "
                "(policy volume_extension:types_extra_specs:read_sensitive): "
                f"{_plural(len(chosen), 'type')} not checked ({_some(t.name for t in chosen)})",
                "run volimg doctor as an admin, or ask one: openstack volume type show TYPE "
                "-c properties",
            )
        )
        return checks
    in_use = Counter(v.volume_type for v in facts.volumes if v.volume_type)
    for vtype in chosen:
        checks.append(_type_store(facts, vtype, in_use.get(vtype.name, 0)))
    return checks


def _type_store(facts: DoctorFacts, vtype: VolumeTypeInfo, volumes: int) -> Check:
    glance = facts.glance
    yours = f" ({_plural(volumes, 'volume')} of yours)" if volumes else ""
    store_id = vtype.store
    if store_id is None:
        where = glance.default_store or "Glance's only store"
        return Check(
            TYPE_STORE,
            OK,
            vtype.name,
            f"no image_service:store_id: Cinder's uploads land in {where}{yours}",
        )
    spec = f"image_service:store_id={store_id}"
    set_spec = f"openstack volume type set --property image_service:store_id=STORE {vtype.name}"
    if not glance.multi_store:
        return Check(
            TYPE_STORE,
            WARN,
            vtype.name,
            f"{spec}, but Glance has a single store and ignores the store Cinder names: the "
            f"spec has no effect{yours}",
            f"openstack volume type unset --property image_service:store_id {vtype.name}, "
            "or enable multiple stores",
        )
    store = glance.store(store_id)
    known = ", ".join(s.id for s in glance.stores if not s.read_only)
    if store is None:
        return Check(
            TYPE_STORE,
            FAIL,
            vtype.name,
            f"{spec}, but this Glance has no store {store_id!r} (it has {known}): every "
            f"upload of a volume of this type fails, late, with a generic message{yours}",
            f"{set_spec} (one of {known}), or add {store_id} to glance-api.conf [DEFAULT] "
            "enabled_backends",
        )
    if store.read_only:
        return Check(
            TYPE_STORE,
            FAIL,
            vtype.name,
            f"{spec}, but store {store_id!r} is read-only in Glance (an http store): Glance "
            f"refuses Cinder's upload into it{yours}",
            f"{set_spec} (one of {known})",
        )
    return Check(TYPE_STORE, OK, vtype.name, f"{spec}: a store this Glance has, writable{yours}")


# --- base images and endpoints -------------------------------------------------------------


def check_base_image_stores(facts: DoctorFacts) -> list[Check]:
    """The stores of the base images of the project's volumes are all known here."""
    subject = "base images"
    from_images = [v for v in facts.volumes if v.base_image_id]
    if not facts.glance.multi_store:
        return [
            Check(
                BASE_STORES,
                SKIPPED,
                subject,
                "Glance has a single store: there are no stores to follow",
                "enable multiple stores first (see multi-store)",
            )
        ]
    if not from_images:
        yours = (
            f"none of your {_plural(len(facts.volumes), 'volume')} was made from an image"
            if facts.volumes
            else "you have no volumes"
        )
        return [Check(BASE_STORES, OK, subject, f"{yours}: no base image stores to follow")]
    images = facts.base_images
    if isinstance(images, Unread):
        return [_unread(BASE_STORES, subject, images, "openstack image show BASE_IMAGE")]
    wanted = list(dict.fromkeys(v.base_image_id for v in from_images if v.base_image_id))
    examined = wanted[:MAX_BASE_IMAGES]
    found = [images[i] for i in examined if i in images]
    gone = [i for i in examined if i not in images]
    scope = f"{_plural(len(from_images), 'volume')} made from {_plural(len(wanted), 'image')}" + (
        f" (the first {MAX_BASE_IMAGES} examined)"
        if facts.base_images_unread or len(wanted) > MAX_BASE_IMAGES
        else ""
    )
    gone_note = (
        f"; {_plural(len(gone), 'base image')} gone or not visible to you ({_some(gone)}): "
        "their volumes' images stay in the upload store"
        if gone
        else ""
    )
    active = [i for i in found if i.is_active]
    unshown = [i for i in active if not i.stores]
    if active and len(unshown) == len(active):
        return [
            Check(
                BASE_STORES,
                SKIPPED,
                subject,
                f"{scope}: Glance does not show you their stores (the get_image_location "
                f"policy){gone_note}",
                "run volimg doctor as an admin, or as a member of the images' project",
            )
        ]
    unknown: set[str] = set()
    affected: list[str] = []
    for image in active:
        missing = [s for s in image.stores if facts.glance.store(s) is None]
        if missing:
            unknown.update(missing)
            affected.append(f"{image.name or image.id} in {', '.join(missing)}")
    if not unknown:
        stores = sorted({s for i in active for s in i.stores})
        return [
            Check(
                BASE_STORES,
                OK,
                subject,
                f"{scope}: their stores ({', '.join(stores) or 'none'}) are all known to "
                f"this Glance{gone_note}",
            )
        ]
    details = "; ".join(affected[:_EXAMPLES]) + (
        f"; {len(affected) - _EXAMPLES} more" if len(affected) > _EXAMPLES else ""
    )
    knowers = [
        e
        for e in facts.endpoints
        if isinstance(e.stores, tuple) and set(unknown) <= set(e.stores) and not e.current
    ]
    through = (
        f"; {_endpoint_name(knowers[0])} knows them: copies there must go through it"
        if knowers
        else ""
    )
    fix = (
        f"run volimg against {_endpoint_name(knowers[0])}"
        + (f" (--os-region-name {knowers[0].region})" if knowers[0].region else "")
        if knowers
        else f"add {', '.join(sorted(unknown))} to this glance-api's glance-api.conf "
        "[DEFAULT] enabled_backends, or run volimg against an image endpoint that knows them"
    )
    return [
        Check(
            BASE_STORES,
            WARN,
            subject,
            f"{scope}: {details}, unknown to this Glance ({facts.endpoint}): volimg skips "
            "those stores"
            f"{through}{gone_note}",
            fix,
        )
    ]


def _endpoint_name(endpoint: EndpointStores) -> str:
    return f"region {endpoint.region} ({endpoint.url})" if endpoint.region else endpoint.url


def check_image_endpoints(facts: DoctorFacts) -> list[Check]:
    """Which image endpoint of the catalog sees which stores, and which can copy everywhere."""
    endpoints = facts.endpoints
    if not endpoints:
        return [
            Check(
                ENDPOINTS,
                OK,
                facts.endpoint,
                "the catalog lists no other image endpoint: this one serves every copy",
            )
        ]
    seen: set[str] = set()
    for endpoint in endpoints:
        if isinstance(endpoint.stores, tuple):
            seen.update(endpoint.stores)
    complete = [e for e in endpoints if isinstance(e.stores, tuple) and set(e.stores) >= seen]
    checks: list[Check] = []
    for endpoint in sorted(endpoints, key=lambda e: not e.current):
        subject = _endpoint_name(endpoint)
        own = "volimg uses this endpoint; it " if endpoint.current else ""
        if isinstance(endpoint.stores, Unread):
            checks.append(
                _unread(
                    ENDPOINTS,
                    subject,
                    endpoint.stores,
                    f"curl -H 'X-Auth-Token: ...' {endpoint.url.rstrip('/')}/v2/info/stores",
                )
            )
            continue
        if endpoint.stores is None:
            checks.append(
                Check(
                    ENDPOINTS,
                    WARN,
                    subject,
                    f"{own or 'it '}has a single store (GET /v2/info/stores answers 404), so "
                    "it cannot copy between stores",
                    "copy images through an endpoint with multiple stores",
                )
            )
            continue
        if len(endpoints) == 1:
            checks.append(
                Check(
                    ENDPOINTS,
                    OK,
                    subject,
                    f"the only image endpoint in the catalog; it sees "
                    f"{', '.join(endpoint.stores) or 'no store'}",
                )
            )
            continue
        if endpoint in complete:
            checks.append(
                Check(
                    ENDPOINTS,
                    OK,
                    subject,
                    f"{own}sees every store the catalog's image endpoints know "
                    f"({', '.join(sorted(seen))}), so it can copy everywhere",
                )
            )
            continue
        missing = sorted(seen - set(endpoint.stores))
        better = next((e for e in complete if e.current), complete[0] if complete else None)
        via = (
            f"copies to {', '.join(missing)} must go through {_endpoint_name(better)}"
            if better is not None
            else "no endpoint sees every store"
        )
        checks.append(
            Check(
                ENDPOINTS,
                WARN,
                subject,
                f"{own}sees only {', '.join(endpoint.stores) or 'no store'}, so {via}",
                (
                    f"run volimg against {_endpoint_name(better)}"
                    + (f" (--os-region-name {better.region})" if better.region else "")
                    if better is not None
                    else "list every store in one glance-api's enabled_backends"
                ),
            )
        )
    if facts.endpoints_unread:
        checks.append(
            Check(
                ENDPOINTS,
                WARN,
                "image endpoints",
                f"{_plural(facts.endpoints_unread, 'more image endpoint')} in the catalog not "
                f"asked (the doctor asks {MAX_OTHER_ENDPOINTS} at most)",
                "openstack endpoint list --service image",
            )
        )
    return checks


# --- the copy_image policy ----------------------------------------------------------------


def check_copy_image_policy(facts: DoctorFacts) -> list[Check]:
    """Whether the caller may use copy-image, found without copying anything.

    No API shows a Glance policy: the only answer is a 403 on an import, and the doctor
    never starts one. So an admin gets ``ok`` under Glance's default rule (admin only),
    said as such, and anyone else a ``warn`` with how to find out.
    """
    subject = "policy copy_image"
    who = f"roles {', '.join(facts.identity.roles) or 'none'}"
    how = (
        "oslopolicy-policy-generator --namespace glance --config-file "
        "/etc/glance/glance-api.conf | grep copy_image shows the rule in force; "
        "glance's policy.yaml key copy_image changes it"
    )
    if not facts.glance.copy_image_enabled:
        return [
            Check(
                POLICY,
                SKIPPED,
                subject,
                "copy-image is not enabled: there is no copy to allow",
                "enable copy-image first (see copy-image)",
            )
        ]
    if facts.identity.is_admin:
        return [
            Check(
                POLICY,
                OK,
                subject,
                f"you have the admin role ({who}): allowed under Glance's default copy_image "
                "rule (admin only); no API shows whether policy.yaml changed it",
            )
        ]
    return [
        Check(
            POLICY,
            WARN,
            subject,
            f"Glance's default copy_image rule is admin only and you are not an admin ({who}); "
            "no API shows whether this cloud changed it: your copies may be refused (403) "
            "and images stay in the upload store",
            f"ask an admin to run the copies (volimg replicate), or check: {how}",
        )
    ]


# --- quotas ---------------------------------------------------------------------------------


def check_glance_quota(facts: DoctorFacts) -> list[Check]:
    """Glance's quota usage against the largest volume the project would upload."""
    usage = facts.usage
    by_hand = "openstack registered limit list --service glance; openstack limit list"
    if isinstance(usage, Unread):
        return [_unread(QUOTA, "GET /v2/info/usage", usage, by_hand)]
    if usage is None:
        return [
            Check(
                QUOTA,
                SKIPPED,
                "GET /v2/info/usage",
                "this Glance does not report quota usage (the call came with API 2.13, Xena)",
                by_hand,
            )
        ]
    if not usage:
        return [
            Check(
                QUOTA,
                SKIPPED,
                "GET /v2/info/usage",
                "Glance reports no quota: unified limits are off (use_keystone_limits = false), "
                "so it enforces no per-project image quota",
                "nothing to change; glance-api.conf [DEFAULT] use_keystone_limits turns them on",
            )
        ]
    largest = max((v.size for v in facts.volumes), default=0)
    stores = max(1, sum(1 for s in facts.glance.stores if not s.read_only))
    return [_quota(q, largest, stores, len(facts.volumes)) for q in usage]


def _quota(quota: QuotaUsage, largest_gib: int, stores: int, volumes: int) -> Check:
    name = quota.name
    fix = (
        f"openstack limit create --service glance --project PROJECT --resource-limit N "
        f"{name} (or openstack limit set --resource-limit N LIMIT_ID on the existing one)"
    )
    counted = f"{quota.usage} of {quota.limit}"
    if quota.unlimited:
        return Check(QUOTA, OK, name, f"no limit (-1); {quota.usage} in use")
    if name in ("image_size_total", "image_stage_total"):
        need = largest_gib * MIB_PER_GIB
        largest = f"the largest volume ({largest_gib} GiB) needs up to {need} MiB"
        if quota.headroom < need or (need == 0 and quota.headroom == 0):
            why = (
                "its upload is refused"
                if name == "image_size_total"
                else "copy-image stages the whole image, and is refused"
            )
            return Check(
                QUOTA,
                FAIL,
                name,
                f"{counted} MiB used, {quota.headroom} MiB left: {largest}, so {why}",
                fix,
            )
        if name == "image_size_total" and quota.headroom < need * stores:
            return Check(
                QUOTA,
                WARN,
                name,
                f"{counted} MiB used, {quota.headroom} MiB left: room for the largest volume's "
                f"upload ({need} MiB) but not for it in all {stores} stores (each copy counts)",
                fix,
            )
        if quota.usage >= quota.limit * NEARLY_USED:
            return Check(
                QUOTA,
                WARN,
                name,
                f"{counted} MiB used ({_percent(quota)}), {quota.headroom} MiB left; {largest}",
                fix,
            )
        return Check(QUOTA, OK, name, f"{counted} MiB used, {quota.headroom} MiB left; {largest}")
    if quota.headroom < 1:
        what = (
            "no new image can be created"
            if name == "image_count_total"
            else "no upload or copy can start"
            if name == "image_count_uploading"
            else "Glance refuses what counts against it"
        )
        return Check(QUOTA, FAIL, name, f"{counted} used: {what}", fix)
    if name == "image_count_total" and quota.headroom < volumes:
        return Check(
            QUOTA,
            WARN,
            name,
            f"{counted} used, {quota.headroom} left: fewer than your {volumes} volumes, so a "
            "batch that uploads each of them runs out",
            fix,
        )
    if quota.usage >= quota.limit * NEARLY_USED:
        return Check(
            QUOTA, WARN, name, f"{counted} used ({_percent(quota)}), {quota.headroom} left", fix
        )
    return Check(QUOTA, OK, name, f"{counted} used, {quota.headroom} left")


def _percent(quota: QuotaUsage) -> str:
    return f"{100 * quota.usage // max(1, quota.limit)} %"


# --- import locks ---------------------------------------------------------------------------


def lock_is_stale(image: Image, tasks: Sequence[ImportTask] | None, now: datetime) -> bool:
    """audit's rule (``volimg.audit.assess``): an image's import lock is stale when the
    task it names is gone, finished, or silent for five minutes (``ImportTask.looks_dead``).
    """
    task = next((t for t in tasks or () if t.id == image.import_task), None)
    return task is None or task.finished or task.looks_dead(now)


def check_stale_import_locks(facts: DoctorFacts) -> list[Check]:
    """Stale import locks on the project's stamped images (one listing, bounded task reads)."""
    stamped = facts.stamped
    subject = "stamped images"
    if isinstance(stamped, Unread):
        return [_unread(LOCKS, subject, stamped, "volimg audit")]
    locked = [i for i in stamped if i.import_task]
    if not locked:
        return [
            Check(
                LOCKS,
                OK,
                subject,
                f"{_plural(len(stamped), 'stamped image')} of yours (tag volimg), none holds "
                "an import lock",
            )
        ]
    examined = [i for i in locked if i.id in facts.lock_tasks]
    checks: list[Check] = []
    importing = 0
    for image in examined:
        tasks = facts.lock_tasks[image.id]
        if not lock_is_stale(image, tasks, facts.now):
            importing += 1
            continue
        task = next((t for t in tasks or () if t.id == image.import_task), None)
        takeover = task.takeover_at() if task is not None else None
        state = (
            f"{task.status}, not updated since {task.updated_at or task.created_at}"
            if task is not None
            else "which no longer exists"
        )
        if takeover is not None and takeover > facts.now:
            when = takeover.strftime("%Y-%m-%dT%H:%M:%SZ")
            blocked = (
                f"every copy of this image is refused (409) until {when}, when Glance lets "
                "a new import take the lock over (60 minutes without progress, 120 while "
                "pending)"
            )
            fix = f"volimg audit --fix --image {image.id}, from {when}"
        else:
            blocked = "Glance lets the next import take the lock over"
            fix = f"volimg audit --fix --image {image.id}"
        checks.append(
            Check(
                LOCKS,
                WARN,
                f"image {image.name or image.id} ({image.id})",
                f"import lock names task {image.import_task}, {state}: {blocked}",
                fix,
            )
        )
    if len(locked) > len(examined):
        checks.append(
            Check(
                LOCKS,
                WARN,
                subject,
                f"{_plural(len(locked) - len(examined), 'more locked image')} not examined "
                f"(the doctor reads the tasks of {MAX_LOCK_TASK_READS} at most)",
                "volimg audit (it examines every stamped image)",
            )
        )
    if not checks:
        checks.append(
            Check(
                LOCKS,
                OK,
                subject,
                f"{_plural(len(stamped), 'stamped image')} of yours, {importing} importing now, "
                "no stale import lock",
            )
        )
    return checks


# --- Cinder ---------------------------------------------------------------------------------


def check_cinder_microversions(facts: DoctorFacts) -> list[Check]:
    """Cinder's microversion range and the upload options it allows."""
    versions = facts.cinder
    subject = "Cinder API"
    if versions.max_version is None:
        return [
            Check(
                CINDER_API,
                WARN,
                subject,
                "Cinder's version document advertises no microversions: volimg uploads at "
                "3.0, without visibility or protected",
                "check the block-storage endpoint in the catalog (it should be Cinder's v3 API)",
            )
        ]
    span = f"microversions {versions.min_version or '3.0'} to {versions.max_version}"
    if not versions.allows(UPLOAD_OPTIONS_MICROVERSION):
        return [
            Check(
                CINDER_API,
                WARN,
                subject,
                f"{span}: uploads cannot set visibility or protected (they need 3.1), and "
                "Cinder's user messages (3.3) cannot explain a failed upload",
                "upgrade Cinder (3.1 came with Newton); until then leave out --visibility and "
                "--protected",
            )
        ]
    messages = (
        "; user messages explain failed uploads (3.3+)"
        if versions.allows(MESSAGES_MICROVERSION)
        else "; no user messages (they need 3.3): a failed upload is not explained"
    )
    return [
        Check(
            CINDER_API,
            OK,
            subject,
            f"{span}: uploads may set visibility and protected (3.1+){messages}",
        )
    ]


def check_force_upload(facts: DoctorFacts) -> list[Check]:
    """For an admin: whether ``enable_force_upload`` matters for in-use volumes.

    No API shows the setting (cinder.conf ``[DEFAULT] enable_force_upload``); what the
    doctor can see is whether any volume would need it.
    """
    subject = "enable_force_upload"
    in_use = [v for v in facts.volumes if v.status == "in-use"]
    conf = "cinder.conf [DEFAULT] enable_force_upload"
    if not facts.identity.is_admin:
        return [
            Check(
                FORCE_UPLOAD,
                SKIPPED,
                subject,
                f"an operator's setting no API shows ({conf}); it decides whether in-use "
                f"volumes can be uploaded (volimg upload --force); you have "
                f"{_plural(len(in_use), 'in-use volume')}",
                "ask your operator whether enable_force_upload is true",
            )
        ]
    if not in_use:
        yours = (
            f"none of your {_plural(len(facts.volumes), 'volume')} is in-use"
            if facts.volumes
            else "you have no volumes"
        )
        return [
            Check(
                FORCE_UPLOAD,
                OK,
                subject,
                f"{yours}: the setting (which no API shows) does not matter now",
            )
        ]
    return [
        Check(
            FORCE_UPLOAD,
            WARN,
            subject,
            f"{_plural(len(in_use), 'volume')} in-use ({_some(v.label for v in in_use)}): "
            f"uploading one needs --force, which Cinder refuses (400) unless {conf} = true; "
            "no API shows that setting",
            f"check {conf} on the cinder-api hosts (crudini --get /etc/cinder/cinder.conf "
            "DEFAULT enable_force_upload)",
        )
    ]


#: Each check's function, for docs and tests that walk them.
CHECK_FUNCTIONS: Mapping[str, Callable[[DoctorFacts], list[Check]]] = MappingProxyType(
    {
        MULTI_STORE: check_multi_store,
        COPY_IMAGE: check_copy_image,
        TYPE_STORE: check_volume_type_stores,
        BASE_STORES: check_base_image_stores,
        ENDPOINTS: check_image_endpoints,
        POLICY: check_copy_image_policy,
        QUOTA: check_glance_quota,
        LOCKS: check_stale_import_locks,
        CINDER_API: check_cinder_microversions,
        FORCE_UPLOAD: check_force_upload,
    }
)


def diagnose(facts: DoctorFacts) -> DoctorReport:
    """Run every check on the facts, in the documented order."""
    checks: list[Check] = []
    for run in CHECK_FUNCTIONS.values():
        checks += run(facts)
    return DoctorReport(checks=tuple(checks))
