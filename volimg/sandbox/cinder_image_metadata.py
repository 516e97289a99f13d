"""Cinder's volume image metadata actions: `os-set_image_metadata`,
`os-unset_image_metadata` and `os-show_image_metadata` on `POST /volumes/{id}/action`.

A volume's image metadata (`volume_image_metadata` in its views) is what Cinder copies
onto the image it creates when the volume is uploaded (`upload_image_meta` in
`cinder_manager.py`), so a client can put keys there before an upload and remove them
after. Mirrors cinder/api/contrib/volume_image_metadata.py
`VolumeImageMetadataController`, its schemas (cinder/api/schemas/volume_image_metadata.py)
and what it calls: volume/api.py `update_volume_metadata`/`delete_volume_metadata`
(refused while `maintenance` or `uploading`) and db/api.py `_volume_x_metadata_update`.
The actions exist at every 3.x microversion.
"""

from __future__ import annotations

from typing import Any

from volimg.sandbox.cinder_base import ActionHandler, CinderBase, WebobResponse, policy
from volimg.sandbox.cinder_volume_metadata import METADATA_KEY
from volimg.sandbox.errors import cinder_fault
from volimg.sandbox.http import HttpError, Request, Response
from volimg.sandbox.state import Token, Volume

SET = "os-set_image_metadata"
UNSET = "os-unset_image_metadata"
SHOW = "os-show_image_metadata"
_MYSQL_TEXT_BYTES = 65535
"""cinder/api/validation/validators.py `_validate_mysql_text`: a TEXT column's limit."""
_BUSY = ("maintenance", "uploading")


class VolumeImageMetadataController(CinderBase):
    """The image metadata actions of /volumes/{volume_id}/action."""

    def _volume_actions(self) -> dict[str, ActionHandler]:
        return {
            **super()._volume_actions(),
            SET: self._set_image_metadata,
            UNSET: self._unset_image_metadata,
            SHOW: self._show_image_metadata,
        }

    def _set_image_metadata(self, req: Request, volume_id: str, params: Any) -> Response:
        """`create`: merge the keys in; 200 with ALL the volume's image metadata after."""
        metadata = self._validate_set(params)
        with self.cloud.lock:
            volume = self._volume(req, volume_id)
            _authorize_member(req.token, "volume_extension:volume_image_metadata:set")
            _refuse_busy(volume, "Updating")
            return Response.json(200, {"metadata": _merge(volume, metadata)})

    def _unset_image_metadata(self, req: Request, volume_id: str, params: Any) -> Response:
        """`delete`: one key; 404 when it is not there, which is checked before the status."""
        key = self._validate_unset(params)
        with self.cloud.lock:
            volume = self._volume(req, volume_id)
            _authorize_member(req.token, "volume_extension:volume_image_metadata:remove")
            if key not in volume.image_metadata:
                raise _glance_metadata_not_found(volume_id)
            _refuse_busy(volume, "Deleting")
            del volume.image_metadata[key]
        # `webob.Response(status_int=HTTPStatus.OK)`: webob's defaults, an empty text/html.
        return WebobResponse(200, b"", [("Content-Type", "text/html; charset=UTF-8")])

    def _show_image_metadata(self, req: Request, volume_id: str, params: Any) -> Response:
        """`index`: the schema allows any value; no image metadata at all is a 404."""
        with self.cloud.lock:
            volume = self._volume(req, volume_id)
            if not volume.image_metadata:
                # db.volume_glance_metadata_get raises when the volume has no rows.
                raise _glance_metadata_not_found(volume_id)
            return Response.json(200, {"metadata": dict(volume.image_metadata)})

    def _validate_set(self, params: Any) -> dict[str, str]:
        """schema.set_image_metadata below the action's key, in jsonschema's order.

        `type`, then `properties` (metadata: its type, each value whose key matches the
        pattern - a string, at most 65535 UTF-8 bytes - then the keys no pattern
        allows), then `required`, then `additionalProperties`.
        """
        if not isinstance(params, dict):
            raise self._invalid(SET, params, f"{params!r} is not of type 'object'")
        if "metadata" in params:
            metadata = params["metadata"]
            if not isinstance(metadata, dict):
                raise self._invalid("metadata", metadata, f"{metadata!r} is not of type 'object'")
            for key, value in metadata.items():
                if not METADATA_KEY.match(key):
                    continue
                if not isinstance(value, str):
                    raise self._invalid(key, value, f"{value!r} is not of type 'string'")
                if len(value.encode("utf-8")) > _MYSQL_TEXT_BYTES:
                    raise self._invalid(key, value, f"{value!r} is not a 'mysql_text'")
            extras = sorted(key for key in metadata if not METADATA_KEY.match(key))
            if extras:
                verb = "does" if len(extras) == 1 else "do"
                joined = ", ".join(repr(key) for key in extras)
                reason = f"{joined} {verb} not match any of the regexes: {METADATA_KEY.pattern!r}"
                raise self._invalid("metadata", metadata, reason)
        else:
            raise self._invalid(SET, params, "'metadata' is a required property")
        _no_additional(params, ("metadata",), SET)
        return {str(k): str(v) for k, v in metadata.items()}

    def _validate_unset(self, params: Any) -> str:
        """schema.unset_image_metadata: `key`, a string of 1 to 255 characters."""
        if not isinstance(params, dict):
            raise self._invalid(UNSET, params, f"{params!r} is not of type 'object'")
        if "key" not in params:
            raise self._invalid(UNSET, params, "'key' is a required property")
        key = params["key"]
        if not isinstance(key, str):
            raise self._invalid("key", key, f"{key!r} is not of type 'string'")
        if not key:
            # jsonschema 4.26 words minLength 1 this way.
            raise self._invalid("key", key, f"{key!r} should be non-empty")
        if len(key) > 255:
            raise self._invalid("key", key, f"{key!r} is too long")
        _no_additional(params, ("key",), UNSET)
        return key


