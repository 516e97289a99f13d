"""The sandbox Cinder's volume manager: the work done after the API's 202.

Mirrors cinder/volume/manager.py: creating a volume (downloading its image when it has
one and capturing `volume_image_metadata`), deleting it, and `copy_volume_to_image`,
which uploads to Glance over HTTP with `x-image-meta-store` (the type's
`image_service:store_id`) and `x-openstack-base-image-ref` (the volume's source image)
and, whatever happens, sets the volume back to `available`/`in-use` at the very end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from volimg.sandbox.diskformat import convert, to_raw
from volimg.sandbox.faults import Faults
from volimg.sandbox.glance_client import InternalGlanceClient
from volimg.sandbox.jobs import Jobs
from volimg.sandbox.state import GIB, Cloud, UserMessage, Volume, new_id, now
from volimg.sandbox.timings import Timings

LOG = logging.getLogger(__name__)

# cinder/image/glance.py glance_core_properties (default)
GLANCE_CORE_PROPERTIES = (
    "checksum",
    "container_format",
    "disk_format",
    "image_name",
    "image_id",
    "min_disk",
    "min_ram",
    "name",
    "size",
)
# cinder/image/image_utils.py GLANCE_RESERVED_NAMESPACES
GLANCE_RESERVED_NAMESPACES = ("os_glance", "img_signature", "signature_verified")
# cinder/volume/volume_utils.py IMAGE_ATTRIBUTES
IMAGE_ATTRIBUTES = ("checksum", "container_format", "disk_format", "min_disk", "min_ram", "size")
# Glance schema properties that are not "base" (etc/schema-image.json) - Cinder treats
# them, and every unknown key, as custom image properties.
_NON_BASE_SCHEMA = (
    "kernel_id",
    "ramdisk_id",
    "instance_uuid",
    "architecture",
    "os_distro",
    "os_version",
)
_GLANCE_BASE = (
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
    "os_hash_value", "owner", "size", "virtual_size", "container_format", "disk_format", "created_at",
    "updated_at", "tags", "direct_url", "min_ram", "min_disk", "self", "file", "stores", "schema", "locations",
)  # fmt: skip
MESSAGE_TTL = timedelta(seconds=2592000)  # [DEFAULT] message_ttl
BLANK_VOLUME = b"\0" * 65536
"""What a new blank volume holds: stands for its zeroed GiBs."""


def image_properties(image: dict[str, Any]) -> dict[str, Any]:
    """GlanceImageService._translate_from_glance: everything not a base schema property."""
    return {k: v for k, v in image.items() if k not in _GLANCE_BASE or k in _NON_BASE_SCHEMA}


def volume_image_metadata(image: dict[str, Any]) -> dict[str, str]:
    """volume_utils.get_volume_image_metadata, stored as strings like Cinder's DB does."""
    # verify_glance_signatures defaults to enabled: unsigned images are recorded as such.
    metadata: dict[str, Any] = {"signature_verified": False}
    metadata.update({k: v for k, v in image_properties(image).items() if v is not None})
    metadata["image_id"] = image["id"]
    if image.get("name"):
        metadata["image_name"] = image["name"]
    for key in IMAGE_ATTRIBUTES:
        if image.get(key) is not None:
            metadata[key] = image[key]
    return {k: _db_string(v) for k, v in metadata.items()}


