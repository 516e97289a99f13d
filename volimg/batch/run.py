"""Many volumes at once, for cron: selection, concurrency, once per period, retention.

Every volume goes through the same steps as ``volimg upload VOLUME`` (the drivers of
``volimg.executor``). One volume's failure never stops the others; a busy volume is
skipped with its reason. With ``--once-per``, what an earlier run of the same period
did is found by its provenance stamp (a server-side filter on the stamp's period and
tag) and finished instead of done again, so a re-run never makes a second image for a
volume and period. Retention deletes only volimg-stamped images of a volume whose new
image is active and placed in this run, never a protected one.

Whatever ends a batch, ``run_batch`` returns a ``BatchOutcome`` that says so: a
failure before the first volume (the cloud unreachable, credentials refused, a listing
that kept failing after ``retry_while_starting``'s retries) is ``stopped`` with a reason
class from ``STOP_REASONS``; a signal or ``--deadline`` stops starting volumes and ends
the waits of the running ones (``interrupted`` / ``not-started``). The CLI turns that
outcome into the exit code, the documents and the metrics file (docs/cron.md).
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Protocol, TypeVar

from volimg import events as ev
from volimg.core import SharedFacts, gather_upload_facts
from volimg.errors import (
    AuthError,
    ConfigError,
    ExitCode,
    InputError,
    Interrupted,
    LockHeld,
    VolimgError,
    VolumeNotUploadable,
    WaitTimedOut,
)
from volimg.executor import run_upload
from volimg.gateway import Gateway, is_unreachable
from volimg.model import IMAGE_DEAD_STATUSES, Image, Volume, parse_time
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
from volimg.waiting import Clock, retry_while_starting

# Results of one volume in a batch (docs/json.md, docs/cron.md).
ALREADY_DONE = "already-done"
SKIPPED = "skipped"
TIMED_OUT = "timed-out"  # its own --timeout passed while volimg waited (exit 4)
INTERRUPTED = "interrupted"  # running when a signal or --deadline stopped the batch
NOT_STARTED = "not-started"  # never started: a signal or --deadline came first
BATCH_RESULTS = (
    OK,
    ALREADY_DONE,
    STARTED,
    PARTIAL,
    TIMED_OUT,
    RESULT_FAILED,
    SKIPPED,
    INTERRUPTED,
    NOT_STARTED,
    PLANNED,
)
# Results that mean "backed up": the volume's image of this run is active and placed.
BACKED_UP = (OK, ALREADY_DONE)

# Why a volume was skipped (a bounded set: a metric label).
SKIP_BUSY = "busy"  # Cinder is doing something else with it
SKIP_IN_USE = "in-use"  # attached, and no --force
SKIP_STATUS = "skip-status"  # left out on purpose by --skip-status
SKIP_REASONS = (SKIP_BUSY, SKIP_IN_USE, SKIP_STATUS)

# What stopped a whole run before it finished (a bounded set: a metric label).
STOP_CONFIG = "config"  # clouds.yaml / OS_* unusable
STOP_AUTH = "auth"  # credentials or permission refused
STOP_UNREACHABLE = "cloud-unreachable"  # no connection to Keystone or a service
STOP_KEYSTONE = "keystone-error"  # Keystone answered an error other than 401/403
STOP_LISTING = "listing-failed"  # listing or looking up the volumes/images failed
STOP_LOCK = "lock-held"  # another run holds --lock
STOP_INPUT = "input"  # bad input: options, volume list, selectors
STOP_EMPTY = "empty-selection"  # nothing selected (unless --allow-empty)
STOP_INTERRUPTED = "interrupted"  # SIGINT / SIGTERM
STOP_DEADLINE = "deadline"  # --deadline passed
STOP_INTERNAL = "internal-error"  # a bug: volimg raised something unexpected
STOP_REASONS = (
    STOP_CONFIG,
    STOP_AUTH,
    STOP_UNREACHABLE,
    STOP_KEYSTONE,
    STOP_LISTING,
    STOP_LOCK,
    STOP_INPUT,
    STOP_EMPTY,
    STOP_INTERRUPTED,
    STOP_DEADLINE,
    STOP_INTERNAL,
)

# The batch's own result (docs/json.md): what the exit code says, in a word.
RUN_EMPTY = "empty"
RUN_LOCKED = "locked"

# Retention actions.
DELETED = "deleted"
WOULD_DELETE = "would-delete"
KEPT_PROTECTED = "kept-protected"
DELETE_FAILED = "delete-failed"

MAX_CONCURRENCY = 64

# Seconds in a --once-per period, for the default of --stale-after (two periods).
PERIOD_SECONDS = {
    Period.HOUR: 3600.0,
    Period.DAY: 86400.0,
    Period.WEEK: 7 * 86400.0,
    Period.MONTH: 31 * 86400.0,
}
STALE_PERIODS = 2

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
    require_match: bool = True  # an empty selection stops the run (exit 2)

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
    # Seconds after which the batch starts no volume and stops waiting (--deadline).
    deadline: float | None = None
    # Cinder statuses whose volumes are skipped without a request (--skip-status).
    skip_statuses: tuple[str, ...] = ()
    # A volume whose newest active volimg image is older than this is "stale"
    # (--stale-after); None: two --once-per periods, else two days.
    stale_after: float | None = None

    @property
    def stale_seconds(self) -> float:
        if self.stale_after is not None:
            return self.stale_after
        period = PERIOD_SECONDS[self.once_per] if self.once_per else PERIOD_SECONDS[Period.DAY]
        return STALE_PERIODS * period


class DeadlineReached(WaitTimedOut):
    """``--deadline`` passed: no volume was started after it, running ones stopped waiting."""


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
    skip_reason: str | None = None  # SKIP_REASONS, for a skipped volume

    @property
    def label(self) -> str:
        return self.volume.label if self.volume else self.ref


@dataclass(frozen=True, kw_only=True)
class BatchOutcome:
    """What a batch did, or what stopped it; everything the outputs and metrics say.

    ``stopped`` is what ended the whole run early: a failure before the first volume
    (with ``stop_reason`` from ``STOP_REASONS``), a signal (``Interrupted``) or the
    deadline (``DeadlineReached``). ``selected`` is None when the run stopped before
    it knew which volumes it had; ``stale`` None when nobody looked.
    """

    period: str | None
    results: tuple[VolumeResult, ...]
    not_started: tuple[str, ...] = ()
    started_at: datetime
    seconds: float
    dry_run: bool = False
    selected: int | None = None
    stopped: VolimgError | None = None
    stop_reason: str | None = None
    stale: tuple[str, ...] | None = None  # selected volumes not backed up for stale_after
    stale_after: float | None = None

    @classmethod
    def stopped_before_start(
        cls,
        error: VolimgError,
        reason: str,
        *,
        started_at: datetime,
        seconds: float,
        dry_run: bool = False,
        selected: int | None = None,
        period: str | None = None,
    ) -> BatchOutcome:
        """A run that ended before any volume started: nothing was changed."""
        return cls(
            period=period,
            results=(),
            started_at=started_at,
            seconds=seconds,
            dry_run=dry_run,
            selected=selected,
            stopped=error,
            stop_reason=reason,
        )

    @property
    def interrupted(self) -> Interrupted | None:
        """The signal that stopped the batch, if one did."""
        return self.stopped if isinstance(self.stopped, Interrupted) else None

    @property
    def counts(self) -> dict[str, int]:
        """Volumes per result; every possible result is present (0 if none)."""
        seen = Counter(r.result for r in self.results)
        seen[NOT_STARTED] += len(self.not_started)
        return {result: seen.get(result, 0) for result in BATCH_RESULTS}

    @property
    def skipped(self) -> dict[str, int]:
        """Skipped volumes per reason; every reason present (0 if none)."""
        seen = Counter(r.skip_reason for r in self.results if r.result == SKIPPED)
        return {reason: seen.get(reason, 0) for reason in SKIP_REASONS}

    @property
    def uploaded_bytes(self) -> int:
        return sum(r.uploaded_bytes for r in self.results)

    @property
    def exit_code(self) -> ExitCode:
        """What stopped the run, else: 1 any failed; 4 any timed out; 3 any partial; 0.

        A signal is 130/143, the deadline 4, an empty selection 2 (docs/cron.md).
        """
        if self.stopped is not None:
            return self.stopped.exit_code
        counts = self.counts
        if counts[RESULT_FAILED]:
            return ExitCode.FAILED
        if counts[TIMED_OUT]:
            return ExitCode.TIMEOUT
        if counts[PARTIAL]:
            return ExitCode.PARTIAL
        return ExitCode.OK

    @property
    def result(self) -> str:
        """ok | partial | timed-out | failed | interrupted | empty | locked | planned."""
        if self.stop_reason == STOP_EMPTY or (
            self.stopped is None and self.selected == 0 and not self.results
        ):
            return RUN_EMPTY
        if self.dry_run and self.stopped is None:
            return PLANNED
        if isinstance(self.stopped, Interrupted):
            return INTERRUPTED
        if isinstance(self.stopped, LockHeld):
            return RUN_LOCKED
        return {
            ExitCode.OK: OK,
            ExitCode.PARTIAL: PARTIAL,
            ExitCode.TIMEOUT: TIMED_OUT,
        }.get(self.exit_code, RESULT_FAILED)

    @property
    def succeeded(self) -> bool:
        """Every selected volume is backed up: what advances the last success time.

        At least one volume was selected, nothing stopped the run, no name failed to
        resolve, and every volume ended ``ok`` or ``already-done``; a volume left out
        on purpose (``--skip-status``) does not count against it (the stale check still
        watches it). Not the exit code: a closed stdout (141) after a good night is
        still a good night, and an empty selection (exit 0 with --allow-empty) is not.
        """
        if self.dry_run or self.stopped is not None or not self.selected:
            return False
        return all(
            r.result in BACKED_UP or (r.result == SKIPPED and r.skip_reason == SKIP_STATUS)
            for r in self.results
        ) and any(r.result in BACKED_UP for r in self.results)


def stop_reason(error: VolimgError, *, listing: bool = False) -> str:
    """The reason class (``STOP_REASONS``) of an error that stopped a whole run.

    ``listing``: it came while selecting volumes or reading this period's images,
    after Keystone had answered.
    """
    if isinstance(error, DeadlineReached):
        return STOP_DEADLINE
    if isinstance(error, Interrupted):
        return STOP_INTERRUPTED
    if isinstance(error, LockHeld):
        return STOP_LOCK
    if isinstance(error, AuthError):
        return STOP_AUTH
    if isinstance(error, ConfigError):
        return STOP_CONFIG
    if isinstance(error, EmptySelection):
        return STOP_EMPTY
    if isinstance(error, InputError):
        return STOP_INPUT
    if is_unreachable(error):
        return STOP_UNREACHABLE
    return STOP_LISTING if listing else STOP_KEYSTONE


class EmptySelection(InputError):
    """No volume matched the selection (exit 2 unless --allow-empty)."""


ResultSink = Callable[[VolumeResult], None]
T = TypeVar("T")
R = TypeVar("R")


class Retried(Protocol):
    """How the start's reads are made: ``retry_while_starting`` with the batch's budget."""

    def __call__(self, action: str, read: Callable[[], T], /) -> T: ...


def select_volumes(
    gateway: Gateway,
    selection: Selection,
    retried: Retried | None = None,
) -> tuple[list[tuple[str, Volume]], list[VolumeResult]]:
    """Resolve names, ids and selectors to volumes, each volume once.

    A name that matches nothing (or several volumes) becomes a failed result of its
    own; the other volumes still run. ``retried`` wraps each lookup and listing (the
    batch passes ``retry_while_starting``); a cloud error that remains ends the run.
    """

    def call(action: str, read: Callable[[], R]) -> R:
        return read() if retried is None else retried(action, read)

    found: list[tuple[str, Volume]] = []
    failed: list[VolumeResult] = []
    for ref in selection.refs:
        try:
            found.append(
                (ref, call(f"looking up volume {ref!r}", partial(gateway.find_volume, ref)))
            )
        except InputError as exc:
            failed.append(VolumeResult(ref=ref, volume=None, result=RESULT_FAILED, error=exc))
    if selection.selectors:
        listed = call(
            "listing volumes",
            lambda: gateway.list_volumes(
                metadata=dict(selection.selectors), all_projects=selection.all_projects
            ),
        )
        for volume in listed:
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
    """Set once the batch is stopped (a signal, the deadline): no new volume starts,
    and the running ones stop at their next wait."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int = signal.SIGINT
        self.deadline = False

    def set(self, signum: int) -> None:
        self.signum = signum
        self.event.set()

    def set_deadline(self) -> None:
        self.deadline = True
        self.event.set()

    def sleep(self, seconds: float) -> None:
        """The workers' sleep: a stopped batch interrupts them as the signal did."""
        if self.event.wait(seconds):
            from volimg.signals import Interrupt

            raise Interrupt(self.signum)


