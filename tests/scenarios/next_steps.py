"""Follow the advice volimg prints, as an operator would: every next step must work.

A scenario that ends with ``next_steps`` (or a hint that says "run: volimg ...") hands
them to ``follow``, which runs each printed command against the same cloud, after the
wait the step names, and checks that it finished the job: exit 0, ``result`` ``ok``, and
the image in exactly the expected stores, as the cloud itself reports them.

The grammar a step may use (what volimg prints, and what this helper understands):

* a bare command: ``volimg replicate ID --store cheap --store archive``;
* a condition, then ``:`` (or ``, run:``), then the command:
  ``once image ID is active: volimg replicate ...``. A condition of the form
  ``once|when|until image ID is active`` is waited for by polling the image as admin;
  an image that no longer exists fails the step at once (no wait can make it active).
  Any other condition ("once the cause is fixed") is for the test to meet before it
  calls ``follow``.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterable

import openstack
import pytest

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import Run, VolimgRunner

_COMMAND = re.compile(r"(?:^|:\s*)(volimg\s.+)$")
_WAIT_ACTIVE = re.compile(r"\b(?:once|when|until) image (\S+?) is active\b")


def last_clause(hint: str | None) -> str:
    """The "...; to finish, run: volimg ..." clause of an error hint, as a step."""
    assert hint, "volimg printed no hint"
    return hint.split(";")[-1].strip()


def follow(
    steps: Iterable[str],
    volimg: VolimgRunner,
    cloud: CloudUnderTest,
    *,
    expect_stores: set[str],
    timeout: float = 60.0,
) -> list[Run]:
    """Run every printed step; each must exit 0 and leave the image where it belongs."""
    steps = list(steps)
    assert steps, "volimg printed no next step"
    runs: list[Run] = []
    for step in steps:
        found = _COMMAND.search(step)
        assert found is not None, f"next step {step!r} holds no volimg command"
        condition = step[: found.start(1)]
        waited = _WAIT_ACTIVE.search(condition)
        if waited is not None:
            _wait_until_active(cloud, waited.group(1), step, timeout)
        args = shlex.split(found.group(1))[1:]
        run = volimg(*args, "-f", "json")
        assert run.exit_code == 0, f"next step {step!r} failed: {run!r}"
        assert run.doc["result"] == "ok", f"next step {step!r}: {run.doc}"
        image = run.doc["image"]
        assert image is not None, f"next step {step!r} reports no image"
        assert stores_in_cloud(cloud, image["id"]) == expect_stores, step
        runs.append(run)
    return runs


def stores_in_cloud(cloud: CloudUnderTest, image_id: str) -> set[str]:
    """The image's stores as Glance itself reports them to the admin."""
    conn = openstack.connect(cloud=cloud.admin_cloud)
    try:
        body = conn.image.get(f"/images/{image_id}").json()
    finally:
        conn.close()
    return {s for s in (body.get("stores") or "").split(",") if s}


def _wait_until_active(cloud: CloudUnderTest, image_id: str, step: str, timeout: float) -> None:
    conn = openstack.connect(cloud=cloud.admin_cloud)
    try:
        deadline = time.monotonic() + timeout
        while True:
            response = conn.image.get(f"/images/{image_id}")
            if response.status_code == 404:
                pytest.fail(f"next step {step!r} waits for image {image_id}, which does not exist")
            status = response.json().get("status")
            if status == "active":
                return
            if status in ("killed", "deleted", "pending_delete"):
                pytest.fail(f"next step {step!r} waits for image {image_id}, which is {status}")
            if time.monotonic() > deadline:
                pytest.fail(f"next step {step!r}: image {image_id} still {status} after {timeout}s")
            time.sleep(0.1)
    finally:
        conn.close()
