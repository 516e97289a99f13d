"""Carry out a plan: upload through Cinder, wait, copy with Glance's copy-image, prune.

The executor emits events and returns an ``Outcome``; it never prints. Whatever goes
wrong after the first mutating request, the outcome says what exists in the cloud
now (image id, which stores) and which command finishes the job.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from volimg import events as ev
from volimg.errors import (
    CloudError,
    ConflictInCloud,
    ExitCode,
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
from volimg.model import IMAGE_DEAD_STATUSES, Image, ImportTask, Volume
from volimg.planner import Placement, Plan, ReplicationPlan, replan_after_landing
from volimg.waiting import Clock, Deadline, PollTimedOut, is_passing_fault, poll

T = TypeVar("T")

# Per-store outcomes (docs/json.md).
COPIED = "copied"
ALREADY_PRESENT = "already-present"
FAILED = "failed"
PENDING = "pending"
PRUNED = "pruned"
SKIPPED = "skipped"
PRUNE_FAILED = "prune-failed"

DEFAULT_TIMEOUT = 3600.0
DEFAULT_POLL_INTERVAL = 10.0


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How to run: whether and how long to wait. No I/O, no credentials."""

    wait: bool = True
    timeout: float = DEFAULT_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    clock: Clock = field(default_factory=Clock)


@dataclass(frozen=True)
class StoreReport:
    store: str
    outcome: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """The result of one run: what was planned, what exists now, and what went wrong."""

    command: str
    plan: Plan | ReplicationPlan
    image: Image | None = None
    stores: tuple[StoreReport, ...] = ()
    error: VolimgError | None = None
    dry_run: bool = False
    next_steps: tuple[str, ...] = ()

    @property
    def result(self) -> str:
        """ok | partial | failed | planned (docs/json.md)."""
        if self.dry_run:
            return "planned"
        if self.error is None:
            return "ok"
        if self.image is not None and self.image.is_active:
            return "partial"
        return "failed"

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.error is None else self.error.exit_code


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


