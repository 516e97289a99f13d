"""Gateway's Glance calls: stores, images, their properties and tags, copies, tasks.

One part per service, as openstacksdk has one proxy per service
(``image/v2/_proxy.py``). Where openstacksdk's resources would hide a field volimg
needs (an image's ``stores``, a store's ``read-only`` flag, a task's ``request_id``) or
would not raise on an error response, the request is sent by hand through the SDK's
image proxy, which still carries authentication, the service catalog and transport
retries.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from volimg.errors import AmbiguousImage, ImageNotFound
from volimg.gateway.errors import _calling, _raise_for
from volimg.gateway.session import _UUID, NO_RETRY, Session, _require_ref
from volimg.gateway.values import _image, _store
from volimg.model import GlanceInfo, Image, ImportTask, QuotaUsage, Store

log = logging.getLogger("volimg.gateway")  # the name -v has always shown

# Glance pages image lists (api_limit_max is 1000 by default).
IMAGE_PAGE = 200
# Image IDs per ``id=in:...`` listing: 40 UUIDs keep the query under 1,600 characters,
# well inside what proxies and Glance's own request-line limit take.
IDS_PER_LISTING = 40


class GlanceCalls(Session):
    """What volimg asks Glance (image v2), as volimg's own values."""

    def glance_info(self) -> GlanceInfo:
        """Stores (GET /v2/info/stores) and import methods (GET /v2/info/import)."""
        with self._calling("reading Glance's stores"):
            response = self._conn.image.get("/info/stores")
            # Glance answers 404 when enabled_backends is not set (single store).
            stores: list[Store] = []
            if response.status_code != 404:
                _raise_for(response)
                stores = [_store(s) for s in response.json().get("stores", [])]
        with self._calling("reading Glance's import methods"):
            response = self._conn.image.get("/info/import")
            _raise_for(response)
            methods = response.json().get("import-methods", {}).get("value", [])
        return GlanceInfo(stores=tuple(stores), import_methods=tuple(methods))

    def list_image_names(
        self, *, owner: str | None = None, visibility: str | None = None
    ) -> dict[str, str]:
        """Every image's id and name (shell completion), filtered by Glance, all pages."""
        params: dict[str, Any] = {"limit": IMAGE_PAGE}
        if owner:
            params["owner"] = owner
        if visibility:
            params["visibility"] = visibility
        found: dict[str, str] = {}
        with _calling("listing image names"):
            while True:
                response = self._conn.image.get("/images", params=params)
                _raise_for(response)
                page = response.json()["images"]
                found.update((i["id"], i.get("name") or "") for i in page)
                if len(page) < IMAGE_PAGE:
                    return found
                params["marker"] = page[-1]["id"]

    def get_image(self, image_id: str) -> Image | None:
        """An image by ID, or None when Glance says 404 (gone, or not visible to you)."""
        with self._calling(f"reading image {image_id} from Glance"):
            response = self._conn.image.get(f"/images/{image_id}")
            if response.status_code == 404:
                return None
            _raise_for(response)
            return _image(response.json())

    def find_image(self, ref: str) -> Image:
        """An image by ID or exact name; refuses a name several images share."""
        _require_ref(ref, "image")
        if _UUID.match(ref):
            image = self.get_image(ref)
            if image is not None:
                return image
        matches = self.images_named(ref)
        if not matches:
            raise ImageNotFound(ref)
        if len(matches) > 1:
            raise AmbiguousImage(ref, sorted(i.id for i in matches))
        return matches[0]

    def images_named(self, name: str, *, owner: str | None = None) -> list[Image]:
        """Every image visible to you with exactly this name (and owner), all pages."""
        params: dict[str, Any] = {"name": name, "limit": IMAGE_PAGE}
        if owner:
            params["owner"] = owner
        found: list[Image] = []
        with self._calling(f"looking up images named {name!r} in Glance"):
            while True:
                response = self._conn.image.get("/images", params=params)
                _raise_for(response)
                page = response.json()["images"]
                found += [_image(i) for i in page if i.get("name") == name]
                if len(page) < IMAGE_PAGE:
                    return found
                params["marker"] = page[-1]["id"]

    def list_images(
        self,
        *,
        tag: str | None = None,
        properties: Mapping[str, str] | None = None,
        owner: str | None = None,
        all_projects: bool = False,
    ) -> list[Image]:
        """Images filtered on the server (tag, custom properties, owner), all pages.

        Glance filters on any custom property given as a query parameter
        (glance/api/v2/images.py index: unknown keys become property filters), so
        volimg never lists the whole cloud to find its own images. Glance lists every
        project's images to an admin, so ``owner`` narrows to one project unless
        ``all_projects`` is asked for.
        """
        params: dict[str, Any] = {"limit": IMAGE_PAGE, "sort": "created_at:asc,id:asc"}
        if tag:
            params["tag"] = tag
        if owner and not all_projects:
            params["owner"] = owner
        params.update(properties or {})
        found: list[Image] = []
        with self._calling("listing Glance's images"):
            while True:
                response = self._conn.image.get("/images", params=params)
                _raise_for(response)
                page = response.json()["images"]
                found += [_image(i) for i in page]
                if len(page) < IMAGE_PAGE:
                    return found
                params["marker"] = page[-1]["id"]

    def set_image_properties(
        self,
        image_id: str,
        properties: Mapping[str, str],
        *,
        remove: Sequence[str] = (),
        tags: Sequence[str] | None = None,
    ) -> None:
        """Add or overwrite custom properties, and remove some, with one JSON-patch.

        The ``add`` part is safe to resend (the same patch leaves the same image), so
        keystoneauth's transport retries may apply; a resent ``remove`` of a key already
        gone is refused by Glance, and the caller reads the image again to see that it
        took. Glance refuses os_glance* keys (403). ``tags``, when given, replaces the
        image's whole tag list in the same patch (glance/api/v2/images.py
        ``_do_replace`` sets ``image.tags``; one save writes the properties and the tags).
        """

        def path(key: str) -> str:
            return "/" + key.replace("~", "~0").replace("/", "~1")

        ops: list[dict[str, object]] = [
            {"op": "add", "path": path(key), "value": value} for key, value in properties.items()
        ]
        ops += [{"op": "remove", "path": path(key)} for key in remove if key not in properties]
        if tags is not None:
            ops.append({"op": "replace", "path": "/tags", "value": list(tags)})
        with self._calling(f"setting properties on Glance image {image_id}"):
            response = self._conn.image.patch(
                f"/images/{image_id}",
                json=ops,
                headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
            )
            _raise_for(response)

    def add_image_tag(self, image_id: str, tag: str) -> None:
        """PUT /v2/images/{id}/tags/{tag}: idempotent (glance/api/v2/image_tags.py)."""
        with self._calling(f"tagging Glance image {image_id}"):
            response = self._conn.image.put(f"/images/{image_id}/tags/{tag}")
            _raise_for(response)

    def delete_image(self, image_id: str) -> None:
        """DELETE /v2/images/{id}, sent once (a resend after success would say 404)."""
        with self._calling(f"deleting Glance image {image_id}"):
            response = self._conn.image.delete(f"/images/{image_id}", **NO_RETRY)
            _raise_for(response)
        log.info("deleted image %s", image_id)

    def copy_image(
        self,
        image_id: str,
        stores: Sequence[str],
        *,
        all_stores_must_succeed: bool,
        request_id: str,
    ) -> None:
        """Start a copy-image import whose task will carry ``request_id``.

        Glance takes the caller's X-OpenStack-Request-ID as its own request id
        (glance/api/middleware/context.py) and records it on the import task, so volimg
        can find its task even when the answer to this request is lost.

        Sent by hand rather than with ``image.import_image``: that call does not raise on
        an error answer, and its ``store=`` form adds an x-image-meta-store header that
        multi-store Glance refuses beside a ``stores`` body (400). Glance's own default
        for all_stores_must_succeed is true; volimg always says what it wants.
        """
        body = {
            "method": {"name": "copy-image"},
            "stores": list(stores),
            "all_stores": False,
            "all_stores_must_succeed": all_stores_must_succeed,
        }
        with self._calling(f"asking Glance to copy image {image_id} to {', '.join(stores)}"):
            response = self._conn.image.post(
                f"/images/{image_id}/import",
                json=body,
                global_request_id=request_id,
                **NO_RETRY,
            )
            _raise_for(response)
        log.info("Glance accepted copy-image of %s (request %s)", image_id, request_id)

    def image_tasks(self, image_id: str) -> list[ImportTask]:
        """GET /v2/images/{id}/tasks (Glance API 2.12): the image's import tasks."""
        with self._calling(f"reading Glance's import tasks of image {image_id}"):
            response = self._conn.image.get(f"/images/{image_id}/tasks")
            _raise_for(response)
            return [
                ImportTask(
                    id=t["id"],
                    status=t["status"],
                    message=t.get("message") or "",
                    # The API reference's sample spells it request-id.
                    request_id=t.get("request_id") or t.get("request-id"),
                    created_at=t.get("created_at"),
                    updated_at=t.get("updated_at"),
                    stores=tuple((t.get("input") or {}).get("backend") or ()),
                )
                for t in response.json()["tasks"]
            ]

    def delete_from_store(self, image_id: str, store: str) -> None:
        """DELETE /v2/stores/{store}/{image}: remove one store's copy (admin by default)."""
        with self._calling(f"asking Glance to remove image {image_id} from store {store}"):
            response = self._conn.image.delete(f"/stores/{store}/{image_id}", **NO_RETRY)
            _raise_for(response)
        log.info("removed image %s from store %s", image_id, store)

    def glance_usage(self) -> tuple[QuotaUsage, ...] | None:
        """GET /v2/info/usage: the caller's project against Glance's quotas.

        Glance (API 2.13, Xena on) answers with every quota it enforces through
        Keystone's unified limits, and with an empty ``usage`` when those are off
        (``use_keystone_limits = false``: glance/quota/keystone.py ``get_usage``). None
        when this Glance does not offer the call (404).
        """
        with self._calling("reading Glance's quota usage"):
            response = self._conn.image.get("/info/usage")
            if response.status_code == 404:
                return None
            _raise_for(response)
            return tuple(
                QuotaUsage(name=str(name), usage=int(value["usage"]), limit=int(value["limit"]))
                for name, value in response.json()["usage"].items()
            )

    def images_by_ids(self, image_ids: Sequence[str]) -> list[Image]:
        """The images among ``image_ids`` that Glance lists to you, one request per
        ``IDS_PER_LISTING`` IDs (``id=in:a,b,...``, glance/api/v2/images.py index).

        An image that is gone, not visible to you or hidden (``os_hidden``) is simply
        not in the answer.
        """
        found: list[Image] = []
        unique_ids = list(dict.fromkeys(image_ids))
        with self._calling("listing images by ID"):
            for start in range(0, len(unique_ids), IDS_PER_LISTING):
                chunk = unique_ids[start : start + IDS_PER_LISTING]
                params = {"id": "in:" + ",".join(chunk), "limit": IMAGE_PAGE}
                response = self._conn.image.get("/images", params=params)
                _raise_for(response)
                found += [_image(i) for i in response.json()["images"]]
        return found

    def image_endpoint_url(self) -> str:
        """The URL of the image endpoint this connection talks to (from the catalog)."""
        with self._calling("finding Glance's endpoint"):
            return str(self._conn.image.get_endpoint())

    def stores_at(self, endpoint_url: str) -> tuple[Store, ...] | None:
        """GET /v2/info/stores of another image endpoint of the catalog (a region, an
        edge site): the stores that glance-api knows. None when it answers 404 (a
        single store). One request, with this connection's token.
        """
        base = endpoint_url.rstrip("/")
        if not base.endswith("/v2"):
            base += "/v2"
        with self._calling(f"reading the stores of image endpoint {endpoint_url}"):
            response = self._conn.session.get(
                base + "/info/stores", raise_exc=False, headers={"Accept": "application/json"}
            )
            if response.status_code == 404:
                return None
            _raise_for(response)
            return tuple(_store(s) for s in response.json().get("stores", []))
