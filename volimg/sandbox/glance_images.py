"""Glance v2 with multiple stores (`enabled_backends`), as glance/api/v2 answers.

The request pipeline mirrors glance-api-paste.ini's `keystone` flavour:
version negotiation (unauthenticated), then token validation, then the v2 router.
Errors are webob exceptions, rendered by `errors.webob_error` according to `Accept`.
The copy-image task runs in `glance_import.py`.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Callable
from datetime import datetime
from typing import Any

from volimg.sandbox.diskformat import inspect_upload
from volimg.sandbox.errors import webob_error
from volimg.sandbox.glance_import import ImportRunner
from volimg.sandbox.glance_views import (
    BASE_ATTRIBUTES,
    DISALLOWED,
    READONLY,
    RESERVED,
    RESERVED_NAMESPACE,
    image_schema,
    image_view,
    schema_error,
    task_view,
)
from volimg.sandbox.http import HttpError, Request, Response
from volimg.sandbox.jobs import Jobs
from volimg.sandbox.service import Service
from volimg.sandbox.state import Cloud, Image, ImportTask, Token, new_id, now

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
_PATCH_TYPES = {
    "application/openstack-images-v2.0-json-patch": 4,
    "application/openstack-images-v2.1-json-patch": 10,
}
_SORT_KEYS = (
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
)
_MAX_REQUEST_ID = 64
_NOT_FOUND = "No image found with ID {}"
_IMAGE = r"(?P<image_id>[^/]+)"
RESERVED_STORES = ("os_glance_staging_store", "os_glance_tasks_store")


def _forbidden_action(action: str) -> str:
    """oslo.policy's PolicyNotAuthorized text as Glance words it."""
    return f"You are not authorized to complete {action} action."


