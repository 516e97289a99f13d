"""Cinder's volume metadata controller: show, merge (POST) and replace (PUT) a volume's
metadata, with the schema's checks worded as Cinder's validator words them.

Mirrors cinder/api/v3/volume_metadata.py `VolumeMetadataController` (index, create,
update_all) and cinder/api/schemas/volume_metadata.py.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from volimg.sandbox.cinder_base import CinderBase
from volimg.sandbox.errors import cinder_fault
from volimg.sandbox.http import HttpError, Request, Response

# cinder/api/validation/parameter_types.py `extra_specs`, the volume metadata schema's keys.
METADATA_KEY = re.compile(r"^[a-zA-Z0-9-_:. /]{1,255}$")


class VolumeMetadataController(CinderBase):
    """Handlers for /volumes/{volume_id}/metadata."""

    def show_metadata(self, req: Request, params: dict[str, str]) -> Response:
        """VolumeMetadataController.index; from 3.15 (ETAGS) with an `Etag` header."""
        with self.cloud.lock:
            volume = self._volume(req, params["volume_id"])
            response = Response.json(200, {"metadata": dict(volume.metadata)})
        if self._ctx(req).version.at_least("3.15"):
            # md5 of jsonutils.dumps({"metadata": ...}): the very bytes of the body.
            response.set_header(
                "Etag", hashlib.md5(response.body, usedforsecurity=False).hexdigest()
            )
        return response

    def create_metadata(self, req: Request, params: dict[str, str]) -> Response:
        """VolumeMetadataController.create: merge the given keys into the volume's."""
        return self._update_metadata(req, params["volume_id"], replace=False)

    def replace_metadata(self, req: Request, params: dict[str, str]) -> Response:
        """VolumeMetadataController.update_all: the given keys become all of them."""
        return self._update_metadata(req, params["volume_id"], replace=True)

    def _update_metadata(self, req: Request, volume_id: str, *, replace: bool) -> Response:
        metadata = self._validate_metadata_body(self._body(req))
        with self.cloud.lock:
            volume = self._volume(req, volume_id)
            # volume/api.py _update_volume_metadata
            if volume.status in ("maintenance", "uploading"):
                raise HttpError(
                    cinder_fault(
                        400,
                        "Invalid volume: Updating volume metadata is not allowed for volumes "
                        f"in {volume.status} status.",
                    )
                )
            if replace:
                volume.metadata = dict(metadata)
            else:
                volume.metadata.update(metadata)
            volume.touch()
            return Response.json(200, {"metadata": dict(volume.metadata)})

    def _validate_metadata_body(self, body: Any) -> dict[str, str]:
        """schemas/volume_metadata.py `create`, failures worded as Cinder's validator does.

        jsonschema checks `type`, then `properties` (the metadata object: its type, each
        value, then keys no pattern allows), then `required`, then `additionalProperties`.
        """
        if not isinstance(body, dict):
            raise HttpError(cinder_fault(400, f"{body!r} is not of type 'object'"))
        if "metadata" in body:
            metadata = body["metadata"]
            if not isinstance(metadata, dict):
                raise self._invalid("metadata", metadata, f"{metadata!r} is not of type 'object'")
            for key, value in metadata.items():
                if not METADATA_KEY.match(key):
                    continue
                if not isinstance(value, str):
                    raise self._invalid(key, value, f"{value!r} is not of type 'string'")
                if len(value) > 255:
                    raise self._invalid(key, value, f"{value!r} is too long")
            extras = sorted(key for key in metadata if not METADATA_KEY.match(key))
            if extras:
                verb = "does" if len(extras) == 1 else "do"
                joined = ", ".join(repr(key) for key in extras)
                raise self._invalid(
                    "metadata",
                    metadata,
                    f"{joined} {verb} not match any of the regexes: {METADATA_KEY.pattern!r}",
                )
        else:
            raise HttpError(cinder_fault(400, "'metadata' is a required property"))
        unexpected = [key for key in body if key not in ("metadata", "type")]
        if unexpected:
            listed = ", ".join(repr(key) for key in unexpected)
            verb = "was" if len(unexpected) == 1 else "were"
            raise HttpError(
                cinder_fault(
                    400, f"Additional properties are not allowed ({listed} {verb} unexpected)"
                )
            )
        return {str(k): str(v) for k, v in metadata.items()}
