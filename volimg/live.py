"""The terminal panels: rich's live display of an upload (``UploadPanel``) and of a batch
(``BatchPanel``), and the loop that draws them (``live_panel``).

The layering: ``volimg.render`` and ``volimg.fleet_render`` write documents and plain
lines and never import rich at module level; this module is the rich-only part, built
on ``volimg.progress``'s event descriptions (and importing nothing else of volimg's
but the events), and ``render.live_progress`` imports it only when stderr is a
terminal. Cron, pipes and CI never load it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from volimg import events as ev
from volimg.progress import CopyTracker, LiveView, describe, human_bytes


@contextmanager
def live_panel(
    console: Console,
    view: LiveView,
    line_for: Callable[[ev.Event], str | None],
    *,
    refresh: int,
) -> Iterator[ev.EventSink]:
    """``view`` live on ``console``, with ``line_for``'s lines printed above it."""
    live = Live(view.render(), console=console, transient=True, refresh_per_second=refresh)

    def sink(event: ev.Event) -> None:
        if not live.is_started:
            live.start()
        view.update(event)
        # Refresh now: a line printed below reuses the last drawn panel, which would
        # otherwise still show a state the line has just ended.
        live.update(view.render(), refresh=True)
        line = line_for(event)
        if line is not None:
            live.console.print(Text(line))  # a volume named "[red]x" is not markup

    try:
        yield sink
    finally:
        live.stop()


_MARKS = {"done": ("✓", "green"), "failed": ("✗", "red"), "waiting": ("·", "dim")}
_FAILED_OUTCOMES = frozenset({"failed", "prune-failed"})


class _MarkColumn(ProgressColumn):
    """A spinner while the cloud works on a row; ✓, ✗ or · once it does not."""

    def __init__(self) -> None:
        super().__init__()
        self.spinner = Spinner("dots", style="cyan")

    def render(self, task: Task) -> RenderableType:
        mark = task.fields["mark"]
        if mark == "active":
            return self.spinner.render(task.get_time())
        symbol, style = _MARKS[mark]
        return Text(symbol, style=style)


class _BarColumn(ProgressColumn):
    """A bar where bytes are known; a pulse while unknown; nothing once settled."""

    def __init__(self, bar_width: int) -> None:
        super().__init__()
        self.bar = BarColumn(bar_width=bar_width)

    def render(self, task: Task) -> RenderableType:
        if task.total is None and task.fields["mark"] != "active":
            return Text("")
        return self.bar.render(task)


