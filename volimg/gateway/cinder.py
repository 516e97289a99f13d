"""Gateway's Cinder calls: volumes, volume types, the upload to Glance, user messages.

One part per service, as openstacksdk has one proxy per service
(``block_storage/v3/_proxy.py``). Reads go through openstacksdk's resources where they
show what volimg needs; the upload and the user messages are sent by hand through the
same proxy, each at the microversion volimg chooses, and the upload's answer gives the
request id that ties it to Cinder's messages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from volimg.errors import AmbiguousVolume, NotFoundInCloud, VolumeNotFound
from volimg.gateway.errors import _calling, _raise_for, _request_id
from volimg.gateway.session import _UUID, NO_RETRY, Session, _require_ref
from volimg.gateway.values import _volume
from volimg.model import (
    CinderVersions,
    UploadAccepted,
    UserMessage,
    Volume,
    VolumeTypeInfo,
    version_tuple,
)

if TYPE_CHECKING:
    from volimg.planner import UploadRequest

log = logging.getLogger("volimg.gateway")  # the name -v has always shown

# Cinder lists user messages from microversion 3.3 and filters them (resource_uuid)
# only from 3.5 (cinder/api/microversions.py MESSAGES, RESOURCE_FILTER).
MESSAGES_MICROVERSION = "3.3"
MESSAGES_FILTER_MICROVERSION = "3.5"


class CinderCalls(Session):
    """What volimg asks Cinder (block storage v3), as volimg's own values."""

    def cinder_max_microversion(self) -> str | None:
        with self._calling("discovering Cinder's API versions"):
            data = self._conn.block_storage.get_endpoint_data()
        version = getattr(data, "max_microversion", None)
        if not version:
            return None
        return ".".join(str(part) for part in version[:2])

    def find_volume(self, ref: str) -> Volume:
        """A volume by ID or by exact name; refuses a name several volumes share."""
        _require_ref(ref, "volume")
        if _UUID.match(ref):
            volume = self.get_volume(ref)
            if volume is not None:
                return volume  # else a volume may be named like a UUID: try the name
        with self._calling(f"looking up volume {ref!r} in Cinder"):
            matches = [
                v for v in self._conn.block_storage.volumes(details=True, name=ref) if v.name == ref
            ]
            if not matches:
                raise VolumeNotFound(ref)
            if len(matches) > 1:
                raise AmbiguousVolume(ref, sorted(v.id for v in matches))
            return _volume(matches[0])

    def list_volume_names(self) -> dict[str, str]:
        """Every volume of the caller's project: id and name (shell completion).

        The summary list (``GET /v3/volumes``, not ``/detail``) is enough, and Cinder
        shows an admin only their own project's volumes unless asked for all_tenants.
        """
        with _calling("listing volume names"):
            return {v.id: v.name or "" for v in self._conn.block_storage.volumes(details=False)}

    def get_volume(self, volume_id: str) -> Volume | None:
        from openstack import exceptions as sdk

        with self._calling(f"reading volume {volume_id} from Cinder"):
            try:
                return _volume(self._conn.block_storage.get_volume(volume_id))
            except sdk.NotFoundException:
                return None

    def volume_type(self, name_or_id: str, *, specs_visible: bool) -> VolumeTypeInfo | None:
        """The type and its ``image_service:store_id``; None if the type is not visible."""
        from openstack import exceptions as sdk

        with self._calling(f"reading volume type {name_or_id!r} from Cinder"):
            found = None
            if _UUID.match(name_or_id):
                with suppress(sdk.NotFoundException):
                    found = self._conn.block_storage.get_type(name_or_id)
            if found is None:
                # A volume shows its type by name, and Cinder reads type IDs only
                # (cinder/volume/volume_types.py get_volume_type): find_type's first
                # GET /types/<name> is a certain 404, so go straight to the list, with
                # private types too (Cinder's 'none'; the default lists public ones).
                found = next(
                    (
                        t
                        for t in self._conn.block_storage.types(is_public="none")
                        if name_or_id in (t.name, t.id)
                    ),
                    None,
                )
            if found is None:
                return None
        specs = found.extra_specs or {}
        return VolumeTypeInfo(
            name=found.name,
            store=specs.get("image_service:store_id") or None,
            specs_visible=specs_visible,
        )

    def set_volume_image_metadata(self, volume_id: str, metadata: Mapping[str, str]) -> None:
        """Add keys to a volume's image metadata (``os-set_image_metadata``).

        Cinder copies them onto every image it uploads from the volume, before it
        answers the upload (cinder/volume/api.py ``_merge_volume_image_meta``). Safe
        to resend: it merges the same keys again. Refused (400) while the volume is
        ``uploading`` or ``maintenance``.
        """
        with self._calling(f"marking volume {volume_id} (Cinder image metadata)"):
            response = self._conn.block_storage.post(
                f"/volumes/{volume_id}/action",
                json={"os-set_image_metadata": {"metadata": dict(metadata)}},
            )
            _raise_for(response)

    def unset_volume_image_metadata(self, volume_id: str, key: str) -> None:
        """Remove one key of a volume's image metadata; a key already gone is fine.

        ``os-unset_image_metadata`` takes one key a request; 404 when the key is not
        there (cinder/api/contrib/volume_image_metadata.py), 400 while uploading.
        """
        try:
            with self._calling(f"removing {key} from volume {volume_id}'s image metadata"):
                response = self._conn.block_storage.post(
                    f"/volumes/{volume_id}/action",
                    json={"os-unset_image_metadata": {"key": key}},
                )
                _raise_for(response)
        except NotFoundInCloud:
            return

    def upload_volume(self, volume_id: str, request: UploadRequest) -> UploadAccepted:
        """POST os-volume_upload_image once. Never retried: it creates an image."""
        body: dict[str, Any] = {"image_name": request.image_name, "force": request.force}
        for key in ("disk_format", "container_format", "visibility", "protected"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        with self._calling(f"asking Cinder to upload volume {volume_id}"):
            response = self._conn.block_storage.post(
                f"/volumes/{volume_id}/action",
                json={"os-volume_upload_image": body},
                microversion=request.microversion,
                **NO_RETRY,
            )
            _raise_for(response)
            image_id = response.json()["os-volume_upload_image"]["image_id"]
        log.info("Cinder accepted the upload of volume %s: image %s", volume_id, image_id)
        return UploadAccepted(image_id=image_id, request_id=_request_id(response))

    def volume_messages(self, volume_id: str) -> list[UserMessage]:
        """Cinder's user messages about a volume, newest first (why an upload failed)."""
        max_version = self.cinder_max_microversion() or MESSAGES_MICROVERSION
        filtered = version_tuple(max_version) >= version_tuple(MESSAGES_FILTER_MICROVERSION)
        with self._calling(f"reading Cinder's messages about volume {volume_id}"):
            response = self._conn.block_storage.get(
                "/messages",
                params={"resource_uuid": volume_id},
                microversion=MESSAGES_FILTER_MICROVERSION if filtered else MESSAGES_MICROVERSION,
            )
            _raise_for(response)
            found = [
                UserMessage(
                    event_id=m.get("event_id", ""),
                    user_message=m.get("user_message", ""),
                    request_id=m.get("request_id"),
                    created_at=m.get("created_at"),
                )
                for m in response.json().get("messages", [])
                if m.get("resource_uuid") == volume_id
            ]
        return sorted(found, key=lambda m: m.created_at or "", reverse=True)

    def list_volumes(
        self, *, metadata: Mapping[str, str] | None = None, all_projects: bool = False
    ) -> list[Volume]:
        """Volumes whose metadata holds every given pair, filtered by Cinder, all pages.

        Cinder reads the ``metadata`` filter with ``ast.literal_eval``
        (volume/api.py ``check_volume_filters``), so it travels as a Python dict
        literal, and every pair must match exactly (db/api.py
        ``_process_volume_filters``). The filter is open to every user at every
        microversion (resource_filters.json). ``all_projects`` sends
        ``all_tenants=True``: honoured for admins, silently dropped for anyone else.

        The literal goes in openstacksdk's client-side name ``properties``: given as
        ``metadata=`` the SDK would also filter the answer itself, comparing each
        volume's metadata dict with the string (nothing matches), and a dict would be
        sent as one ``metadata=KEY`` parameter per key, which Cinder matches with no
        volume. No ``limit`` is sent: Cinder then pages by its ``osapi_max_limit``
        with next links, which the SDK follows, and the SDK's extra probe for a
        further page (made whenever a limit was given) is saved.
        """
        query: dict[str, Any] = {}
        action = "listing volumes"
        if metadata:
            query["properties"] = repr({str(k): str(v) for k, v in metadata.items()})
            action += " with metadata " + ", ".join(f"{k}={v}" for k, v in metadata.items())
        with _calling(action):
            return [
                _volume(v)
                for v in self._conn.block_storage.volumes(
                    details=True, all_projects=all_projects, **query
                )
            ]

    def volumes_in_status(self, status: str) -> list[Volume]:
        """Your volumes in one status, filtered by Cinder (``status`` is open to every
        user, resource_filters.json), all pages: the batch's poller asks for
        ``uploading`` to learn which uploads Cinder is still working on."""
        with _calling(f"listing {status} volumes"):
            return [
                _volume(v) for v in self._conn.block_storage.volumes(details=True, status=status)
            ]

    def cinder_versions(self) -> CinderVersions:
        """The microversion range of Cinder's version document (``GET /v3/``), which
        keystoneauth has already read to discover the endpoint."""
        with self._calling("discovering Cinder's API versions"):
            data = self._conn.block_storage.get_endpoint_data()

        def text(version: Any) -> str | None:
            return ".".join(str(part) for part in version[:2]) if version else None

        return CinderVersions(
            min_version=text(getattr(data, "min_microversion", None)),
            max_version=text(getattr(data, "max_microversion", None)),
        )

    def volume_types_with_specs(self, *, specs_visible: bool) -> list[VolumeTypeInfo]:
        """Every volume type visible to you, private ones too, with its
        ``image_service:store_id``: one listing (``GET /v3/{project}/types``).

        Cinder shows that extra spec only to roles its policy allows (admins by
        default), so ``specs_visible`` says whether a missing store means "none".
        """
        with self._calling("listing Cinder's volume types"):
            return [
                VolumeTypeInfo(
                    name=found.name,
                    store=(found.extra_specs or {}).get("image_service:store_id") or None,
                    specs_visible=specs_visible,
                )
                for found in self._conn.block_storage.types(is_public="none")
            ]
