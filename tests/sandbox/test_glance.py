"""Glance v2 images, data and discovery with multiple stores.

Facts (glance/api/v2/images.py, image_data.py, discovery.py, versions.py): GET / is
300 with a versions list; a new image is `queued`, visibility `shared` by default,
without `stores`; `PUT .../file` (application/octet-stream) stores data in the
`x-image-meta-store` store or the default one (unknown store: 400), fills size,
checksum (md5), os_hash_algo sha512 and os_hash_value, and shows the store in the
comma-joined `stores`; `x-openstack-base-image-ref` is never read. JSON-patch updates
need `application/openstack-images-v2.1-json-patch` (else 415). Protected images cannot
be deleted (403); another project's private image is 404. `/v2/info/stores` marks the
default store; `/v2/info/stores/detail` is for admins.
"""

from __future__ import annotations

import hashlib

import requests

from tests.sandbox.client import Api, stores_of
from tests.sandbox.conftest import PAYLOAD, Cleanup, unique
from volimg.sandbox import Sandbox

PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


def _default_store(api: Api) -> str:
    return next(
        s["id"]
        for s in api.image("GET", "/v2/info/stores").json()["stores"]
        if s.get("default") == "true"
    )


def test_version_discovery(admin: Api) -> None:
    response = requests.get(
        admin.image_url + "/", headers={"Accept": "application/json"}, timeout=10
    )
    assert response.status_code == 300
    versions = response.json()["versions"]
    assert any(v["id"] == "v2.0" for v in versions)
    current = [v for v in versions if v["status"] == "CURRENT"]
    assert len(current) == 1
    assert all(v["links"][0]["href"].rstrip("/").endswith("/v2") for v in versions)
    assert "v2.12" in {v["id"] for v in versions}  # multi-store Glance serves API 2.12 (tasks)


