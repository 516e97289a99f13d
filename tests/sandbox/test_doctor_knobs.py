"""The sandbox's knobs for volimg doctor's failing cases answer as the real services do.

Each knob stands for an operator's setting a client cannot see: Glance without
``enabled_backends``, a policy.yaml that changes ``copy_image``, unified limits
(``use_keystone_limits``) and their ``GET /v2/info/usage``, an edge site's glance-api
that knows fewer stores, an older Cinder. Wire shapes follow glance/api/v2/discovery.py,
glance/quota/keystone.py and glance/db/sqlalchemy/api.py (Glance 33).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.sandbox.client import Api
from volimg.sandbox import Sandbox, Timings
from volimg.sandbox.state import MIB

Start = Callable[..., tuple[Sandbox, Api, Api]]


@pytest.fixture
def start() -> Iterator[Start]:
    started: list[Sandbox] = []

    def run(**knobs: Any) -> tuple[Sandbox, Api, Api]:
        sandbox = Sandbox(seed="demo", timings=Timings.instant(), **knobs).start()
        started.append(sandbox)
        return (
            sandbox,
            Api(sandbox.clouds_yaml, sandbox.admin_cloud),
            Api(sandbox.clouds_yaml, sandbox.member_cloud),
        )

    yield run
    for sandbox in started:
        sandbox.stop()


def copy_body(*stores: str) -> dict[str, Any]:
    return {"method": {"name": "copy-image"}, "stores": list(stores), "all_stores": False}


def test_usage_is_empty_without_unified_limits(start: Start) -> None:
    _, admin, _ = start()

    response = admin.image("GET", "/v2/info/usage")

    assert response.status_code == 200
    assert response.json() == {"usage": {}}


def test_usage_with_limits_counts_the_callers_project(start: Start) -> None:
    sandbox, admin, member = start(glance_limits={"image_size_total": 1000, "image_count_total": 5})
    with sandbox.cloud.lock:
        owned = [i for i in sandbox.cloud.images.values() if i.owner == admin.project_id and i.size]
        stored = sum((i.size or 0) * len(i.locations) for i in owned) // MIB

    usage = admin.image("GET", "/v2/info/usage").json()["usage"]
    theirs = member.image("GET", "/v2/info/usage").json()["usage"]

    assert list(usage) == [
        "image_size_total",
        "image_stage_total",
        "image_count_total",
        "image_count_uploading",
    ]
    assert usage["image_size_total"] == {"usage": stored, "limit": 1000}
    assert usage["image_count_total"] == {"usage": 3, "limit": 5}  # cirros-base, 2 stamped
    assert usage["image_count_uploading"] == {"usage": 0, "limit": -1}
    assert theirs["image_count_total"] == {"usage": 0, "limit": 5}


def test_a_single_store_glance_has_no_stores_call_and_no_stores_field(start: Start) -> None:
    _, admin, _ = start(multi_store=False)

    stores = admin.image("GET", "/v2/info/stores")
    detail = admin.image("GET", "/v2/info/stores/detail")
    images = admin.image("GET", "/v2/images").json()["images"]

    assert stores.status_code == 404
    assert "Multi backend is not supported at this site." in stores.text
    assert detail.status_code == 404
    assert images
    assert all("stores" not in image for image in images)


def test_a_copy_image_policy_for_nobody_refuses_the_admin(start: Start) -> None:
    sandbox, admin, _ = start(copy_image_roles=())
    base = sandbox.cloud.find_image("cirros-base")

    response = admin.image("POST", f"/v2/images/{base.id}/import", json=copy_body("fast"))

    assert response.status_code == 403
    assert "You are not authorized to complete copy_image action." in response.text


def test_a_copy_image_policy_for_members(start: Start) -> None:
    sandbox, _, member = start(copy_image_roles=("admin", "member"))
    image = member.create_image("mine", b"data" * 100)

    response = member.image("POST", f"/v2/images/{image['id']}/import", json=copy_body("cheap"))

    assert response.status_code == 202, response.text
    assert sandbox.wait_idle()


def test_another_regions_glance_knows_fewer_stores(start: Start) -> None:
    sandbox, admin, _ = start(image_regions={"RegionTwo": ("fast", "archive")})
    image_service = next(s for s in admin.token_body["catalog"] if s["type"] == "image")
    by_region = {e["region_id"]: e["url"] for e in image_service["endpoints"]}
    base = sandbox.cloud.find_image("cirros-base")

    assert set(by_region) == {"RegionOne", "RegionTwo"}
    assert by_region["RegionTwo"].endswith("/image-regiontwo")
    assert admin.image_url == by_region["RegionOne"]  # clouds.yaml's region comes first
    edge = by_region["RegionTwo"]
    stores = admin.request("GET", f"{edge}/v2/info/stores").json()["stores"]
    assert stores == [
        {"id": "fast", "description": "Fast store for images in use", "default": "true"},
        {"id": "archive", "description": "Long-term archive store"},
    ]
    # Images are shared (one database); stores the node lacks are refused, as Glance does.
    shown = admin.request("GET", f"{edge}/v2/images/{base.id}").json()
    assert shown["stores"] == "cheap,archive"
    refused = admin.request("POST", f"{edge}/v2/images/{base.id}/import", json=copy_body("cheap"))
    assert refused.status_code == 409
    assert "Store for identifier cheap not found" in refused.text
    clouds = sandbox.clouds_yaml.read_text()
    assert 'regions: ["RegionOne", "RegionTwo"]' in clouds


def test_an_older_cinder_advertises_its_own_maximum(start: Start) -> None:
    _, admin, _ = start(cinder_max_microversion="3.0")

    root = admin.volume_url.rsplit("/v3", 1)[0]
    versions = admin.request("GET", f"{root}/").json()["versions"]
    too_new = admin.volume("GET", "/volumes", microversion="3.1")

    assert versions[0]["version"] == "3.0"
    assert too_new.status_code == 406
