"""What every Cinder controller shares: the request's view context, body parsing,
validation errors, the volume lookup and the non-admin filter policy.

The controllers (`cinder_volumes.py`, `cinder_volume_metadata.py`,
`cinder_actions.py`, `cinder_image_metadata.py`, `cinder_types.py`,
`cinder_messages.py`) are mixins of this class; `cinder.py` composes them into `Cinder`
and owns the pipeline and the routes, as cinder/api/v3/router.py does upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from volimg.sandbox.cinder_manager import VolumeManager
from volimg.sandbox.cinder_views import ViewContext
from volimg.sandbox.errors import cinder_fault
from volimg.sandbox.glance_client import InternalGlanceClient
from volimg.sandbox.http import HttpError, Request, Response
from volimg.sandbox.service import Service
from volimg.sandbox.state import Cloud, Volume

# etc/cinder/resource_filters.json
NON_ADMIN_FILTERS = {
    "volume": (
        "name",
        "status",
        "metadata",
        "bootable",
        "migration_status",
        "availability_zone",
        "group_id",
        "size",
        "created_at",
        "updated_at",
        "consumes_quota",
    ),
    "message": ("resource_uuid", "resource_type", "event_id", "request_id", "message_level"),
}
TRUE_STRINGS = ("true", "1", "t", "y", "yes", "on")

ActionHandler = Callable[[Request, str, Any], Response]
"""One `POST /volumes/{id}/action` action: (request, volume ID, the action's value)."""


class WebobResponse(Response):
    """A `webob.Response` a controller returns itself rather than a dict.

    wsgi.Resource passes it through as it is: it gets the microversion headers but,
    unlike a dict's ResponseObject or a Fault, no `x-compute-request-id`.
    """


def policy(action: str) -> str:
    return f"Policy doesn't allow {action} to be performed."


def as_bool(value: Any) -> bool:
    """oslo strutils.bool_from_string for values the schema already accepted."""
    return value is True or (isinstance(value, str) and value.lower() in TRUE_STRINGS)


def join_or(values: tuple[str, ...]) -> str:
    return " or ".join(values)


class CinderBase(Service):
    """The helpers the controllers call on `self`; `Cinder.__init__` sets the attributes."""

    cloud: Cloud
    manager: VolumeManager
    glance: InternalGlanceClient

    def _volume_actions(self) -> dict[str, ActionHandler]:
        """The `@wsgi.action` handlers every controller adds for /volumes/{id}/action.

        Each controller extends its `super()`'s dict, as wsgi.Resource gathers the
        actions of every controller extension upstream.
        """
        return {}

    def error(self, req: Request, status: int, message: str | None = None) -> Response:
        return cinder_fault(status, message)

    def _ctx(self, req: Request) -> ViewContext:
        assert req.token is not None
        return ViewContext(
            req.token, req.attrs["version"], req.service_url, req.attrs.get("url_project", "")
        )

    def _body(self, req: Request) -> Any:
        if not req.body:
            return {}
        if req.content_type not in ("application/json", "application/vnd.openstack.volume+json"):
            raise HttpError(cinder_fault(415, "Unsupported Content-Type"))
        try:
            return req.parse_json()
        except ValueError:
            raise HttpError(cinder_fault(400, "Malformed request body")) from None

    @staticmethod
    def _invalid(path: str, value: Any, reason: str) -> HttpError:
        """A jsonschema failure as cinder/api/validation/validators.py words it."""
        return HttpError(
            cinder_fault(400, f"Invalid input for field/attribute {path}. Value: {value}. {reason}")
        )

    def _volume(self, req: Request, volume_id: str) -> Volume:
        assert req.token is not None
        volume = self.cloud.volumes.get(volume_id)
        if volume is None or not (req.token.is_admin or volume.project_id == req.token.project_id):
            raise HttpError(cinder_fault(404, f"Volume {volume_id} could not be found."))
        return volume

    def _filters(self, req: Request, resource: str) -> dict[str, str]:
        """Non-admin filter policy: stripped before 3.31, rejected from 3.31 on."""
        token, version = req.token, req.attrs["version"]
        assert token is not None
        filters = req.params()
        for key in ("limit", "marker", "offset", "sort", "sort_key", "sort_dir", "with_count"):
            filters.pop(key, None)
        if token.is_admin:
            return filters
        allowed = NON_ADMIN_FILTERS[resource]
        unknown = [k for k in filters if k not in allowed]
        if version.at_least("3.31"):
            if "all_tenants" in unknown:
                unknown.remove("all_tenants")
                filters.pop("all_tenants")
            if unknown:
                raise HttpError(
                    cinder_fault(
                        400, f"Invalid filters {','.join(unknown)} are found in query options."
                    )
                )
        for key in unknown:
            filters.pop(key, None)
        return filters

    def _require(self, req: Request, minimum: str) -> None:
        """A method added in a later microversion is a plain 404 below it."""
        if not req.attrs["version"].at_least(minimum):
            raise HttpError(cinder_fault(404))
