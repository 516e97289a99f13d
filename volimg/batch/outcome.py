"""What a batch did: each volume's result and the batch's outcome, stop reasons, exit code.

The results, skip reasons and stop reasons are bounded sets (docs/json.md, docs/cron.md:
they are metric labels). ``BatchOutcome`` turns what happened into the exit code and
the batch's result in a word; ``stop_reason`` classes the error that stopped a run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from volimg.batch.retention import RetentionAction
from volimg.errors import (
    AuthError,
    ConfigError,
    ExitCode,
    InputError,
    Interrupted,
    LockHeld,
    VolimgError,
    WaitTimedOut,
)
from volimg.gateway import is_unreachable
from volimg.model import Volume
from volimg.results import (
    OK,
    PARTIAL,
    PLANNED,
    RESULT_FAILED,
    STARTED,
    Outcome,
)

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


class DeadlineReached(WaitTimedOut):
    """``--deadline`` passed: no volume was started after it, running ones stopped waiting."""


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
    # After a signal or the deadline without --once-per: the commands that finish what
    # this batch began, each volume's own (``finishing_steps`` in volimg.batch.run).
    next_steps: tuple[str, ...] = ()

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
