"""What ``--prune`` does to each store, as the report says and as Glance has it afterwards.

``--prune`` removes a copy outside the target stores once every planned copy exists;
never with ``--no-wait``, never while a copy failed. These were surviving mutants of the
``steps`` mutation target (docs/testing.md): no scenario of it pruned an image that ends
in two stores, pruned with ``--no-wait`` and nothing left to copy, or pruned while a
copy failed; a mutant that kept the two-store copy, pruned with ``--no-wait``, or
crashed on the failed copy lived.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import VolimgRunner
from volimg.sandbox import Sandbox


def upload(volimg: VolimgRunner, *args: str) -> str:
    run = volimg("upload", "boot-vol", "--no-replicate", *args, "-f", "json")
    assert run.exit_code == 0, run
    return run.doc["image"]["id"]  # type: ignore[no-any-return]


def stores(sandbox: Sandbox, image_id: str) -> list[str]:
    return list(sandbox.cloud.images[image_id].locations)


def test_prune_removes_the_copy_outside_the_one_target_store(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    image_id = upload(volimg_sandbox)
    assert stores(sandbox, image_id) == ["fast"]

    run = volimg_sandbox("replicate", image_id, "--store", "cheap", "--prune", "-f", "json")

    assert run.exit_code == 0, run
    assert run.doc["replication"] == {"cheap": "copied", "fast": "pruned"}
    assert stores(sandbox, image_id) == ["cheap"]


def test_no_wait_never_prunes_even_with_nothing_left_to_copy(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    image_id = upload(volimg_sandbox, "--also-store", "cheap")
    assert stores(sandbox, image_id) == ["fast", "cheap"]

    run = volimg_sandbox(
        "replicate", image_id, "--store", "fast", "--prune", "--no-wait", "-f", "json"
    )

    assert run.exit_code == 0, run
    assert run.doc["replication"] == {"fast": "already-present", "cheap": "skipped"}
    assert run.doc["details"]["cheap"] == "not pruned: --no-wait"
    assert stores(sandbox, image_id) == ["fast", "cheap"]


def test_a_failed_copy_holds_the_prune_back(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox.faults.fail_store_copy("archive")

    run = volimg_sandbox("upload", "boot-vol", "--prune", "-f", "json")

    assert run.exit_code == 3, run
    doc: dict[str, Any] = run.doc
    assert doc["result"] == "partial"
    assert doc["replication"] == {"cheap": "copied", "archive": "failed", "fast": "skipped"}
    assert doc["details"]["fast"] == "not pruned: a copy failed"
    assert stores(sandbox, doc["image"]["id"]) == ["fast", "cheap"]


def test_a_copy_removed_though_the_answer_was_lost_does_not_stop_the_next_prune(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    image_id = upload(volimg_sandbox, "--also-store", "cheap")
    assert stores(sandbox, image_id) == ["fast", "cheap"]
    sandbox.faults.lose_answer("DELETE", r"/stores/fast/")

    run = volimg_sandbox("replicate", image_id, "--store", "archive", "--prune", "-f", "json")

    assert run.exit_code == 0, run
    assert run.doc["replication"] == {"archive": "copied", "fast": "pruned", "cheap": "pruned"}
    assert "though its answer was lost" in run.doc["details"]["fast"]
    assert stores(sandbox, image_id) == ["archive"]
