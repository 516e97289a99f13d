"""Shell completion of cloud names: volumes, images and Glance stores.

Click's own completion machinery (``_VOLIMG_COMPLETE``, see ``volimg completion``)
calls these functions while the user presses TAB. They answer from a short-lived cache
under the user's cache directory, else ask the cloud once through ``volimg.gateway``
with a short timeout and no retries, and cache the answer. A completion must never
disturb the shell: whatever goes wrong (no cloud configured, a wrong password, a cloud
that is down or slow, an unwritable cache), it completes nothing and prints nothing.

Nothing here imports openstacksdk until the cache has no fresh answer.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.shell_completion import CompletionItem

from volimg.errors import VolimgError

if TYPE_CHECKING:
    from volimg.gateway import Gateway

CACHE_TTL = 60.0
"""Seconds a listing answers from the cache: a second TAB sends no request."""
REQUEST_TIMEOUT = 2.0
"""Seconds each request to the cloud may take; a completion then gives up, quietly."""

# What selects the credentials, and so the project, besides --os-cloud/--os-region-name
# (the names openstacksdk reads, openstack/config/loader.py). Passwords stay out.
_IDENTITY_VARIABLES = (
    "OS_CLIENT_CONFIG_FILE",
    "OS_AUTH_URL",
    "OS_AUTH_TYPE",
    "OS_USERNAME",
    "OS_USER_ID",
    "OS_USER_DOMAIN_NAME",
    "OS_USER_DOMAIN_ID",
    "OS_PROJECT_NAME",
    "OS_PROJECT_ID",
    "OS_TENANT_NAME",
    "OS_TENANT_ID",
    "OS_PROJECT_DOMAIN_NAME",
    "OS_PROJECT_DOMAIN_ID",
    "OS_APPLICATION_CREDENTIAL_ID",
    "OS_APPLICATION_CREDENTIAL_NAME",
)

Listing = dict[str, str]
"""id -> name (volumes, images) or id -> description (stores)."""


@dataclass(frozen=True)
class CloudChoice:
    """Which cloud and project a completion lists: the key of its cache entries."""

    cloud: str | None
    region: str | None

    @classmethod
    def from_context(cls, ctx: click.Context) -> CloudChoice:
        """The global options as parsed so far (``--os-cloud``, or OS_CLOUD)."""
        params = ctx.find_root().params
        return cls(cloud=params.get("os_cloud"), region=params.get("os_region_name"))

    def cache_key(self, kind: str) -> str:
        # hashlib and json only here and in the cache: `volimg --help` imports this module.
        import hashlib
        import json

        identity = {name: os.environ.get(name) for name in _IDENTITY_VARIABLES}
        # openstacksdk also reads ./clouds.yaml first, so the directory can matter.
        local = Path("clouds.yaml")
        digest = hashlib.sha256(
            json.dumps(
                {
                    "cloud": self.cloud,
                    "region": self.region,
                    "env": identity,
                    "local": str(local.resolve()) if local.is_file() else None,
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()
        return f"{kind}-{digest[:32]}"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/volimg`` (else ``~/.cache/volimg``), per the XDG base directories."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "volimg"


def read_cache(key: str, *, now: float | None = None) -> Listing | None:
    """A fresh listing from the cache, or None (missing, stale, or unreadable)."""
    import json

    path = cache_dir() / f"{key}.json"
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
        if not 0 <= age < CACHE_TTL:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        return None
    return data


def write_cache(key: str, listing: Listing) -> None:
    """Write atomically (a temporary file renamed over the old one), readable by you only."""
    import json

    from volimg.files import write_private_file

    directory = cache_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private_file(directory / f"{key}.json", json.dumps(listing))


@contextmanager
def _silenced() -> Iterator[None]:
    """No warning or log line from openstacksdk/keystoneauth reaches the shell."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def listing(choice: CloudChoice, kind: str, fetch: Callable[[Gateway], Listing]) -> Listing:
    """The cached listing, else one fetched now and cached; {} when anything goes wrong."""
    key = choice.cache_key(kind)
    cached = read_cache(key)
    if cached is not None:
        return cached
    try:
        with _silenced():
            from volimg.gateway import connect

            gateway = connect(choice.cloud, choice.region, timeout=REQUEST_TIMEOUT, retries=False)
            try:
                found = fetch(gateway)
            finally:
                gateway.close()
    except VolimgError:
        return {}  # no cloud, wrong password, cloud down: complete nothing, quietly
    with suppress(OSError):  # an unwritable cache only costs the next TAB a request
        write_cache(key, found)
    return found


