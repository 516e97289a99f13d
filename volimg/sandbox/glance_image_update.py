"""Glance's image update: `PATCH /v2/images/{image_id}` with a JSON patch, in both
media types (draft 4 `openstack-images-v2.0-json-patch` and draft 10 `-v2.1-`).

Mirrors glance/api/v2/images.py `ImagesController.update` and its
`RequestDeserializer` (`_parse_json_schema_change`, `_decode_json_pointer`), checks in
the same order.
"""

from __future__ import annotations

import re
from typing import Any

from volimg.sandbox.glance_base import GlanceBase
from volimg.sandbox.glance_views import (
    BASE_ATTRIBUTES,
    READONLY,
    RESERVED,
    RESERVED_NAMESPACE,
    schema_error,
)
from volimg.sandbox.http import Request, Response
from volimg.sandbox.state import Image, Token, now

_PATCH_TYPES = {
    "application/openstack-images-v2.0-json-patch": 4,
    "application/openstack-images-v2.1-json-patch": 10,
}


class ImageUpdateController(GlanceBase):
    """Handler for PATCH /v2/images/{image_id}."""

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
            return Response.json(200, self.image_document(image))

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
