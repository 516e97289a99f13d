"""Cinder v3: volumes, volume types, the upload action and user messages.

The pipeline follows cinder's api-paste.ini `keystone` flavour: request_id, then
keystonemiddleware (401 in Keystone's JSON shape), then the v3 router (unknown routes
are plain webob 404s), then `wsgi.Resource`, which reads `OpenStack-API-Version`
(400 for a malformed version, 406 outside 3.0..3.71) and wraps errors in `Fault`.
Asynchronous work lives in `cinder_manager.py`.
"""

from __future__ import annotations

import ast
import hashlib
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from volimg.sandbox.cinder_manager import Caller, VolumeManager, upload_image_meta
from volimg.sandbox.cinder_views import (
    Microversion,
    ViewContext,
    message_view,
    type_primitive,
    type_view,
    volume_summary,
    volume_view,
)
from volimg.sandbox.errors import UNAUTHENTICATED, cinder_fault, keystone_error, webob_error
from volimg.sandbox.glance_client import InternalGlanceClient
from volimg.sandbox.http import HttpError, Request, Response
from volimg.sandbox.service import Service
from volimg.sandbox.state import GIB, Cloud, Volume, VolumeType, new_id, now

MIN_VERSION = Microversion(3, 0)
_V3_PATH = re.compile(r"^/v3(?:/(?P<project>[0-9a-f-]+))?(?P<rest>/.*)?$")
# cinder/api/validation/parameter_types.py `extra_specs`, the volume metadata schema's keys.
METADATA_KEY = re.compile(r"^[a-zA-Z0-9-_:. /]{1,255}$")
# etc/cinder/resource_filters.json
_NON_ADMIN_FILTERS = {
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
_DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")
_TRUE = ("true", "1", "t", "y", "yes", "on")
# cinder/api/validation/parameter_types.py `boolean` enum, in its order.
_BOOL_VALUES = (
    *(True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t"),
    *(False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f"),
)
_DISK_FORMATS = ("raw", "vmdk", "vdi", "qcow2", "vhd", "vhdx", "ploop")

Handler = Callable[[Request, dict[str, str]], Response]


def _policy(action: str) -> str:
    return f"Policy doesn't allow {action} to be performed."


def _bool(value: Any) -> bool:
    """oslo strutils.bool_from_string for values the schema already accepted."""
    return value is True or (isinstance(value, str) and value.lower() in _TRUE)


def _join_or(values: tuple[str, ...]) -> str:
    return " or ".join(values)


class Cinder(Service):
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

    def error(self, req: Request, status: int, message: str | None = None) -> Response:
        return cinder_fault(status, message)

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
        # The request_id middleware's placeholder context exists even before auth.
        response.set_header("x-compute-request-id", req.request_id)
        return response

    def _ctx(self, req: Request) -> ViewContext:
        assert req.token is not None
        return ViewContext(
            req.token, req.attrs["version"], req.service_url, req.attrs.get("url_project", "")
        )

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

    # -- volumes -------------------------------------------------------------------------
    def _volume(self, req: Request, volume_id: str) -> Volume:
        assert req.token is not None
        volume = self.cloud.volumes.get(volume_id)
        if volume is None or not (req.token.is_admin or volume.project_id == req.token.project_id):
            raise HttpError(cinder_fault(404, f"Volume {volume_id} could not be found."))
        return volume

    def show_volume(self, req: Request, params: dict[str, str]) -> Response:
        with self.cloud.lock:
            volume = self._volume(req, params["volume_id"])
            return Response.json(200, {"volume": volume_view(self.cloud, volume, self._ctx(req))})

    def list_volumes(self, req: Request, _: dict[str, str]) -> Response:
        return self._list(req, detail=False)

    def list_volumes_detail(self, req: Request, _: dict[str, str]) -> Response:
        return self._list(req, detail=True)

    def _filters(self, req: Request, resource: str) -> dict[str, str]:
        """Non-admin filter policy: stripped before 3.31, rejected from 3.31 on."""
        token, version = req.token, req.attrs["version"]
        assert token is not None
        filters = req.params()
        for key in ("limit", "marker", "offset", "sort", "sort_key", "sort_dir", "with_count"):
            filters.pop(key, None)
        if token.is_admin:
            return filters
        allowed = _NON_ADMIN_FILTERS[resource]
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

    def _list(self, req: Request, *, detail: bool) -> Response:
        token = req.token
        assert token is not None
        ctx = self._ctx(req)
        filters = self._filters(req, "volume")
        all_projects = token.is_admin and filters.pop("all_tenants", "false").lower() in _TRUE
        project = filters.pop("project_id", None) if token.is_admin else None
        with self.cloud.lock:
            volumes = [
                v
                for v in self.cloud.volumes.values()
                if (
                    v.project_id == (project or token.project_id)
                    or (all_projects and project is None)
                )
                and all(_volume_matches(v, key, value) for key, value in filters.items())
            ]
            volumes = self._sorted(req, volumes)
            page, links = self._page(req, volumes, ctx, "volumes/detail" if detail else "volumes")
            views = [
                volume_view(self.cloud, v, ctx) if detail else volume_summary(v, ctx) for v in page
            ]
            document: dict[str, Any] = {"volumes": views}
        if links:
            document["volumes_links"] = links
        if ctx.version.at_least("3.45") and _bool(req.param("with_count") or "false"):
            document["count"] = len(volumes)
        return Response.json(200, document)

    def _sorted(self, req: Request, volumes: list[Volume]) -> list[Volume]:
        keys: list[tuple[str, str]] = []
        if req.param("sort"):
            for part in (req.param("sort") or "").split(","):
                key, _, direction = part.partition(":")
                keys.append((key.strip(), direction.strip() or "desc"))
        elif req.param("sort_key"):
            keys.append((req.param("sort_key") or "", req.param("sort_dir") or "desc"))
        keys = keys or [("created_at", "desc")]
        for key, direction in reversed(keys):
            attribute = "name" if key in ("name", "display_name") else key
            if direction not in ("asc", "desc"):
                raise HttpError(cinder_fault(400, f"Invalid sort dirs passed: {direction}"))
            volumes.sort(key=_attribute(attribute), reverse=direction == "desc")
        return volumes

    def _page(
        self, req: Request, items: list[Volume], ctx: ViewContext, collection: str
    ) -> tuple[list[Volume], list[dict[str, str]]]:
        marker = req.param("marker")
        if marker is not None:
            ids = [v.id for v in items]
            if marker not in ids:
                raise HttpError(cinder_fault(404, f"Marker {marker} could not be found."))
            items = items[ids.index(marker) + 1 :]
        try:
            limit = int(req.param("limit") or 1000)
            offset = int(req.param("offset") or 0)
        except ValueError:
            raise HttpError(cinder_fault(400, "limit param must be an integer")) from None
        if limit < 0 or offset < 0:
            raise HttpError(cinder_fault(400, "limit param must be positive"))
        limit = min(limit, 1000)  # osapi_max_limit
        page = items[offset : offset + limit]
        links: list[dict[str, str]] = []
        # common.ViewBuilder._get_collection_links: a next link whenever the page is
        # full, with or without an explicit limit (osapi_max_limit caps both).
        if page and len(page) == limit:
            query = urllib.parse.urlencode({**req.params(), "marker": page[-1].id})
            base = ctx.links(collection, "")[0]["href"].rstrip("/")
            links.append({"rel": "next", "href": f"{base}?{query}"})
        return page, links

    def create_volume(self, req: Request, _: dict[str, str]) -> Response:
        token = req.token
        assert token is not None
        body = self._body(req)
        spec = body.get("volume") if isinstance(body, dict) else None
        if not isinstance(spec, dict):
            raise self._invalid("volume", body, "'volume' is a required property")
        size = self._size(spec.get("size"))
        name = spec.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise self._invalid("name", name, "is not a valid name")
        with self.cloud.lock:
            vtype = self._type_for_create(spec.get("volume_type"))
        caller = Caller(token.id, req.request_id, token.project_id or "")
        image: dict[str, Any] | None = None
        image_ref = spec.get("imageRef", spec.get("image_id"))
        if image_ref is not None:
            image = self._image_for_create(str(image_ref), caller)
            self._check_image(image, size)
        volume = Volume(
            id=new_id(),
            name=name,
            project_id=token.project_id or "",
            user_id=token.user_id,
            size=size,
            volume_type_id=vtype.id,
            description=spec.get("description"),
            availability_zone=spec.get("availability_zone") or "nova",
            metadata={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
        )
        with self.cloud.lock:
            self.cloud.volumes[volume.id] = volume
            view = volume_view(self.cloud, volume, self._ctx(req))
        self.manager.create(volume.id, caller, image)
        return Response.json(202, {"volume": view})

    def _size(self, size: Any) -> int:
        """parameter_types.volume_size_allows_null, then the create flow's own check."""
        if size is None:
            # No size and no source: a TypeError deep in the flow, a bare 400.
            raise HttpError(cinder_fault(400))
        if isinstance(size, bool) or not isinstance(size, (int, str)):
            raise self._invalid(
                "size", size, f"{size!r} is not of type 'integer', 'string', 'null'"
            )
        if isinstance(size, str) and not re.match(r"^[0-9]+$", size):
            raise self._invalid("size", size, f"{size!r} does not match '^[0-9]+$'")
        if int(size) < 1:
            raise self._invalid("size", size, f"{size} is less than the minimum of 1")
        return int(size)

    def _type_for_create(self, ref: Any) -> VolumeType:
        """objects.VolumeType.get_by_name_or_id; the default type when none is given."""
        if ref is None or ref == "":
            return self.cloud.volume_types[self.cloud.default_volume_type or ""]
        ref = str(ref)
        if ref in self.cloud.volume_types:
            return self.cloud.volume_types[ref]
        for vtype in self.cloud.volume_types.values():
            if vtype.name == ref:
                return vtype
        if re.fullmatch(r"[0-9a-fA-F-]{32,36}", ref):
            raise HttpError(cinder_fault(404, f"Volume type {ref} could not be found."))
        raise HttpError(cinder_fault(404, f"Volume type with name {ref} could not be found."))

    def _image_for_create(self, image_ref: str, caller: Caller) -> dict[str, Any]:
        """VolumeController._image_uuid_from_ref: by ID, then by name, through Glance."""
        image_uuid = image_ref.split("/")[-1]
        invalid = HttpError(
            cinder_fault(400, "Invalid image identifier or unable to access requested image.")
        )
        try:
            if re.fullmatch(r"[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}", image_uuid):
                reply = self.glance.show(
                    image_uuid, token=caller.token, request_id=caller.request_id
                )
                if reply.ok:
                    return dict(reply.json())
            reply = self.glance.find_by_name(
                image_ref, token=caller.token, request_id=caller.request_id
            )
        except OSError:
            raise invalid from None
        images = reply.json().get("images", []) if reply.ok else []
        if len(images) > 1:
            raise HttpError(
                cinder_fault(
                    409, f"Multiple matches found for '{image_ref}', use an ID to be more specific."
                )
            )
        if not images:
            raise invalid
        return dict(images[0])

    @staticmethod
    def _check_image(image: dict[str, Any], size: int) -> None:
        """volume_utils.check_image_metadata."""
        prefix = "Invalid input received: "
        if image.get("status") != "active":
            raise HttpError(cinder_fault(400, f"{prefix}Image {image['id']} is not active."))
        image_gb = ((image.get("size") or 0) + GIB - 1) // GIB
        if image_gb > size:
            raise HttpError(
                cinder_fault(
                    400,
                    f"{prefix}Size of specified image {image_gb}GB is larger than volume size {size}GB.",
                )
            )
        min_disk = image.get("min_disk") or 0
        if size < min_disk:
            raise HttpError(
                cinder_fault(
                    400,
                    f"{prefix}Volume size {size}GB cannot be smaller than the image minDisk size {min_disk}GB.",
                )
            )
        virtual_gb = ((image.get("virtual_size") or 0) + GIB - 1) // GIB
        if virtual_gb > size:
            raise HttpError(
                cinder_fault(
                    400,
                    f"{prefix}Image virtual size is {virtual_gb}GB and doesn't fit in a volume of size {size}GB.",
                )
            )

    def delete_volume(self, req: Request, params: dict[str, str]) -> Response:
        with self.cloud.lock:
            volume = self._volume(req, params["volume_id"])
            if volume.status not in _DELETABLE or volume.attachments:
                status = f"status must be {_join_or(_DELETABLE)} and"
                reason = f"Volume {status} must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer."
                raise HttpError(cinder_fault(400, f"Invalid volume: {reason}"))
            volume.status = "deleting"
            volume.touch()
        self.manager.delete(volume.id)
        return Response.empty(202)

    # -- metadata ------------------------------------------------------------------------
    def show_metadata(self, req: Request, params: dict[str, str]) -> Response:
        """VolumeMetadataController.index; from 3.15 (ETAGS) with an `Etag` header."""
        with self.cloud.lock:
            volume = self._volume(req, params["volume_id"])
            response = Response.json(200, {"metadata": dict(volume.metadata)})
        if self._ctx(req).version.at_least("3.15"):
            # md5 of jsonutils.dumps({"metadata": ...}): the very bytes of the body.
            response.set_header(
                "Etag", hashlib.md5(response.body, usedforsecurity=False).hexdigest()
            )
        return response

    def create_metadata(self, req: Request, params: dict[str, str]) -> Response:
        """VolumeMetadataController.create: merge the given keys into the volume's."""
        return self._update_metadata(req, params["volume_id"], replace=False)

    def replace_metadata(self, req: Request, params: dict[str, str]) -> Response:
        """VolumeMetadataController.update_all: the given keys become all of them."""
        return self._update_metadata(req, params["volume_id"], replace=True)

    def _update_metadata(self, req: Request, volume_id: str, *, replace: bool) -> Response:
        metadata = self._validate_metadata_body(self._body(req))
        with self.cloud.lock:
            volume = self._volume(req, volume_id)
            # volume/api.py _update_volume_metadata
            if volume.status in ("maintenance", "uploading"):
                raise HttpError(
                    cinder_fault(
                        400,
                        "Invalid volume: Updating volume metadata is not allowed for volumes "
                        f"in {volume.status} status.",
                    )
                )
            if replace:
                volume.metadata = dict(metadata)
            else:
                volume.metadata.update(metadata)
            volume.touch()
            return Response.json(200, {"metadata": dict(volume.metadata)})

    def _validate_metadata_body(self, body: Any) -> dict[str, str]:
        """schemas/volume_metadata.py `create`, failures worded as Cinder's validator does.

        jsonschema checks `type`, then `properties` (the metadata object: its type, each
        value, then keys no pattern allows), then `required`, then `additionalProperties`.
        """
        if not isinstance(body, dict):
            raise HttpError(cinder_fault(400, f"{body!r} is not of type 'object'"))
        if "metadata" in body:
            metadata = body["metadata"]
            if not isinstance(metadata, dict):
                raise self._invalid("metadata", metadata, f"{metadata!r} is not of type 'object'")
            for key, value in metadata.items():
                if not METADATA_KEY.match(key):
                    continue
                if not isinstance(value, str):
                    raise self._invalid(key, value, f"{value!r} is not of type 'string'")
                if len(value) > 255:
                    raise self._invalid(key, value, f"{value!r} is too long")
            extras = sorted(key for key in metadata if not METADATA_KEY.match(key))
            if extras:
                verb = "does" if len(extras) == 1 else "do"
                joined = ", ".join(repr(key) for key in extras)
                raise self._invalid(
                    "metadata",
                    metadata,
                    f"{joined} {verb} not match any of the regexes: {METADATA_KEY.pattern!r}",
                )
        else:
            raise HttpError(cinder_fault(400, "'metadata' is a required property"))
        unexpected = [key for key in body if key not in ("metadata", "type")]
        if unexpected:
            listed = ", ".join(repr(key) for key in unexpected)
            verb = "was" if len(unexpected) == 1 else "were"
            raise HttpError(
                cinder_fault(
                    400, f"Additional properties are not allowed ({listed} {verb} unexpected)"
                )
            )
        return {str(k): str(v) for k, v in metadata.items()}

    # -- actions -------------------------------------------------------------------------
    def volume_action(self, req: Request, params: dict[str, str]) -> Response:
        body = self._body(req)
        if not isinstance(body, dict) or len(body) != 1:
            raise HttpError(cinder_fault(400, "Malformed request body"))
        (action,) = body
        actions: dict[str, Callable[[Request, str, Any], Response]] = {
            "os-volume_upload_image": self._upload_image
        }
        if action not in actions:
            raise HttpError(
                cinder_fault(
                    400,
                    f"There is no such action: {action}. Verify the request body and Content-Type header and try again.",
                )
            )
        return actions[action](req, params["volume_id"], body[action])

    def _validate_upload(self, params: Any, version: Microversion) -> None:
        """schema.volume_upload_image (`_v31` from 3.1), in jsonschema's keyword order.

        `type`, then each property in schema order, then `required`, then
        `additionalProperties` - the first failure is the one Cinder reports.
        """
        where = "os-volume_upload_image"
        if not isinstance(params, dict):
            raise self._invalid(where, params, f"{params!r} is not of type 'object'")
        name = params.get("image_name")
        if "image_name" in params:
            if not isinstance(name, str):
                raise self._invalid("image_name", name, f"{name!r} is not of type 'string'")
            if not 1 <= len(name) <= 255:
                size = "short" if not name else "long"
                raise self._invalid("image_name", name, f"{name!r} is too {size}")
        self._check_enum(params, "force", _BOOL_VALUES)
        self._check_enum(params, "disk_format", _DISK_FORMATS)
        container = params.get("container_format")
        if container is not None and (not isinstance(container, str) or len(container) > 255):
            reason = f"{container!r} is not of type 'string', 'null'"
            raise self._invalid("container_format", container, reason)
        allowed = ["image_name", "force", "disk_format", "container_format"]
        if version.at_least("3.1"):
            allowed += ["visibility", "protected"]
            self._check_enum(params, "visibility", ("community", "public", "private", "shared"))
            self._check_enum(params, "protected", _BOOL_VALUES)
        if "image_name" not in params:
            raise self._invalid(where, params, "'image_name' is a required property")
        extra = sorted(set(params) - set(allowed))
        if extra:
            listed = ", ".join(repr(k) for k in extra)
            verb = "were" if len(extra) > 1 else "was"
            reason = f"Additional properties are not allowed ({listed} {verb} unexpected)"
            raise self._invalid(where, params, reason)

    def _check_enum(self, params: dict[str, Any], key: str, values: tuple[Any, ...]) -> None:
        if key in params and params[key] not in values:
            value = params[key]
            raise self._invalid(key, value, f"{value!r} is not one of {list(values)!r}")

    def _upload_image(self, req: Request, volume_id: str, params: Any) -> Response:
        """volume_actions._volume_upload_image + volume.api.API.copy_volume_to_image."""
        token, version = req.token, req.attrs["version"]
        assert token is not None
        self._validate_upload(params, version)
        force = _bool(params.get("force", False))
        meta: dict[str, Any] = {
            "container_format": params.get("container_format", "bare"),
            "disk_format": params.get("disk_format", "raw"),
            "name": params["image_name"],
        }
        with self.cloud.lock:
            volume = self._volume(req, volume_id)
        if version.at_least("3.1"):
            meta["visibility"] = params.get("visibility", "private")
            meta["protected"] = _bool(params.get("protected", False))
            if meta["visibility"] == "public" and not token.is_admin:
                raise HttpError(
                    cinder_fault(403, _policy("volume_extension:volume_actions:upload_public"))
                )
        if not self.cloud.config.enable_force_upload:
            force = False  # "Force upload to image is disabled, Force option will be ignored."
        expected = ("available", "in-use") if force else ("available",)
        with self.cloud.lock:
            if volume.status not in expected:
                reason = f"Volume {volume.id} status must be {_join_or(expected)}"
                raise HttpError(cinder_fault(400, f"Invalid volume: {reason}"))
            updated_at = volume.updated_at
            volume.previous_status = volume.status
            volume.status = "uploading"
            volume.touch()
            body = upload_image_meta(volume, meta)
            vtype = self.cloud.volume_types.get(volume.volume_type_id)
        caller = Caller(token.id, req.request_id, token.project_id or "")
        image = self._create_image(volume, body, caller)
        self.manager.copy_volume_to_image(volume.id, caller, image)
        response: dict[str, Any] = {
            "id": volume.id,
            "updated_at": updated_at.strftime("%Y-%m-%dT%H:%M:%S.%f") if updated_at else None,
            "status": "uploading",
            "display_description": volume.description,
            "size": volume.size,
            "volume_type": type_primitive(vtype) if vtype else None,
            "image_id": image["id"],
            "container_format": image.get("container_format"),
            "disk_format": image.get("disk_format"),
            "image_name": image.get("name"),
        }
        if "protected" in image:
            response["protected"] = image["protected"]
        if "visibility" in image:
            response["visibility"] = image["visibility"]
        return Response.json(202, {"os-volume_upload_image": response})

    def _create_image(self, volume: Volume, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """image_service.create; on failure the volume goes back (conditional_update)."""
        try:
            reply = self.glance.create(body, token=caller.token, request_id=caller.request_id)
            problem = None if reply.ok else reply.body.decode("utf-8", "replace")
        except OSError as exc:
            problem = str(exc)
        if problem is None:
            return dict(reply.json())
        with self.cloud.lock:
            if volume.status == "uploading":
                volume.status = volume.previous_status or "available"
                volume.previous_status = None
        raise HttpError(cinder_fault(400, problem))

    # -- volume types --------------------------------------------------------------------
    def _type(self, type_id: str) -> VolumeType:
        vtype = self.cloud.volume_types.get(type_id)
        if vtype is None:
            raise HttpError(cinder_fault(404, f"Volume type {type_id} could not be found."))
        return vtype

    def list_types(self, req: Request, _: dict[str, str]) -> Response:
        ctx = self._ctx(req)
        with self.cloud.lock:
            types = [
                type_view(t, ctx)
                for t in self.cloud.volume_types.values()
                if t.is_public or ctx.is_admin
            ]
        return Response.json(200, {"volume_types": types})

    def show_type(self, req: Request, params: dict[str, str]) -> Response:
        """By ID only ("default" names the default type), as volume_types.get_volume_type."""
        type_id = params["type_id"]
        with self.cloud.lock:
            wanted = self.cloud.default_volume_type or "" if type_id == "default" else type_id
            view = type_view(self._type(wanted), self._ctx(req))
        if type_id == "default":
            # volume_type_access.show finds no cached type under the name "default".
            view.pop("os-volume-type-access:is_public")
        return Response.json(200, {"volume_type": view})

    def create_type(self, req: Request, _: dict[str, str]) -> Response:
        token = req.token
        assert token is not None
        body = self._body(req)
        if not token.is_admin:
            raise HttpError(cinder_fault(403, _policy("volume_extension:type_create")))
        spec = body.get("volume_type") if isinstance(body, dict) else None
        if not isinstance(spec, dict):
            raise self._invalid("volume_type", body, "'volume_type' is a required property")
        name = spec.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 255:
            raise self._invalid("name", name, "is not a valid name")
        specs = spec.get("extra_specs") or {}
        if not isinstance(specs, dict) or not all(isinstance(v, str) for v in specs.values()):
            raise self._invalid("extra_specs", specs, "extra spec values must be strings")
        with self.cloud.lock:
            if any(t.name == name for t in self.cloud.volume_types.values()):
                raise HttpError(cinder_fault(409, f"Volume Type {name} already exists."))
            vtype = self.cloud.add_volume_type(
                name, description=spec.get("description"), extra_specs=specs
            )
            vtype.is_public = _bool(spec.get("os-volume-type-access:is_public", True))
            return Response.json(200, {"volume_type": type_view(vtype, self._ctx(req))})

    def delete_type(self, req: Request, params: dict[str, str]) -> Response:
        """types_manage._delete: admin only; a type still used by volumes stays."""
        assert req.token is not None
        if not req.token.is_admin:
            raise HttpError(cinder_fault(403, _policy("volume_extension:type_delete")))
        with self.cloud.lock:
            vtype = self._type(params["type_id"])
            if vtype.id == self.cloud.default_volume_type:
                raise HttpError(
                    cinder_fault(
                        400,
                        f"The volume type {vtype.id} is a default volume type and cannot be deleted.",
                    )
                )
            if any(v.volume_type_id == vtype.id for v in self.cloud.volumes.values()):
                raise HttpError(cinder_fault(400, "Target volume type is still in use."))
            del self.cloud.volume_types[vtype.id]
        return Response.empty(202)

    def list_extra_specs(self, req: Request, params: dict[str, str]) -> Response:
        ctx = self._ctx(req)
        with self.cloud.lock:
            view = type_view(self._type(params["type_id"]), ctx)
        return Response.json(200, {"extra_specs": view["extra_specs"]})

    def create_extra_specs(self, req: Request, params: dict[str, str]) -> Response:
        """types_extra_specs.create: admin only, type unused, store validated with Glance."""
        token = req.token
        assert token is not None
        body = self._body(req)
        if not token.is_admin:
            raise HttpError(cinder_fault(403, _policy("volume_extension:types_extra_specs:create")))
        specs = body.get("extra_specs") if isinstance(body, dict) else None
        if not isinstance(specs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) <= 255 for k, v in specs.items()
        ):
            raise self._invalid("extra_specs", specs, "extra specs must map names to strings")
        type_id = params["type_id"]
        with self.cloud.lock:
            if any(v.volume_type_id == type_id for v in self.cloud.volumes.values()):
                raise HttpError(cinder_fault(400, "Volume Type is currently in use."))
            self._type(type_id)
        if "image_service:store_id" in specs:
            self._validate_store(
                specs["image_service:store_id"],
                Caller(token.id, req.request_id, token.project_id or ""),
            )
        with self.cloud.lock:
            vtype = self._type(type_id)
            vtype.extra_specs.update(specs)
            vtype.updated_at = now()
        return Response.json(200, {"extra_specs": specs})

    def _validate_store(self, store_id: str, caller: Caller) -> None:
        """image_utils.validate_stores_id, asking Glance for its stores."""
        try:
            reply = self.glance.stores(token=caller.token, request_id=caller.request_id)
        except OSError as exc:
            raise HttpError(cinder_fault(500, str(exc))) from None
        for info in reply.json().get("stores", []) if reply.ok else []:
            if info["id"] == store_id:
                if info.get("read-only") == "true":
                    raise HttpError(cinder_fault(400, f"Store {store_id} is read-only in glance."))
                return
        raise HttpError(cinder_fault(404, f"Store {store_id} not enabled in glance."))

    # -- messages ------------------------------------------------------------------------
    def _require(self, req: Request, minimum: str) -> None:
        """A method added in a later microversion is a plain 404 below it."""
        if not req.attrs["version"].at_least(minimum):
            raise HttpError(cinder_fault(404))

    def list_messages(self, req: Request, _: dict[str, str]) -> Response:
        self._require(req, "3.3")
        token, version = req.token, req.attrs["version"]
        assert token is not None
        # Filters are only read from 3.5 (MESSAGES_PAGINATION) and checked from 3.31.
        filters = self._filters(req, "message") if version.at_least("3.5") else {}
        ctx = self._ctx(req)
        with self.cloud.lock:
            messages = [
                m
                for m in self.cloud.messages.values()
                if (token.is_admin or m.project_id == token.project_id)
                and all(str(getattr(m, key, None)) == value for key, value in filters.items())
            ]
            messages.sort(key=lambda m: m.created_at, reverse=True)
            return Response.json(200, {"messages": [message_view(m, ctx) for m in messages]})

    def _message(self, req: Request, message_id: str) -> Any:
        token = req.token
        assert token is not None
        message = self.cloud.messages.get(message_id)
        if message is None or not (token.is_admin or message.project_id == token.project_id):
            raise HttpError(cinder_fault(404, f"Message {message_id} could not be found."))
        return message

    def show_message(self, req: Request, params: dict[str, str]) -> Response:
        self._require(req, "3.3")
        with self.cloud.lock:
            return Response.json(
                200,
                {"message": message_view(self._message(req, params["message_id"]), self._ctx(req))},
            )

    def delete_message(self, req: Request, params: dict[str, str]) -> Response:
        self._require(req, "3.3")
        with self.cloud.lock:
            message = self._message(req, params["message_id"])
            del self.cloud.messages[message.id]
        return Response.empty(204)


def _attribute(name: str) -> Callable[[Volume], tuple[int, Any]]:
    """Sort key on one volume attribute: None first, numbers as numbers."""

    def value_of(volume: Volume) -> tuple[int, Any]:
        value = getattr(volume, name, None)
        if value is None:
            return (0, "")
        if isinstance(value, (int, float)):
            return (1, value)
        return (2, value.isoformat() if hasattr(value, "isoformat") else str(value))

    return value_of


def _volume_matches(volume: Volume, key: str, value: str) -> bool:
    if key == "metadata":
        return _metadata_matches(volume, value)
    if key in ("name", "display_name"):
        return volume.name == value
    if key == "status":
        return volume.status == value
    if key == "bootable":
        return volume.bootable == (value.lower() in _TRUE)
    if key == "size":
        return str(volume.size) == value
    if key == "availability_zone":
        return volume.availability_zone == value
    if key == "volume_type_id":
        return volume.volume_type_id == value
    return True


def _metadata_matches(volume: Volume, value: str) -> bool:
    """The `metadata` filter as Cinder applies it (volume/api.py, db/api.py).

    `check_volume_filters` reads the value with `ast.literal_eval`, so it must be a
    Python dict literal such as `{'backup': 'nightly'}`; anything else makes
    `_process_volume_filters` return no query and the list is empty. Every pair must
    match one of the volume's metadata items exactly (AND).
    """
    try:
        wanted = ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    if not isinstance(wanted, dict):
        return False
    for key, expected in wanted.items():
        if isinstance(expected, (dict, list, tuple, set)) or expected is None:
            return False
        if volume.metadata.get(str(key)) != str(expected):
            return False
    return True
