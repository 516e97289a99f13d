"""The batch's results, exit codes, metrics and log lines, without a cloud (issue 18)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
import pytest

from tests.metrics_rules import evaluate, fires, naming_problems, scrape
from volimg import events as ev
from volimg.batch import (
    ALREADY_DONE,
    BATCH_RESULTS,
    INTERRUPTED,
    NOT_STARTED,
    OK,
    PARTIAL,
    RESULT_FAILED,
    SKIP_IN_USE,
    SKIP_REASONS,
    SKIP_STATUS,
    SKIPPED,
    STOP_LOCK,
    STOP_REASONS,
    TIMED_OUT,
    BatchOutcome,
    DeadlineReached,
    VolumeResult,
    stop_reason,
)
from volimg.commands.options import DURATION, LockPath
from volimg.errors import (
    AuthenticationFailed,
    CloudError,
    ConfigError,
    ExitCode,
    InputError,
    Interrupted,
    LockHeld,
)
from volimg.fleet_metrics import BATCH_FAMILIES, batch_samples, start_samples
from volimg.fleet_render import HEARTBEAT_SECONDS, BatchRenderer
from volimg.metrics import read_samples, render, write_textfile
from volimg.output import PlainOutput

START = datetime(2026, 12, 3, 2, 17, tzinfo=timezone.utc)


def result(outcome: str, skip: str | None = None) -> VolumeResult:
    return VolumeResult(ref="v", volume=None, result=outcome, skip_reason=skip)


def batch(*results: VolumeResult, **fields: Any) -> BatchOutcome:
    fields.setdefault("selected", len(results))
    return BatchOutcome(period=None, results=results, started_at=START, seconds=10.0, **fields)


# --- exit codes and the meaning of success ------------------------------------------------


@pytest.mark.parametrize(
    ("results", "code"),
    [
        ((OK, ALREADY_DONE), ExitCode.OK),
        ((OK, PARTIAL), ExitCode.PARTIAL),
        ((OK, PARTIAL, TIMED_OUT), ExitCode.TIMEOUT),  # before: 1
        ((PARTIAL, TIMED_OUT, RESULT_FAILED), ExitCode.FAILED),
        ((OK, SKIPPED), ExitCode.OK),
    ],
)
def test_the_batch_exit_code_is_the_worst_result(results: tuple[str, ...], code: int) -> None:
    assert batch(*(result(r) for r in results)).exit_code == code


def test_what_stopped_the_run_decides_its_exit_code_and_result() -> None:
    stopped = {
        "deadline": (DeadlineReached("late"), ExitCode.TIMEOUT, "timed-out"),
        "sigterm": (Interrupted("stop", signum=15), ExitCode.TERMINATED, "interrupted"),
        "locked": (LockHeld("held"), ExitCode.LOCKED, "locked"),
        "auth": (AuthenticationFailed("no"), ExitCode.AUTH, "failed"),
    }
    for error, code, word in stopped.values():
        outcome = batch(result(RESULT_FAILED), stopped=error, stop_reason=stop_reason(error))
        assert outcome.exit_code == code
        assert outcome.result == word


def test_last_success_needs_a_selection_and_every_volume_backed_up() -> None:
    assert batch(result(OK), result(ALREADY_DONE)).succeeded
    assert not batch(selected=0).succeeded  # an empty selection (before: exit 0 = success)
    assert not batch(result(OK), result(SKIPPED, SKIP_IN_USE)).succeeded  # always attached
    assert batch(result(OK), result(SKIPPED, SKIP_STATUS)).succeeded  # left out on purpose
    assert not batch(result(SKIPPED, SKIP_STATUS)).succeeded  # ... but nothing backed up
    assert not batch(result(OK), result(PARTIAL)).succeeded
    assert not batch(result(OK), dry_run=True).succeeded
    assert not batch(result(OK), stopped=Interrupted("x"), stop_reason="interrupted").succeeded


def test_an_interrupted_batch_counts_not_started_volumes() -> None:
    outcome = batch(result(OK), result(INTERRUPTED), not_started=("a", "b"), selected=4)
    assert outcome.counts[NOT_STARTED] == 2
    assert outcome.counts[INTERRUPTED] == 1
    assert set(outcome.counts) == set(BATCH_RESULTS)


@pytest.mark.parametrize(
    ("error", "listing", "reason"),
    [
        (LockHeld("x"), False, "lock-held"),
        (AuthenticationFailed("x"), False, "auth"),
        (ConfigError("x"), False, "config"),
        (InputError("x"), False, "input"),
        (CloudError("x", status=503), False, "keystone-error"),
        (CloudError("x", status=502), True, "listing-failed"),
        (Interrupted("x"), True, "interrupted"),
        (DeadlineReached("x"), True, "deadline"),
    ],
)
def test_stop_reasons_are_a_bounded_set(error: Any, listing: bool, reason: str) -> None:
    assert stop_reason(error, listing=listing) == reason
    assert reason in STOP_REASONS


# --- the metrics file --------------------------------------------------------------------


def test_every_family_follows_the_naming_rules_and_exports_every_outcome() -> None:
    outcome = batch(result(OK), result(SKIPPED, SKIP_IN_USE), stale=("v",), stale_after=7200.0)
    samples = batch_samples(outcome, exit_code=0, previous={})
    assert [f.name for f in BATCH_FAMILIES] == list(dict.fromkeys(s.name for s in samples))
    outcomes = {
        "volimg_batch_volumes": ("result", BATCH_RESULTS),
        "volimg_batch_stopped": ("reason", STOP_REASONS),
        "volimg_batch_skipped_volumes": ("reason", SKIP_REASONS),
    }
    assert naming_problems(samples, outcomes=outcomes) == []


def test_the_first_run_that_never_succeeded_says_0_not_nothing() -> None:
    """Before: no last_success sample at all, so the dead-man's rule could never fire."""
    outcome = batch(result(RESULT_FAILED))
    samples = {s.name: s.value for s in batch_samples(outcome, exit_code=1, previous={})}
    assert samples["volimg_batch_last_success_timestamp_seconds"] == 0


