"""Keystone v3 as keystoneauth and keystonemiddleware see it.

Facts (keystone/api/discovery.py, keystone/models/token_model.py): GET / answers 300
with `{"versions": {"values": [...]}}`, GET /v3 200 with `{"version": ...}`; a password
token is 201 with `X-Subject-Token` and a body holding methods, user, project, roles,
catalog, expires_at, issued_at; every credential error is the same 401
`{"error": {"code": 401, "title": "Unauthorized", "message": ...}}`.
"""

from __future__ import annotations

import re

import requests

from tests.conftest import CloudUnderTest
from tests.sandbox.client import Api

REQUEST_ID = re.compile(r"^req-[0-9a-f-]{36}$")


def test_version_discovery(admin: Api) -> None:
    root = admin.auth_url.rsplit("/v3", 1)[0]
    versions = requests.get(root, headers={"Accept": "application/json"}, timeout=10)
    assert versions.status_code == 300
    values = versions.json()["versions"]["values"]
    v3 = next(v for v in values if v["id"].startswith("v3"))
    assert v3["status"] == "stable"
    assert v3["links"][0]["rel"] == "self"
    assert v3["media-types"][0]["type"] == "application/vnd.openstack.identity-v3+json"

    version = requests.get(admin.auth_url, headers={"Accept": "application/json"}, timeout=10)
    assert version.status_code == 200
    assert version.json()["version"]["id"] == v3["id"]


def test_password_token_by_names(admin: Api) -> None:
    response = admin.issue_token()
    assert response.status_code == 201
    assert response.headers["X-Subject-Token"]
    assert REQUEST_ID.match(response.headers["x-openstack-request-id"])
    token = response.json()["token"]
    assert token["methods"] == ["password"]
    assert token["user"]["name"] == admin.auth["username"]
    assert token["user"]["domain"] == {"id": "default", "name": "Default"}
    assert token["project"]["name"] == admin.auth["project_name"]
    assert token["project"]["domain"]["id"] == "default"
    assert {"admin", "member"} <= {role["name"] for role in token["roles"]}
    assert all(set(role) >= {"id", "name"} for role in token["roles"])
    assert token["expires_at"].endswith("Z")
    assert token["issued_at"].endswith("Z")
    assert token["audit_ids"]


def test_the_catalog_has_identity_block_storage_and_image(admin: Api) -> None:
    catalog = {service["type"]: service for service in admin.token_body["catalog"]}
    assert {"identity", "block-storage", "image"} <= set(catalog)
    for kind in ("identity", "block-storage", "image"):
        public = [e for e in catalog[kind]["endpoints"] if e["interface"] == "public"]
        assert public, kind
        assert public[0]["region_id"] == "RegionOne"
        assert public[0]["region"] == "RegionOne"
    assert admin.endpoints["block-storage"].rstrip("/").endswith(admin.project_id)


def test_member_token_has_member_roles_only(member: Api) -> None:
    roles = {role["name"] for role in member.token_body["roles"]}
    assert "member" in roles
    assert "admin" not in roles


def test_password_token_by_ids(admin: Api) -> None:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"id": admin.user_id, "password": admin.auth["password"]}},
            },
            "scope": {"project": {"id": admin.project_id}},
        }
    }
    response = requests.post(f"{admin.auth_url}/auth/tokens", json=body, timeout=10)
    assert response.status_code == 201
    assert response.json()["token"]["project"]["id"] == admin.project_id


def _assert_unauthorized(response: requests.Response) -> None:
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == 401
    assert error["title"] == "Unauthorized"
    assert error["message"] == "The request you have made requires authentication."
    assert response.headers["x-openstack-request-id"]


def test_wrong_password_is_401(admin: Api) -> None:
    _assert_unauthorized(admin.issue_token(password="definitely-not-it"))


def test_project_without_a_role_is_401(admin: Api, member: Api) -> None:
    # The member has no role on the admin's project.
    _assert_unauthorized(member.issue_token(project={"id": admin.project_id}))


def test_unknown_project_is_401(admin: Api) -> None:
    _assert_unauthorized(
        admin.issue_token(project={"name": "no-such-project", "domain": {"name": "Default"}})
    )


def test_token_validation(admin: Api, member: Api) -> None:
    ok = requests.get(
        f"{admin.auth_url}/auth/tokens",
        headers={
            "X-Auth-Token": admin.token,
            "X-Subject-Token": member.token,
            "Accept": "application/json",
        },
        timeout=10,
    )
    assert ok.status_code == 200
    assert ok.headers["X-Subject-Token"] == member.token
    assert ok.json()["token"]["user"]["id"] == member.user_id

    unknown = requests.get(
        f"{admin.auth_url}/auth/tokens",
        headers={
            "X-Auth-Token": admin.token,
            "X-Subject-Token": "gAAAAAnot-a-token",
            "Accept": "application/json",
        },
        timeout=10,
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == 404

    anonymous = requests.get(
        f"{admin.auth_url}/auth/tokens", headers={"X-Subject-Token": member.token}, timeout=10
    )
    assert anonymous.status_code == 401


def test_malformed_json_is_400(admin: Api) -> None:
    response = requests.post(
        f"{admin.auth_url}/auth/tokens",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


def test_openstacksdk_authenticates(cloud: CloudUnderTest) -> None:
    import openstack

    conn = openstack.connect(cloud=cloud.admin_cloud)
    try:
        assert conn.current_project_id
        assert conn.session.get_endpoint(service_type="block-storage", interface="public")
        assert conn.session.get_endpoint(service_type="image", interface="public")
    finally:
        conn.close()


def test_unknown_routes_are_flasks_html_404(admin: Api) -> None:
    response = requests.get(
        f"{admin.auth_url}/no-such-thing",
        headers={"Accept": "application/json", "X-Auth-Token": admin.token},
        timeout=10,
    )
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<h1>Not Found</h1>" in response.text


def test_validation_errors_name_the_missing_part(admin: Api) -> None:
    empty = requests.post(f"{admin.auth_url}/auth/tokens", json={}, timeout=10)
    assert empty.status_code == 400
    assert empty.json()["error"]["message"].startswith("Expecting to find auth in request body.")
    assert empty.headers["Vary"] == "X-Auth-Token"
