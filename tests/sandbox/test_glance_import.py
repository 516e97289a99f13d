"""Glance `copy-image` imports, their tasks, and deleting one store's copy.

Facts (glance/api/v2/images.py `import_image`, async_/flows/api_image_import.py,
db/sqlalchemy/api.py `_task_format`), checked in Glance's own order:
only `active` images can be copied (409); `copy_image` is admin-only (403 "You are not
authorized to complete copy_image action."); a running import holds
`os_glance_import_task` and a second one gets 409 "Image has active task"; a `stores`
body plus an `x-image-meta-store` header is 400; an unknown store is 409 "Store for
identifier X not found"; a store the image is in is 400 unless `all_stores`. The 202
has no body; the task (type `api_image_import`) carries the call's request ID, the
user, the input, progress in `message` ("Copied N MiB") and `result`.
DELETE /v2/stores/{store}/{image} is 204; 404 when not in that store; 409 for an
unknown store; 403 for the last copy or for a member.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.sandbox.client import Api, stores_of, wait_for
from tests.sandbox.conftest import PAYLOAD, Cleanup, unique
from volimg.sandbox import Sandbox, Timings

TASK_KEYS = {
    "id",
    "type",
    "status",
    "owner",
    "expires_at",
    "created_at",
    "updated_at",
    "deleted_at",
    "deleted",
    "image_id",
    "request_id",
    "user_id",
    "input",
    "result",
    "message",
}


def _copy(
    api: Api,
    image_id: str,
    stores: list[str] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Any:
    body: dict[str, Any] = {"method": {"name": "copy-image"}, **extra}
    if stores is not None:
        body["stores"] = stores
    return api.image("POST", f"/v2/images/{image_id}/import", json=body, headers=headers)


@pytest.fixture
def fast_image(admin: Api, cleanup: Cleanup) -> dict[str, Any]:
    """An active image in the `fast` store only."""
    return cleanup.image(admin.create_image(unique("copy"), PAYLOAD, store="fast"))


def test_copy_to_two_stores_and_the_task(admin: Api, fast_image: dict[str, Any]) -> None:
    response = _copy(admin, fast_image["id"], ["cheap", "archive"])
    assert response.status_code == 202
    assert response.content == b""
    request_id = response.headers["x-openstack-request-id"]
    task = admin.wait_task(fast_image["id"], request_id)
    assert set(task) == TASK_KEYS
    assert (task["type"], task["status"], task["image_id"]) == (
        "api_image_import",
        "success",
        fast_image["id"],
    )
    assert task["user_id"] == admin.user_id
    assert task["owner"] == admin.project_id
    assert task["input"]["backend"] == ["cheap", "archive"]
    assert task["input"]["import_req"]["method"] == {"name": "copy-image"}
    assert task["result"] == {"image_id": fast_image["id"]}
    assert task["message"].startswith("Copied ")
    assert task["message"].endswith(" MiB")
    assert task["expires_at"] is not None
    image = admin.wait_image(fast_image["id"], until=lambda i: "os_glance_import_task" not in i)
    assert sorted(stores_of(image)) == ["archive", "cheap", "fast"]
    assert image["os_glance_importing_to_stores"] == ""
    assert image["os_glance_failed_import"] == ""


def test_only_active_images_can_be_copied(admin: Api, cleanup: Cleanup) -> None:
    queued = cleanup.image(admin.create_image(unique("queued")))
    response = _copy(admin, queued["id"], ["cheap"])
    assert response.status_code == 409
    assert response.json()["message"].startswith(
        "Only images with status active can be targeted for copying"
    )


def test_a_store_the_image_is_in_is_400(admin: Api, fast_image: dict[str, Any]) -> None:
    response = _copy(admin, fast_image["id"], ["cheap", "fast"])
    assert response.status_code == 400
    assert response.json()["message"].startswith("Image is already present at store 'fast'")


def test_an_unknown_store_is_409(admin: Api, fast_image: dict[str, Any]) -> None:
    response = _copy(admin, fast_image["id"], ["nope"])
    assert response.status_code == 409
    assert response.json()["message"].startswith("Store for identifier nope not found")


def test_stores_and_the_store_header_together_are_400(
    admin: Api, fast_image: dict[str, Any]
) -> None:
    response = _copy(admin, fast_image["id"], ["cheap"], headers={"X-Image-Meta-Store": "cheap"})
    assert response.status_code == 400
    assert response.json()["message"].startswith(
        "Stores parameter and x-image-meta-store header can't be both specified"
    )
    both = _copy(admin, fast_image["id"], ["cheap"], all_stores=True)
    assert both.status_code == 400
    assert both.json()["message"].startswith(
        "All_stores parameter can't be used with x-image-meta-store header or stores parameter"
    )


def test_the_store_header_alone_names_the_target(admin: Api, fast_image: dict[str, Any]) -> None:
    response = _copy(admin, fast_image["id"], headers={"X-Image-Meta-Store": "cheap"})
    assert response.status_code == 202
    admin.wait_task(fast_image["id"], response.headers["x-openstack-request-id"])
    assert sorted(stores_of(admin.image("GET", f"/v2/images/{fast_image['id']}").json())) == [
        "cheap",
        "fast",
    ]


def test_members_may_not_copy(member: Api, admin: Api, cleanup: Cleanup) -> None:
    public = cleanup.image(
        admin.create_image(unique("public"), PAYLOAD, store="fast", visibility="public")
    )
    response = _copy(member, public["id"], ["cheap"])
    assert response.status_code == 403
    assert response.json()["message"].startswith(
        "You are not authorized to complete copy_image action."
    )
    private = cleanup.image(admin.create_image(unique("private"), PAYLOAD, visibility="private"))
    assert _copy(member, private["id"], ["cheap"]).status_code == 404


def test_all_stores_copies_to_the_rest(admin: Api, fast_image: dict[str, Any]) -> None:
    response = _copy(admin, fast_image["id"], all_stores=True)
    assert response.status_code == 202
    task = admin.wait_task(fast_image["id"], response.headers["x-openstack-request-id"])
    assert "fast" not in task["input"]["backend"]
    assert task["status"] == "success"
    stores = stores_of(admin.image("GET", f"/v2/images/{fast_image['id']}").json())
    assert {"fast", "cheap", "archive"} <= set(stores)
    again = _copy(admin, fast_image["id"], all_stores=True)
    assert again.status_code == 202  # nothing left to copy: accepted, and no task at all
    assert not any(
        t["request_id"] == again.headers["x-openstack-request-id"]
        for t in admin.tasks(fast_image["id"])
    )


def test_import_body_validation(admin: Api, fast_image: dict[str, Any]) -> None:
    path = f"/v2/images/{fast_image['id']}/import"
    assert (
        admin.image("POST", path, json={})
        .json()["message"]
        .startswith("Import request requires a 'method' field.")
    )
    assert (
        admin.image("POST", path, json={"method": {}})
        .json()["message"]
        .startswith("Import request requires a 'name' field.")
    )
    unknown = admin.image("POST", path, json={"method": {"name": "teleport"}})
    assert unknown.status_code == 400
    assert unknown.json()["message"].startswith("Unknown import method name 'teleport'.")
    not_bool = admin.image(
        "POST",
        path,
        json={
            "method": {"name": "copy-image"},
            "stores": ["cheap"],
            "all_stores_must_succeed": "yes",
        },
    )
    assert not_bool.status_code == 400


def test_delete_from_store(admin: Api, member: Api, fast_image: dict[str, Any]) -> None:
    image_id = fast_image["id"]
    admin.wait_task(image_id, _copy(admin, image_id, ["cheap"]).headers["x-openstack-request-id"])
    assert member.image("DELETE", f"/v2/stores/cheap/{image_id}").status_code in (403, 404)
    assert admin.image("DELETE", f"/v2/stores/archive/{image_id}").status_code == 404
    unknown = admin.image("DELETE", f"/v2/stores/nope/{image_id}")
    assert unknown.status_code == 409
    assert unknown.json()["message"].startswith(
        "The selected store nope is not available on this node."
    )
    assert admin.image("DELETE", f"/v2/stores/cheap/{image_id}").status_code == 204
    assert stores_of(admin.image("GET", f"/v2/images/{image_id}").json()) == ["fast"]
    last = admin.image("DELETE", f"/v2/stores/fast/{image_id}")
    assert last.status_code == 403
    assert last.json()["message"].startswith(
        "Cannot delete image data from the only store containing it."
    )


def test_a_member_deleting_a_store_copy_is_403(sb_member: Api, sandbox: Sandbox) -> None:
    base = sandbox.cloud.find_image("cirros-base")  # public, in two stores
    response = sb_member.image("DELETE", f"/v2/stores/cheap/{base.id}")
    assert response.status_code == 403
    assert response.json()["message"].startswith(
        "You are not authorized to complete delete_image_location action."
    )


def test_openstacksdk_copy_with_stores(admin: Api, fast_image: dict[str, Any], cloud: Any) -> None:
    import openstack

    conn = openstack.connect(cloud=cloud.admin_cloud)
    try:
        image = conn.image.get_image(fast_image["id"])
        accepted = conn.image.import_image(image, method="copy-image", stores=["cheap"])
        assert accepted.status_code == 202
        admin.wait_task(image.id, accepted.headers["x-openstack-request-id"])
        assert "cheap" in conn.image.get_image(image.id).properties["stores"]
        # openstacksdk's store= sends a stores body *and* the header: multi-store Glance
        # answers 400, and openstacksdk does not even raise for it.
        refused = conn.image.import_image(image, method="copy-image", store="archive")
        assert refused.status_code == 400
        assert "be both specified" in refused.text  # webob's HTML page (Accept: */*)
        assert refused.headers["Content-Type"].startswith("text/html")
    finally:
        conn.close()


# -- sandbox-only: timing windows, the lock and store failures ---------------------------------


def test_the_lock_is_taken_before_the_202_and_a_second_import_is_409(
    sb_admin: Api, sandbox: Sandbox
) -> None:
    sandbox.timings.store_copy = 0.5
    base = sandbox.cloud.find_image("cirros-base")
    first = _copy(sb_admin, base.id, ["fast"])
    assert first.status_code == 202
    task = sb_admin.tasks(base.id)[0]
    assert (
        sb_admin.image("GET", f"/v2/images/{base.id}").json()["os_glance_import_task"] == task["id"]
    )
    second = _copy(sb_admin, base.id, ["fast"])
    assert second.status_code == 409
    assert second.json()["message"].startswith("Image has active task")


def test_progress_properties_lag_behind_the_202(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.timings.import_lag = 0.3
    sandbox.timings.store_copy = 0.3
    base = sandbox.cloud.find_image("cirros-base")
    base.extra["os_glance_importing_to_stores"] = ""  # what an earlier copy left
    response = _copy(sb_admin, base.id, ["fast"])
    right_after = sb_admin.image("GET", f"/v2/images/{base.id}").json()
    assert right_after["os_glance_importing_to_stores"] == ""  # "empty" does not mean done
    assert sb_admin.tasks(base.id)[0]["status"] == "pending"
    during = sb_admin.wait_image(
        base.id, until=lambda i: i["os_glance_importing_to_stores"] != "", timeout=5
    )
    assert during["os_glance_importing_to_stores"] == "fast"
    task = sb_admin.wait_task(base.id, response.headers["x-openstack-request-id"])
    assert task["status"] == "success"


def test_task_statuses_move_pending_processing_success(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.timings.import_lag = 0.2
    sandbox.timings.store_copy = 0.4
    base = sandbox.cloud.find_image("cirros-base")
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            tasks = sb_admin.tasks(base.id)
            if tasks and (not seen or seen[-1] != tasks[0]["status"]):
                seen.append(tasks[0]["status"])
            stop.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    _copy(sb_admin, base.id, ["fast"])
    sandbox.wait_idle()
    stop.set()
    watcher.join()
    if seen[-1] != "success":
        seen.append(sb_admin.tasks(base.id)[0]["status"])
    assert seen == ["pending", "processing", "success"]


def test_a_failed_store_with_all_stores_must_succeed_undoes_the_copies(
    sb_admin: Api, sandbox: Sandbox
) -> None:
    sandbox.faults.fail_store_copy("archive")
    image = sb_admin.create_image("undo", PAYLOAD)
    response = _copy(sb_admin, image["id"], ["cheap", "archive"])
    task = sb_admin.wait_task(image["id"], response.headers["x-openstack-request-id"])
    assert task["status"] == "failure"
    assert task["message"] == "Task failed due to Internal Error"
    after = sb_admin.image("GET", f"/v2/images/{image['id']}").json()
    assert stores_of(after) == ["fast"]  # the copy to cheap was undone
    assert after["os_glance_failed_import"] == "archive"
    assert after["os_glance_importing_to_stores"] == ""
    assert "os_glance_import_task" not in after


def test_stores_after_the_failed_one_stay_listed_as_importing(
    sb_admin: Api, sandbox: Sandbox
) -> None:
    """Taskflow reverts only what ran: stores never reached stay in the importing list."""
    sandbox.faults.fail_store_copy("cheap")
    image = sb_admin.create_image("stuck", PAYLOAD)
    response = _copy(sb_admin, image["id"], ["cheap", "archive"])
    sb_admin.wait_task(image["id"], response.headers["x-openstack-request-id"])
    after = sb_admin.image("GET", f"/v2/images/{image['id']}").json()
    assert (after["os_glance_failed_import"], after["os_glance_importing_to_stores"]) == (
        "cheap",
        "archive",
    )


def test_a_failed_store_without_all_stores_must_succeed_is_reported(
    sb_admin: Api, sandbox: Sandbox
) -> None:
    sandbox.faults.fail_store_copy("cheap", times=1)
    image = sb_admin.create_image("partial", PAYLOAD)
    response = _copy(sb_admin, image["id"], ["cheap", "archive"], all_stores_must_succeed=False)
    task = sb_admin.wait_task(image["id"], response.headers["x-openstack-request-id"])
    assert task["status"] == "success"
    after = sb_admin.image("GET", f"/v2/images/{image['id']}").json()
    assert stores_of(after) == ["fast", "archive"]
    assert after["os_glance_failed_import"] == "cheap"
    # times=1: the next attempt succeeds, and clears the failed flag for that store.
    retry = _copy(sb_admin, image["id"], ["cheap"])
    sb_admin.wait_task(image["id"], retry.headers["x-openstack-request-id"])
    final = sb_admin.image("GET", f"/v2/images/{image['id']}").json()
    assert stores_of(final) == ["fast", "archive", "cheap"]
    assert final["os_glance_failed_import"] == ""


def test_read_only_stores_are_skipped_by_all_stores_and_fail_as_targets() -> None:
    with Sandbox(timings=Timings.instant(), read_only_stores=("web",)) as sb:
        api = Api(sb.clouds_yaml, sb.admin_cloud)
        image = api.create_image("ro", PAYLOAD)
        everywhere = _copy(api, image["id"], all_stores=True)
        task = api.wait_task(image["id"], everywhere.headers["x-openstack-request-id"])
        assert "web" not in task["input"]["backend"]
        explicit = _copy(api, image["id"], ["web"], all_stores_must_succeed=False)
        api.wait_task(image["id"], explicit.headers["x-openstack-request-id"])
        after = api.image("GET", f"/v2/images/{image['id']}").json()
        assert "web" not in stores_of(after)
        assert after["os_glance_failed_import"] == "web"


def test_deleting_the_image_mid_copy_fails_the_task(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.timings.store_copy = 0.3
    image = sb_admin.create_image("vanishing", PAYLOAD)
    response = _copy(sb_admin, image["id"], ["cheap"])
    sandbox.cloud.remove_image(image["id"])
    sandbox.wait_idle()
    task = (
        sandbox.cloud.tasks_for(image["id"])
        if image["id"] in sandbox.cloud.images
        else [
            t
            for t in sandbox.cloud.tasks.values()
            if t.request_id == response.headers["x-openstack-request-id"]
        ]
    )
    assert task[0].status == "failure"


def test_a_stale_lock_blocks_until_it_expires(sb_admin: Api, sandbox: Sandbox) -> None:
    from datetime import timedelta

    base = sandbox.cloud.find_image("cirros-base")
    sandbox.timings.import_lag = 5
    first = _copy(sb_admin, base.id, ["fast"])
    assert first.status_code == 202
    task = sandbox.cloud.tasks_for(base.id)[0]
    assert _copy(sb_admin, base.id, ["fast"]).status_code == 409
    task.updated_at -= timedelta(minutes=121)  # a pending task's lock lasts twice 60 minutes
    sandbox.timings.import_lag = 0.005
    stolen = _copy(sb_admin, base.id, ["fast"])
    assert stolen.status_code == 202
    assert task.status == "failure"
    assert task.message == "Expired lock preempted"


def test_a_task_reads_success_before_the_lock_is_released(sb_admin: Api, sandbox: Sandbox) -> None:
    """_CompleteTask saves `success`, then drops the lock: a client must wait for both."""
    image = sb_admin.create_image("window", PAYLOAD)
    sandbox.timings.import_lag = 0.4
    response = _copy(sb_admin, image["id"], ["cheap"])
    request_id = response.headers["x-openstack-request-id"]
    wait_for(lambda: sb_admin.tasks(image["id"])[0], lambda t: t["status"] == "success", 5)
    locked = sb_admin.image("GET", f"/v2/images/{image['id']}").json()
    assert "os_glance_import_task" in locked
    assert _copy(sb_admin, image["id"], ["archive"]).status_code == 409
    assert sb_admin.wait_task(image["id"], request_id)["status"] == "success"
    assert _copy(sb_admin, image["id"], ["archive"]).status_code == 202
