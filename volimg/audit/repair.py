"""``volimg audit``: is every volimg image where the rules say, right now? ``--fix`` it.

The expected stores come from the same planner as ``volimg upload``, fed with the cloud
as it is now: the base image's current stores, the volume type's store (or the one the
stamp recorded, when the volume is gone or its type's extra specs are hidden), and the
prune intent of the stamp. Repairs are the upload's own steps (``volimg.executor``:
copy-image, prune), run ``concurrency`` images at a time; what they may remove is
``volimg.safety``'s to say (docs/safety.md), never a rule of this module's own.

Audit also finds the images a volimg run created and never finished (killed between
Cinder's answer and the stamp, ``--no-wait``): they carry the run's mark
(``volimg.provenance.Mark``) and no stamp, and ``--fix`` stamps them as their mark
records before it judges their placement like any other image's.

Cost: two filtered, paged listings (the tag, the mark), one listing of the volumes,
and each base image and volume type read once however many images share it.
"""

from __future__ import annotations

import shlex
import signal
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

from volimg import events as ev
from volimg.core import SharedFacts
from volimg.errors import InputError, Interrupted, NotFoundInCloud, VolimgError
from volimg.executor import run_replication
from volimg.gateway import Gateway
from volimg.model import (
    IMAGE_DEAD_STATUSES,
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
    KEY_MARK,
    KEY_SOURCE_VOLUME,
    MARK_KEYS,
    SCHEMA,
    STAMP_KEYS,
    TAG,
    UNKNOWN,
    Mark,
    Rule,
    Stamp,
    StampedBy,
    stamp_time,
    unfinished_mark,
)
from volimg.results import PENDING, Outcome, RunSettings
from volimg.safety import removable_copies
from volimg.waiting import Clock

# Findings, most pressing first (docs/audit.md): an unfinished image is invisible to
# everything else volimg does until it is stamped; a failed copy or a stale lock needs
# a hand; a missing copy is the placement broken; an extra copy is only waste; the
# rest need nothing from anyone.
UNFINISHED = "unfinished"
FAILED_IMPORT = "failed-import"
STALE_LOCK = "stale-lock"
MISSING = "missing"
EXTRA = "extra"
IMPORTING = "importing"
NOT_ACTIVE = "not-active"
BASE_GONE = "base-gone"
OK = "ok"
FINDINGS = (
    UNFINISHED,
    FAILED_IMPORT,
    STALE_LOCK,
    MISSING,
    EXTRA,
    IMPORTING,
    NOT_ACTIVE,
    BASE_GONE,
    OK,
)
# What --fix leaves alone: nothing to do, or nothing it may do.
UNFIXABLE = (OK, IMPORTING, BASE_GONE, NOT_ACTIVE)
# Not errors: they count as done for the exit code.
SETTLED = (OK, BASE_GONE)

# Repair results.
REPAIRED = "repaired"
REPAIR_FAILED = "repair-failed"
WOULD_REPAIR = "would-repair"
NOT_YET = "not-yet"
LEFT_ALONE = "left-alone"
INTERRUPTED = "interrupted"  # a signal stopped it; what it requested goes on in Glance
NOT_STARTED = "not-started"  # a signal came before it started: nothing was done
REPAIR_RESULTS = (
    REPAIRED,
    REPAIR_FAILED,
    WOULD_REPAIR,
    NOT_YET,
    LEFT_ALONE,
    INTERRUPTED,
    NOT_STARTED,
)

_RECORDED_TYPE = "(recorded)"  # the volume type audit makes up from a stamp's type store


