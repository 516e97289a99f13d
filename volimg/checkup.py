"""``volimg doctor``'s reads: the cloud, read once, into ``volimg.doctor.DoctorFacts``.

Nothing here changes the cloud: every request is a GET. The number of requests does
not grow with the number of volumes or images (docs/performance.md measures it): one
listing of the volumes and one of the volume types, one ``id=in:`` listing per 40 base
images (at most ``MAX_BASE_IMAGES``), one filtered listing of the stamped images, the
tasks of at most ``MAX_LOCK_TASK_READS`` locked images, one request per other image
endpoint of the catalog (at most ``MAX_OTHER_ENDPOINTS``), and Glance's stores, import
methods and quota usage.

Keystone, Glance's stores and import methods, and the project's volumes are the ground
every check stands on: when they cannot be read the doctor cannot run, and the error
propagates (exit 1, or 5 when authentication is refused). Any other read that fails
becomes that check's ``skipped`` (refused) or ``warn`` (failed) row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import MappingProxyType
from typing import TypeVar

from volimg.doctor import (
    MAX_BASE_IMAGES,
    MAX_LOCK_TASK_READS,
    MAX_OTHER_ENDPOINTS,
    DoctorFacts,
    DoctorReport,
    EndpointStores,
    Unread,
    diagnose,
)
from volimg.errors import CloudError, NotFoundInCloud, PermissionDenied
from volimg.gateway import Gateway
from volimg.model import GlanceInfo, ImageEndpoint, ImportTask
from volimg.provenance import TAG

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class DoctorOptions:
    """``--volume-type``: check only these types, and only their volumes."""

    volume_types: tuple[str, ...] = ()


def _attempt(read: Callable[[], T]) -> T | Unread:
    """A read whose failure is a row of the report, not the end of the run.

    403 and 404 mean the cloud does not let this caller see it (``skipped``); other
    service errors and unreachable endpoints are reported as such (``warn``). A refused
    login (401) still ends the run: nothing else would work either.
    """
    try:
        return read()
    except (PermissionDenied, NotFoundInCloud) as exc:
        return Unread(exc.message, refused=True)
    except CloudError as exc:
        return Unread(exc.message)


def _plain(url: str) -> str:
    """An image endpoint's URL without its version: catalog URLs are unversioned, the
    one openstacksdk discovered ends in /v2/."""
    return url.rstrip("/").removesuffix("/v2").rstrip("/")


def gather(gateway: Gateway, options: DoctorOptions, *, now: datetime) -> DoctorFacts:
    """Read everything the checks look at; change nothing."""
    identity = gateway.identity()
    glance = gateway.glance_info()
    endpoint = _plain(gateway.image_endpoint_url())
    volumes = gateway.list_volumes()
    if options.volume_types:
        volumes = [v for v in volumes if v.volume_type in options.volume_types]
    volume_types = _attempt(
        lambda: tuple(gateway.volume_types_with_specs(specs_visible=identity.is_admin))
    )
    base_ids = list(dict.fromkeys(v.base_image_id for v in volumes if v.base_image_id))
    base_images = (
        _attempt(
            lambda: MappingProxyType(
                {i.id: i for i in gateway.images_by_ids(base_ids[:MAX_BASE_IMAGES])}
            )
        )
        if base_ids and glance.multi_store
        else MappingProxyType({})
    )
    endpoints, unread_endpoints = _endpoints(gateway, endpoint, glance)
    stamped = _attempt(lambda: tuple(gateway.list_images(tag=TAG, owner=identity.project_id)))
    lock_tasks: dict[str, tuple[ImportTask, ...] | None] = {}
    if not isinstance(stamped, Unread):
        for image in [i for i in stamped if i.import_task][:MAX_LOCK_TASK_READS]:
            tasks = _attempt(partial(gateway.image_tasks, image.id))
            lock_tasks[image.id] = None if isinstance(tasks, Unread) else tuple(tasks)
    return DoctorFacts(
        identity=identity,
        endpoint=endpoint,
        glance=glance,
        cinder=gateway.cinder_versions(),
        volumes=tuple(volumes),
        volume_types=volume_types,
        wanted_types=options.volume_types,
        base_images=base_images,
        base_images_unread=max(0, len(base_ids) - MAX_BASE_IMAGES),
        endpoints=endpoints,
        endpoints_unread=unread_endpoints,
        usage=_attempt(gateway.glance_usage),
        stamped=stamped,
        lock_tasks=MappingProxyType(lock_tasks),
        now=now,
    )


def _endpoints(
    gateway: Gateway, current_url: str, glance: GlanceInfo
) -> tuple[tuple[EndpointStores, ...], int]:
    """Each image endpoint of the catalog and the stores it knows.

    The endpoint volimg talks to is not asked again: its stores are Glance's, read
    above. Each other one costs one request, for at most ``MAX_OTHER_ENDPOINTS``.
    """
    catalog = _attempt(gateway.image_endpoints)
    if isinstance(catalog, Unread) or len(catalog) <= 1:
        return (), 0
    own = tuple(s.id for s in glance.stores) if glance.multi_store else None
    found: list[EndpointStores] = []
    others: list[ImageEndpoint] = []
    for entry in catalog:
        if _plain(entry.url) == current_url:
            found.append(EndpointStores(entry.region, entry.url, own, current=True))
        else:
            others.append(entry)
    for entry in others[:MAX_OTHER_ENDPOINTS]:
        stores = _attempt(partial(gateway.stores_at, entry.url))
        seen = (
            stores if stores is None or isinstance(stores, Unread) else tuple(s.id for s in stores)
        )
        found.append(EndpointStores(entry.region, entry.url, seen))
    return tuple(found), max(0, len(others) - MAX_OTHER_ENDPOINTS)


def run_doctor(gateway: Gateway, options: DoctorOptions, *, now: datetime) -> DoctorReport:
    """Read the cloud and check it: the whole of ``volimg doctor`` but the printing."""
    return diagnose(gather(gateway, options, now=now))
