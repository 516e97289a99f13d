"""Many volumes at once, for cron: selection, concurrency, once per period, retention.

Every volume goes through the same steps as ``volimg upload VOLUME`` (the drivers of
``volimg.executor``). One volume's failure never stops the others; a busy volume is
skipped with its reason. With ``--once-per``, what an earlier run of the same period
did is found by its provenance stamp (a server-side filter on the stamp's period and
tag) and finished instead of done again, so a re-run never makes a second image for a
volume and period. Retention deletes only volimg-stamped images of a volume whose new
image is active and placed in this run, never a protected one.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

from volimg import events as ev
from volimg.core import SharedFacts, gather_upload_facts
from volimg.errors import (
    ExitCode,
    InputError,
    Interrupted,
    VolimgError,
    VolumeNotUploadable,
)
from volimg.executor import run_upload
from volimg.gateway import Gateway
from volimg.model import IMAGE_DEAD_STATUSES, Image, Volume
from volimg.planner import UploadOptions, default_image_name, plan_upload
from volimg.provenance import (
    KEY_MARK,
    KEY_PERIOD,
    KEY_SOURCE_VOLUME,
    SCHEMA,
    TAG,
    Period,
    Stamp,
    period_key,
)
from volimg.results import (
    OK,
    PARTIAL,
    PLANNED,
    RESULT_FAILED,
    STARTED,
    Outcome,
    RunSettings,
    planned,
)
from volimg.safety import own_upload_of
from volimg.steps.job import Job
from volimg.steps.mark import clear_stale_mark
from volimg.steps.stamp import finish_unstamped
from volimg.waiting import Clock

# Results of one volume in a batch (docs/json.md, docs/cron.md).
ALREADY_DONE = "already-done"
SKIPPED = "skipped"
BATCH_RESULTS = (OK, ALREADY_DONE, STARTED, PARTIAL, RESULT_FAILED, SKIPPED, PLANNED)

# Retention actions.
DELETED = "deleted"
WOULD_DELETE = "would-delete"
KEPT_PROTECTED = "kept-protected"
DELETE_FAILED = "delete-failed"

MAX_CONCURRENCY = 64

# Cinder statuses in which os-volume_upload_image is refused because the volume is
# busy with something else (cinder/volume/api.py copy_volume_to_image): skip, not fail.
BUSY_STATUSES = (
    "creating",
    "uploading",
    "downloading",
    "backing-up",
    "restoring-backup",
    "attaching",
    "detaching",
    "deleting",
    "extending",
    "retyping",
    "reserved",
    "maintenance",
    "awaiting-transfer",
)


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which volumes: names/ids, and volume-metadata selectors (ANDed)."""

    refs: tuple[str, ...] = ()
    selectors: tuple[tuple[str, str], ...] = ()
    all_projects: bool = False
    require_match: bool = False

    @property
    def is_batch(self) -> bool:
        return len(self.refs) != 1 or bool(self.selectors)


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    upload: UploadOptions = field(default_factory=UploadOptions)
    concurrency: int = 4
    once_per: Period | None = None
    keep: int | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class RetentionAction:
    image_id: str
    name: str
    created_at: str | None
    action: str  # deleted | would-delete | kept-protected | delete-failed
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class VolumeResult:
    """One volume's part of a batch: the same outcome a single upload returns, and more."""

    ref: str
    volume: Volume | None
    result: str
    reason: str = ""
    outcome: Outcome | None = None
    error: VolimgError | None = None
    retention: tuple[RetentionAction, ...] = ()
    seconds: float = 0.0
    uploaded_bytes: int = 0

    @property
    def label(self) -> str:
        return self.volume.label if self.volume else self.ref


@dataclass(frozen=True, kw_only=True)
class BatchOutcome:
    period: str | None
    results: tuple[VolumeResult, ...]
    not_started: tuple[str, ...] = ()
    started_at: datetime
    seconds: float
    interrupted: Interrupted | None = None
    dry_run: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """Volumes per result; every possible result is present (0 if none)."""
        seen = Counter(r.result for r in self.results)
        return {result: seen.get(result, 0) for result in BATCH_RESULTS}

    @property
    def uploaded_bytes(self) -> int:
        return sum(r.uploaded_bytes for r in self.results)

    @property
    def exit_code(self) -> ExitCode:
        """0 all done or already done; 1 any failed; 3 any partial; 130/143 interrupted."""
        if self.interrupted is not None:
            return self.interrupted.exit_code
        counts = self.counts
        if counts[RESULT_FAILED]:
            return ExitCode.FAILED
        if counts[PARTIAL]:
            return ExitCode.PARTIAL
        return ExitCode.OK

    @property
    def result(self) -> str:
        if self.interrupted is not None:
            return "interrupted"
        return {ExitCode.OK: OK, ExitCode.PARTIAL: PARTIAL}.get(self.exit_code, RESULT_FAILED)