def test_a_locked_out_run_keeps_the_holders_figures(tmp_path: Path) -> None:
    previous_run = batch(result(OK), result(OK))
    path = tmp_path / "volimg.prom"
    write_textfile(path, batch_samples(previous_run, exit_code=0, previous={}))
    holder = start_samples(START + timedelta(days=1), read_samples(path))
    write_textfile(path, holder)
    locked = BatchOutcome.stopped_before_start(
        LockHeld("held"),
        STOP_LOCK,
        started_at=START + timedelta(days=1, minutes=1),
        seconds=0.1,
    )
    after = {
        (s.name, tuple(s.labels.items())): s.value
        for s in batch_samples(locked, exit_code=75, previous=read_samples(path))
    }
    assert after[("volimg_batch_exit_code", ())] == 75
    assert after[("volimg_batch_stopped", (("reason", "lock-held"),))] == 1
    assert after[("volimg_batch_running", ())] == 1  # the holder still runs
    assert after[("volimg_batch_volumes", (("result", "ok"),))] == 2
    start = (START + timedelta(days=1)).timestamp()
    assert after[("volimg_batch_last_start_timestamp_seconds", ())] == start


def test_the_start_file_carries_the_last_run_and_says_running(tmp_path: Path) -> None:
    path = tmp_path / "volimg.prom"
    write_textfile(path, batch_samples(batch(result(OK)), exit_code=0, previous={}))
    later = START + timedelta(days=1)
    samples = {s.name: s.value for s in start_samples(later, read_samples(path))}
    assert samples["volimg_batch_running"] == 1
    assert samples["volimg_batch_last_start_timestamp_seconds"] == later.timestamp()
    assert samples["volimg_batch_exit_code"] == 0
    assert samples["volimg_batch_last_success_timestamp_seconds"] == START.timestamp() + 10


# --- log lines -------------------------------------------------------------------------------


def test_an_unchanged_wait_is_said_again_every_few_minutes() -> None:
    """Before: a hung import was followed for an hour without a line."""
    clock = [START]
    err = io.StringIO()
    renderer = BatchRenderer(
        stdout=PlainOutput(io.StringIO()),
        stderr=PlainOutput(err),
        fmt="ndjson",
        wall_clock=lambda: clock[0],
    )
    event = ev.CopyProgress(
        elapsed=0.0, subject="vol", task_status="processing", message="", done=(), failed=()
    )
    with renderer.progress() as sink:
        for minute in range(0, 21):
            clock[0] = START + timedelta(minutes=minute)
            sink(event)
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 + 20 * 60 // int(HEARTBEAT_SECONDS)
    assert "still " in lines[1]
    assert "(unchanged for 5 min)" in lines[1]
    assert "(unchanged for 20 min)" in lines[-1]


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600.0), ("90m", 5400.0), ("5h30m", 19800.0), ("2d", 172800.0), ("1.5h", 5400.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert DURATION.convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["", "0", "5x", "h", "-1h", "1h 2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(click.BadParameter):
        DURATION.convert(text, None, None)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", ""),
        ("1", ""),
        ("Yes", ""),
        ("on", ""),
        ("false", None),
        ("0", None),
        ("off", None),
        ("/run/volimg.lock", "/run/volimg.lock"),
        ("./true", "./true"),
    ],
)
def test_boolean_looking_lock_values(text: str, value: str | None) -> None:
    assert LockPath().convert(text, None, None) == value


# --- the PromQL subset the rule tests use ------------------------------------------------------

TEXT = render(batch_samples(batch(result(OK), result(RESULT_FAILED)), exit_code=1, previous={}))


def test_the_evaluator_follows_promql_precedence_and_matching() -> None:
    series = scrape(TEXT, instance="h:9100", job="node")
    at = START.timestamp() + 100
    assert evaluate("1 + 2 * 3", series, at) == 7.0
    assert fires("volimg_batch_exit_code == 1 or volimg_batch_exit_code == 2", series, at)
    assert not fires("volimg_batch_exit_code == 2 or volimg_batch_exit_code == 3", series, at)
    assert fires('volimg_batch_volumes{result="failed"} > 0', series, at)
    assert fires('volimg_batch_stopped{reason=~"lock-held|none"} == 0', series, at)
    assert not fires('volimg_batch_stopped{reason!~".*"}', series, at)
    expr = "volimg_batch_running == 0 and time() - volimg_batch_last_run_timestamp_seconds > 50"
    assert fires(expr, series, at)
    assert not fires(expr, series, START.timestamp() + 20)
    assert fires("volimg_batch_exit_code unless volimg_batch_running == 1", series, at)
    assert not fires("absent(volimg_batch_exit_code)", series, at)
    (labels, value), *_ = evaluate('absent(volimg_nope{job="node"})', series, at)  # type: ignore[misc]
    assert (labels, value) == ({"job": "node"}, 1.0)
    (labels, value), *_ = evaluate("time() - volimg_batch_last_run_timestamp_seconds", series, at)  # type: ignore[misc]
    assert "__name__" not in labels  # arithmetic drops the name
    assert value == pytest.approx(90.0)


def test_for_means_true_over_the_whole_window() -> None:
    series = scrape(TEXT, instance="h:9100")
    end = START.timestamp() + 10
    expr = "time() - volimg_batch_last_run_timestamp_seconds > 100"
    assert fires(expr, series, end + 200)
    assert not fires(expr, series, end + 200, for_seconds=150)