def _no_additional(params: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(key for key in params if key not in allowed)
    if extra:
        listed = ", ".join(repr(k) for k in extra)
        verb = "were" if len(extra) > 1 else "was"
        reason = f"Additional properties are not allowed ({listed} {verb} unexpected)"
        raise CinderBase._invalid(where, params, reason)


def _authorize_member(token: Token | None, action: str) -> None:
    """xena_system_admin_or_project_member: `role:admin`, or `role:member` in the project.

    The project part holds already: another project's volume was a 404 for non-admins.
    """
    assert token is not None
    if not (token.is_admin or "member" in token.roles):
        raise HttpError(cinder_fault(403, policy(action)))


def _refuse_busy(volume: Volume, verb: str) -> None:
    """volume/api.py `_update_volume_metadata` / `delete_volume_metadata`: InvalidVolume."""
    if volume.status in _BUSY:
        reason = f"{verb} volume metadata is not allowed for volumes in {volume.status} status."
        raise HttpError(cinder_fault(400, f"Invalid volume: {reason}"))


def _glance_metadata_not_found(volume_id: str) -> HttpError:
    message = f"Glance metadata for volume/snapshot {volume_id} cannot be found."
    return HttpError(cinder_fault(404, message))


def _merge(volume: Volume, metadata: dict[str, str]) -> dict[str, str]:
    """db/api.py `_volume_x_metadata_update` (delete=False), and its answer's order.

    The answer lists the changed rows, then the new keys, then the unchanged rows; the
    volume keeps its keys in insertion order (the rows' order), new ones at the end.
    The volume itself is not touched: its image metadata lives in another table.
    """
    pending = dict(metadata)
    changed: dict[str, str] = {}
    unchanged: dict[str, str] = {}
    for key, value in volume.image_metadata.items():
        if key in pending:
            new = pending.pop(key)
            if new != value:
                changed[key] = new
                continue
        unchanged[key] = value
    volume.image_metadata.update(changed)
    volume.image_metadata.update(pending)
    return {**changed, **pending, **unchanged}
