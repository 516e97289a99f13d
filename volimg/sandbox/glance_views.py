"""Glance's wire shapes: the image view, the task view, the image schema."""

from __future__ import annotations

import pprint
import re
from typing import Any

from volimg.sandbox.state import Image, ImportTask, db_time, glance_time

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("community", "public", "private", "shared")
UUID_PATTERN = (
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
)
# ResponseSerializer._hidden_properties (glance/api/v2/images.py)
_HIDDEN = ("os_glance_stage_host", "os_glance_hash_op_host")
# RequestDeserializer (glance/api/v2/images.py)
DISALLOWED = ("direct_url", "self", "file", "schema", "stores")
READONLY = (
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "direct_url",
    "self",
    "file",
    "schema",
    "id",
    "os_hash_algo",
    "os_hash_value",
)
RESERVED = ("location", "deleted", "deleted_at")
RESERVED_NAMESPACE = "os_glance"
BASE_ATTRIBUTES = (
    "name",
    "disk_format",
    "container_format",
    "visibility",
    "size",
    "virtual_size",
    "status",
    "checksum",
    "protected",
    "min_ram",
    "min_disk",
    "owner",
    "os_hidden",
    "os_hash_algo",
    "os_hash_value",
)


def image_view(image: Image) -> dict[str, Any]:
    """ResponseSerializer._format_image with multiple stores enabled."""
    view: dict[str, Any] = {k: v for k, v in image.extra.items() if k not in _HIDDEN}
    for key in BASE_ATTRIBUTES:
        view[key] = getattr(image, key)
    view["id"] = image.id
    view["created_at"] = glance_time(image.created_at)
    view["updated_at"] = glance_time(image.updated_at)
    view["tags"] = list(image.tags)
    view["self"] = f"/v2/images/{image.id}"
    view["file"] = f"/v2/images/{image.id}/file"
    view["schema"] = "/v2/schemas/image"
    if image.locations:
        # Comma-joined store IDs, in location order (glance/api/v2/images.py).
        view["stores"] = ",".join(image.locations)
    return view


def task_view(task: ImportTask) -> dict[str, Any]:
    """glance/db/sqlalchemy/api.py `_task_format(task_ref, task_info_ref)`."""
    return {
        "id": task.id,
        "type": "api_image_import",
        "status": task.status,
        "owner": task.owner,
        "expires_at": db_time(task.expires_at),
        "created_at": db_time(task.created_at),
        "updated_at": db_time(task.updated_at),
        "deleted_at": None,
        "deleted": False,
        "image_id": task.image_id,
        "request_id": task.request_id,
        "user_id": task.user_id,
        "input": task.input,
        "result": task.result,
        "message": task.message,
    }


