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

The package, by concern; a module imports only modules listed below it::

    run          run_batch: the start's reads, the pool, signal and deadline
                 (volimg.signals.StopFlag), the stale check
    volume       one volume: skip, resume this period's image, upload, then --keep
    selection    Selection, select_volumes, batch_image_name
    options      BatchOptions, MAX_CONCURRENCY, the --stale-after default
    outcome      results, skip and stop reasons, VolumeResult, BatchOutcome, exit code
    retention    --keep's deletes (never a protected image, never sent twice)

Every name ``from volimg.batch import ...`` gave before the split is re-exported here
(the results ``OK``, ``PARTIAL``, ... too), so the commands, the fleet's renderers and
the tests import from the package; the package's own modules import from each other.
"""

from __future__ import annotations

from volimg.batch.options import (
    MAX_CONCURRENCY,
    PERIOD_SECONDS,
    STALE_PERIODS,
    BatchOptions,
)
from volimg.batch.outcome import (
    ALREADY_DONE,
    BACKED_UP,
    BATCH_RESULTS,
    INTERRUPTED,
    NOT_STARTED,
    RUN_EMPTY,
    RUN_LOCKED,
    SKIP_BUSY,
    SKIP_IN_USE,
    SKIP_REASONS,
    SKIP_STATUS,
    SKIPPED,
    STOP_AUTH,
    STOP_CONFIG,
    STOP_DEADLINE,
    STOP_EMPTY,
    STOP_INPUT,
    STOP_INTERNAL,
    STOP_INTERRUPTED,
    STOP_KEYSTONE,
    STOP_LISTING,
    STOP_LOCK,
    STOP_REASONS,
    STOP_UNREACHABLE,
    TIMED_OUT,
    BatchOutcome,
    DeadlineReached,
    EmptySelection,
    VolumeResult,
    stop_reason,
)
from volimg.batch.retention import (
    DELETE_FAILED,
    DELETED,
    KEPT_PROTECTED,
    WOULD_DELETE,
    RetentionAction,
)
from volimg.batch.run import (
    ResultSink,
    run_batch,
)
from volimg.batch.selection import (
    Retried,
    Selection,
    batch_image_name,
    select_volumes,
)
from volimg.batch.volume import BUSY_STATUSES
from volimg.results import OK, PARTIAL, PLANNED, RESULT_FAILED, STARTED

__all__ = [
    "ALREADY_DONE",
    "BACKED_UP",
    "BATCH_RESULTS",
    "BUSY_STATUSES",
    "DELETED",
    "DELETE_FAILED",
    "INTERRUPTED",
    "KEPT_PROTECTED",
    "MAX_CONCURRENCY",
    "NOT_STARTED",
    "OK",
    "PARTIAL",
    "PERIOD_SECONDS",
    "PLANNED",
    "RESULT_FAILED",
    "RUN_EMPTY",
    "RUN_LOCKED",
    "SKIPPED",
    "SKIP_BUSY",
    "SKIP_IN_USE",
    "SKIP_REASONS",
    "SKIP_STATUS",
    "STALE_PERIODS",
    "STARTED",
    "STOP_AUTH",
    "STOP_CONFIG",
    "STOP_DEADLINE",
    "STOP_EMPTY",
    "STOP_INPUT",
    "STOP_INTERNAL",
    "STOP_INTERRUPTED",
    "STOP_KEYSTONE",
    "STOP_LISTING",
    "STOP_LOCK",
    "STOP_REASONS",
    "STOP_UNREACHABLE",
    "TIMED_OUT",
    "WOULD_DELETE",
    "BatchOptions",
    "BatchOutcome",
    "DeadlineReached",
    "EmptySelection",
    "ResultSink",
    "RetentionAction",
    "Retried",
    "Selection",
    "VolumeResult",
    "batch_image_name",
    "run_batch",
    "select_volumes",
    "stop_reason",
]
