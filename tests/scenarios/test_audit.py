"""volimg audit and adopt: the placement promise checked over the cloud, and repaired."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import Run, VolimgRunner
from tests.scenarios.test_upload import stores_of
from volimg.cli import cli
from volimg.context import AppContext
from volimg.waiting import Clock


def upload(volimg: VolimgRunner, *args: str) -> str:
    run = volimg("upload", *args, "-f", "json")
    assert run.exit_code in (0, 3), run
    return str(run.doc["image"]["id"])


def audit(volimg: VolimgRunner, *args: str) -> Run:
    return volimg("audit", *args, "-f", "json")


def finding(run: Run, image_id: str) -> dict[str, Any]:
    found = [f for f in run.doc["findings"] if f["image"]["id"] == image_id]
    assert len(found) == 1, run
    return found[0]


def delete_from_store(conn: Any, image_id: str, store: str) -> None:
    response = conn.image.delete(f"/stores/{store}/{image_id}")
    assert response.status_code == 204, response.text


def copy_by_hand(conn: Any, image_id: str, store: str) -> None:
    """copy-image as an operator would, then wait until Glance holds the copy."""
    import time

    response = conn.image.post(
        f"/images/{image_id}/import",
        json={"method": {"name": "copy-image"}, "stores": [store], "all_stores_must_succeed": True},
    )
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 120
    while True:
        body = conn.image.get(f"/images/{image_id}").json()
        if store in body.get("stores", "").split(",") and not body.get("os_glance_import_task"):
            return
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def cloud_state(conn: Any) -> dict[str, tuple[str, str]]:
    """Every image's status and stores: what --dry-run must leave as it was."""
    return {
        image.id: (image.status, conn.image.get(f"/images/{image.id}").json().get("stores", ""))
        for image in conn.image.images()
    }


# --- on both clouds ----------------------------------------------------------------------


def test_a_placed_image_audits_ok(volimg: VolimgRunner, qcow2: tuple[str, ...]) -> None:
    image_id = upload(volimg, "boot-vol", *qcow2)

    run = audit(volimg, "--image", image_id)

    assert run.exit_code == 0, run
    found = finding(run, image_id)
    assert found["finding"] == "ok"
    assert found["stamp"]["stamped_by"] == "upload"
    assert "cirros-base" in found["reason"]
    assert run.doc["summary"]["remaining"] == 0


