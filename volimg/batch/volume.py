"""One volume of a batch: skip, resume this period's image, upload, then retention.

Every expected failure of one volume becomes its ``VolumeResult``: it never stops the
others. With ``--once-per``, the image an earlier run of the period made is found
(``_period_images``, ``_earlier_upload``) and finished instead of made again.
"""

from __future__ import annotations

from dataclasses import replace

from volimg import events as ev
from volimg.batch.options import BatchOptions
from volimg.batch.outcome import (
    ALREADY_DONE,
    SKIP_BUSY,
    SKIP_IN_USE,
    SKIP_STATUS,
    SKIPPED,
    TIMED_OUT,
    VolumeResult,
)
from volimg.batch.retention import DELETE_FAILED, RetentionAction, _retention
from volimg.copy_slots import CopySlots
from volimg.core import SharedFacts, gather_upload_facts, time_left
from volimg.errors import VolimgError, VolumeNotUploadable, WaitTimedOut
from volimg.executor import run_upload
from volimg.gateway import Gateway
from volimg.model import IMAGE_DEAD_STATUSES, Image, Volume
from volimg.planner import plan_upload
from volimg.poller import Poller
from volimg.provenance import KEY_PERIOD, TAG, Stamp
from volimg.results import OK, PARTIAL, PLANNED, RESULT_FAILED, RunSettings, planned
from volimg.steps.job import Job
from volimg.steps.mark import clear_stale_mark
from volimg.steps.stamp import finish_unstamped

# Cinder statuses in which os-volume_upload_image is refused because the volume is
# busy with something else (cinder/volume/api.py copy_volume_to_image): skip, not fail.
BUSY_STATUSES = (
    "creating",
    "uploading",
    "downloading",
    "backing-up",
    "restoring-backup",
    "attaching",
    "detaching",
    "deleting",
    "extending",
    "retyping",
    "reserved",
    "maintenance",
    "awaiting-transfer",
)


def _period_images(gateway: Gateway, period: str, project_id: str | None) -> dict[str, list[Image]]:
    """This period's live volimg images, by source volume: one filtered listing."""
    by_volume: dict[str, list[Image]] = {}
    for image in gateway.list_images(tag=TAG, properties={KEY_PERIOD: period}, owner=project_id):
        stamp = Stamp.from_properties(image.id, image.properties)
        if stamp is None or stamp.source_volume is None or image.status in IMAGE_DEAD_STATUSES:
            continue
        by_volume.setdefault(stamp.source_volume, []).append(image)
    return by_volume


def _one_volume(
    gateway: Gateway,
    ref: str,
    volume: Volume,
    *,
    name: str,
    period: str | None,
    earlier: list[Image],
    options: BatchOptions,
    settings: RunSettings,
    shared: SharedFacts,
    emit: ev.EventSink,
    poller: Poller | None = None,
    copy_slots: CopySlots | None = None,
) -> VolumeResult:
    """Plan and run one volume; every expected failure becomes its result."""
    began = settings.clock.monotonic()

    def done(result: str, **fields: object) -> VolumeResult:
        return VolumeResult(
            ref=ref,
            volume=volume,
            result=result,
            seconds=settings.clock.monotonic() - began,
            **fields,  # type: ignore[arg-type]
        )

    if volume.status in options.skip_statuses:
        # Left out on purpose, before any request (--skip-status).
        return done(
            SKIPPED,
            reason=f"volume is {volume.status}: left out by --skip-status",
            skip_reason=SKIP_STATUS,
        )
    try:
        with gateway.within(time_left(settings)):  # the volume's --timeout bounds its reads
            resume = _earlier_upload(gateway, volume, name, period, earlier)
            if resume is None and volume.status in BUSY_STATUSES:
                return done(
                    SKIPPED,
                    reason=f"volume is {volume.status}: busy, not uploaded",
                    skip_reason=SKIP_BUSY,
                )
            facts = gather_upload_facts(
                gateway,
                volume,
                now=settings.clock.wall(),
                shared=shared,
                resuming=resume,
                check_name=False,
            )
        upload_options = replace(options.upload, image_name=resume.name if resume else name)
        try:
            plan = plan_upload(facts, upload_options)
        except VolumeNotUploadable as exc:
            if volume.status == "in-use":
                return done(SKIPPED, reason=exc.message, error=exc, skip_reason=SKIP_IN_USE)
            raise
        if options.dry_run:
            # The run would add one image: it counts among the --keep newest.
            keep = None if options.keep is None else options.keep - (resume is None)
            retention = _retention(
                gateway, volume, keep, keep_id=None, clock=settings.clock, dry_run=True
            )
            return done(PLANNED, outcome=planned("upload", plan), retention=retention)
        if resume is not None and resume.is_active and plan.placement.done_in(resume.stores):
            job = Job(plan, settings, emit, subject=volume.label)
            finished = finish_unstamped(gateway, job, resume, period=period)
            clear_stale_mark(gateway, job, volume)
            retention = _retention(
                gateway, volume, options.keep, keep_id=resume.id, clock=settings.clock
            )
            return done(
                ALREADY_DONE,
                reason=f"image {resume.id} of this period is active and placed"
                + (f"; {finished}" if finished else ""),
                retention=retention,
            )
        stamp = Stamp.from_properties(resume.id, resume.properties) if resume else None
        if stamp is not None and not stamp.is_own_upload:
            # A Glance-filter stamp on the image this run's period made: the upload's
            # own stamp (what the mark records) is still to be written.
            stamp = None
        outcome = run_upload(
            gateway,
            plan,
            settings,
            emit,
            period=period,
            resume=resume,
            resume_stamp=stamp,
            poller=poller,
            copy_slots=copy_slots,
        )
    except VolimgError as exc:
        return done(RESULT_FAILED, error=exc)
    result = outcome.result
    if isinstance(outcome.error, WaitTimedOut):
        # Its own --timeout passed: exit 4 for the batch too, not 1 (docs/cron.md).
        result = TIMED_OUT
    uploaded = 0
    if resume is None and outcome.image is not None:
        uploaded = outcome.image.size or 0
    reason = f"resumed image {resume.id}" if resume is not None else ""
    kept: tuple[RetentionAction, ...] = ()
    if result == OK and outcome.image is not None:
        kept = _retention(
            gateway, volume, options.keep, keep_id=outcome.image.id, clock=settings.clock
        )
        failed_deletes = [a.image_id for a in kept if a.action == DELETE_FAILED]
        if failed_deletes:
            # The image is made and placed; the retention it asked for is not done.
            result = PARTIAL
            reason = f"--keep could not delete {', '.join(failed_deletes)}"
    return done(
        result,
        reason=reason,
        outcome=outcome,
        error=outcome.error,
        retention=kept,
        uploaded_bytes=uploaded,
    )


def _earlier_upload(
    gateway: Gateway, volume: Volume, name: str, period: str | None, stamped: list[Image]
) -> Image | None:
    """The image an earlier run of this period made for the volume, if any.

    First by stamp; then by the period's image name, for a run killed between
    Cinder's answer and the stamp (the name is unique per volume and period).
    """
    if period is None:
        return None
    if stamped:
        return max(stamped, key=lambda i: (i.created_at or "", i.id))
    named = [
        image
        for image in gateway.images_named(name, owner=gateway.identity().project_id)
        if image.status not in IMAGE_DEAD_STATUSES
    ]
    return max(named, key=lambda i: (i.created_at or "", i.id)) if named else None
