"""Cinder's resources and Glance's JSON, turned into volimg's frozen values (``volimg.model``).

The converters are the one place that knows how each service spells a field (Glance's
booleans as strings, its custom properties beside the core fields); a field volimg
relies on that is missing or of the wrong type raises TypeError, which ``_calling``
reports as an answer the API does not promise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from volimg.model import Image, Store, Volume, split_stores


def _required(kind: str, **fields: Any) -> None:
    """Raise TypeError (an unreadable answer) when a field volimg relies on is no string."""
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise TypeError(f"{kind} {name} is {value!r}, not a string")


def _volume(resource: Any) -> Volume:
    _required("volume", id=resource.id, status=resource.status)
    image_metadata: Mapping[str, Any] = resource.volume_image_metadata or {}
    metadata: Mapping[str, Any] = resource.metadata or {}
    return Volume(
        id=resource.id,
        name=resource.name or "",
        status=resource.status,
        size=int(resource.size or 0),
        volume_type=resource.volume_type,
        image_metadata={str(k): str(v) for k, v in image_metadata.items()},
        metadata={str(k): str(v) for k, v in metadata.items()},
        project_id=resource.project_id or None,
    )


def _store(data: Mapping[str, Any]) -> Store:
    # Glance renders these booleans as strings: "default": "true", "read-only": "true".
    return Store(
        id=data["id"],
        description=data.get("description", ""),
        is_default=str(data.get("default", "")).lower() == "true",
        read_only=str(data.get("read-only", "")).lower() == "true",
    )


# What Glance's image view shows besides custom properties (glance/api/v2/images.py
# ResponseSerializer._format_image, with multiple stores): not part of ``properties``.
_CORE_IMAGE_FIELDS = frozenset(
    (
        "id", "name", "status", "visibility", "protected", "os_hidden", "owner", "size",
        "virtual_size", "checksum", "os_hash_algo", "os_hash_value", "disk_format",
        "container_format", "min_disk", "min_ram", "created_at", "updated_at", "tags",
        "self", "file", "schema", "direct_url", "locations", "stores",
    )
)  # fmt: skip


def _custom_properties(data: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(k): str(v)
        for k, v in data.items()
        if k not in _CORE_IMAGE_FIELDS and not str(k).startswith("os_glance") and v is not None
    }


def _image(data: Mapping[str, Any]) -> Image:
    _required("image", id=data["id"], status=data.get("status"))
    return Image(
        id=data["id"],
        name=data.get("name") or "",
        status=data.get("status", ""),
        stores=split_stores(data.get("stores")),
        disk_format=data.get("disk_format"),
        container_format=data.get("container_format"),
        visibility=data.get("visibility"),
        owner=data.get("owner"),
        created_at=data.get("created_at"),
        size=data.get("size"),
        checksum=data.get("checksum"),
        import_task=data.get("os_glance_import_task") or None,
        importing_to_stores=split_stores(data.get("os_glance_importing_to_stores")),
        failed_import=split_stores(data.get("os_glance_failed_import")),
        protected=bool(data.get("protected", False)),
        tags=tuple(data.get("tags") or ()),
        updated_at=data.get("updated_at"),
        properties=_custom_properties(data),
    )
