"""volimg audit and adopt: the placement promise checked over the cloud, and repaired."""

from __future__ import annotations

import json
import re
import shlex
import signal
import time
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


# --- issue 23: nothing volimg makes is lost, nothing it does not own is removed ----------

DATA = b"an image of the sandbox\n" * 64


@pytest.fixture
def conn(sandbox_cloud: CloudUnderTest) -> Any:
    """openstacksdk as the sandbox's admin, to make what other clients (or a killed
    volimg) leave behind."""
    import openstack

    connection = openstack.connect(cloud=sandbox_cloud.admin_cloud)
    yield connection
    connection.close()


def make_image(conn: Any, name: str, properties: dict[str, str], *, data: bool = True) -> str:
    """An image made through Glance's API with these properties (in the default store,
    fast; ``data=False``: queued, as while Cinder's upload runs)."""
    body = conn.image.post(
        "/images",
        json={"name": name, "disk_format": "raw", "container_format": "bare", **properties},
    ).json()
    if data:
        response = conn.image.put(
            f"/images/{body['id']}/file",
            data=DATA,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 204, response.text
        image = conn.image.get_image(body["id"])
        conn.image.wait_for_status(image, "active", wait=30, interval=0.02)
    return str(body["id"])


def set_properties(conn: Any, image_id: str, properties: dict[str, str]) -> None:
    response = conn.image.patch(
        f"/images/{image_id}",
        json=[{"op": "add", "path": f"/{k}", "value": v} for k, v in properties.items()],
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
    )
    assert response.status_code == 200, response.text


def properties_of(conn: Any, image_id: str) -> dict[str, Any]:
    return dict(conn.image.get(f"/images/{image_id}").json())


def unfinished(conn: Any, volume: str, name: str, *, run: str, data: bool = True) -> str:
    """What a volimg upload of ``volume`` killed before its stamp leaves: an image born
    with the run's mark (Cinder copied it from the volume), and no stamp."""
    from volimg.provenance import Mark, Rule, Stamp, StampedBy

    found = conn.block_storage.find_volume(volume, ignore_missing=False)
    base = (found.volume_image_metadata or {}).get("image_id")
    intended = Stamp(
        image_id="",
        stamped_by=StampedBy.UPLOAD,
        stamped_at="2026-12-01T02:00:00Z",
        source_volume=found.id,
        base_image=base,
        type_store=None,
        rule=Rule.BASE_STORES if base else Rule.DEFAULT_STORE,
    )
    mark = Mark.for_upload(run, name, intended)
    return make_image(conn, name, mark.metadata(), data=data)


def stamped(conn: Any, name: str, **fields: Any) -> str:
    """An image in fast that volimg's upload stamped (the fields vary by test)."""
    from volimg.provenance import TAG, Stamp, StampedBy

    image_id = make_image(conn, name, {})
    defaults: dict[str, Any] = {
        "stamped_by": StampedBy.UPLOAD,
        "stamped_at": "2026-12-01T02:00:00Z",
        "type_store": None,
    }
    stamp = Stamp(image_id=image_id, **{**defaults, **fields})
    set_properties(conn, image_id, stamp.properties())
    assert conn.image.put(f"/images/{image_id}/tags/{TAG}").status_code == 204
    return image_id


def test_an_unfinished_upload_is_found_and_fix_stamps_and_places_it(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    image_id = unfinished(conn, "boot-vol", "boot-vol-killed", run="run-killed")

    run = audit(volimg_sandbox)

    assert run.exit_code == 3, run
    found = finding(run, image_id)
    assert found["finding"] == "unfinished"
    assert "run-killed" in found["reason"]
    assert "no stamp" in found["reason"]
    assert found["stamp"] is None
    assert found["mark"]["run"] == "run-killed"

    fixed = audit(volimg_sandbox, "--fix")

    assert fixed.exit_code == 0, fixed
    (repair,) = [r for r in fixed.doc["repairs"] if r["image_id"] == image_id]
    assert repair["result"] == "repaired"
    assert "run-killed" in repair["detail"]
    props = properties_of(conn, image_id)
    assert props["volimg_stamped_by"] == "upload"
    assert props["volimg_image"] == image_id
    assert props["volimg_source_volume"] == conn.block_storage.find_volume("boot-vol").id
    assert "volimg_mark" not in props
    assert "volimg_mark_run" not in props
    assert "volimg" in props["tags"]
    assert stores_of(conn, image_id) == {"fast", "cheap", "archive"}  # placed in the same run

    again = audit(volimg_sandbox)

    assert again.exit_code == 0, again
    assert finding(again, image_id)["finding"] == "ok"


def test_audit_finds_only_the_unfinished_images_a_mark_claims_narrowed_as_asked(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    boot = unfinished(conn, "boot-vol", "boot-vol-killed", run="run-a")
    pinned = unfinished(conn, "pinned-vol", "pinned-vol-killed", run="run-b")
    # Uploaded by someone else while boot-vol carried run-a's mark: not volimg's.
    from volimg.provenance import Mark

    marked = conn.image.get(f"/images/{boot}").json()
    mark = Mark.from_properties({k: str(v) for k, v in marked.items()})
    assert mark is not None
    foreign = make_image(conn, "by-horizon", mark.metadata())

    everything = audit(volimg_sandbox)
    of_boot = audit(volimg_sandbox, "--volume", "boot-vol")
    one = audit(volimg_sandbox, "--image", pinned)

    ids = {f["image"]["id"] for f in everything.doc["findings"]}
    assert {boot, pinned} <= ids
    assert foreign not in ids
    boot_ids = {f["image"]["id"] for f in of_boot.doc["findings"]}
    assert boot in boot_ids
    assert pinned not in boot_ids
    assert foreign not in boot_ids
    assert one.exit_code == 3, one
    assert finding(one, pinned)["finding"] == "unfinished"


def test_an_unfinished_image_that_is_not_active_is_left_alone(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    image_id = unfinished(conn, "boot-vol", "boot-vol-uploading", run="run-q", data=False)
    before = properties_of(conn, image_id)

    fixed = audit(volimg_sandbox, "--image", image_id, "--fix")

    assert fixed.exit_code == 3, fixed
    assert finding(fixed, image_id)["finding"] == "unfinished"
    (repair,) = fixed.doc["repairs"]
    assert repair["result"] == "left-alone"
    assert "queued" in repair["detail"]
    after = properties_of(conn, image_id)
    assert {k: after.get(k) for k in before if k.startswith("volimg")} == {
        k: v for k, v in before.items() if k.startswith("volimg")
    }
    assert "volimg_stamped_by" not in after


def test_a_base_image_gone_leaves_its_images_where_they_are(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    from volimg.provenance import Rule

    retired = str(uuid.uuid4())  # the template the volume was made from, deleted since
    image_id = stamped(
        conn,
        "from-retired-template",
        source_volume=str(uuid.uuid4()),
        base_image=retired,
        rule=Rule.BASE_STORES,
        prune=True,
    )
    copy_by_hand(conn, image_id, "cheap")
    copy_by_hand(conn, image_id, "archive")
    delete_from_store(conn, image_id, "fast")

    run = audit(volimg_sandbox, "--image", image_id, "--fix")

    assert run.exit_code == 0, run
    found = finding(run, image_id)
    assert found["finding"] == "base-gone"
    assert retired in found["reason"]
    assert run.doc["repairs"] == []
    assert stores_of(conn, image_id) == {"cheap", "archive"}  # nothing added, nothing removed


@pytest.mark.parametrize("status", [403, 500])
def test_a_base_image_that_cannot_be_read_does_not_stop_the_audit(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest, conn: Any, status: int
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    base = conn.image.find_image("cirros-base", ignore_missing=False)
    seeded = {f["image"]["id"]: f for f in audit(volimg_sandbox).doc["findings"]}
    sandbox.faults.respond("GET", rf"/images/{base.id}$", status, times=None)

    run = audit(volimg_sandbox, "--fix")

    assert run.exit_code == 0, run
    for image_id in seeded:
        found = finding(run, image_id)
        assert found["finding"] == "base-gone", found
        assert "could not be read" in found["reason"]
    assert run.doc["repairs"] == []


def test_fix_keeps_the_recorded_type_store_and_what_replicate_asked_for(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    from volimg.provenance import Rule

    # Uploaded when data-vol's type sent images to cheap; the type changed since.
    data_vol = conn.block_storage.find_volume("data-vol", ignore_missing=False)
    pinned_once = stamped(
        conn,
        "data-vol-when-pinned",
        source_volume=data_vol.id,
        base_image=None,
        type_store="cheap",
        rule=Rule.TYPE_STORE,
        prune=True,
    )
    copy_by_hand(conn, pinned_once, "cheap")
    delete_from_store(conn, pinned_once, "fast")
    # Pruned at upload, then copied to fast on purpose with volimg replicate.
    asked = upload(volimg_sandbox, "boot-vol", "--prune")
    assert volimg_sandbox("replicate", asked, "--store", "fast").exit_code == 0

    fixed = audit(volimg_sandbox, "--fix")

    assert fixed.exit_code == 0, fixed
    assert stores_of(conn, pinned_once) == {"fast", "cheap"}  # the type store is kept
    assert stores_of(conn, asked) == {"fast", "cheap", "archive"}
    assert "replicate --store fast" in finding(fixed, asked)["reason"]
    assert audit(volimg_sandbox).exit_code == 0


def test_a_no_replicate_upload_is_said_to_stay_where_it_landed(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    image_id = upload(volimg_sandbox, "boot-vol", "--no-replicate")

    run = audit(volimg_sandbox, "--image", image_id, "--fix")

    assert run.exit_code == 0, run
    reason = finding(run, image_id)["reason"]
    assert "--no-replicate" in reason
    assert "stays where it landed" in reason
    assert "no base image" not in reason
    assert stores_of(conn, image_id) == {"fast"}


@pytest.mark.parametrize(
    ("signum", "code", "fmt"),
    [(signal.SIGTERM, 143, "json"), (signal.SIGINT, 130, "table")],
    ids=["sigterm-json", "sigint-table"],
)
def test_a_signal_stops_audit_fix_at_its_next_wait_and_says_what_goes_on(
    signum: int, code: int, fmt: str
) -> None:
    from tests.scenarios.next_steps import _COMMAND
    from tests.scenarios.test_signals import copying, finish, start_volimg, wait_until
    from volimg.sandbox import Sandbox, Timings

    timings = Timings.instant()
    timings.store_copy = 10.0  # the demo seed's older boot-vol image lacks its archive copy
    with Sandbox(seed="demo", timings=timings) as sandbox:
        process = start_volimg(sandbox, "audit", "--fix", "-f", fmt)
        wait_until(copying(sandbox))
        (post,) = sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")
        image_id = post.path.split("/images/")[1].split("/")[0]

        process.send_signal(signum)
        sent = time.monotonic()
        exit_code, stdout, stderr = finish(process)

        assert time.monotonic() - sent < 6, "audit --fix waited for the copy to end"
        assert exit_code == code, (stdout, stderr)
        assert "Traceback" not in stdout + stderr
        assert "nothing was changed" not in stdout + stderr
        if fmt == "json":
            doc = json.loads(stdout)
            assert doc["result"] == "interrupted"
            assert doc["summary"]["error"]["exit_code"] == code
            (repair,) = doc["repairs"]
            assert repair["image_id"] == image_id
            assert repair["result"] == "interrupted"
            assert repair["replication"]["archive"] == "pending"
            assert "archive" in repair["detail"]
            steps = doc["next_steps"]
            assert steps == [repair["next_step"]]
        else:
            assert f"repair {sandbox.cloud.images[image_id].name}: interrupted" in stdout
            steps = [
                line.split("; next: ", 1)[1] for line in stdout.splitlines() if "next: " in line
            ]
            assert "volimg: interrupted" in stderr
        (step,) = steps
        assert f"volimg audit --fix --image {image_id}" in step
        assert "archive" in step

        # The step says when: once Glance's copy has ended. Then it finishes the job.
        wait_until(lambda: "archive" in sandbox.cloud.images[image_id].stores, timeout=30)
        sandbox.wait_idle(10)
        found = _COMMAND.search(step)
        assert found is not None
        followed = start_volimg(sandbox, *shlex.split(found.group(1))[1:], "-f", "json")
        exit_code, stdout, stderr = finish(followed)
        assert exit_code == 0, (stdout, stderr)
        assert json.loads(stdout)["summary"]["remaining"] == 0