@dataclass(frozen=True, kw_only=True)
class AuditOptions:
    images: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    all_projects: bool = False
    fix: bool = False
    dry_run: bool = False
    concurrency: int = 4

    def command(self, *, image: str | None = None) -> str:
        """The ``volimg audit --fix`` line that repeats this selection (or one image)."""
        words = ["volimg", "audit", "--fix"]
        if self.all_projects:
            words.append("--all-projects")
        if image is not None:
            return shlex.join([*words, "--image", image])
        for ref in self.images:
            words += ["--image", ref]
        for ref in self.volumes:
            words += ["--volume", ref]
        return shlex.join(words)


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One image's state against the rules, with a one-line reason like a plan's."""

    image: Image
    stamp: Stamp | None  # None only for an unfinished image (see ``mark``)
    finding: str
    reason: str
    expected: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    prune: bool = False
    takeover_at: datetime | None = None  # stale-lock: when a new import may take over
    mark: Mark | None = None  # unfinished: the mark of the run that created the image


@dataclass(frozen=True, kw_only=True)
class Repair:
    image_id: str
    finding: str
    result: str  # one of REPAIR_RESULTS
    detail: str = ""
    outcome: Outcome | None = None
    next_step: str | None = None  # how to follow a repair an interrupt left running


@dataclass(frozen=True, kw_only=True)
class AuditOutcome:
    findings: tuple[Finding, ...]
    repairs: tuple[Repair, ...] = ()
    fix: bool = False
    dry_run: bool = False
    audited_at: datetime
    seconds: float = 0.0
    interrupted: Interrupted | None = None
    next_steps: tuple[str, ...] = ()

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
            1 for f in self.findings if f.finding not in SETTLED and f.image.id not in repaired
        )

    @property
    def exit_code(self) -> int:
        """0: everything ok or repaired; 3: findings remain or a repair failed;
        130/143: a signal stopped ``--fix``."""
        if self.interrupted is not None:
            return int(self.interrupted.exit_code)
        failed = any(r.result == REPAIR_FAILED for r in self.repairs)
        return 3 if self.remaining or failed else 0

    @property
    def result(self) -> str:
        """ok | findings | interrupted (docs/json.md)."""
        if self.interrupted is not None:
            return "interrupted"
        return "ok" if self.exit_code == 0 else "findings"


# --- finding ----------------------------------------------------------------------------


@dataclass
class _Cloud:
    """What the audit reads once and shares between images."""

    gateway: Gateway
    identity: CloudIdentity
    glance: GlanceInfo
    volumes: dict[str, Volume]
    shared: SharedFacts = field(default_factory=SharedFacts)

    def base_image(self, image_id: str) -> tuple[Image | None, str]:
        """The base image, or None and why not: gone, or unreadable (a 403, a 500).

        A read error is kept as the answer for every image of that base: it must not
        stop the audit of the others, and asking again per image would only repeat it.
        """

        def read() -> tuple[Image | None, str]:
            try:
                image = self.gateway.get_image(image_id)
            except VolimgError as exc:
                return None, f"could not be read ({exc.message})"
            if image is None or image.status in IMAGE_DEAD_STATUSES:
                return None, "no longer exists (or is hidden from you)"
            return image, ""

        return self.shared.get("base image", image_id, read)

    def volume_type(self, name: str) -> VolumeTypeInfo:
        return self.shared.get(
            "volume type",
            name,
            lambda: (
                self.gateway.volume_type(name, specs_visible=self.identity.is_admin)
                or VolumeTypeInfo(name=name, specs_visible=False)
            ),
        )


def no_replicate(stamp: Stamp) -> bool:
    """Was the image uploaded with ``--no-replicate`` (it stays where it landed)?"""
    if stamp.replicate is not None:
        return not stamp.replicate
    # Stamps before volimg_replicate: rule 3 although there was a base image.
    return stamp.rule is Rule.DEFAULT_STORE and stamp.base_image is not None


def expected_placement(
    cloud: _Cloud, image: Image, stamp: Stamp, *, base: Image | None, now: datetime
) -> Plan:
    """Plan the image's placement with upload's planner and today's cloud.

    The volume may be gone or hidden; the stamp then stands in for it (its base image
    and the type store it recorded). ``base`` is the base image as read now (None:
    gone or unreadable, or there is none).
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
        volume_type = VolumeTypeInfo(name=_RECORDED_TYPE, store=recorded)
    facts = UploadFacts(
        volume=volume,
        volume_type=volume_type,
        base_image=base,
        glance=cloud.glance,
        identity=cloud.identity,
        requested_at=now,
        resuming=image,
    )
    # The stamp carries the uploader's choice: an image uploaded with --no-replicate
    # stays where it landed.
    options = UploadOptions(
        image_name=image.name or image.id,
        replicate=False if no_replicate(stamp) else None,
        also_stores=tuple(s for s in stamp.also_stores if cloud.glance.store(s) is not None),
        prune=stamp.prune,
    )
    return plan_upload(facts, options)