def test_a_store_copy_deleted_by_hand_is_missing_and_fixed(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    image_id = upload(volimg, "boot-vol", *qcow2)
    delete_from_store(admin_conn, image_id, "cheap")

    run = audit(volimg, "--image", image_id)

    assert run.exit_code == 3, run
    found = finding(run, image_id)
    assert found["finding"] == "missing"
    assert found["missing"] == ["cheap"]
    assert run.doc["repairs"] == []

    fixed = audit(volimg, "--image", image_id, "--fix")

    assert fixed.exit_code == 0, fixed
    assert fixed.doc["repairs"][0]["result"] == "repaired"
    assert fixed.doc["repairs"][0]["replication"]["cheap"] == "copied"
    assert stores_of(admin_conn, image_id) == {"fast", "cheap", "archive"}
    assert audit(volimg, "--image", image_id).exit_code == 0


def test_an_image_whose_base_gained_a_store_is_missing_and_fixed(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    # A base image of our own, in the default store only, and a volume made from it.
    base_id = upload(volimg, "data-vol", "--disk-format", "qcow2")
    volume = admin_conn.block_storage.create_volume(
        size=1, image_id=base_id, name=f"from-own-base-{uuid.uuid4().hex[:8]}"
    )
    admin_conn.block_storage.wait_for_status(volume, "available", failures=["error"], wait=120)
    image_id = upload(volimg, volume.id, *qcow2)
    assert audit(volimg, "--image", image_id).exit_code == 0

    copy_by_hand(admin_conn, base_id, "archive")  # the operator adds a store to the base

    run = audit(volimg, "--image", image_id)

    assert run.exit_code == 3, run
    assert finding(run, image_id)["missing"] == ["archive"]

    fixed = audit(volimg, "--image", image_id, "--fix")

    assert fixed.exit_code == 0, fixed
    assert stores_of(admin_conn, image_id) == {"fast", "archive"}


def test_an_extra_copy_against_the_prune_intent_is_removed_never_the_last(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    image_id = upload(volimg, "boot-vol", "--prune", *qcow2)
    assert stores_of(admin_conn, image_id) == {"cheap", "archive"}
    copy_by_hand(admin_conn, image_id, "fast")

    run = audit(volimg, "--image", image_id)

    assert run.exit_code == 3, run
    found = finding(run, image_id)
    assert found["finding"] == "extra"
    assert found["extra"] == ["fast"]

    fixed = audit(volimg, "--image", image_id, "--fix")

    assert fixed.exit_code == 0, fixed
    assert fixed.doc["repairs"][0]["replication"]["fast"] == "pruned"
    assert stores_of(admin_conn, image_id) == {"cheap", "archive"}

    # Only an extra copy left: the expected copies are made first, the last copy stays.
    copy_by_hand(admin_conn, image_id, "fast")
    delete_from_store(admin_conn, image_id, "cheap")
    delete_from_store(admin_conn, image_id, "archive")
    assert stores_of(admin_conn, image_id) == {"fast"}

    fixed = audit(volimg, "--image", image_id, "--fix")

    assert fixed.exit_code == 0, fixed
    assert stores_of(admin_conn, image_id) == {"cheap", "archive"}


def test_an_adopted_image_is_audited_like_volimgs_own(
    volimg: VolimgRunner, admin_conn: Any, cloud: CloudUnderTest
) -> None:
    # Made the way an older script does it: straight into Glance, so nothing stamped it
    # (a volume upload through Cinder would be stamped by the real tier's Glance filter).
    image = admin_conn.image.create_image(
        name=f"by-hand-{uuid.uuid4().hex[:8]}",
        disk_format="raw",
        container_format="bare",
        data=b"an image made without volimg\n" * 64,
    )
    image_id = image.id
    admin_conn.image.wait_for_status(image, "active", wait=120)

    refused = audit(volimg, "--image", image_id)
    assert refused.exit_code == 2, refused
    assert "volimg adopt" in refused.doc["error"]["hint"]

    adopted = volimg(
        "adopt", image_id, "--base", "cirros-base", "--volume", "boot-vol", "-f", "json"
    )

    assert adopted.exit_code == 0, adopted
    assert adopted.doc["stamp"]["volimg_stamped_by"] == "adopt"
    assert stores_of(admin_conn, image_id) == {"fast"}  # adopt moves no data

    run = audit(volimg, "--image", image_id)

    assert run.exit_code == 3, run
    found = finding(run, image_id)
    assert found["stamp"]["stamped_by"] == "adopt"
    assert found["missing"] == ["cheap", "archive"]
    assert audit(volimg, "--image", image_id, "--fix").exit_code == 0
    assert stores_of(admin_conn, image_id) == {"fast", "cheap", "archive"}


def test_dry_run_fix_changes_nothing(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    image_id = upload(volimg, "boot-vol", *qcow2)
    delete_from_store(admin_conn, image_id, "archive")
    before = cloud_state(admin_conn)

    run = audit(volimg, "--image", image_id, "--fix", "--dry-run")

    assert run.exit_code == 3, run
    repair = run.doc["repairs"][0]
    assert repair["result"] == "would-repair"
    assert "copy to archive" in repair["detail"]
    after = cloud_state(admin_conn)
    # Others may add images to a shared cloud meanwhile; none that existed changed.
    assert {image: after.get(image) for image in before} == before


# --- the sandbox: faults, locks and time ---------------------------------------------------


def readme_session(command: str) -> list[str]:
    """The lines the README shows after ``$ volimg ... <command>``, dates made neutral."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    lines = text.split("```console", 1)[1].split("```", 1)[0].strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$ ") and command in line)
    shown = []
    for line in lines[start + 1 :]:
        if line.startswith("$ "):
            break
        shown.append(line)
    return [neutral(line) for line in shown]


def neutral(line: str) -> str:
    return re.sub(r"\d{8}T020000Z", "<date>T020000Z", line)


def test_the_readme_audit_of_the_demo_seed_is_what_a_newcomer_sees(
    volimg_sandbox: VolimgRunner,
) -> None:
    run = volimg_sandbox("audit")

    assert run.exit_code == 3, run
    assert [neutral(line) for line in run.stdout.splitlines()] == readme_session("sandbox audit 2>")

    fixed = volimg_sandbox("audit", "--fix")

    assert fixed.exit_code == 0, fixed
    assert [neutral(line) for line in fixed.stdout.splitlines()[-2:]] == readme_session(
        "audit --fix"
    )
    assert volimg_sandbox("audit").exit_code == 0


def test_a_failed_import_is_found_and_fixed(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    sandbox.faults.fail_store_copy("archive", times=1)
    image_id = upload(volimg_sandbox, "boot-vol")

    run = audit(volimg_sandbox, "--image", image_id)

    assert run.exit_code == 3, run
    found = finding(run, image_id)
    assert found["finding"] == "failed-import"
    assert "archive" in found["reason"]

    fixed = audit(volimg_sandbox, "--fix")

    assert fixed.exit_code == 0, fixed
    assert "archive" in sandbox.cloud.images[image_id].stores


def test_a_running_import_is_left_alone(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    image_id = upload(volimg_sandbox, "data-vol")
    sandbox.faults.hang_import(image=image_id)
    started = volimg_sandbox("replicate", image_id, "--store", "cheap", "--no-wait")
    assert started.exit_code == 0, started

    run = audit(volimg_sandbox, "--image", image_id, "--fix")

    assert run.exit_code == 3, run
    assert finding(run, image_id)["finding"] == "importing"
    assert run.doc["repairs"] == []
    posts = sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")
    assert len(posts) == 1  # only the hanging one


def run_at(cloud: CloudUnderTest, offset: timedelta, *args: str) -> Run:
    """volimg with its clock ``offset`` ahead, as the sandbox's after advance_clock."""
    clock = Clock(wall=lambda: datetime.now(timezone.utc) + offset)
    app = AppContext(poll_interval=0.02, clock=clock)
    result = CliRunner().invoke(
        cli, ["--os-cloud", cloud.admin_cloud, *args], obj=app, catch_exceptions=False
    )
    return Run(result.exit_code, result.stdout, result.stderr)


def test_a_stale_lock_is_taken_over_once_glance_allows_it(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    image_id = upload(volimg_sandbox, "boot-vol")
    sandbox.cloud.images[image_id].locations.remove("cheap")  # lost, say
    sandbox.faults.abandon_import(image=image_id)
    started = volimg_sandbox("replicate", image_id, "--store", "cheap", "--no-wait")
    assert started.exit_code == 0, started
    task = sandbox.cloud.images[image_id].extra["os_glance_import_task"]
    updated = sandbox.cloud.tasks[task].updated_at

    fresh = audit(volimg_sandbox, "--image", image_id)
    assert finding(fresh, image_id)["finding"] == "importing"  # silent for seconds only

    sandbox.advance_clock(10 * 60)
    ten_minutes = timedelta(seconds=sandbox.clock_offset)
    run = run_at(sandbox_cloud, ten_minutes, "audit", "--image", image_id, "-f", "json")

    found = finding(run, image_id)
    assert found["finding"] == "stale-lock"
    takeover = datetime.fromisoformat(found["takeover_at"].replace("Z", "+00:00"))
    assert abs((takeover - (updated + timedelta(minutes=60))).total_seconds()) < 1

    imports = len(sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$"))
    early = run_at(sandbox_cloud, ten_minutes, "audit", "--image", image_id, "--fix", "-f", "json")

    assert early.exit_code == 3, early
    assert early.doc["repairs"][0]["result"] == "not-yet"
    assert len(sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")) == imports

    sandbox.advance_clock(51 * 60)
    late = run_at(
        sandbox_cloud, timedelta(seconds=sandbox.clock_offset), "audit", "--image", image_id,
        "--fix", "-f", "json",
    )  # fmt: skip

    assert late.exit_code == 0, late
    assert late.doc["repairs"][0]["result"] == "repaired"
    assert "cheap" in sandbox.cloud.images[image_id].stores
    assert sandbox.cloud.tasks[task].status == "failure"


def test_ndjson_and_metrics_of_an_audit(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest, tmp_path: Any
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    metrics = tmp_path / "audit.prom"  # the demo seed: one image ok, one missing a copy

    run = volimg_sandbox("audit", "-f", "ndjson", "--metrics-file", str(metrics))

    assert run.exit_code == 3, run
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["finding", "finding", "summary"]
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    by_finding = {s.labels["finding"]: s.value for s in families["volimg_audit_findings"].samples}
    assert by_finding["ok"] == 1
    assert by_finding["missing"] == 1
    assert by_finding["stale-lock"] == 0
    assert families["volimg_audit_remaining_findings"].samples[0].value == 1


@pytest.mark.parametrize("args", [("--dry-run",), ("--image", "")])
def test_audit_usage_errors(volimg_sandbox: VolimgRunner, args: tuple[str, ...]) -> None:
    run = volimg_sandbox("audit", *args)
    assert run.exit_code == 2, run
    assert "Traceback" not in run.stderr
