"""Glance's images controller: list (filters, sorting, paging), create, show, delete,
and adding a tag.

Mirrors glance/api/v2/images.py `ImagesController` (index, create, show, delete) with
its request deserializer's checks, and glance/api/v2/image_tags.py (update). PATCH is
in `glance_image_update.py`, the image data in `glance_image_data.py`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from datetime import datetime
from typing import Any

from volimg.sandbox.glance_base import GlanceBase, forbidden_action
from volimg.sandbox.glance_views import (
    BASE_ATTRIBUTES,
    DISALLOWED,
    READONLY,
    RESERVED,
    RESERVED_NAMESPACE,
    schema_error,
)
from volimg.sandbox.http import Request, Response
from volimg.sandbox.state import Image, Token, new_id, now

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
RESERVED_STORES = ("os_glance_staging_store", "os_glance_tasks_store")


class ImagesController(GlanceBase):
    """Handlers for /v2/images, /v2/images/{image_id} and its tags."""

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
            document: dict[str, Any] = {"images": [self.image_document(i) for i in page]}
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
            raise self.fail(req, 403, forbidden_action("publicize_image"))
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
            view = self.image_document(image)
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
            return Response.json(200, self.image_document(self._get(req, params["image_id"])))

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
