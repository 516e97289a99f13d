"""Fixtures for the sandbox conformance tests.

Tests taking `admin`/`member` run against the `cloud` fixture: the sandbox and, in the
real tier, real Keystone/Glance/Cinder - so they make their own resources, clean them
up and never rely on sandbox-only knowledge. Tests of the hooks, request log, timings
and state take `sandbox` (plus `sb_admin`/`sb_member`) and run on the sandbox alone.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CloudUnderTest
from tests.sandbox.client import Api, wait_for

# A raw payload: real Glance inspects uploads, and anything is valid raw data.
PAYLOAD = b"volimg conformance payload\n" * 100


def unique(prefix: str = "sbt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Cleanup:
    """Deletes what a test created (best effort, so a failing test still cleans up)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.images: list[str] = []
        self.volumes: list[str] = []
        self.volume_types: list[str] = []

    def image(self, image: dict[str, Any]) -> dict[str, Any]:
        self.images.append(image["id"])
        return image

    def volume(self, volume: dict[str, Any]) -> dict[str, Any]:
        self.volumes.append(volume["id"])
        return volume

    def volume_type(self, volume_type: dict[str, Any]) -> dict[str, Any]:
        """Deleted after the volumes, once none uses it."""
        self.volume_types.append(volume_type["id"])
        return volume_type

    def run(self) -> None:
        for image_id in self.images:
            self.api.image(
                "PATCH",
                f"/v2/images/{image_id}",
                json=[{"op": "replace", "path": "/protected", "value": False}],
                headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
            )
            self.api.image("DELETE", f"/v2/images/{image_id}")
        for volume_id in self.volumes:
            try:
                wait_for(
                    lambda v=volume_id: (
                        self.api.volume("GET", f"/volumes/{v}").json().get("volume", {})
                    ),
                    lambda v: v.get("status") not in ("creating", "uploading", "deleting"),
                    120,
                )
            except AssertionError:
                continue
            self.api.volume("DELETE", f"/volumes/{volume_id}")
        for type_id in self.volume_types:
            with contextlib.suppress(AssertionError):
                wait_for(
                    lambda t=type_id: self.api.volume("DELETE", f"/types/{t}").status_code,
                    lambda status: status in (202, 404),
                    60,
                )


@pytest.fixture
def admin(cloud: CloudUnderTest) -> Api:
    """The admin user of the cloud under test, over plain HTTP."""
    return Api(cloud.clouds_yaml, cloud.admin_cloud)


@pytest.fixture
def member(cloud: CloudUnderTest) -> Api:
    """The member-only user of the cloud under test, over plain HTTP."""
    return Api(cloud.clouds_yaml, cloud.member_cloud)


@pytest.fixture
def cleanup(cloud: CloudUnderTest, admin: Api) -> Iterator[Cleanup]:
    """Tracks what a test creates; deleted afterwards on a real cloud (a sandbox just stops)."""
    tracker = Cleanup(admin)
    yield tracker
    if cloud.kind != "sandbox":
        tracker.run()


@pytest.fixture
def sb_admin(sandbox_cloud: CloudUnderTest) -> Api:
    """The sandbox's admin over plain HTTP (sandbox-only tests)."""
    return Api(sandbox_cloud.clouds_yaml, sandbox_cloud.admin_cloud)


@pytest.fixture
def sb_member(sandbox_cloud: CloudUnderTest) -> Api:
    return Api(sandbox_cloud.clouds_yaml, sandbox_cloud.member_cloud)