ResultSink = Callable[[VolumeResult], None]


def select_volumes(
    gateway: Gateway, selection: Selection
) -> tuple[list[tuple[str, Volume]], list[VolumeResult]]:
    """Resolve names, ids and selectors to volumes, each volume once.

    A name that matches nothing (or several volumes) becomes a failed result of its
    own; the other volumes still run.
    """
    found: list[tuple[str, Volume]] = []
    failed: list[VolumeResult] = []
    for ref in selection.refs:
        try:
            found.append((ref, gateway.find_volume(ref)))
        except InputError as exc:
            failed.append(VolumeResult(ref=ref, volume=None, result=RESULT_FAILED, error=exc))
    if selection.selectors:
        for volume in gateway.list_volumes(
            metadata=dict(selection.selectors), all_projects=selection.all_projects
        ):
            found.append((volume.id, volume))
    unique: dict[str, tuple[str, Volume]] = {}
    for ref, volume in found:
        unique.setdefault(volume.id, (ref, volume))
    return list(unique.values()), failed


def batch_image_name(
    volume: Volume, period: str | None, at: datetime, shared_names: set[str]
) -> str:
    """``<volume>-<period>`` with --once-per (one image per period), else ``<volume>-<time>``.

    Volumes that share a name are told apart by their ID, so that an image name
    found after a crash points at one volume only.
    """
    label = volume.id if volume.name in shared_names or not volume.name else volume.name
    if period is None:
        return default_image_name(replace(volume, name=label), at)
    return f"{label}-{period}"


class _Stop:
    """Set once the batch is interrupted: no new volume starts, waits end early."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int = signal.SIGINT

    def set(self, signum: int) -> None:
        self.signum = signum
        self.event.set()

    def sleep(self, seconds: float) -> None:
        """The workers' sleep: a stopped batch interrupts them as the signal did."""
        if self.event.wait(seconds):
            from volimg.signals import Interrupt

            raise Interrupt(self.signum)


def run_batch(
    gateway: Gateway,
    selection: Selection,
    options: BatchOptions,
    settings: RunSettings,
    emit: ev.EventSink = ev.ignore,
    on_result: ResultSink | None = None,
) -> BatchOutcome:
    """Upload every selected volume, ``options.concurrency`` at a time."""
    clock = settings.clock
    started_at, started = clock.wall(), clock.monotonic()
    period = period_key(options.once_per, started_at) if options.once_per else None
    volumes, results = select_volumes(gateway, selection)
    if not volumes and not results and selection.require_match:
        raise InputError(
            "no volume matches the selection (--require-match)",
            hint="check the names, --from-file and --selector values, and --all-projects",
        )
    lock = threading.Lock()

    def locked_emit(event: ev.Event) -> None:
        with lock:
            emit(event)

    def report(result: VolumeResult) -> None:
        with lock:
            results.append(result)
            emit(
                ev.ItemFinished(
                    elapsed=clock.monotonic() - started,
                    subject=result.label,
                    result=result.result,
                    reason=result.reason or (result.error.message if result.error else ""),
                )
            )
            if on_result is not None:
                on_result(result)

    for failure in list(results):
        results.remove(failure)
        report(failure)
    if not volumes:
        return BatchOutcome(
            period=period,
            results=tuple(results),
            started_at=started_at,
            seconds=clock.monotonic() - started,
            dry_run=options.dry_run,
        )

    identity = gateway.identity()
    earlier = _period_images(gateway, period, identity.project_id) if period else {}
    names = [v.name for _, v in volumes if v.name]
    shared_names = {n for n in names if names.count(n) > 1}
    shared = SharedFacts()
    stop = _Stop()
    worker_clock = Clock(monotonic=clock.monotonic, sleep=stop.sleep, wall=clock.wall)
    worker_settings = replace(settings, clock=worker_clock)
    local = threading.local()
    gateways: list[Gateway] = []

    def worker_gateway() -> Gateway:
        if not hasattr(local, "gateway"):
            local.gateway = gateway.fork()
            with lock:
                gateways.append(local.gateway)
        return local.gateway  # type: ignore[no-any-return]

    def work(ref: str, volume: Volume) -> None:
        if stop.event.is_set():
            return
        locked_emit(ev.ItemStarted(elapsed=clock.monotonic() - started, subject=volume.label))
        name = batch_image_name(volume, period, started_at, shared_names)
        report(
            _one_volume(
                worker_gateway(),
                ref,
                volume,
                name=name,
                period=period,
                earlier=earlier.get(volume.id, []),
                options=options,
                settings=worker_settings,
                shared=shared,
                emit=locked_emit,
            )
        )

    concurrency = max(1, min(options.concurrency, MAX_CONCURRENCY, len(volumes)))
    interrupted: Interrupted | None = None
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="volimg")
    futures: list[Future[None]] = []
    try:
        futures = [pool.submit(work, ref, volume) for ref, volume in volumes]
        for future in futures:
            while True:
                try:
                    future.result(timeout=0.2)
                    break
                except TimeoutError:
                    continue
    except KeyboardInterrupt as exc:
        stop.set(Interrupted.signal_of(exc))
        interrupted = Interrupted(
            "interrupted; volumes already started were stopped at their next wait and "
            "report what exists; the others were not started",
            hint="run the same command again: with --once-per it finishes what this run began",
            signum=Interrupted.signal_of(exc),
        )
        for future in futures:
            future.cancel()
        _wait_quietly(futures)
    finally:
        pool.shutdown(wait=True)
        for forked in gateways:
            forked.close()
    done = {r.volume.id for r in results if r.volume is not None}
    not_started = tuple(v.label for _, v in volumes if v.id not in done)
    return BatchOutcome(
        period=period,
        results=tuple(results),
        not_started=not_started,
        started_at=started_at,
        seconds=clock.monotonic() - started,
        interrupted=interrupted,
        dry_run=options.dry_run,
    )


