"""Is a report true of the cloud? Checks shared by the fault matrix and the fuzz test.

A report (a single run's JSON document, or one of a batch's ``volumes[]``) names an
image, its stores and an outcome per store; these checks read the sandbox's own state,
once it is idle, and hold each of those statements true.
"""

from __future__ import annotations

from typing import Any

from volimg.sandbox import Sandbox

# Store outcomes (docs/json.md) that say where the copy is once the run is over.
IN_THE_STORE = ("copied", "already-present", "prune-failed")
NOT_IN_THE_STORE = ("failed", "rolled-back", "pruned")


def check_report(sandbox: Sandbox, doc: dict[str, Any]) -> None:
    """The image a report names exists, and every store outcome is true of the cloud.

    Checked once the sandbox is idle: a store said to hold a copy (``copied``,
    ``already-present``, a prune refused) holds it; one said to have failed, been
    rolled back or pruned does not; ``skipped`` is a prune held back (the copy stays)
    or a copy not attempted (``upload --no-wait``: no copy); a ``pending`` store was not
    in the image as the report saw it, and something was really running for it (the
    copy arrived, or Glance recorded its failure). Only pending stores, and the landing
    store of an upload not yet over, may have arrived since the report. A result of
    ``ok`` means the image is in every store of ``plan.expected_stores``, the landing
    store included unless pruned.
    """
    image_doc = doc.get("image")
    if image_doc is None:
        return
    held = sandbox.cloud.images.get(image_doc["id"])
    assert held is not None, f"the report names image {image_doc['id']}, which is gone"
    replication: dict[str, str] = doc["replication"]
    plan = doc.get("plan") or {}
    landing = plan.get("upload_store")
    pending = {s for s, outcome in replication.items() if outcome == "pending"}
    arriving = pending | ({landing} if landing and image_doc["status"] != "active" else set())
    reported, really = set(image_doc["stores"]), set(held.stores)
    assert reported <= really | pending, (reported, really)
    assert really - reported <= arriving, (reported, really)
    assert image_doc["status"] == held.status or arriving, (image_doc["status"], held.status)
    failed_import = set(filter(None, held.extra.get("os_glance_failed_import", "").split(",")))
    for store, outcome in replication.items():
        if outcome in IN_THE_STORE:
            assert store in really, f"{store} is {outcome!r} but not among {sorted(really)}"
        elif outcome in NOT_IN_THE_STORE:
            assert store not in really, f"{store} is {outcome!r} but holds a copy"
        elif outcome == "skipped":
            held_back = store in plan.get("prune", ())
            assert (store in really) == held_back, (store, "skipped", sorted(really))
        else:
            assert outcome == "pending", (store, outcome)
            assert store not in reported, f"{store} is pending and in the report's stores"
            assert store in really | failed_import, f"{store} is pending, but nothing ran"
    if landing and image_doc["status"] == "active" and replication.get(landing) != "pruned":
        assert landing in really, f"the image never reached its landing store {landing}"
    if doc["result"] == "ok":
        expected = set(plan.get("expected_stores", ()))
        assert expected <= really, f"ok, but missing {sorted(expected - really)}"
