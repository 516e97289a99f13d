"""The drivers of one volume or one image: the steps of ``volimg.steps``, composed.

``run_upload`` (a fresh upload, or the resumption of one found by its stamp) and
``run_replication`` return an ``Outcome``; they never print, and whatever stops them
the outcome says what exists in the cloud now and which command finishes the job.
"""

from __future__ import annotations

from dataclasses import replace

from volimg import events as ev
from volimg.copy_slots import CopySlots
from volimg.errors import Interrupted, StampFailed, VolimgError
from volimg.gateway import Gateway
from volimg.model import Image
from volimg.planner import Plan, ReplicationPlan, plan_replication
from volimg.poller import Poller
from volimg.provenance import Stamp, stamp_time
from volimg.results import SKIPPED, Outcome, RunSettings
from volimg.steps.copy import replicate
from volimg.steps.job import Job, finish
from volimg.steps.mark import clear_mark, has_mark, mark_volume
from volimg.steps.prune import prune
from volimg.steps.stamp import finish_unstamped, stamp_for, stamp_intact, write_stamp
from volimg.steps.upload import adopt_landing, request_upload, wait_for_upload, wait_until_active


def run_upload(
    gateway: Gateway,
    plan: Plan,
    settings: RunSettings,
    emit: ev.EventSink = ev.ignore,
    *,
    period: str | None = None,
    resume: Image | None = None,
    resume_stamp: Stamp | None = None,
    poller: Poller | None = None,
    copy_slots: CopySlots | None = None,
) -> Outcome:
    """Upload the volume, wait, stamp, copy where the plan says, prune if asked.

    The stamp is written once Cinder's upload is over, never during it: Glance's PATCH
    saves the whole image row, status included (glance/db/sqlalchemy/api.py
    image_update), so a PATCH that read the image while it was ``queued`` and saves
    after Cinder's data upload set it ``saving`` puts it back to ``queued``, and
    Glance then fails the upload ("could not be found after upload", 410). This was
    seen on Glance 33. A run killed before the stamp leaves an image that
    ``--once-per`` finds by its period name.

    With ``resume``, the upload was requested by an earlier run (found by its stamp or
    its name): no new upload is sent; the steps go on from where that one is.

    With ``poller`` (a batch's), the waits read the poller's listings; the upload's
    wait then ends when the image is active, a moment before Cinder restores the
    volume's status, so the mark is removed from the volume at the end of the steps
    (``clear_mark`` waits out that moment if it must). With ``copy_slots`` (the
    batch's ``--max-copies``), the copy waits for a slot first.
    """
    job = Job(plan, settings, emit, subject=plan.volume.label, poller=poller, copy_slots=copy_slots)

    def steps() -> None:
        marked = False
        if resume is None:
            marked = mark_volume(gateway, job, plan, period=period) is not None
            image_id = request_upload(gateway, job, plan)
        else:
            image_id = job.image_id = resume.id
            job.image = resume
            job.stamp = resume_stamp
        if not settings.wait:
            job.image = gateway.get_image(image_id)
            for store in plan.replicate_to:
                job.settle(store, SKIPPED, "--no-wait: the upload is still running")
            for store in plan.prune_from:
                job.settle(store, SKIPPED, "not pruned: --no-wait")
            job.emit(
                ev.Notice,
                message=f"image {image_id} carries volimg's mark, not yet its stamp: volimg "
                "stamps an image once Cinder's upload is over; the printed next step (or "
                "volimg audit --fix) finishes it",
            )
            return
        image = wait_for_upload(gateway, job, plan.volume)
        unmark = marked or has_mark(plan.volume)
        if unmark and poller is None:
            # The volume is out of 'uploading': Cinder lets the mark be removed now.
            clear_mark(gateway, job, plan.volume)
        placed_by = adopt_landing(job, plan, image)
        _keep_stamp(gateway, job, image, placed_by, period)
        try:
            replicate(gateway, job, image)
            prune(gateway, job, job.image or image)
        except VolimgError as exc:
            # A failed copy or prune still read the image after the stamp; an
            # interrupted run sends nothing more.
            if not isinstance(exc, Interrupted):
                _stamp_still_on(gateway, job, read_before_stamp=image)
                if unmark and poller is not None:
                    clear_mark(gateway, job, plan.volume)
            raise
        if unmark and poller is not None:
            clear_mark(gateway, job, plan.volume)
        _stamp_still_on(gateway, job, read_before_stamp=image)
        if job.stamp is None:
            raise StampFailed(
                f"image {image_id} is placed but volimg could not stamp it; {job.where()}",
                hint="audit, retention and --once-per will not recognise it until it is: "
                + (
                    # The mark Cinder copied onto it says how to finish it.
                    f"volimg audit --fix --image {image_id}"
                    if marked
                    else f"volimg adopt {image_id} --volume {plan.volume.id} --force"
                ),
            )

    return finish(job, "upload", steps, gateway)


