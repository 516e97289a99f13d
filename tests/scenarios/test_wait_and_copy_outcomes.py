"""How a batch's upload wait ends, and a copy Glance's quota refuses until --timeout.

tests/scenarios/test_batch_cost.py holds the batch's promises for a run as a real
process; these run inside pytest, against the sandbox, so that the ``copies`` mutation
target (docs/testing.md) runs them against each mutant of ``wait_for_upload`` and of
``_settle_copies``: a mutant that read each volume from Cinder while it waits, that kept
waiting on an upload Cinder had failed (or, resumed, had finished), or that called a
copy Glance's quota refused until the end "rolled back", lived without them.
"""

from __future__ import annotations

import re
from typing import Any

from tests.scenarios.conftest import VolimgRunner
from volimg.sandbox import Sandbox


def waits_read_one_by_one(sandbox: Sandbox, since: int, doc: dict[str, Any]) -> list[str]:
    """The GETs of one volume or image, among those the batch waited on."""
    waited_on = {v["volume"]["id"] for v in doc["volumes"]} | {
        v["image"]["id"] for v in doc["volumes"] if v["image"]
    }
    return [
        f"{r.method} {r.service_path}"
        for r in list(sandbox.requests)[since:]
        if r.origin == "client"
        and r.method == "GET"
        and (found := re.search(r"/(?:images|volumes)/([0-9a-f-]{36})$", r.service_path))
        and found.group(1) in waited_on
    ]


def test_a_batch_reads_no_volume_on_its_own_while_cinder_uploads_it(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """The poller's image listings say when each upload is over: no volume is read from
    Cinder while its image is queued or saving, nor once it is active."""
    sandbox.timings.upload = 0.5  # a few of the poller's ticks while Cinder uploads
    before = len(sandbox.requests)

    run = volimg_sandbox("upload", "boot-vol", "data-vol", "--no-replicate", "-f", "json")

    assert run.exit_code == 0, run
    assert run.doc["summary"]["counts"]["ok"] == 2, run.doc["summary"]
    assert waits_read_one_by_one(sandbox, before, run.doc) == []


def test_a_batch_sees_at_once_that_cinder_failed_an_upload(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """Cinder deleted the image of the upload it failed: the batch reads that volume once,
    reports the upload failed with the status Cinder restored, and does not wait for its
    --timeout; the other volume is uploaded."""
    sandbox.faults.fail_cinder_upload(volume="data-vol")
    before = len(sandbox.requests)

    run = volimg_sandbox(
        "upload", "boot-vol", "data-vol", "--no-replicate", "--timeout", "20", "-f", "json"
    )

    assert run.exit_code == 1, run
    assert run.doc["summary"]["counts"]["ok"] == 1, run.doc["summary"]
    assert run.doc["summary"]["counts"]["failed"] == 1, run.doc["summary"]
    (failed,) = [v for v in run.doc["volumes"] if v["ref"] == "data-vol"]
    assert failed["result"] == "failed"
    assert failed["error"]["type"] == "UploadFailed"
    assert "volume is available" in failed["error"]["message"]
    assert failed["seconds"] < 10, failed["seconds"]
    data_vol = failed["volume"]["id"]
    reads = waits_read_one_by_one(sandbox, before, run.doc)
    assert [r.rpartition("/")[2] for r in reads] == [data_vol], reads


def test_a_batch_run_again_while_cinder_still_uploads_waits_for_that_upload(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """The first batch gives up (--timeout) while Cinder still uploads; the next one
    resumes that image, its volume read while still uploading, and waits until Cinder
    restores the volume: the same image ends ok, well before the second --timeout."""
    sandbox.timings.upload = 3.0
    once = ("--once-per", "day", "--no-replicate", "-f", "json")
    first = volimg_sandbox("upload", "data-vol", "--timeout", "1", *once)
    assert first.doc["volumes"][0]["result"] == "timed-out", first
    image_id = first.doc["volumes"][0]["image"]["id"]

    second = volimg_sandbox("upload", "data-vol", "--timeout", "15", *once)

    assert second.exit_code == 0, second
    (volume,) = second.doc["volumes"]
    assert volume["volume"]["status"] == "uploading"  # as the batch selected it
    assert volume["result"] == "ok"
    assert volume["image"]["id"] == image_id
    assert volume["seconds"] < 10, volume["seconds"]


def test_a_copy_glance_refuses_over_its_quota_until_the_timeout_is_a_failed_store(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """A limit of 0 refuses every copy (inside the task, after its 202): the copy is asked
    again after a pause while --timeout leaves time, then the store is failed, with the
    limit named, not rolled back; the image stays where it was."""
    up = volimg_sandbox("upload", "boot-vol", "--no-replicate", "-f", "json")
    assert up.exit_code == 0, up
    image_id = up.doc["image"]["id"]
    sandbox.cloud.config.glance_limits = {"image_count_uploading": 0}
    before = len(sandbox.requests)

    run = volimg_sandbox("replicate", image_id, "--store", "cheap", "--timeout", "8", "-f", "json")

    assert run.exit_code == 3, run
    assert run.doc["replication"] == {"cheap": "failed"}
    assert run.doc["details"]["cheap"].startswith(
        "Glance's image_count_uploading limit refused the copy until the run's --timeout"
    )
    assert run.doc["glance_limits_hit"] == ["image_count_uploading"]
    assert list(sandbox.cloud.images[image_id].locations) == ["fast"]
    copies = [
        r
        for r in list(sandbox.requests)[before:]
        if r.origin == "client" and r.method == "POST" and r.service_path.endswith("/import")
    ]
    assert len(copies) >= 2, "the refused copy was not asked again"