def assess(
    cloud: _Cloud, image: Image, stamp: Stamp | None, *, now: datetime, mark: Mark | None = None
) -> Finding:
    """One finding for one image, the most pressing one."""

    def found(finding: str, reason: str, **extra: object) -> Finding:
        return Finding(
            image=image,
            stamp=stamp,
            finding=finding,
            reason=reason,
            mark=mark,
            **extra,  # type: ignore[arg-type]
        )

    if mark is not None or stamp is None:
        assert mark is not None, "an image audit judges has a stamp or a mark"
        return found(UNFINISHED, _unfinished_reason(image, mark))
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
    base, problem = cloud.base_image(stamp.base_image) if stamp.base_image else (None, "")
    plan = expected_placement(cloud, image, stamp, base=base, now=now)
    expected = plan.placement.target_stores
    if problem and plan.rule is not Rule.TYPE_STORE and not no_replicate(stamp):
        # The rule follows a base image nobody can read now: any store volimg added or
        # removed would be a guess (Glance's default store is not where it belongs).
        return found(
            BASE_GONE,
            f"base image {stamp.base_image} {problem}: there are no stores to follow, so "
            "volimg adds nothing and removes nothing; not an error",
        )
    if no_replicate(stamp) and plan.rule is not Rule.TYPE_STORE:
        # Stays where it landed: only the stores recorded on purpose are copied to.
        missing = tuple(s for s in stamp.also_stores if s in expected and s not in image.stores)
    else:
        missing = tuple(s for s in expected if s not in image.stores)
    extra = removable_copies(image, keep=expected, stamp=stamp, base_readable=not problem)
    outside = tuple(s for s in image.stores if s not in expected and s not in extra)
    common = {"expected": expected, "missing": missing, "extra": extra, "prune": bool(extra)}
    why = _rule_reason(plan, stamp)
    if image.failed_import and missing:
        # A failed copy that a later one made good is history, not a finding.
        return found(
            FAILED_IMPORT,
            f"Glance lists {', '.join(image.failed_import)} in os_glance_failed_import: a copy "
            f"failed; still missing: {', '.join(missing)}",
            **common,
        )
    if missing:
        return found(MISSING, f"not in {', '.join(missing)}: {why}", **common)
    if extra:
        return found(
            EXTRA,
            f"in {', '.join(extra)} although the stamp records prune intent: only "
            f"{', '.join(unique_keep(expected, image, extra))} should hold it",
            **common,
        )
    if problem and stamp.prune and outside:
        return found(
            BASE_GONE,
            f"in {', '.join(image.stores)}: {why}; the copies in {', '.join(outside)} stay, "
            f"as volimg removes nothing while base image {stamp.base_image} {problem}",
            **common,
        )
    return found(OK, f"in {', '.join(image.stores)}: {why}", **common)


def unique_keep(expected: Sequence[str], image: Image, extra: Sequence[str]) -> tuple[str, ...]:
    """The stores that keep the image once the extra copies are gone."""
    kept = [*expected, *(s for s in image.stores if s not in extra)]
    return tuple(dict.fromkeys(kept))


def _unfinished_reason(image: Image, mark: Mark) -> str:
    volume = mark.volume_id or "an unknown volume"
    reason = (
        f"created by volimg run {mark.run} (upload of volume {volume}, marked "
        f"{mark.marked_at or 'at an unknown time'}) and never finished: it carries the "
        "run's mark but no stamp"
    )
    if image.status in IMAGE_DEAD_STATUSES:
        return reason + f"; the image is {image.status}: Cinder's upload failed"
    if not image.is_active:
        return reason + f"; the image is {image.status}: Cinder may still be uploading it"
    return reason


