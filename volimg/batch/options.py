"""How a batch runs (``BatchOptions``): concurrency, once per period, retention, limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from volimg.copy_slots import DEFAULT_MAX_COPIES
from volimg.planner import UploadOptions
from volimg.provenance import Period

MAX_CONCURRENCY = 64

# Seconds in a --once-per period, for the default of --stale-after (two periods).
PERIOD_SECONDS = {
    Period.HOUR: 3600.0,
    Period.DAY: 86400.0,
    Period.WEEK: 7 * 86400.0,
    Period.MONTH: 31 * 86400.0,
}
STALE_PERIODS = 2


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
    # Copy-image imports in flight across the batch (--max-copies); 0: no cap.
    max_copies: int = DEFAULT_MAX_COPIES

    @property
    def stale_seconds(self) -> float:
        if self.stale_after is not None:
            return self.stale_after
        period = PERIOD_SECONDS[self.once_per] if self.once_per else PERIOD_SECONDS[Period.DAY]
        return STALE_PERIODS * period
