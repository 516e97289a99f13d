"""What a run and a batch come to: result, exit code and counts, as tables.

The outcomes are built directly, with no cloud: the scenario tests show that a run
builds the right ones, these show what each one means (docs/json.md, docs/cron.md).
They are the fast tests of the ``results`` mutation target (docs/testing.md).
"""

from __future__ import annotations

import signal
from datetime import datetime, timezone

import pytest

from volimg.batch import (
    BATCH_RESULTS,
    SKIP_REASONS,
    STOP_EMPTY,
    STOP_LOCK,
    BatchOutcome,
    DeadlineReached,
    VolumeResult,
)
from volimg.errors import (
    ExitCode,
    InputError,
    Interrupted,
    LockHeld,
    PartialReplication,
    PermissionDenied,
    VolimgError,
    WaitTimedOut,
)
from volimg.model import CloudIdentity, GlanceInfo, Image, Store
from volimg.planner import ReplicationFacts, ReplicationOptions, plan_replication
from volimg.results import Outcome, planned

AT = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
ACTIVE = Image(id="img-1", name="boot-vol-1", status="active", stores=("fast",))
QUEUED = Image(id="img-1", name="boot-vol-1", status="queued")
KILLED = Image(id="img-1", name="boot-vol-1", status="killed")
GLANCE = GlanceInfo(
    stores=(Store("fast", is_default=True), Store("cheap")),
    import_methods=("copy-image",),
)
ADMIN = CloudIdentity(project_id="p1", roles=("admin",))
REPLICATION = plan_replication(
    ReplicationFacts(image=ACTIVE, like=None, glance=GLANCE, identity=ADMIN),
    ReplicationOptions(stores=("cheap",)),
)


# --- one run: volimg.results.Outcome ----------------------------------------------------


@pytest.mark.parametrize(
    ("image", "error", "dry_run", "waited", "result", "exit_code"),
    [
        pytest.param(ACTIVE, None, False, True, "ok", ExitCode.OK, id="done"),
        pytest.param(None, None, False, True, "ok", ExitCode.OK, id="done-no-image-read"),
        pytest.param(QUEUED, None, False, False, "started", ExitCode.OK, id="no-wait"),
        pytest.param(ACTIVE, None, True, True, "planned", ExitCode.OK, id="dry-run"),
        pytest.param(
            ACTIVE, InputError("bad"), True, True, "planned", ExitCode.USAGE, id="dry-run-refused"
        ),
        pytest.param(
            ACTIVE,
            PartialReplication("copy failed"),
            False,
            True,
            "partial",
            ExitCode.PARTIAL,
            id="active-image-copy-failed",
        ),
        pytest.param(
            ACTIVE,
            WaitTimedOut("gave up"),
            False,
            False,
            "partial",
            ExitCode.TIMEOUT,
            id="active-image-timed-out",
        ),
        pytest.param(
            QUEUED,
            WaitTimedOut("gave up"),
            False,
            True,
            "failed",
            ExitCode.TIMEOUT,
            id="image-not-active",
        ),
        pytest.param(
            KILLED,
            VolimgError("upload failed"),
            False,
            True,
            "failed",
            ExitCode.FAILED,
            id="killed",
        ),
        pytest.param(
            None,
            PermissionDenied("403"),
            False,
            True,
            "failed",
            ExitCode.AUTH,
            id="no-image",
        ),
    ],
)
def test_an_outcomes_result_and_exit_code(
    image: Image | None,
    error: VolimgError | None,
    dry_run: bool,
    waited: bool,
    result: str,
    exit_code: ExitCode,
) -> None:
    outcome = Outcome(
        command="upload",
        plan=REPLICATION,
        image=image,
        error=error,
        dry_run=dry_run,
        waited=waited,
    )
    assert (outcome.result, outcome.exit_code) == (result, exit_code)


def test_an_interrupted_outcome_exits_with_its_signals_code() -> None:
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        outcome = Outcome(
            command="upload", plan=REPLICATION, image=ACTIVE, error=Interrupted("x", signum=signum)
        )
        assert (outcome.result, outcome.exit_code) == ("partial", code)


def test_a_dry_run_of_replicate_carries_the_plan_and_its_image() -> None:
    outcome = planned("replicate", REPLICATION)
    assert outcome.command == "replicate"
    assert outcome.plan is REPLICATION
    assert outcome.image is ACTIVE
    assert outcome.dry_run is True
    assert (outcome.result, outcome.exit_code) == ("planned", ExitCode.OK)
    assert (outcome.stores, outcome.error, outcome.stamp, outcome.next_steps) == (
        (),
        None,
        None,
        (),
    )


def test_a_dry_run_of_upload_has_no_image_yet() -> None:
    plan = object()  # an upload's Plan: only its type matters here
    outcome = planned("upload", plan)  # type: ignore[arg-type]
    assert (outcome.command, outcome.plan, outcome.image) == ("upload", plan, None)
    assert outcome.dry_run is True
    assert outcome.result == "planned"


# --- a batch: volimg.batch.BatchOutcome -----------------------------------------------------


def volume(result: str, uploaded_bytes: int = 0) -> VolumeResult:
    return VolumeResult(
        ref=f"vol-{result}", volume=None, result=result, uploaded_bytes=uploaded_bytes
    )


def batch(*results: str, interrupted: Interrupted | None = None) -> BatchOutcome:
    return BatchOutcome(
        period=None,
        results=tuple(volume(r) for r in results),
        started_at=AT,
        seconds=1.0,
        stopped=interrupted,
    )


