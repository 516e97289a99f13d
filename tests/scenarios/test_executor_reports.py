"""Issue 13, the steps' part: next steps that work and reports that tell the truth.

Each test pins observable behaviour (exit code, JSON fields, stderr, what the cloud
holds) and, where a run ends with next steps, runs them and checks they finish the job.
"""

from __future__ import annotations

import re
import shlex
import uuid
from typing import Any

import openstack
import pytest

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import VolimgRunner, make_runner
from tests.scenarios.next_steps import follow, last_clause
from volimg import core, events
from volimg.errors import ExitCode
from volimg.gateway import connect
from volimg.planner import UploadOptions
from volimg.results import RunSettings
from volimg.sandbox import Sandbox

EVERYWHERE = {"fast", "cheap", "archive"}
IMPORT_POST = r"/images/[^/]+/import$"


def _interrupted_upload(cloud: CloudUnderTest, at: type[events.Event]) -> Any:
    """``volimg upload boot-vol`` through the library, with Ctrl-C at the first ``at`` event."""

    def interrupt(event: events.Event) -> None:
        if isinstance(event, at):
            raise KeyboardInterrupt

    gateway = connect(cloud.admin_cloud, None)
    try:
        return core.upload(
            gateway, "boot-vol", UploadOptions(), RunSettings(poll_interval=0.02), emit=interrupt
        )
    finally:
        gateway.close()


def _member_volume(cloud: CloudUnderTest, admin_conn: Any) -> tuple[Any, Any]:
    member = openstack.connect(cloud=cloud.member_cloud)
    base = admin_conn.image.find_image("cirros-base", ignore_missing=False)
    volume = member.block_storage.create_volume(
        size=1, image_id=base.id, name=f"member-prune-{uuid.uuid4().hex[:8]}"
    )
    member.block_storage.wait_for_status(
        volume, "available", failures=["error"], interval=0.2, wait=120
    )
    return member, volume


# --- next steps that always work -------------------------------------------------------


