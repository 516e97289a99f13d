"""The batch itself: read the cloud, run the volumes in a pool, stop, check for stale ones.

``run_batch`` never raises an expected failure. The start's reads are retried
(``retry_while_starting``, within ``--deadline``); a signal or the deadline sets a
``StopFlag`` that starts no more volumes and ends the waits of the running ones, which
then report ``interrupted``; the volumes never started are ``not-started``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from volimg import events as ev
from volimg.batch.options import MAX_CONCURRENCY, BatchOptions
from volimg.batch.outcome import (
    BACKED_UP,
    INTERRUPTED,
    STOP_EMPTY,
    STOP_INTERRUPTED,
    BatchOutcome,
    DeadlineReached,
    EmptySelection,
    VolumeResult,
    stop_reason,
)
from volimg.batch.selection import Selection, batch_image_name, select_volumes
from volimg.batch.volume import _one_volume, _period_images
from volimg.copy_slots import CopySlots
from volimg.core import SharedFacts
from volimg.errors import Interrupted, VolimgError
from volimg.gateway import Gateway
from volimg.model import Volume, parse_time
from volimg.poller import Poller
from volimg.provenance import KEY_SOURCE_VOLUME, TAG, period_key
from volimg.results import RunSettings
from volimg.safety import own_upload_of
from volimg.signals import StopFlag
from volimg.steps.job import volume_upload_command
from volimg.waiting import Clock, retry_while_starting

ResultSink = Callable[[VolumeResult], None]
T = TypeVar("T")


# What finishes a stopped batch. With --once-per the same command does: it finds each
# image this period began by its stamp, mark or period name and finishes it
# (volimg.batch.volume._earlier_upload). Without it nothing ties a new run to this one:
# the same command would upload every volume again, and adding --once-per would not
# help either (the images this run began carry no period and another name), so each
# volume gets its own command instead.
RERUN_HINT = "run the same command again: with --once-per it finishes what this run began"
STEPS_HINT = (
    "to finish what this batch began, run the next steps: each started volume's own "
    "command (volimg replicate for an image that is uploaded but not placed), then one "
    "volimg upload per volume not started; not the same command again, which would "
    "upload every volume anew"
)


def _deadline_error(seconds: float, *, once_per: bool) -> DeadlineReached:
    return DeadlineReached(
        f"the batch deadline ({seconds:g} s, --deadline) passed; volumes already started "
        "stopped waiting and report what exists; the others were not started",
        hint=RERUN_HINT if once_per else STEPS_HINT,
    )


def finishing_steps(
    results: Sequence[VolumeResult],
    not_started: Sequence[Volume],
    options: BatchOptions,
    settings: RunSettings,
) -> tuple[str, ...]:
    """The commands that finish a batch stopped without --once-per, volume by volume.

    A volume the stop caught has its own next steps (``volimg replicate`` of the image
    Cinder made, once it is active); one stopped before its upload was sent, and every
    volume never started, gets ``volimg upload VOLUME`` with the batch's upload
    options and ``--timeout`` (``--keep`` is left to the next batch: a single upload
    has no retention). One whose upload was sent but whose image volimg never saw
    gets its check (``openstack image list --name``), never a second upload.
    """
    steps: list[str] = []
    for result in results:
        if result.result != INTERRUPTED or result.volume is None:
            continue
        outcome = result.outcome
        if outcome is not None and outcome.next_steps:
            steps += outcome.next_steps
            continue
        hint = result.error.hint if result.error is not None else None
        if outcome is not None and outcome.image is not None:
            continue  # its image is placed: nothing is left to do
        if hint and not hint.startswith("nothing was changed"):
            steps.append(f"{result.volume.label}: {hint}")
            continue
        steps.append(volume_upload_command(result.volume.id, options.upload, settings))
    steps += [volume_upload_command(v.id, options.upload, settings) for v in not_started]
    return tuple(steps)


def _as_stopped(result: VolumeResult, stop: StopFlag, deadline: float | None) -> VolumeResult:
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

    stop = StopFlag()

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
    # One poller for the whole batch (volimg.poller), with a gateway of its own: the
    # waits of every volume read its listings instead of polling their own objects.
    poller_gateway = gateway.fork()
    gateways.append(poller_gateway)
    poller = Poller(poller_gateway, clock, settings.poll_interval)
    copy_slots = CopySlots(options.max_copies)

    def worker_gateway() -> Gateway:
        if not hasattr(local, "gateway"):
            local.gateway = gateway.fork()
            with lock:
                gateways.append(local.gateway)
        return local.gateway  # type: ignore[no-any-return]

    def work(ref: str, volume: Volume) -> None:
        if stop.event.is_set():
            return
        locked_emit(
            ev.ItemStarted(
                elapsed=clock.monotonic() - started,
                subject=volume.label,
                planning=options.dry_run,
            )
        )
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
                poller=poller,
                copy_slots=copy_slots,
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
                    halted = _deadline_error(
                        options.deadline or 0.0, once_per=options.once_per is not None
                    )
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
            hint=RERUN_HINT if options.once_per is not None else STEPS_HINT,
            signum=Interrupted.signal_of(exc),
        )
        for future in futures:
            future.cancel()
        _wait_quietly(futures)
    finally:
        pool.shutdown(wait=True)
        poller.close()
        for forked in gateways:
            forked.close()
    done = {r.volume.id for r in results if r.volume is not None}
    left = [v for _, v in volumes if v.id not in done]
    next_steps: tuple[str, ...] = ()
    if halted is not None and options.once_per is None and not options.dry_run:
        next_steps = finishing_steps(results, left, options, settings)
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
        not_started=tuple(v.label for v in left),
        started_at=started_at,
        seconds=clock.monotonic() - started,
        dry_run=options.dry_run,
        selected=len(volumes),
        stopped=halted,
        stop_reason=None if halted is None else stop_reason(halted),
        stale=stale,
        stale_after=None if stale is None else options.stale_seconds,
        next_steps=next_steps,
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
