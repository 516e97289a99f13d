"""The steps every command is made of: upload, stamp, wait, replicate, prune.

``volimg upload`` (one volume or a batch), ``volimg replicate`` and ``volimg audit --fix``
compose these same functions; none of them copies another. A ``Job`` is what one run
knows about the cloud right now: each step updates it, so whatever stops a run, the
job can say what exists (image id, which stores) and which command finishes the work.

Steps emit events and never print. Requests that create something are sent once
(``gateway.NO_RETRY``); a lost answer is reconciled by looking at what exists.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from volimg import events as ev
from volimg.errors import (
    CloudError,
    ConflictInCloud,
    ImportRejected,
    Interrupted,
    NotFoundInCloud,
    PartialReplication,
    PermissionDenied,
    RequestRejected,
    UploadFailed,
    VolimgError,
    VolumeNotUploadable,
    WaitTimedOut,
)
from volimg.gateway import Gateway, new_request_id
from volimg.model import IMAGE_DEAD_STATUSES, IMAGE_FILLING_STATUSES, Image, ImportTask, Volume
from volimg.planner import Placement, Plan, ReplicationPlan, replan_after_landing
from volimg.provenance import TAG, Stamp
from volimg.results import (
    ALREADY_PRESENT,
    COPIED,
    FAILED,
    PENDING,
    PRUNE_FAILED,
    PRUNED,
    ROLLED_BACK,
    SKIPPED,
    Outcome,
    RunSettings,
    StoreReport,
)
from volimg.waiting import IN_FLIGHT_GRACE, Deadline, PollTimedOut, is_passing_fault, poll, watch

T = TypeVar("T")

# Glance's copy task reports progress as "Copied N MiB": not an explanation of a failure.
_PROGRESS_MESSAGE = re.compile(r"^Copied \d+ MiB$")


# After Glance marks a copy task finished, how soon to look whether it dropped the lock.
LOCK_RELEASE_LOOK = 0.2


def watch_in_flight(job: Job, look: Callable[[], T], *, seen: Callable[[T], bool]) -> T:
    """Look again (bounded by the grace and the run's deadline) for what a timed-out
    request may still bring about; never resends it."""
    return watch(
        look,
        seen=seen,
        clock=job.settings.clock,
        seconds=min(IN_FLIGHT_GRACE, job.deadline.remaining),
        interval=job.settings.poll_interval,
    )


def resume_command(image_id: str, placement: Placement) -> str:
    """The ``volimg replicate`` line that finishes a placement from where it stopped."""
    words = ["volimg", "replicate", image_id]
    for store in placement.target_stores:
        words += ["--store", store]
    if placement.prune:
        words.append("--prune")
    if placement.all_stores_must_succeed:
        words.append("--all-stores-must-succeed")
    return shlex.join(words)


@dataclass(eq=False)
class Job:
    """The mutable bookkeeping of one run, frozen into an ``Outcome`` at the end."""

    plan: Plan | ReplicationPlan
    settings: RunSettings
    emit_to: ev.EventSink
    subject: str = ""
    deadline: Deadline = field(init=False)
    image: Image | None = None
    image_id: str | None = None
    upload_requested_at: datetime | None = None  # set just before the upload POST
    upload_request_id: str | None = None  # Cinder's request id for that POST
    upload_failed: bool = False  # Cinder gave up: the next step is a new upload
    copying: tuple[str, ...] = ()  # stores of the copy-image in flight
    reports: dict[str, StoreReport] = field(default_factory=dict)
    stamp: Stamp | None = None  # the stamp this run wrote, once written

    def __post_init__(self) -> None:
        self.deadline = Deadline(self.settings.clock, self.settings.timeout)

    @property
    def placement(self) -> Placement:
        return self.plan.placement

    def emit(self, event_type: type[ev.Event], **fields: object) -> None:
        self.emit_to(event_type(elapsed=self.deadline.elapsed, subject=self.subject, **fields))

    def settle(self, store: str, outcome: str, detail: str = "") -> None:
        self.reports[store] = StoreReport(store, outcome, detail)
        self.emit(ev.StoreSettled, store=store, outcome=outcome, detail=detail)

    def where(self) -> str:
        """One sentence on what exists in the cloud right now."""
        if self.image is not None:
            if not self.image.stores:
                return f"image {self.image.id} ({self.image.status}) has no store yet"
            return (
                f"image {self.image.id} ({self.image.status}) is in {', '.join(self.image.stores)}"
            )
        if self.image_id is not None:
            if self.upload_failed:
                return f"image {self.image_id} is gone (Cinder deleted it)"
            return f"Cinder is uploading to image {self.image_id}"
        if self.upload_requested_at is not None and isinstance(self.plan, Plan):
            return (
                f"the upload was requested and Cinder may have created image "
                f"{self.plan.upload.image_name!r}"
            )
        return "nothing was created"

    def resume(self) -> str | None:
        image_id = self.image.id if self.image else self.image_id
        if image_id is None or self.upload_failed:
            return None
        return resume_command(image_id, self.placement)

    def next_steps(self) -> tuple[str, ...]:
        """Commands that finish the job from the state the cloud is in now."""
        if self.upload_failed and isinstance(self.plan, Plan):
            return (
                "once the cause above is fixed: "
                + shlex.join(["volimg", "upload", self.plan.volume.id]),
            )
        resume = self.resume()
        if resume is None:
            return ()
        if self.image is not None and self.image.is_active:
            return () if self.placement.done_in(self.image.stores) else (resume,)
        # volimg replicate waits for an image that is still being uploaded.
        return (f"once image {self.image.id if self.image else self.image_id} is active: {resume}",)

    def known_image(self) -> Image | None:
        """The image as last read; one Cinder created but volimg could not read yet is
        named by its id, with status ``unknown``."""
        if self.image is not None or self.image_id is None or self.upload_failed:
            return self.image
        name = self.plan.upload.image_name if isinstance(self.plan, Plan) else ""
        return Image(id=self.image_id, name=name, status="unknown")

    def outcome(self, command: str, error: VolimgError | None) -> Outcome:
        return Outcome(
            command=command,
            plan=self.plan,
            image=self.known_image(),
            stores=tuple(self.reports.values()),
            error=error,
            waited=self.settings.wait,
            stamp=self.stamp,
            next_steps=self.next_steps(),
        )

    def reread(self, gateway: Gateway, image_id: str | None = None) -> Image:
        image_id = image_id or (self.image.id if self.image else self.image_id)
        assert image_id is not None
        current = gateway.get_image(image_id)
        if current is None:
            raise NotFoundInCloud(f"image {image_id} disappeared while volimg was working on it")
        self.image = current
        return current

    def wait(
        self,
        fetch: Callable[[], T],
        *,
        done: Callable[[T], bool],
        report: Callable[[T], None],
        what: str,
        who: str,
        check: str,
    ) -> T:
        """Poll until done; past the deadline, say what exists and how to go on."""
        try:
            return poll(
                fetch,
                done=done,
                deadline=self.deadline,
                interval=self.settings.poll_interval,
                on_poll=report,
            )
        except PollTimedOut:
            raise WaitTimedOut(
                f"gave up waiting for {what} after {self.settings.timeout:g} s; "
                f"{self.where()}; {who} may still finish it",
                hint=f"{check}: {self.resume()}",
            ) from None


# --- upload -------------------------------------------------------------------------


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
    if not found and volume is not None and volume.status != "uploading":
        job.upload_requested_at = None  # nothing came of it
        raise UploadFailed(
            f"the upload request got no answer ({exc.message}) and nothing came of it: no "
            f"image is named {name!r} and volume {plan.volume.label} is {volume.status}",
            hint="nothing was created; it is safe to run volimg upload again",
        ) from exc
    raise UploadFailed(
        f"the upload request got no answer ({exc.message}) and volimg cannot tell whether "
        f"Cinder accepted it ({len(found)} new images are named {name!r})",
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
    )
    if image is not None and image.is_active and current is not None:
        job.emit(ev.UploadFinished, image=image)
        return image
    job.upload_failed = image is None or image.status in IMAGE_DEAD_STATUSES
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
    cleanup = (
        f"; delete the leftover image with 'openstack image delete {image.id}'"
        if image is not None
        else ""
    )
    return UploadFailed(
        f"Cinder's upload of {volume.label} failed: image {job.image_id} is "
        f"{image_state}, {state}{why}",
        hint=f"see 'openstack volume message list' for volume {volume.id}, fix the "
        f"cause, then run volimg upload again{cleanup}",
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


# --- replicate ------------------------------------------------------------------------


def replicate(gateway: Gateway, job: Job, image: Image) -> None:
    """Copy the image to the placement's missing stores with copy-image, and follow it.

    An import that is already running on this image for the stores we want (volimg's
    own earlier run, interrupted) is followed to its end instead of refused.
    """
    placement = job.placement
    for store in placement.target_stores:
        if store in image.stores:
            job.settle(store, ALREADY_PRESENT)
    image = _follow_running_import(gateway, job, image)
    for store in placement.target_stores:
        if store in image.stores and store not in job.reports:
            job.settle(store, COPIED, "by the import that was already running")
    missing = placement.missing_from(image.stores)
    if not missing:
        return
    job.emit(
        ev.PhaseStarted,
        phase="replicate",
        detail=f"copying image {image.id} to {', '.join(missing)} with copy-image",
    )
    request_id = new_request_id()
    try:
        gateway.copy_image(
            image.id,
            missing,
            all_stores_must_succeed=placement.all_stores_must_succeed,
            request_id=request_id,
        )
    except PermissionDenied as exc:
        for store in missing:
            job.settle(store, FAILED, "copy-image refused: Glance answered 403")
        _hold_back_prune(job, image)
        raise PermissionDenied(
            f"Glance refused copy-image for image {image.id}: its copy_image policy is "
            f"admin-only by default; {job.where()}",
            hint=f"ask an admin to finish the job: {job.resume()}",
        ) from exc
    except (ConflictInCloud, RequestRejected) as exc:
        for store in missing:
            job.settle(store, FAILED, f"copy-image refused: {exc.message}")
        _hold_back_prune(job, image)
        raise _import_refused(gateway, job, image, exc) from exc
    except CloudError as exc:
        if not is_passing_fault(exc):
            raise
        if not _import_started_despite(gateway, job, image, request_id, exc):
            answer = f"Glance answered {exc.status}" if exc.status else "no answer"
            for store in missing:
                job.settle(store, FAILED, f"{answer} and no import started")
            _hold_back_prune(job, image)
            raise ImportRejected(
                _no_import_message(image, exc, request_id) + f"; {job.where()}",
                hint=f"running it again is safe: {job.resume()}",
            ) from exc
    job.copying = missing
    job.emit(ev.CopyRequested, stores=missing, request_id=request_id, image_size=image.size)
    if not job.settings.wait:
        for store in missing:
            job.settle(store, PENDING, "--no-wait: copy-image requested, not awaited")
        job.copying = ()
        return
    task, image = _wait_for_copy(gateway, job, image, missing, lambda t: t.request_id == request_id)
    job.copying = ()
    _settle_copies(job, image, missing, task)


def _no_import_message(image: Image, exc: CloudError, request_id: str) -> str:
    if exc.status is not None:
        return (
            f"Glance answered {exc.status} to copy-image for image {image.id} and started no "
            f"import (no task carries request {request_id})"
        )
    return (
        f"the copy-image request for image {image.id} got no answer ({exc.message}) and "
        f"Glance started no import (no task carries request {request_id})"
    )


def _import_started_despite(
    gateway: Gateway, job: Job, image: Image, request_id: str, exc: CloudError
) -> bool:
    """After a 5xx or a lost answer: did Glance start our import anyway?

    Glance adopts the caller's request id and records it on the import task, so the
    image's tasks say it for certain (API 2.12). Without the tasks API, the import
    lock tells: volimg sent the only import it knows of.
    """

    def look() -> bool:
        try:
            tasks = gateway.image_tasks(image.id)
        except NotFoundInCloud:
            return job.reread(gateway, image.id).import_task is not None
        return any(t.request_id == request_id for t in tasks)

    started = look()
    if not started and exc.in_flight:
        # The request timed out: Glance may still be working on it. Look for our task.
        started = watch_in_flight(job, look, seen=bool)
    if started:
        what = (
            f"Glance answered {exc.status}"
            if exc.status is not None
            else f"the answer was lost ({exc.message})"
        )
        job.emit(
            ev.Notice,
            message=f"{what}, but Glance did start the copy-image import; following it",
        )
    return started


def _follow_running_import(gateway: Gateway, job: Job, image: Image) -> Image:
    """Follow an import already running on the image for stores this run wants.

    Glance holds one import at a time per image (``os_glance_import_task``); a
    second copy-image gets 409. When the running import copies to (some of) the
    stores we want, it is our own earlier run's or as good as: wait for it. An
    import to other stores is someone else's: the copy request will say so.
    """
    if not image.import_task:
        return image
    lock = image.import_task
    wanted = set(job.placement.missing_from(image.stores))
    if not wanted:
        return image
    try:
        tasks = gateway.image_tasks(image.id)
    except NotFoundInCloud:
        return image
    task = next((t for t in tasks if t.id == lock), None)
    if task is None or task.finished:
        return image
    # The task's own stores are known from the 202 on; the image's importing list
    # only a moment later.
    copying_to = set(task.stores or image.importing_to_stores)
    if copying_to and not wanted & copying_to:
        return image
    takeover = task.takeover_at()
    if takeover is not None and job.settings.clock.wall() >= takeover:
        job.emit(
            ev.Notice,
            message=f"the import lock of image {image.id} belongs to task {lock}, which has "
            f"not moved since {task.updated_at}: Glance lets a new import take it over",
        )
        return image
    job.emit(
        ev.Notice,
        message=f"an import of image {image.id} to "
        f"{', '.join(sorted(copying_to)) or 'its stores'} is already running "
        f"(task {lock}): following it to its end",
    )
    following = tuple(sorted(wanted & copying_to)) or tuple(sorted(wanted))
    job.copying = following
    _, image = _wait_for_copy(gateway, job, image, following, lambda t: t.id == lock)
    job.copying = ()
    return image


def _settle_copies(
    job: Job, image: Image, stores: tuple[str, ...], task: ImportTask | None
) -> None:
    placement = job.placement
    failed: list[str] = []
    rolled_back = (
        placement.all_stores_must_succeed and task is not None and task.status == "failure"
    )
    for store in stores:
        if store in image.stores:
            job.settle(store, COPIED)
            continue
        failed.append(store)
        if store in image.failed_import:
            detail = "Glance lists it in os_glance_failed_import"
        elif rolled_back:
            job.settle(
                store,
                ROLLED_BACK,
                "Glance undid this copy because another store failed (all_stores_must_succeed)",
            )
            continue
        else:
            detail = "not among the image's stores after the import"
        failure = task is not None and task.status == "failure" and task.message
        if failure and task is not None and not _PROGRESS_MESSAGE.match(task.message):
            detail += f"; the task says: {task.message}"
        job.settle(store, FAILED, detail)
    if failed:
        _hold_back_prune(job, image)
        raise PartialReplication(
            f"copy-image failed for {', '.join(failed)}; {job.where()}",
            hint=f"once the cause is fixed, finish with: {job.resume()}",
        )


def _hold_back_prune(job: Job, image: Image) -> None:
    if job.placement.prune:
        for store in job.placement.extra_in(image.stores):
            job.settle(store, SKIPPED, "not pruned: a copy failed")


def _import_refused(gateway: Gateway, job: Job, image: Image, exc: CloudError) -> VolimgError:
    current = job.reread(gateway, image.id)
    if current.import_task:
        return ImportRejected(
            f"Glance refused copy-image: another import (task {current.import_task}) to "
            f"{', '.join(current.importing_to_stores) or 'other stores'} holds the lock on "
            f"image {image.id}; {job.where()}",
            hint="wait for it to finish (Glance lets a new import take over a dead one after "
            f"60 minutes without progress), then run: {job.resume()}",
        )
    return ImportRejected(
        f"Glance refused copy-image for image {image.id}: {exc.message}",
        hint=f"fix the cause, then run: {job.resume()}",
    )


def _wait_for_copy(
    gateway: Gateway,
    job: Job,
    image: Image,
    stores: tuple[str, ...],
    is_ours: Callable[[ImportTask], bool],
) -> tuple[ImportTask | None, Image]:
    """Wait on one import task (found by ``is_ours``) and then for the lock to go.

    Returns the task and the image as the last poll read it (no second read).

    ``os_glance_importing_to_stores`` is set by the task a moment after the 202 and
    can still show an earlier import's value, so it says nothing about completion.
    Without a task to follow (Glance older than API 2.12), the end of the import
    lock ``os_glance_import_task`` marks the end of the copy.
    """
    tasks_api = True

    def fetch() -> tuple[ImportTask | None, Image]:
        nonlocal tasks_api
        task = None
        if tasks_api:
            try:
                tasks = gateway.image_tasks(image.id)
            except NotFoundInCloud:
                tasks_api = False
            else:
                task = next((t for t in tasks if is_ours(t)), None)
                # While a single store is being copied only the task moves; with more,
                # the image's stores show which copies are done already.
                running = task is not None and not task.finished
                if running and len(stores) == 1 and job.image is not None:
                    return task, job.image
        current = gateway.get_image(image.id)
        if current is None:
            raise NotFoundInCloud(f"image {image.id} disappeared while volimg was copying it")
        if task is not None and task.finished and current.import_task:
            # Glance drops the lock a moment after it marks the task finished: look
            # again shortly rather than a whole poll gap later.
            job.settings.clock.sleep(LOCK_RELEASE_LOOK)
            current = gateway.get_image(image.id) or current
        return task, current

    def finished(seen: tuple[ImportTask | None, Image]) -> bool:
        task, current = seen
        # Glance drops the lock when the copy ends, whether it succeeded or not, a
        # moment AFTER the task is marked finished; an import or store deletion sent
        # in that moment gets 409. So the copy is over when the task says so and the
        # lock is gone.
        if task is not None and not task.finished:
            return False
        return current.import_task is None

    def report(seen: tuple[ImportTask | None, Image]) -> None:
        task, current = seen
        job.image = current
        job.emit(
            ev.CopyProgress,
            task_status=task.status if task else "not seen",
            message=task.message if task else "",
            done=tuple(s for s in stores if s in current.stores),
            failed=tuple(s for s in stores if s in current.failed_import),
            image_size=current.size,
        )

    task, current = job.wait(
        fetch,
        done=finished,
        report=report,
        what="copy-image",
        who="Glance",
        check=f"check with 'openstack image show {image.id} -c stores'; if stores are "
        "still missing once the import ended, run",
    )
    job.image = current
    return task, current


# --- prune ------------------------------------------------------------------------------


def prune(gateway: Gateway, job: Job, image: Image) -> None:
    """Remove copies outside the target set once every copy exists; never the last."""
    extra = job.placement.extra_in(image.stores)
    if not job.placement.prune or not extra:
        return
    if not job.settings.wait or job.placement.missing_from(image.stores):
        reason = "--no-wait" if not job.settings.wait else "not every planned copy exists"
        for store in extra:
            job.settle(store, SKIPPED, f"not pruned: {reason}")
        return
    job.emit(ev.PhaseStarted, phase="prune", detail=f"removing copies in {', '.join(extra)}")
    for store in extra:
        current = job.reread(gateway, image.id)
        if store not in current.stores:
            continue
        if len(current.stores) <= 1:
            job.settle(store, SKIPPED, "never remove the last copy")
            continue
        try:
            gateway.delete_from_store(image.id, store)
        except PermissionDenied as exc:
            job.settle(store, PRUNE_FAILED, "removing a store's copy is admin-only: 403")
            job.reread(gateway, image.id)
            raise PermissionDenied(
                f"Glance refused to remove image {image.id} from store {store} (admin-only "
                f"by default); {job.where()}",
                hint=f"ask an admin to run: {job.resume()}",
            ) from exc
        except CloudError as exc:
            if _removed_despite(gateway, job, image, store, exc):
                continue
            job.settle(store, PRUNE_FAILED, exc.message)
            raise CloudError(
                f"could not remove image {image.id} from store {store}: {exc.message}; "
                f"{job.where()}",
                hint=f"once the cause is fixed, run: {job.resume()}",
                status=exc.status,
            ) from exc
        job.settle(store, PRUNED)
    job.reread(gateway, image.id)


def _removed_despite(gateway: Gateway, job: Job, image: Image, store: str, exc: CloudError) -> bool:
    """After a failed store deletion: is the copy gone all the same? Look, never resend."""

    def look() -> Image:
        return job.reread(gateway, image.id)

    def removed(seen: Image) -> bool:
        return store not in seen.stores

    current = look()
    if not removed(current) and exc.in_flight:
        current = watch_in_flight(job, look, seen=removed)
    if removed(current):
        job.settle(store, PRUNED, f"Glance removed it, though its answer was lost ({exc.message})")
        return True
    return False


# --- ending -------------------------------------------------------------------------------


def finish(
    job: Job, command: str, steps: Callable[[], None], gateway: Gateway | None = None
) -> Outcome:
    """Run the steps; whatever stops them, return what exists and how to go on."""
    error: VolimgError | None = None
    try:
        steps()
    except VolimgError as exc:
        error = exc
        if gateway is not None and job.image is None and job.image_id and not job.upload_failed:
            # Cinder made an image volimg has not read yet: one more (safe) read, so
            # the report says what exists.
            with contextlib.suppress(VolimgError):
                job.image = gateway.get_image(job.image_id)
    except KeyboardInterrupt as exc:
        error = interrupted(job, exc)
    for store in job.copying:
        if store not in job.reports:
            job.settle(store, PENDING, "copy-image was requested; Glance may still finish")
    landing = job.plan.upload_store if isinstance(job.plan, Plan) else None
    still_uploading = (
        job.image_id is not None
        and not job.upload_failed
        and (job.image is None or not job.image.is_active)
    )
    if error is not None and landing and still_uploading and landing not in job.reports:
        job.settle(landing, PENDING, "Cinder's upload was still running; it lands here")
    return job.outcome(command, error)


def interrupted(job: Job, exc: KeyboardInterrupt | None = None) -> Interrupted:
    """Interrupted (Ctrl-C, or a signal the CLI turned into one): say what exists."""
    resume = job.resume()
    if resume:
        hint = f"what was already requested goes on in the cloud; to finish, run: {resume}"
        if job.image is None or not job.image.is_active:
            image_id = job.image.id if job.image else job.image_id
            hint = (
                "what was already requested goes on in the cloud; once image "
                f"{image_id} is active (volimg replicate waits for it too), run: {resume}"
            )
    elif job.upload_requested_at is not None and isinstance(job.plan, Plan):
        name = job.plan.upload.image_name
        hint = (
            f"check 'openstack image list --name {name}' before running volimg again: "
            "if the image exists, finish with volimg replicate"
        )
    else:
        hint = "nothing was changed; run the command again"
    return Interrupted(f"interrupted; {job.where()}", hint=hint, signum=Interrupted.signal_of(exc))


def _not_before(created_at: str | None, moment: datetime) -> bool:
    """Glance's created_at (ISO 8601, UTC, whole seconds) is not before ``moment``."""
    if not created_at:
        return True
    created = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    return created >= moment.replace(microsecond=0)
