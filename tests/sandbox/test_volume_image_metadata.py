"""Cinder's volume image metadata actions, and what an upload copies from it.

Facts (cinder/api/contrib/volume_image_metadata.py, api/schemas/volume_image_metadata.py,
policies/volume_metadata.py, volume/api.py, db/api.py, image/image_utils.py), checked here
on the sandbox and on real Cinder 29:

* `os-set_image_metadata` `{"metadata": {...}}` merges into the volume's image metadata
  and answers 200 with ALL of it; keys `^[a-zA-Z0-9-_:. /]{1,255}$`, values strings of
  at most 65535 UTF-8 bytes ("mysql_text"), not 255 characters as for user metadata.
* `os-unset_image_metadata` `{"key": k}` answers 200 with an empty body (a bare
  `webob.Response`: text/html, and no `x-compute-request-id`); a key that is not there,
  or a volume without image metadata, is 404 "Glance metadata for volume/snapshot {id}
  cannot be found." `os-show_image_metadata` answers `{"metadata": {...}}`, or that 404.
* The schema is checked before the volume is looked up; another project's volume is a
  404 for a member; set and unset need admin or member.
* While the volume is `uploading` (or `maintenance`): 400 "Invalid volume: Updating
  volume metadata is not allowed for volumes in uploading status." / "Deleting ...",
  the unset's missing-key 404 coming first; show still works.
* At `os-volume_upload_image`, before the 202, the image is created with every key of
  the volume's image metadata that is neither a Glance core property (`checksum`,
  `container_format`, `disk_format`, `image_name`, `image_id`, `min_disk`, `min_ram`,
  `name`, `size`) nor in a reserved namespace (`os_glance`, `img_signature`,
  `signature_verified`).
* A volume with image metadata shows `volume_image_metadata` in show and detail views
  (not in summaries); a blank volume given a key has it without `image_id`.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from tests.conftest import CloudUnderTest
from tests.sandbox.client import Api
from tests.sandbox.conftest import PAYLOAD, Cleanup, unique
from volimg.sandbox import Sandbox

SET, UNSET, SHOW = "os-set_image_metadata", "os-unset_image_metadata", "os-show_image_metadata"
KEY_PATTERN = "'^[a-zA-Z0-9-_:. /]{1,255}$'"


def _action(api: Api, volume_id: str, name: str, value: Any, **kwargs: Any) -> requests.Response:
    return api.volume("POST", f"/volumes/{volume_id}/action", json={name: value}, **kwargs)


def _set(api: Api, volume_id: str, metadata: dict[str, Any], **kwargs: Any) -> requests.Response:
    return _action(api, volume_id, SET, {"metadata": metadata}, **kwargs)


def _unset(api: Api, volume_id: str, key: str) -> requests.Response:
    return _action(api, volume_id, UNSET, {"key": key})


def _show(api: Api, volume_id: str) -> requests.Response:
    return _action(api, volume_id, SHOW, None)


def _upload(api: Api, volume_id: str, name: str) -> requests.Response:
    """A raw upload (the default): on a real cloud ~6 s for a 1 GiB volume."""
    return _action(api, volume_id, "os-volume_upload_image", {"image_name": name})


def _volume(api: Api, cleanup: Cleanup, **fields: Any) -> dict[str, Any]:
    volume = cleanup.volume(api.create_volume(unique(), **fields))
    return api.wait_volume(volume["id"], until=lambda v: v["status"] == "available")


def _shown(api: Api, volume_id: str) -> dict[str, Any]:
    return dict(api.volume("GET", f"/volumes/{volume_id}").json()["volume"])


def _not_found(volume_id: str) -> dict[str, Any]:
    message = f"Glance metadata for volume/snapshot {volume_id} cannot be found."
    return {"itemNotFound": {"code": 404, "message": message}}


def _invalid_volume(verb: str) -> dict[str, Any]:
    message = (
        f"Invalid volume: {verb} volume metadata is not allowed for volumes in uploading status."
    )
    return {"badRequest": {"code": 400, "message": message}}


def _slow_uploads(cloud: CloudUnderTest, seconds: float) -> None:
    """Widen the sandbox's `uploading` window; a real raw upload already takes seconds."""
    if cloud.sandbox is not None:
        cloud.sandbox.timings.upload = seconds


