"""The upload step: ask Cinder once, reconcile a lost answer, wait for the image.

``request_upload`` sends os-volume_upload_image once (``gateway.NO_RETRY``); when the
answer is lost, ``images_of_upload`` and the volume's status say whether Cinder
accepted it, and nothing is resent. ``wait_for_upload`` watches the image and the
volume (Cinder restores the volume last and deletes the image on failure) and says
why an upload failed in Cinder's own words. ``wait_until_active`` waits for an image
whose data is still arriving (a resumed upload, ``volimg replicate`` on a fresh
image); ``adopt_landing`` places the image by the stores it really landed in.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from datetime import datetime

from volimg import events as ev
from volimg.errors import (
    CloudError,
    NotFoundInCloud,
    RequestRejected,
    UploadFailed,
    VolimgError,
    VolumeNotUploadable,
)
from volimg.gateway import Gateway
from volimg.model import IMAGE_DEAD_STATUSES, IMAGE_FILLING_STATUSES, Image, Volume, counted
from volimg.planner import Plan, replan_after_landing
from volimg.provenance import Stamp
from volimg.steps.job import Job, remove_commands, upload_command, watch_in_flight
from volimg.waiting import is_passing_fault


def request_upload(gateway: Gateway, job: Job, plan: Plan) -> str:
    """POST os-volume_upload_image once; a lost answer is reconciled, never resent."""
    volume = plan.volume
    job.emit(
        ev.PhaseStarted,
        phase="upload",
        detail=f"asking Cinder to upload {volume.label} as {plan.upload.image_name!r}",
    )
    job.upload_requested_at = job.settings.clock.wall()
    try:
        accepted = gateway.upload_volume(volume.id, plan.upload)
    except RequestRejected as exc:
        # With enable_force_upload off, Cinder drops force and checks the status
        # (cinder/volume/api.py copy_volume_to_image): "status must be available".
        if plan.upload.force and "must be available" in exc.message:
            raise VolumeNotUploadable(
                f"Cinder refused to upload in-use volume {volume.label} even with --force: "
                f"{exc.message}",
                hint="the cloud has enable_force_upload = false in cinder.conf; detach the "
                "volume first",
            ) from exc
        raise
    except CloudError as exc:
        if not is_passing_fault(exc):
            raise
        job.image_id = _reconcile_lost_upload(gateway, job, plan, exc)
    else:
        job.image_id = accepted.image_id
        job.upload_request_id = accepted.request_id
    job.emit(
        ev.UploadStarted,
        image_id=job.image_id,
        image_name=plan.upload.image_name,
        store=plan.upload_store,
    )
    return job.image_id


def _reconcile_lost_upload(gateway: Gateway, job: Job, plan: Plan, exc: CloudError) -> str:
    """The upload request got no answer: look at what exists; never send it again.

    Cinder creates the image (status queued) before it answers the request
    (cinder/volume/api.py copy_volume_to_image), so one image of ours with the
    planned name, created since the request, means Cinder accepted it.
    """
    name = plan.upload.image_name

    def look() -> tuple[list[Image], Volume | None]:
        return (
            images_of_upload(gateway, plan, since=job.upload_requested_at),
            gateway.get_volume(plan.volume.id),
        )

    def something_came(seen: tuple[list[Image], Volume | None]) -> bool:
        images, current = seen
        return bool(images) or current is None or current.status == "uploading"

    found, volume = look()
    if exc.in_flight and not something_came((found, volume)):
        job.emit(
            ev.Notice,
            message=f"the upload request timed out ({exc.message}); Cinder may still act on "
            "it: looking for its image before saying anything",
        )
        found, volume = watch_in_flight(job, look, seen=something_came)
        if volume is not None and volume.status == "uploading" and not found:
            found = watch_in_flight(
                job,
                lambda: images_of_upload(gateway, plan, since=job.upload_requested_at),
                seen=bool,
            )
    if len(found) == 1:
        job.emit(
            ev.Notice,
            message=f"the answer to the upload request was lost ({exc.message}), but Cinder "
            f"did accept it: image {found[0].id}",
        )
        return found[0].id
    check = f"openstack image list --name {shlex.quote(name)}"
    if not found and exc.in_flight:
        # The request was sent and its answer is lost: Cinder may create the image
        # later than volimg could look (its answer comes only after the image exists).
        raise UploadFailed(
            f"the upload request got no answer in time ({exc.message}) and no image named "
            f"{name!r} was seen yet: one may have been created after volimg stopped looking",
            hint=f"check with '{check}' (and the volume's status); if an image is there, "
            f"finish it with volimg replicate IMAGE_ID, else run volimg upload again",
        ) from exc
    if not found and volume is not None and volume.status != "uploading":
        job.upload_requested_at = None  # nothing came of it
        raise UploadFailed(
            f"the upload request got no answer ({exc.message}) and nothing came of it: no "
            f"image is named {name!r} and volume {plan.volume.label} is {volume.status}",
            hint="nothing was created; it is safe to run volimg upload again",
        ) from exc
    raise UploadFailed(
        f"the upload request got no answer ({exc.message}) and volimg cannot tell whether "
        f"Cinder accepted it ({counted(len(found), 'new image')} named {name!r})",
        hint=f"check 'openstack image list --name {name}' and the volume's status before "
        "running volimg upload again",
    ) from exc


def images_of_upload(gateway: Gateway, plan: Plan, *, since: datetime | None) -> list[Image]:
    """Live, unclaimed images of ours with the planned name, created since ``since``.

    An image that already carries volimg's own stamp was claimed by an earlier run
    (two uploads of one volume in the same second share a default name), so it cannot
    be the answer to this request.
    """
    return [
        image
        for image in gateway.images_named(
            plan.upload.image_name, owner=plan.facts.identity.project_id
        )
        if image.status not in IMAGE_DEAD_STATUSES
        and (since is None or _not_before(image.created_at, since))
        and Stamp.from_properties(image.id, image.properties) is None
    ]


def wait_for_upload(gateway: Gateway, job: Job, volume: Volume) -> Image:
    """Wait for the image to be active and the volume to leave 'uploading'.

    Cinder restores the volume's status only at the very end of the upload
    (cinder/volume/manager.py copy_volume_to_image), and deletes the image when
    the upload fails, so both have to be watched.
    """
    assert job.image_id is not None
    image_id = job.image_id
    job.emit(ev.PhaseStarted, phase="wait", detail=f"waiting for image {image_id}")

    def fetch() -> tuple[Image | None, Volume | None]:
        # The volume leaves 'uploading' only once the image is active or the upload
        # failed (Cinder sets it last), so the image is read only then.
        current = gateway.get_volume(volume.id)
        if current is not None and current.status == "uploading":
            return job.image, current
        return gateway.get_image(image_id), current

    def from_listing() -> tuple[Image | None, Volume | None]:
        # The batch's poller lists the image; Cinder writes the data first and restores
        # the volume last, so an active image means the upload is over. Cinder is asked
        # only when the upload failed (its image is gone or dead) or gave up (queued,
        # and the poller no longer sees the volume uploading).
        assert job.poller is not None
        image = job.poller.image(image_id)
        if image is not None and image.is_active:
            if volume.status != "uploading":
                return image, volume  # the status Cinder restores after the upload
            # A resumed upload: the volume was read while Cinder still worked on it.
            return image, gateway.get_volume(volume.id)
        gone = image is None or image.status in IMAGE_DEAD_STATUSES
        if gone or job.poller.still_uploading(volume.id) is False:
            return image, gateway.get_volume(volume.id)
        return image, replace(volume, status="uploading")

    def finished(seen: tuple[Image | None, Volume | None]) -> bool:
        _, current = seen
        return current is None or current.status != "uploading"

    def report(seen: tuple[Image | None, Volume | None]) -> None:
        image, current = seen
        job.image = image
        job.emit(
            ev.UploadProgress,
            image_status=image.status if image else "being written",
            volume_status=current.status if current else "gone",
            image_size=image.size if image else None,
        )

    image, current = job.wait(
        fetch,
        done=finished,
        report=report,
        what="the upload",
        who="Cinder",
        check=f"check with 'openstack image show {image_id}'; once it is active, run",
        shared=(from_listing, image_id, volume.id),
    )
    if image is not None and image.is_active and current is not None:
        job.emit(ev.UploadFinished, image=image)
        return image
    # Cinder's upload is over (the volume left 'uploading'): an image still queued got
    # no data and never will; it is a leftover, not an upload that may yet finish.
    left_queued = image is not None and image.status == "queued" and current is not None
    job.upload_failed = image is None or image.status in IMAGE_DEAD_STATUSES or left_queued
    if left_queued:
        job.leftover = image
    raise _upload_failure(gateway, job, volume, image, current)


def _upload_failure(
    gateway: Gateway, job: Job, volume: Volume, image: Image | None, current: Volume | None
) -> UploadFailed:
    """Say why Cinder gave up, in Cinder's own words (GET /v3/messages)."""
    state = f"volume is {current.status}" if current is not None else "the volume disappeared"
    image_state = "deleted by Cinder" if image is None else image.status
    try:
        messages = gateway.volume_messages(volume.id)
    except VolimgError:
        messages = []
    # Cinder records the message with the request id of the upload call.
    ours = [m for m in messages if m.request_id and m.request_id == job.upload_request_id]
    why = (
        f"; Cinder says: {ours[0].user_message} ({ours[0].event_id})"
        if ours
        else "; Cinder left no user message about this upload"
    )
    if job.leftover is not None:
        protected = (
            "; it is protected, so Cinder could not delete it" if job.leftover.protected else ""
        )
        image_state += f" and will never become active (a leftover{protected})"
    retry = (
        upload_command(job.plan, job.settings) if isinstance(job.plan, Plan) else "volimg upload"
    )
    cleanup = ""
    if image is not None:
        cleanup = f"remove the leftover image first: {remove_commands(image)}; "
    return UploadFailed(
        f"Cinder's upload of {volume.label} failed: image {job.image_id} is "
        f"{image_state}, {state}{why}",
        hint=f"see 'openstack volume message list' for volume {volume.id} and fix the "
        f"cause; {cleanup}then run: {retry}",
    )


