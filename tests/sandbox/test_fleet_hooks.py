"""Sandbox hooks for fleet tests: the clock, never-ending imports, bulk volumes, timings.

Glance's stale import lock (glance/api/v2/images.py `_enforce_import_lock`,
`_bust_import_lock`, `_cleanup_stale_task_progress`; glance/domain Task.fail): a new
import may take the lock `os_glance_import_task` over when the holding task no longer
exists, or when its `updated_at` is at least 60 minutes old (120 while it is
`pending`). The old task is then failed "Expired lock preempted" and the lock dropped;
only once the newcomer holds the lock are the old task's stores removed from
`os_glance_importing_to_stores` / `os_glance_failed_import`. Otherwise 409 "Image has
active task". A running copy refreshes `updated_at` with each "Copied N MiB".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.conftest import CloudUnderTest
from tests.sandbox.client import Api, stores_of, wait_for
from tests.sandbox.conftest import PAYLOAD
from volimg.gateway import connect
from volimg.sandbox import Sandbox, Timings
from volimg.sandbox.state import CLOCK

MINUTE = 60.0
DAY = 24 * 3600.0
TOKEN_TTL = 7 * DAY


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The demo sandbox, with tokens that outlive the hours these tests skip forward."""
    with Sandbox(seed="demo", timings=Timings.instant(), token_ttl=TOKEN_TTL) as sb:
        yield sb


def _copy(api: Api, image_id: str, stores: list[str]) -> Any:
    body = {"method": {"name": "copy-image"}, "stores": stores}
    return api.image("POST", f"/v2/images/{image_id}/import", json=body)


def _image(api: Api, image_id: str) -> dict[str, Any]:
    return dict(api.image("GET", f"/v2/images/{image_id}").json())


def _task(api: Api, image_id: str, request_id: str) -> dict[str, Any]:
    return next(t for t in api.tasks(image_id) if t["request_id"] == request_id)


@pytest.fixture
def fast_image(sb_admin: Api) -> dict[str, Any]:
    return sb_admin.create_image("fleet-copy", PAYLOAD, store="fast")


def _stuck_import(
    sb_admin: Api, image_id: str, *, status: str, stores: list[str] | None = None
) -> dict[str, Any]:
    """Start a copy the sandbox was told to leave stuck; wait until it stands still."""
    response = _copy(sb_admin, image_id, stores or ["cheap"])
    assert response.status_code == 202, response.text
    request_id = response.headers["x-openstack-request-id"]
    task = wait_for(
        lambda: _task(sb_admin, image_id, request_id), lambda t: t["status"] == status, 10
    )
    if status == "processing":
        wait_for(
            lambda: _image(sb_admin, image_id),
            lambda i: i["os_glance_importing_to_stores"] == ",".join(sorted(stores or ["cheap"])),
            10,
        )
    time.sleep(0.05)  # several import_lag periods: a live job would have moved on
    return task


# --------------------------------------------------------------------------- the clock


def test_advance_clock_moves_now_and_stop_takes_it_back() -> None:
    before = CLOCK.offset
    with Sandbox(seed="empty", timings=Timings.instant()) as sandbox:
        sandbox.advance_clock(61 * MINUTE)
        assert sandbox.clock_offset == pytest.approx(before.total_seconds() + 61 * MINUTE)
        with pytest.raises(ValueError, match="only moves forward"):
            sandbox.advance_clock(-1)
    assert CLOCK.offset == before