def test_a_blank_volume_gets_image_metadata_and_loses_it(admin: Api, cleanup: Cleanup) -> None:
    volume = _volume(admin, cleanup)
    vid = volume["id"]
    assert "volume_image_metadata" not in volume
    shown = _show(admin, vid)
    assert shown.status_code == 404
    assert shown.json() == _not_found(vid)

    first = _set(admin, vid, {"mark": "1"})
    assert first.status_code == 200, first.text
    assert first.json() == {"metadata": {"mark": "1"}}
    assert "x-compute-request-id" in first.headers
    both = _set(admin, vid, {"run": "r1", "mark": "1"})
    assert both.status_code == 200, both.text
    assert both.json() == {"metadata": {"mark": "1", "run": "r1"}}
    assert _set(admin, vid, {"run": "r2"}).json() == {"metadata": {"mark": "1", "run": "r2"}}

    assert _show(admin, vid).json() == {"metadata": {"mark": "1", "run": "r2"}}
    view = _shown(admin, vid)
    assert view["volume_image_metadata"] == {"mark": "1", "run": "r2"}  # no image_id
    assert view["bootable"] == "false"
    detail = admin.volume("GET", "/volumes/detail").json()["volumes"]
    assert next(v for v in detail if v["id"] == vid)["volume_image_metadata"] == {
        "mark": "1",
        "run": "r2",
    }
    summaries = admin.volume("GET", "/volumes").json()["volumes"]
    assert "volume_image_metadata" not in next(v for v in summaries if v["id"] == vid)

    removed = _unset(admin, vid, "mark")
    assert removed.status_code == 200, removed.text
    assert removed.content == b""
    assert removed.headers["Content-Type"] == "text/html; charset=UTF-8"
    assert "x-compute-request-id" not in removed.headers
    assert removed.headers["OpenStack-API-Version"] == "volume 3.0"
    assert _show(admin, vid).json() == {"metadata": {"run": "r2"}}
    assert _unset(admin, vid, "run").status_code == 200
    assert "volume_image_metadata" not in _shown(admin, vid)
    assert _show(admin, vid).json() == _not_found(vid)


def test_set_on_a_volume_from_an_image_keeps_its_keys(admin: Api, cleanup: Cleanup) -> None:
    image = cleanup.image(admin.create_image(unique("base"), PAYLOAD, os_distro="cirros"))
    vid = _volume(admin, cleanup, imageRef=image["id"])["id"]
    before = _shown(admin, vid)["volume_image_metadata"]
    assert before["image_id"] == image["id"]
    assert before["os_distro"] == "cirros"

    merged = _set(admin, vid, {"volimg_mark": "1", "os_distro": "cirros"})
    assert merged.status_code == 200, merged.text
    assert merged.json() == {"metadata": {**before, "volimg_mark": "1"}}
    assert _show(admin, vid).json() == {"metadata": {**before, "volimg_mark": "1"}}
    assert _shown(admin, vid)["volume_image_metadata"] == {**before, "volimg_mark": "1"}

    assert _unset(admin, vid, "volimg_mark").status_code == 200
    assert _shown(admin, vid)["volume_image_metadata"] == before


def test_unset_of_a_missing_key_is_404(admin: Api, cleanup: Cleanup) -> None:
    vid = _volume(admin, cleanup)["id"]
    bare = _unset(admin, vid, "mark")  # no image metadata at all
    assert bare.status_code == 404
    assert bare.json() == _not_found(vid)
    assert _set(admin, vid, {"mark": "1"}).status_code == 200
    other = _unset(admin, vid, "MARK")  # keys are exact
    assert other.status_code == 404
    assert other.json() == _not_found(vid)
    assert _show(admin, vid).json() == {"metadata": {"mark": "1"}}


def test_set_and_unset_are_refused_while_uploading(
    cloud: CloudUnderTest, admin: Api, cleanup: Cleanup
) -> None:
    _slow_uploads(cloud, 2.0)
    vid = _volume(admin, cleanup)["id"]
    assert _set(admin, vid, {"mark": "1"}).status_code == 200
    upload = _upload(admin, vid, unique("img"))
    assert upload.status_code == 202, upload.text
    cleanup.images.append(upload.json()["os-volume_upload_image"]["image_id"])

    refused = _set(admin, vid, {"late": "1"})
    assert (refused.status_code, refused.json()) == (400, _invalid_volume("Updating"))
    kept = _unset(admin, vid, "mark")
    assert (kept.status_code, kept.json()) == (400, _invalid_volume("Deleting"))
    missing = _unset(admin, vid, "late")  # the key is looked for before the status
    assert (missing.status_code, missing.json()) == (404, _not_found(vid))
    during = _show(admin, vid)  # reading is not refused
    assert (during.status_code, during.json()) == (200, {"metadata": {"mark": "1"}})
    assert _shown(admin, vid)["status"] == "uploading"  # all of the above inside the window

    admin.wait_volume(vid, until=lambda v: v["status"] == "available")
    assert _unset(admin, vid, "mark").status_code == 200
    assert _set(admin, vid, {"late": "1"}).json() == {"metadata": {"late": "1"}}


