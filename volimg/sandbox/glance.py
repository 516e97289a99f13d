"""Glance v2 with multiple stores (`enabled_backends`): the pipeline, the version and
schema documents, and the route table.

The request pipeline mirrors glance-api-paste.ini's `keystone` flavour:
version negotiation (unauthenticated), then token validation, then the v2 router.
Errors are webob exceptions, rendered by `errors.webob_error` according to `Accept`.

The controllers are mixins, one module per upstream controller; the routes are all
registered here, as glance/api/v2/router.py maps them:

* `glance_images.py`: images (list and filters, create, show, delete, tags)
* `glance_image_update.py`: PATCH of an image
* `glance_image_data.py`: image data (upload, download)
* `glance_import_api.py`: import, an image's tasks, /v2/info/import
* `glance_stores.py`: /v2/info/stores, deleting an image from one store
* `glance_usage.py`: /v2/info/usage (quota usage under unified limits)

Shared helpers live in `glance_base.py`; the copy-image task runs in `glance_import.py`.
"""

from __future__ import annotations

from typing import Any

from volimg.sandbox.errors import webob_error
from volimg.sandbox.glance_image_data import ImageDataController
from volimg.sandbox.glance_image_update import ImageUpdateController
from volimg.sandbox.glance_images import ImagesController
from volimg.sandbox.glance_import import ImportRunner
from volimg.sandbox.glance_import_api import ImportController
from volimg.sandbox.glance_stores import StoresController
from volimg.sandbox.glance_usage import UsageController
from volimg.sandbox.glance_views import image_schema, image_view
from volimg.sandbox.http import Request, Response
from volimg.sandbox.jobs import Jobs
from volimg.sandbox.state import Cloud, Image

# glance/api/middleware/version_negotiation.py with enabled_backends and no cache dir.
_ALLOWED_VERSIONS = {f"v2.{minor}" for minor in range(0, 18) if minor not in (14, 16)} | {"v2"}
_VERSIONS = [
    "2.15",
    "2.13",
    "2.12",
    "2.11",
    "2.10",
    "2.9",
    "2.8",
    "2.17",
    "2.7",
    "2.6",
    "2.5",
    "2.4",
    "2.3",
    "2.2",
    "2.1",
    "2.0",
]
_MAX_REQUEST_ID = 64
_IMAGE = r"(?P<image_id>[^/]+)"


class Glance(
    ImagesController,
    ImageUpdateController,
    ImageDataController,
    ImportController,
    StoresController,
    UsageController,
):
    """The Glance service: the controllers' handlers behind the pipeline below."""

    name = "image"
    prefix = "/image"

    def __init__(self, cloud: Cloud, jobs: Jobs, runner: ImportRunner) -> None:
        super().__init__()
        self.cloud = cloud
        self.jobs = jobs
        self.runner = runner
        add = self.router.add
        add("GET", "/v2/images", self.list_images)
        add("POST", "/v2/images", self.create_image)
        add("GET", f"/v2/images/{_IMAGE}", self.show_image)
        add("PATCH", f"/v2/images/{_IMAGE}", self.update_image)
        add("DELETE", f"/v2/images/{_IMAGE}", self.delete_image)
        add("GET", f"/v2/images/{_IMAGE}/file", self.download)
        add("PUT", f"/v2/images/{_IMAGE}/file", self.upload)
        add("POST", f"/v2/images/{_IMAGE}/import", self.import_image)
        add("GET", f"/v2/images/{_IMAGE}/tasks", self.image_tasks)
        add("PUT", f"/v2/images/{_IMAGE}/tags/(?P<tag>[^/]+)", self.add_tag)
        add("DELETE", f"/v2/stores/(?P<store_id>[^/]+)/{_IMAGE}", self.delete_from_store)
        add("GET", "/v2/info/import", self.info_import)
        add("GET", "/v2/info/stores", self.info_stores)
        add("GET", "/v2/info/stores/detail", self.info_stores_detail)
        add("GET", "/v2/info/usage", self.info_usage)
        add("GET", "/v2/schemas/image", self.schema)

    def image_document(self, image: Image) -> dict[str, Any]:
        """`image_view`, looked up in this module at each call.

        Every controller shows an image through here, so the view is chosen in one
        place: tests replace `glance.image_view` to make a handler fail
        (tests/sandbox/test_http.py).
        """
        view = image_view(image)
        if not self.cloud.config.multi_store:
            view.pop("stores", None)  # _format_image adds it only with enabled_backends
        return view

    # -- pipeline ----------------------------------------------------------------------
    def request_id(self, req: Request) -> str:
        """Glance adopts a caller's `X-Openstack-Request-ID` (api/middleware/context.py)."""
        given = req.headers.get("X-Openstack-Request-ID")
        if given and len(given) <= _MAX_REQUEST_ID:
            return given if given.startswith("req-") else f"req-{given}"
        return super().request_id(req)

    def dispatch(self, req: Request) -> Response:
        segment = req.path.lstrip("/").split("/", 1)[0]
        if segment == "versions":
            return self._versions(req, 200)
        if segment not in _ALLOWED_VERSIONS:
            # Unknown or missing version: the versions document, 300 (version_negotiation.py).
            return self._versions(req, 300)
        req.path = "/v2" + req.path.lstrip("/")[len(segment) :]
        token = self.cloud.valid_token(req.headers.get("X-Auth-Token"))
        if token is None:
            # glance ContextMiddleware raises HTTPUnauthorized; keystonemiddleware adds the header.
            header = ("WWW-Authenticate", f'Keystone uri="{req.base_url}/identity"')
            return webob_error(req, 401, headers=[header])
        req.token = token
        return super().dispatch(req)

    # -- versions and schemas (glance/api/versions.py, glance/api/v2/schemas.py) ---------
    def _versions(self, req: Request, status: int) -> Response:
        href = f"{req.service_url}/v2/"
        versions = [
            {
                "id": f"v{v}",
                "status": "CURRENT" if v == "2.17" else "SUPPORTED",
                "links": [{"rel": "self", "href": href}],
            }
            for v in _VERSIONS
        ]
        return Response.json(status, {"versions": versions})

    def schema(self, req: Request, _: dict[str, str]) -> Response:
        return Response.json(200, image_schema())
