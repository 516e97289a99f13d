"""Cinder volume metadata: setting it, and listing volumes filtered on it.

Facts (cinder/api/v3/volume_metadata.py, volume/api.py, db/api.py,
etc/cinder/resource_filters.json), checked here on the sandbox and on real Cinder 29:

* `POST /v3/{p}/volumes/{id}/metadata` merges `{"metadata": {...}}` into the volume's
  metadata and answers 200 with all of it; `PUT` replaces it; `GET` shows it. Keys
  match `^[a-zA-Z0-9-_:. /]{1,255}$`, values are strings of at most 255 characters.
* `GET /v3/{p}/volumes/detail?metadata=...`: the value is read with `ast.literal_eval`
  and must be a dict literal; every pair must match (AND). Anything that is not a dict
  (e.g. what openstacksdk makes of a dict: `metadata=KEY`) matches no volume at all.
  The filter is allowed for members at every microversion.
* `all_tenants` widens the list to every project for admins only; members get their
  own project's volumes, silently.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import CloudUnderTest
from tests.sandbox.client import Api
from tests.sandbox.conftest import Cleanup, unique
from volimg.gateway import Gateway, connect


@pytest.fixture
def admin_gateway(cloud: CloudUnderTest) -> Gateway:
    return connect(cloud.admin_cloud, None)


@pytest.fixture
def member_gateway(cloud: CloudUnderTest) -> Gateway:
    return connect(cloud.member_cloud, None)


def _available(api: Api, volume: dict[str, Any]) -> dict[str, Any]:
    return api.wait_volume(volume["id"], until=lambda v: v["status"] == "available")


@pytest.fixture
def fleet(admin: Api, member: Api, cleanup: Cleanup) -> dict[str, Any]:
    """Four volumes tagged with a run id unique to this test: two admin's, two member's.

    Another test (or run) on the shared real cloud can never match the run id.
    """
    run = "run" + uuid.uuid4().hex[:9]  # letters, so .upper() below always differs
    specs = {
        "admin-gold": (admin, {"run": run, "tier": "gold", "team": "a"}),
        "admin-silver": (admin, {"run": run, "tier": "silver", "team": "a"}),
        "member-gold": (member, {"run": run, "tier": "gold", "team": "b"}),
        "member-plain": (member, {"run": run}),
    }
    created = {
        label: (api, cleanup.volume(api.create_volume(unique(label), metadata=metadata)))
        for label, (api, metadata) in specs.items()
    }
    ids = {label: _available(api, volume)["id"] for label, (api, volume) in created.items()}
    return {"run": run, **ids}


def _ids(volumes: list[Any]) -> set[str]:
    return {v.id for v in volumes}


def test_metadata_filter_ands_every_pair(admin_gateway: Gateway, fleet: dict[str, Any]) -> None:
    run = fleet["run"]
    assert _ids(admin_gateway.list_volumes(metadata={"run": run})) == {
        fleet["admin-gold"],
        fleet["admin-silver"],
    }
    assert _ids(admin_gateway.list_volumes(metadata={"run": run, "tier": "gold"})) == {
        fleet["admin-gold"]
    }
    assert _ids(admin_gateway.list_volumes(metadata={"run": run, "tier": "gold", "team": "a"})) == {
        fleet["admin-gold"]
    }


def test_metadata_filter_without_a_match_is_empty(
    admin_gateway: Gateway, fleet: dict[str, Any]
) -> None:
    run = fleet["run"]
    assert admin_gateway.list_volumes(metadata={"run": run, "tier": "bronze"}) == []
    assert admin_gateway.list_volumes(metadata={"run": run, "tier": "gold", "team": "b"}) == []
    assert admin_gateway.list_volumes(metadata={"run": "no-such-run"}) == []
    assert admin_gateway.list_volumes(metadata={"run": run.upper()}) == []  # exact match


def test_listed_volumes_carry_metadata_and_project(
    admin_gateway: Gateway, admin: Api, fleet: dict[str, Any]
) -> None:
    (volume,) = admin_gateway.list_volumes(metadata={"run": fleet["run"], "tier": "silver"})
    assert volume.metadata == {"run": fleet["run"], "tier": "silver", "team": "a"}
    assert volume.project_id == admin.project_id
    assert volume.status == "available"


def test_all_projects_is_for_admins(
    admin_gateway: Gateway, member_gateway: Gateway, member: Api, fleet: dict[str, Any]
) -> None:
    run = {"run": fleet["run"]}
    everyone = {fleet[k] for k in ("admin-gold", "admin-silver", "member-gold", "member-plain")}
    assert _ids(admin_gateway.list_volumes(metadata=run, all_projects=True)) == everyone
    assert _ids(
        admin_gateway.list_volumes(metadata={**run, "tier": "gold"}, all_projects=True)
    ) == {fleet["admin-gold"], fleet["member-gold"]}
    own = {fleet["member-gold"], fleet["member-plain"]}
    assert _ids(member_gateway.list_volumes(metadata=run)) == own
    # Cinder drops all_tenants for a member without a word: still their own project.
    member_view = member_gateway.list_volumes(metadata=run, all_projects=True)
    assert _ids(member_view) == own
    assert {v.project_id for v in member_view} == {member.project_id}


def test_filter_value_must_be_a_dict_literal(admin: Api, fleet: dict[str, Any]) -> None:
    run = fleet["run"]

    def listed(params: Any, **kwargs: Any) -> set[str]:
        response = admin.volume("GET", "/volumes/detail", params=params, **kwargs)
        assert response.status_code == 200, response.text
        return {v["id"] for v in response.json()["volumes"]}

    mine = {fleet["admin-gold"], fleet["admin-silver"]}
    assert listed({"metadata": repr({"run": run})}) == mine
    assert listed({"metadata": f'{{"run": "{run}"}}'}) == mine  # JSON is a dict literal too
    assert listed({"metadata": repr({"run": run})}, microversion="3.60") == mine
    # What requests makes of openstacksdk's volumes(metadata={...}): no filter at all...
    assert listed([("metadata", "run")]) == set()
    # ...and the same for any value that is not a dict.
    assert listed({"metadata": f"run={run}"}) == set()
    assert listed({"metadata": repr([run])}) == set()


def test_member_may_filter_on_metadata_at_any_microversion(
    member: Api, fleet: dict[str, Any]
) -> None:
    wanted = {fleet["member-gold"]}
    params = {"metadata": repr({"run": fleet["run"], "tier": "gold"})}
    for microversion in ("3.0", "3.30", "3.31", "3.60"):
        response = member.volume("GET", "/volumes/detail", params=params, microversion=microversion)
        assert response.status_code == 200, (microversion, response.text)
        assert {v["id"] for v in response.json()["volumes"]} == wanted, microversion


def test_set_metadata_merges_and_put_replaces(member: Api, cleanup: Cleanup) -> None:
    volume = _available(
        member, cleanup.volume(member.create_volume(unique(), metadata={"keep": "1"}))
    )
    path = f"/volumes/{volume['id']}/metadata"
    merged = member.volume("POST", path, json={"metadata": {"added": "x y", "keep": "2"}})
    assert merged.status_code == 200, merged.text
    assert merged.json() == {"metadata": {"keep": "2", "added": "x y"}}
    assert member.volume("GET", path).json() == {"metadata": {"keep": "2", "added": "x y"}}
    shown = member.volume("GET", f"/volumes/{volume['id']}").json()["volume"]
    assert shown["metadata"] == {"keep": "2", "added": "x y"}
    replaced = member.volume("PUT", path, json={"metadata": {"only": "this"}})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json() == {"metadata": {"only": "this"}}
    assert member.volume("GET", path).json() == {"metadata": {"only": "this"}}


def test_metadata_etag_from_3_15(admin: Api, fleet: dict[str, Any]) -> None:
    import hashlib

    path = f"/volumes/{fleet['admin-gold']}/metadata"
    assert "Etag" not in admin.volume("GET", path, microversion="3.14").headers
    tagged = admin.volume("GET", path, microversion="3.15")
    assert tagged.headers["Etag"] == hashlib.md5(tagged.content).hexdigest()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'metadata' is a required property"),
        ({"meta": {"a": "b"}}, "'metadata' is a required property"),
        (
            {"metadata": {"a": "b"}, "extra": 1},
            "Additional properties are not allowed ('extra' was unexpected)",
        ),
        (
            {"metadata": "a=b"},
            "Invalid input for field/attribute metadata. Value: a=b. 'a=b' is not of type 'object'",
        ),
        (
            {"metadata": {"a": 5}},
            "Invalid input for field/attribute a. Value: 5. 5 is not of type 'string'",
        ),
        (
            {"metadata": {"a": "x" * 256}},
            f"Invalid input for field/attribute a. Value: {'x' * 256}. '{'x' * 256}' is too long",
        ),
        (
            {"metadata": {"bad!": "b"}},
            "Invalid input for field/attribute metadata. Value: {'bad!': 'b'}. 'bad!' does not "
            "match any of the regexes: '^[a-zA-Z0-9-_:. /]{1,255}$'",
        ),
    ],
    ids=["empty", "wrong-key", "extra", "not-object", "not-string", "too-long", "bad-key"],
)
def test_set_metadata_schema_errors(
    admin: Api, fleet: dict[str, Any], body: dict[str, Any], message: str
) -> None:
    response = admin.volume("POST", f"/volumes/{fleet['admin-gold']}/metadata", json=body)
    assert response.status_code == 400, response.text
    assert response.json() == {"badRequest": {"code": 400, "message": message}}


def test_set_metadata_of_an_unknown_volume_is_404(admin: Api) -> None:
    missing = str(uuid.uuid4())
    response = admin.volume("POST", f"/volumes/{missing}/metadata", json={"metadata": {"a": "b"}})
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["message"] == f"Volume {missing} could not be found."


def test_set_metadata_of_another_projects_volume_is_404(member: Api, fleet: dict[str, Any]) -> None:
    response = member.volume(
        "POST", f"/volumes/{fleet['admin-gold']}/metadata", json={"metadata": {"a": "b"}}
    )
    assert response.status_code == 404


def test_openstacksdk_metadata_argument_never_matches(
    cloud: CloudUnderTest, fleet: dict[str, Any]
) -> None:
    """Why the gateway passes the literal as `properties`: the SDK's own ways fail.

    `volumes(metadata={...})` sends `metadata=KEY` (no dict: Cinder matches nothing)
    and `volumes(metadata="{...}")` has the SDK compare each volume's metadata dict
    with the string on the client side (nothing matches either).
    """
    import openstack

    conn = openstack.connect(cloud=cloud.admin_cloud)
    run = {"run": fleet["run"]}
    assert list(conn.block_storage.volumes(metadata=run)) == []
    assert list(conn.block_storage.volumes(metadata=repr(run))) == []
    found = {v.id for v in conn.block_storage.volumes(properties=repr(run))}
    assert found == {fleet["admin-gold"], fleet["admin-silver"]}