def test_a_member_on_their_own_volume_and_on_another_projects(
    admin: Api, member: Api, cleanup: Cleanup
) -> None:
    own = _volume(member, cleanup)["id"]
    assert _set(member, own, {"mark": "m"}).json() == {"metadata": {"mark": "m"}}
    assert _show(member, own).json() == {"metadata": {"mark": "m"}}
    assert _unset(member, own, "mark").status_code == 200
    # An admin reaches any project's volume.
    assert _set(admin, own, {"by": "admin"}).json() == {"metadata": {"by": "admin"}}
    assert _shown(member, own)["volume_image_metadata"] == {"by": "admin"}

    theirs = _volume(admin, cleanup)["id"]
    assert _set(admin, theirs, {"mark": "a"}).status_code == 200
    gone = {"itemNotFound": {"code": 404, "message": f"Volume {theirs} could not be found."}}
    for response in (
        _set(member, theirs, {"mark": "m"}),
        _unset(member, theirs, "mark"),
        _show(member, theirs),
    ):
        assert (response.status_code, response.json()) == (404, gone)
    assert _show(admin, theirs).json() == {"metadata": {"mark": "a"}}


def test_upload_copies_custom_keys_onto_the_image_before_the_202(
    cloud: CloudUnderTest, admin: Api, cleanup: Cleanup
) -> None:
    _slow_uploads(cloud, 1.0)
    vid = _volume(admin, cleanup)["id"]
    run = uuid.uuid4().hex
    kept = {"volimg_mark": "1", "volimg_mark_run": run, "hw_disk_bus": "virtio"}
    dropped = {
        # reserved namespaces (filter_out_reserved_namespaces_metadata)
        "os_glance_mark": "x",
        "img_signature_certificate_uuid": "x",
        "signature_verified": "True",
        # glance_core_properties
        "image_name": "not-the-name",
        "image_id": str(uuid.uuid4()),
        "min_ram": "2048",
        "min_disk": "9",
        "checksum": "0" * 32,
        "size": "5",
    }
    assert _set(admin, vid, {**kept, **dropped}).status_code == 200
    name = unique("img")
    upload = _upload(admin, vid, name)
    assert upload.status_code == 202, upload.text
    image_id = upload.json()["os-volume_upload_image"]["image_id"]
    cleanup.images.append(image_id)

    created = admin.image("GET", f"/v2/images/{image_id}").json()
    assert created["status"] in ("queued", "saving")  # the upload itself comes later
    active = admin.wait_image(image_id, until=lambda i: i["status"] == "active")
    for image in (created, active):
        assert {k: image.get(k) for k in kept} == kept
        extra = {"os_glance_mark", "img_signature_certificate_uuid", "signature_verified"}
        assert not (extra | {"image_name", "image_id"}) & set(image)
        # Glance's own fields keep Glance's values.
        assert (image["name"], image["min_ram"], image["min_disk"]) == (name, 0, 0)
        assert image["checksum"] != dropped["checksum"]
        assert image["size"] != 5
    after = admin.wait_volume(vid, until=lambda v: v["status"] == "available")
    assert after["volume_image_metadata"] == {**kept, **dropped}  # the volume keeps them all


@pytest.mark.parametrize(
    ("action", "value", "message"),
    [
        (
            SET,
            "x",
            "Invalid input for field/attribute os-set_image_metadata. Value: x. "
            "'x' is not of type 'object'",
        ),
        (
            SET,
            {},
            "Invalid input for field/attribute os-set_image_metadata. Value: {}. "
            "'metadata' is a required property",
        ),
        (
            SET,
            {"metadata": {}, "extra": 1},
            "Invalid input for field/attribute os-set_image_metadata. Value: "
            "{'metadata': {}, 'extra': 1}. Additional properties are not allowed "
            "('extra' was unexpected)",
        ),
        (
            SET,
            {"metadata": "a=b"},
            "Invalid input for field/attribute metadata. Value: a=b. 'a=b' is not of type 'object'",
        ),
        (
            SET,
            {"metadata": {"a": 5}},
            "Invalid input for field/attribute a. Value: 5. 5 is not of type 'string'",
        ),
        (
            SET,
            {"metadata": {"bad!": "b", "ok": 5}},  # values first, then keys
            "Invalid input for field/attribute ok. Value: 5. 5 is not of type 'string'",
        ),
        (
            SET,
            {"metadata": {"bad!": "b", "worse?": "c"}},
            "Invalid input for field/attribute metadata. Value: {'bad!': 'b', 'worse?': 'c'}. "
            f"'bad!', 'worse?' do not match any of the regexes: {KEY_PATTERN}",
        ),
        (
            UNSET,
            {},
            "Invalid input for field/attribute os-unset_image_metadata. Value: {}. "
            "'key' is a required property",
        ),
        (
            UNSET,
            {"key": ""},
            "Invalid input for field/attribute key. Value: . '' should be non-empty",
        ),
        (
            UNSET,
            {"key": "k" * 256},
            f"Invalid input for field/attribute key. Value: {'k' * 256}. '{'k' * 256}' is too long",
        ),
        (
            UNSET,
            {"key": 1},
            "Invalid input for field/attribute key. Value: 1. 1 is not of type 'string'",
        ),
        (
            UNSET,
            {"key": "a", "keys": ["b"]},
            "Invalid input for field/attribute os-unset_image_metadata. Value: "
            "{'key': 'a', 'keys': ['b']}. Additional properties are not allowed "
            "('keys' was unexpected)",
        ),
    ],
    ids=[
        "set-not-object",
        "set-no-metadata",
        "set-extra",
        "set-metadata-not-object",
        "set-value-not-string",
        "set-values-before-keys",
        "set-bad-keys",
        "unset-no-key",
        "unset-empty-key",
        "unset-long-key",
        "unset-key-not-string",
        "unset-extra",
    ],
)
def test_schema_errors_come_before_the_volume_lookup(
    admin: Api, action: str, value: Any, message: str
) -> None:
    missing = str(uuid.uuid4())  # the schema is checked first: 400, not 404
    response = _action(admin, missing, action, value)
    assert response.status_code == 400, response.text
    assert response.json() == {"badRequest": {"code": 400, "message": message}}


