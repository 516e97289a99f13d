"""The drivers of one volume or one image: the steps of ``volimg.steps``, composed.

``run_upload`` (a fresh upload, or the resumption of one found by its stamp) and
``run_replication`` return an ``Outcome``; they never print, and whatever stops them
the outcome says what exists in the cloud now and which command finishes the job.
"""

from __future__ import annotations

from dataclasses import replace

from volimg import events as ev
from volimg.errors import Interrupted, StampFailed, VolimgError
from volimg.gateway import Gateway
from volimg.model import Image
from volimg.planner import Plan, ReplicationPlan, plan_replication
from volimg.provenance import UNKNOWN, Stamp, StampedBy, stamp_time
from volimg.results import SKIPPED, Outcome, RunSettings
from volimg.steps.copy import replicate
from volimg.steps.job import Job, finish
from volimg.steps.prune import prune
from volimg.steps.stamp import stamp_intact, write_stamp
from volimg.steps.upload import adopt_landing, request_upload, wait_for_upload, wait_until_active


def stamp_for(plan: Plan, image_id: str, *, settings: RunSettings, period: str | None) -> Stamp:
    """The provenance volimg records for an upload it makes (docs/provenance.md)."""
    volume_type = plan.facts.volume_type
    hidden = (
        volume_type is not None and not volume_type.specs_visible and not plan.volume_type_store
    )
    return Stamp(
        image_id=image_id,
        stamped_by=StampedBy.UPLOAD,
        stamped_at=stamp_time(settings.clock.wall()),
        source_volume=plan.volume.id,
        base_image=plan.volume.base_image_id,
        type_store=UNKNOWN if hidden else plan.volume_type_store,
        rule=plan.rule,
        prune=plan.placement.prune,
        also_stores=plan.options.also_stores,
        period=period,
    )


def run_upload(
    gateway: Gateway,
    plan: Plan,
    settings: RunSettings,
    emit: ev.EventSink = ev.ignore,
    *,
    period: str | None = None,
    resume: Image | None = None,
    resume_stamp: Stamp | None = None,
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
    """
    job = Job(plan, settings, emit, subject=plan.volume.label)

    def steps() -> None:
        if resume is None:
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
                message=f"image {image_id} is not stamped: volimg stamps an image once Cinder's "
                "upload is over (--once-per finds it by name; else run volimg adopt once it is "
                "active)",
            )
            return
        image = wait_for_upload(gateway, job, plan.volume)
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
            raise
        _stamp_still_on(gateway, job, read_before_stamp=image)
        if job.stamp is None:
            raise StampFailed(
                f"image {image_id} is placed but volimg could not stamp it; {job.where()}",
                hint="audit, retention and --once-per will not recognise it until it is: "
                f"volimg adopt {image_id} --volume {plan.volume.id}"
                + (f" --base {plan.volume.base_image_id}" if plan.volume.base_image_id else ""),
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
    write_stamp(gateway, job, stamp)


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
    write_stamp(gateway, job, wanted)


def run_replication(
    gateway: Gateway, plan: ReplicationPlan, settings: RunSettings, emit: ev.EventSink = ev.ignore
) -> Outcome:
    """Copy an existing image to the plan's stores and prune if asked.

    An image still being uploaded is waited for first, then planned again with the
    stores it really has.
    """
    job = Job(plan, settings, emit, subject=plan.image.name or plan.image.id)
    job.image = plan.image

    def steps() -> None:
        image = plan.image
        if not image.is_active:
            image = wait_until_active(gateway, job, image)
            job.plan = plan_replication(replace(plan.facts, image=image), plan.options)
        replicate(gateway, job, image)
        prune(gateway, job, job.image or image)

    return finish(job, "replicate", steps, gateway)
