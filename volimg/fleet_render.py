"""Output of the fleet commands (a batch of uploads, an audit): lines, tables, metrics.

Kept apart from doing, like ``volimg.render``: the batch returns a ``BatchOutcome`` and
emits events, the audit an ``AuditOutcome``; this module writes them in the chosen
format (the documents for ``-f json`` and ``-f ndjson`` are built in
``volimg.fleet_documents``), draws the table or the plain lines, shows progress while
the batch runs, and writes the node_exporter textfile (``--metrics-file``).
docs/json.md, docs/cron.md and docs/audit.md document them.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from volimg import events as ev
from volimg.audit import (
    INTERRUPTED,
    OK,
    REPAIRED,
    UNFINISHED,
    AuditOutcome,
    Finding,
)
from volimg.batch import BATCH_RESULTS, BatchOutcome, VolumeResult
from volimg.fleet_documents import (
    audit_doc,
    audit_summary_doc,
    batch_doc,
    finding_doc,
    ndjson_line,
    repair_doc,
    summary_doc,
    volume_doc,
)

# The textfiles live in volimg.fleet_metrics; these names are still importable from here.
from volimg.fleet_metrics import write_audit_metrics as write_audit_metrics
from volimg.fleet_metrics import write_batch_metrics as write_batch_metrics
from volimg.model import counted, format_time
from volimg.output import rich_terminal, say
from volimg.planner import Plan
from volimg.progress import LiveView, describe
from volimg.render import Streams, live_progress

# --- people -----------------------------------------------------------------------------


# An unchanged state (a hung import, a slow upload) is said again this often in the
# plain log, so that a wait of an hour is not an hour of silence.
HEARTBEAT_SECONDS = 300.0


class BatchRenderer(Streams):
    """Progress while the batch runs, then the results, in the chosen format.

    A closed stdout or stderr (``| head -1``, a dead log pipe) never stops the batch:
    the stream is noted as lost (``lost_stdout``, ``lost_stderr``), pointed at
    /dev/null so that the interpreter's last flush cannot fail again, and the rest is
    left out. The CLI then exits 141 for a lost stdout, after writing the metrics.
    """

    lost_stdout = False
    lost_stderr = False

    def _write(self, stream: IO[str], line: str) -> None:
        which = "stdout" if stream is self.out.file else "stderr"
        if getattr(self, f"lost_{which}"):
            return
        try:
            stream.write(line + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError) as exc:  # ValueError: the stream was closed
            self._lose(which, stream, exc)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.EBADF, errno.EIO):
                raise
            self._lose(which, stream, exc)

    def _lose(self, which: str, stream: IO[str], _exc: BaseException) -> None:
        setattr(self, f"lost_{which}", True)
        _silence(stream)

    def notice(self, message: str) -> None:
        """One line on stderr, ``volimg: ...``."""
        self._write(self.err.file, f"volimg: {message}")

    def on_result(self, result: VolumeResult) -> None:
        """ndjson: one line per volume, as soon as it finishes."""
        if self.fmt == "ndjson":
            self._write(self.out.file, ndjson_line("volume", volume_doc(result)))

    @contextmanager
    def progress(self) -> Iterator[ev.EventSink]:
        """A live table of the running volumes on a terminal; else a line per change,
        and the same line again every HEARTBEAT_SECONDS while nothing changes."""
        last: dict[str, tuple[str, float, float]] = {}  # text, since, said at

        def line(event: ev.Event) -> None:
            text = _describe_item(event)
            if text is None:
                return
            now = self.wall_clock()
            moment = now.timestamp()
            seen = last.get(event.subject)
            if seen is not None and seen[0] == text:
                if moment - seen[2] < HEARTBEAT_SECONDS:
                    return
                minutes = (moment - seen[1]) / 60
                last[event.subject] = (text, seen[1], moment)
                text = f"still {text} (unchanged for {minutes:.0f} min)"
            else:
                last[event.subject] = (text, moment, moment)
            stamp = format_time(now)
            self._write(self.err.file, f"{stamp} {event.subject}: {text}")

        def finished(event: ev.Event) -> str | None:
            if not isinstance(event, ev.ItemFinished):
                return None
            reason = f" ({event.reason})" if event.reason else ""
            return f"{event.subject}: {event.result}{reason}"

        with live_progress(self.err, _batch_panel, line, finished, refresh=4) as sink:
            yield sink

    def outcome(self, outcome: BatchOutcome, *, dry_run_source: str = "--dry-run") -> None:
        """The results on stdout in the chosen format, then on stderr: what stopped the
        run, the stale volumes, and one summary line (in every format)."""
        if self.fmt == "json":
            self._write(self.out.file, json.dumps(batch_doc(outcome), indent=2))
        elif self.fmt == "ndjson":
            self._write(self.out.file, ndjson_line("summary", summary_doc(outcome)))
        else:
            self._table(outcome, dry_run_source)
        stopped = outcome.stopped
        if stopped is not None:
            prefix = "volimg: " if outcome.interrupted is not None else "volimg: error: "
            self._write(self.err.file, prefix + stopped.message)
            if stopped.hint:
                self._write(self.err.file, f"volimg: hint: {stopped.hint}")
            for step in outcome.next_steps:
                self._write(self.err.file, f"volimg: next: {step}")
        if outcome.stale:
            self.notice(
                f"not backed up for over {span(outcome.stale_after or 0)} "
                f"({len(outcome.stale)}): {', '.join(outcome.stale)}"
            )
        self.notice(summary_line(outcome, dry_run_source))

    def _table(self, outcome: BatchOutcome, dry_run_source: str) -> None:
        rows = [_row(r) for r in outcome.results]
        summary = summary_line(outcome, dry_run_source).removeprefix("summary: ")
        if outcome.dry_run:
            self._write(self.out.file, f"dry run ({dry_run_source}): nothing was changed")
        terminal = rich_terminal(self.out)
        if terminal is not None and not self.lost_stdout:
            from rich.markup import escape
            from rich.table import Table

            table = Table(*BATCH_HEADER, box=None)
            for row in rows:
                table.add_row(*(escape(cell) for cell in row))
            try:
                terminal.print(table)
                say(terminal, summary)
            except (BrokenPipeError, ValueError) as exc:
                self._lose("stdout", self.out.file, exc)
            return
        if not rows and outcome.stopped is None:
            self._write(self.out.file, "no volume matched the selection")
        for row in (BATCH_HEADER, *rows) if rows else ():
            self._write(self.out.file, "\t".join(row))
        self._write(self.out.file, summary)


def _silence(stream: IO[str]) -> None:
    """Point a closed standard stream at /dev/null: the interpreter's last flush of
    what is still buffered must not fail again (and turn the exit code into 120)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return  # not a real file descriptor (a test runner's buffer)
    if fd not in (1, 2):
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def span(seconds: float) -> str:
    """A duration as an operator reads it: 2 days, 36 h, 90 min, 45 s."""
    if seconds >= 86400 and seconds % 86400 == 0:
        return counted(int(seconds // 86400), "day")
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def summary_line(outcome: BatchOutcome, dry_run_source: str = "--dry-run") -> str:
    """One line that says how the run ended: stderr's last line in every format."""
    counts = ", ".join(f"{n} {result}" for result, n in outcome.counts.items() if n)
    parts = [f"summary: {outcome.result} (exit {int(outcome.exit_code)})"]
    if outcome.dry_run:
        parts.append(f"dry run ({dry_run_source}): nothing was changed")
    if outcome.stop_reason is not None and outcome.interrupted is None:
        parts.append(f"stopped: {outcome.stop_reason}")
    if outcome.selected is not None:
        parts.append(f"{outcome.selected} selected" + (f" ({counts})" if counts else ""))
    elif counts:
        parts.append(counts)
    skipped = ", ".join(f"{n} {reason}" for reason, n in outcome.skipped.items() if n)
    if skipped:
        parts.append(f"skipped: {skipped}")
    if outcome.stale:
        parts.append(
            f"{len(outcome.stale)} not backed up for over {span(outcome.stale_after or 0)}"
        )
    if outcome.period:
        parts.append(f"period {outcome.period}")
    if outcome.not_started:
        parts.append(f"not started: {', '.join(outcome.not_started)}")
    parts.append(f"{outcome.seconds:.1f} s")
    return "; ".join(parts)


# The batch's columns, on a terminal and as the plain lines' header row (as the doctor's
# and `volimg stores`' plain lines have one).
BATCH_HEADER = ("volume", "result", "image", "stores", "why / next")


def _row(result: VolumeResult) -> tuple[str, str, str, str, str]:
    outcome = result.outcome
    if outcome is not None and outcome.dry_run and isinstance(outcome.plan, Plan):
        return _planned_row(result, outcome.plan)
    image = outcome.image if outcome is not None else None
    why = result.reason or (result.error.message if result.error else "")
    if outcome is not None and outcome.next_steps:
        why = (why + "; " if why else "") + "next: " + "; ".join(outcome.next_steps)
    deleted = [a.image_id for a in result.retention if a.action in ("deleted", "would-delete")]
    if deleted:
        verb = "would delete" if result.result == "planned" else "deleted"
        why = (why + "; " if why else "") + f"{verb} {', '.join(deleted)}"
    return (
        result.label,
        result.result,
        image.id if image is not None else "-",
        ",".join(image.stores) if image is not None and image.stores else "-",
        why or "-",
    )


def _planned_row(result: VolumeResult, plan: Plan) -> tuple[str, str, str, str, str]:
    """A dry run's row: what the run would do for this volume, from its plan (the
    image's name, the stores it would end in, where Cinder's upload would land, the
    copies and prunes, and what ``--keep`` would delete)."""
    resuming = plan.facts.resuming
    if resuming is not None:
        doing = [f"would finish image {resuming.id} of this period"]
        copies = plan.placement.missing_from(resuming.stores)
        prunes = plan.placement.extra_in(resuming.stores) if plan.placement.prune else ()
    else:
        doing = [f"would upload to {plan.upload_store or 'the default store'}"]
        copies, prunes = plan.replicate_to, plan.prune_from
    if copies:
        doing.append(f"copy to {', '.join(copies)}")
    if prunes:
        doing.append(f"prune {', '.join(prunes)}")
    deleted = [a.image_id for a in result.retention if a.action == "would-delete"]
    if deleted:
        doing.append(f"would delete {', '.join(deleted)}")
    return (
        result.label,
        result.result,
        resuming.id if resuming is not None else plan.upload.image_name,
        ",".join(plan.expected_stores) or "-",
        "; ".join(doing),
    )


def _batch_panel() -> LiveView:
    from volimg.live import BatchPanel

    return BatchPanel(BATCH_RESULTS)


def _describe_item(event: ev.Event) -> str | None:
    if isinstance(event, ev.ItemStarted):
        return "planning" if event.planning else "started"
    if isinstance(event, ev.ItemFinished):
        return f"{event.result}" + (f" ({event.reason})" if event.reason else "")
    return describe(event)


# --- audit ----------------------------------------------------------------------------


class AuditRenderer(BatchRenderer):
    """Findings as they are made, then the findings and repairs in the chosen format."""

    def on_finding(self, finding: Finding) -> None:
        if self.fmt == "ndjson":
            self._write(self.out.file, ndjson_line("finding", finding_doc(finding)))

    def audit(self, outcome: AuditOutcome) -> None:
        if self.fmt == "json":
            self._write(self.out.file, json.dumps(audit_doc(outcome), indent=2))
            return
        if self.fmt == "ndjson":
            for finding in outcome.findings:
                self.on_finding(finding)
            for repair in outcome.repairs:
                self._write(self.out.file, ndjson_line("repair", repair_doc(repair)))
            self._write(self.out.file, ndjson_line("summary", audit_summary_doc(outcome)))
            return
        rows = [
            (
                f.image.name or f.image.id,
                f.finding,
                ",".join(f.image.stores) or "-",
                f.stamp.stamped_by.value if f.stamp is not None else "-",
                f.reason,
            )
            for f in outcome.findings
        ]
        header = ("image", "finding", "stores", "stamped by", "why")
        terminal = rich_terminal(self.out)
        if terminal is not None:
            from rich.markup import escape
            from rich.table import Table

            table = Table(*header, box=None)
            for row in rows:
                table.add_row(*(escape(cell) for cell in row))
            terminal.print(table)
        elif rows:
            for row in (header, *rows):
                self._write(self.out.file, "\t".join(row))
        else:
            self._write(self.out.file, "no volimg image is visible to you")
        names = {f.image.id: f.image.name or f.image.id for f in outcome.findings}
        for repair in outcome.repairs:
            self._write(
                self.out.file,
                f"repair {names.get(repair.image_id, repair.image_id)}: {repair.result}"
                + (f" ({repair.detail})" if repair.detail else "")
                + (f"; next: {repair.next_step}" if repair.next_step else ""),
            )
        self._write(self.out.file, _audit_summary_line(outcome))
        if outcome.interrupted is not None:
            say(self.err, f"volimg: {outcome.interrupted.message}")
            if outcome.interrupted.hint:
                say(self.err, f"volimg: hint: {outcome.interrupted.hint}")


def _audit_summary_line(outcome: AuditOutcome) -> str:
    """``2 stamped images: 1 ok, 1 missing; 1 left to fix``: ok first, then the findings
    most pressing first."""
    counts = outcome.counts
    order = [OK, *(f for f in counts if f != OK)]
    said = ", ".join(f"{counts[k]} {k}" for k in order if counts[k]) or "none"
    unfinished = counts[UNFINISHED]
    total = len(outcome.findings)
    what = (
        counted(total, "stamped image")
        if not unfinished
        else counted(total, "volimg image") + " (stamped or unfinished)"
    )
    repaired = sum(1 for r in outcome.repairs if r.result == REPAIRED)
    started = sum(1 for r in outcome.repairs if r.result == INTERRUPTED)
    return (
        f"{what}: {said}"
        + (f"; {repaired} repaired" if outcome.fix else "")
        + (f"; {started} interrupted" if started else "")
        + f"; {outcome.remaining} left to fix"
    )
