"""Scenarios that need the sandbox's hooks: faults, the request log, slow timings."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.scenarios.conftest import VolimgRunner
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
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
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


def test_with_all_stores_must_succeed_glance_undoes_every_copy(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.faults.fail_store_copy("archive")

    run = volimg_sandbox("upload", "boot-vol", "--all-stores-must-succeed", "-f", "json")

    assert run.exit_code == 3, run
    assert run.doc["replication"] == {"cheap": "failed", "archive": "failed"}
    assert run.doc["image"]["stores"] == ["fast"]
    copy = sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")
    assert copy[0].json["all_stores_must_succeed"] is True


def test_prune_is_skipped_when_a_copy_failed(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.faults.fail_store_copy("cheap")

    run = volimg_sandbox("upload", "boot-vol", "--prune", "-f", "json")

    assert run.exit_code == 3, run
    assert run.doc["replication"]["fast"] == "skipped"
    assert "fast" in run.doc["image"]["stores"]


def test_cinder_upload_failure_is_exit_1_and_quotes_cinders_message(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.faults.fail_cinder_upload(volume="boot-vol", message="disk full on the backend")

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 1, run
    doc = run.doc
    assert doc["result"] == "failed"
    assert doc["error"]["type"] == "UploadFailed"
    assert "Cinder says" in doc["error"]["message"]
    assert (
        "failed to upload volume" in doc["error"]["message"].lower()
        or "disk full" in doc["error"]["message"]
    )
    assert sandbox.cloud.find_volume("boot-vol").status == "available"


def test_the_upload_request_carries_the_right_microversion_and_headers(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    volimg_sandbox("upload", "pinned-vol", "--visibility", "shared")
    volimg_sandbox("upload", "boot-vol")

    actions = [r for r in sandbox.requests if r.path.endswith("/action")]
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
    volimg_sandbox("upload", "boot-vol")

    imports = sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")
    assert len(imports) == 1
    assert imports[0].json["method"] == {"name": "copy-image"}
    assert imports[0].json["stores"] == ["cheap", "archive"]
    assert imports[0].headers.get("X-Image-Meta-Store") is None


def test_timing_out_is_exit_4_and_says_how_to_finish(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.timings.upload = 30.0

    run = volimg_sandbox("upload", "boot-vol", "--timeout", "1", "-f", "json")

    assert run.exit_code == 4, run
    doc = run.doc
    assert doc["error"]["type"] == "WaitTimedOut"
    assert "may still finish" in doc["error"]["message"]
    assert "volimg replicate" in doc["error"]["hint"]


def test_no_wait_returns_at_once_with_the_image_id_and_the_next_step(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.timings.upload = 30.0

    run = volimg_sandbox("upload", "boot-vol", "--no-wait", "-f", "json")

    assert run.exit_code == 0, run
    doc = run.doc
    assert doc["image"]["status"] in ("queued", "saving")
    assert doc["replication"] == {"cheap": "skipped", "archive": "skipped"}
    assert "volimg replicate" in doc["next_steps"][0]


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


def test_glance_answering_503_once_while_waiting_is_ridden_out(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.faults.respond("GET", r"/image/v2/images/[^/]+$", 503, nth=3)

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 0, run


def test_a_stale_import_lock_is_explained(volimg_sandbox: VolimgRunner, sandbox: Sandbox) -> None:
    base = sandbox.cloud.find_image("cirros-base")
    sandbox.faults.respond(
        "POST", r"/image/v2/images/[^/]+/import$", 409, message="Image has active task"
    )

    run = volimg_sandbox("replicate", base.id, "--store", "fast", "-f", "json")

    assert run.exit_code == 1, run
    assert run.doc["error"]["type"] == "ImportRejected"
    assert (
        run.doc["replication"] == {"cheap": "already-present"} or "fast" in run.doc["replication"]
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
    for key in ("upload_store", "replicate_to", "prune", "reasons", "cinder_headers"):
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
    assert planned.doc["command"] == "upload"
    assert planned.doc["result"] == "planned"

    failed = volimg_sandbox("upload", "twin", "-f", "json")
    assert set(failed.doc) == {"volimg", "schema_version", "command", "result", "error"}
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
