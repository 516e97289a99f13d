"""``volimg audit``: is every stamped image where the rules say, right now? ``--fix`` it.

The expected stores come from the same planner as ``volimg upload``, fed with the cloud
as it is now: the base image's current stores, the volume type's store (or the one the
stamp recorded, when the volume is gone or its type's extra specs are hidden), and the
prune intent of the stamp. Repairs are the upload's own steps (``volimg.executor``:
copy-image, prune), run ``concurrency`` images at a time.

Cost: one filtered, paged listing of the stamped images, one listing of the volumes,
and each base image and volume type read once however many images share it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

from volimg import events as ev
from volimg.core import SharedFacts
from volimg.errors import InputError, VolimgError
from volimg.executor import run_replication
from volimg.gateway import Gateway
from volimg.model import (
    CloudIdentity,
    GlanceInfo,
    Image,
    ImportTask,
    Volume,
    VolumeTypeInfo,
)
from volimg.planner import (
    Plan,
    ReplicationFacts,
    ReplicationOptions,
    UploadFacts,
    UploadOptions,
    plan_replication,
    plan_upload,
)
from volimg.provenance import (
    KEY_SOURCE_VOLUME,
    TAG,
    UNKNOWN,
    Rule,
    Stamp,
    StampedBy,
    stamp_time,
)
from volimg.results import Outcome, RunSettings

# Findings, most pressing first (docs/audit.md).
NOT_ACTIVE = "not-active"
IMPORTING = "importing"
STALE_LOCK = "stale-lock"
FAILED_IMPORT = "failed-import"
MISSING = "missing"
EXTRA = "extra"
BASE_GONE = "base-gone"
OK = "ok"
FINDINGS = (OK, MISSING, EXTRA, FAILED_IMPORT, IMPORTING, STALE_LOCK, BASE_GONE, NOT_ACTIVE)
# What --fix leaves alone: nothing to do, or nothing it may do.
UNFIXABLE = (OK, IMPORTING, BASE_GONE, NOT_ACTIVE)

# Repair results.
REPAIRED = "repaired"
REPAIR_FAILED = "repair-failed"
WOULD_REPAIR = "would-repair"
NOT_YET = "not-yet"
LEFT_ALONE = "left-alone"
REPAIR_RESULTS = (REPAIRED, REPAIR_FAILED, WOULD_REPAIR, NOT_YET, LEFT_ALONE)


@dataclass(frozen=True, kw_only=True)
class AuditOptions:
    images: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    all_projects: bool = False
    fix: bool = False
    dry_run: bool = False
    concurrency: int = 4


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One image's state against the rules, with a one-line reason like a plan's."""

    image: Image
    stamp: Stamp
    finding: str
    reason: str
    expected: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    prune: bool = False
    takeover_at: datetime | None = None  # stale-lock: when a new import may take over


@dataclass(frozen=True, kw_only=True)
class Repair:
    image_id: str
    finding: str
    result: str  # repaired | repair-failed | would-repair | not-yet | left-alone
    detail: str = ""
    outcome: Outcome | None = None


@dataclass(frozen=True, kw_only=True)
class AuditOutcome:
    findings: tuple[Finding, ...]
    repairs: tuple[Repair, ...] = ()
    fix: bool = False
    dry_run: bool = False
    audited_at: datetime
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        """Images per finding; every finding present (0 when none)."""
        seen = Counter(f.finding for f in self.findings)
        return {finding: seen.get(finding, 0) for finding in FINDINGS}

    @property
    def remaining(self) -> int:
        """Findings other than ok (and base-gone, which is not an error) still open."""
        repaired = {r.image_id for r in self.repairs if r.result == REPAIRED}
        return sum(
            1
            for f in self.findings
            if f.finding not in (OK, BASE_GONE) and f.image.id not in repaired
        )

    @property
    def exit_code(self) -> int:
        """0: everything ok or repaired; 3: findings remain or a repair failed."""
        failed = any(r.result == REPAIR_FAILED for r in self.repairs)
        return 3 if self.remaining or failed else 0


# --- finding ----------------------------------------------------------------------------


