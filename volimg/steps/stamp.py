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
from volimg.provenance import TAG, Stamp
from volimg.steps.job import Job


def write_stamp(gateway: Gateway, job: Job, stamp: Stamp) -> bool:
    """Stamp the image with volimg's provenance (properties, then the tag).

    Both requests are idempotent. A failure is not fatal to the upload: the image is
    still good, so it is reported, checked again once the image is active, and named
    in the outcome if it never took.
    """
    try:
        gateway.set_image_properties(stamp.image_id, stamp.properties())
        gateway.add_image_tag(stamp.image_id, TAG)
    except VolimgError as exc:
        job.emit(ev.Notice, message=f"could not stamp image {stamp.image_id} yet: {exc.message}")
        return False
    job.stamp = stamp
    job.emit(ev.Stamped, image_id=stamp.image_id, properties=tuple(stamp.properties().items()))
    return True


def stamp_intact(image: Image, stamp: Stamp) -> bool:
    wanted = stamp.properties()
    return TAG in image.tags and all(image.properties.get(k) == v for k, v in wanted.items())