def _rule_reason(plan: Plan, stamp: Stamp) -> str:
    """What the expected stores follow, in the words of the rule (and recorded intent)."""
    if plan.rule is Rule.TYPE_STORE:
        volume_type = plan.facts.volume_type
        recorded = volume_type is not None and volume_type.name == _RECORDED_TYPE
        why = (
            f"the volume type's store {plan.volume_type_store}"
            + (" (as the stamp recorded it)" if recorded else "")
            + " wins"
        )
    elif plan.rule is Rule.BASE_STORES and plan.base_image is not None:
        base = plan.base_image
        why = f"its base image {base.name or base.id} is in {', '.join(base.stores)}"
    elif no_replicate(stamp):
        why = "uploaded with --no-replicate: it stays where it landed"
    else:
        why = "no base image to follow: Glance's default store" + (
            f" {plan.upload_store}" if plan.upload_store else ""
        )
    also = [s for s in stamp.also_stores if s in plan.placement.target_stores]
    if also:
        asked = (
            f"recorded by '{stamp.intent_by}' (volimg_intent_by"
            + (f", {stamp.intent_at}" if stamp.intent_at else "")
            + ")"
            if stamp.intent_by
            else "asked for with --also-store at upload"
        )
        why += f"; also {', '.join(also)}: {asked}"
    return why


def _task(gateway: Gateway, image: Image) -> ImportTask | None:
    try:
        tasks = gateway.image_tasks(image.id)
    except VolimgError:
        return None
    return next((t for t in tasks if t.id == image.import_task), None)


def audited_images(gateway: Gateway, options: AuditOptions, identity: CloudIdentity) -> list[Image]:
    """The images to audit: volimg's (by tag and by mark, server-side), narrowed as asked.

    The mark listing finds the images a volimg run created and never stamped; an image
    whose mark does not claim it (uploaded by someone else from a marked volume) is
    dropped by the caller, as is one whose only stamp was inherited.
    """
    owner = None if options.all_projects else identity.project_id
    images: list[Image] = []
    if options.images:
        images = [gateway.find_image(ref) for ref in options.images]
    elif options.volumes:
        marked = gateway.list_images(properties={KEY_MARK: SCHEMA}, owner=owner)
        for ref in options.volumes:
            volume = gateway.find_volume(ref)
            images += gateway.list_images(
                tag=TAG, properties={KEY_SOURCE_VOLUME: volume.id}, owner=owner
            )
            for image in marked:
                mark = unfinished_mark(image.id, image.name, image.properties)
                if mark is not None and mark.volume_id == volume.id:
                    images.append(image)
    else:
        images = gateway.list_images(tag=TAG, owner=owner, all_projects=options.all_projects)
        images += gateway.list_images(
            properties={KEY_MARK: SCHEMA}, owner=owner, all_projects=options.all_projects
        )
    unique = {image.id: image for image in images}
    return list(unique.values())