@dataclass
class _Cloud:
    """What the audit reads once and shares between images."""

    gateway: Gateway
    identity: CloudIdentity
    glance: GlanceInfo
    volumes: dict[str, Volume]
    shared: SharedFacts = field(default_factory=SharedFacts)

    def base_image(self, image_id: str) -> Image | None:
        return self.shared.get("image", image_id, lambda: self.gateway.get_image(image_id))

    def volume_type(self, name: str) -> VolumeTypeInfo:
        return self.shared.get(
            "volume type",
            name,
            lambda: (
                self.gateway.volume_type(name, specs_visible=self.identity.is_admin)
                or VolumeTypeInfo(name=name, specs_visible=False)
            ),
        )


def expected_placement(cloud: _Cloud, image: Image, stamp: Stamp, *, now: datetime) -> Plan:
    """Plan the image's placement with upload's planner and today's cloud.

    The volume may be gone or hidden; the stamp then stands in for it (its base image
    and the type store it recorded).
    """
    volume = cloud.volumes.get(stamp.source_volume or "")
    metadata = {"image_id": stamp.base_image} if stamp.base_image else {}
    if volume is None:
        volume = Volume(
            id=stamp.source_volume or UNKNOWN,
            name="",
            status="gone",
            size=0,
            volume_type=None,
            image_metadata=metadata,
        )
    else:
        # The stamp names the base image the upload followed, even if the volume's
        # own metadata was edited since.
        volume = replace(volume, image_metadata={**volume.image_metadata, **metadata})
    volume_type = cloud.volume_type(volume.volume_type) if volume.volume_type else None
    recorded = stamp.type_store if stamp.type_store not in (None, UNKNOWN) else None
    if recorded and (volume_type is None or not volume_type.specs_visible):
        volume_type = VolumeTypeInfo(name=volume.volume_type or "(recorded)", store=recorded)
    base = cloud.base_image(stamp.base_image) if stamp.base_image else None
    facts = UploadFacts(
        volume=volume,
        volume_type=volume_type,
        base_image=base,
        glance=cloud.glance,
        identity=cloud.identity,
        requested_at=now,
        resuming=image,
    )
    # The stamp's rule carries the uploader's choice: a default-store image made from a
    # base image was uploaded with --no-replicate, and stays where it landed.
    follow_base = False if stamp.rule is Rule.DEFAULT_STORE and stamp.base_image else None
    options = UploadOptions(
        image_name=image.name or image.id,
        replicate=follow_base,
        also_stores=tuple(s for s in stamp.also_stores if cloud.glance.store(s) is not None),
        prune=stamp.prune,
    )
    return plan_upload(facts, options)


def assess(cloud: _Cloud, image: Image, stamp: Stamp, *, now: datetime) -> Finding:
    """One finding for one image, the most pressing one."""

    def found(finding: str, reason: str, **extra: object) -> Finding:
        return Finding(image=image, stamp=stamp, finding=finding, reason=reason, **extra)  # type: ignore[arg-type]

    if not image.is_active:
        return found(
            NOT_ACTIVE, f"the image is {image.status}: nothing to place until it is active"
        )
    if image.import_task:
        task = _task(cloud.gateway, image)
        takeover = task.takeover_at() if task is not None else None
        if task is not None and not task.finished and not task.looks_dead(now):
            return found(
                IMPORTING,
                f"import task {task.id} is {task.status} ({task.message or 'no progress yet'}) "
                f"to {', '.join(image.importing_to_stores) or 'its stores'}; left alone",
            )
        when = takeover.strftime("%Y-%m-%dT%H:%M:%SZ") if takeover else "now"
        return found(
            STALE_LOCK,
            f"the import lock names task {image.import_task}, "
            + (
                f"{task.status} and not updated since {task.updated_at}"
                if task is not None
                else "which no longer exists"
            )
            + f"; a new import may take it over from {when} (Glance's rule: 60 minutes "
            "without progress, 120 while pending)",
            takeover_at=takeover,
        )
    plan = expected_placement(cloud, image, stamp, now=now)
    placement = plan.placement
    expected = placement.target_stores
    missing = tuple(s for s in expected if s not in image.stores)
    extra = placement.extra_in(image.stores) if placement.prune else ()
    common = {"expected": expected, "missing": missing, "extra": extra, "prune": placement.prune}
    if image.failed_import:
        return found(
            FAILED_IMPORT,
            f"Glance lists {', '.join(image.failed_import)} in os_glance_failed_import: a copy "
            "failed" + (f"; still missing: {', '.join(missing)}" if missing else ""),
            **common,
        )
    base_gone = stamp.base_image is not None and plan.base_image is None
    if missing:
        why = _rule_reason(plan, stamp)
        return found(MISSING, f"not in {', '.join(missing)}: {why}", **common)
    if extra:
        return found(
            EXTRA,
            f"in {', '.join(extra)} although the stamp records prune intent: only "
            f"{', '.join(expected)} should hold it",
            **common,
        )
    if base_gone:
        return found(
            BASE_GONE,
            f"base image {stamp.base_image} no longer exists (or is hidden from you): "
            "there are no stores to follow; not an error",
            **common,
        )
    return found(OK, f"in {', '.join(image.stores)}: {_rule_reason(plan, stamp)}", **common)


