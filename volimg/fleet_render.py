"""Output of the fleet commands (a batch of uploads, an audit): lines, tables, metrics.

Kept apart from doing, like ``volimg.render``: the batch returns a ``BatchOutcome`` and
emits events, the audit an ``AuditOutcome``; this module writes them in the chosen
format (the documents for ``-f json`` and ``-f ndjson`` are built in
``volimg.fleet_documents``), draws the table or the plain lines, shows progress while
the batch runs, and writes the node_exporter textfile (``--metrics-file``).
docs/json.md, docs/cron.md and docs/audit.md document them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from volimg import events as ev
from volimg.audit import (
    INTERRUPTED,
    OK,
    REPAIR_RESULTS,
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
from volimg.output import rich_terminal, say
from volimg.progress import LiveView, describe
from volimg.render import Streams, live_progress

# --- metrics --------------------------------------------------------------------------


def write_batch_metrics(path: Path, outcome: BatchOutcome) -> None:
    """The node_exporter textfile of a batch run (docs/cron.md lists every metric).

    The last success time is carried over from the previous file when this run did
    not succeed, so an alert on its age keeps counting from the last good night.
    """
    from volimg.metrics import Sample, read_gauge, write_textfile

    finished = outcome.started_at.timestamp() + outcome.seconds
    succeeded = outcome.exit_code == 0
    last_success = (
        finished if succeeded else read_gauge(path, "volimg_batch_last_success_timestamp_seconds")
    )
    samples = [
        Sample(
            "volimg_batch_last_run_timestamp_seconds",
            finished,
            help="When the last volimg batch run ended (Unix time).",
        ),
        Sample(
            "volimg_batch_duration_seconds",
            outcome.seconds,
            help="How long the last volimg batch run took.",
        ),
        Sample(
            "volimg_batch_exit_code",
            int(outcome.exit_code),
            help="Exit code of the last volimg batch run (0 ok, 1 failed, 3 partial, ...).",
        ),
        Sample(
            "volimg_batch_uploaded_bytes",
            outcome.uploaded_bytes,
            help="Bytes of the images the last volimg batch run uploaded.",
        ),
        *(
            Sample(
                "volimg_batch_volumes",
                count,
                labels={"result": result},
                help="Volumes of the last volimg batch run, by result.",
            )
            for result, count in outcome.counts.items()
        ),
    ]
    if last_success is not None:
        samples.append(
            Sample(
                "volimg_batch_last_success_timestamp_seconds",
                last_success,
                help="When a volimg batch run last ended with every volume done (Unix time).",
            )
        )
    write_textfile(path, samples)


# --- people -----------------------------------------------------------------------------


class BatchRenderer(Streams):
    """Progress while the batch runs, then the results, in the chosen format."""

    def on_result(self, result: VolumeResult) -> None:
        """ndjson: one line per volume, as soon as it finishes."""
        if self.fmt == "ndjson":
            self._write(self.out.file, ndjson_line("volume", volume_doc(result)))

    @contextmanager
    def progress(self) -> Iterator[ev.EventSink]:
        """A live table of the running volumes on a terminal; else a line per change."""
        last: dict[str, str] = {}

        def line(event: ev.Event) -> None:
            text = _describe_item(event)
            if text is None or last.get(event.subject) == text:
                return
            last[event.subject] = text
            stamp = self.wall_clock().strftime("%Y-%m-%dT%H:%M:%SZ")
            self._write(self.err.file, f"{stamp} {event.subject}: {text}")

        def finished(event: ev.Event) -> str | None:
            if not isinstance(event, ev.ItemFinished):
                return None
            reason = f" ({event.reason})" if event.reason else ""
            return f"{event.subject}: {event.result}{reason}"

        with live_progress(self.err, _batch_panel, line, finished, refresh=4) as sink:
            yield sink

    def outcome(self, outcome: BatchOutcome) -> None:
        if self.fmt == "json":
            self._write(self.out.file, json.dumps(batch_doc(outcome), indent=2))
        elif self.fmt == "ndjson":
            self._write(self.out.file, ndjson_line("summary", summary_doc(outcome)))
        else:
            self._table(outcome)
        if outcome.interrupted is not None:
            say(self.err, f"volimg: {outcome.interrupted.message}")
            if outcome.interrupted.hint:
                say(self.err, f"volimg: hint: {outcome.interrupted.hint}")

    def _table(self, outcome: BatchOutcome) -> None:
        rows = [_row(r) for r in outcome.results]
        counts = ", ".join(f"{n} {result}" for result, n in outcome.counts.items() if n)
        summary = (
            f"{len(outcome.results)} volumes{f' ({counts})' if counts else ''} in "
            f"{outcome.seconds:.1f} s"
            + (f"; period {outcome.period}" if outcome.period else "")
            + (f"; not started: {', '.join(outcome.not_started)}" if outcome.not_started else "")
        )
        terminal = rich_terminal(self.out)
        if terminal is not None:
            from rich.markup import escape
            from rich.table import Table

            table = Table("volume", "result", "image", "stores", "why / next", box=None)
            for row in rows:
                table.add_row(*(escape(cell) for cell in row))
            terminal.print(table)
            say(terminal, summary)
            return
        if not rows:
            self._write(self.out.file, "no volume matched the selection")
        for row in rows:
            self._write(self.out.file, "\t".join(row))
        self._write(self.out.file, summary)


def _row(result: VolumeResult) -> tuple[str, str, str, str, str]:
    outcome = result.outcome
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


def _batch_panel() -> LiveView:
    from volimg.live import BatchPanel

    return BatchPanel(BATCH_RESULTS)


def _describe_item(event: ev.Event) -> str | None:
    if isinstance(event, ev.ItemStarted):
        return "started"
    if isinstance(event, ev.ItemFinished):
        return f"{event.result}" + (f" ({event.reason})" if event.reason else "")
    return describe(event)


# --- audit ----------------------------------------------------------------------------


def write_audit_metrics(path: Path, outcome: AuditOutcome) -> None:
    """The node_exporter textfile of an audit (docs/audit.md lists every metric)."""
    from volimg.metrics import Sample, write_textfile

    repairs = Counter(r.result for r in outcome.repairs)
    samples = [
        Sample(
            "volimg_audit_last_run_timestamp_seconds",
            outcome.audited_at.timestamp() + outcome.seconds,
            help="When the last volimg audit ended (Unix time).",
        ),
        Sample(
            "volimg_audit_duration_seconds",
            outcome.seconds,
            help="How long the last volimg audit took.",
        ),
        Sample(
            "volimg_audit_images",
            len(outcome.findings),
            help="volimg-stamped images the last audit looked at.",
        ),
        Sample(
            "volimg_audit_remaining_findings",
            outcome.remaining,
            help="Images still not where the rules say after the last audit (and its repairs).",
        ),
        *(
            Sample(
                "volimg_audit_findings",
                count,
                labels={"finding": finding},
                help="Images of the last volimg audit, by finding (before repairs).",
            )
            for finding, count in outcome.counts.items()
        ),
        *(
            Sample(
                "volimg_audit_repairs",
                repairs.get(result, 0),
                labels={"result": result},
                help="Repairs of the last volimg audit --fix, by result.",
            )
            for result in REPAIR_RESULTS
        ),
    ]
    write_textfile(path, samples)


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
    what = "stamped images" if not unfinished else "volimg images (stamped or unfinished)"
    repaired = sum(1 for r in outcome.repairs if r.result == REPAIRED)
    started = sum(1 for r in outcome.repairs if r.result == INTERRUPTED)
    return (
        f"{len(outcome.findings)} {what}: {said}"
        + (f"; {repaired} repaired" if outcome.fix else "")
        + (f"; {started} interrupted" if started else "")
        + f"; {outcome.remaining} left to fix"
    )