def _nullable(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": ["null", kind], "description": description, **extra}


def _base_properties() -> dict[str, dict[str, Any]]:
    """glance/api/v2/images.py `get_base_properties` (the parts clients look at)."""
    read_only = {"readOnly": True}
    return {
        "id": {
            "type": "string",
            "description": "An identifier for the image",
            "pattern": UUID_PATTERN,
        },
        "name": _nullable("string", "Descriptive name for the image", maxLength=255),
        "status": {
            "type": "string",
            "readOnly": True,
            "description": "Status of the image",
            "enum": [
                "queued",
                "saving",
                "active",
                "killed",
                "deleted",
                "uploading",
                "importing",
                "pending_delete",
                "deactivated",
            ],
        },
        "visibility": {
            "type": "string",
            "description": "Scope of image accessibility",
            "enum": list(VISIBILITIES),
        },
        "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
        "os_hidden": {
            "type": "boolean",
            "description": "If true, image will not appear in default image list response.",
        },
        "checksum": _nullable("string", "md5 hash of image contents.", maxLength=32, **read_only),
        "os_hash_algo": _nullable(
            "string", "Algorithm to calculate the os_hash_value", maxLength=64, **read_only
        ),
        "os_hash_value": _nullable(
            "string",
            "Hexdigest of the image contents using the algorithm specified by the os_hash_algo",
            maxLength=128,
            **read_only,
        ),
        "owner": _nullable("string", "Owner of the image", maxLength=255),
        "size": _nullable("integer", "Size of image file in bytes", **read_only),
        "virtual_size": _nullable("integer", "Virtual size of image in bytes", **read_only),
        "container_format": _nullable(
            "string", "Format of the container", enum=[None, *CONTAINER_FORMATS]
        ),
        "disk_format": _nullable("string", "Format of the disk", enum=[None, *DISK_FORMATS]),
        "created_at": {
            "type": "string",
            "readOnly": True,
            "description": "Date and time of image registration",
        },
        "updated_at": {
            "type": "string",
            "readOnly": True,
            "description": "Date and time of the last image modification",
        },
        "tags": {
            "type": "array",
            "description": "List of strings related to the image",
            "items": {"type": "string", "maxLength": 255},
        },
        "direct_url": {
            "type": "string",
            "readOnly": True,
            "description": "URL to access the image file kept in external store",
        },
        "min_ram": {
            "type": "integer",
            "description": "Amount of ram (in MB) required to boot image.",
        },
        "min_disk": {
            "type": "integer",
            "description": "Amount of disk space (in GB) required to boot image.",
        },
        "self": {"type": "string", "readOnly": True, "description": "An image self url"},
        "file": {"type": "string", "readOnly": True, "description": "An image file url"},
        "stores": {
            "type": "string",
            "readOnly": True,
            "description": "Store in which image data resides.  Only present when the operator has enabled multiple stores.  May be a comma-separated list of store identifiers.",
        },
        "schema": {"type": "string", "readOnly": True, "description": "An image schema url"},
        "locations": {
            "type": "array",
            "description": "A set of URLs to access the image file kept in external store",
            "items": {"type": "object"},
        },
    }


# etc/schema-image.json ships these as non-base properties (`is_base: false`).
_SCHEMA_IMAGE_JSON: dict[str, dict[str, Any]] = {
    "kernel_id": {
        "type": ["null", "string"],
        "pattern": UUID_PATTERN,
        "description": "ID of image stored in Glance that should be used as the kernel when booting an AMI-style image.",
        "is_base": False,
    },
    "ramdisk_id": {
        "type": ["null", "string"],
        "pattern": UUID_PATTERN,
        "description": "ID of image stored in Glance that should be used as the ramdisk when booting an AMI-style image.",
        "is_base": False,
    },
    "instance_uuid": {
        "type": "string",
        "description": "Metadata which can be used to record which instance this image is associated with. (Informational only, does not create an instance snapshot.)",
        "is_base": False,
    },
    "architecture": {
        "type": "string",
        "description": "Operating system architecture as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html",
        "is_base": False,
    },
    "os_distro": {
        "type": "string",
        "description": "Common name of operating system distribution as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html",
        "is_base": False,
    },
    "os_version": {
        "type": "string",
        "description": "Operating system version as specified by the distributor",
        "is_base": False,
    },
}


def image_schema() -> dict[str, Any]:
    """GET /v2/schemas/image."""
    return {
        "name": "image",
        "properties": {**_base_properties(), **_SCHEMA_IMAGE_JSON},
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def schema_error(image_fragment: dict[str, Any]) -> str | None:
    """Validate properties against the image schema; jsonschema's error text on failure.

    Glance puts `str(jsonschema.ValidationError)` in its message, so the text carries
    the failing keyword, the schema fragment and the offending value.
    """
    properties = _base_properties()
    for key, value in image_fragment.items():
        spec = properties.get(key) or _SCHEMA_IMAGE_JSON.get(key)
        if spec is None:
            if not isinstance(value, str):
                message = f"{value!r} is not of type 'string'"
                return _jsonschema_text(
                    message, "type", ["additionalProperties"], {"type": "string"}, key, value
                )
            continue
        where = ["properties", key]
        kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        if not any(_is_type(value, kind) for kind in kinds):
            message = f"{value!r} is not of type {', '.join(repr(k) for k in kinds)}"
            return _jsonschema_text(message, "type", where, spec, key, value)
        if "enum" in spec and value not in spec["enum"]:
            message = f"{value!r} is not one of {spec['enum']!r}"
            return _jsonschema_text(message, "enum", where, spec, key, value)
        if isinstance(value, str):
            if len(value) > spec.get("maxLength", len(value)):
                return _jsonschema_text(
                    f"{value!r} is too long", "maxLength", where, spec, key, value
                )
            if "pattern" in spec and not re.match(spec["pattern"], value):
                message = f"{value!r} does not match {spec['pattern']!r}"
                return _jsonschema_text(message, "pattern", where, spec, key, value)
        if key == "tags":
            for index, tag in enumerate(value):
                if not isinstance(tag, str):
                    message = f"{tag!r} is not of type 'string'"
                    return _jsonschema_text(
                        message, "type", [*where, "items"], spec["items"], key, tag, index
                    )
    return None


def _jsonschema_text(
    message: str,
    validator: str,
    schema_path: list[str],
    schema: Any,
    key: str,
    instance: Any,
    index: int | None = None,
) -> str:
    """`str(jsonschema.ValidationError)` (jsonschema 4)."""

    def pretty(thing: Any) -> str:
        return "\n    ".join(pprint.pformat(thing, width=72, sort_dicts=False).splitlines())

    schema_at = "schema" + "".join(f"[{part!r}]" for part in schema_path)
    instance_at = f"instance[{key!r}]" + (f"[{index}]" if index is not None else "")
    return (
        f"{message}\n\nFailed validating {validator!r} in {schema_at}:\n    {pretty(schema)}"
        f"\n\nOn {instance_at}:\n    {pretty(instance)}"
    )


def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return False