def test_values_are_text_not_255_characters(admin: Api, cleanup: Cleanup) -> None:
    vid = _volume(admin, cleanup)["id"]
    long = "v" * 300
    accepted = _set(admin, vid, {"long": long})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"metadata": {"long": long}}
    too_long = "x" * 65536
    refused = _set(admin, vid, {"long": too_long})
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"] == (
        f"Invalid input for field/attribute long. Value: {too_long}. "
        f"'{too_long}' is not a 'mysql_text'"
    )
    assert _show(admin, vid).json() == {"metadata": {"long": long}}


def test_the_actions_exist_at_every_microversion(admin: Api, cleanup: Cleanup) -> None:
    vid = _volume(admin, cleanup)["id"]
    for microversion in ("3.0", "3.1", "3.60", "latest"):
        response = _set(admin, vid, {"at": microversion}, microversion=microversion)
        assert response.status_code == 200, (microversion, response.text)
        assert response.json() == {"metadata": {"at": microversion}}


def test_through_openstacksdk(cloud: CloudUnderTest, member: Api, cleanup: Cleanup) -> None:
    """The way volimg calls it: `block_storage.post` on the action URL."""
    import openstack

    conn = openstack.connect(cloud=cloud.member_cloud)
    vid = _volume(member, cleanup)["id"]
    path = f"/volumes/{vid}/action"
    marked = conn.block_storage.post(
        path, json={SET: {"metadata": {"volimg_mark": "1"}}}, microversion="3.0"
    )
    assert marked.status_code == 200, marked.text
    assert marked.json() == {"metadata": {"volimg_mark": "1"}}
    assert conn.block_storage.get_volume(vid).volume_image_metadata == {"volimg_mark": "1"}
    unmarked = conn.block_storage.post(
        path, json={UNSET: {"key": "volimg_mark"}}, microversion="3.0"
    )
    assert (unmarked.status_code, unmarked.content) == (200, b"")
    assert not conn.block_storage.get_volume(vid).volume_image_metadata


# -- sandbox-only: a user with the reader role alone ------------------------------------------


def test_a_reader_may_show_but_not_set_or_unset(sb_member: Api, sandbox: Sandbox) -> None:
    """xena_system_admin_or_project_member for set/remove; readers only read."""
    cloud = sandbox.cloud
    cloud.add_user("reader", "reader-pw", cloud.find_project("demo"), ("reader",))
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": "reader",
                        "domain": {"name": "Default"},
                        "password": "reader-pw",
                    }
                },
            },
            "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}},
        }
    }
    issued = sb_member.http.post(f"{sb_member.auth_url}/auth/tokens", json=body, timeout=30)
    assert issued.status_code == 201, issued.text
    reader = issued.headers["X-Subject-Token"]
    vid = sb_member.create_volume("readable")["id"]
    sb_member.wait_volume(vid, until=lambda v: v["status"] == "available")
    assert _set(sb_member, vid, {"mark": "1"}).status_code == 200

    path = f"/volumes/{vid}/action"
    for action, value, rule in (
        (SET, {"metadata": {"x": "1"}}, "set"),
        (UNSET, {"key": "mark"}, "remove"),
    ):
        refused = sb_member.volume("POST", path, json={action: value}, token=reader)
        assert refused.status_code == 403
        assert refused.json() == {
            "forbidden": {
                "code": 403,
                "message": f"Policy doesn't allow volume_extension:volume_image_metadata:{rule} "
                "to be performed.",
            }
        }
    shown = sb_member.volume("POST", path, json={SHOW: {}}, token=reader)
    assert (shown.status_code, shown.json()) == (200, {"metadata": {"mark": "1"}})
