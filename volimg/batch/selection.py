"""Which volumes a batch works on, read from the cloud, and the name of each one's image.

``volimg.selection`` parses volume lists and selectors (pure text); here they are
resolved against Cinder, each volume once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Protocol, TypeVar

from volimg.batch.outcome import VolumeResult
from volimg.errors import AmbiguousVolume, InputError
from volimg.gateway import Gateway
from volimg.model import Volume
from volimg.planner import default_image_name
from volimg.results import RESULT_FAILED


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which volumes: names/ids, and volume-metadata selectors (ANDed)."""

    refs: tuple[str, ...] = ()
    selectors: tuple[tuple[str, str], ...] = ()
    all_projects: bool = False
    require_match: bool = True  # an empty selection stops the run (exit 2)

    @property
    def is_batch(self) -> bool:
        return len(self.refs) != 1 or bool(self.selectors)


T = TypeVar("T")
R = TypeVar("R")

# From this many names or IDs on, one listing of the project's volumes resolves them
# (a GET or a name query each would cost a request a volume); what the listing does
# not hold (another project's volume, for an admin) is looked up one by one.
REFS_FOR_A_LISTING = 4


class Retried(Protocol):
    """How the start's reads are made: ``retry_while_starting`` with the batch's budget."""

    def __call__(self, action: str, read: Callable[[], T], /) -> T: ...


def select_volumes(
    gateway: Gateway,
    selection: Selection,
    retried: Retried | None = None,
) -> tuple[list[tuple[str, Volume]], list[VolumeResult]]:
    """Resolve names, ids and selectors to volumes, each volume once.

    A name that matches nothing (or several volumes) becomes a failed result of its
    own; the other volumes still run. ``retried`` wraps each lookup and listing (the
    batch passes ``retry_while_starting``); a cloud error that remains ends the run.
    """

    def call(action: str, read: Callable[[], R]) -> R:
        return read() if retried is None else retried(action, read)

    found: list[tuple[str, Volume]] = []
    failed: list[VolumeResult] = []
    listed: list[Volume] = []
    if len(selection.refs) >= REFS_FOR_A_LISTING:
        listed = call("listing volumes", gateway.list_volumes)
    for ref in selection.refs:
        try:
            volume = _from_listing(ref, listed)
            if volume is None:
                volume = call(f"looking up volume {ref!r}", partial(gateway.find_volume, ref))
            found.append((ref, volume))
        except InputError as exc:
            failed.append(VolumeResult(ref=ref, volume=None, result=RESULT_FAILED, error=exc))
    if selection.selectors:
        listed = call(
            "listing volumes",
            lambda: gateway.list_volumes(
                metadata=dict(selection.selectors), all_projects=selection.all_projects
            ),
        )
        for volume in listed:
            found.append((volume.id, volume))
    unique: dict[str, tuple[str, Volume]] = {}
    for ref, volume in found:
        unique.setdefault(volume.id, (ref, volume))
    return list(unique.values()), failed


def _from_listing(ref: str, listed: list[Volume]) -> Volume | None:
    """``ref`` resolved as ``Gateway.find_volume`` would (an ID first, then an exact
    name, a name several volumes share refused), or None when the listing has neither."""
    for volume in listed:
        if volume.id == ref:
            return volume
    named = [volume for volume in listed if volume.name == ref]
    if len(named) > 1:
        raise AmbiguousVolume(ref, sorted(v.id for v in named))
    return named[0] if named else None


def batch_image_name(
    volume: Volume, period: str | None, at: datetime, shared_names: set[str]
) -> str:
    """``<volume>-<period>`` with --once-per (one image per period), else ``<volume>-<time>``.

    Volumes that share a name are told apart by their ID, so that an image name
    found after a crash points at one volume only.
    """
    label = volume.id if volume.name in shared_names or not volume.name else volume.name
    if period is None:
        return default_image_name(replace(volume, name=label), at)
    return f"{label}-{period}"
