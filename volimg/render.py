"""Output, kept apart from doing: JSON documents, tables, progress.

stdout carries data only (a table, or exactly one JSON document); progress, notices
and errors go to stderr. Colour and live displays appear only on a terminal;
elsewhere progress is one timestamped line per change, fit for cron logs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from volimg import __version__
from volimg import events as ev
from volimg.errors import VolimgError
from volimg.executor import Outcome
from volimg.model import GlanceInfo, Image, Volume
from volimg.planner import Plan, ReplicationPlan

SCHEMA_VERSION = 1


# --- JSON documents (docs/json.md is their contract) ------------------------------


def _volume_doc(volume: Volume | None) -> dict[str, Any] | None:
    if volume is None:
        return None
    return {
        "id": volume.id,
        "name": volume.name,
        "status": volume.status,
        "volume_type": volume.volume_type,
        "size": volume.size,
    }


def _image_doc(image: Image | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {
        "id": image.id,
        "name": image.name,
        "status": image.status,
        "stores": list(image.stores),
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "visibility": image.visibility,
        "size": image.size,
        "checksum": image.checksum,
    }


def _base_doc(image: Image | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {"id": image.id, "name": image.name, "stores": list(image.stores)}


def error_doc(error: VolimgError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "type": error.kind,
        "exit_code": int(error.exit_code),
        "message": error.message,
        "hint": error.hint,
    }


def plan_doc(plan: Plan | ReplicationPlan) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "replicate_to": list(plan.replicate_to),
        "prune": list(plan.prune_from),
        "target_stores": list(plan.placement.target_stores),
        "expected_stores": list(plan.expected_stores),
        "all_stores_must_succeed": plan.placement.all_stores_must_succeed,
        "reasons": [
            {"topic": d.topic, "decision": d.outcome, "reason": d.reason} for d in plan.decisions
        ],
    }
    if isinstance(plan, Plan):
        doc = {
            "image_name": plan.upload.image_name,
            "upload_store": plan.upload_store,
            "cinder_microversion": plan.upload.microversion,
            "cinder_headers": dict(plan.cinder_headers),
            "upload_request": {
                k: v
                for k, v in {
                    "image_name": plan.upload.image_name,
                    "force": plan.upload.force,
                    "disk_format": plan.upload.disk_format,
                    "container_format": plan.upload.container_format,
                    "visibility": plan.upload.visibility,
                    "protected": plan.upload.protected,
                }.items()
                if v is not None
            },
            **doc,
        }
    return doc


def outcome_doc(outcome: Outcome) -> dict[str, Any]:
    """The one JSON document of ``upload``, ``plan`` and ``replicate``."""
    plan = outcome.plan
    if isinstance(plan, Plan):
        volume, base, type_store = plan.volume, plan.base_image, plan.volume_type_store
    else:
        volume, base, type_store = None, plan.like, None
    return {
        "volimg": __version__,
        "schema_version": SCHEMA_VERSION,
        "command": outcome.command,
        "result": outcome.result,
        "volume": _volume_doc(volume),
        "base_image": _base_doc(base),
        "volume_type_store": type_store,
        "plan": plan_doc(plan),
        "image": None if outcome.dry_run and isinstance(plan, Plan) else _image_doc(outcome.image),
        "replication": {r.store: r.outcome for r in outcome.stores},
        "details": {r.store: r.detail for r in outcome.stores if r.detail},
        "error": error_doc(outcome.error),
        "next_steps": list(outcome.next_steps),
    }


def failure_doc(command: str, error: VolimgError) -> dict[str, Any]:
    """The JSON document when a command fails before it has anything else to say."""
    return {
        "volimg": __version__,
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "result": "failed",
        "error": error_doc(error),
    }


def stores_doc(info: GlanceInfo) -> dict[str, Any]:
    return {
        "volimg": __version__,
        "schema_version": SCHEMA_VERSION,
        "command": "stores",
        "result": "ok",
        "multi_store": info.multi_store,
        "default_store": info.default_store,
        "copy_image_enabled": info.copy_image_enabled,
        "import_methods": list(info.import_methods),
        "stores": [
            {
                "id": s.id,
                "default": s.is_default,
                "read_only": s.read_only,
                "description": s.description,
            }
            for s in info.stores
        ],
    }


def dump_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)


# --- human output ------------------------------------------------------------------


def _list(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "-"


def plan_rows(plan: Plan | ReplicationPlan) -> list[tuple[str, str]]:
    """The plan as label/value rows, shared by the table and the plain renderer."""
    rows: list[tuple[str, str]] = []
    if isinstance(plan, Plan):
        v = plan.volume
        rows.append(
            ("volume", f"{v.label} ({v.id}): {v.status}, type {v.volume_type or '-'}, {v.size} GiB")
        )
        base = plan.base_image
        if base is not None:
            rows.append(
                ("base image", f"{base.name or base.id} ({base.id}), in {_list(base.stores)}")
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
            ("image", f"{img.name or img.id} ({img.id}): {img.status}, in {_list(img.stores)}")
        )
        if plan.like is not None:
            rows.append(("like", f"{plan.like.name or plan.like.id}, in {_list(plan.like.stores)}"))
    rows.append(("copy to", _list(plan.replicate_to)))
    rows.append(("prune", _list(plan.prune_from)))
    rows.append(("ends in", _list(plan.expected_stores)))
    return rows


def outcome_rows(outcome: Outcome) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    image = outcome.image
    if image is not None:
        rows.append(
            ("image", f"{image.name} ({image.id}): {image.status}, in {_list(image.stores)}")
        )
    for report in outcome.stores:
        detail = f" ({report.detail})" if report.detail else ""
        rows.append((f"store {report.store}", f"{report.outcome}{detail}"))
    rows.append(("result", outcome.result))
    for step in outcome.next_steps:
        rows.append(("next", step))
    return rows


class Renderer:
    """Writes results to stdout and progress/errors to stderr, in the chosen format."""

    def __init__(
        self,
        *,
        stdout: Console,
        stderr: Console,
        fmt: str = "table",
        wall_clock: Callable[[], datetime],
    ) -> None:
        self.out = stdout
        self.err = stderr
        self.fmt = fmt
        self.wall_clock = wall_clock

    @property
    def json(self) -> bool:
        return self.fmt == "json"

    def _emit_json(self, doc: dict[str, Any]) -> None:
        # print() through rich would wrap and highlight; data goes out untouched.
        self.out.file.write(dump_json(doc) + "\n")
        self.out.file.flush()

    def _rows(self, rows: list[tuple[str, str]], title: str | None = None) -> None:
        if self.out.is_terminal:
            table = Table(show_header=False, box=None, title=title, title_justify="left")
            table.add_column(style="bold cyan", no_wrap=True)
            table.add_column(overflow="fold")
            for label, value in rows:
                table.add_row(label, escape(value))
            self.out.print(table)
        else:
            width = max(len(label) for label, _ in rows)
            if title:
                self.out.file.write(f"{title}\n")
            for label, value in rows:
                self.out.file.write(f"{label.ljust(width)}  {value}\n")
            self.out.file.flush()

    def _decisions(self, plan: Plan | ReplicationPlan) -> None:
        if self.out.is_terminal:
            table = Table(title="why", title_justify="left", box=None, show_header=False)
            table.add_column(style="bold", no_wrap=True)
            table.add_column(style="green", no_wrap=True)
            table.add_column(overflow="fold")
            for d in plan.decisions:
                table.add_row(d.topic, escape(d.outcome), escape(d.reason))
            self.out.print(table)
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
            self._emit_json(outcome_doc(outcome))
            return
        self.show_plan(outcome.plan, title="plan (nothing changed)")

    def outcome(self, outcome: Outcome) -> None:
        if outcome.dry_run:
            self.plan(outcome)
            return
        if self.json:
            self._emit_json(outcome_doc(outcome))
        else:
            self._rows(outcome_rows(outcome))
        if outcome.error is not None:
            self.error(outcome.error, document=False)

    def stores(self, info: GlanceInfo) -> None:
        if self.json:
            self._emit_json(stores_doc(info))
            return
        if not info.multi_store:
            self.out.file.write("Glance has no multiple stores (GET /v2/info/stores not offered)\n")
        if self.out.is_terminal and info.stores:
            table = Table("store", "default", "read-only", "description", box=None)
            for s in info.stores:
                table.add_row(
                    s.id,
                    "yes" if s.is_default else "",
                    "yes" if s.read_only else "",
                    escape(s.description),
                )
            self.out.print(table)
        else:
            for s in info.stores:
                flags = ",".join(
                    f for f, on in (("default", s.is_default), ("read-only", s.read_only)) if on
                )
                self.out.file.write(f"{s.id}\t{flags or '-'}\t{s.description}\n")
        enabled = "enabled" if info.copy_image_enabled else "NOT enabled"
        self.err.print(
            f"copy-image: {enabled} (import methods: {_list(info.import_methods)})",
            highlight=False,
        )

    def error(self, error: VolimgError, *, document: bool = True, command: str = "") -> None:
        """An error: one line (and a hint) on stderr; in JSON mode also the document."""
        if self.json and document:
            self._emit_json(failure_doc(command, error))
        style = "bold red" if self.err.is_terminal else ""
        self.err.print(Text(f"volimg: error: {error.message}", style=style), soft_wrap=True)
        if error.hint:
            self.err.print(Text(f"volimg: hint: {error.hint}"), soft_wrap=True)

    def notice(self, message: str) -> None:
        self.err.print(Text(f"volimg: {message}"), soft_wrap=True)

    @contextmanager
    def progress(self) -> Iterator[ev.EventSink]:
        """An event sink: a live panel on a terminal, timestamped lines otherwise.

        The live panel starts with the first event, so whatever is printed before it
        (the demo's plan) is not drawn over.
        """
        if not self.err.is_terminal:
            yield _LineLog(self.err, self.wall_clock).write
            return
        from rich.live import Live  # only on a terminal: a pipe or cron need not import it

        view = _LiveView()
        live = Live(view.render(), console=self.err, transient=True, refresh_per_second=8)

        def sink(event: ev.Event) -> None:
            if not live.is_started:
                live.start()
            view.update(event)
            live.update(view.render())
            line = milestone(event)
            if line is not None:
                live.console.print(line, highlight=False)

        try:
            yield sink
        finally:
            live.stop()


class _LineLog:
    """Plain progress: one line per change, with a UTC timestamp, for logs and cron."""

    def __init__(self, console: Console, wall_clock: Callable[[], datetime]) -> None:
        self.file = console.file
        self.wall_clock = wall_clock
        self.last: tuple[object, ...] | None = None

    def write(self, event: ev.Event) -> None:
        text = describe(event)
        if text is None:
            return
        key = (type(event), text)
        if key == self.last:
            return
        self.last = key
        stamp = self.wall_clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        self.file.write(f"{stamp} {text}\n")
        self.file.flush()


def milestone(event: ev.Event) -> str | None:
    """One line for an event worth a line of its own (None: progress only)."""
    if isinstance(event, ev.PhaseStarted):
        return f"{event.phase}: {event.detail}"
    if isinstance(event, ev.UploadStarted):
        return f"upload: Cinder accepted; image {event.image_id} ({event.image_name})"
    if isinstance(event, ev.UploadFinished):
        return f"wait: image {event.image.id} is active in {_list(event.image.stores)}"
    if isinstance(event, ev.CopyRequested):
        return (
            f"replicate: Glance accepted copy-image to {_list(event.stores)} "
            f"(request {event.request_id or '?'})"
        )
    if isinstance(event, ev.StoreSettled):
        detail = f" ({event.detail})" if event.detail else ""
        return f"store {event.store}: {event.outcome}{detail}"
    if isinstance(event, ev.Notice):
        return f"note: {event.message}"
    return None


def describe(event: ev.Event) -> str | None:
    """One line for any event, progress included (the plain, non-terminal log)."""
    if isinstance(event, ev.UploadProgress):
        return f"wait: image {event.image_status}, volume {event.volume_status}"
    if isinstance(event, ev.CopyProgress):
        message = f", {event.message}" if event.message else ""
        return (
            f"replicate: task {event.task_status}{message}; "
            f"copied {_list(event.done)}, failed {_list(event.failed)}"
        )
    return milestone(event)


class _LiveView:
    """The terminal panel: phase, elapsed time, statuses, and each store's state."""

    def __init__(self) -> None:
        self.phase = "starting"
        self.elapsed = 0.0
        self.status = ""
        self.message = ""
        self.stores: dict[str, str] = {}

    def update(self, event: ev.Event) -> None:
        self.elapsed = event.elapsed
        if isinstance(event, ev.PhaseStarted):
            self.phase = event.phase
        elif isinstance(event, ev.UploadProgress):
            self.status = f"image {event.image_status}, volume {event.volume_status}"
        elif isinstance(event, ev.CopyRequested):
            self.stores.update(dict.fromkeys(event.stores, "copying"))
        elif isinstance(event, ev.CopyProgress):
            self.message = event.message
            self.status = f"task {event.task_status}"
            self.stores.update(dict.fromkeys(event.done, "copied"))
            self.stores.update(dict.fromkeys(event.failed, "failed"))
        elif isinstance(event, ev.StoreSettled):
            self.stores[event.store] = event.outcome

    def render(self) -> Group:
        minutes, seconds = divmod(int(self.elapsed), 60)
        head = Text.assemble(
            (f"{self.phase:<10}", "bold cyan"), f" {minutes:02d}:{seconds:02d}  ", self.status
        )
        parts: list[Any] = [head]
        if self.stores:
            parts.append(Text("  ".join(f"{s}: {state}" for s, state in self.stores.items())))
        if self.message:
            parts.append(Text(self.message, style="dim"))
        return Group(*parts)