class _BytesColumn(ProgressColumn):
    """ "512.0 MiB/1.0 GiB 50%" when Glance reports bytes; the size alone when known."""

    def render(self, task: Task) -> RenderableType:
        size, copied = task.fields["size"], task.fields["copied"]
        if copied is not None and size:
            percent = min(100, copied * 100 // size)
            return Text(f"{human_bytes(copied)}/{human_bytes(size)} {percent:>3d}%")
        if copied is not None:
            return Text(f"{human_bytes(copied)}/?")
        return Text(human_bytes(size) if size else "")


class _RateColumn(ProgressColumn):
    """Bytes per second over the last reports (rich's own estimate), while copying."""

    def render(self, task: Task) -> RenderableType:
        speed = task.speed
        if task.finished or speed is None or task.fields["mark"] != "active":
            return Text("")
        return Text(f"{human_bytes(speed)}/s", style="dim")


class UploadPanel:
    """The terminal panel: phase, elapsed time, status, and a row per store.

    The upload's row is a spinner (Cinder reports no bytes while it uploads) that
    shows the image's size once Glance knows it; a copy's row is a bar of the bytes
    Glance reports ("Copied N MiB") against the image's size, with a rate, or a pulse
    until the first report. ``clock`` drives the animation and the rate.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.phase = "starting"
        self.elapsed = 0.0
        self.status = ""
        self.tracker = CopyTracker()
        self.progress = Progress(
            _MarkColumn(),
            TextColumn("{task.description}", style="bold"),
            _BarColumn(bar_width=30),
            _BytesColumn(),
            _RateColumn(),
            TextColumn("{task.fields[state]}"),
            get_time=clock,
            speed_estimate_period=300,  # Glance reports bytes about once a minute
            auto_refresh=False,
        )
        self.rows: dict[str, TaskID] = {}

    def _row(self, key: str, label: str, **fields: Any) -> None:
        if key not in self.rows:
            defaults: dict[str, Any] = {
                "mark": "waiting",
                "state": "",
                "size": None,
                "copied": None,
            }
            self.rows[key] = self.progress.add_task(label, total=None, **defaults)
        task_id = self.rows[key]
        self.progress.update(task_id, **fields)
        task = self.progress.tasks[self.progress.task_ids.index(task_id)]
        size, copied = task.fields["size"], task.fields["copied"]
        if copied is not None:  # without a size: bytes and rate, and a pulse for a bar
            self.progress.update(task_id, total=size or None, completed=min(copied, size or copied))

    def update(self, event: ev.Event) -> None:
        self.elapsed = event.elapsed
        self.tracker.update(event)
        if isinstance(event, ev.PhaseStarted):
            self.phase = event.phase
        elif isinstance(event, ev.UploadStarted):
            label = f"upload → {event.store}" if event.store else "upload"
            self._row("upload", label, mark="active", state="uploading")
        elif isinstance(event, ev.UploadProgress):
            self.status = f"image {event.image_status}, volume {event.volume_status}"
            self._row("upload", "upload", mark="active", size=event.image_size)
        elif isinstance(event, ev.UploadFinished):
            size = event.image.size
            self._row("upload", "upload", mark="done", state="uploaded", size=size, copied=size)
        elif isinstance(event, ev.CopyRequested):
            for store in event.stores:
                self._row(store, store, mark="waiting", state="waiting", size=self.tracker.size)
        elif isinstance(event, (ev.CopyProgress, ev.StoreSettled)):
            if isinstance(event, ev.CopyProgress):
                self.status = f"task {event.task_status}"
            self._copy_rows(event)

    def _copy_rows(self, event: ev.CopyProgress | ev.StoreSettled) -> None:
        tracker = self.tracker
        for store in tracker.order:
            if store in tracker.finished or store not in self.rows:
                continue
            if store == tracker.current:
                self._row(
                    store, store, mark="active", state="copying", size=tracker.size,
                    copied=tracker.copied,
                )  # fmt: skip
            else:
                self._row(store, store, size=tracker.size)
        if isinstance(event, ev.CopyProgress):
            for store in event.done:
                self._row(store, store, mark="done", state="copied", size=tracker.size,
                          copied=tracker.size)  # fmt: skip
            for store in event.failed:
                self._row(store, store, mark="failed", state="failed")
        else:
            failed = event.outcome in _FAILED_OUTCOMES
            state = f"{event.outcome} ({event.detail})" if event.detail else event.outcome
            self._row(event.store, event.store, mark="failed" if failed else "done", state=state)

    def render(self) -> Group:
        minutes, seconds = divmod(int(self.elapsed), 60)
        head = Text.assemble(
            (f"{self.phase:<10}", "bold cyan"), f" {minutes:02d}:{seconds:02d}  ", self.status
        )
        parts: list[Any] = [head]
        if self.rows:
            parts.append(self.progress)
        return Group(*parts)


class BatchPanel:
    """A batch's terminal panel: one row per running volume, the results so far."""

    def __init__(self, results: Sequence[str]) -> None:
        self.running: dict[str, str] = {}
        self.finished = 0
        self.results: dict[str, int] = dict.fromkeys(results, 0)

    def update(self, event: ev.Event) -> None:
        if isinstance(event, ev.ItemStarted):
            self.running[event.subject] = "planning" if event.planning else "started"
        elif isinstance(event, ev.ItemFinished):
            self.running.pop(event.subject, None)
            self.finished += 1
            self.results[event.result] = self.results.get(event.result, 0) + 1
        elif event.subject in self.running:
            text = describe(event)
            if text is not None:
                self.running[event.subject] = text

    def render(self) -> Table:
        done = ", ".join(f"{n} {r}" for r, n in self.results.items() if n) or "none yet"
        table = Table(
            "volume",
            "doing",
            box=None,
            title=f"finished {self.finished}: {done}",
            title_justify="left",
        )
        for subject, doing in self.running.items():
            table.add_row(escape(subject), escape(doing))
        return table
