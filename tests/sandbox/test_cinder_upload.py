"""Cinder's `os-volume_upload_image`, checked against what real Cinder does.

Facts (cinder/api/contrib/volume_actions.py, volume/api.py, volume/manager.py):
`image_name` is required; `disk_format`/`container_format` default to raw/bare;
`visibility` and `protected` exist from microversion 3.1 only (schema: additional
properties are rejected before). The volume must be `available` (or `in-use` with
`force` when `enable_force_upload` is on), goes `uploading`, and only at the very end
back to its previous status. The image is created in Glance before the 202 (which
carries its ID); Cinder then uploads with `x-image-meta-store` from the type's
`image_service:store_id` and `x-openstack-base-image-ref` from the volume's source image,
copying custom image properties except Glance's reserved namespaces. A failed upload
puts the volume back, deletes the queued image and records a user message
(`VOLUME_VOLUME_003_004`).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.client import Api, stores_of, wait_for
from tests.sandbox.conftest import PAYLOAD, Cleanup, unique
from volimg.sandbox import Sandbox, Timings

UPLOAD_KEYS = {
    "id",
    "updated_at",
    "status",
    "display_description",
    "size",
    "volume_type",
    "image_id",
    "container_format",
    "disk_format",
    "image_name",
    "protected",
    "visibility",
}


def _upload(api: Api, volume_id: str, microversion: str | None = None, **params: Any) -> Any:
    return api.volume(
        "POST",
        f"/volumes/{volume_id}/action",
        json={"os-volume_upload_image": params},
        microversion=microversion,
    )


def _available_volume(api: Api, cleanup: Cleanup, **fields: Any) -> dict[str, Any]:
    volume = cleanup.volume(api.create_volume(unique(), **fields))
    return api.wait_volume(volume["id"], until=lambda v: v["status"] == "available")


def _finish(
    api: Api, cleanup: Cleanup, image_id: str, volume_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    cleanup.images.append(image_id)
    image = api.wait_image(image_id, until=lambda i: i["status"] == "active")
    volume = api.wait_volume(volume_id, until=lambda v: v["status"] != "uploading")
    return image, volume


def test_upload_at_3_0(admin: Api, cleanup: Cleanup) -> None:
    volume = _available_volume(admin, cleanup)
    name = unique("img")
    response = _upload(admin, volume["id"], image_name=name)
    assert response.status_code == 202, response.text
    body = response.json()["os-volume_upload_image"]
    assert set(body) == UPLOAD_KEYS
    assert (body["id"], body["status"], body["image_name"]) == (volume["id"], "uploading", name)
    assert (body["disk_format"], body["container_format"]) == ("raw", "bare")
    assert body["size"] == 1
    assert body["visibility"] == "shared"  # Glance's default when Cinder < 3.1 sends none
    assert body["protected"] is False
    assert body["volume_type"]["name"] == volume["volume_type"]
    image, after = _finish(admin, cleanup, body["image_id"], volume["id"])
    assert after["status"] == "available"
    assert image["name"] == name
    assert image["checksum"]
    assert image["os_hash_algo"] == "sha512"
    assert image["size"] > 0
    default = next(
        s["id"]
        for s in admin.image("GET", "/v2/info/stores").json()["stores"]
        if s.get("default") == "true"
    )
    assert stores_of(image) == [default]


def test_visibility_needs_3_1(admin: Api, cleanup: Cleanup) -> None:
    volume = _available_volume(admin, cleanup)
    rejected = _upload(admin, volume["id"], image_name=unique(), visibility="private")
    assert rejected.status_code == 400
    message = rejected.json()["badRequest"]["message"]
    assert message.startswith("Invalid input for field/attribute os-volume_upload_image.")
    assert "Additional properties are not allowed ('visibility' was unexpected)" in message

    accepted = _upload(
        admin, volume["id"], "3.1", image_name=unique(), visibility="private", protected=True
    )
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()["os-volume_upload_image"]
    assert (body["visibility"], body["protected"]) == ("private", True)
    image, _ = _finish(admin, cleanup, body["image_id"], volume["id"])
    assert (image["visibility"], image["protected"]) == ("private", True)


def test_image_name_is_required(admin: Api, cleanup: Cleanup) -> None:
    volume = _available_volume(admin, cleanup)
    response = _upload(admin, volume["id"], force=False)
    assert response.status_code == 400
    assert "'image_name' is a required property" in response.json()["badRequest"]["message"]
    bad_format = _upload(admin, volume["id"], image_name=unique(), disk_format="floppy")
    assert bad_format.status_code == 400
    # jsonschema checks properties before `required`: the bad `force` is reported first.
    bad_force = _upload(admin, volume["id"], force="maybe")
    assert bad_force.json()["badRequest"]["message"].startswith(
        "Invalid input for field/attribute force. Value: maybe. 'maybe' is not one of [True, 'True',"
    )


def test_only_admins_may_upload_public(member: Api, admin: Api) -> None:
    volume = member.create_volume(unique())
    try:
        member.wait_volume(volume["id"], until=lambda v: v["status"] == "available")
        response = _upload(member, volume["id"], "3.1", image_name=unique(), visibility="public")
        assert response.status_code == 403
        assert (
            response.json()["forbidden"]["message"]
            == "Policy doesn't allow volume_extension:volume_actions:upload_public to be performed."
        )
    finally:
        member.volume("DELETE", f"/volumes/{volume['id']}")


def test_in_use_needs_force(admin: Api, cleanup: Cleanup) -> None:
    busy = admin.volume("GET", "/volumes/detail", params={"status": "in-use"}).json()["volumes"]
    if not busy:
        pytest.skip("no in-use volume on this cloud")
    volume = busy[0]
    refused = _upload(admin, volume["id"], image_name=unique())
    assert refused.status_code == 400
    assert (
        refused.json()["badRequest"]["message"]
        == f"Invalid volume: Volume {volume['id']} status must be available"
    )
    forced = _upload(admin, volume["id"], image_name=unique(), force=True)
    assert forced.status_code == 202, forced.text
    _, after = _finish(
        admin, cleanup, forced.json()["os-volume_upload_image"]["image_id"], volume["id"]
    )
    assert after["status"] == "in-use"


def test_an_uploading_volume_cannot_be_uploaded_again(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.timings.upload = 5.0
    volume = sandbox.cloud.find_volume("data-vol")
    assert _upload(sb_admin, volume.id, image_name="one").status_code == 202
    again = _upload(sb_admin, volume.id, image_name="two", force=True)
    assert again.status_code == 400
    assert (
        again.json()["badRequest"]["message"]
        == f"Invalid volume: Volume {volume.id} status must be available or in-use"
    )


def test_the_types_store_and_image_properties_are_used(admin: Api, cleanup: Cleanup) -> None:
    vtype = admin.volume(
        "POST",
        "/types",
        json={
            "volume_type": {
                "name": unique("type"),
                "extra_specs": {"image_service:store_id": "cheap"},
            }
        },
    ).json()["volume_type"]
    try:
        base = cleanup.image(
            admin.create_image(unique("base"), PAYLOAD, os_distro="cirros", hw_disk_bus="virtio")
        )
        volume = _available_volume(admin, cleanup, imageRef=base["id"], volume_type=vtype["id"])
        response = _upload(admin, volume["id"], image_name=unique("img"))
        assert response.status_code == 202, response.text
        image, _ = _finish(
            admin, cleanup, response.json()["os-volume_upload_image"]["image_id"], volume["id"]
        )
        # Glance ignores x-openstack-base-image-ref: exactly the type's store, nothing more.
        assert stores_of(image) == ["cheap"]
        assert (image["os_distro"], image["hw_disk_bus"]) == ("cirros", "virtio")
        assert not any(key.startswith("os_glance") for key in image)
        assert "image_id" not in image
        assert "image_name" not in image
    finally:
        for volume_id in cleanup.volumes:
            wait_for(
                lambda v=volume_id: admin.volume("GET", f"/volumes/{v}").json().get("volume", {}),
                lambda v: v.get("status") != "uploading",
                60,
            )
            admin.volume("DELETE", f"/volumes/{volume_id}")
        cleanup.volumes.clear()
        wait_for(
            lambda: {
                "ok": admin.volume("DELETE", f"/types/{vtype['id']}").status_code in (202, 404)
            },
            lambda r: r["ok"],
            120,
        )


# -- sandbox-only: timing, the request log, failures ------------------------------------------


def test_the_image_is_queued_at_once_and_the_volume_returns_last(
    sb_admin: Api, sandbox: Sandbox
) -> None:
    sandbox.timings.upload = 0.3
    volume = sandbox.cloud.find_volume("boot-vol")
    response = _upload(sb_admin, volume.id, image_name="queued-first")
    image_id = response.json()["os-volume_upload_image"]["image_id"]
    assert sb_admin.image("GET", f"/v2/images/{image_id}").json()["status"] == "queued"
    assert sb_admin.volume("GET", f"/volumes/{volume.id}").json()["volume"]["status"] == "uploading"
    seen: list[tuple[str, str]] = []

    def both() -> dict[str, Any]:
        pair = (
            sb_admin.image("GET", f"/v2/images/{image_id}").json()["status"],
            sb_admin.volume("GET", f"/volumes/{volume.id}").json()["volume"]["status"],
        )
        seen.append(pair)
        return {"done": pair == ("active", "available")}

    wait_for(both, lambda r: r["done"], 10)
    assert ("queued", "available") not in seen  # never back before the image is done


def test_what_cinder_sends_to_glance(sb_admin: Api, sandbox: Sandbox) -> None:
    volume = sandbox.cloud.find_volume("pinned-vol")
    base = sandbox.cloud.find_image("cirros-base")
    response = _upload(sb_admin, volume.id, image_name="pinned-image")
    action_id = response.headers["x-openstack-request-id"]
    sandbox.wait_idle()
    from_cinder = sandbox.requests.filter(origin="cinder")
    create = next(r for r in from_cinder if r.method == "POST")
    assert create.path == "/image/v2/images"
    assert create.json == {
        "container_format": "bare",
        "disk_format": "raw",
        "name": "pinned-image",
        "hw_disk_bus": "virtio",
        "os_distro": "cirros",
    }
    put = next(r for r in from_cinder if r.method == "PUT")
    assert put.header("x-image-meta-store") == "archive"
    assert put.header("x-openstack-base-image-ref") == base.id
    assert put.header("Content-Type") == "application/octet-stream"
    assert {r.request_id for r in from_cinder} == {action_id}  # Glance adopts Cinder's request ID
    assert sandbox.cloud.find_image("pinned-image").stores == ("archive",)


def test_a_blank_volume_sends_no_base_image_ref(sb_admin: Api, sandbox: Sandbox) -> None:
    _upload(sb_admin, sandbox.cloud.find_volume("data-vol").id, image_name="blank")
    sandbox.wait_idle()
    put = sandbox.requests.filter(method="PUT", origin="cinder")[0]
    assert put.header("x-openstack-base-image-ref") is None
    assert put.header("x-image-meta-store") is None


def test_a_failed_upload_restores_the_volume_and_leaves_a_message(
    sb_admin: Api, sandbox: Sandbox
) -> None:
    sandbox.faults.fail_cinder_upload(volume="boot-vol", message="disk full")
    volume = sandbox.cloud.find_volume("boot-vol")
    response = _upload(sb_admin, volume.id, image_name="doomed")
    request_id = response.headers["x-openstack-request-id"]
    image_id = response.json()["os-volume_upload_image"]["image_id"]
    sandbox.wait_idle()
    assert sb_admin.volume("GET", f"/volumes/{volume.id}").json()["volume"]["status"] == "available"
    assert sb_admin.image("GET", f"/v2/images/{image_id}").status_code == 404
    messages = sb_admin.volume(
        "GET", "/messages", params={"resource_uuid": volume.id}, microversion="3.5"
    ).json()["messages"]
    assert len(messages) == 1
    message = messages[0]
    assert message["event_id"] == "VOLUME_VOLUME_003_004"
    assert (
        message["user_message"]
        == "copy volume to image:Failed to upload volume to image at backend."
    )
    assert (message["message_level"], message["resource_type"], message["resource_uuid"]) == (
        "ERROR",
        "VOLUME",
        volume.id,
    )
    assert message["request_id"] == request_id
    assert "disk full" not in str(message)  # the internal error never reaches users
    assert set(message) == {
        "id",
        "event_id",
        "user_message",
        "message_level",
        "created_at",
        "guaranteed_until",
        "request_id",
        "links",
        "resource_type",
        "resource_uuid",
    }
    one = sb_admin.volume("GET", f"/messages/{message['id']}", microversion="3.3").json()["message"]
    assert one == message


def test_messages_filters_are_ignored_before_3_5(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.fail_cinder_upload(times=2)
    boot, pinned = sandbox.cloud.find_volume("boot-vol"), sandbox.cloud.find_volume("pinned-vol")
    _upload(sb_admin, boot.id, image_name="a")
    _upload(sb_admin, pinned.id, image_name="b")
    sandbox.wait_idle()
    at_3_3 = sb_admin.volume(
        "GET", "/messages", params={"resource_uuid": boot.id}, microversion="3.3"
    ).json()["messages"]
    assert {m["resource_uuid"] for m in at_3_3} == {boot.id, pinned.id}
    at_3_5 = sb_admin.volume(
        "GET", "/messages", params={"resource_uuid": boot.id}, microversion="3.5"
    ).json()["messages"]
    assert {m["resource_uuid"] for m in at_3_5} == {boot.id}


def test_a_failed_forced_upload_returns_to_in_use(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.fail_cinder_upload()
    busy = sandbox.cloud.find_volume("busy-vol")
    assert _upload(sb_admin, busy.id, image_name="x", force=True).status_code == 202
    sandbox.wait_idle()
    assert busy.status == "in-use"


def test_glance_refusing_cinders_upload_fails_it_like_cinder(
    sb_admin: Api, sandbox: Sandbox
) -> None:
    sandbox.faults.respond("PUT", r"/image/v2/images/.*/file$", 503, origin="cinder")
    volume = sandbox.cloud.find_volume("boot-vol")
    image_id = _upload(sb_admin, volume.id, image_name="refused").json()["os-volume_upload_image"][
        "image_id"
    ]
    sandbox.wait_idle()
    assert volume.status == "available"
    assert image_id not in sandbox.cloud.images
    assert [m.event_id for m in sandbox.cloud.messages_for(volume.id)] == ["VOLUME_VOLUME_003_004"]


def test_force_is_ignored_when_the_operator_disabled_it() -> None:
    with Sandbox(timings=Timings.instant(), enable_force_upload=False) as sb:
        api = Api(sb.clouds_yaml, sb.admin_cloud)
        busy = sb.cloud.find_volume("busy-vol")
        response = _upload(api, busy.id, image_name="forced", force=True)
        assert response.status_code == 400
        assert (
            response.json()["badRequest"]["message"]
            == f"Invalid volume: Volume {busy.id} status must be available"
        )


def test_a_failed_upload_on_any_cloud(admin: Api, cleanup: Cleanup) -> None:
    """A type may name a store Glance lacks (only extra-spec updates are checked): the
    upload then fails inside Cinder, which answers as it does for any backend failure."""
    body = {
        "volume_type": {
            "name": unique("badstore"),
            "extra_specs": {"image_service:store_id": "nope"},
        }
    }
    vtype = admin.volume("POST", "/types", json=body).json()["volume_type"]
    volume = _available_volume(admin, cleanup, volume_type=vtype["id"])
    try:
        response = _upload(admin, volume["id"], image_name=unique("doomed"))
        assert response.status_code == 202
        image_id = response.json()["os-volume_upload_image"]["image_id"]
        after = admin.wait_volume(volume["id"], until=lambda v: v["status"] != "uploading")
        assert after["status"] == "available"
        wait_for(
            lambda: {"s": admin.image("GET", f"/v2/images/{image_id}").status_code},
            lambda r: r["s"] == 404,
            30,
        )
        messages = admin.volume(
            "GET", "/messages", params={"resource_uuid": volume["id"]}, microversion="3.5"
        ).json()["messages"]
        assert [m["event_id"] for m in messages] == ["VOLUME_VOLUME_003_004"]
        assert messages[0]["request_id"] == response.headers["x-openstack-request-id"]
        assert (
            messages[0]["user_message"]
            == "copy volume to image:Failed to upload volume to image at backend."
        )
    finally:
        admin.volume("DELETE", f"/volumes/{volume['id']}")
        cleanup.volumes.remove(volume["id"])
        wait_for(
            lambda: {
                "ok": admin.volume("DELETE", f"/types/{vtype['id']}").status_code in (202, 404)
            },
            lambda r: r["ok"],
            120,
        )