def wait_until_active(gateway: Gateway, job: Job, image: Image) -> Image:
    """Wait for an image whose data is still arriving (e.g. a resumed upload)."""
    if image.is_active or image.status not in IMAGE_FILLING_STATUSES:
        return image
    job.emit(ev.PhaseStarted, phase="wait", detail=f"waiting for image {image.id} to be active")

    def fetch() -> Image | None:
        return gateway.get_image(image.id)

    def report(seen: Image | None) -> None:
        job.image = seen
        if seen is not None:
            job.emit(ev.UploadProgress, image_status=seen.status, volume_status="-")

    seen = job.wait(
        fetch,
        done=lambda s: s is None or s.status not in IMAGE_FILLING_STATUSES,
        report=report,
        what=f"image {image.id} to become active",
        who="Glance",
        check=f"check with 'openstack image show {image.id}'; once it is active, run",
    )
    if seen is None:
        raise NotFoundInCloud(f"image {image.id} disappeared while volimg waited for it")
    return seen


def adopt_landing(job: Job, plan: Plan, image: Image) -> Plan:
    """If the upload landed where only a hidden type store puts it, plan again."""
    replanned = replan_after_landing(plan, image.stores)
    if replanned is not None:
        job.plan = replanned
        job.emit(
            ev.Notice,
            message=f"the image landed in {', '.join(image.stores)}, not in "
            f"{plan.upload_store}: that is the volume type's store (hidden from you), so "
            f"it wins; planned stores now: {', '.join(replanned.placement.target_stores)}",
        )
        return replanned
    if plan.upload_store and plan.upload_store not in image.stores:
        job.emit(
            ev.Notice,
            message=f"the image landed in {', '.join(image.stores) or 'no store'}, "
            f"not in {plan.upload_store} as planned; placing it by its real stores",
        )
    return plan


def _not_before(created_at: str | None, moment: datetime) -> bool:
    """Glance's created_at (ISO 8601, UTC, whole seconds) is not before ``moment``."""
    if not created_at:
        return True
    created = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    return created >= moment.replace(microsecond=0)