def test_create_upload_show(admin: Api, cleanup: Cleanup) -> None:
    name = unique("img")
    created = admin.image(
        "POST",
        "/v2/images",
        json={
            "name": name,
            "disk_format": "raw",
            "container_format": "bare",
            "os_distro": "cirros",
        },
    )
    assert created.status_code == 201
    image = cleanup.image(created.json())
    assert (image["status"], image["visibility"], image["protected"]) == ("queued", "shared", False)
    assert image["size"] is None
    assert image["checksum"] is None
    assert image["os_hash_value"] is None
    assert "stores" not in image
    assert image["os_distro"] == "cirros"
    assert image["owner"] == admin.project_id
    assert image["self"] == f"/v2/images/{image['id']}"
    assert image["file"] == f"/v2/images/{image['id']}/file"
    assert image["schema"] == "/v2/schemas/image"
    assert created.headers["OpenStack-image-store-ids"]
    assert "copy-image" in created.headers["OpenStack-image-import-methods"]

    uploaded = admin.image(
        "PUT",
        f"/v2/images/{image['id']}/file",
        data=PAYLOAD,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert uploaded.status_code == 204
    shown = admin.image("GET", f"/v2/images/{image['id']}").json()
    assert shown["status"] == "active"
    assert shown["size"] == len(PAYLOAD)
    assert shown["checksum"] == hashlib.md5(PAYLOAD).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(PAYLOAD).hexdigest()
    assert shown["stores"] == _default_store(admin)
    assert shown["created_at"].endswith("Z")

    download = admin.image("GET", f"/v2/images/{image['id']}/file")
    assert download.status_code == 200
    assert download.content == PAYLOAD


def test_upload_to_a_chosen_store_ignoring_the_base_image_ref(admin: Api, cleanup: Cleanup) -> None:
    base = cleanup.image(admin.create_image(unique("base"), PAYLOAD, store="archive"))
    image = cleanup.image(admin.create_image(unique("img")))
    headers = {
        "Content-Type": "application/octet-stream",
        "x-image-meta-store": "cheap",
        "x-openstack-base-image-ref": base["id"],
    }
    assert (
        admin.image(
            "PUT", f"/v2/images/{image['id']}/file", data=PAYLOAD, headers=headers
        ).status_code
        == 204
    )
    # Glance never reads x-openstack-base-image-ref: one store, the one asked for.
    assert stores_of(admin.image("GET", f"/v2/images/{image['id']}").json()) == ["cheap"]


def test_upload_to_an_unknown_store_is_400(admin: Api, cleanup: Cleanup) -> None:
    image = cleanup.image(admin.create_image(unique("img")))
    response = admin.image(
        "PUT",
        f"/v2/images/{image['id']}/file",
        data=PAYLOAD,
        headers={"Content-Type": "application/octet-stream", "x-image-meta-store": "nope"},
    )
    assert response.status_code == 400
    assert "Store for identifier nope not found" in response.json()["message"]
    assert admin.image("GET", f"/v2/images/{image['id']}").json()["status"] == "queued"


def test_upload_needs_octet_stream_and_a_queued_image(admin: Api, cleanup: Cleanup) -> None:
    image = cleanup.image(admin.create_image(unique("img")))
    wrong = admin.image(
        "PUT",
        f"/v2/images/{image['id']}/file",
        data=PAYLOAD,
        headers={"Content-Type": "application/json"},
    )
    assert wrong.status_code == 415
    ok = admin.image(
        "PUT",
        f"/v2/images/{image['id']}/file",
        data=PAYLOAD,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert ok.status_code == 204
    twice = admin.image(
        "PUT",
        f"/v2/images/{image['id']}/file",
        data=PAYLOAD,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert twice.status_code == 409


def test_upload_must_match_the_disk_format(admin: Api, cleanup: Cleanup) -> None:
    image = cleanup.image(admin.create_image(unique("img"), disk_format="qcow2"))
    response = admin.image(
        "PUT",
        f"/v2/images/{image['id']}/file",
        data=PAYLOAD,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 415
    assert "does not match" in response.json()["message"]


def test_create_rejects_read_only_and_reserved_attributes(admin: Api) -> None:
    read_only = admin.image("POST", "/v2/images", json={"name": unique(), "status": "active"})
    assert read_only.status_code == 403
    assert read_only.json()["message"].startswith("Attribute 'status' is read-only.")
    reserved = admin.image(
        "POST", "/v2/images", json={"name": unique(), "os_glance_importing_to_stores": "x"}
    )
    assert reserved.status_code == 403
    # Glance passes this message as webob's `detail`: after the default explanation.
    assert reserved.json()["message"] == (
        "Access was denied to this resource.<br /><br />\n"
        "Attribute 'os_glance_importing_to_stores' is reserved.\n\n"
    )
    bad_format = admin.image("POST", "/v2/images", json={"name": unique(), "disk_format": "floppy"})
    assert bad_format.status_code == 400
    assert bad_format.json()["message"].startswith("Provided object does not match schema 'image'")


def test_only_admins_create_public_images(member: Api) -> None:
    response = member.image("POST", "/v2/images", json={"name": unique(), "visibility": "public"})
    assert response.status_code == 403
    assert response.json()["message"].startswith(
        "You are not authorized to complete publicize_image action."
    )


def test_json_patch_update(admin: Api, cleanup: Cleanup) -> None:
    image = cleanup.image(admin.create_image(unique("img"), PAYLOAD))
    ops = [
        {"op": "replace", "path": "/name", "value": "renamed"},
        {"op": "add", "path": "/os_distro", "value": "cirros"},
        {"op": "replace", "path": "/tags", "value": ["a", "b"]},
    ]
    response = admin.image("PATCH", f"/v2/images/{image['id']}", json=ops, headers=PATCH)
    assert response.status_code == 200
    updated = response.json()
    assert (updated["name"], updated["os_distro"], sorted(updated["tags"])) == (
        "renamed",
        "cirros",
        ["a", "b"],
    )

    removed = admin.image(
        "PATCH",
        f"/v2/images/{image['id']}",
        json=[{"op": "remove", "path": "/os_distro"}],
        headers=PATCH,
    )
    assert "os_distro" not in removed.json()
    missing = admin.image(
        "PATCH",
        f"/v2/images/{image['id']}",
        json=[{"op": "replace", "path": "/nope", "value": "x"}],
        headers=PATCH,
    )
    assert missing.status_code == 409
    read_only = admin.image(
        "PATCH",
        f"/v2/images/{image['id']}",
        json=[{"op": "replace", "path": "/checksum", "value": "x"}],
        headers=PATCH,
    )
    assert read_only.status_code == 403
    wrong_type = admin.image(
        "PATCH", f"/v2/images/{image['id']}", json=ops, headers={"Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415
    assert "application/openstack-images-v2.1-json-patch" in wrong_type.headers["Accept-Patch"]


def test_protected_images_cannot_be_deleted(admin: Api, cleanup: Cleanup) -> None:
    image = cleanup.image(admin.create_image(unique("img"), protected=True))
    refused = admin.image("DELETE", f"/v2/images/{image['id']}")
    assert refused.status_code == 403
    assert refused.json()["message"].startswith(
        f"Image {image['id']} is protected and cannot be deleted."
    )
    admin.image(
        "PATCH",
        f"/v2/images/{image['id']}",
        json=[{"op": "replace", "path": "/protected", "value": False}],
        headers=PATCH,
    )
    assert admin.image("DELETE", f"/v2/images/{image['id']}").status_code == 204
    gone = admin.image("GET", f"/v2/images/{image['id']}")
    assert gone.status_code == 404
    assert gone.json()["message"].startswith(f"No image found with ID {image['id']}")


def test_visibility_rules_for_a_member(admin: Api, member: Api, cleanup: Cleanup) -> None:
    private = cleanup.image(admin.create_image(unique("private"), visibility="private"))
    public = cleanup.image(admin.create_image(unique("public"), visibility="public"))
    assert member.image("GET", f"/v2/images/{private['id']}").status_code == 404
    assert member.image("GET", f"/v2/images/{public['id']}").status_code == 200
    listed = {
        i["id"] for i in member.image("GET", "/v2/images", params={"limit": 1000}).json()["images"]
    }
    assert public["id"] in listed
    assert private["id"] not in listed
    # Member sees the public image but may not change or delete it.
    denied = member.image(
        "PATCH",
        f"/v2/images/{public['id']}",
        json=[{"op": "replace", "path": "/name", "value": "x"}],
        headers=PATCH,
    )
    assert denied.status_code == 403
    assert member.image("DELETE", f"/v2/images/{public['id']}").status_code == 403
    assert member.image("DELETE", f"/v2/images/{private['id']}").status_code == 404


def test_list_filters(admin: Api, member: Api, cleanup: Cleanup) -> None:
    name = unique("filtered")
    active = cleanup.image(admin.create_image(name, PAYLOAD, visibility="private"))
    community = cleanup.image(admin.create_image(name, visibility="community"))
    by_name = admin.image("GET", "/v2/images", params={"name": name}).json()
    assert {i["id"] for i in by_name["images"]} == {active["id"], community["id"]}
    assert by_name["first"].startswith("/v2/images?")
    assert by_name["schema"] == "/v2/schemas/images"
    assert [
        i["id"]
        for i in admin.image("GET", "/v2/images", params={"name": name, "status": "active"}).json()[
            "images"
        ]
    ] == [active["id"]]
    # Someone else's community images only show when asked for.
    assert member.image("GET", "/v2/images", params={"name": name}).json()["images"] == []
    asked = member.image(
        "GET", "/v2/images", params={"name": name, "visibility": "community"}
    ).json()["images"]
    assert [i["id"] for i in asked] == [community["id"]]
    assert admin.image("GET", "/v2/images", params={"visibility": "nope"}).status_code == 400


def test_pagination(admin: Api, cleanup: Cleanup) -> None:
    name = unique("page")
    ids = {cleanup.image(admin.create_image(name))["id"] for _ in range(3)}
    first = admin.image("GET", "/v2/images", params={"name": name, "limit": 2}).json()
    assert len(first["images"]) == 2
    assert "next" in first
    second = admin.image("GET", first["next"]).json()
    assert {i["id"] for i in first["images"] + second["images"]} == ids


def test_stores_discovery(admin: Api, member: Api) -> None:
    stores = member.image("GET", "/v2/info/stores").json()["stores"]
    ids = [s["id"] for s in stores]
    assert {"fast", "cheap", "archive"} <= set(ids)
    assert [s["id"] for s in stores if s.get("default") == "true"] == ["fast"]
    assert all(set(s) <= {"id", "description", "default", "read-only"} for s in stores)
    denied = member.image("GET", "/v2/info/stores/detail")
    assert denied.status_code == 403
    detail = admin.image("GET", "/v2/info/stores/detail").json()["stores"]
    assert {s["id"]: s["type"] for s in detail}["cheap"] == "file"
    assert all({"weight", "properties", "type"} <= set(s) for s in detail)


def test_import_methods(admin: Api) -> None:
    info = admin.image("GET", "/v2/info/import").json()["import-methods"]
    assert info["description"] == "Import methods available."
    assert info["type"] == "array"
    assert "copy-image" in info["value"]


def test_image_schema(admin: Api) -> None:
    schema = admin.image("GET", "/v2/schemas/image").json()
    assert schema["name"] == "image"
    assert {"stores", "os_hash_value", "visibility", "os_hidden"} <= set(schema["properties"])
    assert schema["additionalProperties"] == {"type": "string"}


# -- sandbox-only ------------------------------------------------------------------------------


def test_import_methods_are_configurable() -> None:
    with Sandbox(seed="empty", import_methods=("glance-direct",)) as sb:
        api = Api(sb.clouds_yaml, sb.admin_cloud)
        assert api.image("GET", "/v2/info/import").json()["import-methods"]["value"] == [
            "glance-direct"
        ]
        image = api.create_image("x", b"data")
        refused = api.image(
            "POST",
            f"/v2/images/{image['id']}/import",
            json={"method": {"name": "copy-image"}, "stores": ["cheap"]},
        )
        assert refused.status_code == 400
        assert refused.json()["message"].startswith("Unknown import method name 'copy-image'.")


def test_read_only_stores_are_reported() -> None:
    with Sandbox(seed="empty", read_only_stores=("web",)) as sb:
        api = Api(sb.clouds_yaml, sb.admin_cloud)
        web = next(
            s for s in api.image("GET", "/v2/info/stores").json()["stores"] if s["id"] == "web"
        )
        assert web["read-only"] == "true"
        detail = next(
            s
            for s in api.image("GET", "/v2/info/stores/detail").json()["stores"]
            if s["id"] == "web"
        )
        assert (detail["type"], detail["properties"]) == ("http", {})
        image = api.create_image("x")
        refused = api.image(
            "PUT",
            f"/v2/images/{image['id']}/file",
            data=b"d",
            headers={"Content-Type": "application/octet-stream", "x-image-meta-store": "web"},
        )
        assert refused.status_code == 410