class _Run:
    """The mutable bookkeeping of one run; frozen into an ``Outcome`` at the end."""

    def __init__(
        self,
        command: str,
        plan: Plan | ReplicationPlan,
        gateway: Gateway,
        settings: RunSettings,
        emit: ev.EventSink,
    ) -> None:
        self.command = command
        self.plan = plan
        self.gateway = gateway
        self.settings = settings
        self.emit_to = emit
        self.deadline = Deadline(settings.clock, settings.timeout)
        self.image: Image | None = None
        self.image_id: str | None = None
        self.upload_requested_at: datetime | None = None  # set just before the POST
        self.upload_request_id: str | None = None  # Cinder's request id for that POST
        self.copying: tuple[str, ...] = ()  # stores of the copy-image in flight
        self.reports: dict[str, StoreReport] = {}

    @property
    def placement(self) -> Placement:
        return self.plan.placement

    def emit(self, event_type: type[ev.Event], **fields: object) -> None:
        self.emit_to(event_type(elapsed=self.deadline.elapsed, **fields))

    def settle(self, store: str, outcome: str, detail: str = "") -> None:
        self.reports[store] = StoreReport(store, outcome, detail)
        self.emit(ev.StoreSettled, store=store, outcome=outcome, detail=detail)

    def where(self) -> str:
        """One sentence on what exists in the cloud right now."""
        if self.image is not None:
            stores = ", ".join(self.image.stores) or "no store yet"
            return f"image {self.image.id} ({self.image.status}) is in: {stores}"
        if self.image_id is not None:
            return f"Cinder is uploading to image {self.image_id}"
        if self.upload_requested_at is not None and isinstance(self.plan, Plan):
            return (
                f"the upload was requested and Cinder may have created image "
                f"{self.plan.upload.image_name!r}"
            )
        return "nothing was created"

    def resume(self) -> str | None:
        image_id = self.image.id if self.image else self.image_id
        return resume_command(image_id, self.placement) if image_id else None

    def next_steps(self) -> tuple[str, ...]:
        """What finishes the job, if the placement is not complete."""
        resume = self.resume()
        if resume is None:
            return ()
        if self.image is not None and self.image.is_active:
            done = not self.placement.missing_from(self.image.stores) and not (
                self.placement.prune and self.placement.extra_in(self.image.stores)
            )
            return () if done else (resume,)
        return (f"once image {self.image_id} is active: {resume}",)

    def outcome(self, error: VolimgError | None) -> Outcome:
        return Outcome(
            command=self.command,
            plan=self.plan,
            image=self.image,
            stores=tuple(self.reports.values()),
            error=error,
            next_steps=self.next_steps(),
        )

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

    # --- upload -----------------------------------------------------------------

    def upload(self, plan: Plan) -> None:
        volume = plan.volume
        self.emit(
            ev.PhaseStarted,
            phase="upload",
            detail=f"asking Cinder to upload {volume.label} as {plan.upload.image_name!r}",
        )
        self.upload_requested_at = self.settings.clock.wall()
        try:
            accepted = self.gateway.upload_volume(volume.id, plan.upload)
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
            self.image_id = self._reconcile_lost_upload(plan, exc)
        else:
            self.image_id = accepted.image_id
            self.upload_request_id = accepted.request_id
        self.emit(ev.UploadStarted, image_id=self.image_id, image_name=plan.upload.image_name)

    def _reconcile_lost_upload(self, plan: Plan, exc: CloudError) -> str:
        """The upload request got no answer: look at what exists; never send it again.

        Cinder creates the image (status queued) before it answers the request
        (cinder/volume/api.py copy_volume_to_image), so one image of ours with the
        planned, timestamped name, created since the request, means Cinder accepted it.
        """
        name = plan.upload.image_name
        requested = self.upload_requested_at
        found = [
            image
            for image in self.gateway.images_named(name, owner=plan.facts.identity.project_id)
            if image.status not in IMAGE_DEAD_STATUSES
            and (requested is None or _not_before(image.created_at, requested))
        ]
        volume = self.gateway.get_volume(plan.volume.id)
        if len(found) == 1:
            self.emit(
                ev.Notice,
                message=f"the answer to the upload request was lost ({exc.message}), but Cinder "
                f"did accept it: image {found[0].id}",
            )
            return found[0].id
        if not found and volume is not None and volume.status != "uploading":
            self.upload_requested_at = None  # nothing came of it
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

    def wait_for_upload(self, plan: Plan) -> Image:
        """Wait for the image to be active and the volume to leave 'uploading'.

        Cinder restores the volume's status only at the very end of the upload
        (cinder/volume/manager.py copy_volume_to_image), and deletes the image when
        the upload fails, so both have to be watched.
        """
        assert self.image_id is not None
        image_id, volume_id = self.image_id, plan.volume.id
        self.emit(ev.PhaseStarted, phase="wait", detail=f"waiting for image {image_id}")

        def fetch() -> tuple[Image | None, Volume | None]:
            return self.gateway.get_image(image_id), self.gateway.get_volume(volume_id)

        def finished(seen: tuple[Image | None, Volume | None]) -> bool:
            image, volume = seen
            if volume is None or volume.status == "error":
                return True
            if volume.status == "uploading":
                return False
            return image is None or image.status in IMAGE_DEAD_STATUSES or image.is_active

        def report(seen: tuple[Image | None, Volume | None]) -> None:
            image, volume = seen
            self.image = image
            self.emit(
                ev.UploadProgress,
                image_status=image.status if image else "gone",
                volume_status=volume.status if volume else "gone",
            )

        image, volume = self.wait(
            fetch,
            done=finished,
            report=report,
            what="the upload",
            who="Cinder",
            check=f"check with 'openstack image show {image_id}'; once it is active, run",
        )
        if image is not None and image.is_active and volume is not None:
            self.emit(ev.UploadFinished, image=image)
            return image
        raise self._upload_failure(plan, image, volume)

    def _upload_failure(
        self, plan: Plan, image: Image | None, volume: Volume | None
    ) -> UploadFailed:
        """Say why Cinder gave up, in Cinder's own words (GET /v3/messages)."""
        state = f"volume is {volume.status}" if volume is not None else "the volume disappeared"
        image_state = "deleted by Cinder" if image is None else image.status
        try:
            messages = self.gateway.volume_messages(plan.volume.id)
        except VolimgError:
            messages = []
        # Cinder records the message with the request id of the upload call.
        ours = [m for m in messages if m.request_id and m.request_id == self.upload_request_id]
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
            f"Cinder's upload of {plan.volume.label} failed: image {self.image_id} is "
            f"{image_state}, {state}{why}",
            hint=f"see 'openstack volume message list' for volume {plan.volume.id}, fix the "
            f"cause, then run volimg upload again{cleanup}",
        )

    def adopt_landing(self, plan: Plan, image: Image) -> None:
        """If the upload landed where only a hidden type store puts it, plan again."""
        replanned = replan_after_landing(plan, image.stores)
        if replanned is not None:
            self.plan = replanned
            self.emit(
                ev.Notice,
                message=f"the image landed in {', '.join(image.stores)}, not in "
                f"{plan.upload_store}: that is the volume type's store (hidden from you), so "
                f"it wins; planned stores now: {', '.join(replanned.placement.target_stores)}",
            )
        elif plan.upload_store and plan.upload_store not in image.stores:
            self.emit(
                ev.Notice,
                message=f"the image landed in {', '.join(image.stores) or 'no store'}, "
                f"not in {plan.upload_store} as planned; placing it by its real stores",
            )

    # --- replicate --------------------------------------------------------------

    def replicate(self, image: Image) -> None:
        placement = self.placement
        for store in placement.target_stores:
            if store in image.stores:
                self.settle(store, ALREADY_PRESENT)
        missing = placement.missing_from(image.stores)
        if not missing:
            return
        self.emit(
            ev.PhaseStarted,
            phase="replicate",
            detail=f"copying image {image.id} to {', '.join(missing)} with copy-image",
        )
        request_id = new_request_id()
        try:
            self.gateway.copy_image(
                image.id,
                missing,
                all_stores_must_succeed=placement.all_stores_must_succeed,
                request_id=request_id,
            )
        except PermissionDenied as exc:
            for store in missing:
                self.settle(store, FAILED, "copy-image refused (403)")
            raise PermissionDenied(
                f"Glance refused copy-image for image {image.id}: its copy_image policy is "
                f"admin-only by default; {self.where()}",
                hint=f"ask an admin to finish the job: {self.resume()}",
            ) from exc
        except (ConflictInCloud, RequestRejected) as exc:
            for store in missing:
                self.settle(store, FAILED, "copy-image refused")
            raise self._import_refused(image, exc) from exc
        except CloudError as exc:
            if not is_passing_fault(exc):
                raise
            # Glance may have started the import before the answer was lost: follow
            # the task named by our request id, never send the request again.
            self.emit(
                ev.Notice,
                message=f"the answer to the copy-image request was lost ({exc.message}); "
                "following whatever import Glance started",
            )
        self.copying = missing
        self.emit(ev.CopyRequested, stores=missing, request_id=request_id)
        if not self.settings.wait:
            for store in missing:
                self.settle(store, PENDING, "--no-wait: copy-image requested, not awaited")
            self.copying = ()
            return
        task = self._wait_for_copy(image, request_id, missing)
        self.image = image = self._reread(image)
        self.copying = ()
        failed: list[str] = []
        for store in missing:
            if store in image.stores:
                self.settle(store, COPIED)
                continue
            failed.append(store)
            if placement.all_stores_must_succeed and task is not None and task.status == "failure":
                detail = "Glance undid every copy (all_stores_must_succeed)"
            elif store in image.failed_import:
                detail = "Glance lists it in os_glance_failed_import"
            else:
                detail = "not among the image's stores after the import"
            if task is not None and task.message:
                detail += f"; task says: {task.message}"
            self.settle(store, FAILED, detail)
        if failed:
            if placement.prune:
                for store in placement.extra_in(image.stores):
                    self.settle(store, SKIPPED, "not pruned: a copy failed")
            raise PartialReplication(
                f"copy-image failed for {', '.join(failed)}; {self.where()}",
                hint=f"once the cause is fixed, finish with: {self.resume()}",
            )

    def _import_refused(self, image: Image, exc: CloudError) -> VolimgError:
        self.image = current = self._reread(image)
        if current.import_task:
            return ImportRejected(
                f"Glance refused copy-image: another import (task {current.import_task}) holds "
                f"the lock on image {image.id}; {self.where()}",
                hint="wait for it to finish (Glance drops a stale lock after about 60 minutes), "
                f"then run: {self.resume()}",
            )
        return ImportRejected(
            f"Glance refused copy-image for image {image.id}: {exc.message}",
            hint=f"fix the cause, then run: {self.resume()}",
        )

    def _reread(self, image: Image) -> Image:
        current = self.gateway.get_image(image.id)
        if current is None:
            raise NotFoundInCloud(f"image {image.id} disappeared while volimg was working on it")
        return current

    def _wait_for_copy(
        self, image: Image, request_id: str, stores: tuple[str, ...]
    ) -> ImportTask | None:
        """Wait on volimg's own import task, found by the request id it sent.

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
                    tasks = self.gateway.image_tasks(image.id)
                except NotFoundInCloud:
                    tasks_api = False
                else:
                    task = next((t for t in tasks if t.request_id == request_id), None)
            return task, self._reread(image)

        def finished(seen: tuple[ImportTask | None, Image]) -> bool:
            task, current = seen
            # Glance sets the lock before its 202 and drops it when the copy ends,
            # whether it succeeded or not, a moment AFTER the task is marked finished;
            # an import or store deletion sent in that moment gets 409. So the copy is
            # over when the task says so and the lock is gone.
            if task is not None and not task.finished:
                return False
            return current.import_task is None

        def report(seen: tuple[ImportTask | None, Image]) -> None:
            task, current = seen
            self.image = current
            self.emit(
                ev.CopyProgress,
                task_status=task.status if task else "unknown",
                message=task.message if task else "",
                done=tuple(s for s in stores if s in current.stores),
                failed=tuple(s for s in stores if s in current.failed_import),
            )

        task, _ = self.wait(
            fetch,
            done=finished,
            report=report,
            what="copy-image",
            who="Glance",
            check=f"check with 'openstack image show {image.id} -c stores'; if stores are "
            "still missing once the import ended, run",
        )
        return task

    def prune(self, image: Image) -> None:
        """Remove copies outside the target set once every copy exists; never the last."""
        extra = self.placement.extra_in(image.stores)
        if not self.placement.prune or not extra:
            return
        if not self.settings.wait or self.placement.missing_from(image.stores):
            reason = "--no-wait" if not self.settings.wait else "not every planned copy exists"
            for store in extra:
                self.settle(store, SKIPPED, f"not pruned: {reason}")
            return
        self.emit(ev.PhaseStarted, phase="prune", detail=f"removing copies in {', '.join(extra)}")
        for store in extra:
            current = self._reread(image)
            if store not in current.stores:
                continue
            if len(current.stores) <= 1:
                self.settle(store, SKIPPED, "never remove the last copy")
                continue
            try:
                self.gateway.delete_from_store(image.id, store)
            except PermissionDenied as exc:
                self.settle(store, PRUNE_FAILED, "removing a store's copy is admin-only (403)")
                self.image = self._reread(image)
                raise PermissionDenied(
                    f"Glance refused to remove image {image.id} from store {store} (admin-only "
                    f"by default); {self.where()}",
                    hint=f"ask an admin to run: {self.resume()}",
                ) from exc
            self.settle(store, PRUNED)
        self.image = self._reread(image)

    # --- ending -----------------------------------------------------------------

    def finish(self, steps: Callable[[], None]) -> Outcome:
        """Run the steps; whatever stops them, return what exists and how to go on."""
        error: VolimgError | None = None
        try:
            steps()
        except VolimgError as exc:
            error = exc
        except KeyboardInterrupt:
            error = self._interrupted()
        for store in self.copying:
            if store not in self.reports:
                self.settle(store, PENDING, "copy-image was requested; Glance may still finish")
        return self.outcome(error)

    def _interrupted(self) -> Interrupted:
        resume = self.resume()
        if resume:
            hint = f"what was already requested goes on in the cloud; to finish, run: {resume}"
        elif self.upload_requested_at is not None and isinstance(self.plan, Plan):
            name = self.plan.upload.image_name
            hint = (
                f"check 'openstack image list --name {name}' before running volimg again: "
                "if the image exists, finish with volimg replicate"
            )
        else:
            hint = "nothing was changed; run the command again"
        return Interrupted(f"interrupted; {self.where()}", hint=hint)


def _not_before(created_at: str | None, moment: datetime) -> bool:
    """Glance's created_at (ISO 8601, UTC, whole seconds) is not before ``moment``."""
    if not created_at:
        return True
    created = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    return created >= moment.replace(microsecond=0)