def test_after_cinder_failed_the_upload_the_next_step_is_to_upload_again(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    """Cinder deleted the image: no step may wait for it; the step is `volimg upload`."""
    sandbox.faults.fail_cinder_upload(volume="boot-vol")
    volume_id = sandbox.cloud.find_volume("boot-vol").id

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 1, run
    doc = run.doc
    assert doc["image"] is None
    # no step names an image that does not exist (the one Cinder deleted)
    for named in re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", " ".join(doc["next_steps"])):
        assert named == volume_id or named in sandbox.cloud.images, doc["next_steps"]
    commands = [shlex.split(step[step.index("volimg ") :]) for step in doc["next_steps"]]
    assert [c[1:3] for c in commands] in (
        [["upload", "boot-vol"]],
        [["upload", volume_id]],
    ), doc["next_steps"]
    assert not any("replicate" in step for step in doc["next_steps"])
    follow(doc["next_steps"], volimg_sandbox, sandbox_cloud, expect_stores=EVERYWHERE)


def test_interrupted_during_the_copy_the_printed_replicate_follows_volimgs_own_import(
    sandbox_cloud: CloudUnderTest, sandbox: Sandbox
) -> None:
    """Today the printed `volimg replicate` exits 3: 'another import holds the lock'."""
    sandbox.timings.store_copy = 1.0  # the copy is still running when the step is run

    outcome = _interrupted_upload(sandbox_cloud, events.CopyRequested)

    assert outcome.exit_code == ExitCode.INTERRUPTED
    assert outcome.error is not None
    volimg = make_runner(sandbox_cloud)
    (run,) = follow(outcome.next_steps, volimg, sandbox_cloud, expect_stores=EVERYWHERE)
    assert set(run.doc["replication"]) == {"cheap", "archive"}
    assert set(run.doc["replication"].values()) <= {"copied", "already-present"}
    # volimg followed the import it had started; it did not start a second one
    assert len(sandbox.requests.filter(method="POST", path=IMPORT_POST)) == 1
    follow([last_clause(outcome.error.hint)], volimg, sandbox_cloud, expect_stores=EVERYWHERE)


def test_timed_out_during_the_copy_the_printed_replicate_follows_volimgs_own_import(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox.timings.store_copy = 1.5  # two stores: 3 s, past --timeout 1

    run = volimg_sandbox("upload", "boot-vol", "--timeout", "1", "-f", "json")

    assert run.exit_code == 4, run
    assert run.doc["replication"] == {"cheap": "pending", "archive": "pending"}
    (finish,) = follow(
        run.doc["next_steps"], volimg_sandbox, sandbox_cloud, expect_stores=EVERYWHERE
    )
    assert len(sandbox.requests.filter(method="POST", path=IMPORT_POST)) == 1
    assert set(finish.doc["replication"].values()) <= {"copied", "already-present"}


def test_an_import_running_for_other_stores_is_still_refused(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """The other half of the rule: only volimg's own stores are followed."""
    sandbox.timings.store_copy = 5.0
    uploaded = volimg_sandbox("upload", "boot-vol", "--no-replicate", "-f", "json")
    image_id = uploaded.doc["image"]["id"]
    started = volimg_sandbox("replicate", image_id, "--store", "cheap", "--no-wait")
    assert started.exit_code == 0, started

    run = volimg_sandbox("replicate", image_id, "--store", "archive", "-f", "json")

    assert run.exit_code == 3, run
    assert run.doc["error"]["type"] == "ImportRejected"
    assert "holds the lock" in run.doc["error"]["message"]


def test_interrupted_while_the_image_is_queued_the_hint_says_what_to_wait_for(
    sandbox_cloud: CloudUnderTest, sandbox: Sandbox
) -> None:
    """Today the hint says 'to finish, run: volimg replicate ...', which exits 2 at once."""
    sandbox.timings.upload = 1.0

    outcome = _interrupted_upload(sandbox_cloud, events.UploadStarted)

    assert outcome.exit_code == ExitCode.INTERRUPTED
    assert outcome.error is not None
    assert "is in: no store yet" not in outcome.error.message
    volimg = make_runner(sandbox_cloud)
    # At once, as the operator reads it: the hint must name the wait itself.
    follow([last_clause(outcome.error.hint)], volimg, sandbox_cloud, expect_stores=EVERYWHERE)
    follow(outcome.next_steps, volimg, sandbox_cloud, expect_stores=EVERYWHERE)


# --- truthful reports -------------------------------------------------------------------


def test_a_500_to_copy_image_is_reported_as_glances_answer_not_a_lost_one(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox.faults.respond("POST", IMPORT_POST, 500)

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 3, run
    doc = run.doc
    image_id = doc["image"]["id"]
    assert sandbox.cloud.tasks_for(image_id) == []  # Glance started no import
    message, hint = doc["error"]["message"], doc["error"]["hint"]
    assert "500" in message
    assert "lost" not in message + run.stderr
    assert "Glance accepted copy-image" not in run.stderr
    assert "task unknown" not in run.stderr
    assert "no import" in message + hint
    assert "safe" in hint
    assert doc["replication"] == {"cheap": "failed", "archive": "failed"}
    for detail in doc["details"].values():
        assert "500" in detail
    follow(doc["next_steps"], volimg_sandbox, sandbox_cloud, expect_stores=EVERYWHERE)


@pytest.mark.parametrize(
    "args",
    [("upload", "boot-vol"), ("replicate", "cirros-base", "--store", "fast")],
    ids=["upload", "replicate"],
)
def test_no_wait_reports_started_not_ok(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, args: tuple[str, ...]
) -> None:
    """Proposed: result "started" (work requested, not awaited), exit 0."""
    sandbox.timings.upload = 2.0
    sandbox.timings.store_copy = 2.0

    run = volimg_sandbox(*args, "--no-wait", "-f", "json")

    assert run.exit_code == 0, run
    assert run.doc["result"] == "started"
    assert run.doc["error"] is None
    assert run.doc["next_steps"]


def test_a_members_refused_copy_holds_back_the_prune_as_an_admins_failed_copy_does(
    cloud: CloudUnderTest, volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    member, volume = _member_volume(cloud, admin_conn)
    try:
        run = volimg("upload", volume.id, "--prune", "-f", "json", *qcow2, member=True)

        assert run.exit_code == 5, run
        doc = run.doc
        # the same report an admin gets when a copy fails (test_prune_is_skipped_...)
        assert doc["replication"].get("fast") == "skipped"
        assert doc["details"].get("fast") == "not pruned: a copy failed"
        follow(doc["next_steps"], volimg, cloud, expect_stores={"cheap", "archive"})
    finally:
        member.close()


def test_with_all_stores_must_succeed_a_rolled_back_store_is_reported_rolled_back(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """Proposed store outcome "rolled-back": copied, then undone by Glance."""
    sandbox.faults.fail_store_copy("archive")

    run = volimg_sandbox("upload", "boot-vol", "--all-stores-must-succeed", "-f", "json")

    assert run.exit_code == 3, run
    assert run.doc["replication"] == {"cheap": "rolled-back", "archive": "failed"}
    assert run.doc["image"]["stores"] == ["fast"]


# --- wording ------------------------------------------------------------------------


def test_store_outcomes_have_no_nested_parentheses(
    sandbox_cloud: CloudUnderTest, volimg_sandbox: VolimgRunner
) -> None:
    admin_conn = openstack.connect(cloud=sandbox_cloud.admin_cloud)
    member, volume = _member_volume(sandbox_cloud, admin_conn)
    try:
        run = volimg_sandbox("upload", volume.id, member=True)
    finally:
        member.close()
        admin_conn.close()

    assert run.exit_code == 5, run
    nested = re.compile(r"\([^()]*\(")
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "store " in line]
    assert lines
    assert [line for line in lines if nested.search(line)] == []


def test_a_timed_out_upload_does_not_say_is_in_no_store_yet(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.timings.upload = 3.0

    run = volimg_sandbox("upload", "boot-vol", "--timeout", "1", "-f", "json")

    assert run.exit_code == 4, run
    assert "no store yet" not in run.doc["error"]["message"]


def test_a_failed_stores_detail_does_not_quote_an_unrelated_progress_message(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.faults.fail_store_copy("archive")

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 3, run
    detail = run.doc["details"]["archive"]
    assert "Copied" not in detail
    assert "task says" not in detail
