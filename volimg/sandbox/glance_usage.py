"""Glance's quota usage: `GET /v2/info/usage` (Image API 2.13, Xena).

Mirrors glance/api/v2/discovery.py `InfoController.get_usage` and
glance/quota/keystone.py `get_usage`: with unified limits off (`use_keystone_limits =
false`, the sandbox's default) the answer is `{"usage": {}}`; with limits
(`Sandbox(glance_limits=...)`) every quota Glance enforces, its limit and the caller's
project's usage, counted as glance/db/sqlalchemy/api.py counts it.
"""

from __future__ import annotations

from typing import Any

from volimg.sandbox.glance_base import GlanceBase
from volimg.sandbox.http import Request, Response
from volimg.sandbox.state import MIB, Image

# glance/quota/keystone.py, in the order get_usage reports them.
QUOTAS = ("image_size_total", "image_stage_total", "image_count_total", "image_count_uploading")
_GONE = ("killed", "deleted", "pending_delete")
_UPLOADING = ("saving", "uploading", "importing")


def project_usage(images: list[Image]) -> dict[str, int]:
    """One project's usage of each quota (its images, as the DB API counts them)."""
    copying = [
        i
        for i in images
        if i.extra.get("os_glance_importing_to_stores") and i.status not in (*_UPLOADING, *_GONE)
    ]
    copying_ids = {i.id for i in copying}
    sized = [i for i in images if (i.size or 0) > 0]
    return {
        # _image_get_disk_usage_by_owner: size times the number of locations.
        "image_size_total": sum(
            (i.size or 0) * len(i.locations) for i in sized if i.status not in _GONE
        )
        // MIB,
        # _image_get_staging_usage_by_owner: uploading/importing, plus copy-image in flight.
        "image_stage_total": sum(
            i.size or 0
            for i in sized
            if i.status in ("uploading", "importing") or i.id in copying_ids
        )
        // MIB,
        "image_count_total": sum(1 for i in images if i.status not in _GONE),
        "image_count_uploading": sum(1 for i in images if i.status in _UPLOADING) + len(copying),
    }


class UsageController(GlanceBase):
    """Handler for /v2/info/usage."""

    def info_usage(self, req: Request, _: dict[str, str]) -> Response:
        assert req.token is not None
        limits = self.cloud.config.glance_limits
        if limits is None:
            return Response.json(200, {"usage": {}})
        with self.cloud.lock:
            owned = [i for i in self.cloud.images.values() if i.owner == req.token.project_id]
            usage = project_usage(owned)
        body: dict[str, Any] = {
            name: {"usage": usage[name], "limit": limits.get(name, -1)} for name in QUOTAS
        }
        return Response.json(200, {"usage": body})