def _rule_reason(plan: Plan, stamp: Stamp) -> str:
    if plan.rule is Rule.TYPE_STORE:
        return f"the volume type's store {plan.volume_type_store} wins"
    if plan.rule is Rule.BASE_STORES and plan.base_image is not None:
        base = plan.base_image
        return f"its base image {base.name or base.id} is in {', '.join(base.stores)}"
    return "no base image to follow: Glance's default store"


def _task(gateway: Gateway, image: Image) -> ImportTask | None:
    try:
        tasks = gateway.image_tasks(image.id)
    except VolimgError:
        return None
    return next((t for t in tasks if t.id == image.import_task), None)


def stamped_images(gateway: Gateway, options: AuditOptions, identity: CloudIdentity) -> list[Image]:
    """The images to audit: volimg's (by tag, server-side), narrowed as asked."""
    owner = None if options.all_projects else identity.project_id
    if options.images:
        images = [gateway.find_image(ref) for ref in options.images]
    elif options.volumes:
        images = []
        for ref in options.volumes:
            volume = gateway.find_volume(ref)
            images += gateway.list_images(
                tag=TAG, properties={KEY_SOURCE_VOLUME: volume.id}, owner=owner
            )
    else:
        images = gateway.list_images(tag=TAG, owner=owner, all_projects=options.all_projects)
    unique = {image.id: image for image in images}
    return list(unique.values())


def run_audit(
    gateway: Gateway,
    options: AuditOptions,
    settings: RunSettings,
    emit: ev.EventSink = ev.ignore,
) -> AuditOutcome:
    """Find each stamped image's state; with ``fix``, repair what can be repaired."""
    clock = settings.clock
    started, audited_at = clock.monotonic(), clock.wall()
    identity = gateway.identity()
    images = stamped_images(gateway, options, identity)
    findings: list[Finding] = []
    unstamped: list[str] = []
    stamped = []
    for image in images:
        stamp = Stamp.from_properties(image.id, image.properties)
        if stamp is None:
            unstamped.append(image.id)
        else:
            stamped.append((image, stamp))
    if options.images and unstamped:
        raise InputError(
            f"image {', '.join(unstamped)} carries no volimg stamp of its own, so volimg "
            "cannot tell where it belongs",
            hint="stamp it first: volimg adopt IMAGE --base BASE_IMAGE [--volume VOLUME]",
        )
    volumes = (
        {v.id: v for v in gateway.list_volumes(all_projects=options.all_projects)}
        if any(s.source_volume for _, s in stamped)
        else {}
    )
    cloud = _Cloud(gateway, identity, gateway.glance_info(), volumes)
    for image, stamp in stamped:
        finding = assess(cloud, image, stamp, now=audited_at)
        findings.append(finding)
        emit(
            ev.ItemFinished(
                elapsed=clock.monotonic() - started,
                subject=image.name or image.id,
                result=finding.finding,
                reason=finding.reason,
            )
        )
    repairs: list[Repair] = []
    if options.fix:
        repairs = _repair_all(gateway, cloud, findings, options, settings, emit)
    return AuditOutcome(
        findings=tuple(findings),
        repairs=tuple(repairs),
        fix=options.fix,
        dry_run=options.dry_run,
        audited_at=audited_at,
        seconds=clock.monotonic() - started,
    )


# --- fixing -----------------------------------------------------------------------------