def test_new_resources_are_stamped_with_the_advanced_clock(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.advance_clock(24 * 3600)
    image = sb_admin.create_image("tomorrow")
    created = datetime.strptime(image["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=timezone.utc
    )
    ahead = (created - datetime.now(timezone.utc)).total_seconds()
    assert 24 * 3600 - 5 < ahead < 24 * 3600 + 5


def test_tokens_expire_by_the_sandbox_clock_and_the_sdk_gets_a_new_one(
    sandbox_cloud: CloudUnderTest, sandbox: Sandbox, sb_admin: Api
) -> None:
    gateway = connect(sandbox_cloud.admin_cloud, None)
    image = sb_admin.create_image("token-age", PAYLOAD)
    assert gateway.get_image(image["id"]) is not None
    sandbox.advance_clock(TOKEN_TTL + 60)  # past the tokens' lifetime
    old_token = sb_admin.image("GET", f"/v2/images/{image['id']}")
    assert old_token.status_code == 401
    sandbox.requests.clear()
    assert gateway.get_image(image["id"]) is not None  # keystoneauth re-authenticates on 401
    statuses = [(r.service, r.status) for r in sandbox.requests]
    assert ("image", 401) in statuses
    assert ("identity", 201) in statuses


# ------------------------------------------------------------------ the stale import lock


def test_dead_processing_task_blocks_for_60_minutes_then_is_preempted(
    sb_admin: Api, sandbox: Sandbox, fast_image: dict[str, Any]
) -> None:
    image_id = fast_image["id"]
    sandbox.faults.abandon_import(image=image_id)
    dead = _stuck_import(sb_admin, image_id, status="processing")
    assert _image(sb_admin, image_id)["os_glance_import_task"] == dead["id"]

    refused = _copy(sb_admin, image_id, ["archive"])
    assert refused.status_code == 409
    assert "Image has active task" in refused.text
    sandbox.advance_clock(59 * MINUTE)
    assert _copy(sb_admin, image_id, ["archive"]).status_code == 409
    sandbox.advance_clock(2 * MINUTE)  # 61 minutes since the task's updated_at

    taken = _copy(sb_admin, image_id, ["archive"])
    assert taken.status_code == 202, taken.text
    new_request = taken.headers["x-openstack-request-id"]
    old = _task(sb_admin, image_id, dead["request_id"])
    assert (old["status"], old["message"]) == ("failure", "Expired lock preempted")
    new = _task(sb_admin, image_id, new_request)
    image = _image(sb_admin, image_id)
    assert image["os_glance_import_task"] == new["id"]
    assert "cheap" not in image["os_glance_importing_to_stores"].split(",")

    finished = sb_admin.wait_task(image_id, new_request, timeout=10)
    assert finished["status"] == "success"
    image = _image(sb_admin, image_id)
    assert sorted(stores_of(image)) == ["archive", "fast"]  # the dead copy never happened
    assert image["os_glance_importing_to_stores"] == ""
    assert "os_glance_import_task" not in image


def test_dead_pending_task_blocks_for_120_minutes(
    sb_admin: Api, sandbox: Sandbox, fast_image: dict[str, Any]
) -> None:
    image_id = fast_image["id"]
    sandbox.faults.abandon_import(image=image_id, status="pending")
    dead = _stuck_import(sb_admin, image_id, status="pending")
    sandbox.advance_clock(61 * MINUTE)
    assert _copy(sb_admin, image_id, ["archive"]).status_code == 409
    sandbox.advance_clock(59 * MINUTE)  # 120 minutes
    taken = _copy(sb_admin, image_id, ["archive"])
    assert taken.status_code == 202, taken.text
    old = _task(sb_admin, image_id, dead["request_id"])
    assert (old["status"], old["message"]) == ("failure", "Expired lock preempted")


def test_a_refused_takeover_drops_the_lock_but_keeps_the_old_progress(
    sb_admin: Api, sandbox: Sandbox, fast_image: dict[str, Any]
) -> None:
    """The lock is busted before the store checks; the clean-up waits for a new lock."""
    image_id = fast_image["id"]
    sandbox.faults.abandon_import(image=image_id)
    dead = _stuck_import(sb_admin, image_id, status="processing")
    sandbox.advance_clock(61 * MINUTE)
    refused = _copy(sb_admin, image_id, ["fast"])  # already there: 400 after the bust
    assert refused.status_code == 400
    image = _image(sb_admin, image_id)
    assert "os_glance_import_task" not in image
    assert image["os_glance_importing_to_stores"] == "cheap"
    assert _task(sb_admin, image_id, dead["request_id"])["status"] == "failure"


def test_a_lock_whose_task_is_gone_is_taken_over_at_once(
    sb_admin: Api, sandbox: Sandbox, fast_image: dict[str, Any]
) -> None:
    image_id = fast_image["id"]
    sandbox.faults.abandon_import(image=image_id)
    dead = _stuck_import(sb_admin, image_id, status="processing")
    with sandbox.cloud.lock:
        del sandbox.cloud.tasks[dead["id"]]  # culled from the database
    taken = _copy(sb_admin, image_id, ["archive"])
    assert taken.status_code == 202, taken.text
    # No task to read the stores from: its progress stays until overwritten.
    assert "cheap" in _image(sb_admin, image_id)["os_glance_importing_to_stores"].split(",")


def test_a_finished_task_still_holding_the_lock_keeps_its_status(
    sb_admin: Api, sandbox: Sandbox, fast_image: dict[str, Any]
) -> None:
    """Task.fail from success is an invalid transition, which Glance ignores."""
    image_id = fast_image["id"]
    response = _copy(sb_admin, image_id, ["cheap"])
    request_id = response.headers["x-openstack-request-id"]
    done = sb_admin.wait_task(image_id, request_id, timeout=10)
    with sandbox.cloud.lock:
        sandbox.cloud.images[image_id].extra["os_glance_import_task"] = done["id"]
    assert _copy(sb_admin, image_id, ["archive"]).status_code == 409
    sandbox.advance_clock(61 * MINUTE)
    assert _copy(sb_admin, image_id, ["archive"]).status_code == 202
    kept = _task(sb_admin, image_id, request_id)
    assert (kept["status"], kept["message"]) == ("success", done["message"])


def test_a_hung_live_import_is_never_preempted(
    sb_admin: Api, sandbox: Sandbox, fast_image: dict[str, Any]
) -> None:
    image_id = fast_image["id"]
    sandbox.faults.hang_import(image=image_id)
    hung = _stuck_import(sb_admin, image_id, status="processing", stores=["cheap", "archive"])
    for _ in range(3):
        sandbox.advance_clock(3 * 3600)
        assert _copy(sb_admin, image_id, ["cheap"]).status_code == 409
    task = _task(sb_admin, image_id, hung["request_id"])
    assert task["status"] == "processing"
    assert task["message"] == "Copied 0 MiB"
    image = _image(sb_admin, image_id)
    assert image["os_glance_import_task"] == hung["id"]
    assert image["os_glance_importing_to_stores"] == "archive,cheap"
    assert stores_of(image) == ["fast"]


def test_import_faults_target_one_image_and_count_down(
    sb_admin: Api, sandbox: Sandbox, fast_image: dict[str, Any]
) -> None:
    other = sb_admin.create_image("fleet-other", PAYLOAD, store="fast")
    sandbox.faults.abandon_import(image=fast_image["id"], times=1)
    response = _copy(sb_admin, other["id"], ["cheap"])
    assert (
        sb_admin.wait_task(other["id"], response.headers["x-openstack-request-id"])["status"]
        == "success"
    )
    _stuck_import(sb_admin, fast_image["id"], status="processing")
    with pytest.raises(ValueError, match="'pending' or 'processing'"):
        sandbox.faults.abandon_import(status="success")


# ------------------------------------------------------------------------ bulk volumes


def test_add_volumes_makes_a_fleet_the_api_and_the_sdk_see(
    sandbox_cloud: CloudUnderTest, sandbox: Sandbox, sb_admin: Api, sb_member: Api
) -> None:
    ids = sandbox.add_volumes(
        1005,
        name_prefix="nightly",
        base_image="cirros-base",
        volume_type="pinned-archive",
        metadata={"backup": "nightly"},
    )
    assert len(set(ids)) == 1005
    shown = sb_admin.volume("GET", f"/volumes/{ids[0]}").json()["volume"]
    base = sandbox.cloud.find_image("cirros-base")
    assert shown["name"] == "nightly-0001"
    assert (shown["status"], shown["bootable"], shown["volume_type"]) == (
        "available",
        "true",
        "pinned-archive",
    )
    assert shown["metadata"] == {"backup": "nightly"}
    assert shown["volume_image_metadata"]["image_id"] == base.id
    assert shown["os-vol-tenant-attr:tenant_id"] == sb_admin.project_id

    sandbox.requests.clear()
    gateway = connect(sandbox_cloud.admin_cloud, None)
    listed = gateway.list_volumes(metadata={"backup": "nightly"})
    assert sorted(v.id for v in listed) == sorted(ids)
    pages = [r for r in sandbox.requests if r.service_path.endswith("/volumes/detail")]
    assert len(pages) == 2  # Cinder's 1000-volume pages, followed by their next link

    theirs = sandbox.add_volumes(2, name_prefix="team", project="demo")
    mine = {v["id"]: v for v in sb_member.volume("GET", "/volumes/detail").json()["volumes"]}
    assert set(theirs) <= set(mine)
    assert not set(ids) & set(mine)
    plain = mine[theirs[1]]
    assert (plain["name"], plain["volume_type"], plain["size"], plain["bootable"]) == (
        "team-0002",
        "__DEFAULT__",
        1,
        "false",
    )
    assert plain["metadata"] == {}
    assert "volume_image_metadata" not in plain


def test_add_volumes_can_be_uploaded(sb_admin: Api, sandbox: Sandbox) -> None:
    (volume_id,) = sandbox.add_volumes(1, base_image="cirros-base")
    response = sb_admin.volume(
        "POST",
        f"/volumes/{volume_id}/action",
        json={"os-volume_upload_image": {"image_name": "from-bulk"}},
    )
    assert response.status_code == 202, response.text
    image_id = response.json()["os-volume_upload_image"]["image_id"]
    assert sb_admin.wait_image(image_id, until=lambda i: i["status"] == "active")["size"]


def test_add_volumes_refuses_what_cinder_would_not_have(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="count must be"):
        sandbox.add_volumes(-1)
    with pytest.raises(KeyError):
        sandbox.add_volumes(1, volume_type="no-such-type")
    with sandbox.cloud.lock:
        sandbox.cloud.find_image("cirros-base").status = "queued"
    with pytest.raises(ValueError, match="is not active"):
        sandbox.add_volumes(1, base_image="cirros-base")


@pytest.mark.parametrize("status", ["uploading", "maintenance"])
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_metadata_cannot_change_while_uploading(
    sb_admin: Api, sandbox: Sandbox, status: str, method: str
) -> None:
    (volume_id,) = sandbox.add_volumes(1, metadata={"kept": "yes"})
    sandbox.cloud.set_volume_status(volume_id, status)
    response = sb_admin.volume(
        method, f"/volumes/{volume_id}/metadata", json={"metadata": {"a": "b"}}
    )
    assert response.status_code == 400
    assert response.json()["badRequest"]["message"] == (
        f"Invalid volume: Updating volume metadata is not allowed for volumes in {status} status."
    )
    assert sandbox.cloud.volumes[volume_id].metadata == {"kept": "yes"}


# --------------------------------------------------------------------------- timings


def test_timings_upload_one_second_and_half_a_second_per_store(
    sb_admin: Api, sandbox: Sandbox
) -> None:
    """Timings(upload=1.0, store_copy=0.5): a 1 s upload, then copies one store at a time."""
    sandbox.timings = Timings(upload=1.0, store_copy=0.5)
    lag = sandbox.timings.import_lag
    (volume_id,) = sandbox.add_volumes(1)
    started = time.monotonic()
    response = sb_admin.volume(
        "POST",
        f"/volumes/{volume_id}/action",
        json={"os-volume_upload_image": {"image_name": "timed"}},
    )
    assert response.status_code == 202
    sb_admin.wait_volume(volume_id, until=lambda v: v["status"] == "available", timeout=10)
    upload = time.monotonic() - started
    assert 1.0 <= upload < 1.5

    image_id = response.json()["os-volume_upload_image"]["image_id"]
    started = time.monotonic()
    copy = _copy(sb_admin, image_id, ["cheap", "archive"])
    assert copy.status_code == 202, copy.text
    seen: dict[str, float] = {}
    while len(seen) < 2 and time.monotonic() - started < 10:
        for store in stores_of(_image(sb_admin, image_id)):
            if store != "fast":
                seen.setdefault(store, time.monotonic() - started)
        time.sleep(0.01)
    assert lag + 0.5 <= seen["cheap"] < lag + 0.5 + 0.3
    assert lag + 1.0 <= seen["archive"] < lag + 1.0 + 0.3
    assert seen["archive"] - seen["cheap"] >= 0.45  # one store after the other