def _db_string(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else str(value)


def upload_image_meta(volume: Volume, meta: dict[str, Any]) -> dict[str, Any]:
    """API._merge_volume_image_meta + image_utils.filter_out_reserved_namespaces_metadata.

    Returns the body Cinder's glanceclient POSTs: custom properties are flattened into it
    (GlanceImageService._translate_to_glance).
    """
    custom = set(volume.image_metadata) - set(GLANCE_CORE_PROPERTIES) - set(meta)
    body = dict(meta)
    for key in sorted(custom):
        if not any(key.startswith(ns) for ns in GLANCE_RESERVED_NAMESPACES):
            body[key] = volume.image_metadata[key]
    return body


@dataclass(frozen=True)
class Caller:
    """Who started the work: Cinder reuses the user's token and request ID with Glance."""

    token: str
    request_id: str
    project_id: str


class VolumeManager:
    def __init__(
        self,
        cloud: Cloud,
        jobs: Jobs,
        faults: Faults,
        glance: InternalGlanceClient,
        timings: Callable[[], Timings],
    ) -> None:
        self.cloud = cloud
        self.jobs = jobs
        self.faults = faults
        self.glance = glance
        self.timings = timings

    # -- create / delete -------------------------------------------------------------------
    def create(self, volume_id: str, caller: Caller, image: dict[str, Any] | None) -> None:
        self.jobs.spawn(f"create-{volume_id[:8]}", lambda: self._create(volume_id, caller, image))

    def _create(self, volume_id: str, caller: Caller, image: dict[str, Any] | None) -> None:
        if not self.jobs.sleep(self.timings().volume_create):
            return
        data: bytes | None = None
        if image is not None:
            try:
                reply = self.glance.download(
                    image["id"], token=caller.token, request_id=caller.request_id
                )
            except OSError:
                reply = None
            if reply is None or reply.status != 200:
                self._create_failed(volume_id, caller)
                return
            data = to_raw(reply.body)
        with self.cloud.lock:
            volume = self.cloud.volumes.get(volume_id)
            if volume is None:
                return
            volume.data = BLANK_VOLUME
            if image is not None and data is not None:
                volume.data = data
                volume.image_metadata = volume_image_metadata(image)
                volume.bootable = True
            volume.host = self.cloud.config.volume_host
            volume.service_uuid = self.cloud.service_uuid
            volume.status = "available"
            volume.touch()

    def _create_failed(self, volume_id: str, caller: Caller) -> None:
        with self.cloud.lock:
            volume = self.cloud.volumes.get(volume_id)
            if volume is None:
                return
            volume.status = "error"
            volume.touch()
            self.record_message(
                caller, volume_id, action="005", detail="001", internal="image download failed"
            )

    def delete(self, volume_id: str) -> None:
        def work() -> None:
            if not self.jobs.sleep(self.timings().volume_delete):
                return
            with self.cloud.lock:
                self.cloud.volumes.pop(volume_id, None)

        self.jobs.spawn(f"delete-{volume_id[:8]}", work)

    # -- copy_volume_to_image ----------------------------------------------------------------
    def copy_volume_to_image(self, volume_id: str, caller: Caller, image: dict[str, Any]) -> None:
        self.jobs.spawn(f"upload-{volume_id[:8]}", lambda: self._upload(volume_id, caller, image))

    def _upload(self, volume_id: str, caller: Caller, image: dict[str, Any]) -> None:
        if not self.jobs.sleep(self.timings().upload):
            return
        with self.cloud.lock:
            volume = self.cloud.volumes.get(volume_id)
            if volume is None:
                return
            vtype = self.cloud.volume_types.get(volume.volume_type_id)
            store_id = vtype.extra_specs.get("image_service:store_id") if vtype else None
            base_image_ref = volume.image_metadata.get("image_id")
            data = convert(volume.data, str(image.get("disk_format")), volume.size * GIB)
            name = volume.name
        error = self.faults.take_upload_failure(volume_id, name)
        if error is None:
            error = self._send(image["id"], data, caller, store_id, base_image_ref)
        if error is not None:
            LOG.error(
                "Upload volume to image encountered an error (image-id: %s): %s", image["id"], error
            )
            with self.cloud.lock:
                self.record_message(caller, volume_id, action="003", detail="004", internal=error)
            self._delete_image(image["id"], caller)
        with self.cloud.lock:
            volume = self.cloud.volumes.get(volume_id)
            if volume is not None:
                # db.volume_update_status_based_on_attachment, in the manager's `finally`.
                volume.status = "in-use" if volume.attachments else "available"
                volume.touch()

    def _send(
        self,
        image_id: str,
        data: bytes,
        caller: Caller,
        store_id: str | None,
        base_image_ref: str | None,
    ) -> str | None:
        """Upload, then read the image back as glanceclient's `update` does; the error text if any."""
        try:
            reply = self.glance.upload(
                image_id,
                data,
                token=caller.token,
                request_id=caller.request_id,
                store_id=store_id,
                base_image_ref=base_image_ref,
            )
            if not reply.ok:
                return f"Glance answered {reply.status}: {reply.body[:200]!r}"
            reply = self.glance.show(image_id, token=caller.token, request_id=caller.request_id)
        except OSError as exc:
            return f"Error contacting glance server: {exc}"
        return None if reply.ok else f"Glance answered {reply.status}"

    def _delete_image(self, image_id: str, caller: Caller) -> None:
        """VolumeManager._delete_image: only an image still `queued` or `saving`."""
        try:
            reply = self.glance.show(image_id, token=caller.token, request_id=caller.request_id)
            if reply.ok and reply.json().get("status") in ("queued", "saving"):
                self.glance.delete(image_id, token=caller.token, request_id=caller.request_id)
        except OSError:
            LOG.warning("Image delete encountered an error.", exc_info=True)

    def record_message(
        self, caller: Caller, volume_id: str, *, action: str, detail: str, internal: str
    ) -> UserMessage:
        """message_api.create: the exception text is kept internal, never shown to users."""
        created = now()
        message = UserMessage(
            id=new_id(),
            project_id=caller.project_id,
            request_id=caller.request_id,
            resource_type="VOLUME",
            resource_uuid=volume_id,
            action_id=action,
            detail_id=detail,
            message_level="ERROR",
            created_at=created,
            expires_at=created + MESSAGE_TTL,
            internal_detail=internal,
        )
        self.cloud.messages[message.id] = message
        return message
