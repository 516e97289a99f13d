"""The replicate step: copy-image to the missing stores, and follow it to its end.

``replicate`` sends one copy-image request with its own request id; a 5xx or a lost
answer is reconciled by looking for that id on the image's import tasks (or, without
the tasks API, at the import lock), never by resending. An import already running for the stores this run wants (an earlier run
of volimg's, interrupted) is followed instead of refused; Glance's refusals (403,
409 on the import lock) say who holds the lock and how to go on. The copy wait
follows one task and then the lock; each store is then settled as copied, failed or
rolled back, and a failed copy holds the prune back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from volimg import events as ev
from volimg.errors import (
    CloudError,
    ConflictInCloud,
    ImportRejected,
    NotFoundInCloud,
    PartialReplication,
    PermissionDenied,
    RequestRejected,
    VolimgError,
    WaitTimedOut,
)
from volimg.gateway import Gateway, new_request_id
from volimg.model import Image, ImportTask, format_time
from volimg.results import ALREADY_PRESENT, COPIED, FAILED, PENDING, ROLLED_BACK, SKIPPED
from volimg.steps.job import Job, watch_in_flight
from volimg.waiting import PollTimedOut, is_passing_fault

# Glance's copy task reports progress as "Copied N MiB": not an explanation of a failure.
_PROGRESS_MESSAGE = re.compile(r"^Copied \d+ MiB$")


# After Glance marks a copy task finished, how soon to look whether it dropped the lock.
LOCK_RELEASE_LOOK = 0.2


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
    if job.copy_slots is None:
        _copy(gateway, job, image, missing)
        return
    slots = job.copy_slots

    def say_waiting(in_flight: int) -> None:
        job.emit(
            ev.Notice,
            message=f"waiting for a copy slot: {in_flight} copy-image imports of this batch "
            f"are in flight (--max-copies {slots.limit})",
        )

    try:
        with slots.slot(job.deadline, say_waiting) as waited:
            if waited:
                job.copy_slot_wait = waited
            _copy(gateway, job, image, missing)
    except PollTimedOut:
        raise WaitTimedOut(
            f"gave up waiting for a copy slot (--max-copies {slots.limit}): the run's "
            f"--timeout of {job.settings.timeout:g} s ran out; {job.where()}",
            hint=f"once the batch's other copies are over, run: {job.resume()}",
        ) from None


def _copy(gateway: Gateway, job: Job, image: Image, missing: tuple[str, ...]) -> None:
    """Ask for the copy once, follow it; after a quota refusal, wait and ask again."""
    placement = job.placement
    refusals = 0
    while True:
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
                if exc.in_flight and job.deadline.expired:
                    raise _copy_unanswered(job, image, missing, request_id, exc) from exc
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
        task, image = _wait_for_copy(gateway, job, image, missing, _with_request_id(request_id))
        job.copying = ()
        limit = glance_limit_hit(task)
        if limit is not None and not set(missing) & set(image.stores):
            if limit not in job.limits_hit:
                job.limits_hit.append(limit)
            if _wait_for_quota(job, image, limit, refusals):
                refusals += 1
                missing = placement.missing_from(image.stores)
                continue
        _settle_copies(job, image, missing, task, limit)
        return


def _with_request_id(request_id: str) -> Callable[[ImportTask], bool]:
    return lambda task: task.request_id == request_id


def _copy_unanswered(
    job: Job, image: Image, missing: tuple[str, ...], request_id: str, exc: CloudError
) -> WaitTimedOut:
    """copy-image was sent and its answer had not come when --timeout ran out (each
    request is bounded by what is left of it): Glance may still start the import, so
    volimg cannot say that none started, nor that running it again is safe."""
    for store in missing:
        job.settle(store, PENDING, "copy-image sent, no answer before --timeout")
    _hold_back_prune(job, image)
    return WaitTimedOut(
        f"the copy-image request for image {image.id} got no answer before the run's "
        f"--timeout of {job.settings.timeout:g} s ran out ({exc.message}); Glance may "
        f"still start the import (request {request_id}); {job.where()}",
        hint=f"check with 'volimg audit --image {image.id}' whether the import runs; "
        f"then run (it follows a running import): {job.resume()}",
    )


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
            f"not moved since {format_time(task.updated_at)}: Glance lets a new import take it over",
        )
        return image
    if task.looks_dead(job.settings.clock.wall()):
        # The rule audit and doctor apply (ImportTask.looks_dead): following a task
        # no worker runs would wait out the whole --timeout for nothing.
        _stale_lock(job, image, task, tuple(sorted(wanted & copying_to or wanted)), takeover)
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


def _stale_lock(
    job: Job,
    image: Image,
    task: ImportTask,
    stores: tuple[str, ...],
    takeover: datetime | None,
) -> None:
    """Report an abandoned import's lock and stop: only time (Glance's takeover) frees it."""
    silent = f"has not moved since {format_time(task.updated_at or task.created_at)}"
    when = format_time(takeover) if takeover is not None else "an unknown time"
    job.blocked_until = takeover
    for store in stores:
        job.settle(store, FAILED, f"stale import lock (task {task.id}) until {when}")
    raise ImportRejected(
        f"the import lock of image {image.id} is held by task {task.id}, which {silent}: "
        f"its import was abandoned; Glance lets a new import take the lock over at {when}",
        hint=f"at or after {when}, run: {job.resume()}",
    )


def _settle_copies(
    job: Job,
    image: Image,
    stores: tuple[str, ...],
    task: ImportTask | None,
    limit: str | None = None,
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
        elif limit is not None:
            detail = f"Glance's {limit} limit refused the copy until the run's --timeout"
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


_OVER_LIMIT = re.compile(r"Resource (\w+) is over limit")

# Waits between copy-image attempts after a quota refusal: 5 s, 10 s, 20 s ... 60 s.
QUOTA_FIRST_WAIT = 5.0
QUOTA_MAX_WAIT = 60.0


def glance_limit_hit(task: ImportTask | None) -> str | None:
    """The limit that made Glance fail a copy, or None for any other outcome.

    Glance checks ``image_stage_total`` and ``image_count_uploading`` inside the copy
    task (glance/async_/flows/api_image_import.py ``assert_quota``), after its 202,
    and fails the task with oslo.limit's text ("Resource image_count_uploading is over
    limit of 2 ..."); a staging directory that is full fails it with ENOSPC.
    """
    if task is None or task.status != "failure":
        return None
    found = _OVER_LIMIT.search(task.message)
    if found:
        return found.group(1)
    if "No space left on device" in task.message:
        return "staging disk"
    return None


def _wait_for_quota(job: Job, image: Image, limit: str, refusals: int) -> bool:
    """Wait before asking again, if the run's --timeout leaves time; False: give up.

    The refused copy changed nothing (Glance dropped its lock and its importing
    stores): asking again is a new request, not a resend of one whose fate is unknown.
    """
    pause = min(QUOTA_MAX_WAIT, QUOTA_FIRST_WAIT * 2**refusals)
    if job.deadline.remaining <= pause:
        return False
    job.emit(
        ev.Notice,
        message=f"Glance's {limit} limit refused the copy of image {image.id} (other imports "
        f"hold it); asking again in {pause:g} s",
    )
    job.settings.clock.sleep(pause)
    return True


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

    def from_listing() -> tuple[ImportTask | None, Image]:
        # The batch's poller lists the image: the lock, taken before Glance's 202 and
        # dropped when the import ends, says when it is over; the task is read after.
        assert job.poller is not None
        current = job.poller.image(image.id)
        if current is None:
            raise NotFoundInCloud(f"image {image.id} disappeared while volimg was copying it")
        return None, current

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
            task_status=task.status if task else ("running" if current.import_task else "not seen"),
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
        check=f"check with 'volimg audit --image {image.id}' (it says whether the import "
        "still runs, and where the image is); if stores are still missing once it no "
        "longer runs",
        shared=(from_listing, image.id, None),
    )
    job.image = current
    if task is None and job.poller is not None and not set(stores) <= set(current.stores):
        # A store is missing: the task says whether Glance rolled it back, and why.
        try:
            task = next((t for t in gateway.image_tasks(image.id) if is_ours(t)), None)
        except NotFoundInCloud:
            task = None
    return task, current