@pytest.mark.parametrize(
    ("results", "result", "exit_code"),
    [
        pytest.param((), "ok", 0, id="nothing-selected"),
        pytest.param(("ok", "ok"), "ok", 0, id="all-ok"),
        pytest.param(("ok", "already-done", "skipped"), "ok", 0, id="done-already-done-skipped"),
        pytest.param(("started", "started"), "ok", 0, id="no-wait"),
        pytest.param(("planned",), "ok", 0, id="dry-run"),
        pytest.param(("ok", "partial"), "partial", 3, id="one-partial"),
        pytest.param(("partial", "partial"), "partial", 3, id="all-partial"),
        pytest.param(("ok", "failed"), "failed", 1, id="one-failed"),
        pytest.param(("partial", "failed", "ok"), "failed", 1, id="failed-beats-partial"),
        pytest.param(("failed", "partial"), "failed", 1, id="failed-beats-partial-either-order"),
    ],
)
def test_a_batchs_result_and_exit_code(
    results: tuple[str, ...], result: str, exit_code: int
) -> None:
    outcome = batch(*results)
    assert (outcome.result, outcome.exit_code) == (result, exit_code)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("results", [(), ("ok",), ("failed", "partial")])
def test_an_interrupted_batch_says_so_whatever_its_volumes_came_to(
    signum: int, results: tuple[str, ...]
) -> None:
    outcome = batch(*results, interrupted=Interrupted("stopped", signum=signum))
    assert outcome.result == "interrupted"
    assert outcome.exit_code == (143 if signum == signal.SIGTERM else 130)


def test_a_batchs_counts_name_every_result_in_the_documented_order() -> None:
    outcome = batch("ok", "failed", "ok", "skipped", "partial", "ok")
    assert list(outcome.counts) == list(BATCH_RESULTS)
    assert outcome.counts == {
        **dict.fromkeys(BATCH_RESULTS, 0),
        "ok": 3,
        "partial": 1,
        "failed": 1,
        "skipped": 1,
    }
    assert batch().counts == dict.fromkeys(BATCH_RESULTS, 0)


def test_a_batchs_uploaded_bytes_add_up_its_volumes() -> None:
    outcome = BatchOutcome(
        period=None,
        results=(volume("ok", 3), volume("failed", 0), volume("partial", 5)),
        started_at=AT,
        seconds=1.0,
    )
    assert outcome.uploaded_bytes == 8
    assert batch().uploaded_bytes == 0


# --- a batch that stopped, found nothing, only planned, or skipped volumes ------------------


def test_a_batch_stopped_before_any_volume_keeps_what_it_knew_and_changed_nothing() -> None:
    held = LockHeld("another volimg run holds the lock")

    outcome = BatchOutcome.stopped_before_start(
        held, STOP_LOCK, started_at=AT, seconds=0.5, selected=3, period="2026-11-30"
    )

    assert (outcome.result, outcome.exit_code) == ("locked", ExitCode.LOCKED)
    assert (outcome.stopped, outcome.stop_reason) == (held, "lock-held")
    assert (outcome.period, outcome.selected) == ("2026-11-30", 3)
    assert (outcome.started_at, outcome.seconds) == (AT, 0.5)
    assert outcome.results == ()
    assert outcome.dry_run is False
    assert outcome.counts == dict.fromkeys(BATCH_RESULTS, 0)
    assert not outcome.succeeded


def test_a_dry_run_that_selects_nothing_is_empty_and_still_a_dry_run() -> None:
    refused = InputError("no volume matches the selection")

    outcome = BatchOutcome.stopped_before_start(
        refused, STOP_EMPTY, started_at=AT, seconds=0.1, dry_run=True, selected=0
    )

    assert (outcome.result, outcome.exit_code) == ("empty", ExitCode.USAGE)
    assert outcome.dry_run is True
    assert (outcome.stopped, outcome.selected) == (refused, 0)


def test_an_empty_selection_let_through_with_allow_empty_is_empty_and_exits_0() -> None:
    outcome = BatchOutcome(period=None, results=(), started_at=AT, seconds=1.0, selected=0)
    assert (outcome.result, outcome.exit_code) == ("empty", ExitCode.OK)
    one = BatchOutcome(period=None, results=(volume("ok"),), started_at=AT, seconds=1.0, selected=1)
    assert one.result == "ok"


def test_a_dry_run_batch_is_planned_unless_a_signal_stopped_it() -> None:
    def dry_run(stopped: VolimgError | None) -> BatchOutcome:
        return BatchOutcome(
            period=None,
            results=(volume("planned"),),
            started_at=AT,
            seconds=1.0,
            dry_run=True,
            selected=1,
            stopped=stopped,
        )

    assert (dry_run(None).result, dry_run(None).exit_code) == ("planned", ExitCode.OK)
    assert dry_run(Interrupted("stopped")).result == "interrupted"


def test_a_batch_names_the_signal_that_stopped_it_and_nothing_else() -> None:
    signal_ = Interrupted("stopped", signum=signal.SIGTERM)
    assert batch("ok", interrupted=signal_).interrupted is signal_
    deadline = BatchOutcome(
        period=None, results=(), started_at=AT, seconds=1.0, stopped=DeadlineReached("late")
    )
    assert deadline.interrupted is None
    assert batch("ok").interrupted is None


def test_a_batchs_skipped_volumes_are_counted_per_reason_every_reason_present() -> None:
    def skipped(reason: str) -> VolumeResult:
        return VolumeResult(ref=f"vol-{reason}", volume=None, result="skipped", skip_reason=reason)

    outcome = BatchOutcome(
        period=None,
        results=(skipped("in-use"), volume("ok"), skipped("busy"), skipped("in-use")),
        started_at=AT,
        seconds=1.0,
    )

    assert outcome.skipped == {"busy": 1, "in-use": 2, "skip-status": 0}
    assert list(outcome.skipped) == list(SKIP_REASONS)
    assert batch("ok").skipped == dict.fromkeys(SKIP_REASONS, 0)