def _repair_all(
    gateway: Gateway,
    cloud: _Cloud,
    findings: Sequence[Finding],
    options: AuditOptions,
    settings: RunSettings,
    emit: ev.EventSink,
) -> list[Repair]:
    todo = [f for f in findings if f.finding not in UNFIXABLE]
    if not todo:
        return []
    lock = threading.Lock()
    local = threading.local()
    forks: list[Gateway] = []

    def locked_emit(event: ev.Event) -> None:
        with lock:
            emit(event)

    def worker_gateway() -> Gateway:
        if not hasattr(local, "gateway"):
            local.gateway = gateway.fork()
            with lock:
                forks.append(local.gateway)
        return local.gateway  # type: ignore[no-any-return]

    def repair(finding: Finding) -> Repair:
        return _repair(worker_gateway(), cloud, finding, options, settings, locked_emit)

    workers = max(1, min(options.concurrency, len(todo)))
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="volimg-audit") as pool:
            return list(pool.map(repair, todo))
    finally:
        for forked in forks:
            forked.close()


def _repair(
    gateway: Gateway,
    cloud: _Cloud,
    finding: Finding,
    options: AuditOptions,
    settings: RunSettings,
    emit: ev.EventSink,
) -> Repair:
    image = finding.image

    def repair(result: str, detail: str = "", outcome: Outcome | None = None) -> Repair:
        return Repair(
            image_id=image.id,
            finding=finding.finding,
            result=result,
            detail=detail,
            outcome=outcome,
        )

    if finding.finding == STALE_LOCK:
        now = settings.clock.wall()
        if finding.takeover_at is not None and now < finding.takeover_at:
            return repair(
                NOT_YET,
                "Glance refuses a new import until "
                f"{finding.takeover_at.strftime('%Y-%m-%dT%H:%M:%SZ')}; run audit --fix again then",
            )
        # Judge the image with the lock ignored: a new import takes the lock over.
        unlocked = assess(cloud, replace(image, import_task=None), finding.stamp, now=now)
        if not unlocked.missing:
            return repair(
                LEFT_ALONE,
                "the image is in every expected store: the stale lock only matters to the "
                "next import, which Glance lets take it over",
            )
        finding = replace(unlocked, finding=STALE_LOCK)
    stores = finding.expected
    try:
        plan = plan_replication(
            ReplicationFacts(image=image, like=None, glance=cloud.glance, identity=cloud.identity),
            ReplicationOptions(stores=stores, prune=finding.prune),
        )
    except VolimgError as exc:
        return repair(REPAIR_FAILED, exc.message)
    what = _describe_repair(finding)
    if options.dry_run:
        return repair(WOULD_REPAIR, what)
    outcome = run_replication(gateway, plan, settings, emit)
    if outcome.error is None:
        return repair(REPAIRED, what, outcome)
    return repair(REPAIR_FAILED, outcome.error.message, outcome)


def _describe_repair(finding: Finding) -> str:
    parts = []
    if finding.missing:
        parts.append(f"copy to {', '.join(finding.missing)}")
    if finding.extra:
        parts.append(f"remove the copies in {', '.join(finding.extra)} (never the last)")
    if finding.finding == STALE_LOCK:
        parts.insert(0, "take over the stale import lock")
    return "; ".join(parts) or "check again"


# --- adopt ------------------------------------------------------------------------------


def adopt(
    gateway: Gateway,
    image_ref: str,
    base_ref: str,
    volume_ref: str | None,
    *,
    prune_intent: bool,
    now: datetime,
) -> Stamp:
    """Stamp an image volimg did not make, so that audit covers it. No data moves."""
    from volimg.steps.stamp import stamp_intact

    identity = gateway.identity()
    image = gateway.find_image(image_ref)
    base = gateway.find_image(base_ref)
    volume = gateway.find_volume(volume_ref) if volume_ref else None
    type_store: str | None = None
    if volume is not None and volume.volume_type:
        volume_type = gateway.volume_type(volume.volume_type, specs_visible=identity.is_admin)
        if volume_type is None or not volume_type.specs_visible:
            type_store = UNKNOWN
        else:
            type_store = volume_type.store
    stamp = Stamp(
        image_id=image.id,
        stamped_by=StampedBy.ADOPT,
        stamped_at=stamp_time(now),
        source_volume=volume.id if volume else None,
        base_image=base.id,
        type_store=type_store,
        rule=Rule.TYPE_STORE if type_store not in (None, UNKNOWN) else Rule.BASE_STORES,
        prune=prune_intent,
    )
    gateway.set_image_properties(image.id, stamp.properties())
    gateway.add_image_tag(image.id, TAG)
    current = gateway.get_image(image.id)
    if current is None or not stamp_intact(current, stamp):
        raise VolimgError(
            f"Glance did not keep the stamp on image {image.id}",
            hint="check the image's properties with 'openstack image show'",
        )
    return stamp
