"""Cinder v3: the pipeline, the version documents and the route table.

The pipeline follows cinder's api-paste.ini `keystone` flavour: request_id, then
keystonemiddleware (401 in Keystone's JSON shape), then the v3 router (unknown routes
are plain webob 404s), then `wsgi.Resource`, which reads `OpenStack-API-Version`
(400 for a malformed version, 406 outside 3.0..3.71) and wraps errors in `Fault`.

The controllers are mixins, one module per upstream controller; the routes are all
registered here, as cinder/api/v3/router.py maps them:

* `cinder_volumes.py`: volumes (list, show, create, delete, filters)
* `cinder_volume_metadata.py`: a volume's metadata
* `cinder_actions.py`: `POST /volumes/{id}/action` (the dispatch; upload to image)
* `cinder_image_metadata.py`: the image metadata actions (set, unset, show)
* `cinder_types.py`: volume types and their extra specs
* `cinder_messages.py`: user messages

Shared helpers live in `cinder_base.py`; asynchronous work in `cinder_manager.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from volimg.sandbox.cinder_actions import VolumeActionsController
from volimg.sandbox.cinder_base import WebobResponse
from volimg.sandbox.cinder_image_metadata import VolumeImageMetadataController
from volimg.sandbox.cinder_manager import VolumeManager
from volimg.sandbox.cinder_messages import MessagesController
from volimg.sandbox.cinder_types import TypesController
from volimg.sandbox.cinder_views import Microversion
from volimg.sandbox.cinder_volume_metadata import VolumeMetadataController
from volimg.sandbox.cinder_volumes import VolumesController
from volimg.sandbox.errors import UNAUTHENTICATED, cinder_fault, keystone_error, webob_error
from volimg.sandbox.glance_client import InternalGlanceClient
from volimg.sandbox.http import HttpError, Request, Response
from volimg.sandbox.state import Cloud

MIN_VERSION = Microversion(3, 0)
_V3_PATH = re.compile(r"^/v3(?:/(?P<project>[0-9a-f-]+))?(?P<rest>/.*)?$")


class Cinder(
    VolumesController,
    VolumeMetadataController,
    VolumeActionsController,
    VolumeImageMetadataController,
    TypesController,
    MessagesController,
):
    """The Cinder service: the controllers' handlers behind the pipeline below."""

    name = "volume"
    prefix = "/volume"

    def __init__(self, cloud: Cloud, manager: VolumeManager, glance: InternalGlanceClient) -> None:
        super().__init__()
        self.cloud = cloud
        self.manager = manager
        self.glance = glance
        self.max_version = Microversion.parse(cloud.config.max_microversion)
        add = self.router.add
        add("GET", "/?", self.versions_v3)
        add("GET", "/volumes", self.list_volumes)
        add("GET", "/volumes/detail", self.list_volumes_detail)
        add("POST", "/volumes", self.create_volume)
        add("GET", "/volumes/(?P<volume_id>[^/]+)", self.show_volume)
        add("DELETE", "/volumes/(?P<volume_id>[^/]+)", self.delete_volume)
        add("POST", "/volumes/(?P<volume_id>[^/]+)/action", self.volume_action)
        add("GET", "/volumes/(?P<volume_id>[^/]+)/metadata", self.show_metadata)
        add("POST", "/volumes/(?P<volume_id>[^/]+)/metadata", self.create_metadata)
        add("PUT", "/volumes/(?P<volume_id>[^/]+)/metadata", self.replace_metadata)
        add("GET", "/types", self.list_types)
        add("POST", "/types", self.create_type)
        add("GET", "/types/(?P<type_id>[^/]+)", self.show_type)
        add("DELETE", "/types/(?P<type_id>[^/]+)", self.delete_type)
        add("GET", "/types/(?P<type_id>[^/]+)/extra_specs", self.list_extra_specs)
        add("POST", "/types/(?P<type_id>[^/]+)/extra_specs", self.create_extra_specs)
        add("GET", "/messages", self.list_messages)
        add("GET", "/messages/(?P<message_id>[^/]+)", self.show_message)
        add("DELETE", "/messages/(?P<message_id>[^/]+)", self.delete_message)

    # -- pipeline ----------------------------------------------------------------------
    def dispatch(self, req: Request) -> Response:
        if req.path in ("", "/"):
            if req.method != "GET":
                return webob_error(req, 404)
            return self._resource(req, lambda r: self._versions(r, 300))
        found = _V3_PATH.match(req.path)
        if not found:
            return webob_error(req, 404)
        token = self.cloud.valid_token(req.headers.get("X-Auth-Token"))
        if token is None:
            header = ("WWW-Authenticate", f'Keystone uri="{req.base_url}/identity"')
            return keystone_error(401, UNAUTHENTICATED, [header])
        req.token = token
        url_project = found.group("project") or ""
        req.attrs["url_project"] = url_project
        match = self.router.match(req.method, found.group("rest") or "/")
        if match is None or match.handler is None:
            # routes.Mapper found nothing: a bare webob 404 from the router.
            return webob_error(req, 404)
        handler, params = match.handler, match.params
        if url_project and url_project != token.project_id:
            return self._resource(req, lambda r: cinder_fault(400, "Malformed request url"))
        return self._resource(req, lambda r: handler(r, params))

    def _resource(self, req: Request, call: Callable[[Request], Response]) -> Response:
        """wsgi.Resource.__call__: microversion first, then the controller, then headers."""
        header = req.headers.get("OpenStack-API-Version")
        version = MIN_VERSION
        if header is not None:
            wanted = next((h.split() for h in header.split(",") if "volume" in h), None)
            if wanted is None or len(wanted) != 2:
                # VersionNotFoundForAPIMethod escapes to FaultWrapper: a bare 400.
                return self._stamp(req, cinder_fault(400), None)
            if wanted[1] == "latest":
                version = self.max_version
            else:
                try:
                    version = Microversion.parse(wanted[1])
                except ValueError:
                    text = f"API Version String {wanted[1]} is of invalid format. Must be of format MajorNum.MinorNum."
                    return self._stamp(req, cinder_fault(400, text), None)
                if not MIN_VERSION <= version <= self.max_version:
                    text = f"Version {version} is not supported by the API. Minimum is {MIN_VERSION} and maximum is {self.max_version}."
                    return self._stamp(req, cinder_fault(406, text), version)
        req.attrs["version"] = version
        try:
            response = call(req)
        except HttpError as error:
            response = error.response
        return self._stamp(req, response, version)

    @staticmethod
    def _stamp(req: Request, response: Response, version: Microversion | None) -> Response:
        if version is not None:
            response.set_header("OpenStack-API-Version", f"volume {version}")
            response.set_header("Vary", "OpenStack-API-Version")
        # The request_id middleware's placeholder context exists even before auth; a
        # controller's own webob.Response is the one answer that goes without it.
        if not isinstance(response, WebobResponse):
            response.set_header("x-compute-request-id", req.request_id)
        return response

    # -- versions (cinder/api/versions.py) ----------------------------------------------
    def _versions(self, req: Request, status: int) -> Response:
        version = {
            "id": "v3.0",
            "status": "CURRENT",
            "version": str(self.max_version),
            "min_version": str(MIN_VERSION),
            "updated": "2023-08-31T00:00:00Z",
            "links": [
                {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
                {"rel": "self", "href": f"{req.service_url}/v3/"},
            ],
            "media-types": [
                {
                    "base": "application/json",
                    "type": "application/vnd.openstack.volume+json;version=3",
                }
            ],
        }
        return Response.json(status, {"versions": [version]})

    def versions_v3(self, req: Request, _: dict[str, str]) -> Response:
        return self._versions(req, 200)
