"""A night that goes wrong on real Keystone, Glance and Cinder, and the run that mends it.

A ``--once-per day --keep 1`` batch of six volumes is killed with SIGKILL while Cinder
uploads; the re-run is interrupted by glance-api restarting while it copies; Keystone
restarts; a final run. Every volume must end with exactly one image for the day,
stamped as volimg's upload and in its planned stores, and nothing else was deleted.

glance-api's restart loses whatever copy-image task it was running: Glance keeps that
task's import lock until the task has not moved for 60 minutes
(glance/api/v2/images.py ``_enforce_import_lock``). The test does not wait an hour:
it ages such tasks in Glance's database by 121 minutes (120 while pending), which is what the clock would
have done, and the final run then takes the lock over as Glance allows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REALCLOUD_STATE, REPO_ROOT, CloudUnderTest, _use
from volimg.provenance import Period, Stamp, StampedBy, period_key, unfinished_mark

pytestmark = pytest.mark.realcloud
STACK = REPO_ROOT / "tests" / "realcloud" / "stack.py"
CORE = {
    "id", "name", "status", "stores", "protected", "tags", "visibility", "owner", "size",
    "virtual_size", "checksum", "os_hash_algo", "os_hash_value", "disk_format",
    "container_format", "created_at", "updated_at", "min_disk", "min_ram", "file", "self",
    "schema", "direct_url", "locations", "os_hidden",
}  # fmt: skip


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 240.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def all_images(conn: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    path = "/images?limit=200"
    while path:
        page = conn.image.get(path).json()
        found.update({raw["id"]: raw for raw in page["images"]})
        path = page.get("next", "").removeprefix("/v2")
    return found


def restart(*services: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(STACK), "restart", *services, "--state", str(REALCLOUD_STATE)],
        capture_output=True, text=True, check=False, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def age_unfinished_glance_tasks(minutes: int) -> int:
    """What an hour would do: the tasks glance-api lost stop blocking new imports."""
    db = sqlite3.connect(REALCLOUD_STATE / "glance" / "glance.sqlite")
    try:
        with db:
            cursor = db.execute(
                "UPDATE tasks SET updated_at = datetime(updated_at, ?) "
                "WHERE status IN ('pending', 'processing')",
                (f"-{minutes} minutes",),
            )
        return cursor.rowcount
    finally:
        db.close()


@pytest.mark.timeout(900)
def test_a_killed_night_with_glance_and_keystone_restarts_ends_with_one_placed_image_per_volume(
    realstack: CloudUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openstack

    real = _use(realstack, monkeypatch)
    conn = openstack.connect(cloud=real.admin_cloud)
    base = conn.image.find_image("cirros-base", ignore_missing=False)
    label = "night-" + uuid.uuid4().hex[:6]
    volumes = [
        conn.block_storage.create_volume(size=1, image_id=base.id, name=f"{label}-{i}")
        for i in range(6)
    ]
    for volume in volumes:
        conn.block_storage.wait_for_status(volume, "available", failures=["error"], wait=240)
    ids = {v.id for v in volumes}
    untouchable = set(all_images(conn))  # none of these is volimg's to delete
    base_stores = conn.image.get(f"/images/{base.id}").json()["stores"].split(",")
    expected_stores = {"fast", *base_stores}  # the default store where Cinder lands it
    args = [
        sys.executable, "-m", "volimg", "--os-cloud", real.admin_cloud, "upload", *sorted(ids),
        "--once-per", "day", "--keep", "1", "--concurrency", "3", "--disk-format", "qcow2",
        "--timeout", "45", "-f", "json",
    ]  # fmt: skip
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(real.clouds_yaml)}

    def uploading() -> bool:
        return any(v.status == "uploading" for v in conn.block_storage.volumes() if v.id in ids)

    def settled() -> bool:
        ours = [v for v in conn.block_storage.volumes() if v.id in ids]
        return all(v.status == "available" for v in ours)

    # 1. SIGKILL while Cinder uploads.
    night = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        wait_for("an upload in flight", uploading, timeout=120)
        night.kill()
    finally:
        night.communicate(timeout=60)
    assert night.returncode == -9
    wait_for("Cinder to finish what it was asked", settled)

    # 2. The re-run, with glance-api restarted while it copies.
    def copying() -> bool:
        return any(
            raw.get("os_glance_import_task")
            for raw in all_images(conn).values()
            if raw["id"] not in untouchable
        )

    rerun = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        wait_for("a copy-image import in flight", copying, timeout=180)
        restart("glance")
    finally:
        _out, err = rerun.communicate(timeout=300)
    assert rerun.returncode in (0, 1, 3, 4), err
    lost = age_unfinished_glance_tasks(121)  # 60 minutes, 120 while pending

    # 3. Keystone restarts; the final run mends the night.
    restart("keystone")
    final = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, check=False)
    Path("/tmp/cron-final.json").write_text(final.stdout + "\n=====\n" + final.stderr)
    assert final.returncode == 0, (lost, final.stdout[-3000:], final.stderr[-3000:])
    doc = json.loads(final.stdout)
    assert doc["summary"]["counts"]["failed"] == 0, doc["summary"]

    # Exactly one image per volume for the day, stamped and placed; nothing else deleted.
    today = period_key(Period.DAY, datetime.now(timezone.utc))
    images = all_images(conn)
    assert untouchable <= set(images), "a volimg run deleted an image that was not its own"
    per_volume: dict[str, list[str]] = {v: [] for v in ids}
    for raw in images.values():
        props = {k: str(v) for k, v in raw.items() if k not in CORE}
        stamp = Stamp.from_properties(raw["id"], props)
        mark = unfinished_mark(raw["id"], raw.get("name") or "", props)
        owner = (
            stamp
            if stamp is not None and stamp.is_own_upload
            else (mark.intended if mark else None)
        )
        if (
            owner is None
            or owner.source_volume not in ids
            or raw["status"] in ("deleted", "killed")
        ):
            continue
        assert mark is None, f"image {raw['id']} was never finished: {props}"
        assert stamp is not None
        assert stamp.stamped_by is StampedBy.UPLOAD
        assert stamp.period == today
        stores = set((raw.get("stores") or "").split(","))
        assert stores == expected_stores, (raw["id"], stores)
        per_volume[stamp.source_volume or ""].append(raw["id"])
    assert {v: len(i) for v, i in per_volume.items()} == dict.fromkeys(ids, 1), per_volume
    for image_id in {i for found in per_volume.values() for i in found}:
        conn.image.delete_image(image_id, ignore_missing=True)
    for volume in volumes:
        conn.block_storage.delete_volume(volume, ignore_missing=True)
    conn.close()