def _volumes(gateway: Gateway) -> Listing:
    return gateway.list_volume_names()


def _project_images(gateway: Gateway) -> Listing:
    return gateway.list_image_names(owner=gateway.identity().project_id)


def _public_images(gateway: Gateway) -> Listing:
    return gateway.list_image_names(visibility="public")


def _copy_targets(gateway: Gateway) -> Listing:
    # A read-only store (e.g. an http store) can never receive a copy.
    return {s.id: s.description for s in gateway.glance_info().stores if not s.read_only}


def name_items(found: Listing, incomplete: str, what: str) -> list[CompletionItem]:
    """Names that start with ``incomplete`` (help: the id), and ids once one is typed.

    An empty prefix offers names only (ids would double a long list), except for
    what has no name, whose id is the only handle.
    """
    ids_by_name: dict[str, list[str]] = {}
    for ident, name in found.items():
        if name:
            ids_by_name.setdefault(name, []).append(ident)
    items: list[CompletionItem] = []
    for name, ids in sorted(ids_by_name.items()):
        if not name.startswith(incomplete):
            continue
        if len(ids) > 1 and name == incomplete:
            # The whole shared name is typed: volimg would refuse it as ambiguous, so
            # TAB offers the ids it stands for (bash shows no help text, only values).
            items += [
                CompletionItem(ident, help=f"{name}: ambiguous, {len(ids)} {what}s")
                for ident in sorted(ids)
            ]
            continue
        items.append(
            CompletionItem(
                name, help=ids[0] if len(ids) == 1 else f"{len(ids)} {what}s share this name"
            )
        )
    items += [
        CompletionItem(ident, help=name or f"unnamed {what}")
        for ident, name in sorted(found.items())
        if ident.startswith(incomplete) and (incomplete or not name)
    ]
    return items


def complete_volumes(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """VOLUME: the caller's project's volumes, by name or id."""
    return name_items(
        listing(CloudChoice.from_context(ctx), "volumes", _volumes), incomplete, "volume"
    )


def complete_images(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """IMAGE: the caller's project's images, by name or id."""
    found = listing(CloudChoice.from_context(ctx), "images", _project_images)
    return name_items(found, incomplete, "image")


def complete_base_images(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """BASE_IMAGE: the caller's project's images and the public ones."""
    choice = CloudChoice.from_context(ctx)
    found = {**listing(choice, "public-images", _public_images)}
    found.update(listing(choice, "images", _project_images))
    return name_items(found, incomplete, "image")


def complete_stores(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """STORE: Glance's store ids that can receive a copy (GET /v2/info/stores)."""
    found = listing(CloudChoice.from_context(ctx), "stores", _copy_targets)
    return [
        CompletionItem(ident, help=description or None)
        for ident, description in sorted(found.items())
        if ident.startswith(incomplete)
    ]


def complete_clouds(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """--os-cloud: the clouds in clouds.yaml (a local read, no request: not cached)."""
    try:
        with _silenced():
            from volimg.gateway import cloud_names

            names = cloud_names()
    except VolimgError:
        return []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def script(command: click.Command, shell: str, prog_name: str = "volimg") -> str:
    """The script that ``eval``/``source`` installs: click's own, for ``shell``."""
    from click.shell_completion import get_completion_class

    completion_class = get_completion_class(shell)
    if completion_class is None:  # pragma: no cover - SHELLS are click's built-in ones
        raise click.BadParameter(f"no completion for {shell}")
    complete_var = f"_{prog_name}_COMPLETE".replace("-", "_").upper()
    return completion_class(command, {}, prog_name, complete_var).source()
