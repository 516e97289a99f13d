"""The sandbox's own controls: fault hooks, the request log, timings and state access."""

from __future__ import annotations

import time

import pytest
import requests

from tests.sandbox.client import Api
from volimg.sandbox import Sandbox

IMAGES = r"/image/v2/images$"


def _statuses(api: Api, count: int) -> list[int]:
    return [api.image("GET", "/v2/images").status_code for _ in range(count)]


def test_respond_answers_the_nth_request_times_times(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.respond("GET", IMAGES, 503, nth=2, times=2)
    assert _statuses(sb_admin, 5) == [200, 503, 503, 200, 200]


def test_respond_uses_the_services_error_format(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.respond("GET", r"/volumes$", 409, message="busy right now")
    sandbox.faults.respond("GET", IMAGES, 500)
    cinder = sb_admin.volume("GET", "/volumes")
    assert cinder.status_code == 409
    assert cinder.json() == {"conflictingRequest": {"code": 409, "message": "busy right now"}}
    assert cinder.headers["x-openstack-request-id"].startswith("req-")
    glance = sb_admin.image("GET", "/v2/images")
    assert glance.json()["code"] == "500 Internal Server Error"
    record = sandbox.requests.filter(path=IMAGES)[-1]
    assert (record.status, record.fault) == (500, "respond")


def test_respond_forever_with_times_none(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.respond("GET", IMAGES, 502, times=None)
    assert set(_statuses(sb_admin, 4)) == {502}
    sandbox.faults.clear()
    assert _statuses(sb_admin, 1) == [200]


def test_a_faulted_request_never_reaches_the_service(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.respond("POST", IMAGES, 500)
    assert sb_admin.image("POST", "/v2/images", json={"name": "never"}).status_code == 500
    assert sandbox.cloud.images_named("never") == []


def test_drop_connection_closes_without_an_answer(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.drop_connection("GET", IMAGES)
    with pytest.raises(requests.ConnectionError):
        sb_admin.image("GET", "/v2/images")
    assert sb_admin.image("GET", "/v2/images").status_code == 200
    dropped = sandbox.requests.filter(path=IMAGES)[0]
    assert (dropped.status, dropped.fault) == (0, "drop_connection")


def test_lose_answer_acts_then_closes_without_an_answer(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.lose_answer("POST", IMAGES)
    with pytest.raises(requests.ConnectionError):
        sb_admin.image(
            "POST",
            "/v2/images",
            json={"name": "made", "disk_format": "raw", "container_format": "bare"},
        )
    assert [i.name for i in sandbox.cloud.images_named("made")] == ["made"]
    lost = sandbox.requests.filter(method="POST", path=IMAGES)[0]
    assert (lost.status, lost.fault) == (0, "lose_answer")


def test_delay_holds_the_request(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.delay("GET", IMAGES, 0.3)
    began = time.monotonic()
    assert sb_admin.image("GET", "/v2/images").status_code == 200
    assert time.monotonic() - began >= 0.3
    began = time.monotonic()
    sb_admin.image("GET", "/v2/images")
    assert time.monotonic() - began < 0.3


def test_method_star_and_origin_filters(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.respond("*", r"/image/v2/images", 418, times=None, origin="cinder")
    assert sb_admin.image("GET", "/v2/images").status_code == 200  # a client request: untouched
    volume = sandbox.cloud.find_volume("boot-vol")
    response = sb_admin.volume(
        "POST", f"/volumes/{volume.id}/action", json={"os-volume_upload_image": {"image_name": "x"}}
    )
    assert response.status_code == 400  # Cinder could not create the image in Glance
    assert volume.status == "available"


def test_bad_fault_counts_are_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="nth"):
        sandbox.faults.respond("GET", IMAGES, 500, nth=0)
    with pytest.raises(ValueError, match="times"):
        sandbox.faults.fail_store_copy("cheap", times=0)


def test_fail_cinder_upload_targets_one_volume(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.fail_cinder_upload(volume="pinned-vol")
    for name in ("boot-vol", "pinned-vol"):
        volume = sandbox.cloud.find_volume(name)
        sb_admin.volume(
            "POST",
            f"/volumes/{volume.id}/action",
            json={"os-volume_upload_image": {"image_name": f"from-{name}"}},
        )
    sandbox.wait_idle()
    assert sandbox.cloud.find_image("from-boot-vol").status == "active"
    assert sandbox.cloud.images_named("from-pinned-vol") == []
    assert (
        sandbox.cloud.messages_for(sandbox.cloud.find_volume("pinned-vol").id)[0].internal_detail
        == "Simulated backend failure during upload"
    )


# -- the request log ----------------------------------------------------------------------------


def test_records_carry_what_tests_assert_on(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.requests.clear()
    response = sb_admin.volume("GET", "/volumes", params={"name": "boot-vol"}, microversion="3.5")
    record = sandbox.requests[0]
    assert (record.service, record.method, record.origin, record.status) == (
        "volume",
        "GET",
        "client",
        200,
    )
    assert record.path == f"/volume/v3/{sb_admin.project_id}/volumes"
    assert record.service_path == f"/v3/{sb_admin.project_id}/volumes"
    assert record.query == {"name": ["boot-vol"]}
    assert record.header("openstack-api-version") == "volume 3.5"
    assert record.header("X-Auth-Token") == "***"
    assert record.request_id == response.headers["x-openstack-request-id"]
    assert record.response_headers["OpenStack-API-Version"] == "volume 3.5"


def test_json_bodies_are_parsed_and_passwords_hidden(sb_admin: Api, sandbox: Sandbox) -> None:
    token_request = sandbox.requests.filter(service="identity", method="POST")[0]
    assert token_request.json["auth"]["identity"]["password"]["user"]["password"] == "***"
    sb_admin.image("POST", "/v2/images", json={"name": "logged"})
    created = sandbox.requests.filter(method="POST", path=IMAGES)[0]
    assert created.json == {"name": "logged"}
    image = sandbox.cloud.find_image("logged")
    sb_admin.image(
        "PATCH",
        f"/v2/images/{image.id}",
        json=[{"op": "add", "path": "/a", "value": "b"}],
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
    )
    assert sandbox.requests.filter(method="PATCH")[0].json == [
        {"op": "add", "path": "/a", "value": "b"}
    ]


def test_binary_bodies_are_counted_not_kept(sb_admin: Api, sandbox: Sandbox) -> None:
    image = sb_admin.create_image("binary", b"\x00\x01" * 50)
    put = sandbox.requests.filter(method="PUT")[0]
    assert put.json is None
    assert put.body_size == 100
    assert image["size"] == 100


def test_mutating_excludes_token_requests(sb_admin: Api, sandbox: Sandbox) -> None:
    assert sandbox.requests.mutating() == []  # only a token so far
    sb_admin.image("POST", "/v2/images", json={"name": "m"})
    sb_admin.image("GET", "/v2/images")
    assert [(r.method, r.path) for r in sandbox.requests.mutating(origin="client")] == [
        ("POST", "/image/v2/images")
    ]
    assert sandbox.requests.mutating(origin="cinder") == []


def test_records_are_in_arrival_order_and_clear_empties_the_log(
    sb_admin: Api, sandbox: Sandbox
) -> None:
    volume = sandbox.cloud.find_volume("boot-vol")
    sb_admin.volume(
        "POST",
        f"/volumes/{volume.id}/action",
        json={"os-volume_upload_image": {"image_name": "ordered"}},
    )
    sandbox.wait_idle()
    seqs = [r.seq for r in sandbox.requests]
    assert seqs == sorted(seqs)
    kinds = [(r.origin, r.method) for r in sandbox.requests if r.service in ("volume", "image")]
    assert kinds[:2] == [("client", "POST"), ("cinder", "POST")]  # the action came in first
    assert len(sandbox.requests) == len(list(sandbox.requests))
    sandbox.requests.clear()
    assert len(sandbox.requests) == 0


# -- timings and state ---------------------------------------------------------------------------


def test_timings_can_change_while_running(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.timings.volume_create = 0.4
    volume = sb_admin.create_volume("slow")
    time.sleep(0.2)
    assert sandbox.cloud.find_volume(volume["id"]).status == "creating"
    sandbox.wait_idle()
    assert sandbox.cloud.find_volume(volume["id"]).status == "available"


def test_state_changes_show_through_the_api(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.cloud.set_volume_status("data-vol", "error")
    volume = sandbox.cloud.find_volume("data-vol")
    assert sb_admin.volume("GET", f"/volumes/{volume.id}").json()["volume"]["status"] == "error"
    base = sandbox.cloud.find_image("cirros-base")
    sandbox.cloud.remove_image(base.id)
    assert sb_admin.image("GET", f"/v2/images/{base.id}").status_code == 404
    with pytest.raises(KeyError):
        sandbox.cloud.find_image("cirros-base")


def test_stopping_wakes_long_jobs_quickly() -> None:
    sb = Sandbox().start()
    sb.timings.upload = 60
    api = Api(sb.clouds_yaml, sb.admin_cloud)
    volume = sb.cloud.find_volume("boot-vol")
    api.volume(
        "POST",
        f"/volumes/{volume.id}/action",
        json={"os-volume_upload_image": {"image_name": "never"}},
    )
    began = time.monotonic()
    sb.stop()
    assert time.monotonic() - began < 3


def test_refuse_connection_resets_and_the_service_never_acts(
    sb_admin: Api, sandbox: Sandbox
) -> None:
    sandbox.faults.refuse_connection("POST", IMAGES)
    with pytest.raises(requests.ConnectionError):
        sb_admin.image(
            "POST",
            "/v2/images",
            json={"name": "never", "disk_format": "raw", "container_format": "bare"},
        )
    assert sandbox.cloud.images_named("never") == []
    refused = sandbox.requests.filter(method="POST", path=IMAGES)[0]
    assert (refused.status, refused.fault) == (0, "refuse_connection")
    assert sb_admin.image("GET", "/v2/images").status_code == 200


def test_proxy_error_is_an_html_page_with_retry_after(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.proxy_error("GET", IMAGES, 503, retry_after=7)
    answer = sb_admin.image("GET", "/v2/images")
    assert answer.status_code == 503
    assert answer.headers["Content-Type"] == "text/html"
    assert answer.headers["Retry-After"] == "7"
    assert answer.text.startswith("<html>")
    assert "503 Service Unavailable" in answer.text
    assert sb_admin.image("GET", "/v2/images").status_code == 200


def test_respond_with_a_raw_body_replaces_the_error_document(
    sb_admin: Api, sandbox: Sandbox
) -> None:
    sandbox.faults.respond("GET", IMAGES, 200, body="not json at all", content_type="text/plain")
    answer = sb_admin.image("GET", "/v2/images")
    assert (answer.status_code, answer.text) == (200, "not json at all")
    with pytest.raises(ValueError):  # noqa: PT011 - requests' JSONDecodeError is a ValueError
        answer.json()


@pytest.mark.parametrize("mode", ["truncate", "not-json", "html"])
def test_corrupt_answer_lets_the_service_act_and_spoils_the_body(
    sb_admin: Api, sandbox: Sandbox, mode: str
) -> None:
    sandbox.faults.corrupt_answer("POST", IMAGES, mode)
    answer = sb_admin.image(
        "POST",
        "/v2/images",
        json={"name": "made", "disk_format": "raw", "container_format": "bare"},
    )
    assert answer.status_code == 201
    assert answer.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):  # noqa: PT011 - requests' JSONDecodeError is a ValueError
        answer.json()
    assert [i.name for i in sandbox.cloud.images_named("made")] == ["made"]
    assert sandbox.requests.filter(method="POST", path=IMAGES)[0].fault == "corrupt_answer"


def test_corrupt_answer_refuses_an_unknown_mode(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        sandbox.faults.corrupt_answer("GET", IMAGES, "sideways")


def test_expire_token_makes_the_matching_request_401(sb_admin: Api, sandbox: Sandbox) -> None:
    sandbox.faults.expire_token("GET", IMAGES, nth=2)
    assert sb_admin.image("GET", "/v2/images").status_code == 200
    answer = sb_admin.image("GET", "/v2/images")
    assert answer.status_code == 401
    assert sandbox.requests.filter(path=IMAGES)[1].fault == "expire_token"
    assert sandbox.cloud.valid_token(sb_admin.token) is None
