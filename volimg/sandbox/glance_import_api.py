"""The API side of Glance's interoperable image import: `POST /v2/images/{id}/import`
(checks, the import lock, the task), an image's tasks and `GET /v2/info/import`.

Mirrors glance/api/v2/images.py `ImagesController.import_image` and `get_task_info`,
and glance/api/v2/discovery.py `InfoController.get_image_import`. The task itself
(copy-image, store by store) runs in `glance_import.py`.
"""

from __future__ import annotations

from typing import Any

from volimg.sandbox.glance_base import GlanceBase
from volimg.sandbox.glance_views import task_view
from volimg.sandbox.http import Request, Response
from volimg.sandbox.state import ImportTask, new_id, now


class ImportController(GlanceBase):
    """Handlers for an image's import and tasks, and /v2/info/import."""

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
                # Policy `copy_image` defaults to admin only (glance/policies/image.py);
                # CloudConfig.copy_image_roles stands for a policy.yaml that changes it.
                allowed = self.cloud.config.copy_image_roles
                self._enforce(req, image, "copy_image", any(r in token.roles for r in allowed))
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
            stores = [
                s.id
                for s in self.cloud.stores.values()
                if not s.read_only and self.knows_store(s.id)
            ]
        elif "stores" in body:
            if header is not None:
                raise self.fail(
                    req,
                    400,
                    "Stores parameter and x-image-meta-store header can't be both specified",
                )
            stores = list(body["stores"]) if isinstance(body["stores"], list) else [body["stores"]]
        else:
            stores = [header or self.default_store_here() or ""]
        for store in stores:
            if not self.knows_store(store):
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

    def info_import(self, req: Request, _: dict[str, str]) -> Response:
        methods = {
            "description": "Import methods available.",
            "type": "array",
            "value": list(self.cloud.config.import_methods),
        }
        return Response.json(200, {"import-methods": methods})
