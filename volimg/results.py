"""What a run is told (``RunSettings``) and what it returns (``Outcome``).

Shared by the steps, the command drivers, the batch, the audit and the renderers, so it
sits low: it imports only the model, the planner's values and the errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from volimg.errors import ExitCode, VolimgError
from volimg.model import Image
from volimg.planner import Plan, ReplicationPlan
from volimg.provenance import Stamp
from volimg.waiting import Clock

# Per-store outcomes (docs/json.md).
COPIED = "copied"
ALREADY_PRESENT = "already-present"
FAILED = "failed"
ROLLED_BACK = "rolled-back"
PENDING = "pending"
PRUNED = "pruned"
SKIPPED = "skipped"
PRUNE_FAILED = "prune-failed"

# Results of one run (docs/json.md).
OK = "ok"
STARTED = "started"  # --no-wait: requested, not awaited
PARTIAL = "partial"
RESULT_FAILED = "failed"
PLANNED = "planned"

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
    waited: bool = True
    stamp: Stamp | None = None
    next_steps: tuple[str, ...] = ()
    # Seconds the copy waited for a --max-copies slot (None: it did not wait), and
    # the Glance limits that refused a copy on the way (image_count_uploading, ...).
    copy_slot_wait: float | None = None
    limits_hit: tuple[str, ...] = ()

    @property
    def result(self) -> str:
        """ok | started | partial | failed | planned (docs/json.md)."""
        if self.dry_run:
            return PLANNED
        if self.error is None:
            return OK if self.waited else STARTED
        if self.image is not None and self.image.is_active:
            return PARTIAL
        return RESULT_FAILED

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.error is None else self.error.exit_code


def planned(command: str, plan: Plan | ReplicationPlan) -> Outcome:
    """The outcome of a dry run: the plan, and nothing done."""
    image = plan.image if isinstance(plan, ReplicationPlan) else None
    return Outcome(command=command, plan=plan, image=image, dry_run=True)
