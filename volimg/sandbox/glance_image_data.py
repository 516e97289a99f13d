"""Glance's image data controller: upload (`PUT /v2/images/{image_id}/file`) and
download, and `store_data`, the one way data reaches a store (the seed uses it too).

Mirrors glance/api/v2/image_data.py `ImageDataController` (upload, download); the
upload's disk format inspection is in `diskformat.py`.
"""

from __future__ import annotations

import hashlib

from volimg.sandbox.diskformat import inspect_upload
from volimg.sandbox.glance_base import GlanceBase
from volimg.sandbox.http import Request, Response
from volimg.sandbox.state import Cloud, Image, now


class ImageDataController(GlanceBase):
    """Handlers for /v2/images/{image_id}/file."""

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
