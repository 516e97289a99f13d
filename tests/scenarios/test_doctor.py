"""``volimg doctor`` on the sandbox: every check made ok, and made warn/fail/skipped by
the cloud set up the way operators meet it (docs/doctor.md); exit codes 0, 3, 1, 5;
nothing changed; and a request count that does not grow with the project.

The real-tier counterparts (a volume type with a wrong store, copy-image disabled)
are in test_doctor_real.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import CloudUnderTest, _use
from tests.scenarios.conftest import Run, VolimgRunner, make_runner
from volimg.cli import cli
from volimg.context import AppContext
from volimg.sandbox import Sandbox, Timings
from volimg.waiting import Clock

Start = Callable[..., tuple[Sandbox, VolimgRunner]]


@pytest.fixture
def sandbox_with(monkeypatch: pytest.MonkeyPatch) -> Iterator[Start]:
    """A sandbox started with the given knobs, and volimg on it (as the admin, or member)."""
    started: list[Sandbox] = []

    def start(**knobs: Any) -> tuple[Sandbox, VolimgRunner]:
        seed = knobs.pop("seed", "demo")
        sandbox = Sandbox(seed=seed, timings=Timings.instant(), **knobs).start()
        started.append(sandbox)
        under = CloudUnderTest(
            kind="sandbox",
            clouds_yaml=sandbox.clouds_yaml,
            admin_cloud=sandbox.admin_cloud,
            member_cloud=sandbox.member_cloud,
            sandbox=sandbox,
        )
        runner = make_runner(under)

        def run(*args: str, member: bool = False) -> Run:
            _use(under, monkeypatch)  # this sandbox's clouds.yaml, whichever started last
            return runner(*args, member=member)

        return sandbox, run

    yield start
    for sandbox in started:
        sandbox.stop()


def run_at(cloud: CloudUnderTest, offset: timedelta) -> VolimgRunner:
    """volimg with its clock ``offset`` ahead, as the sandbox's after advance_clock."""

    def run(*args: str, member: bool = False) -> Run:
        app = AppContext(
            poll_interval=0.02, clock=Clock(wall=lambda: datetime.now(timezone.utc) + offset)
        )
        name = cloud.member_cloud if member else cloud.admin_cloud
        result = CliRunner().invoke(
            cli, ["--os-cloud", name, *args], obj=app, catch_exceptions=False
        )
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


def doctor(volimg: VolimgRunner, *args: str, member: bool = False, region: str = "") -> Run:
    where = ["--os-region-name", region] if region else []
    return volimg(*where, "doctor", *args, "-f", "json", member=member)


def rows(run: Run, check: str) -> list[dict[str, Any]]:
    return [row for row in run.doc["checks"] if row["check"] == check]


def statuses(run: Run, check: str) -> dict[str, str]:
    """subject -> status of one check's rows."""
    return {row["subject"]: row["status"] for row in rows(run, check)}


def only(run: Run, check: str) -> dict[str, Any]:
    (row,) = rows(run, check)
    return row


# --- the demo cloud: what is ok, and exit 0 ----------------------------------------------------


