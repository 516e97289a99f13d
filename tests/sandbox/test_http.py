"""Wire-level behaviour common to the services: tokens, request IDs, errors, HTTP/1.1.

Facts: Cinder's keystonemiddleware answers a missing, unknown or expired token with
401 `{"error": {...}}` and `WWW-Authenticate: Keystone uri=...`; Glance's context
middleware answers 401 as a webob error. Unknown routes are webob 404s, whose body
follows `Accept` (JSON for application/json, HTML for */*, plain text without Accept).
Every response carries `x-openstack-request-id: req-<uuid>`.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.parse

import pytest
import requests

from tests.sandbox.client import NO_TOKEN, Api
from volimg.sandbox import Sandbox, Timings

REQUEST_ID = re.compile(r"^req-[0-9a-f-]{36}$")


@pytest.mark.parametrize("token", [NO_TOKEN, "gAAAAAbogus"], ids=["missing", "unknown"])
def test_cinder_without_a_valid_token_is_401(admin: Api, token: str) -> None:
    response = admin.volume("GET", "/volumes", token=token)
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": 401,
            "title": "Unauthorized",
            "message": "The request you have made requires authentication.",
        }
    }
    assert response.headers["WWW-Authenticate"].startswith("Keystone uri=")
    assert REQUEST_ID.match(response.headers["x-openstack-request-id"])


@pytest.mark.parametrize("token", [NO_TOKEN, "gAAAAAbogus"], ids=["missing", "unknown"])
def test_glance_without_a_valid_token_is_401(admin: Api, token: str) -> None:
    response = admin.image("GET", "/v2/images", token=token)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "401 Unauthorized"
    assert body["title"] == "Unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Keystone uri=")


def test_an_expired_token_is_401_everywhere(sb_admin: Api, sandbox: Sandbox) -> None:
    assert sb_admin.volume("GET", "/volumes").status_code == 200
    sandbox.cloud.expire_tokens()
    assert sb_admin.volume("GET", "/volumes").status_code == 401
    assert sb_admin.image("GET", "/v2/images").status_code == 401
    assert sb_admin.issue_token().status_code == 201  # a new token works again


def test_token_ttl_is_configurable() -> None:
    with Sandbox(seed="empty", token_ttl=0) as sb:
        api_token = requests.post(
            f"{sb.auth_url}/auth/tokens",
            json={
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": sb.admin.username,
                                "domain": {"name": "Default"},
                                "password": sb.admin.password,
                            }
                        },
                    }
                }
            },
            timeout=10,
        )
        assert api_token.status_code == 201
        token = api_token.headers["X-Subject-Token"]
        response = requests.get(
            f"{sb.url}/image/v2/images", headers={"X-Auth-Token": token}, timeout=10
        )
        assert response.status_code == 401


def test_every_service_answers_with_a_request_id(admin: Api) -> None:
    responses = [
        admin.volume("GET", "/volumes"),
        admin.volume("GET", "/volumes/no-such-volume"),
        admin.image("GET", "/v2/images"),
        admin.image("GET", "/v2/images/no-such-image"),
        admin.issue_token(),
    ]
    for response in responses:
        assert REQUEST_ID.match(response.headers["x-openstack-request-id"]), response.url


def test_glance_adopts_the_callers_request_id(admin: Api) -> None:
    response = admin.image(
        "GET",
        "/v2/images",
        headers={"X-Openstack-Request-ID": "req-3b3d0b0a-9a38-4d6f-a7c4-6a9c2b2a0d10"},
    )
    assert response.headers["x-openstack-request-id"] == "req-3b3d0b0a-9a38-4d6f-a7c4-6a9c2b2a0d10"


def test_cinder_answers_with_its_own_request_id(admin: Api) -> None:
    response = admin.volume(
        "GET",
        "/volumes",
        headers={"X-Openstack-Request-ID": "req-3b3d0b0a-9a38-4d6f-a7c4-6a9c2b2a0d10"},
    )
    assert response.headers["x-openstack-request-id"] != "req-3b3d0b0a-9a38-4d6f-a7c4-6a9c2b2a0d10"
    assert response.headers["x-compute-request-id"] == response.headers["x-openstack-request-id"]


def test_unknown_routes_are_404_json_with_accept_json(admin: Api) -> None:
    cinder = admin.volume("GET", "/no-such-collection")
    assert cinder.status_code == 404
    assert cinder.json()["code"] == "404 Not Found"
    glance = admin.image("GET", "/v2/no-such-thing")
    assert glance.status_code == 404
    assert glance.json() == {
        "message": "The resource could not be found.<br /><br />\n\n\n",
        "code": "404 Not Found",
        "title": "Not Found",
    }


def test_paths_outside_the_services_are_404_json(sandbox: Sandbox) -> None:
    for path in ("/", "/compute/v2.1/servers", "/identityx"):
        response = requests.get(sandbox.url + path, timeout=10)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == 404
        assert response.headers["x-openstack-request-id"]


def test_glance_errors_follow_the_accept_header(admin: Api) -> None:
    """webob picks the body from Accept: HTML for */*, plain text with no Accept at all."""
    url = admin.image_url + "/v2/images/no-such-image"
    html = requests.get(url, headers={"X-Auth-Token": admin.token, "Accept": "*/*"}, timeout=10)
    assert html.status_code == 404
    assert html.headers["Content-Type"].startswith("text/html")
    assert "<h1>404 Not Found</h1>" in html.text
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=10)
    conn.request("GET", urllib.parse.urlsplit(url).path, headers={"X-Auth-Token": admin.token})
    plain = conn.getresponse()
    assert plain.status == 404
    assert plain.getheader("Content-Type", "").startswith("text/plain")
    assert plain.read().decode().startswith("404 Not Found\n\n")
    conn.close()


