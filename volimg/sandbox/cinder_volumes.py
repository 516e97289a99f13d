"""Cinder's volumes controller: list (summary and detail, filters, sorting, paging),
show, create (from nothing or from an image) and delete.

Mirrors cinder/api/v3/volumes.py `VolumeController` (on top of
cinder/api/v2/volumes.py); the create and delete flows themselves run in
`cinder_manager.py`.
"""

from __future__ import annotations

import ast
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from volimg.sandbox.cinder_base import TRUE_STRINGS, CinderBase, as_bool, join_or
from volimg.sandbox.cinder_manager import Caller
from volimg.sandbox.cinder_views import ViewContext, volume_summary, volume_view
from volimg.sandbox.errors import cinder_fault
from volimg.sandbox.http import HttpError, Request, Response
from volimg.sandbox.state import GIB, Volume, VolumeType, new_id

_DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")


class VolumesController(CinderBase):
    """Handlers for /volumes, /volumes/detail and /volumes/{volume_id}."""

    def show_volume(self, req: Request, params: dict[str, str]) -> Response:
        with self.cloud.lock:
            volume = self._volume(req, params["volume_id"])
            return Response.json(200, {"volume": volume_view(self.cloud, volume, self._ctx(req))})

    def list_volumes(self, req: Request, _: dict[str, str]) -> Response:
        return self._list(req, detail=False)

    def list_volumes_detail(self, req: Request, _: dict[str, str]) -> Response:
        return self._list(req, detail=True)

    def _list(self, req: Request, *, detail: bool) -> Response:
        token = req.token
        assert token is not None
        ctx = self._ctx(req)
        filters = self._filters(req, "volume")
        all_projects = (
            token.is_admin and filters.pop("all_tenants", "false").lower() in TRUE_STRINGS
        )
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
        if ctx.version.at_least("3.45") and as_bool(req.param("with_count") or "false"):
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
                status = f"status must be {join_or(_DELETABLE)} and"
                reason = f"Volume {status} must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer."
                raise HttpError(cinder_fault(400, f"Invalid volume: {reason}"))
            volume.status = "deleting"
            volume.touch()
        self.manager.delete(volume.id)
        return Response.empty(202)


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
        return volume.bootable == (value.lower() in TRUE_STRINGS)
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
