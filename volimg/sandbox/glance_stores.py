"""Glance's stores: `GET /v2/info/stores` (and `/detail`, admin only) and
`DELETE /v2/stores/{store_id}/{image_id}`, removing one copy of an image's data.

Mirrors glance/api/v2/discovery.py `InfoController.get_stores` and
`get_stores_detail`, and glance/api/v2/images.py `ImagesController.delete_from_store`.
"""

from __future__ import annotations

from typing import Any

from volimg.sandbox.glance_base import GlanceBase, forbidden_action
from volimg.sandbox.http import Request, Response
from volimg.sandbox.state import now


class StoresController(GlanceBase):
    """Handlers for /v2/info/stores and /v2/stores/{store_id}/{image_id}."""

    def delete_from_store(self, req: Request, params: dict[str, str]) -> Response:
        """glance/api/v2/images.py `delete_from_store`."""
        token = req.token
        assert token is not None
        store_id, image_id = params["store_id"], params["image_id"]
        with self.cloud.lock:
            if not self.knows_store(store_id):
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

    def _stores_list(self) -> list[dict[str, Any]]:
        stores: list[dict[str, Any]] = []
        with self.cloud.lock:
            default = self.default_store_here()
            for store in self.cloud.stores.values():
                if not self.knows_store(store.id):
                    continue
                entry: dict[str, Any] = {"id": store.id}
                if store.description:
                    entry["description"] = store.description
                if store.id == default:
                    entry["default"] = "true"
                if store.read_only:
                    entry["read-only"] = "true"
                stores.append(entry)
        return stores

    def _require_multi_store(self, req: Request) -> None:
        """discovery.py `get_stores`: without enabled_backends, 404."""
        if not self.cloud.config.multi_store:
            raise self.fail(req, 404, "Multi backend is not supported at this site.")

    def info_stores(self, req: Request, _: dict[str, str]) -> Response:
        self._require_multi_store(req)
        return Response.json(200, {"stores": self._stores_list()})

    def info_stores_detail(self, req: Request, _: dict[str, str]) -> Response:
        assert req.token is not None
        self._require_multi_store(req)
        if not req.token.is_admin:
            raise self.fail(req, 403, forbidden_action("stores_info_detail"))
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