def test_glance_wrong_method_is_405_with_allow(admin: Api) -> None:
    response = admin.image("PUT", "/v2/images")
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}


@pytest.mark.parametrize("service", ["volume", "image"])
def test_malformed_json_is_400(admin: Api, service: str) -> None:
    headers = {"Content-Type": "application/json"}
    if service == "volume":
        response = admin.volume("POST", "/volumes", data=b'{"volume": ', headers=headers)
        assert response.status_code == 400
        assert response.json() == {"badRequest": {"code": 400, "message": "Malformed request body"}}
    else:
        response = admin.image("POST", "/v2/images", data=b'{"name": ', headers=headers)
        assert response.status_code == 400
        assert response.json()["message"].startswith("Malformed JSON in request body.")


def test_keep_alive_serves_several_requests_on_one_connection(sandbox: Sandbox) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=10)
    for path in ("/identity", "/volume/", "/image/", "/nowhere"):
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        assert int(response.getheader("Content-Length", "-1")) == len(body)
        assert response.getheader("x-openstack-request-id")
    sock = conn.sock
    conn.request("GET", "/identity/v3")
    assert conn.getresponse().status == 200
    assert conn.sock is sock  # the same socket all along
    conn.close()


def test_chunked_request_bodies_are_read(sb_admin: Api) -> None:
    image = sb_admin.create_image("chunked")

    def chunks():  # type: ignore[no-untyped-def]
        yield b"first part,"
        yield b"second part"

    response = sb_admin.image(
        "PUT",
        f"/v2/images/{image['id']}/file",
        data=chunks(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 204
    assert sb_admin.image("GET", f"/v2/images/{image['id']}").json()["size"] == len(
        b"first part,second part"
    )


def test_an_unexpected_error_is_a_json_500_without_traceback(
    sb_admin: Api, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volimg.sandbox import glance

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(glance, "image_view", broken)
    response = sb_admin.image("GET", f"/v2/images/{sandbox.cloud.find_image('cirros-base').id}")
    assert response.status_code == 500
    assert "Traceback" not in response.text
    assert "boom" not in response.text
    assert response.json()["code"] == "500 Internal Server Error"


def test_32_concurrent_clients(sandbox: Sandbox) -> None:
    seeded = len(sandbox.cloud.images)
    errors: list[str] = []
    barrier = threading.Barrier(32)

    def client(index: int) -> None:
        try:
            api = Api(
                sandbox.clouds_yaml, sandbox.admin_cloud if index % 2 else sandbox.member_cloud
            )
            barrier.wait(timeout=30)
            image = api.create_image(f"concurrent-{index}", f"data {index}".encode())
            assert image["status"] == "active"
            volume = api.create_volume(f"concurrent-{index}")
            listed = api.volume("GET", "/volumes/detail", params={"name": f"concurrent-{index}"})
            assert [v["id"] for v in listed.json()["volumes"]] == [volume["id"]]
            assert api.image("GET", "/v2/images").status_code == 200
        except (
            AssertionError,
            requests.RequestException,
            json.JSONDecodeError,
            threading.BrokenBarrierError,
        ) as exc:
            errors.append(f"client {index}: {exc!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(sandbox.cloud.images) == seeded + 32
    assert all(r.status < 500 for r in sandbox.requests)


def test_timings_instant_fixture(sandbox: Sandbox) -> None:
    assert sandbox.timings == Timings.instant()