def _deadline_error(seconds: float) -> DeadlineReached:
    return DeadlineReached(
        f"the batch deadline ({seconds:g} s, --deadline) passed; volumes already started "
        "stopped waiting and report what exists; the others were not started",
        hint="run the same command again: with --once-per it finishes what this run began",
    )


def _as_stopped(result: VolumeResult, stop: _Stop, deadline: float | None) -> VolumeResult:
    """A volume the stop caught while it waited is ``interrupted``, never ``failed``."""
    if not isinstance(result.error, Interrupted) or not stop.event.is_set():
        return result
    error: VolimgError = result.error
    if stop.deadline and deadline is not None:
        where = error.message.removeprefix("interrupted; ")
        error = DeadlineReached(
            f"stopped at the batch deadline ({deadline:g} s); {where}", hint=error.hint
        )
    return replace(result, result=INTERRUPTED, error=error)


def run_batch(
    gateway: Gateway,
    selection: Selection,
    options: BatchOptions,
    settings: RunSettings,
    emit: ev.EventSink = ev.ignore,
    on_result: ResultSink | None = None,
) -> BatchOutcome:
    """Upload every selected volume, ``options.concurrency`` at a time.

    Never raises an expected failure: one that stops the whole run (before the first
    volume, a signal, the deadline) is in the outcome's ``stopped``.
    """
    clock = settings.clock
    started_at, started = clock.wall(), clock.monotonic()
    period = period_key(options.once_per, started_at) if options.once_per else None
    deadline_at = None if options.deadline is None else started + options.deadline

    def retried(action: str, read: Callable[[], T]) -> T:
        budget = None if deadline_at is None else deadline_at - clock.monotonic()
        return retry_while_starting(action, read, sleep=clock.sleep, budget=budget)

    def stopped(error: VolimgError, reason: str, selected: int | None = None) -> BatchOutcome:
        return BatchOutcome.stopped_before_start(
            error,
            reason,
            started_at=started_at,
            seconds=clock.monotonic() - started,
            dry_run=options.dry_run,
            selected=selected,
            period=period,
        )

    listing = False
    try:
        # Keystone first: its failures are told apart from the listings' (STOP_REASONS).
        identity = retried("authenticating with Keystone", gateway.identity)
        listing = True
        volumes, results = select_volumes(gateway, selection, retried)
        if not volumes and not results and selection.require_match:
            return stopped(
                EmptySelection(
                    "no volume matches the selection",
                    hint="check the names, --from-file and --selector values, and "
                    "--all-projects; --allow-empty makes an empty selection exit 0",
                ),
                STOP_EMPTY,
                selected=0,
            )
        earlier = (
            retried(
                "listing this period's images",
                lambda: _period_images(gateway, period, identity.project_id),
            )
            if period and volumes
            else {}
        )
    except VolimgError as exc:
        return stopped(exc, stop_reason(exc, listing=listing))
    except KeyboardInterrupt as exc:
        signum = Interrupted.signal_of(exc)
        return stopped(
            Interrupted(
                "interrupted while reading the cloud; nothing was changed",
                hint="run the command again",
                signum=signum,
            ),
            STOP_INTERRUPTED,
        )
    lock = threading.Lock()

    def locked_emit(event: ev.Event) -> None:
        with lock:
            emit(event)

    stop = _Stop()

    def report(result: VolumeResult) -> None:
        result = _as_stopped(result, stop, options.deadline)
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
            selected=0,
        )

    names = [v.name for _, v in volumes if v.name]
    shared_names = {n for n in names if names.count(n) > 1}
    shared = SharedFacts()
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
    halted: VolimgError | None = None
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="volimg")
    futures: list[Future[None]] = []
    try:
        futures = [pool.submit(work, ref, volume) for ref, volume in volumes]
        for future in futures:
            while True:
                if deadline_at is not None and clock.monotonic() >= deadline_at:
                    stop.set_deadline()
                    halted = _deadline_error(options.deadline or 0.0)
                    for pending in futures:
                        pending.cancel()
                    _wait_quietly(futures)
                    break
                try:
                    future.result(timeout=0.2)
                    break
                except TimeoutError:
                    continue
            if halted is not None:
                break
    except KeyboardInterrupt as exc:
        stop.set(Interrupted.signal_of(exc))
        halted = Interrupted(
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
    stale: tuple[str, ...] | None = None
    if halted is None and not options.dry_run:
        try:
            stale = _stale_volumes(
                gateway,
                [v for _, v in volumes],
                results,
                now=clock.wall(),
                older_than=options.stale_seconds,
                owner=identity.project_id,
            )
        except KeyboardInterrupt as exc:
            halted = Interrupted(
                "interrupted after every volume had finished; their results stand",
                hint="nothing is left to finish",
                signum=Interrupted.signal_of(exc),
            )
    return BatchOutcome(
        period=period,
        results=tuple(results),
        not_started=not_started,
        started_at=started_at,
        seconds=clock.monotonic() - started,
        dry_run=options.dry_run,
        selected=len(volumes),
        stopped=halted,
        stop_reason=None if halted is None else stop_reason(halted),
        stale=stale,
        stale_after=None if stale is None else options.stale_seconds,
    )


def _stale_volumes(
    gateway: Gateway,
    volumes: Sequence[Volume],
    results: Sequence[VolumeResult],
    *,
    now: datetime,
    older_than: float,
    owner: str | None,
) -> tuple[str, ...]:
    """The selected volumes whose newest backup is older than ``older_than`` seconds.

    A volume that ended ``ok`` or ``already-done`` in this run has one now. For the
    others (failed, skipped, partial, timed out, ...) one filtered listing each finds
    the newest active image volimg uploaded of it (``volimg.safety.own_upload_of``);
    none, or a listing that fails, counts as stale: better a page than silence. A
    good night costs no request.
    """
    backed_up = {r.volume.id for r in results if r.volume is not None and r.result in BACKED_UP}
    stale: list[str] = []
    for volume in volumes:
        if volume.id in backed_up:
            continue
        try:
            images = gateway.list_images(
                tag=TAG, properties={KEY_SOURCE_VOLUME: volume.id}, owner=owner
            )
        except VolimgError:
            stale.append(volume.label)
            continue
        times = [
            moment
            for image in images
            if image.status == "active" and own_upload_of(image, volume.id)
            for moment in [parse_time(image.created_at)]
            if moment is not None
        ]
        if not times or (now - max(times)).total_seconds() > older_than:
            stale.append(volume.label)
    return tuple(stale)


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

    if volume.status in options.skip_statuses:
        # Left out on purpose, before any request (--skip-status).
        return done(
            SKIPPED,
            reason=f"volume is {volume.status}: left out by --skip-status",
            skip_reason=SKIP_STATUS,
        )
    try:
        resume = _earlier_upload(gateway, volume, name, period, earlier)
        if resume is None and volume.status in BUSY_STATUSES:
            return done(
                SKIPPED,
                reason=f"volume is {volume.status}: busy, not uploaded",
                skip_reason=SKIP_BUSY,
            )
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
                return done(SKIPPED, reason=exc.message, error=exc, skip_reason=SKIP_IN_USE)
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
    if isinstance(outcome.error, WaitTimedOut):
        # Its own --timeout passed: exit 4 for the batch too, not 1 (docs/cron.md).
        result = TIMED_OUT
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