def run_audit(
    gateway: Gateway,
    options: AuditOptions,
    settings: RunSettings,
    emit: ev.EventSink = ev.ignore,
) -> AuditOutcome:
    """Find each volimg image's state; with ``fix``, repair what can be repaired."""
    clock = settings.clock
    started, audited_at = clock.monotonic(), clock.wall()
    identity = gateway.identity()
    images = audited_images(gateway, options, identity)
    findings: list[Finding] = []
    unstamped: list[str] = []
    judged: list[tuple[Image, Stamp | None, Mark | None]] = []
    for image in images:
        stamp = Stamp.from_properties(image.id, image.properties)
        mark = unfinished_mark(image.id, image.name, image.properties)
        if stamp is None and mark is None:
            unstamped.append(image.id)
        else:
            judged.append((image, stamp, mark))
    if options.images and unstamped:
        raise InputError(
            f"image {', '.join(unstamped)} carries no volimg stamp of its own, so volimg "
            "cannot tell where it belongs",
            hint="stamp it first: volimg adopt IMAGE --base BASE_IMAGE | --no-base | --volume VOLUME",
        )
    sources = [
        (mark.volume_id if mark is not None else stamp.source_volume if stamp else None)
        for _, stamp, mark in judged
    ]
    volumes = (
        {v.id: v for v in gateway.list_volumes(all_projects=options.all_projects)}
        if any(sources)
        else {}
    )
    cloud = _Cloud(gateway, identity, gateway.glance_info(), volumes)
    for image, stamp, mark in judged:
        finding = assess(cloud, image, stamp, now=audited_at, mark=mark)
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
    interrupted: Interrupted | None = None
    if options.fix:
        repairs, interrupted = _repair_all(gateway, cloud, findings, options, settings, emit)
    steps = [r.next_step for r in repairs if r.next_step]
    return AuditOutcome(
        findings=tuple(findings),
        repairs=tuple(repairs),
        fix=options.fix,
        dry_run=options.dry_run,
        audited_at=audited_at,
        seconds=clock.monotonic() - started,
        interrupted=interrupted,
        next_steps=tuple(dict.fromkeys(steps)),
    )


# --- fixing -----------------------------------------------------------------------------


