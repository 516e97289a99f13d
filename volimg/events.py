"""What the executor reports while it works. Renderers turn these into output.

Events are plain frozen values: the executor never prints, and a renderer never
changes the cloud. ``elapsed`` is seconds since the run started.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from volimg.model import Image


@dataclass(frozen=True)
class Event:
    elapsed: float
    # The volume (or image) this event is about: a batch runs many at once.
    subject: str = field(default="", kw_only=True)


@dataclass(frozen=True)
class PhaseStarted(Event):
    phase: str  # upload | wait | replicate | prune
    detail: str


@dataclass(frozen=True)
class UploadStarted(Event):
    image_id: str
    image_name: str
    store: str | None = None  # where the upload lands (the plan's upload store), if known


@dataclass(frozen=True)
class UploadProgress(Event):
    image_status: str
    volume_status: str
    image_size: int | None = None  # bytes: the image's ``size`` once Glance reports it


@dataclass(frozen=True)
class UploadFinished(Event):
    image: Image


@dataclass(frozen=True)
class CopyRequested(Event):
    stores: tuple[str, ...]  # in the order Glance copies them, one after another
    request_id: str | None
    image_size: int | None = None  # bytes: what each store's copy will hold


@dataclass(frozen=True)
class CopyProgress(Event):
    task_status: str
    message: str  # Glance's task message, e.g. "Copied 512 MiB" for the store in progress
    done: tuple[str, ...]
    failed: tuple[str, ...]
    image_size: int | None = None  # bytes, when known


@dataclass(frozen=True)
class StoreSettled(Event):
    """A store reached its state for this run (outcomes: volimg.executor, docs/json.md)."""

    store: str
    outcome: str
    detail: str = ""


@dataclass(frozen=True)
class Stamped(Event):
    """The provenance stamp was written (or found intact) on the image."""

    image_id: str
    properties: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ItemStarted(Event):
    """A batch (or audit) began working on ``subject``; ``planning``: a dry run, which
    only plans it (the log must not say "started" for what will never be)."""

    planning: bool = False


@dataclass(frozen=True)
class ItemFinished(Event):
    """A batch (or audit) is done with ``subject``: its result and why."""

    result: str
    reason: str = ""


@dataclass(frozen=True)
class Notice(Event):
    """Something the operator should know that is not an error."""

    message: str


EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """An event sink that drops everything (for library callers who don't care)."""
