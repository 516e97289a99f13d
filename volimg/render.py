"""Output for people, kept apart from doing: tables, plain lines, one upload's progress.

stdout carries data only (a table, or exactly one JSON document); progress, notices
and errors go to stderr. Colour and live displays appear only on a terminal;
elsewhere progress is one timestamped line per change, fit for cron logs.

``Renderer`` writes a command's result in the chosen format: the JSON documents are
built in ``volimg.documents``, their human form (``plan_rows``, ``outcome_rows``, the
tables) here. This module never imports rich at module level: off a terminal,
``PlainOutput`` writes the lines and rich is not loaded at all. Tables are drawn with
rich only through ``rich_terminal``. Below this module: ``volimg.output`` (where
output goes) and ``volimg.progress`` (events in words, the plain log); the live panels
are in ``volimg.live``, which imports only those two, and ``live_progress`` loads it
on a terminal. ``volimg.fleet_render`` follows the same rule for batches and audits.

The names imported ``X as X`` below lived here once and are still importable from here
(volimg.context and the tests do); ``dump_json``, ``failure_doc`` and the progress
helpers are no longer: import them from ``volimg.documents`` and ``volimg.progress``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from volimg.model import counted
from volimg.output import Output as Output
from volimg.output import PlainOutput as PlainOutput
from volimg.output import comma_list, rich_terminal
from volimg.output import might_be_terminal as might_be_terminal
from volimg.output import say as say

# The rest is imported by the function that needs it: `volimg stores` writes a few
# lines and must not load the planner, the doctor, the events and the JSON documents
# for them (docs/performance.md, "Where the start-up time goes").
if TYPE_CHECKING:
    from volimg import events as ev
    from volimg.doctor import DoctorReport
    from volimg.errors import VolimgError
    from volimg.model import GlanceInfo
    from volimg.planner import Plan, ReplicationPlan
    from volimg.progress import LiveView
    from volimg.provenance import Stamp
    from volimg.results import Outcome


def _named(name: str, resource_id: str) -> str:
    """``name (id)``, or the ID alone for a nameless resource: never ``id (id)``."""
    return f"{shlex.quote(name)} ({resource_id})" if name else resource_id


def plan_rows(plan: Plan | ReplicationPlan) -> list[tuple[str, str]]:
    """The plan as label/value rows, shared by the table and the plain renderer."""
    from volimg.planner import Plan

    rows: list[tuple[str, str]] = []
    if isinstance(plan, Plan):
        v = plan.volume
        rows.append(
            (
                "volume",
                f"{_named(v.name, v.id)}: {v.status}, type {v.volume_type or '-'}, {v.size} GiB",
            )
        )
        base = plan.base_image
        if base is not None:
            rows.append(
                ("base image", f"{_named(base.name, base.id)}, in {comma_list(base.stores)}")
            )
        elif v.base_image_id:
            rows.append(("base image", f"{v.base_image_id} (gone or not visible)"))
        else:
            rows.append(("base image", "-"))
        rows.append(("type store", plan.volume_type_store or "-"))
        up = plan.upload
        formats = f"{up.disk_format or 'raw'}/{up.container_format or 'bare'}"
        rows.append(
            (
                "upload",
                f"os-volume_upload_image (Cinder API {up.microversion}) as {up.image_name!r}, "
                f"{formats}{', forced' if up.force else ''}",
            )
        )
        headers = "; ".join(f"{k}: {val}" for k, val in plan.cinder_headers.items())
        rows.append(("cinder→glance", headers or "no placement headers"))
        rows.append(("lands in", plan.upload_store or "Glance's only store"))
    else:
        img = plan.image
        rows.append(
            ("image", f"{_named(img.name, img.id)}: {img.status}, in {comma_list(img.stores)}")
        )
        if plan.like is not None:
            rows.append(
                ("like", f"{plan.like.name or plan.like.id}, in {comma_list(plan.like.stores)}")
            )
    rows.append(("copy to", comma_list(plan.replicate_to)))
    rows.append(("prune", comma_list(plan.prune_from)))
    rows.append(("ends in", comma_list(plan.expected_stores)))
    return rows


def outcome_rows(outcome: Outcome) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    image = outcome.image
    if image is not None:
        rows.append(
            (
                "image",
                f"{_named(image.name, image.id)}: {image.status}, in {comma_list(image.stores)}",
            )
        )
    for report in outcome.stores:
        detail = f" ({report.detail})" if report.detail else ""
        rows.append((f"store {report.store}", f"{report.outcome}{detail}"))
    rows.append(("result", outcome.result))
    for step in outcome.next_steps:
        rows.append(("next", step))
    return rows


class Streams:
    """Where a renderer writes: results to stdout, progress and errors to stderr."""

    def __init__(
        self,
        *,
        stdout: Output,
        stderr: Output,
        fmt: str = "table",
        wall_clock: Callable[[], datetime],
    ) -> None:
        self.out = stdout
        self.err = stderr
        self.fmt = fmt
        self.wall_clock = wall_clock

    def _write(self, stream: IO[str], line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    def notice(self, message: str) -> None:
        """One line on stderr, before or beside the progress (a warning, a note)."""
        say(self.err, f"volimg: {message}")


class Renderer(Streams):
    """Writes results to stdout and progress/errors to stderr, in the chosen format."""

    @property
    def json(self) -> bool:
        return self.fmt == "json"

    def _emit_json(self, doc: dict[str, Any]) -> None:
        # print() through rich would wrap and highlight; data goes out untouched.
        from volimg.documents import dump_json

        self.out.file.write(dump_json(doc) + "\n")
        self.out.file.flush()

    def _rows(self, rows: list[tuple[str, str]], title: str | None = None) -> None:
        terminal = rich_terminal(self.out)
        if terminal is not None:
            from rich.markup import escape
            from rich.table import Table

            table = Table(show_header=False, box=None, title=title, title_justify="left")
            table.add_column(style="bold cyan", no_wrap=True)
            table.add_column(overflow="fold")
            for label, value in rows:
                table.add_row(label, escape(value))
            terminal.print(table)
        else:
            width = max(len(label) for label, _ in rows)
            if title:
                self.out.file.write(f"{title}\n")
            for label, value in rows:
                self.out.file.write(f"{label.ljust(width)}  {value}\n")
            self.out.file.flush()

    def _decisions(self, plan: Plan | ReplicationPlan) -> None:
        terminal = rich_terminal(self.out)
        if terminal is not None:
            from rich.markup import escape
            from rich.table import Table

            table = Table(title="why", title_justify="left", box=None, show_header=False)
            table.add_column(style="bold", no_wrap=True)
            table.add_column(style="green", no_wrap=True)
            table.add_column(overflow="fold")
            for d in plan.decisions:
                table.add_row(d.topic, escape(d.outcome), escape(d.reason))
            terminal.print(table)
        else:
            self.out.file.write("why:\n")
            for d in plan.decisions:
                self.out.file.write(f"  - {d.topic}: {d.outcome} — {d.reason}\n")
            self.out.file.flush()

    def show_plan(self, plan: Plan | ReplicationPlan, title: str = "plan") -> None:
        """The plan as rows and reasons (table mode only)."""
        self._rows(plan_rows(plan), title=title)
        self._decisions(plan)

    def plan(self, outcome: Outcome) -> None:
        if self.json:
            from volimg.documents import outcome_doc

            self._emit_json(outcome_doc(outcome))
            return
        self.show_plan(outcome.plan, title="plan (nothing changed)")

    def outcome(self, outcome: Outcome) -> None:
        if outcome.dry_run:
            self.plan(outcome)
            return
        if self.json:
            from volimg.documents import outcome_doc

            self._emit_json(outcome_doc(outcome))
        else:
            self._rows(outcome_rows(outcome))
        if outcome.error is not None:
            self.error(outcome.error, document=False)

    def stores(self, info: GlanceInfo) -> None:
        if self.json:
            from volimg.documents import stores_doc

            self._emit_json(stores_doc(info))
            return
        if not info.multi_store:
            self.out.file.write("Glance has no multiple stores (GET /v2/info/stores not offered)\n")
        terminal = rich_terminal(self.out)
        if terminal is not None and info.stores:
            from rich.markup import escape
            from rich.table import Table

            table = Table("store", "default", "read-only", "description", box=None)
            for s in info.stores:
                table.add_row(
                    s.id,
                    "yes" if s.is_default else "",
                    "yes" if s.read_only else "",
                    escape(s.description),
                )
            terminal.print(table)
        else:
            if info.stores:  # a header row, as the doctor's plain lines have
                self.out.file.write("store\tflags\tdescription\n")
            for s in info.stores:
                flags = ",".join(
                    f for f, on in (("default", s.is_default), ("read-only", s.read_only)) if on
                )
                self.out.file.write(f"{s.id}\t{flags or '-'}\t{s.description}\n")
        enabled = "enabled" if info.copy_image_enabled else "NOT enabled"
        say(self.err, f"copy-image: {enabled} (import methods: {comma_list(info.import_methods)})")

    def stamped(self, command: str, stamp: Stamp) -> None:
        """The stamp an ``adopt`` wrote."""
        from volimg.documents import document
        from volimg.provenance import TAG

        props = stamp.properties()
        if self.json:
            self._emit_json(
                document(command, "ok", image_id=stamp.image_id, stamp=props, tag=TAG, error=None)
            )
            return
        self._rows([("image", stamp.image_id), *props.items(), ("tag", TAG)])

    def doctor(self, report: DoctorReport) -> None:
        """The doctor's rows: a table on a terminal, tab-separated lines elsewhere."""
        from volimg.doctor import STATUSES

        if self.json:
            from volimg.documents import doctor_doc

            self._emit_json(doctor_doc(report))
            return
        header = ("check", "status", "subject", "detail", "fix")
        rows = [(c.check, c.status, c.subject, c.detail, c.fix or "-") for c in report.checks]
        terminal = rich_terminal(self.out)
        if terminal is not None:
            from rich.markup import escape
            from rich.table import Table

            styles = {"ok": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}
            table = Table(*header, box=None)
            for check, status, *rest in rows:
                table.add_row(
                    check, f"[{styles[status]}]{status}[/]", *(escape(cell) for cell in rest)
                )
            terminal.print(table)
        else:
            for row in (header, *rows):
                self._write(self.out.file, "\t".join(row))
        counts = report.counts
        summary = ", ".join(f"{counts[status]} {status}" for status in STATUSES)
        self._write(self.out.file, f"{counted(len(report.checks), 'check')}: {summary}")

    def error(self, error: VolimgError, *, document: bool = True, command: str = "") -> None:
        """An error: one line (and a hint) on stderr; in JSON mode also the document."""
        if self.json and document:
            from volimg.documents import failure_doc

            self._emit_json(failure_doc(command, error))
        style = "bold red" if self.err.is_terminal else ""
        say(self.err, f"volimg: error: {error.message}", style=style)
        if error.hint:
            say(self.err, f"volimg: hint: {error.hint}")

    @contextmanager
    def progress(self) -> Iterator[ev.EventSink]:
        """An event sink: a live panel on a terminal, timestamped lines otherwise.

        The live panel starts with the first event, so whatever is printed before it
        (the demo's plan) is not drawn over.
        """
        from volimg.progress import _LineLog, milestone

        plain = _LineLog(self.err, self.wall_clock).write
        with live_progress(self.err, _upload_panel, plain, milestone, refresh=8) as sink:
            yield sink


def _upload_panel() -> LiveView:
    from volimg.live import UploadPanel

    return UploadPanel()


@contextmanager
def live_progress(
    console: Output,
    make_view: Callable[[], LiveView],
    plain: ev.EventSink,
    line_for: Callable[[ev.Event], str | None],
    *,
    refresh: int,
) -> Iterator[ev.EventSink]:
    """``make_view()``'s panel live on a terminal, with ``line_for``'s lines printed above
    it; ``plain`` (timestamped lines) off a terminal or with TERM=dumb, where neither
    the panel nor rich's live display is imported."""
    terminal = rich_terminal(console)
    if terminal is None or terminal.is_dumb_terminal:
        yield plain
        return
    from volimg.live import live_panel

    with live_panel(terminal, make_view(), line_for, refresh=refresh) as sink:
        yield sink
