"""What one run knows about the cloud right now, and how the run ends.

A ``Job`` is the state every step updates (image id, which stores, what was
requested): whatever stops a run, it can say what exists and which command finishes
the work. ``finish`` runs the composed steps and freezes the job into an ``Outcome``;
``interrupted`` is what a Ctrl-C says. ``watch_in_flight`` (looking again for what a
timed-out request may still bring about) is shared by the upload, copy and prune
steps, so it lives here, at the bottom of the package, with the job it reads.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from volimg import events as ev
from volimg.errors import Interrupted, NotFoundInCloud, VolimgError, WaitTimedOut
from volimg.gateway import Gateway
from volimg.model import Image, format_time
from volimg.planner import Placement, Plan, ReplicationPlan, UploadOptions
from volimg.provenance import Stamp
from volimg.results import DEFAULT_TIMEOUT, PENDING, Outcome, RunSettings, StoreReport
from volimg.waiting import IN_FLIGHT_GRACE, Deadline, PollTimedOut, poll, watch

if TYPE_CHECKING:
    from volimg.copy_slots import CopySlots
    from volimg.poller import Poller

T = TypeVar("T")


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


def remove_commands(image: Image) -> str:
    """The commands that remove an image, in the order that works: Glance refuses to
    delete a protected image (403) until it is unprotected."""
    delete = f"openstack image delete {image.id}"
    if not image.protected:
        return delete
    return f"openstack image set --unprotected {image.id}, then {delete}"


def upload_command(plan: Plan, settings: RunSettings) -> str:
    """The ``volimg upload`` line that makes this plan's image again, with every option
    the operator gave (a retry that dropped ``--prune`` or ``--visibility`` would make
    another image than the one asked for)."""
    return volume_upload_command(plan.volume.id, plan.options, settings)


def volume_upload_command(volume_id: str, options: UploadOptions, settings: RunSettings) -> str:
    """``upload_command`` for a volume no plan was made for yet (a batch's volume that
    was never started): one volume, the upload options and the run's settings."""
    words = ["volimg", "upload", volume_id]
    for flag, value in (
        ("--name", options.image_name),
        ("--disk-format", options.disk_format),
        ("--container-format", options.container_format),
        ("--visibility", options.visibility),
    ):
        if value is not None:
            words += [flag, value]
    if options.protected is not None:
        words.append("--protected" if options.protected else "--unprotected")
    if options.force:
        words.append("--force")
    if options.replicate is not None:
        words.append("--replicate" if options.replicate else "--no-replicate")
    for store in options.also_stores:
        words += ["--also-store", store]
    if options.prune:
        words.append("--prune")
    if options.all_stores_must_succeed:
        words.append("--all-stores-must-succeed")
    if options.allow_duplicate_name:
        words.append("--allow-duplicate-name")
    if not settings.wait:
        words.append("--no-wait")
    if settings.timeout != DEFAULT_TIMEOUT:
        words += ["--timeout", f"{settings.timeout:g}"]
    return shlex.join(words)


@dataclass(eq=False)
class Job:
    """The mutable bookkeeping of one run, frozen into an ``Outcome`` at the end."""

    plan: Plan | ReplicationPlan
    settings: RunSettings
    emit_to: ev.EventSink
    subject: str = ""
    # A batch's shared poller (volimg.poller): the waits read its listings instead of
    # sending their own GETs. None: each wait polls its own objects.
    poller: Poller | None = None
    # A batch's cap on copy-image imports in flight (--max-copies); None: no cap.
    copy_slots: CopySlots | None = None
    deadline: Deadline = field(init=False)
    image: Image | None = None
    image_id: str | None = None
    upload_requested_at: datetime | None = None  # set just before the upload POST
    upload_request_id: str | None = None  # Cinder's request id for that POST
    upload_failed: bool = False  # Cinder gave up: the next step is a new upload
    # The image a failed upload left behind (queued, never to become active): Cinder
    # deletes its image when the upload fails, but Glance refuses to delete a
    # protected one, so an upload with --protected leaves it.
    leftover: Image | None = None
    # A stale import lock blocks the copies until Glance lets a new import take it over.
    blocked_until: datetime | None = None
    copying: tuple[str, ...] = ()  # stores of the copy-image in flight
    reports: dict[str, StoreReport] = field(default_factory=dict)
    stamp: Stamp | None = None  # the stamp this run wrote, once written
    copy_slot_wait: float | None = None  # seconds this run waited for a --max-copies slot
    limits_hit: list[str] = field(default_factory=list)  # Glance quotas that refused a copy

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
            if self.upload_failed and self.leftover is not None:
                return f"image {self.image_id} is left {self.leftover.status} and empty"
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
            volume = self.plan.volume.id
            # Each step stands on its own: in JSON there is no "cause above" to point at.
            removed = ""
            if self.leftover is not None:
                removed = f"the leftover image {self.leftover.id} is removed ({remove_commands(self.leftover)}) and "
            return (
                f"once {removed}what made Cinder's upload of volume {volume} fail is fixed: "
                + upload_command(self.plan, self.settings),
            )
        resume = self.resume()
        if resume is None:
            return ()
        if self.image is not None and self.image.is_active:
            if self.placement.done_in(self.image.stores):
                return ()
            if self.blocked_until is not None:
                # Glance's takeover time: the stale lock blocks every copy until then.
                return (f"at or after {format_time(self.blocked_until)}: {resume}",)
            return (resume,)
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
            copy_slot_wait=self.copy_slot_wait,
            limits_hit=tuple(self.limits_hit),
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
        shared: tuple[Callable[[], T], str, str | None] | None = None,
    ) -> T:
        """Poll until done; past the deadline, say what exists and how to go on.

        ``shared`` is the same reading taken from the batch's poller: ``(fetch from
        the poller's snapshot, image id, volume id or None)``; used when the job has a
        poller, so the decisions (``done``, ``report``) are the same either way.
        """
        try:
            if self.poller is not None and shared is not None:
                from_listing, image_id, volume_id = shared
                key = self.poller.follow(image_id, volume_id)
                return self.poller.wait(
                    key, from_listing, done=done, deadline=self.deadline, on_poll=report
                )
            return poll(
                fetch,
                done=done,
                deadline=self.deadline,
                interval=self.settings.poll_interval,
                on_poll=report,
            )
        except PollTimedOut:
            raise WaitTimedOut(
                f"gave up waiting for {what}: the run's --timeout of "
                f"{self.settings.timeout:g} s ran out; "
                f"{self.where()}; {who} may still finish it",
                hint=f"{check}: {self.resume()}",
            ) from None


def finish(
    job: Job, command: str, steps: Callable[[], None], gateway: Gateway | None = None
) -> Outcome:
    """Run the steps; whatever stops them, return what exists and how to go on.

    Every request the steps send is bounded by what is left of the run's --timeout
    (``Gateway.within``), so a slow answer cannot outlive it by the HTTP timeout.
    """
    error: VolimgError | None = None
    try:
        with _within_deadline(gateway, job):
            steps()
    except VolimgError as exc:
        error = exc
        if gateway is not None and job.image is None and job.image_id and not job.upload_failed:
            # Cinder made an image volimg has not read yet: one more (safe) read, so
            # the report says what exists.
            with contextlib.suppress(VolimgError), _within_deadline(gateway, job):
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


def _within_deadline(gateway: Gateway | None, job: Job) -> contextlib.AbstractContextManager[None]:
    if gateway is None:
        return contextlib.nullcontext()
    return gateway.within(lambda: job.deadline.remaining)


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
