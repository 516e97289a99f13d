"""The checks of Glance itself, the service every copy goes through.

``multi-store`` (are there stores, which is the default), ``copy-image`` (among the
import methods), ``copy-image-policy`` (who may copy: no API shows the policy, so the
roles decide what the row can say), ``glance-quota`` (usage under unified limits against
the largest volume) and ``stale-import-locks`` on volimg's images, with
``lock_is_stale``, audit's rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from volimg.doctor.facts import (
    COPY_IMAGE,
    FAIL,
    LOCKS,
    MAX_LOCK_TASK_READS,
    MULTI_STORE,
    OK,
    POLICY,
    QUOTA,
    SKIPPED,
    WARN,
    Check,
    DoctorFacts,
    Unread,
    _unread,
)
from volimg.model import GlanceInfo, Image, ImportTask, QuotaUsage, counted, format_time

# Glance counts its quotas in MiB; Cinder sizes volumes in GiB.
MIB_PER_GIB = 1024
NEARLY_USED = 0.9  # a quota this full warns


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
                f"{counted(len(glance.stores), 'store')} ({_store_list(glance)}), none marked "
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
            f"multi-store is on: {counted(len(glance.stores), 'store')} ({_store_list(glance)}); "
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
    used = f"{quota.usage} of {quota.limit}"
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
                f"{used} MiB used, {quota.headroom} MiB left: {largest}, so {why}",
                fix,
            )
        if name == "image_size_total" and quota.headroom < need * stores:
            return Check(
                QUOTA,
                WARN,
                name,
                f"{used} MiB used, {quota.headroom} MiB left: room for the largest volume's "
                f"upload ({need} MiB) but not for it in all {counted(stores, 'store')} (each copy counts)",
                fix,
            )
        if quota.usage >= quota.limit * NEARLY_USED:
            return Check(
                QUOTA,
                WARN,
                name,
                f"{used} MiB used ({_percent(quota)}), {quota.headroom} MiB left; {largest}",
                fix,
            )
        return Check(QUOTA, OK, name, f"{used} MiB used, {quota.headroom} MiB left; {largest}")
    if quota.headroom < 1:
        what = (
            "no new image can be created"
            if name == "image_count_total"
            else "no upload or copy can start"
            if name == "image_count_uploading"
            else "Glance refuses what counts against it"
        )
        return Check(QUOTA, FAIL, name, f"{used} used: {what}", fix)
    if name == "image_count_total" and quota.headroom < volumes:
        return Check(
            QUOTA,
            WARN,
            name,
            f"{used} used, {quota.headroom} left: fewer than your {counted(volumes, 'volume')}, so a "
            "batch that uploads each of them runs out",
            fix,
        )
    if quota.usage >= quota.limit * NEARLY_USED:
        return Check(
            QUOTA, WARN, name, f"{used} used ({_percent(quota)}), {quota.headroom} left", fix
        )
    return Check(QUOTA, OK, name, f"{used} used, {quota.headroom} left")


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
                f"{counted(len(stamped), 'stamped image')} of yours (tag volimg), none holds "
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
            f"{task.status}, not updated since {format_time(task.updated_at or task.created_at)}"
            if task is not None
            else "which no longer exists"
        )
        if takeover is not None and takeover > facts.now:
            when = format_time(takeover)
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
                f"{counted(len(locked) - len(examined), 'more locked image')} not examined "
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
                f"{counted(len(stamped), 'stamped image')} of yours, {importing} importing now, "
                "no stale import lock",
            )
        )
    return checks
