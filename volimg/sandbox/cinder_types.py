"""Cinder's volume types controllers: list, show, create and delete a type, list and
set its extra specs (a store given as `image_service:store_id` is checked with Glance).

Mirrors cinder/api/v2/types.py `VolumeTypesController` (index, show),
cinder/api/contrib/types_manage.py (create, delete) and
cinder/api/contrib/types_extra_specs.py `VolumeTypeExtraSpecsController`.
"""

from __future__ import annotations

from volimg.sandbox.cinder_base import CinderBase, as_bool, policy
from volimg.sandbox.cinder_manager import Caller
from volimg.sandbox.cinder_views import type_view
from volimg.sandbox.errors import cinder_fault
from volimg.sandbox.http import HttpError, Request, Response
from volimg.sandbox.state import VolumeType, now


class TypesController(CinderBase):
    """Handlers for /types and /types/{type_id}/extra_specs."""

    def _type(self, type_id: str) -> VolumeType:
        vtype = self.cloud.volume_types.get(type_id)
        if vtype is None:
            raise HttpError(cinder_fault(404, f"Volume type {type_id} could not be found."))
        return vtype

    def list_types(self, req: Request, _: dict[str, str]) -> Response:
        ctx = self._ctx(req)
        with self.cloud.lock:
            types = [
                type_view(t, ctx)
                for t in self.cloud.volume_types.values()
                if t.is_public or ctx.is_admin
            ]
        return Response.json(200, {"volume_types": types})

    def show_type(self, req: Request, params: dict[str, str]) -> Response:
        """By ID only ("default" names the default type), as volume_types.get_volume_type."""
        type_id = params["type_id"]
        with self.cloud.lock:
            wanted = self.cloud.default_volume_type or "" if type_id == "default" else type_id
            view = type_view(self._type(wanted), self._ctx(req))
        if type_id == "default":
            # volume_type_access.show finds no cached type under the name "default".
            view.pop("os-volume-type-access:is_public")
        return Response.json(200, {"volume_type": view})

    def create_type(self, req: Request, _: dict[str, str]) -> Response:
        token = req.token
        assert token is not None
        body = self._body(req)
        if not token.is_admin:
            raise HttpError(cinder_fault(403, policy("volume_extension:type_create")))
        spec = body.get("volume_type") if isinstance(body, dict) else None
        if not isinstance(spec, dict):
            raise self._invalid("volume_type", body, "'volume_type' is a required property")
        name = spec.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 255:
            raise self._invalid("name", name, "is not a valid name")
        specs = spec.get("extra_specs") or {}
        if not isinstance(specs, dict) or not all(isinstance(v, str) for v in specs.values()):
            raise self._invalid("extra_specs", specs, "extra spec values must be strings")
        with self.cloud.lock:
            if any(t.name == name for t in self.cloud.volume_types.values()):
                raise HttpError(cinder_fault(409, f"Volume Type {name} already exists."))
            vtype = self.cloud.add_volume_type(
                name, description=spec.get("description"), extra_specs=specs
            )
            vtype.is_public = as_bool(spec.get("os-volume-type-access:is_public", True))
            return Response.json(200, {"volume_type": type_view(vtype, self._ctx(req))})

    def delete_type(self, req: Request, params: dict[str, str]) -> Response:
        """types_manage._delete: admin only; a type still used by volumes stays."""
        assert req.token is not None
        if not req.token.is_admin:
            raise HttpError(cinder_fault(403, policy("volume_extension:type_delete")))
        with self.cloud.lock:
            vtype = self._type(params["type_id"])
            if vtype.id == self.cloud.default_volume_type:
                raise HttpError(
                    cinder_fault(
                        400,
                        f"The volume type {vtype.id} is a default volume type and cannot be deleted.",
                    )
                )
            if any(v.volume_type_id == vtype.id for v in self.cloud.volumes.values()):
                raise HttpError(cinder_fault(400, "Target volume type is still in use."))
            del self.cloud.volume_types[vtype.id]
        return Response.empty(202)

    def list_extra_specs(self, req: Request, params: dict[str, str]) -> Response:
        ctx = self._ctx(req)
        with self.cloud.lock:
            view = type_view(self._type(params["type_id"]), ctx)
        return Response.json(200, {"extra_specs": view["extra_specs"]})

    def create_extra_specs(self, req: Request, params: dict[str, str]) -> Response:
        """types_extra_specs.create: admin only, type unused, store validated with Glance."""
        token = req.token
        assert token is not None
        body = self._body(req)
        if not token.is_admin:
            raise HttpError(cinder_fault(403, policy("volume_extension:types_extra_specs:create")))
        specs = body.get("extra_specs") if isinstance(body, dict) else None
        if not isinstance(specs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) <= 255 for k, v in specs.items()
        ):
            raise self._invalid("extra_specs", specs, "extra specs must map names to strings")
        type_id = params["type_id"]
        with self.cloud.lock:
            if any(v.volume_type_id == type_id for v in self.cloud.volumes.values()):
                raise HttpError(cinder_fault(400, "Volume Type is currently in use."))
            self._type(type_id)
        if "image_service:store_id" in specs:
            self._validate_store(
                specs["image_service:store_id"],
                Caller(token.id, req.request_id, token.project_id or ""),
            )
        with self.cloud.lock:
            vtype = self._type(type_id)
            vtype.extra_specs.update(specs)
            vtype.updated_at = now()
        return Response.json(200, {"extra_specs": specs})

    def _validate_store(self, store_id: str, caller: Caller) -> None:
        """image_utils.validate_stores_id, asking Glance for its stores."""
        try:
            reply = self.glance.stores(token=caller.token, request_id=caller.request_id)
        except OSError as exc:
            raise HttpError(cinder_fault(500, str(exc))) from None
        for info in reply.json().get("stores", []) if reply.ok else []:
            if info["id"] == store_id:
                if info.get("read-only") == "true":
                    raise HttpError(cinder_fault(400, f"Store {store_id} is read-only in glance."))
                return
        raise HttpError(cinder_fault(404, f"Store {store_id} not enabled in glance."))
