"""Cinder's wire shapes at a given microversion (cinder/api/v3/views/*.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from volimg.sandbox.state import Cloud, Token, UserMessage, Volume, VolumeType, db_time

_VERSION = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")
# cinder/policies/type_extra_specs.py USER_VISIBLE_EXTRA_SPECS
USER_VISIBLE_EXTRA_SPECS = ("RESKEY:availability_zones", "multiattach", "replication_enabled")


@dataclass(frozen=True, order=True)
class Microversion:
    """cinder/api/openstack/api_version_request.py `APIVersionRequest`."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Microversion:
        """Raises ValueError for anything but `MajorNum.MinorNum`."""
        found = _VERSION.match(text)
        if not found:
            raise ValueError(text)
        return cls(int(found.group(1)), int(found.group(2)))

    def at_least(self, text: str) -> bool:
        return self >= Microversion.parse(text)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


@dataclass(frozen=True)
class ViewContext:
    """What the views need from the request: who asks, at which microversion, from where."""

    token: Token
    version: Microversion
    base_url: str
    """Cinder's mount URL, e.g. http://127.0.0.1:1234/volume."""
    url_project: str
    """The project ID as it appeared in the request path ("" for 3.67-style URLs)."""

    @property
    def is_admin(self) -> bool:
        return self.token.is_admin

    def links(self, collection: str, identifier: str) -> list[dict[str, str]]:
        """ViewBuilder._get_links: a versioned `self` link and an unversioned `bookmark`."""
        tail = "/".join(p for p in (self.url_project, collection, identifier) if p)
        return [
            {"href": f"{self.base_url}/v3/{tail}", "rel": "self"},
            {"href": f"{self.base_url}/{tail}", "rel": "bookmark"},
        ]


def _attachments(volume: Volume, ctx: ViewContext) -> list[dict[str, Any]]:
    return [
        {
            "id": volume.id,
            "attachment_id": a.id,
            "volume_id": volume.id,
            "server_id": a.instance_uuid,
            # Only admins (and the service role) see the host (views/volumes.py).
            "host_name": a.attached_host if ctx.is_admin else None,
            "device": a.mountpoint,
            "attached_at": db_time(a.attach_time),
        }
        for a in volume.attachments
        if a.attach_status == "attached"
    ]


def volume_view(cloud: Cloud, volume: Volume, ctx: ViewContext) -> dict[str, Any]:
    """ViewBuilder.detail plus the contrib extensions that decorate it."""
    vtype = cloud.volume_types.get(volume.volume_type_id)
    view: dict[str, Any] = {
        "id": volume.id,
        "status": volume.status,
        "size": volume.size,
        "availability_zone": volume.availability_zone,
        "created_at": db_time(volume.created_at),
        "updated_at": db_time(volume.updated_at),
        "name": volume.name,
        "description": volume.description,
        # The type's name at every microversion (views/volumes.py `_get_volume_type`).
        "volume_type": vtype.name if vtype else None,
        "snapshot_id": None,
        "source_volid": None,
        "metadata": dict(volume.metadata),
        "links": ctx.links("volumes", volume.id),
        "user_id": volume.user_id,
        "bootable": str(volume.bootable).lower(),
        "encrypted": False,
        "replication_status": None,
        "consistencygroup_id": None,
        "multiattach": False,
        "attachments": _attachments(volume, ctx),
    }
    if ctx.is_admin:
        view["migration_status"] = None
    version = ctx.version
    if version.at_least("3.13"):
        view["group_id"] = None
    if ctx.is_admin and version.at_least("3.21"):
        view["provider_id"] = None
    if version.at_least("3.48"):
        shared = False if volume.host else None
        view["shared_targets"] = True if shared is None and not version.at_least("3.69") else shared
        view["service_uuid"] = volume.service_uuid
    if ctx.is_admin and version.at_least("3.61"):
        view["cluster_name"] = None
    if version.at_least("3.63"):
        view["volume_type_id"] = volume.volume_type_id
    if version.at_least("3.65"):
        view["consumes_quota"] = True
    # contrib extensions: host and migration attributes are admin-only (admin_api);
    # the tenant attribute is allowed to project readers (cinder/policies/volumes.py).
    if ctx.is_admin:
        view["os-vol-host-attr:host"] = volume.host
        view["os-vol-mig-status-attr:migstat"] = None
        view["os-vol-mig-status-attr:name_id"] = None
    if ctx.is_admin or volume.project_id == ctx.token.project_id:
        view["os-vol-tenant-attr:tenant_id"] = volume.project_id
    if volume.image_metadata:
        view["volume_image_metadata"] = dict(volume.image_metadata)
    return view


def volume_summary(volume: Volume, ctx: ViewContext) -> dict[str, Any]:
    return {"id": volume.id, "name": volume.name, "links": ctx.links("volumes", volume.id)}


def type_view(vtype: VolumeType, ctx: ViewContext) -> dict[str, Any]:
    """cinder/api/v3/views/types.py with the volume_type_access extension."""
    view: dict[str, Any] = {
        "id": vtype.id,
        "name": vtype.name,
        "is_public": vtype.is_public,
        "description": vtype.description,
    }
    # read_sensitive (admin_api) sees every spec; others only the user-visible ones.
    if ctx.is_admin:
        view["extra_specs"] = dict(vtype.extra_specs)
        view["qos_specs_id"] = vtype.qos_specs_id
    else:
        view["extra_specs"] = {
            k: v for k, v in vtype.extra_specs.items() if k in USER_VISIBLE_EXTRA_SPECS
        }
    view["os-volume-type-access:is_public"] = vtype.is_public
    return view


def type_primitive(vtype: VolumeType) -> dict[str, Any]:
    """A VolumeType object through `jsonutils.to_primitive`, as the upload 202 embeds it."""
    return {
        "id": vtype.id,
        "name": vtype.name,
        "description": vtype.description,
        "is_public": vtype.is_public,
        "extra_specs": dict(vtype.extra_specs),
        "qos_specs_id": vtype.qos_specs_id,
        "created_at": db_time(vtype.created_at),
        "updated_at": db_time(vtype.updated_at),
        "deleted_at": None,
        "deleted": False,
    }


# cinder/message/message_field.py
ACTIONS = {"003": "copy volume to image", "005": "copy image to volume"}
DETAILS = {
    "001": "An unknown error occurred.",
    "004": "Failed to upload volume to image at backend.",
}


def message_view(message: UserMessage, ctx: ViewContext) -> dict[str, Any]:
    """cinder/api/v3/views/messages.py with MessagesController._build_user_message."""
    action = ACTIONS.get(message.action_id, "unknown action")
    detail = DETAILS.get(message.detail_id, DETAILS["001"])
    view: dict[str, Any] = {
        "id": message.id,
        "event_id": message.event_id,
        "user_message": f"{action}:{detail}",
        "message_level": message.message_level,
        "created_at": db_time(message.created_at),
        "guaranteed_until": db_time(message.expires_at),
        "request_id": message.request_id,
        "links": ctx.links("messages", message.id),
    }
    if message.resource_type:
        view["resource_type"] = message.resource_type
    if message.resource_uuid:
        view["resource_uuid"] = message.resource_uuid
    return view
