"""Scenarios that need the sandbox's hooks: faults, the request log, slow timings."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import VolimgRunner
from tests.scenarios.next_steps import follow
from volimg.sandbox import Sandbox


def test_dry_run_sends_not_one_mutating_request(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.requests.clear()

    upload = volimg_sandbox("upload", "boot-vol", "--prune", "--dry-run", "-f", "json")
    plan = volimg_sandbox("plan", "pinned-vol", "--replicate")
    replicate = volimg_sandbox("replicate", "cirros-base", "--store", "fast", "--dry-run")

    assert (upload.exit_code, plan.exit_code, replicate.exit_code) == (0, 0, 0)
    assert upload.doc["result"] == "planned"
    assert upload.doc["image"] is None
    assert sandbox.requests.mutating(origin="client") == []
    assert len(sandbox.requests) > 0  # it did talk to the cloud, read-only


def test_one_store_copy_failing_is_exit_3_with_a_per_store_report(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox.faults.fail_store_copy("archive")

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 3, run
    doc = run.doc
    assert doc["result"] == "partial"
    assert doc["replication"] == {"cheap": "copied", "archive": "failed"}
    assert doc["error"]["type"] == "PartialReplication"
    image_id = doc["image"]["id"]
    assert set(doc["image"]["stores"]) == {"fast", "cheap"}
    assert doc["next_steps"] == [f"volimg replicate {image_id} --store cheap --store archive"]
    sandbox.faults.clear()  # the cause is fixed
    follow(
        doc["next_steps"], volimg_sandbox, sandbox_cloud, expect_stores={"fast", "cheap", "archive"}
    )


def test_with_all_stores_must_succeed_glance_undoes_every_copy(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox.faults.fail_store_copy("archive")

    run = volimg_sandbox("upload", "boot-vol", "--all-stores-must-succeed", "-f", "json")

    assert run.exit_code == 3, run
    # cheap was copied, then undone by Glance because archive failed.
    assert run.doc["replication"] == {"cheap": "rolled-back", "archive": "failed"}
    assert "another store failed" in run.doc["details"]["cheap"]
    assert run.doc["image"]["stores"] == ["fast"]
    copy = sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")
    assert copy[0].json["all_stores_must_succeed"] is True
    sandbox.faults.clear()
    follow(
        run.doc["next_steps"],
        volimg_sandbox,
        sandbox_cloud,
        expect_stores={"fast", "cheap", "archive"},
    )


def test_prune_is_skipped_when_a_copy_failed(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox.faults.fail_store_copy("cheap")

    run = volimg_sandbox("upload", "boot-vol", "--prune", "-f", "json")

    assert run.exit_code == 3, run
    assert run.doc["replication"]["fast"] == "skipped"
    assert "fast" in run.doc["image"]["stores"]
    sandbox.faults.clear()
    follow(run.doc["next_steps"], volimg_sandbox, sandbox_cloud, expect_stores={"cheap", "archive"})


def test_cinder_upload_failure_is_exit_1_and_quotes_cinders_message(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.faults.fail_cinder_upload(volume="boot-vol", message="disk full on the backend")

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 1, run
    doc = run.doc
    assert doc["result"] == "failed"
    assert doc["image"] is None
    assert doc["error"]["type"] == "UploadFailed"
    volume = sandbox.cloud.find_volume("boot-vol")
    (message,) = sandbox.cloud.messages_for(volume.id)
    # Cinder's user message (not its internal error, which users never see), matched to
    # this upload by the request id of the upload call.
    upload_call = sandbox.requests.filter(
        method="POST", path=r"/action$", action="os-volume_upload_image"
    )[0]
    assert message.request_id == upload_call.request_id
    assert "Cinder says: " in doc["error"]["message"]
    assert f"({message.event_id})" in doc["error"]["message"]
    assert "disk full" not in doc["error"]["message"]
    assert volume.status == "available"


def test_an_older_cinder_message_is_not_blamed_for_this_upload(
    sandbox_cloud: CloudUnderTest, sandbox: Sandbox
) -> None:
    from volimg import core, events
    from volimg.gateway import connect
    from volimg.planner import UploadOptions
    from volimg.results import RunSettings

    sandbox.faults.fail_cinder_upload(volume="boot-vol")
    gateway = connect(sandbox_cloud.admin_cloud, None)
    settings = RunSettings(poll_interval=0.02)
    first = core.upload(gateway, "boot-vol", UploadOptions(image_name="first"), settings)
    assert first.exit_code == 1
    assert first.error is not None
    assert "Cinder says" in first.error.message

    # The next upload ends with the volume in error, and Cinder records nothing about it.
    sandbox.timings.upload = 5.0

    def break_the_volume(event: events.Event) -> None:
        if isinstance(event, events.UploadStarted):
            sandbox.cloud.set_volume_status("boot-vol", "error")

    second = core.upload(
        gateway, "boot-vol", UploadOptions(image_name="second"), settings, emit=break_the_volume
    )
    gateway.close()

    assert second.error is not None
    assert second.exit_code == 1
    assert "Cinder left no user message about this upload" in second.error.message
    assert "Cinder says" not in second.error.message


def test_the_upload_request_carries_the_right_microversion_and_headers(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    pinned = volimg_sandbox("upload", "pinned-vol", "--visibility", "shared")
    boot = volimg_sandbox("upload", "boot-vol")

    assert (pinned.exit_code, boot.exit_code) == (0, 0), (pinned, boot)

    actions = sandbox.requests.filter(action="os-volume_upload_image")
    versions = [r.headers.get("OpenStack-API-Version") for r in actions]
    assert versions == ["volume 3.1", "volume 3.0"]
    # What the sandbox's Cinder sent to Glance, as the real Cinder does.
    uploads = [r for r in sandbox.requests if r.method == "PUT" and r.path.endswith("/file")]
    assert uploads[0].headers.get("X-Image-Meta-Store") == "archive"
    assert uploads[1].headers.get("X-Image-Meta-Store") is None
    base_id = sandbox.cloud.find_image("cirros-base").id
    assert all(u.headers.get("X-OpenStack-Base-Image-Ref") == base_id for u in uploads)


def test_copy_image_is_one_import_with_a_stores_list_and_no_store_header(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    run = volimg_sandbox("upload", "boot-vol")

    assert run.exit_code == 0, run
    imports = sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")
    assert len(imports) == 1
    assert imports[0].json["method"] == {"name": "copy-image"}
    assert imports[0].json["stores"] == ["cheap", "archive"]
    assert imports[0].headers.get("X-Image-Meta-Store") is None


def test_timing_out_is_exit_4_and_says_how_to_finish(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox.timings.upload = 3.0

    run = volimg_sandbox("upload", "boot-vol", "--timeout", "1", "-f", "json")

    assert run.exit_code == 4, run
    doc = run.doc
    assert doc["error"]["type"] == "WaitTimedOut"
    assert "may still finish" in doc["error"]["message"]
    assert "volimg replicate" in doc["error"]["hint"]
    follow(
        doc["next_steps"], volimg_sandbox, sandbox_cloud, expect_stores={"fast", "cheap", "archive"}
    )


def test_no_wait_returns_at_once_with_the_image_id_and_the_next_step(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox.timings.upload = 2.0

    run = volimg_sandbox("upload", "boot-vol", "--no-wait", "-f", "json")

    assert run.exit_code == 0, run
    doc = run.doc
    assert doc["image"]["status"] in ("queued", "saving")
    assert doc["replication"] == {"cheap": "skipped", "archive": "skipped"}
    assert "volimg replicate" in doc["next_steps"][0]
    follow(
        doc["next_steps"], volimg_sandbox, sandbox_cloud, expect_stores={"fast", "cheap", "archive"}
    )


def test_progress_is_timestamped_lines_on_stderr_when_not_a_terminal(
    volimg_sandbox: VolimgRunner,
) -> None:
    run = volimg_sandbox("upload", "boot-vol")

    assert run.exit_code == 0, run
    lines = run.stderr.splitlines()
    assert lines, run
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")
    assert all(stamp.match(line) for line in lines), lines
    assert any("store cheap: copied" in line for line in lines)
    assert "result" in run.stdout
    assert "ok" in run.stdout
    assert "\x1b[" not in run.stdout + run.stderr  # no colour codes off a terminal


def test_a_cinder_503_while_waiting_is_ridden_out_by_the_wait(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    # openstacksdk retries no Cinder status code, so this 503 reaches volimg's own
    # wait, which polls again within the deadline.
    sandbox.faults.respond("GET", r"/volume/v3/[^/]+/volumes/[0-9a-f-]{36}$", 503, nth=1)

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 0, run
    statuses = [
        r.status for r in sandbox.requests.filter(method="GET", path=r"/volumes/[0-9a-f-]{36}$")
    ]
    assert 503 in statuses


def test_an_import_already_running_for_the_same_stores_is_followed(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """The printed resume command must not trip over volimg's own running copy."""
    sandbox.timings.store_copy = 1.0
    started = volimg_sandbox(
        "replicate", "cirros-base", "--store", "fast", "--no-wait", "-f", "json"
    )
    assert started.exit_code == 0, started
    assert started.doc["result"] == "started"
    assert started.doc["replication"] == {"fast": "pending"}

    run = volimg_sandbox("replicate", "cirros-base", "--store", "fast", "-f", "json")

    assert run.exit_code == 0, run
    assert run.doc["result"] == "ok"
    assert run.doc["replication"] == {"fast": "copied"}
    assert "already running" in run.doc["details"]["fast"]
    assert "fast" in run.doc["image"]["stores"]
    assert len(sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")) == 1


def test_another_import_to_other_stores_is_a_refusal(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    made = volimg_sandbox("upload", "data-vol", "-f", "json")
    assert made.exit_code == 0, made
    image_id = made.doc["image"]["id"]
    sandbox.timings.store_copy = 5.0
    started = volimg_sandbox("replicate", image_id, "--store", "cheap", "--no-wait")
    assert started.exit_code == 0, started

    run = volimg_sandbox("replicate", image_id, "--store", "archive", "-f", "json")

    assert run.exit_code == 3, run
    doc = run.doc
    assert doc["error"]["type"] == "ImportRejected"
    assert "holds the lock" in doc["error"]["message"]
    assert "to cheap" in doc["error"]["message"]
    assert "60 minutes" in doc["error"]["hint"]
    assert doc["replication"] == {"archive": "failed"}


def test_a_lost_answer_to_the_upload_is_never_resent(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.faults.lose_answer("POST", r"/volumes/[^/]+/action$", action="os-volume_upload_image")

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 0, run
    assert (
        len(
            sandbox.requests.filter(
                method="POST", path=r"/action$", action="os-volume_upload_image"
            )
        )
        == 1
    )
    name = run.doc["plan"]["image_name"]
    assert [i.id for i in sandbox.cloud.images_named(name)] == [run.doc["image"]["id"]]
    assert set(run.doc["image"]["stores"]) == {"fast", "cheap", "archive"}
    assert "Cinder did accept it" in run.stderr


def test_an_upload_request_that_never_arrived_is_reported_safe_to_retry(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.faults.drop_connection(
        "POST", r"/volumes/[^/]+/action$", action="os-volume_upload_image"
    )

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 1, run
    assert (
        len(
            sandbox.requests.filter(
                method="POST", path=r"/action$", action="os-volume_upload_image"
            )
        )
        == 1
    )
    assert "nothing came of it" in run.doc["error"]["message"]
    assert "safe to run volimg upload again" in run.doc["error"]["hint"]
    assert sandbox.cloud.images_named(run.doc["plan"]["image_name"]) == []


def test_a_lost_answer_to_copy_image_is_followed_by_its_request_id(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.faults.lose_answer("POST", r"/images/[^/]+/import$")

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 0, run
    assert run.doc["replication"] == {"cheap": "copied", "archive": "copied"}
    (sent,) = sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")
    task = sandbox.cloud.tasks_for(run.doc["image"]["id"])[0]
    assert task.request_id == sent.header("X-OpenStack-Request-ID")


def test_a_503_on_copy_image_is_not_resent(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    # openstacksdk would have keystoneauth retry Glance 503s five times, for any method.
    sandbox.faults.respond("POST", r"/images/[^/]+/import$", 503)

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert len(sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")) == 1
    assert run.exit_code == 3, run
    assert run.doc["replication"] == {"cheap": "failed", "archive": "failed"}
    assert run.doc["next_steps"][0].startswith("volimg replicate ")
    follow(
        run.doc["next_steps"],
        volimg_sandbox,
        sandbox_cloud,
        expect_stores={"fast", "cheap", "archive"},
    )


def _json_shape(doc: dict[str, Any]) -> None:
    required = {
        "volimg": str,
        "schema_version": int,
        "command": str,
        "result": str,
        "volume": (dict, type(None)),
        "base_image": (dict, type(None)),
        "volume_type_store": (str, type(None)),
        "plan": dict,
        "image": (dict, type(None)),
        "replication": dict,
        "error": (dict, type(None)),
        "next_steps": list,
    }
    for key, kind in required.items():
        assert key in doc, key
        assert isinstance(doc[key], kind), (key, doc[key])
    assert doc["result"] in ("ok", "partial", "failed", "planned")
    for key in (
        "upload_store",
        "replicate_to",
        "prune",
        "target_stores",
        "expected_stores",
        "reasons",
        "cinder_headers",
        "image_name_taken_by",
    ):
        assert key in doc["plan"], key
    for reason in doc["plan"]["reasons"]:
        assert set(reason) == {"topic", "decision", "reason"}
    if doc["volume"] is not None:
        assert set(doc["volume"]) >= {"id", "name", "status", "volume_type"}
    if doc["base_image"] is not None:
        assert set(doc["base_image"]) == {"id", "name", "stores"}
    if doc["image"] is not None:
        assert set(doc["image"]) >= {"id", "name", "status", "stores"}
        assert isinstance(doc["image"]["stores"], list)
    assert set(doc["replication"].values()) <= {
        "copied",
        "failed",
        "already-present",
        "pending",
        "pruned",
        "skipped",
        "prune-failed",
    }
    if doc["error"] is not None:
        assert set(doc["error"]) == {"type", "exit_code", "message", "hint"}


def test_json_documents_match_the_documented_contract(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    ok = volimg_sandbox("upload", "boot-vol", "-f", "json")
    planned = volimg_sandbox("plan", "data-vol", "-f", "json")
    sandbox.faults.fail_store_copy("cheap")
    partial = volimg_sandbox("upload", "boot-vol", "-f", "json")

    for run in (ok, planned, partial):
        _json_shape(run.doc)
    assert planned.doc["command"] == "plan"
    assert planned.doc["result"] == "planned"

    failed = volimg_sandbox("upload", "twin", "-f", "json")
    assert set(failed.doc) == set(ok.doc)  # the same keys, null or empty (docs/json.md)
    assert (failed.doc["plan"], failed.doc["replication"], failed.doc["next_steps"]) == (
        None,
        {},
        [],
    )
    assert failed.doc["command"] == "upload"


def test_usage_errors_in_json_mode_still_print_one_document(volimg_sandbox: VolimgRunner) -> None:
    run = volimg_sandbox("upload", "boot-vol", "--disk-format", "floppy", "-f", "json")

    assert run.exit_code == 2, run
    assert run.doc["result"] == "failed"
    assert "floppy" in run.doc["error"]["message"]


def test_force_on_a_cloud_without_enable_force_upload_is_exit_2_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.conftest import CloudUnderTest
    from tests.scenarios.conftest import make_runner
    from volimg.sandbox import Timings

    with Sandbox(seed="demo", timings=Timings.instant(), enable_force_upload=False) as strict:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(strict.clouds_yaml))
        cloud = CloudUnderTest(
            "sandbox", strict.clouds_yaml, strict.admin_cloud, strict.member_cloud
        )

        run = make_runner(cloud)("upload", "busy-vol", "--force", "-f", "json")

        assert run.exit_code == 2, run
        assert run.doc["error"]["type"] == "VolumeNotUploadable"
        assert "enable_force_upload" in run.doc["error"]["hint"]
        assert strict.cloud.find_volume("busy-vol").status == "in-use"
        assert not [i for i in strict.cloud.images.values() if i.name.startswith("busy-vol")]


def test_verbose_http_logs_never_show_the_password_or_a_token(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    import yaml

    run = volimg_sandbox("-vv", "plan", "boot-vol")

    assert run.exit_code == 0, run
    assert "REQ: curl" in run.stderr  # keystoneauth's request log is on
    config = yaml.safe_load(sandbox.clouds_yaml.read_text())
    password = config["clouds"][sandbox.admin_cloud]["auth"]["password"]
    shown = run.stdout + run.stderr
    assert password not in shown
    assert sandbox.cloud.tokens
    for token in sandbox.cloud.tokens:
        assert token not in shown


def test_verbose_says_what_volimg_read_and_where_the_cloud_came_from(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    run = volimg_sandbox("-v", "plan", "boot-vol")

    assert run.exit_code == 0, run
    assert f"cloud {sandbox.admin_cloud}, from --os-cloud" in run.stderr
    assert "volume boot-vol" in run.stderr
    assert "base image" in run.stderr
    assert "REQ: curl" not in run.stderr  # HTTP only with -vv