def test_the_demo_cloud_is_fit_for_volimg_and_nothing_is_changed(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    run = doctor(volimg_sandbox)

    assert run.exit_code == 0, run
    doc = run.doc
    assert doc["command"] == "doctor"
    assert doc["result"] == "warn"  # busy-vol is in-use: enable_force_upload matters
    assert only(run, "multi-store")["status"] == "ok"
    assert "3 stores (fast (default), cheap, archive)" in only(run, "multi-store")["detail"]
    assert only(run, "copy-image")["status"] == "ok"
    assert statuses(run, "volume-type-store") == {
        "__DEFAULT__": "ok",
        "standard": "ok",
        "pinned-archive": "ok",
    }
    assert only(run, "base-image-stores")["status"] == "ok"
    assert only(run, "image-endpoints")["status"] == "ok"
    assert only(run, "copy-image-policy")["status"] == "ok"
    assert "default copy_image rule" in only(run, "copy-image-policy")["detail"]
    assert only(run, "stale-import-locks")["status"] == "ok"
    assert only(run, "cinder-microversions")["status"] == "ok"
    assert "3.0 to 3.71" in only(run, "cinder-microversions")["detail"]
    force = only(run, "force-upload")
    assert force["status"] == "warn"
    assert "busy-vol" in force["detail"]
    assert "enable_force_upload" in force["fix"]
    assert sandbox.requests.mutating(origin="client") == []


def test_the_table_has_a_row_per_check_and_a_summary(volimg_sandbox: VolimgRunner) -> None:
    run = volimg_sandbox("doctor")

    assert run.exit_code == 0, run
    lines = run.stdout.splitlines()
    assert lines[0] == "check\tstatus\tsubject\tdetail\tfix"
    assert lines[1].startswith("multi-store\tok\t")
    assert lines[-1].endswith("0 fail, 1 skipped")
    assert "glance-quota\tskipped\tGET /v2/info/usage" in run.stdout


def test_force_upload_is_ok_where_no_volume_is_in_use(volimg_sandbox: VolimgRunner) -> None:
    run = doctor(volimg_sandbox, "--volume-type", "pinned-archive")

    assert run.exit_code == 0, run
    assert run.doc["result"] == "ok"
    assert only(run, "force-upload")["status"] == "ok"
    assert statuses(run, "volume-type-store") == {"pinned-archive": "ok"}


# --- each failing case, reproduced -------------------------------------------------------------


def test_a_type_whose_store_glance_does_not_have_fails_with_exit_3(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    # Cinder checks the store only when extra specs are set on an existing type, not
    # when a type is created with them (cinder/api/contrib/types_manage.py).
    sandbox.cloud.add_volume_type("gold", extra_specs={"image_service:store_id": "nowhere"})

    run = doctor(volimg_sandbox)

    assert run.exit_code == 3, run
    assert run.doc["result"] == "fail"
    gold = next(r for r in rows(run, "volume-type-store") if r["subject"] == "gold")
    assert gold["status"] == "fail"
    assert "image_service:store_id=nowhere" in gold["detail"]
    assert "openstack volume type set --property image_service:store_id=STORE gold" in gold["fix"]


def test_an_unknown_volume_type_asked_for_fails(volimg_sandbox: VolimgRunner) -> None:
    run = doctor(volimg_sandbox, "--volume-type", "no-such-type")

    assert run.exit_code == 3, run
    assert statuses(run, "volume-type-store") == {"no-such-type": "fail"}


def test_a_member_cannot_see_type_stores_force_upload_or_the_policy(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    run = doctor(volimg_sandbox, member=True)

    assert run.exit_code == 0, run
    assert statuses(run, "volume-type-store") == {"volume types": "skipped"}
    assert "admins only" in only(run, "volume-type-store")["detail"]
    assert only(run, "force-upload")["status"] == "skipped"
    policy = only(run, "copy-image-policy")
    assert policy["status"] == "warn"
    assert "oslopolicy-policy-generator --namespace glance" in policy["fix"]


def test_copy_image_disabled_fails(sandbox_with: Start) -> None:
    _, volimg = sandbox_with(import_methods=("glance-direct", "web-download"))

    run = doctor(volimg)

    assert run.exit_code == 3, run
    row = only(run, "copy-image")
    assert row["status"] == "fail"
    assert "glance-direct, web-download" in row["detail"]
    assert "enabled_import_methods: add copy-image" in row["fix"]
    assert only(run, "copy-image-policy")["status"] == "skipped"


def test_a_single_store_glance_warns_and_skips_what_needs_stores(sandbox_with: Start) -> None:
    _, volimg = sandbox_with(multi_store=False)

    run = doctor(volimg)

    assert run.exit_code == 0, run
    assert only(run, "multi-store")["status"] == "warn"
    assert "enabled_backends" in only(run, "multi-store")["fix"]
    assert only(run, "copy-image")["status"] == "skipped"
    assert only(run, "base-image-stores")["status"] == "skipped"
    assert statuses(run, "volume-type-store")["pinned-archive"] == "warn"


def test_a_policy_that_refuses_admins_too_is_beyond_what_the_api_shows(
    sandbox_with: Start,
) -> None:
    """The sandbox refuses copy_image to everyone; the doctor cannot see it and says so."""
    _, volimg = sandbox_with(copy_image_roles=())

    run = doctor(volimg)
    copy = volimg("replicate", "cirros-base", "--store", "fast", "-f", "json")

    assert only(run, "copy-image-policy")["status"] == "ok"
    assert "no API shows whether policy.yaml changed it" in only(run, "copy-image-policy")["detail"]
    assert copy.exit_code == 5, copy
    assert "copy_image" in copy.doc["error"]["message"]


def test_a_policy_that_lets_members_copy(sandbox_with: Start) -> None:
    sandbox, volimg = sandbox_with(copy_image_roles=("admin", "member"))
    with sandbox.cloud.lock:
        base = sandbox.cloud.find_image("cirros-base")
        base.owner = sandbox.cloud.find_project("demo").id

    copy = volimg("replicate", "cirros-base", "--store", "fast", "-f", "json", member=True)

    assert copy.exit_code == 0, copy


def test_quotas_are_skipped_without_unified_limits_and_checked_with_them(
    volimg_sandbox: VolimgRunner, sandbox_with: Start
) -> None:
    off = doctor(volimg_sandbox)
    _, roomy = sandbox_with(
        glance_limits={
            "image_size_total": 100_000,
            "image_stage_total": 10_000,
            "image_count_total": 100,
            "image_count_uploading": 10,
        }
    )
    _, tight = sandbox_with(
        glance_limits={"image_size_total": 2000, "image_stage_total": 512, "image_count_total": 3}
    )

    quota_off = only(off, "glance-quota")
    assert quota_off["status"] == "skipped"
    assert "use_keystone_limits" in quota_off["detail"]
    ok = doctor(roomy)
    assert statuses(ok, "glance-quota") == {
        "image_size_total": "ok",
        "image_stage_total": "ok",
        "image_count_total": "ok",
        "image_count_uploading": "ok",
    }
    run = doctor(tight)
    assert run.exit_code == 3, run
    assert statuses(run, "glance-quota") == {
        "image_size_total": "warn",  # room for an upload, not for three stores' copies
        "image_stage_total": "fail",  # copy-image stages the whole 1 GiB image
        "image_count_total": "fail",  # cirros-base and two stamped images: 3 of 3
        "image_count_uploading": "ok",  # -1: no limit registered
    }
    stage = next(r for r in rows(run, "glance-quota") if r["subject"] == "image_stage_total")
    assert "the largest volume (1 GiB) needs up to 1024 MiB" in stage["detail"]


def test_a_glance_without_the_usage_call_is_skipped(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.faults.respond("GET", r"/image/v2/info/usage$", 404, times=None)

    run = doctor(volimg_sandbox)

    assert run.exit_code == 0, run
    assert only(run, "glance-quota")["status"] == "skipped"
    assert "2.13" in only(run, "glance-quota")["detail"]


def test_a_second_regions_endpoint_with_fewer_stores(sandbox_with: Start) -> None:
    sandbox, volimg = sandbox_with(image_regions={"RegionTwo": ("fast",)})

    central = doctor(volimg)
    edge = doctor(volimg, region="RegionTwo")

    assert central.exit_code == 0, central
    endpoints = statuses(central, "image-endpoints")
    (one,) = (s for s in endpoints if "RegionOne" in s)
    (two,) = (s for s in endpoints if "RegionTwo" in s)
    assert (endpoints[one], endpoints[two]) == ("ok", "warn")
    assert "it can copy everywhere" in next(
        r["detail"] for r in rows(central, "image-endpoints") if r["subject"] == one
    )
    assert only(central, "base-image-stores")["status"] == "ok"
    # Run at the edge site: the base image's stores are unknown there.
    base = only(edge, "base-image-stores")
    assert base["status"] == "warn"
    assert "cirros-base in cheap, archive" in base["detail"]
    assert "--os-region-name RegionOne" in base["fix"]
    assert only(edge, "multi-store")["subject"].endswith("/image-regiontwo")
    assert statuses(edge, "volume-type-store")["pinned-archive"] == "fail"
    # Each other endpoint costs one request.
    asked = sandbox.requests.filter(method="GET", path=r"/info/stores$")
    assert len(asked) == 4  # each run: its own endpoint, then the other one


def test_a_stale_import_lock_on_a_stamped_image(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    stamped = [i for i in sandbox.cloud.images.values() if "volimg" in i.tags]
    older = min(stamped, key=lambda i: i.created_at)  # the one that lost its archive copy
    sandbox.faults.abandon_import(image=older.id)
    started = volimg_sandbox("replicate", older.id, "--store", "archive", "--no-wait")
    assert started.exit_code == 0, started
    fresh = doctor(volimg_sandbox)
    sandbox.advance_clock(10 * 60)  # silent for 10 minutes: the worker is gone

    run = doctor(run_at(sandbox_cloud, timedelta(seconds=sandbox.clock_offset)))

    assert only(fresh, "stale-import-locks")["status"] == "ok"
    assert "1 importing now" in only(fresh, "stale-import-locks")["detail"]
    row = only(run, "stale-import-locks")
    assert row["status"] == "warn"
    assert older.id in row["subject"]
    assert "refused (409) until" in row["detail"]
    assert row["fix"].startswith(f"volimg audit --fix --image {older.id}, from ")
    assert run.exit_code == 0, run  # a warning


def test_an_old_cinder_warns_that_visibility_needs_3_1(sandbox_with: Start) -> None:
    _, volimg = sandbox_with(cinder_max_microversion="3.0")

    run = doctor(volimg)

    row = only(run, "cinder-microversions")
    assert row["status"] == "warn"
    assert "need 3.1" in row["detail"]


# --- exit codes and the JSON contract ----------------------------------------------------------


def test_exit_1_when_glance_cannot_be_read(volimg_sandbox: VolimgRunner, sandbox: Sandbox) -> None:
    sandbox.faults.respond("GET", r"/image/v2/info/import$", 500, times=None)

    run = doctor(volimg_sandbox)

    assert run.exit_code == 1, run
    assert run.doc["command"] == "doctor"
    assert run.doc["result"] == "failed"
    assert run.doc["error"]["exit_code"] == 1
    assert "import methods" in run.doc["error"]["message"]


def test_a_failed_optional_read_is_a_warning_row_not_the_end(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.faults.respond("GET", r"/image/v2/info/usage$", 500, times=None)

    run = doctor(volimg_sandbox)

    assert run.exit_code == 0, run
    row = only(run, "glance-quota")
    assert row["status"] == "warn"
    assert row["detail"].startswith("could not read it: ")


def test_exit_5_when_authentication_is_refused(
    sandbox_cloud: CloudUnderTest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    config = yaml.safe_load(sandbox_cloud.clouds_yaml.read_text())
    config["clouds"][sandbox_cloud.admin_cloud]["auth"]["password"] = "wrong"
    bad = tmp_path / "clouds.yaml"
    bad.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(bad))

    run = doctor(make_runner(sandbox_cloud))

    assert run.exit_code == 5, run
    assert run.doc["command"] == "doctor"
    assert run.doc["error"]["type"] == "AuthenticationFailed"


def test_the_document_holds_every_row_with_the_five_fields(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.cloud.add_volume_type("gold", extra_specs={"image_service:store_id": "nowhere"})

    doc = doctor(volimg_sandbox).doc

    assert list(doc)[:5] == ["volimg", "schema_version", "command", "result", "checks"]
    for row in doc["checks"]:
        assert list(row) == ["check", "status", "subject", "detail", "fix"]
        assert row["status"] in ("ok", "warn", "fail", "skipped")
        assert (row["fix"] is None) == (row["status"] == "ok")
    assert sum(doc["counts"].values()) == len(doc["checks"])
    assert doc["counts"]["fail"] == 1


# --- cost ---------------------------------------------------------------------------------


def client_requests(sandbox: Sandbox, since: int) -> list[Any]:
    return [r for r in list(sandbox.requests)[since:] if r.origin == "client"]


def test_the_request_count_does_not_grow_with_the_project(sandbox_with: Start) -> None:
    """500 volumes send as many requests as the demo's six (docs/performance.md)."""
    small, small_volimg = sandbox_with()
    before = len(small.requests)
    assert doctor(small_volimg).exit_code == 0
    few = client_requests(small, before)

    big, big_volimg = sandbox_with()
    big.add_volumes(500, base_image="cirros-base")
    before = len(big.requests)
    run = doctor(big_volimg)
    many = client_requests(big, before)

    assert run.exit_code == 0, run
    assert "503 volumes made from 1 image" in only(run, "base-image-stores")["detail"]
    assert len(many) == len(few) == 12, [f"{r.method} {r.path}" for r in many]
    assert all(r.method == "GET" or r.service == "identity" for r in many)
    print(f"\ndoctor on 506 volumes: {len(many)} requests")  # quoted in docs/performance.md
