"""The mark: volimg's upload is volimg's from the image's first second.

Glance must not be written to while Cinder uploads (a PATCH can fail the upload, see
``volimg.executor``), and a run can be killed between Cinder's answer and the stamp.
So the run marks the volume instead, just before it asks Cinder to upload: Cinder
copies the volume's custom image metadata onto the image it creates, before its 202
(cinder/volume/api.py ``copy_volume_to_image`` -> ``_merge_volume_image_meta``). The
image is born carrying the mark, and every later path (a re-run, ``replicate``,
``audit --fix``) can finish it as the run intended (``volimg.provenance.Mark``).

The mark is removed from the volume once Cinder lets it (``os-unset_image_metadata``
is refused while the volume is ``uploading``): by this run after its upload, or by the
next run that finds a mark left behind (``clear_stale_mark``). A mark that cannot be
written or removed is reported and never stops the upload: the stamp written after
the upload still makes the image volimg's.
"""

from __future__ import annotations

import uuid

from volimg import events as ev
from volimg.errors import RequestRejected, VolimgError
from volimg.gateway import Gateway
from volimg.model import Volume
from volimg.planner import Plan
from volimg.provenance import MARK_KEYS, Mark
from volimg.steps.job import Job
from volimg.steps.stamp import stamp_for


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def mark_volume(gateway: Gateway, job: Job, plan: Plan, *, period: str | None) -> Mark | None:
    """Put this run's mark on the volume; None (and a notice) if Cinder refused it."""
    intended = stamp_for(plan, "", settings=job.settings, period=period)
    mark = Mark.for_upload(new_run_id(), plan.upload.image_name, intended)
    try:
        gateway.set_volume_image_metadata(plan.volume.id, mark.metadata())
    except VolimgError as exc:
        job.emit(
            ev.Notice,
            message=f"could not mark volume {plan.volume.label} before the upload "
            f"({exc.message}); the image is volimg's once it is stamped after the upload",
        )
        return None
    return mark


def clear_mark(gateway: Gateway, job: Job, volume: Volume) -> None:
    """Remove the mark from the volume (one request a key); a failure is only reported.

    A batch's upload ends when its image is active, a moment before Cinder restores
    the volume's status; Cinder refuses the removal while the volume is ``uploading``
    (cinder/volume/api.py ``delete_volume_metadata``), so volimg then waits for the
    volume to leave that status and asks again (removing a key twice is harmless).
    """
    for key in MARK_KEYS:
        try:
            try:
                gateway.unset_volume_image_metadata(volume.id, key)
            except RequestRejected as refused:
                if "uploading" not in refused.message:
                    raise
                _wait_until_not_uploading(gateway, job, volume)
                gateway.unset_volume_image_metadata(volume.id, key)
        except VolimgError as exc:
            job.emit(
                ev.Notice,
                message=f"could not remove volimg's mark ({key}) from volume {volume.label}: "
                f"{exc.message}; the next volimg run on it removes it",
            )
            return


def _wait_until_not_uploading(gateway: Gateway, job: Job, volume: Volume) -> None:
    def fetch() -> Volume | None:
        return gateway.get_volume(volume.id)

    job.wait(
        fetch,
        done=lambda current: current is None or current.status != "uploading",
        report=lambda _current: None,
        what=f"volume {volume.label} to leave 'uploading'",
        who="Cinder",
        check=f"check with 'openstack volume show {volume.id}'; then run",
    )


def has_mark(volume: Volume) -> bool:
    return any(key in volume.image_metadata for key in MARK_KEYS)


def clear_stale_mark(gateway: Gateway, job: Job, volume: Volume) -> None:
    """A mark an earlier (killed) run left on the volume: remove it, unless uploading."""
    if has_mark(volume) and volume.status != "uploading":
        clear_mark(gateway, job, volume)
