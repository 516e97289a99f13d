"""An image a run left unfinished is finished once: as its mark records, or as this run plans.

A ``--once-per`` re-run that finds its period's image active and placed finishes what the
run that made it left undone (``volimg.steps.stamp.finish_unstamped``): it stamps the
image as the mark Cinder copied onto it records, or, when the image carries no mark
(the volume could not be marked), as this run plans it; and it says so in the volume's
reason. A third run has nothing left to do and says nothing more. A volume Cinder
will not mark is uploaded and stamped all the same. These were surviving mutants of the
``steps`` mutation target (docs/testing.md): no scenario reached the "as this run plans
it" branch or a refused mark, and none checked that finishing removes the mark or that
the mark keeps the run's id and period.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import VolimgRunner
from tests.scenarios.test_mark import image_json, own_stamp, wait_available
from volimg.provenance import KEY_MARK, MARK_KEYS, TAG, Mark
from volimg.sandbox import Sandbox


@pytest.fixture
def fresh_volume(cloud: CloudUnderTest, admin_conn: Any) -> Iterator[Any]:
    """A volume of its own made from cirros-base."""
    base = admin_conn.image.find_image("cirros-base", ignore_missing=False)
    volume = admin_conn.block_storage.create_volume(
        size=1, image_id=base.id, name=f"finish-{uuid.uuid4().hex[:8]}"
    )
    admin_conn.block_storage.wait_for_status(volume, "available", failures=["error"], wait=240)
    yield volume
    admin_conn.block_storage.delete_volume(volume, ignore_missing=True)


def left_unfinished(
    volimg: VolimgRunner, admin_conn: Any, volume: Any, qcow2: tuple[str, ...]
) -> str:
    """A ``--no-wait`` run's image, active once Cinder is done, born marked, not stamped."""
    first = volimg(
        "upload", volume.id, "--once-per", "day", "--no-replicate", "--no-wait", "-f", "json",
        *qcow2,
    )  # fmt: skip
    assert first.exit_code == 0, first
    image_id: str = first.doc["volumes"][0]["image"]["id"]
    wait_available(admin_conn, volume.id)
    raw = image_json(admin_conn, image_id)
    assert raw["status"] == "active"
    assert KEY_MARK in raw
    assert own_stamp(raw) is None
    return image_id


def rerun(volimg: VolimgRunner, volume: Any, qcow2: tuple[str, ...]) -> dict[str, Any]:
    again = volimg("upload", volume.id, "--once-per", "day", "--no-replicate", "-f", "json", *qcow2)
    assert again.exit_code == 0, again
    (result,) = again.doc["volumes"]
    assert result["result"] == "already-done", result
    return result  # type: ignore[no-any-return]


def test_a_marked_image_is_finished_as_its_mark_records_and_loses_the_mark(
    volimg: VolimgRunner, admin_conn: Any, fresh_volume: Any, qcow2: tuple[str, ...]
) -> None:
    image_id = left_unfinished(volimg, admin_conn, fresh_volume, qcow2)
    mark = Mark.from_properties({k: str(v) for k, v in image_json(admin_conn, image_id).items()})
    assert mark is not None
    assert re.fullmatch(r"[0-9a-f]{12}", mark.run), mark.run  # this run's own id

    result = rerun(volimg, fresh_volume, qcow2)

    assert result["reason"] == (
        f"image {image_id} of this period is active and placed; stamped it now, as its mark "
        f"(run {mark.run}) records"
    )
    raw = image_json(admin_conn, image_id)
    assert not set(MARK_KEYS) & set(raw), "finishing left the mark on the image"
    stamp = own_stamp(raw)
    assert stamp is not None
    assert stamp == mark.stamp_for(image_id, stamped_at=stamp.stamped_at)
    assert stamp.period is not None, "the mark lost the run's period"
    assert (stamp.source_volume, stamp.replicate) == (fresh_volume.id, False)
    assert TAG in raw["tags"]


def test_an_unmarked_image_is_finished_as_this_run_plans_it_and_only_once(
    volimg: VolimgRunner, admin_conn: Any, fresh_volume: Any, qcow2: tuple[str, ...]
) -> None:
    """The volume could not be marked (Cinder refused): the image is found by its name."""
    image_id = left_unfinished(volimg, admin_conn, fresh_volume, qcow2)
    admin_conn.image.patch(
        f"/images/{image_id}",
        json=[{"op": "remove", "path": f"/{key}"} for key in MARK_KEYS],
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
    )

    result = rerun(volimg, fresh_volume, qcow2)

    assert result["reason"] == (
        f"image {image_id} of this period is active and placed; stamped it now, as this run "
        "plans it"
    )
    raw = image_json(admin_conn, image_id)
    stamp = own_stamp(raw)
    assert stamp is not None, "the image is still not volimg's"
    assert stamp.source_volume == fresh_volume.id
    assert stamp.period is not None
    assert stamp.replicate is False  # --no-replicate, which audit must not undo
    assert TAG in raw["tags"]

    third = rerun(volimg, fresh_volume, qcow2)

    assert third["reason"] == f"image {image_id} of this period is active and placed"
    assert own_stamp(image_json(admin_conn, image_id)) == stamp, "the stamp was written again"


def test_a_volume_cinder_will_not_mark_is_uploaded_and_stamped_all_the_same(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox.faults.respond(
        "POST", r"/volumes/[^/]+/action$", 403, action="os-set_image_metadata", times=None
    )

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 0, run
    assert run.doc["result"] == "ok"
    assert "could not mark volume boot-vol before the upload" in run.stderr
    image = sandbox.cloud.images[run.doc["image"]["id"]]
    assert own_stamp({"id": image.id, **image.extra}) is not None
    assert not set(MARK_KEYS) & set(image.extra)