class _Stop:
    """Set once ``--fix`` is interrupted: no new repair starts, waits end early.

    The workers sleep through this (their clock's ``sleep``), so a running repair
    stops at its next wait as the signal would stop it in the main thread, and its
    outcome says what it had requested (as ``volimg.batch`` does).
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int = signal.SIGINT

    def set(self, signum: int) -> None:
        self.signum = signum
        self.event.set()

    def sleep(self, seconds: float) -> None:
        if self.event.wait(seconds):
            from volimg.signals import Interrupt

            raise Interrupt(self.signum)


def _repair_all(
    gateway: Gateway,
    cloud: _Cloud,
    findings: Sequence[Finding],
    options: AuditOptions,
    settings: RunSettings,
    emit: ev.EventSink,
) -> tuple[list[Repair], Interrupted | None]:
    todo = [f for f in findings if f.finding not in UNFIXABLE]
    if not todo:
        return [], None
    lock = threading.Lock()
    local = threading.local()
    forks: list[Gateway] = []
    stop = _Stop()
    clock = settings.clock
    worker_settings = replace(
        settings, clock=Clock(monotonic=clock.monotonic, sleep=stop.sleep, wall=clock.wall)
    )

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
        if stop.event.is_set():
            return _not_started(finding, options)
        try:
            return _repair(worker_gateway(), cloud, finding, options, worker_settings, locked_emit)
        except KeyboardInterrupt:
            return Repair(
                image_id=finding.image.id,
                finding=finding.finding,
                result=INTERRUPTED,
                detail="interrupted before it sent a request that changes the image",
                next_step=options.command(image=finding.image.id),
            )

    workers = max(1, min(options.concurrency, len(todo)))
    interrupted: Interrupted | None = None
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="volimg-audit")
    futures: list[Future[Repair]] = []
    try:
        futures = [pool.submit(repair, finding) for finding in todo]
        for future in futures:
            while True:
                try:
                    future.result(timeout=0.2)
                    break
                except TimeoutError:
                    continue
    except KeyboardInterrupt as exc:
        signum = Interrupted.signal_of(exc)
        stop.set(signum)
        for future in futures:
            future.cancel()
        interrupted = Interrupted(
            "interrupted; repairs already started were stopped at their next wait (what "
            "they requested goes on in Glance), the others were not started",
            hint="each repair's next step says how to follow it; "
            f"to finish everything, run: {options.command()}",
            signum=signum,
        )
    finally:
        pool.shutdown(wait=True)
        for forked in forks:
            forked.close()
    repairs = []
    for finding, future in zip(todo, futures, strict=False):
        if future.cancelled():
            repairs.append(_not_started(finding, options))
        else:
            repairs.append(future.result())
    for finding in todo[len(futures) :]:
        repairs.append(_not_started(finding, options))
    return repairs, interrupted


def _not_started(finding: Finding, options: AuditOptions) -> Repair:
    return Repair(
        image_id=finding.image.id,
        finding=finding.finding,
        result=NOT_STARTED,
        detail="interrupted before this repair started: nothing was done",
        next_step=options.command(image=finding.image.id),
    )


def _repair(
    gateway: Gateway,
    cloud: _Cloud,
    finding: Finding,
    options: AuditOptions,
    settings: RunSettings,
    emit: ev.EventSink,
) -> Repair:
    image = finding.image
    cloud = replace(cloud, gateway=gateway)  # this worker's connection, the shared facts
    done_first = ""  # what was done before the placement repair (an unfinished image)

    def repair(
        result: str, detail: str = "", outcome: Outcome | None = None, next_step: str | None = None
    ) -> Repair:
        detail = "; ".join(part for part in (done_first, detail) if part)
        return Repair(
            image_id=image.id,
            finding=finding.finding,
            result=result,
            detail=detail,
            outcome=outcome,
            next_step=next_step,
        )

    now = settings.clock.wall()
    if finding.finding == UNFINISHED:
        mark = finding.mark
        assert mark is not None
        if not image.is_active:
            return repair(
                LEFT_ALONE,
                f"the image is {image.status}: "
                + (
                    "Cinder's upload failed, so there is nothing to finish (delete it: "
                    f"openstack image delete {image.id})"
                    if image.status in IMAGE_DEAD_STATUSES
                    else "Cinder may still be uploading it; it is stamped once it is active "
                    "(run audit --fix again then)"
                ),
            )
        stamp = mark.stamp_for(image.id, stamped_at=stamp_time(now))
        if options.dry_run:
            judged = assess(cloud, image, stamp, now=now)
            done_first = f"stamp it as its mark (run {mark.run}) records"
            if judged.finding in UNFIXABLE:
                return repair(WOULD_REPAIR, f"then {judged.finding}: {judged.reason}")
            return repair(WOULD_REPAIR, "then " + _describe_repair(judged))
        try:
            image, stamp = finish_image(gateway, image, stamp)
        except VolimgError as exc:
            return repair(REPAIR_FAILED, f"could not stamp it: {exc.message}")
        done_first = f"stamped it as its mark (run {mark.run}) records"
        judged = assess(cloud, image, stamp, now=now)
        if judged.finding in SETTLED:
            return repair(REPAIRED, judged.reason)
        if judged.finding in UNFIXABLE:
            return repair(LEFT_ALONE, f"{judged.finding}: {judged.reason}")
        finding = replace(judged, finding=UNFINISHED)
    elif finding.finding == STALE_LOCK:
        assert finding.stamp is not None
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
    if not finding.missing and not finding.extra:
        return repair(LEFT_ALONE, "nothing to copy and nothing volimg may remove")
    # When pruning, the targets keep every copy that is not extra: the prune step then
    # removes exactly the copies volimg.safety allows, nothing the finding did not name.
    targets = (
        unique_keep(finding.expected, image, finding.extra) if finding.extra else finding.expected
    )
    try:
        plan = plan_replication(
            ReplicationFacts(image=image, like=None, glance=cloud.glance, identity=cloud.identity),
            ReplicationOptions(stores=targets, prune=bool(finding.extra)),
        )
    except VolimgError as exc:
        return repair(REPAIR_FAILED, exc.message)
    what = _describe_repair(finding)
    if options.dry_run:
        return repair(WOULD_REPAIR, what)
    outcome = run_replication(gateway, plan, settings, emit)
    if outcome.error is None:
        return repair(REPAIRED, what, outcome)
    if isinstance(outcome.error, Interrupted):
        pending = [r.store for r in outcome.stores if r.outcome == PENDING]
        follow = options.command(image=image.id)
        if pending:
            return repair(
                INTERRUPTED,
                f"copy-image of image {image.id} to {', '.join(pending)} was requested and "
                "goes on in Glance",
                outcome,
                next_step=f"once Glance's copy of image {image.id} to {', '.join(pending)} "
                f"has ended: {follow}",
            )
        return repair(
            INTERRUPTED,
            f"interrupted; {outcome.error.message.removeprefix('interrupted; ')}",
            outcome,
            next_step=follow,
        )
    return repair(REPAIR_FAILED, outcome.error.message, outcome)


def finish_image(gateway: Gateway, image: Image, stamp: Stamp) -> tuple[Image, Stamp]:
    """Stamp an unfinished image as its mark records; the image and stamp it now has.

    One JSON-patch writes the stamp and removes the mark (and any stamp key the image
    inherited that the new stamp does not set), then the tag. If another volimg run
    finished the image meanwhile (its patch removed the mark first, so ours is
    refused), that run's stamp stands.
    """
    from volimg.steps.stamp import stamp_intact

    wanted = stamp.properties()
    stale = tuple(k for k in (*MARK_KEYS, *STAMP_KEYS) if k in image.properties and k not in wanted)
    try:
        gateway.set_image_properties(image.id, wanted, remove=stale)
        gateway.add_image_tag(image.id, TAG)
    except VolimgError:
        current = gateway.get_image(image.id)
        own = Stamp.from_properties(image.id, current.properties) if current else None
        if current is None or own is None or not own.is_own_upload or TAG not in current.tags:
            raise
        return current, own
    current = gateway.get_image(image.id)
    if current is None:
        raise NotFoundInCloud(f"image {image.id} disappeared while volimg was stamping it")
    if not stamp_intact(current, stamp):
        raise VolimgError(
            f"Glance did not keep the stamp on image {image.id}",
            hint="check the image's properties with 'openstack image show'",
        )
    return current, stamp


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


@dataclass(frozen=True, kw_only=True)
class AdoptOptions:
    """What ``volimg adopt`` is told; None and False mean "not given"."""

    base: str | None = None  # the base image (name or ID)
    no_base: bool = False  # the image has no base image (a blank volume's)
    volume: str | None = None  # the volume it was uploaded from
    prune_intent: bool | None = None  # None: keep the recorded intent (none at first)
    force: bool = False  # replace a stamp the image already carries


def _stamp_words(stamp: Stamp) -> str:
    """Whose stamp it is, for a refusal."""
    if stamp.stamped_by is StampedBy.UPLOAD:
        who = f"volimg's own upload of volume {stamp.source_volume or UNKNOWN}"
    elif stamp.stamped_by is StampedBy.ADOPT:
        who = "an earlier volimg adopt"
    else:
        who = "the Glance filter"
    return f"{who}, stamped {stamp.stamped_at or 'at an unknown time'}"


def _adopted_base(
    gateway: Gateway, options: AdoptOptions, volume: Volume | None, kept: Stamp | None
) -> str | None:
    """The base image ID the stamp records: --base, --no-base, the volume's, or the kept one."""
    if options.base and options.no_base:
        raise InputError(
            "--base and --no-base contradict each other", hint="pass one of them, not both"
        )
    from_volume = volume.base_image_id if volume is not None else None
    if options.no_base:
        if from_volume and not options.force:
            raise InputError(
                f"--no-base contradicts volume {volume.label if volume else ''}, which was made "
                f"from image {from_volume}",
                hint="drop --no-base to record that base image, or add --force to record none",
            )
        return None
    if options.base:
        base_id = gateway.find_image(options.base).id
        if volume is not None and from_volume != base_id and not options.force:
            made = f"image {from_volume}" if from_volume else "no image (a blank volume)"
            raise InputError(
                f"--base {options.base} contradicts volume {volume.label}, which was made "
                f"from {made}",
                hint="drop --base to record the volume's own base, or add --force to record "
                "--base anyway",
            )
        return base_id
    if volume is not None:
        if from_volume:
            return from_volume
        raise InputError(
            f"volume {volume.label} was not made from an image, so it names no base image",
            hint="pass --no-base to record that the image has none (or --base BASE_IMAGE)",
        )
    if kept is not None:
        return kept.base_image
    raise InputError(
        "adopt needs the image's base: pass --base BASE_IMAGE, --no-base, or --volume VOLUME "
        "(a volume made from an image)",
        hint="--no-base records an image uploaded from a blank volume",
    )


