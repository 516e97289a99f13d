"""Cinder v3: discovery, microversions, volumes, volume types, messages.

Facts (cinder/api/openstack/wsgi.py, api/v3/views/volumes.py, policies): min version
3.0; `OpenStack-API-Version: volume X` is echoed with `Vary`; a malformed version is
400, one out of range 406. `volume_type` is the type's name, `volume_type_id` appears
from 3.63, `bootable` is a string; `os-vol-host-attr:host` is admin-only; a volume
from an image is bootable and carries `volume_image_metadata` (values as strings).
Volume types are shown by ID only; extra specs are admin-only but for a few
user-visible keys. Messages exist from 3.3.
"""

from __future__ import annotations

import requests

from tests.sandbox.client import Api
from tests.sandbox.conftest import PAYLOAD, Cleanup, unique


def _versions_doc(admin: Api) -> dict[str, object]:
    root = admin.volume_url.split("/v3")[0]
    response = requests.get(root + "/", headers={"Accept": "application/json"}, timeout=10)
    assert response.status_code == 300
    return dict(response.json()["versions"][0])


def test_version_discovery(admin: Api) -> None:
    v3 = _versions_doc(admin)
    assert v3["id"] == "v3.0"
    assert v3["status"] == "CURRENT"
    assert v3["min_version"] == "3.0"
    assert str(v3["version"]).startswith("3.")
    assert v3["media-types"] == [
        {"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}
    ]


def test_microversion_is_echoed_with_vary(admin: Api) -> None:
    plain = admin.volume("GET", "/volumes")
    assert plain.headers["OpenStack-API-Version"] == "volume 3.0"
    assert plain.headers["Vary"] == "OpenStack-API-Version"
    asked = admin.volume("GET", "/volumes", microversion="3.45")
    assert asked.headers["OpenStack-API-Version"] == "volume 3.45"
    latest = admin.volume("GET", "/volumes", microversion="latest")
    assert latest.headers["OpenStack-API-Version"] == f"volume {_versions_doc(admin)['version']}"


def test_malformed_microversion_is_400(admin: Api) -> None:
    response = admin.volume("GET", "/volumes", microversion="3.x")
    assert response.status_code == 400
    assert (
        response.json()["badRequest"]["message"]
        == "API Version String 3.x is of invalid format. Must be of format MajorNum.MinorNum."
    )


def test_microversion_out_of_range_is_406(admin: Api) -> None:
    response = admin.volume("GET", "/volumes", microversion="3.999")
    assert response.status_code == 406
    message = response.json()["computeFault"]["message"]
    assert message.startswith(
        "Version 3.999 is not supported by the API. Minimum is 3.0 and maximum is 3."
    )
    assert admin.volume("GET", "/volumes", microversion="2.0").status_code == 406


def _wait_available(api: Api, volume_id: str) -> dict[str, object]:
    return api.wait_volume(volume_id, until=lambda v: v["status"] in ("available", "error"))


def test_create_show_list_delete(admin: Api, cleanup: Cleanup) -> None:
    name = unique()
    created = cleanup.volume(admin.create_volume(name, description="conformance"))
    assert created["status"] == "creating"
    assert created["name"] == name
    assert created["bootable"] == "false"
    volume = _wait_available(admin, created["id"])
    assert volume["status"] == "available"
    assert volume["size"] == 1
    assert volume["description"] == "conformance"
    assert volume["os-vol-tenant-attr:tenant_id"] == admin.project_id
    assert volume["os-vol-host-attr:host"]  # admins see the backend host
    assert volume["links"][0]["rel"] == "self"
    assert "volume_type_id" not in volume

    listed = admin.volume("GET", "/volumes", params={"name": name}).json()["volumes"]
    assert [(v["id"], v["name"]) for v in listed] == [(created["id"], name)]
    assert set(listed[0]) == {"id", "name", "links"}
    detailed = admin.volume(
        "GET", "/volumes/detail", params={"name": name, "status": "available"}
    ).json()["volumes"]
    assert [v["id"] for v in detailed] == [created["id"]]
    assert (
        admin.volume("GET", "/volumes/detail", params={"name": name, "status": "error"}).json()[
            "volumes"
        ]
        == []
    )

    deleted = admin.volume("DELETE", f"/volumes/{created['id']}")
    assert deleted.status_code == 202
    gone = _wait_gone(admin, created["id"])
    assert gone.json()["itemNotFound"]["message"] == f"Volume {created['id']} could not be found."


def _wait_gone(api: Api, volume_id: str) -> requests.Response:
    import time

    deadline = time.monotonic() + 120
    while True:
        response = api.volume("GET", f"/volumes/{volume_id}")
        if response.status_code == 404 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_fields_by_microversion(admin: Api, cleanup: Cleanup) -> None:
    volume = cleanup.volume(admin.create_volume(unique()))
    _wait_available(admin, volume["id"])
    old = admin.volume("GET", f"/volumes/{volume['id']}", microversion="3.0").json()["volume"]
    new = admin.volume("GET", f"/volumes/{volume['id']}", microversion="3.69").json()["volume"]
    assert "volume_type_id" not in old
    assert "group_id" not in old
    assert isinstance(new["volume_type"], str)
    assert new["volume_type_id"]
    assert new["volume_type"] != new["volume_type_id"]
    for key in (
        "group_id",
        "provider_id",
        "service_uuid",
        "shared_targets",
        "cluster_name",
        "consumes_quota",
    ):
        assert key in new, key
    assert new["consumes_quota"] is True


def test_volume_from_an_image_is_bootable_with_image_metadata(admin: Api, cleanup: Cleanup) -> None:
    image = cleanup.image(
        admin.create_image(unique("base"), PAYLOAD, os_distro="cirros", hw_disk_bus="virtio")
    )
    volume = cleanup.volume(admin.create_volume(unique(), imageRef=image["id"]))
    volume = _wait_available(admin, volume["id"])
    assert volume["status"] == "available"
    assert volume["bootable"] == "true"
    meta = volume["volume_image_metadata"]
    assert meta["image_id"] == image["id"]
    assert meta["image_name"] == image["name"]
    assert meta["os_distro"] == "cirros"
    assert meta["hw_disk_bus"] == "virtio"
    assert meta["checksum"] == image["checksum"]
    assert (meta["disk_format"], meta["container_format"]) == ("raw", "bare")
    assert meta["size"] == str(len(PAYLOAD))  # Cinder stores every value as a string
    assert meta["min_disk"] == "0"


def test_create_with_a_bad_size_or_image_is_400(admin: Api) -> None:
    zero = admin.volume("POST", "/volumes", json={"volume": {"size": 0, "name": unique()}})
    assert zero.status_code == 400
    message = zero.json()["badRequest"]["message"]
    assert (
        message
        == "Invalid input for field/attribute size. Value: 0. 0 is less than the minimum of 1"
    )
    no_size = admin.volume("POST", "/volumes", json={"volume": {"name": unique()}})
    assert no_size.status_code == 400
    no_image = admin.volume(
        "POST",
        "/volumes",
        json={"volume": {"size": 1, "imageRef": "00000000-0000-0000-0000-000000000000"}},
    )
    assert no_image.status_code == 400
    assert (
        no_image.json()["badRequest"]["message"]
        == "Invalid image identifier or unable to access requested image."
    )


def test_create_with_an_unknown_type_is_404(admin: Api) -> None:
    response = admin.volume(
        "POST", "/volumes", json={"volume": {"size": 1, "volume_type": "no-such-type"}}
    )
    assert response.status_code == 404
    assert (
        response.json()["itemNotFound"]["message"]
        == "Volume type with name no-such-type could not be found."
    )


def test_members_see_their_project_only(admin: Api, member: Api, cleanup: Cleanup) -> None:
    volume = cleanup.volume(admin.create_volume(unique()))
    assert member.volume("GET", f"/volumes/{volume['id']}").status_code == 404
    mine = member.volume("GET", "/volumes/detail").json()["volumes"]
    assert volume["id"] not in {v["id"] for v in mine}
    everything = member.volume("GET", "/volumes/detail", params={"all_tenants": "1"}).json()[
        "volumes"
    ]
    assert volume["id"] not in {v["id"] for v in everything}
    assert volume["id"] in {
        v["id"]
        for v in admin.volume("GET", "/volumes", params={"all_tenants": "1"}).json()["volumes"]
    }


def test_member_view_hides_admin_attributes(member: Api) -> None:
    volume = member.create_volume(unique())
    try:
        shown = _wait_available(member, volume["id"])
        assert "os-vol-host-attr:host" not in shown
        assert "migration_status" not in shown
        assert shown["os-vol-tenant-attr:tenant_id"] == member.project_id  # project readers see it
    finally:
        member.volume("DELETE", f"/volumes/{volume['id']}")


def test_member_unknown_filters_are_400_from_3_31(member: Api) -> None:
    assert (
        member.volume("GET", "/volumes", params={"host": "x"}, microversion="3.30").status_code
        == 200
    )
    rejected = member.volume("GET", "/volumes", params={"host": "x"}, microversion="3.31")
    assert rejected.status_code == 400
    assert (
        rejected.json()["badRequest"]["message"]
        == "Invalid filters host are found in query options."
    )
    assert (
        member.volume(
            "GET", "/volumes", params={"name": "x", "all_tenants": "1"}, microversion="3.60"
        ).status_code
        == 200
    )


def test_deleting_an_in_use_volume_is_400(admin: Api) -> None:
    # Both clouds are seeded with busy-vol attached (docs/sandbox.md, tests/realcloud/seed.py).
    busy = [
        v
        for v in admin.volume("GET", "/volumes/detail", params={"status": "in-use"}).json()[
            "volumes"
        ]
        if v["name"] == "busy-vol"
    ]
    assert busy, "the seeded in-use volume busy-vol is missing"
    response = admin.volume("DELETE", f"/volumes/{busy[0]['id']}")
    assert response.status_code == 400
    assert response.json()["badRequest"]["message"].startswith(
        "Invalid volume: Volume status must be available or error or "
    )


def test_unknown_volume_is_404_item_not_found(admin: Api) -> None:
    response = admin.volume("GET", "/volumes/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json() == {
        "itemNotFound": {
            "code": 404,
            "message": "Volume 00000000-0000-0000-0000-000000000000 could not be found.",
        }
    }


# -- volume types ---------------------------------------------------------------------------


def test_types_list_and_show_by_id(admin: Api, member: Api) -> None:
    types = admin.volume("GET", "/types").json()["volume_types"]
    assert types
    first = types[0]
    assert {
        "id",
        "name",
        "is_public",
        "description",
        "extra_specs",
        "os-volume-type-access:is_public",
        "qos_specs_id",
    } <= set(first)
    shown = admin.volume("GET", f"/types/{first['id']}").json()["volume_type"]
    assert shown["name"] == first["name"]
    by_name = admin.volume("GET", f"/types/{first['name']}")
    assert by_name.status_code == 404  # Cinder shows types by ID only
    member_view = member.volume("GET", f"/types/{first['id']}").json()["volume_type"]
    assert "qos_specs_id" not in member_view
    assert admin.volume("GET", "/types/default").status_code == 200


def test_type_create_is_admin_only(admin: Api, member: Api) -> None:
    name = unique("type")
    denied = member.volume("POST", "/types", json={"volume_type": {"name": name}})
    assert denied.status_code == 403
    assert (
        denied.json()["forbidden"]["message"]
        == "Policy doesn't allow volume_extension:type_create to be performed."
    )
    created = admin.volume(
        "POST", "/types", json={"volume_type": {"name": name, "description": "conformance"}}
    )
    assert created.status_code == 200
    vtype = created.json()["volume_type"]
    try:
        assert (vtype["name"], vtype["description"], vtype["is_public"]) == (
            name,
            "conformance",
            True,
        )
        again = admin.volume("POST", "/types", json={"volume_type": {"name": name}})
        assert again.status_code == 409
    finally:
        admin.volume("DELETE", f"/types/{vtype['id']}")


def test_extra_specs_are_admin_only_and_the_store_is_checked(admin: Api, member: Api) -> None:
    vtype = admin.volume("POST", "/types", json={"volume_type": {"name": unique("type")}}).json()[
        "volume_type"
    ]
    path = f"/types/{vtype['id']}/extra_specs"
    try:
        denied = member.volume(
            "POST", path, json={"extra_specs": {"image_service:store_id": "cheap"}}
        )
        assert denied.status_code == 403
        assert (
            denied.json()["forbidden"]["message"]
            == "Policy doesn't allow volume_extension:types_extra_specs:create to be performed."
        )
        unknown = admin.volume(
            "POST", path, json={"extra_specs": {"image_service:store_id": "no-such-store"}}
        )
        assert unknown.status_code == 404
        assert (
            unknown.json()["itemNotFound"]["message"]
            == "Store no-such-store not enabled in glance."
        )
        ok = admin.volume("POST", path, json={"extra_specs": {"image_service:store_id": "cheap"}})
        assert ok.status_code == 200
        assert ok.json() == {"extra_specs": {"image_service:store_id": "cheap"}}
        assert admin.volume("GET", path).json() == {
            "extra_specs": {"image_service:store_id": "cheap"}
        }
        # Members never see image_service:store_id (not a user-visible spec).
        assert member.volume("GET", path).json() == {"extra_specs": {}}
        assert (
            member.volume("GET", f"/types/{vtype['id']}").json()["volume_type"]["extra_specs"] == {}
        )
    finally:
        admin.volume("DELETE", f"/types/{vtype['id']}")


def test_extra_specs_of_a_type_in_use_cannot_change(admin: Api, cleanup: Cleanup) -> None:
    vtype = cleanup.volume_type(
        admin.volume("POST", "/types", json={"volume_type": {"name": unique("type")}}).json()[
            "volume_type"
        ]
    )
    volume = cleanup.volume(admin.create_volume(unique(), volume_type=vtype["name"]))
    assert volume["volume_type"] == vtype["name"]
    response = admin.volume(
        "POST",
        f"/types/{vtype['id']}/extra_specs",
        json={"extra_specs": {"image_service:store_id": "cheap"}},
    )
    assert response.status_code == 400
    assert response.json()["badRequest"]["message"] == "Volume Type is currently in use."


# -- messages --------------------------------------------------------------------------------


def test_messages_need_microversion_3_3(admin: Api) -> None:
    assert admin.volume("GET", "/messages", microversion="3.2").status_code == 404
    listed = admin.volume("GET", "/messages", microversion="3.3")
    assert listed.status_code == 200
    assert isinstance(listed.json()["messages"], list)
    missing = admin.volume(
        "GET", "/messages/00000000-0000-0000-0000-000000000000", microversion="3.3"
    )
    assert missing.status_code == 404