def _wait_quietly(futures: Sequence[Future[None]]) -> None:
    """After an interrupt, let running volumes report; a second Ctrl-C is the CLI's."""
    for future in futures:
        if not future.cancelled():
            try:
                future.result()
            except KeyboardInterrupt:
                continue


def _period_images(gateway: Gateway, period: str, project_id: str | None) -> dict[str, list[Image]]:
    """This period's live volimg images, by source volume: one filtered listing."""
    by_volume: dict[str, list[Image]] = {}
    for image in gateway.list_images(tag=TAG, properties={KEY_PERIOD: period}, owner=project_id):
        stamp = Stamp.from_properties(image.id, image.properties)
        if stamp is None or stamp.source_volume is None or image.status in IMAGE_DEAD_STATUSES:
            continue
        by_volume.setdefault(stamp.source_volume, []).append(image)
    return by_volume


def _one_volume(
    gateway: Gateway,
    ref: str,
    volume: Volume,
    *,
    name: str,
    period: str | None,
    earlier: list[Image],
    options: BatchOptions,
    settings: RunSettings,
    shared: SharedFacts,
    emit: ev.EventSink,
) -> VolumeResult:
    """Plan and run one volume; every expected failure becomes its result."""
    began = settings.clock.monotonic()

    def done(result: str, **fields: object) -> VolumeResult:
        return VolumeResult(
            ref=ref,
            volume=volume,
            result=result,
            seconds=settings.clock.monotonic() - began,
            **fields,  # type: ignore[arg-type]
        )

    try:
        resume = _earlier_upload(gateway, volume, name, period, earlier)
        if resume is None and volume.status in BUSY_STATUSES:
            return done(SKIPPED, reason=f"volume is {volume.status}: busy, not uploaded")
        facts = gather_upload_facts(
            gateway,
            volume,
            now=settings.clock.wall(),
            shared=shared,
            resuming=resume,
            check_name=False,
        )
        upload_options = replace(options.upload, image_name=resume.name if resume else name)
        try:
            plan = plan_upload(facts, upload_options)
        except VolumeNotUploadable as exc:
            if volume.status == "in-use":
                return done(SKIPPED, reason=exc.message, error=exc)
            raise
        if options.dry_run:
            # The run would add one image: it counts among the --keep newest.
            keep = None if options.keep is None else options.keep - (resume is None)
            retention = _retention(
                gateway, volume, keep, keep_id=None, clock=settings.clock, dry_run=True
            )
            return done(PLANNED, outcome=planned("upload", plan), retention=retention)
        if resume is not None and resume.is_active and plan.placement.done_in(resume.stores):
            job = Job(plan, settings, emit, subject=volume.label)
            finished = finish_unstamped(gateway, job, resume, period=period)
            clear_stale_mark(gateway, job, volume)
            retention = _retention(
                gateway, volume, options.keep, keep_id=resume.id, clock=settings.clock
            )
            return done(
                ALREADY_DONE,
                reason=f"image {resume.id} of this period is active and placed"
                + (f"; {finished}" if finished else ""),
                retention=retention,
            )
        stamp = Stamp.from_properties(resume.id, resume.properties) if resume else None
        if stamp is not None and not stamp.is_own_upload:
            # A Glance-filter stamp on the image this run's period made: the upload's
            # own stamp (what the mark records) is still to be written.
            stamp = None
        outcome = run_upload(
            gateway, plan, settings, emit, period=period, resume=resume, resume_stamp=stamp
        )
    except VolimgError as exc:
        return done(RESULT_FAILED, error=exc)
    result = outcome.result
    uploaded = 0
    if resume is None and outcome.image is not None:
        uploaded = outcome.image.size or 0
    reason = f"resumed image {resume.id}" if resume is not None else ""
    kept: tuple[RetentionAction, ...] = ()
    if result == OK and outcome.image is not None:
        kept = _retention(
            gateway, volume, options.keep, keep_id=outcome.image.id, clock=settings.clock
        )
        failed_deletes = [a.image_id for a in kept if a.action == DELETE_FAILED]
        if failed_deletes:
            # The image is made and placed; the retention it asked for is not done.
            result = PARTIAL
            reason = f"--keep could not delete {', '.join(failed_deletes)}"
    return done(
        result,
        reason=reason,
        outcome=outcome,
        error=outcome.error,
        retention=kept,
        uploaded_bytes=uploaded,
    )


