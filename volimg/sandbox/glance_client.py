"""The sandbox Cinder's Glance client: real HTTP to the sandbox's own Glance.

Cinder talks to Glance through python-glanceclient with the user's token and its own
request ID as `X-OpenStack-Request-ID` (cinder/image/glance.py). Doing the same over
HTTP puts Cinder's calls - with `x-image-meta-store` and `x-openstack-base-image-ref` -
in the request log, marked `origin="cinder"`.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

ORIGIN_HEADER = "X-Sandbox-Internal"


@dataclass(frozen=True)
class GlanceReply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class InternalGlanceClient:
    """Calls Glance at `base_url` + `prefix` as Cinder's glanceclient would."""

    def __init__(
        self,
        host: str,
        port: int,
        prefix: str,
        secret: str,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.prefix = prefix
        self.secret = secret
        self.tls = tls

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str,
        request_id: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> GlanceReply:
        """One request; raises OSError when Glance cannot be reached (Cinder would too)."""
        all_headers = {
            "X-Auth-Token": token,
            "X-OpenStack-Request-ID": request_id,
            "User-Agent": "python-glanceclient",
            "Accept": "application/json",
            ORIGIN_HEADER: self.secret,
            **(headers or {}),
        }
        connection = (
            http.client.HTTPSConnection(self.host, self.port, timeout=30, context=self.tls)
            if self.tls is not None
            else http.client.HTTPConnection(self.host, self.port, timeout=30)
        )
        try:
            connection.request(method, self.prefix + path, body=body, headers=all_headers)
            response = connection.getresponse()
            return GlanceReply(response.status, response.read())
        finally:
            connection.close()

    def show(self, image_id: str, *, token: str, request_id: str) -> GlanceReply:
        return self.call(
            "GET", f"/v2/images/{urllib.parse.quote(image_id)}", token=token, request_id=request_id
        )

    def find_by_name(self, name: str, *, token: str, request_id: str) -> GlanceReply:
        query = urllib.parse.urlencode({"name": name})
        return self.call("GET", f"/v2/images?{query}", token=token, request_id=request_id)

    def create(self, meta: dict[str, Any], *, token: str, request_id: str) -> GlanceReply:
        body = json.dumps(meta).encode("utf-8")
        return self.call(
            "POST",
            "/v2/images",
            token=token,
            request_id=request_id,
            body=body,
            headers={"Content-Type": "application/json"},
        )

    def upload(
        self,
        image_id: str,
        data: bytes,
        *,
        token: str,
        request_id: str,
        store_id: str | None,
        base_image_ref: str | None,
    ) -> GlanceReply:
        """glanceclient `images.upload` with Cinder's `additional_headers`."""
        headers = {"Content-Type": "application/octet-stream"}
        if store_id:
            headers["x-image-meta-store"] = store_id
        if base_image_ref:
            headers["x-openstack-base-image-ref"] = base_image_ref
        return self.call(
            "PUT",
            f"/v2/images/{image_id}/file",
            token=token,
            request_id=request_id,
            body=data,
            headers=headers,
        )

    def download(self, image_id: str, *, token: str, request_id: str) -> GlanceReply:
        return self.call("GET", f"/v2/images/{image_id}/file", token=token, request_id=request_id)

    def delete(self, image_id: str, *, token: str, request_id: str) -> GlanceReply:
        return self.call("DELETE", f"/v2/images/{image_id}", token=token, request_id=request_id)

    def stores(self, *, token: str, request_id: str) -> GlanceReply:
        return self.call("GET", "/v2/info/stores", token=token, request_id=request_id)