def run_upload(
    gateway: Gateway, plan: Plan, settings: RunSettings, emit: ev.EventSink = ev.ignore
) -> Outcome:
    """Upload the volume, wait, copy the image where the plan says, prune if asked."""
    run = _Run("upload", plan, gateway, settings, emit)

    def steps() -> None:
        run.upload(plan)
        if not settings.wait:
            run.image = run.gateway.get_image(run.image_id) if run.image_id else None
            for store in plan.replicate_to:
                run.settle(store, SKIPPED, "--no-wait: the upload is still running")
            for store in plan.prune_from:
                run.settle(store, SKIPPED, "not pruned: --no-wait")
            return
        image = run.wait_for_upload(plan)
        run.adopt_landing(plan, image)
        run.replicate(image)
        run.prune(run.image or image)

    return run.finish(steps)


def run_replication(
    gateway: Gateway, plan: ReplicationPlan, settings: RunSettings, emit: ev.EventSink = ev.ignore
) -> Outcome:
    """Copy an existing image to the plan's stores and prune if asked."""
    run = _Run("replicate", plan, gateway, settings, emit)
    run.image = plan.image

    def steps() -> None:
        run.replicate(plan.image)
        run.prune(run.image or plan.image)

    return run.finish(steps)


def planned(command: str, plan: Plan | ReplicationPlan) -> Outcome:
    """The outcome of a dry run: the plan, and nothing done."""
    image = plan.image if isinstance(plan, ReplicationPlan) else None
    return Outcome(command=command, plan=plan, image=image, dry_run=True)