def _earlier_upload(
    gateway: Gateway, volume: Volume, name: str, period: str | None, stamped: list[Image]
) -> Image | None:
    """The image an earlier run of this period made for the volume, if any.

    First by stamp; then by the period's image name, for a run killed between
    Cinder's answer and the stamp (the name is unique per volume and period).
    """
    if period is None:
        return None
    if stamped:
        return max(stamped, key=lambda i: (i.created_at or "", i.id))
    named = [
        image
        for image in gateway.images_named(name, owner=gateway.identity().project_id)
        if image.status not in IMAGE_DEAD_STATUSES
    ]
    return max(named, key=lambda i: (i.created_at or "", i.id)) if named else None


def _retention(
    gateway: Gateway,
    volume: Volume,
    keep: int | None,
    *,
    keep_id: str | None,
    clock: Clock,
    dry_run: bool = False,
) -> tuple[RetentionAction, ...]:
    """Delete the oldest volimg images of the volume beyond ``keep``.

    Only images that are volimg's own upload of this very volume (``volimg.safety``,
    docs/safety.md: never an adopted, Glance-filter-stamped, inherited or unstamped
    one), never a protected one, and never the image this run made or kept.
    """
    if keep is None:
        return ()
    owner = gateway.identity().project_id
    # The stamped images of the volume, and the images its killed runs never finished
    # (born with the mark, no stamp yet): one filtered listing each.
    listed = {
        image.id: image
        for image in [
            *gateway.list_images(tag=TAG, properties={KEY_SOURCE_VOLUME: volume.id}, owner=owner),
            *gateway.list_images(properties={KEY_MARK: SCHEMA}, owner=owner),
        ]
    }
    images = [
        image
        for image in listed.values()
        if image.status not in IMAGE_DEAD_STATUSES and own_upload_of(image, volume.id)
    ]
    images.sort(key=lambda i: (i.created_at or "", i.id), reverse=True)
    if keep_id is not None:
        # The image this run made or kept always counts among the newest.
        images.sort(key=lambda i: i.id != keep_id)
    actions: list[RetentionAction] = []
    for image in images[keep:]:
        if image.protected:
            actions.append(
                RetentionAction(image.id, image.name, image.created_at, KEPT_PROTECTED, "protected")
            )
        elif dry_run:
            actions.append(RetentionAction(image.id, image.name, image.created_at, WOULD_DELETE))
        else:
            try:
                gateway.delete_image(image.id)
            except VolimgError as exc:
                if _gone_despite(gateway, image.id, exc, clock):
                    actions.append(
                        RetentionAction(
                            image.id,
                            image.name,
                            image.created_at,
                            DELETED,
                            f"Glance deleted it, though its answer was lost ({exc.message})",
                        )
                    )
                    continue
                actions.append(
                    RetentionAction(
                        image.id, image.name, image.created_at, DELETE_FAILED, exc.message
                    )
                )
            else:
                actions.append(RetentionAction(image.id, image.name, image.created_at, DELETED))
    return tuple(actions)


def _gone_despite(gateway: Gateway, image_id: str, exc: VolimgError, clock: Clock) -> bool:
    """After a failed delete: is the image gone all the same? Look, never resend."""
    from volimg.errors import CloudError
    from volimg.waiting import IN_FLIGHT_GRACE, watch

    def gone() -> bool:
        try:
            return gateway.get_image(image_id) is None
        except VolimgError:
            return False

    if gone():
        return True
    if not (isinstance(exc, CloudError) and exc.in_flight):
        return False
    return watch(gone, seen=bool, clock=clock, seconds=IN_FLIGHT_GRACE, interval=1.0)