class Glance(Service):
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
        add("GET", "/v2/schemas/image", self.schema)

    # -- pipeline ----------------------------------------------------------------------
    def request_id(self, req: Request) -> str:
        """Glance adopts a caller's `X-Openstack-Request-ID` (api/middleware/context.py)."""
        given = req.headers.get("X-Openstack-Request-ID")
        if given and len(given) <= _MAX_REQUEST_ID:
            return given if given.startswith("req-") else f"req-{given}"
        return super().request_id(req)

    def error(self, req: Request, status: int, message: str | None = None) -> Response:
        return webob_error(req, status, message)

    def fail(
        self, req: Request, status: int, message: str | None = None, **kwargs: Any
    ) -> HttpError:
        return HttpError(webob_error(req, status, message, **kwargs))

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

    # -- policy helpers ------------------------------------------------------------------
    @staticmethod
    def visible(token: Token, image: Image) -> bool:
        """The DB layer's visibility rule (no image members in the sandbox)."""
        if token.is_admin or image.owner == token.project_id:
            return True
        return image.visibility in ("public", "community")

    @staticmethod
    def owns(token: Token, image: Image) -> bool:
        """`ADMIN_OR_PROJECT_MEMBER` against the image owner (modify/upload/delete)."""
        return token.is_admin or ("member" in token.roles and image.owner == token.project_id)

    def _get(self, req: Request, image_id: str) -> Image:
        assert req.token is not None
        image = self.cloud.images.get(image_id)
        if image is None or not self.visible(req.token, image):
            raise self.fail(req, 404, _NOT_FOUND.format(image_id))
        return image

    def _enforce(self, req: Request, image: Image, action: str, allowed: bool) -> None:
        """ImageAPIPolicy._enforce: Forbidden, or NotFound if the image is not visible."""
        assert req.token is not None
        if allowed:
            return
        if not self.visible(req.token, image):
            raise self.fail(req, 404)
        raise self.fail(req, 403, _forbidden_action(action))

    def _body(self, req: Request) -> Any:
        if not req.body:
            raise self.fail(req, 400, "Body expected in request.")
        try:
            return req.parse_json()
        except ValueError:
            raise self.fail(req, 400, "Malformed JSON in request body.") from None

    # -- images --------------------------------------------------------------------------
    def list_images(self, req: Request, _: dict[str, str]) -> Response:
        assert req.token is not None
        params = req.params()
        for key in ("limit", "marker", "member_status", "sort", "sort_key", "sort_dir"):
            params.pop(key, None)
        visibility = params.pop("visibility", None)
        if visibility and visibility not in ("community", "public", "private", "shared", "all"):
            raise self.fail(req, 400, f"Invalid visibility value: {visibility}")
        hidden = params.pop("os_hidden", "false").lower()
        if hidden not in ("true", "false"):
            raise self.fail(
                req,
                400,
                f"Invalid value '{hidden}' for 'os_hidden' filter. Valid values are 'true' or 'false'.",
            )
        protected = params.pop("protected", None)
        if protected is not None and protected not in ("true", "false"):
            raise self.fail(
                req,
                400,
                f"Invalid value '{protected}' for 'protected' filter. Valid values are 'true' or 'false'.",
            )
        tags = req.query.get("tag", [])
        params.pop("tag", None)
        if "changes-since" in params:
            raise self.fail(req, 400, 'The "changes-since" filter is no longer available on v2.')
        sort_keys, sort_dirs = self._sorting(req)
        limit = self._limit(req)
        with self.cloud.lock:
            images = [
                image
                for image in self.cloud.images.values()
                if self._listed(req.token, image, visibility)
                and image.os_hidden == (hidden == "true")
                and (protected is None or image.protected == (protected == "true"))
                and all(tag in image.tags for tag in tags)
                and all(self._matches(image, key, value) for key, value in params.items())
            ]
            for key, direction in reversed(list(zip(sort_keys, sort_dirs, strict=True))):
                images.sort(key=_sort_key(key), reverse=direction == "desc")
            marker = req.param("marker")
            if marker is not None:
                ids = [image.id for image in images]
                if marker not in ids:
                    raise self.fail(req, 400, f"marker {marker} not found")
                images = images[ids.index(marker) + 1 :]
            page = images[:limit]
            document: dict[str, Any] = {"images": [image_view(i) for i in page]}
        query = urllib.parse.urlencode({k: v for k, v in req.params().items() if k != "marker"})
        document["first"] = f"/v2/images?{query}" if query else "/v2/images"
        document["schema"] = "/v2/schemas/images"
        if page and len(page) == limit:
            document["next"] = "/v2/images?" + urllib.parse.urlencode(
                {**{k: v for k, v in req.params().items()}, "marker": page[-1].id}
            )
        return Response.json(200, document)

    def _listed(self, token: Token, image: Image, visibility: str | None) -> bool:
        """Which images an index shows (glance/db/sqlalchemy/api.py `_make_conditions_from_filters`)."""
        if visibility and visibility != "all" and image.visibility != visibility:
            return False
        if token.is_admin:
            return True
        if image.owner == token.project_id:
            return True
        if image.visibility == "public":
            return True
        return image.visibility == "community" and visibility in ("community", "all")

    @staticmethod
    def _matches(image: Image, key: str, value: str) -> bool:
        if key == "id" and value.startswith("in:"):
            return image.id in value[3:].split(",")
        if key in (
            "name",
            "status",
            "owner",
            "disk_format",
            "container_format",
            "id",
            "visibility",
        ):
            actual = getattr(image, key)
            if value.startswith("in:"):
                return actual in value[3:].split(",")
            return bool(actual == value)
        if key in ("size_min", "size_max"):
            return image.size is not None and (
                image.size >= int(value) if key == "size_min" else image.size <= int(value)
            )
        return image.extra.get(key) == value

    def _sorting(self, req: Request) -> tuple[list[str], list[str]]:
        keys: list[str] = []
        dirs: list[str] = []
        if "sort" in req.query:
            if "sort_key" in req.query or "sort_dir" in req.query:
                raise self.fail(req, 400, "Old and new sorting syntax cannot be combined")
            for part in (req.param("sort") or "").strip().split(","):
                key, _, direction = part.partition(":")
                keys.append(key.strip())
                dirs.append(direction.strip() or "desc")
        else:
            keys = [k.strip() for k in req.query.get("sort_key", [])]
            dirs = [d.strip() for d in req.query.get("sort_dir", [])]
            if len(dirs) > 1 and len(dirs) != len(keys):
                raise self.fail(
                    req, 400, "Number of sort dirs does not match the number of sort keys"
                )
        for key in keys:
            if key not in _SORT_KEYS:
                raise self.fail(
                    req,
                    400,
                    f"Invalid sort key: {key}. It must be one of the following: {', '.join(_SORT_KEYS)}.",
                )
        for direction in dirs:
            if direction not in ("asc", "desc"):
                raise self.fail(req, 400, f"Invalid sort direction: {direction}")
        keys = keys or ["created_at"]
        dirs = dirs or ["desc"]
        if len(dirs) == 1:
            dirs = dirs * len(keys)
        return keys, dirs

    def _limit(self, req: Request) -> int:
        raw = req.param("limit")
        if raw is None:
            return 25  # limit_param_default
        try:
            limit = int(raw)
        except ValueError:
            raise self.fail(req, 400, "limit param must be an integer") from None
        if limit < 0:
            raise self.fail(req, 400, "limit param must be positive")
        return min(limit, 1000)  # api_limit_max

    def create_image(self, req: Request, _: dict[str, str]) -> Response:
        token = req.token
        assert token is not None
        body = self._body(req)
        if not isinstance(body, dict):
            # Glance's deserializer calls `.get` on it and fails: a 500 (observed).
            raise self.fail(req, 500)
        for key in DISALLOWED:
            if key in body:
                raise self.fail(req, 403, f"Attribute '{key}' is read-only.")
        reason = schema_error(body)
        if reason:
            raise self.fail(req, 400, f"Provided object does not match schema 'image': {reason}")
        for key in body:
            if key in READONLY and key != "id":
                raise self.fail(req, 403, f"Attribute '{key}' is read-only.")
            if key not in BASE_ATTRIBUTES and key not in ("id", "tags"):
                if len(key) > 255:
                    raise self.fail(
                        req, 400, "Custom property should not be greater than 255 characters."
                    )
                if key in RESERVED or key.startswith(RESERVED_NAMESPACE):
                    # Glance passes this one as webob's `detail` (positional argument).
                    raise self.fail(req, 403, detail=f"Attribute '{key}' is reserved.")
        owner = body.get("owner", token.project_id)
        if owner != token.project_id and not token.is_admin:
            raise self.fail(req, 403, f"You are not permitted to create images owned by '{owner}'.")
        visibility = body.get("visibility", "shared")
        if visibility == "public" and not token.is_admin:
            raise self.fail(req, 403, _forbidden_action("publicize_image"))
        with self.cloud.lock:
            image_id = body.get("id") or new_id()
            if image_id in self.cloud.images:
                raise self.fail(req, 409, f"Image ID {image_id} already exists!")
            image = Image(image_id, body.get("name"), owner, visibility=visibility)
            for key in (
                "protected",
                "os_hidden",
                "disk_format",
                "container_format",
                "min_disk",
                "min_ram",
            ):
                if key in body:
                    setattr(image, key, body[key])
            image.tags = list(dict.fromkeys(body.get("tags", [])))
            image.extra = {
                k: v
                for k, v in body.items()
                if k not in BASE_ATTRIBUTES and k not in ("id", "tags")
            }
            self.cloud.images[image.id] = image
            view = image_view(image)
        methods = self.cloud.config.import_methods
        headers = [
            ("Location", urllib.parse.urljoin(req.url, f"/v2/images/{image_id}")),
            # enabled_backends' keys, Glance's reserved stores included.
            ("OpenStack-image-store-ids", ",".join([*self.cloud.stores, *RESERVED_STORES])),
        ]
        if methods:
            headers.insert(1, ("OpenStack-image-import-methods", ",".join(methods)))
        return Response.json(201, view, headers)

    def show_image(self, req: Request, params: dict[str, str]) -> Response:
        with self.cloud.lock:
            return Response.json(200, image_view(self._get(req, params["image_id"])))

    def delete_image(self, req: Request, params: dict[str, str]) -> Response:
        assert req.token is not None
        image_id = params["image_id"]
        with self.cloud.lock:
            image = self.cloud.images.get(image_id)
            if image is None or not self.visible(req.token, image):
                raise self.fail(req, 404, f"Failed to find image {image_id} to delete")
            self._enforce(req, image, "delete_image", self.owns(req.token, image))
            if image.protected:
                raise self.fail(req, 403, f"Image {image_id} is protected and cannot be deleted.")
            self.cloud.remove_image(image_id)
        return Response.empty(204)

    def add_tag(self, req: Request, params: dict[str, str]) -> Response:
        """glance/api/v2/image_tags.py `update`: idempotent, 204, modify_image policy."""
        assert req.token is not None
        tag = urllib.parse.unquote(params["tag"])
        with self.cloud.lock:
            image = self._get(req, params["image_id"])
            self._enforce(req, image, "modify_image", self.owns(req.token, image))
            if len(tag) > 255:
                raise self.fail(req, 400, "Tag exceeds the maximum length of 255 characters")
            if tag not in image.tags:
                image.tags.append(tag)
                image.updated_at = now()
        return Response.empty(204)

    # -- image data ------------------------------------------------------------------------
    def upload(self, req: Request, params: dict[str, str]) -> Response:
        """glance/api/v2/image_data.py `upload`. Never reads `x-openstack-base-image-ref`."""
        token = req.token
        assert token is not None
        if req.content_type != "application/octet-stream":
            shown = req.content_type or None
            raise self.fail(req, 415, detail=f"Invalid content type {shown}")
        store_id = req.headers.get("x-image-meta-store") or self.cloud.default_store or ""
        with self.cloud.lock:
            if store_id not in self.cloud.stores:
                raise self.fail(req, 400, f"Store for identifier {store_id} not found")
            image = self._get(req, params["image_id"])
            self._enforce(req, image, "upload_image", self.owns(token, image))
            if image.status != "queued":
                raise self.fail(
                    req,
                    409,
                    f"Image status transition from {image.status} to saving is not allowed",
                )
            missing = [k for k in ("disk_format", "container_format") if not getattr(image, k)]
            if missing:
                noun = "Property" if len(missing) == 1 else "Properties"
                raise self.fail(
                    req, 400, f"{noun} {', '.join(missing)} must be set prior to saving data."
                )
            if self.cloud.stores[store_id].read_only:
                raise self.fail(
                    req, 410, "Error in store configuration. Adding images to store is disabled."
                )
            virtual_size, problem = inspect_upload(
                req.body, image.disk_format, image.container_format
            )
            if problem:
                raise self.fail(req, 415, detail=problem)
            store_data(self.cloud, image, store_id, req.body, virtual_size)
        return Response.empty(204)

    def download(self, req: Request, params: dict[str, str]) -> Response:
        with self.cloud.lock:
            image = self._get(req, params["image_id"])
            if not image.locations:
                return Response.empty(204)
            data = self.cloud.stores[image.locations[0]].blobs[image.id]
            headers = [
                ("Content-Type", "application/octet-stream"),
                ("Content-MD5", image.checksum or ""),
            ]
        return Response(200, data, headers)

    # -- metadata update -------------------------------------------------------------------
    def update_image(self, req: Request, params: dict[str, str]) -> Response:
        token = req.token
        assert token is not None
        draft = _PATCH_TYPES.get(req.content_type)
        if draft is None:
            allowed = ", ".join(sorted(_PATCH_TYPES))
            raise self.fail(
                req,
                415,
                detail=f"Image PATCH expects Content-Type one of: {allowed}",
                headers=[("Accept-Patch", allowed)],
            )
        body = self._body(req)
        if not isinstance(body, list):
            raise self.fail(req, 400, "Request body must be a JSON array of operation objects.")
        changes = [self._parse_change(req, raw, draft) for raw in body]
        with self.cloud.lock:
            image = self._get(req, params["image_id"])
            for op, path, value in changes:
                self._apply_change(req, token, image, op, path, value, draft)
            if changes:
                image.updated_at = now()
            return Response.json(200, image_view(image))

    def _parse_change(self, req: Request, raw: Any, draft: int) -> tuple[str, str, Any]:
        if not isinstance(raw, dict):
            raise self.fail(req, 400, "Operations must be JSON objects.")
        ops = ("add", "remove", "replace")
        if draft == 10:
            op = raw.get("op")
            if op is None:
                raise self.fail(
                    req,
                    400,
                    f"Unable to find `op` in JSON Schema change. It must be one of the following: {', '.join(ops)}.",
                )
            if op not in ops:
                raise self.fail(
                    req,
                    400,
                    f"Invalid operation: `{op}`. It must be one of the following: {', '.join(ops)}.",
                )
            if "path" not in raw:
                raise self.fail(req, 400, "Unable to find 'path' in JSON Schema change")
            pointer = raw["path"]
        else:
            present = [o for o in ops if o in raw]
            if len(present) != 1:
                raise self.fail(
                    req,
                    400,
                    'Operation objects must contain exactly one member named "add", "remove", or "replace".',
                )
            op = present[0]
            pointer = raw[op]
        path = self._decode_pointer(req, str(pointer))
        depth = 2 if path[0] == "locations" and op in ("add", "remove") else 1
        if len(path) != depth:
            raise self.fail(
                req, 400, f"Invalid JSON pointer for this resource: '/{'/'.join(path)}'"
            )
        root = path[0]
        if root in READONLY:
            raise self.fail(req, 403, f"Attribute '{root}' is read-only.")
        if root in RESERVED or root.startswith(RESERVED_NAMESPACE):
            raise self.fail(req, 403, f"Attribute '{root}' is reserved.")
        value = None
        if op != "remove":
            if "value" not in raw:
                raise self.fail(req, 400, f'Operation "{op}" requires a member named "value".')
            value = raw["value"]
            reason = schema_error({root: value})
            if reason:
                raise self.fail(
                    req, 400, f"Provided object does not match schema 'image': {reason}"
                )
        return str(op), root, value

    def _decode_pointer(self, req: Request, pointer: str) -> list[str]:
        if not pointer.startswith("/"):
            raise self.fail(req, 400, f'Pointer `{pointer}` does not start with "/".')
        if re.search(r"/\s*?/", pointer[1:]):
            raise self.fail(req, 400, f'Pointer `{pointer}` contains adjacent "/".')
        if len(pointer) > 1 and pointer.endswith("/"):
            raise self.fail(req, 400, f'Pointer `{pointer}` end with "/".')
        if re.search("~[^01]", pointer) or pointer.endswith("~"):
            raise self.fail(
                req,
                400,
                f'Pointer `{pointer}` contains "~" not part of a recognized escape sequence.',
            )
        return [
            part.replace("~1", "/").replace("~0", "~").strip()
            for part in pointer.lstrip("/").split("/")
        ]

    def _apply_change(
        self, req: Request, token: Token, image: Image, op: str, root: str, value: Any, draft: int
    ) -> None:
        if root == "locations":
            raise self.fail(
                req, 403, "It's not allowed to update locations if locations are invisible."
            )
        if root == "visibility" and value == "public" and not token.is_admin:
            self._enforce(req, image, "publicize_image", False)
        self._enforce(req, image, "modify_image", self.owns(token, image))
        base = root in BASE_ATTRIBUTES or root == "tags"
        if op == "remove":
            # These messages are webob `detail`s upstream (positional arguments).
            if base:
                raise self.fail(req, 403, detail=f"Property {root} may not be removed.")
            if root not in image.extra:
                raise self.fail(req, 409, detail=f"Property {root} does not exist.")
            del image.extra[root]
            return
        if root == "owner" and not token.is_admin:
            raise self.fail(req, 403, detail="Owner can't be updated by non admin.")
        if op == "replace" and not base and root not in image.extra:
            raise self.fail(req, 409, detail=f"Property {root} does not exist.")
        if op == "add" and draft == 4 and (base or root in image.extra):
            raise self.fail(req, 409, detail=f"Property {root} already present.")
        if root in ("container_format", "disk_format") and image.status not in (
            "queued",
            "importing",
        ):
            raise self.fail(req, 403, f"Attribute {root} can be only replaced for a queued image.")
        if root == "tags":
            image.tags = list(dict.fromkeys(value))
        elif base:
            setattr(image, root, value)
        else:
            image.extra[root] = value

    # -- import ------------------------------------------------------------------------------
    def import_image(self, req: Request, params: dict[str, str]) -> Response:
        """glance/api/v2/images.py `import_image`, checks in the same order."""
        token = req.token
        assert token is not None
        body = self._body(req)
        method_name = self._validate_import_body(req, body)
        must_succeed = body.get("all_stores_must_succeed", True)
        with self.cloud.lock:
            image = self._get(req, params["image_id"])
            if image.status == "active" and method_name != "copy-image":
                raise self.fail(req, 409, "Image with status active cannot be target for import")
            if image.status != "active" and method_name == "copy-image":
                raise self.fail(
                    req, 409, "Only images with status active can be targeted for copying"
                )
            if image.status != "queued" and method_name in ("web-download", "glance-download"):
                raise self.fail(
                    req, 409, f"Image needs to be in 'queued' state to use '{method_name}' method"
                )
            if image.status != "uploading" and method_name == "glance-direct":
                raise self.fail(
                    req, 409, "Image needs to be staged before 'glance-direct' method can be used"
                )
            if not image.container_format:
                raise self.fail(req, 409, "'container_format' needs to be set before import")
            if not image.disk_format:
                raise self.fail(req, 409, "'disk_format' needs to be set before import")
            if method_name == "copy-image":
                # Policy `copy_image` defaults to admin only (glance/policies/image.py).
                self._enforce(req, image, "copy_image", token.is_admin)
            else:
                self._enforce(req, image, "modify_image", self.owns(token, image))
            stolen: ImportTask | None = None
            if "os_glance_import_task" in image.extra:
                stolen = self.runner.enforce_lock(req, self, image)
            stores = self._stores_from_request(req, body)
            all_stores = body.get("all_stores", False)
            if method_name == "copy-image" and all_stores:
                stores = [s for s in stores if s not in image.locations]
                if not stores:
                    # Nothing to copy: 202 and no task at all.
                    return Response.empty(202)
            if method_name == "copy-image" and not all_stores:
                for existing in image.locations:
                    if existing in stores:
                        raise self.fail(req, 400, f"Image is already present at store '{existing}'")
            task = ImportTask(
                id=new_id(),
                image_id=image.id,
                owner=token.project_id,
                user_id=token.user_id,
                request_id=req.request_id,
                input={"image_id": image.id, "import_req": body, "backend": stores},
                created_at=now(),
                updated_at=now(),
            )
            self.cloud.tasks[task.id] = task
            # The lock is taken before the 202 (set_property_atomic); only then is a
            # taken-over task's progress cleaned up, so a request refused above (400,
            # 409) leaves the lock dropped but the old progress lists in place.
            image.extra["os_glance_import_task"] = task.id
            if stolen is not None:
                self.runner.cleanup_stale_progress(image, stolen)
        self.runner.start(task.id, method_name, stores, bool(must_succeed))
        return Response.empty(202)

    def _validate_import_body(self, req: Request, body: Any) -> str:
        """RequestDeserializer._validate_import_body."""
        if not isinstance(body, dict) or "method" not in body:
            raise self.fail(req, 400, "Import request requires a 'method' field.")
        method = body["method"]
        if not isinstance(method, dict) or "name" not in method:
            raise self.fail(req, 400, "Import request requires a 'name' field.")
        name = method["name"]
        if name not in self.cloud.config.import_methods:
            raise self.fail(req, 400, f"Unknown import method name '{name}'.")
        if not isinstance(body.get("all_stores_must_succeed", True), bool):
            raise self.fail(req, 400, "'all_stores_must_succeed' must be boolean value only")
        if not isinstance(body.get("all_stores", False), bool):
            raise self.fail(req, 400, "'all_stores' must be boolean value only")
        return str(name)

    def _stores_from_request(self, req: Request, body: dict[str, Any]) -> list[str]:
        """glance/common/utils.py `get_stores_from_request`."""
        header = req.headers.get("x-image-meta-store")
        if body.get("all_stores", False):
            if "stores" in body or header is not None:
                raise self.fail(
                    req,
                    400,
                    "All_stores parameter can't be used with x-image-meta-store header or stores parameter",
                )
            # http stores are read-only and left out (utils._get_available_stores).
            stores = [s.id for s in self.cloud.stores.values() if not s.read_only]
        elif "stores" in body:
            if header is not None:
                raise self.fail(
                    req,
                    400,
                    "Stores parameter and x-image-meta-store header can't be both specified",
                )
            stores = list(body["stores"]) if isinstance(body["stores"], list) else [body["stores"]]
        else:
            stores = [header or self.cloud.default_store or ""]
        for store in stores:
            if store not in self.cloud.stores:
                raise self.fail(req, 409, f"Store for identifier {store} not found")
        return stores

    def image_tasks(self, req: Request, params: dict[str, str]) -> Response:
        token = req.token
        assert token is not None
        with self.cloud.lock:
            image = self.cloud.images.get(params["image_id"])
            if image is None or not self.visible(token, image):
                raise self.fail(req, 404)
            tasks = [
                task_view(task)
                for task in self.cloud.tasks.values()
                if task.image_id == image.id and (token.is_admin or task.owner == token.project_id)
            ]
        return Response.json(200, {"tasks": tasks})

    def delete_from_store(self, req: Request, params: dict[str, str]) -> Response:
        """glance/api/v2/images.py `delete_from_store`."""
        token = req.token
        assert token is not None
        store_id, image_id = params["store_id"], params["image_id"]
        with self.cloud.lock:
            if store_id not in self.cloud.stores:
                raise self.fail(
                    req, 409, f"The selected store {store_id} is not available on this node."
                )
            image = self.cloud.images.get(image_id)
            if image is None or not self.visible(token, image):
                raise self.fail(req, 404, f"Failed to find image {image_id}")
            self._enforce(req, image, "delete_image_location", token.is_admin)
            if image.status != "active":
                raise self.fail(
                    req,
                    409,
                    "It's not allowed to remove image data from store if image status is not 'active'",
                )
            if len(image.locations) == 1:
                raise self.fail(
                    req,
                    403,
                    "Cannot delete image data from the only store containing it. Consider deleting the image instead.",
                )
            if store_id not in image.locations:
                raise self.fail(req, 404, f"Image {image_id} is not stored in store {store_id}.")
            image.locations.remove(store_id)
            self.cloud.stores[store_id].blobs.pop(image_id, None)
            image.updated_at = now()
        return Response.empty(204)

    # -- discovery ---------------------------------------------------------------------------
    def info_import(self, req: Request, _: dict[str, str]) -> Response:
        methods = {
            "description": "Import methods available.",
            "type": "array",
            "value": list(self.cloud.config.import_methods),
        }
        return Response.json(200, {"import-methods": methods})

    def _stores_list(self) -> list[dict[str, Any]]:
        stores: list[dict[str, Any]] = []
        with self.cloud.lock:
            for store in self.cloud.stores.values():
                entry: dict[str, Any] = {"id": store.id}
                if store.description:
                    entry["description"] = store.description
                if store.id == self.cloud.default_store:
                    entry["default"] = "true"
                if store.read_only:
                    entry["read-only"] = "true"
                stores.append(entry)
        return stores

    def info_stores(self, req: Request, _: dict[str, str]) -> Response:
        return Response.json(200, {"stores": self._stores_list()})

    def info_stores_detail(self, req: Request, _: dict[str, str]) -> Response:
        assert req.token is not None
        if not req.token.is_admin:
            raise self.fail(req, 403, _forbidden_action("stores_info_detail"))
        stores = self._stores_list()
        with self.cloud.lock:
            for entry in stores:
                store = self.cloud.stores[entry["id"]]
                entry["type"] = store.kind
                entry["properties"] = (
                    {}
                    if store.kind == "http"
                    else {
                        "data_dir": f"/var/lib/glance/{store.id}",
                        "chunk_size": 65536,
                        "thin_provisioning": False,
                    }
                )
                entry["weight"] = store.weight
        return Response.json(200, {"stores": stores})

    def schema(self, req: Request, _: dict[str, str]) -> Response:
        return Response.json(200, image_schema())


def store_data(
    cloud: Cloud, image: Image, store_id: str, data: bytes, virtual_size: int | None = None
) -> None:
    """Write image data to a store and fill size and hashes (hold `cloud.lock`)."""
    cloud.stores[store_id].blobs[image.id] = data
    if store_id not in image.locations:
        image.locations.append(store_id)
    image.size = len(data)
    image.checksum = hashlib.md5(data, usedforsecurity=False).hexdigest()
    image.os_hash_algo = "sha512"
    image.os_hash_value = hashlib.sha512(data).hexdigest()
    if virtual_size:
        image.virtual_size = virtual_size
    image.status = "active"
    image.updated_at = now()


def _sort_key(key: str) -> Callable[[Image], tuple[int, Any]]:
    """Sort key for one image attribute; None sorts first, as NULLs do in Glance's DB."""

    def value_of(image: Image) -> tuple[int, Any]:
        value = getattr(image, key)
        if value is None:
            return (0, "")
        if isinstance(value, datetime):
            return (1, value.timestamp())
        return (1, value)

    return value_of
