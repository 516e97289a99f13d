"""``volimg audit --fix``: repair what the findings say, with the upload's own steps.

Repairs are ``volimg.executor``'s copy-image and prune, run ``concurrency`` images at
a time, each worker on its own forked connection; what they may remove is
``volimg.safety``'s to say (docs/safety.md). An unfinished image is first stamped as
its mark records (``finish_image``), then judged and placed like any other.

A signal stops ``--fix`` cleanly (``volimg.signals.StopFlag``): no new repair starts, a running one stops
at its next wait, and each says what it had requested and how to follow it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from volimg import events as ev
from volimg.audit.findings import (
    SETTLED,
    STALE_LOCK,
    UNFINISHED,
    UNFIXABLE,
    Finding,
    _Cloud,
    assess,
    unique_keep,
)
from volimg.audit.listing import AuditOptions
from volimg.errors import Interrupted, NotFoundInCloud, VolimgError
from volimg.executor import run_replication
from volimg.gateway import Gateway
from volimg.model import IMAGE_DEAD_STATUSES, Image, format_time
from volimg.planner import ReplicationFacts, ReplicationOptions, plan_replication
from volimg.provenance import MARK_KEYS, STAMP_KEYS, TAG, Stamp, stamp_time
from volimg.results import PENDING, Outcome, RunSettings
from volimg.waiting import Clock

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


@dataclass(frozen=True, kw_only=True)
class Repair:
    image_id: str
    finding: str
    result: str  # one of REPAIR_RESULTS
    detail: str = ""
    outcome: Outcome | None = None
    next_step: str | None = None  # how to follow a repair an interrupt left running


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
    from volimg.signals import StopFlag

    stop = StopFlag()  # the workers sleep through it, as a batch's do
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
                f"{format_time(finding.takeover_at)}; run audit --fix again then",
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
        gateway.add_image_tag(image.id, TAG)  # first: never a stamp without the tag
        gateway.set_image_properties(image.id, wanted, remove=stale)
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
