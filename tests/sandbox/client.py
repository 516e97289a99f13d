"""A tiny plain-HTTP OpenStack client for conformance tests.

It reads a cloud's credentials from clouds.yaml, gets a token from Keystone and finds
the Cinder and Glance endpoints in the catalog - nothing else - so tests see exactly
what goes over the wire, on the sandbox and on a real cloud alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml

NO_TOKEN = ""
JSON_ACCEPT = {"Accept": "application/json"}


class Api:
    """One authenticated user of one cloud, speaking raw HTTP."""

    def __init__(self, clouds_yaml: Path, cloud: str) -> None:
        config = yaml.safe_load(clouds_yaml.read_text())["clouds"][cloud]
        self.auth = config["auth"]
        self.region = config.get("region_name", "RegionOne")
        url = self.auth["auth_url"].rstrip("/")
        self.auth_url = url if url.endswith("/v3") else f"{url}/v3"
        self.http = requests.Session()
        response = self.issue_token()
        assert response.status_code == 201, response.text
        self.token = response.headers["X-Subject-Token"]
        self.token_body = response.json()["token"]
        self.project_id = self.token_body["project"]["id"]
        self.user_id = self.token_body["user"]["id"]
        self.endpoints = {
            service["type"]: endpoint["url"]
            for service in self.token_body["catalog"]
            for endpoint in service["endpoints"]
            if endpoint["interface"] == "public"
            and endpoint.get("region_id", self.region) == self.region
        }

    def password_body(
        self, *, password: str | None = None, project: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        user = {
            "name": self.auth["username"],
            "domain": {"name": "Default"},
            "password": password or self.auth["password"],
        }
        scope = project or {"name": self.auth["project_name"], "domain": {"name": "Default"}}
        return {
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": user}},
                "scope": {"project": scope},
            }
        }

    def issue_token(self, **kwargs: Any) -> requests.Response:
        return self.http.post(
            f"{self.auth_url}/auth/tokens", json=self.password_body(**kwargs), timeout=30
        )

    # -- raw calls ------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        all_headers = dict(JSON_ACCEPT)
        chosen = self.token if token is None else token
        if chosen:
            all_headers["X-Auth-Token"] = chosen
        all_headers.update(headers or {})
        return self.http.request(method, url, headers=all_headers, timeout=60, **kwargs)

    @property
    def volume_url(self) -> str:
        return self.endpoints["block-storage"].rstrip("/")

    @property
    def image_url(self) -> str:
        return self.endpoints["image"].rstrip("/")

    def volume(
        self,
        method: str,
        path: str,
        *,
        microversion: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Cinder, relative to the catalog's /v3/{project_id} endpoint."""
        extra = dict(headers or {})
        if microversion is not None:
            extra["OpenStack-API-Version"] = f"volume {microversion}"
        return self.request(method, self.volume_url + path, headers=extra, **kwargs)

    def image(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Glance, relative to its catalog endpoint (so paths start with /v2)."""
        return self.request(method, self.image_url + path, **kwargs)

    # -- helpers that build test fixtures --------------------------------------------------
    def create_image(
        self, name: str, data: bytes | None = None, *, store: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A raw/bare image; with `data`, uploaded (to `store`, or Glance's default)."""
        body = {"name": name, "disk_format": "raw", "container_format": "bare", **fields}
        created = self.image("POST", "/v2/images", json=body)
        assert created.status_code == 201, created.text
        image = dict(created.json())
        if data is not None:
            headers = {"Content-Type": "application/octet-stream"}
            if store:
                headers["x-image-meta-store"] = store
            uploaded = self.image(
                "PUT", f"/v2/images/{image['id']}/file", data=data, headers=headers
            )
            assert uploaded.status_code == 204, uploaded.text
            image = self.image("GET", f"/v2/images/{image['id']}").json()
        return image

    def create_volume(self, name: str, **fields: Any) -> dict[str, Any]:
        created = self.volume(
            "POST", "/volumes", json={"volume": {"size": 1, "name": name, **fields}}
        )
        assert created.status_code == 202, created.text
        return dict(created.json()["volume"])

    def wait_volume(
        self, volume_id: str, *, until: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        return wait_for(
            lambda: self.volume("GET", f"/volumes/{volume_id}").json()["volume"], until, timeout
        )

    def wait_image(
        self, image_id: str, *, until: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        return wait_for(lambda: self.image("GET", f"/v2/images/{image_id}").json(), until, timeout)

    def tasks(self, image_id: str) -> list[dict[str, Any]]:
        response = self.image("GET", f"/v2/images/{image_id}/tasks")
        assert response.status_code == 200, response.text
        return list(response.json()["tasks"])

    def wait_task(self, image_id: str, request_id: str, *, timeout: float = 120) -> dict[str, Any]:
        """The import task started by the call that answered `request_id`, once finished.

        Glance saves a task's success before it drops the image's import lock, so this
        also waits for the lock to go: only then may the next import start.
        """

        def mine() -> dict[str, Any]:
            return next((t for t in self.tasks(image_id) if t["request_id"] == request_id), {})

        task = wait_for(mine, lambda t: t.get("status") in ("success", "failure"), timeout)
        self.wait_image(
            image_id, until=lambda i: i.get("os_glance_import_task") != task["id"], timeout=timeout
        )
        return task


def wait_for(
    read: Callable[[], dict[str, Any]], until: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last seen: {value}")
        time.sleep(0.02)


def stores_of(image: dict[str, Any]) -> list[str]:
    """Glance's comma-joined `stores` field as a list."""
    return [s for s in (image.get("stores") or "").split(",") if s]
