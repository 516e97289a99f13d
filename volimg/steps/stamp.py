"""The provenance stamp volimg puts on an image: writing it, checking it is intact.

Not part of the upload step: the stamp is written once Cinder's upload is over,
written again when a re-plan or another writer changed it (``volimg.executor``), and
checked by ``volimg adopt`` (``volimg.audit``) as well.
"""

from __future__ import annotations

from volimg import events as ev
from volimg.errors import VolimgError
from volimg.gateway import Gateway
from volimg.model import Image
from volimg.planner import Plan
from volimg.provenance import (
    MARK_KEYS,
    STAMP_KEYS,
    TAG,
    UNKNOWN,
    Stamp,
    StampedBy,
    stamp_time,
    unfinished_mark,
)
from volimg.results import RunSettings
from volimg.steps.job import Job


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
        # Recorded only for --no-replicate, which audit must not undo.
        replicate=False if plan.options.replicate is False else None,
    )


def write_stamp(gateway: Gateway, job: Job, stamp: Stamp, *, image: Image | None = None) -> bool:
    """Stamp the image with volimg's provenance: its properties and its tag, one patch.

    The same patch removes the mark the image was born with, and the stamp keys it
    carries that this stamp does not set (an ancestor's ``volimg_period`` copied by
    Cinder would otherwise read as this image's own); ``image`` is the image as last
    read, to know which keys it carries. Another writer may have removed some of them
    in between (``audit --fix`` finishing the same image): Glance then refuses the
    patch, and it is sent once more as the image is now. A failure is not fatal to the
    upload: the image is still good, so it is reported, checked again once the image is
    active, and named in the outcome if it never took.
    """
    wanted = stamp.properties()

    def stale(current: Image | None) -> tuple[str, ...]:
        if current is None:
            return ()
        keys = (*MARK_KEYS, *STAMP_KEYS)
        return tuple(k for k in keys if k in current.properties and k not in wanted)

    try:
        if image is None:
            # The tag first: audit finds volimg's images by the tag or by the mark, and
            # the patch below removes the mark; a run killed between the two requests
            # must not leave an image with neither (found by the invariant machine).
            gateway.add_image_tag(stamp.image_id, TAG)
            gateway.set_image_properties(stamp.image_id, wanted)
        else:
            # The image as last read says its tags: the tag goes in the same patch that
            # removes the mark, so no moment has neither, and it costs one request.
            try:
                gateway.set_image_properties(
                    stamp.image_id, wanted, remove=stale(image), tags=_with_tag(image)
                )
            except VolimgError:
                if not stale(image):
                    raise
                current = gateway.get_image(stamp.image_id)
                gateway.set_image_properties(
                    stamp.image_id,
                    wanted,
                    remove=stale(current),
                    tags=_with_tag(current) if current is not None else None,
                )
                if current is None:
                    gateway.add_image_tag(stamp.image_id, TAG)
    except VolimgError as exc:
        job.emit(ev.Notice, message=f"could not stamp image {stamp.image_id} yet: {exc.message}")
        return False
    job.stamp = stamp
    job.emit(ev.Stamped, image_id=stamp.image_id, properties=tuple(stamp.properties().items()))
    return True


def _with_tag(image: Image) -> tuple[str, ...]:
    """The image's tags with volimg's: Glance's PATCH replaces the whole list."""
    return (*image.tags, TAG) if TAG not in image.tags else tuple(image.tags)


def stamp_intact(image: Image, stamp: Stamp) -> bool:
    wanted = stamp.properties()
    return TAG in image.tags and all(image.properties.get(k) == v for k, v in wanted.items())


def finish_unstamped(gateway: Gateway, job: Job, image: Image, *, period: str | None) -> str:
    """Stamp an image a volimg run created and never finished; '' if it needs nothing.

    The stamp is the one its mark records (the intent of the run that made it); an
    image without a mark was found by the name the plan gives it (``--once-per``), and
    gets the plan's stamp. Returns a phrase for the report.
    """
    own = Stamp.from_properties(image.id, image.properties)
    if own is not None and own.is_own_upload:
        return ""
    mark = unfinished_mark(image.id, image.name, image.properties)
    if mark is not None:
        stamp = mark.stamp_for(image.id, stamped_at=stamp_time(job.settings.clock.wall()))
        source = f"as its mark (run {mark.run}) records"
    elif isinstance(job.plan, Plan):
        stamp = stamp_for(job.plan, image.id, settings=job.settings, period=period)
        source = "as this run plans it"
    else:
        return ""
    if not write_stamp(gateway, job, stamp, image=image):
        return f"its stamp could not be written yet ({source})"
    job.emit(ev.Notice, message=f"image {image.id} was never stamped: stamped it now, {source}")
    return f"stamped it now, {source}"
