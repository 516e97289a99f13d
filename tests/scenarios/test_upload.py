"""The main path, as operators run it, on the sandbox and on the real stack.

Every scenario drives the real CLI in-process, through the real openstacksdk, over
HTTP to the cloud under test, and then checks the cloud itself, not volimg's report.
"""

from __future__ import annotations

import uuid
from typing import Any

import openstack
import pytest

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import MemberVolume, VolimgRunner
from tests.scenarios.next_steps import follow


def stores_of(conn: Any, image_id: str) -> set[str]:
    """The image's stores as Glance reports them (a comma-separated string)."""
    body = conn.image.get(f"/images/{image_id}").json()
    return {s for s in body.get("stores", "").split(",") if s}


def volume_status(conn: Any, name_or_id: str) -> str:
    return conn.block_storage.find_volume(name_or_id, ignore_missing=False).status


def test_boot_vol_ends_in_every_store_of_its_base_image(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    run = volimg("upload", "boot-vol", "-f", "json", *qcow2)

    assert run.exit_code == 0, run
    doc = run.doc
    assert doc["result"] == "ok"
    assert doc["plan"]["upload_store"] == "fast"
    assert set(doc["plan"]["replicate_to"]) == {"cheap", "archive"}
    assert doc["replication"] == {"cheap": "copied", "archive": "copied"}
    assert stores_of(admin_conn, doc["image"]["id"]) == {"fast", "cheap", "archive"}
    assert set(doc["image"]["stores"]) == {"fast", "cheap", "archive"}
    assert volume_status(admin_conn, "boot-vol") == "available"


def test_boot_vol_with_prune_ends_exactly_where_the_base_image_is(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    run = volimg("upload", "boot-vol", "--prune", "-f", "json", *qcow2)

    assert run.exit_code == 0, run
    doc = run.doc
    assert doc["replication"] == {"cheap": "copied", "archive": "copied", "fast": "pruned"}
    assert stores_of(admin_conn, doc["image"]["id"]) == {"cheap", "archive"}


def test_pinned_vol_ends_in_its_volume_types_store_only(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    run = volimg("upload", "pinned-vol", "-f", "json", *qcow2)

    assert run.exit_code == 0, run
    doc = run.doc
    assert doc["volume_type_store"] == "archive"
    assert doc["plan"]["upload_store"] == "archive"
    assert doc["plan"]["cinder_headers"]["x-image-meta-store"] == "archive"
    assert doc["plan"]["replicate_to"] == []
    assert doc["replication"] == {"archive": "already-present"}
    assert stores_of(admin_conn, doc["image"]["id"]) == {"archive"}


def test_data_vol_without_base_image_stays_in_the_default_store(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    run = volimg("upload", "data-vol", "-f", "json", *qcow2)

    assert run.exit_code == 0, run
    doc = run.doc
    assert doc["base_image"] is None
    assert "x-openstack-base-image-ref" not in doc["plan"]["cinder_headers"]
    assert stores_of(admin_conn, doc["image"]["id"]) == {"fast"}


def test_busy_vol_is_refused_without_force(volimg: VolimgRunner, admin_conn: Any) -> None:
    run = volimg("upload", "busy-vol")

    assert run.exit_code == 2, run
    assert "in-use" in run.stderr
    assert "--force" in run.stderr
    assert run.stdout == ""
    assert volume_status(admin_conn, "busy-vol") == "in-use"


def test_busy_vol_is_uploaded_with_force_and_stays_in_use(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    run = volimg("upload", "busy-vol", "--force", "-f", "json", *qcow2)

    assert run.exit_code == 0, run
    assert stores_of(admin_conn, run.doc["image"]["id"]) == {"fast", "cheap", "archive"}
    assert volume_status(admin_conn, "busy-vol") == "in-use"


def test_a_name_two_volumes_share_is_refused_with_both_ids(
    volimg: VolimgRunner, admin_conn: Any
) -> None:
    twins = sorted(v.id for v in admin_conn.block_storage.volumes(name="twin"))
    assert len(twins) == 2

    run = volimg("upload", "twin", "-f", "json")

    assert run.exit_code == 2, run
    doc = run.doc
    assert doc["result"] == "failed"
    assert doc["error"]["type"] == "AmbiguousVolume"
    assert doc["error"]["exit_code"] == 2
    for volume_id in twins:
        assert volume_id in doc["error"]["message"]
    assert "volimg: error:" in run.stderr


def test_a_missing_volume_is_exit_2(volimg: VolimgRunner) -> None:
    run = volimg("upload", "no-such-volume")

    assert run.exit_code == 2, run
    assert "no-such-volume" in run.stderr
    assert "Traceback" not in run.stderr


def test_base_image_deleted_uploads_to_the_default_store_and_says_why(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    tag = uuid.uuid4().hex[:8]
    base = admin_conn.image.create_image(
        name=f"doomed-{tag}",
        data=b"\0" * (1024 * 1024),
        disk_format="raw",
        container_format="bare",
        allow_duplicates=True,
    )
    volume = admin_conn.block_storage.create_volume(size=1, image_id=base.id, name=f"orphan-{tag}")
    admin_conn.block_storage.wait_for_status(volume, "available", failures=["error"], wait=120)
    admin_conn.image.delete_image(base.id)

    run = volimg("upload", volume.id, "-f", "json", *qcow2)

    assert run.exit_code == 0, run
    doc = run.doc
    assert doc["base_image"] is None
    assert doc["plan"]["cinder_headers"]["x-openstack-base-image-ref"] == base.id
    reasons = " ".join(r["reason"] for r in doc["plan"]["reasons"])
    assert "no longer exists" in reasons
    assert stores_of(admin_conn, doc["image"]["id"]) == {"fast"}


def test_member_gets_exit_5_with_the_admin_hint_and_an_admin_finishes_the_job(
    cloud: CloudUnderTest, volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    member = openstack.connect(cloud=cloud.member_cloud)
    base = admin_conn.image.find_image("cirros-base", ignore_missing=False)
    volume = member.block_storage.create_volume(
        size=1, image_id=base.id, name=f"member-vol-{uuid.uuid4().hex[:8]}"
    )
    member.block_storage.wait_for_status(volume, "available", failures=["error"], wait=120)

    run = volimg("upload", volume.id, "-f", "json", *qcow2, member=True)

    assert run.exit_code == 5, run
    doc = run.doc
    image_id = doc["image"]["id"]
    assert doc["error"]["type"] == "PermissionDenied"
    assert "copy_image policy is admin-only" in doc["error"]["message"]
    assert image_id in doc["error"]["message"]
    assert f"volimg replicate {image_id}" in doc["error"]["hint"]
    assert doc["image"]["stores"] == ["fast"]
    assert stores_of(admin_conn, image_id) == {"fast"}
    assert "copy_image policy" in run.stderr

    # What the member was told to ask an admin to run finishes the job.
    follow(doc["next_steps"], volimg, cloud, expect_stores={"fast", "cheap", "archive"})
    finish = volimg("replicate", image_id, "--like", base.id, "-f", "json")

    assert finish.exit_code == 0, finish
    assert stores_of(admin_conn, image_id) == {"fast", "cheap", "archive"}
    member.close()


def test_stores_lists_glance_stores_and_copy_image(volimg: VolimgRunner) -> None:
    run = volimg("stores", "-f", "json")

    assert run.exit_code == 0, run
    doc = run.doc
    assert [s["id"] for s in doc["stores"] if s["default"]] == ["fast"]
    assert {s["id"] for s in doc["stores"]} >= {"fast", "cheap", "archive"}
    assert doc["copy_image_enabled"] is True


def test_plan_shows_facts_and_reasons_without_changing_anything(volimg: VolimgRunner) -> None:
    run = volimg("plan", "boot-vol")

    assert run.exit_code == 0, run
    assert "nothing changed" in run.stdout
    assert "x-openstack-base-image-ref" in run.stdout
    assert "Glance ignores it" in run.stdout


def test_wrong_password_is_exit_5(cloud: CloudUnderTest, tmp_path: Any, monkeypatch: Any) -> None:
    import yaml

    config = yaml.safe_load(cloud.clouds_yaml.read_text())
    config["clouds"][cloud.admin_cloud]["auth"]["password"] = "definitely-wrong"
    bad = tmp_path / "clouds.yaml"
    bad.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(bad))

    from tests.scenarios.conftest import make_runner

    run = make_runner(cloud)("plan", "boot-vol", "-f", "json")

    assert run.exit_code == 5, run
    assert run.doc["error"]["type"] == "AuthenticationFailed"
    assert "definitely-wrong" not in run.stdout + run.stderr


def test_unknown_cloud_is_exit_2(volimg: VolimgRunner) -> None:
    from click.testing import CliRunner

    from volimg.cli import cli

    result = CliRunner().invoke(cli, ["--os-cloud", "nowhere", "plan", "boot-vol"])
    assert result.exit_code == 2
    assert "nowhere" in result.stderr


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_replicate_dry_run_of_an_image_already_in_place(volimg: VolimgRunner, fmt: str) -> None:
    run = volimg("replicate", "cirros-base", "--store", "cheap", "--dry-run", "-f", fmt)

    assert run.exit_code == 0, run
    if fmt == "json":
        assert run.doc["result"] == "planned"
        assert run.doc["plan"]["replicate_to"] == []
    else:
        assert "already" in run.stdout


def test_member_upload_of_a_pinned_volume_stays_in_the_types_store(
    volimg: VolimgRunner,
    admin_conn: Any,
    qcow2: tuple[str, ...],
    pinned_member_volume: MemberVolume,
) -> None:
    """Cinder hides image_service:store_id from members; the landing reveals it."""
    volume = pinned_member_volume.volume

    run = volimg("upload", volume.id, "-f", "json", *qcow2, member=True)

    assert run.exit_code == 0, run
    doc = run.doc
    assert doc["plan"]["upload_store"] == "archive"
    assert doc["plan"]["target_stores"] == ["archive"]
    assert doc["replication"] == {"archive": "already-present"}
    assert stores_of(admin_conn, doc["image"]["id"]) == {"archive"}
    assert "hidden from you" in run.stderr