def _stamp_still_on(gateway: Gateway, job: Job, read_before_stamp: Image) -> None:
    """If a read made after the stamp shows it overwritten, write it again.

    Glance saves an image's whole property set on every PATCH, and so does the Glance
    filter (docs/glance-filter.md): a writer that read the image before volimg's stamp
    and saved after it leaves its own version. The copy wait reads the image anyway, so
    this costs no request; with no read since the stamp there is nothing to check.
    """
    latest = job.image
    if job.stamp is None or latest is None or latest is read_before_stamp:
        return
    if latest.id != job.stamp.image_id or stamp_intact(latest, job.stamp):
        return
    stamp = job.stamp
    job.emit(
        ev.Notice,
        message=f"the stamp on image {latest.id} was overwritten by another writer; "
        "writing it again",
    )
    job.stamp = None
    write_stamp(gateway, job, stamp, image=latest)


def _keep_stamp(gateway: Gateway, job: Job, image: Image, plan: Plan, period: str | None) -> None:
    """Once the image is active, make sure the stamp is on it and says the right rule.

    Cinder's upload path must not purge custom properties (cinder/image/glance.py
    update with an empty image_meta does not), but volimg checks instead of trusting;
    a re-plan after the landing changes the rule, so the stamp is written again.
    """
    wanted = job.stamp
    if wanted is not None and wanted.rule is not plan.rule:
        wanted = replace(wanted, rule=plan.rule, type_store=plan.volume_type_store)
    elif wanted is None:
        wanted = stamp_for(plan, image.id, settings=job.settings, period=period)
    if job.stamp is not None and wanted == job.stamp and stamp_intact(image, wanted):
        return
    if job.stamp is not None and wanted == job.stamp:
        job.emit(ev.Notice, message=f"the stamp on image {image.id} was lost; writing it again")
    job.stamp = None
    write_stamp(gateway, job, wanted, image=image)


def run_replication(
    gateway: Gateway,
    plan: ReplicationPlan,
    settings: RunSettings,
    emit: ev.EventSink = ev.ignore,
    *,
    intent_by: str | None = None,
) -> Outcome:
    """Copy an existing image to the plan's stores and prune if asked.

    An image still being uploaded is waited for first, then planned again with the
    stores it really has. An image a volimg run created and never finished (a kill, a
    timeout, ``--no-wait``) gets its stamp first, as its mark records. With
    ``intent_by`` (the ``replicate`` command, not audit's repairs), the stores asked
    for are recorded in the image's stamp, so that audit keeps them.
    """
    job = Job(plan, settings, emit, subject=plan.image.name or plan.image.id)
    job.image = plan.image

    def steps() -> None:
        image = plan.image
        if not image.is_active:
            image = wait_until_active(gateway, job, image)
            job.plan = plan_replication(replace(plan.facts, image=image), plan.options)
        finish_unstamped(gateway, job, image, period=None)
        if intent_by is not None:
            _record_intent(gateway, job, image, intent_by)
        replicate(gateway, job, image)
        prune(gateway, job, job.image or image)

    return finish(job, "replicate", steps, gateway)


def _record_intent(gateway: Gateway, job: Job, image: Image, intent_by: str) -> None:
    """Add the stores (and prune) asked of ``volimg replicate`` to the image's stamp."""
    stamp = job.stamp or Stamp.from_properties(image.id, image.properties)
    if stamp is None or not isinstance(job.plan, ReplicationPlan):
        return
    asked = job.plan.placement.target_stores
    also = stamp.also_stores + tuple(s for s in asked if s not in stamp.also_stores)
    prune = stamp.prune or job.plan.options.prune
    if also == stamp.also_stores and prune == stamp.prune:
        return
    wanted = replace(
        stamp,
        also_stores=also,
        prune=prune,
        intent_by=intent_by,
        intent_at=stamp_time(job.settings.clock.wall()),
    )
    job.stamp = None
    write_stamp(gateway, job, wanted, image=image)