def adopt(gateway: Gateway, image_ref: str, options: AdoptOptions, *, now: datetime) -> Stamp:
    """Stamp an image volimg did not make, so that audit covers it. No data moves.

    It never replaces another stamp unasked (``force``): not volimg's own upload's
    (``--keep`` would no longer know the image), not the Glance filter's, not an
    earlier adopt's; nor does it stamp an unfinished volimg upload, whose mark records
    how ``audit --fix`` finishes it. With ``force`` the fields not named are kept.
    """
    identity = gateway.identity()
    image = gateway.find_image(image_ref)
    existing = Stamp.from_properties(image.id, image.properties)
    mark = unfinished_mark(image.id, image.name, image.properties)
    if mark is not None and not options.force:
        raise InputError(
            f"image {image.id} is an unfinished volimg upload of volume "
            f"{mark.volume_id or UNKNOWN} (run {mark.run}): its mark says how to stamp it",
            hint=f"finish it as that run meant to: volimg audit --fix --image {image.id} "
            "(or add --force to adopt it instead)",
        )
    if existing is not None and not options.force:
        raise InputError(
            f"image {image.id} already carries a volimg stamp ({_stamp_words(existing)}); "
            "adopt does not replace it",
            hint="add --force to replace it; the fields you do not name are kept",
        )
    kept = existing if options.force else None
    volume = gateway.find_volume(options.volume) if options.volume else None
    base_id = _adopted_base(gateway, options, volume, kept)
    type_store: str | None = kept.type_store if kept is not None and volume is None else None
    if volume is not None and volume.volume_type:
        volume_type = gateway.volume_type(volume.volume_type, specs_visible=identity.is_admin)
        if volume_type is None or not volume_type.specs_visible:
            type_store = UNKNOWN
        else:
            type_store = volume_type.store
    replicate = kept.replicate if kept is not None else None
    if type_store not in (None, UNKNOWN):
        rule = Rule.TYPE_STORE
    elif base_id is not None and replicate is not False:
        rule = Rule.BASE_STORES
    else:
        rule = Rule.DEFAULT_STORE
    prune = options.prune_intent
    if prune is None:
        prune = kept.prune if kept is not None else False
    stamped_at = stamp_time(now)
    stamp = Stamp(
        image_id=image.id,
        stamped_by=StampedBy.ADOPT,
        stamped_at=stamped_at,
        source_volume=volume.id if volume is not None else kept.source_volume if kept else None,
        base_image=base_id,
        type_store=type_store,
        rule=rule,
        prune=prune,
        also_stores=kept.also_stores if kept is not None else (),
        period=kept.period if kept is not None else None,
        replicate=replicate,
        intent_by="adopt",
        intent_at=stamped_at,
    )
    wanted = stamp.properties()
    # Keys of a stamp the image inherited (or of the one replaced) that this stamp does
    # not set would otherwise read as part of it; the mark goes too.
    stale = tuple(k for k in (*MARK_KEYS, *STAMP_KEYS) if k in image.properties and k not in wanted)
    gateway.set_image_properties(image.id, wanted, remove=stale)
    gateway.add_image_tag(image.id, TAG)
    current = gateway.get_image(image.id)
    if (
        current is None
        or TAG not in current.tags
        or Stamp.from_properties(image.id, current.properties) != stamp
    ):
        raise VolimgError(
            f"Glance did not keep the stamp on image {image.id}",
            hint="check the image's properties with 'openstack image show'",
        )
    return stamp
