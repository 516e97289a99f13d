"""Cinder's volume actions controller: `POST /volumes/{volume_id}/action`.

The dispatch on the action's name covers every controller's actions
(`CinderBase._volume_actions`); this controller's own is `os-volume_upload_image`
(upload to image): the schema's checks in jsonschema's order, the status change to
`uploading`, the image created in Glance, then the copy handed to
`cinder_manager.py`. Mirrors cinder/api/contrib/volume_actions.py
`VolumeActionsController` and cinder/volume/api.py `copy_volume_to_image`; the image
metadata actions are in `cinder_image_metadata.py`.
"""

from __future__ import annotations

from typing import Any

from volimg.sandbox.cinder_base import ActionHandler, CinderBase, as_bool, join_or, policy
from volimg.sandbox.cinder_manager import Caller, upload_image_meta
from volimg.sandbox.cinder_views import Microversion, type_primitive
from volimg.sandbox.errors import cinder_fault
from volimg.sandbox.http import HttpError, Request, Response
from volimg.sandbox.state import Volume

# cinder/api/validation/parameter_types.py `boolean` enum, in its order.
_BOOL_VALUES = (
    *(True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t"),
    *(False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f"),
)
_DISK_FORMATS = ("raw", "vmdk", "vdi", "qcow2", "vhd", "vhdx", "ploop")


class VolumeActionsController(CinderBase):
    """Handler for /volumes/{volume_id}/action."""

    def _volume_actions(self) -> dict[str, ActionHandler]:
        return {**super()._volume_actions(), "os-volume_upload_image": self._upload_image}

    def volume_action(self, req: Request, params: dict[str, str]) -> Response:
        body = self._body(req)
        if not isinstance(body, dict) or len(body) != 1:
            raise HttpError(cinder_fault(400, "Malformed request body"))
        (action,) = body
        actions = self._volume_actions()
        if action not in actions:
            raise HttpError(
                cinder_fault(
                    400,
                    f"There is no such action: {action}. Verify the request body and Content-Type header and try again.",
                )
            )
        return actions[action](req, params["volume_id"], body[action])

    def _validate_upload(self, params: Any, version: Microversion) -> None:
        """schema.volume_upload_image (`_v31` from 3.1), in jsonschema's keyword order.

        `type`, then each property in schema order, then `required`, then
        `additionalProperties` - the first failure is the one Cinder reports.
        """
        where = "os-volume_upload_image"
        if not isinstance(params, dict):
            raise self._invalid(where, params, f"{params!r} is not of type 'object'")
        name = params.get("image_name")
        if "image_name" in params:
            if not isinstance(name, str):
                raise self._invalid("image_name", name, f"{name!r} is not of type 'string'")
            if not 1 <= len(name) <= 255:
                size = "short" if not name else "long"
                raise self._invalid("image_name", name, f"{name!r} is too {size}")
        self._check_enum(params, "force", _BOOL_VALUES)
        self._check_enum(params, "disk_format", _DISK_FORMATS)
        container = params.get("container_format")
        if container is not None and (not isinstance(container, str) or len(container) > 255):
            reason = f"{container!r} is not of type 'string', 'null'"
            raise self._invalid("container_format", container, reason)
        allowed = ["image_name", "force", "disk_format", "container_format"]
        if version.at_least("3.1"):
            allowed += ["visibility", "protected"]
            self._check_enum(params, "visibility", ("community", "public", "private", "shared"))
            self._check_enum(params, "protected", _BOOL_VALUES)
        if "image_name" not in params:
            raise self._invalid(where, params, "'image_name' is a required property")
        extra = sorted(set(params) - set(allowed))
        if extra:
            listed = ", ".join(repr(k) for k in extra)
            verb = "were" if len(extra) > 1 else "was"
            reason = f"Additional properties are not allowed ({listed} {verb} unexpected)"
            raise self._invalid(where, params, reason)

    def _check_enum(self, params: dict[str, Any], key: str, values: tuple[Any, ...]) -> None:
        if key in params and params[key] not in values:
            value = params[key]
            raise self._invalid(key, value, f"{value!r} is not one of {list(values)!r}")

    def _upload_image(self, req: Request, volume_id: str, params: Any) -> Response:
        """volume_actions._volume_upload_image + volume.api.API.copy_volume_to_image."""
        token, version = req.token, req.attrs["version"]
        assert token is not None
        self._validate_upload(params, version)
        force = as_bool(params.get("force", False))
        meta: dict[str, Any] = {
            "container_format": params.get("container_format", "bare"),
            "disk_format": params.get("disk_format", "raw"),
            "name": params["image_name"],
        }
        with self.cloud.lock:
            volume = self._volume(req, volume_id)
        if version.at_least("3.1"):
            meta["visibility"] = params.get("visibility", "private")
            meta["protected"] = as_bool(params.get("protected", False))
            if meta["visibility"] == "public" and not token.is_admin:
                raise HttpError(
                    cinder_fault(403, policy("volume_extension:volume_actions:upload_public"))
                )
        if not self.cloud.config.enable_force_upload:
            force = False  # "Force upload to image is disabled, Force option will be ignored."
        expected = ("available", "in-use") if force else ("available",)
        with self.cloud.lock:
            if volume.status not in expected:
                reason = f"Volume {volume.id} status must be {join_or(expected)}"
                raise HttpError(cinder_fault(400, f"Invalid volume: {reason}"))
            updated_at = volume.updated_at
            volume.previous_status = volume.status
            volume.status = "uploading"
            volume.touch()
            body = upload_image_meta(volume, meta)
            vtype = self.cloud.volume_types.get(volume.volume_type_id)
        caller = Caller(token.id, req.request_id, token.project_id or "")
        image = self._create_image(volume, body, caller)
        self.manager.copy_volume_to_image(volume.id, caller, image)
        response: dict[str, Any] = {
            "id": volume.id,
            "updated_at": updated_at.strftime("%Y-%m-%dT%H:%M:%S.%f") if updated_at else None,
            "status": "uploading",
            "display_description": volume.description,
            "size": volume.size,
            "volume_type": type_primitive(vtype) if vtype else None,
            "image_id": image["id"],
            "container_format": image.get("container_format"),
            "disk_format": image.get("disk_format"),
            "image_name": image.get("name"),
        }
        if "protected" in image:
            response["protected"] = image["protected"]
        if "visibility" in image:
            response["visibility"] = image["visibility"]
        return Response.json(202, {"os-volume_upload_image": response})

    def _create_image(self, volume: Volume, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """image_service.create; on failure the volume goes back (conditional_update)."""
        try:
            reply = self.glance.create(body, token=caller.token, request_id=caller.request_id)
            problem = None if reply.ok else reply.body.decode("utf-8", "replace")
        except OSError as exc:
            problem = str(exc)
        if problem is None:
            return dict(reply.json())
        with self.cloud.lock:
            if volume.status == "uploading":
                volume.status = volume.previous_status or "available"
                volume.previous_status = None
        raise HttpError(cinder_fault(400, problem))
