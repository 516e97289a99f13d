"""The real openstacksdk against the cloud: discovery, microversions and the main calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CloudUnderTest
from tests.sandbox.conftest import PAYLOAD, unique


@pytest.fixture
def conn(cloud: CloudUnderTest) -> Iterator[Any]:
    import openstack

    connection = openstack.connect(cloud=cloud.admin_cloud)
    yield connection
    connection.close()


def test_discovery_and_listing(conn: Any) -> None:
    # The seed (demo on the sandbox, tests/realcloud/seed.py on the real stack).
    volumes = [v.name for v in conn.block_storage.volumes()]
    assert {"boot-vol", "pinned-vol", "data-vol", "busy-vol"} <= set(volumes)
    assert volumes.count("twin") == 2
    assert "cirros-base" in {i.name for i in conn.image.images()}
    assert {"fast", "cheap", "archive"} <= {s.id for s in conn.image.stores()}
    assert "copy-image" in conn.image.get_import_info().import_methods["value"]
    assert list(conn.block_storage.types())
    data = conn.block_storage.get_endpoint_data()
    assert str(data.min_microversion).startswith("3.0") or data.min_microversion == (3, 0)
    assert data.max_microversion is not None


def test_volume_lifecycle_and_upload(conn: Any) -> None:
    name = unique()
    volume = conn.block_storage.create_volume(size=1, name=name)
    try:
        volume = conn.block_storage.wait_for_status(
            volume, status="available", wait=120, interval=0.05
        )
        assert conn.block_storage.find_volume(name).id == volume.id
        assert volume.is_bootable is False
        result = volume.upload_to_image(
            conn.block_storage, unique("img"), disk_format="raw", container_format="bare"
        )
        assert result["status"] == "uploading"
        image = conn.image.wait_for_status(
            conn.image.get_image(result["image_id"]), status="active", wait=120, interval=0.05
        )
        try:
            assert image.checksum
            assert image.properties["stores"]
            # A fresh resource: wait_for_status returns at once if the one it gets matches.
            fresh = conn.block_storage.get_volume(volume.id)
            conn.block_storage.wait_for_status(fresh, status="available", wait=120, interval=0.05)
        finally:
            conn.image.delete_image(image)
    finally:
        conn.block_storage.delete_volume(volume)


def test_image_upload_through_the_sdk(conn: Any) -> None:
    image = conn.image.create_image(
        name=unique("sdk"),
        data=PAYLOAD,
        disk_format="raw",
        container_format="bare",
        wait=True,
        allow_duplicates=True,
    )
    try:
        image = conn.image.get_image(image.id)
        assert image.status == "active"
        assert image.size == len(PAYLOAD)
    finally:
        conn.image.delete_image(image)
