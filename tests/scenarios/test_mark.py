"""Every image volimg makes is volimg's from its first second: the mark, on both clouds.

Before it asks Cinder to upload, volimg puts a mark into the volume's image metadata;
Cinder copies it onto the image it creates, before its 202. So an image whose run was
killed, timed out or used ``--no-wait`` is still recognisably volimg's, and every later
path finishes it: the printed next step, a ``--once-per`` re-run, ``audit --fix``. The
mark names its image (a digest of the name the run asked for), so an image another
client makes from the same volume while a mark is left there is not volimg's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import openstack
import pytest

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import VolimgRunner
from tests.scenarios.next_steps import follow
from volimg.provenance import MARK_KEYS, TAG, Mark, Rule, Stamp, StampedBy, unfinished_mark


@pytest.fixture
def fresh_volume(cloud: CloudUnderTest, admin_conn: Any) -> Iterator[Any]:
    """A volume of its own made from cirros-base (in cheap and archive)."""
    base = admin_conn.image.find_image("cirros-base", ignore_missing=False)
    volume = admin_conn.block_storage.create_volume(
        size=1, image_id=base.id, name=f"marked-{uuid.uuid4().hex[:8]}"
    )
    admin_conn.block_storage.wait_for_status(volume, "available", failures=["error"], wait=240)
    yield volume
    admin_conn.block_storage.delete_volume(volume, ignore_missing=True)


def image_json(conn: Any, image_id: str) -> dict[str, Any]:
    return conn.image.get(f"/images/{image_id}").json()  # type: ignore[no-any-return]


def volume_image_metadata(conn: Any, volume_id: str) -> dict[str, str]:
    body = conn.block_storage.get(f"/volumes/{volume_id}").json()["volume"]
    return dict(body.get("volume_image_metadata") or {})


def wait_available(conn: Any, volume_id: str) -> None:
    deadline = time.monotonic() + 240
    while conn.block_storage.get_volume(volume_id).status != "available":
        assert time.monotonic() < deadline, "the volume stayed busy"
        time.sleep(0.1)


def own_stamp(raw: dict[str, Any]) -> Stamp | None:
    props = {k: str(v) for k, v in raw.items() if k.startswith("volimg_")}
    stamp = Stamp.from_properties(raw["id"], props)
    return stamp if stamp is not None and stamp.is_own_upload else None


def test_a_finished_upload_leaves_its_stamp_and_no_mark_anywhere(
    volimg: VolimgRunner, admin_conn: Any, fresh_volume: Any, qcow2: tuple[str, ...]
) -> None:
    run = volimg("upload", fresh_volume.id, "-f", "json", *qcow2)

    assert run.exit_code == 0, run
    image = image_json(admin_conn, run.doc["image"]["id"])
    stamp = own_stamp(image)
    assert stamp is not None
    assert stamp.source_volume == fresh_volume.id
    assert TAG in image["tags"]
    assert not set(MARK_KEYS) & set(image), "the finished image still carries the mark"
    assert not set(MARK_KEYS) & set(volume_image_metadata(admin_conn, fresh_volume.id))
    # The volume's own image metadata (its base image) is untouched.
    assert volume_image_metadata(admin_conn, fresh_volume.id)["image_id"] == stamp.base_image


def test_an_image_left_by_no_wait_is_born_marked_and_the_printed_step_finishes_its_stamp(
    volimg: VolimgRunner,
    cloud: CloudUnderTest,
    admin_conn: Any,
    fresh_volume: Any,
    qcow2: tuple[str, ...],
) -> None:
    run = volimg(
        "upload", fresh_volume.id, "--no-wait", "--also-store", "fast", "-f", "json", *qcow2
    )

    assert run.exit_code == 0, run
    image_id = run.doc["image"]["id"]
    born = image_json(admin_conn, image_id)
    mark = unfinished_mark(image_id, born["name"], {k: str(v) for k, v in born.items()})
    assert mark is not None, f"the image is not born marked: {born}"
    assert mark.volume_id == fresh_volume.id
    assert mark.intended.also_stores == ("fast",)
    assert own_stamp(born) is None

    follow(run.doc["next_steps"], volimg, cloud, expect_stores={"fast", "cheap", "archive"})

    finished = image_json(admin_conn, image_id)
    stamp = own_stamp(finished)
    assert stamp is not None, f"the next step did not finish the stamp: {finished}"
    assert stamp.stamped_by is StampedBy.UPLOAD
    assert stamp.also_stores[:1] == ("fast",)  # the intent the mark carried
    assert not set(MARK_KEYS) & set(finished)


def test_the_next_run_removes_a_mark_an_interrupted_run_left_on_the_volume(
    volimg: VolimgRunner, admin_conn: Any, fresh_volume: Any, qcow2: tuple[str, ...]
) -> None:
    first = volimg("upload", fresh_volume.id, "--no-wait", "-f", "json", *qcow2)
    assert first.exit_code == 0, first
    assert set(MARK_KEYS) <= set(volume_image_metadata(admin_conn, fresh_volume.id))
    wait_available(admin_conn, fresh_volume.id)

    second = volimg("upload", fresh_volume.id, "-f", "json", *qcow2)

    assert second.exit_code == 0, second
    assert not set(MARK_KEYS) & set(volume_image_metadata(admin_conn, fresh_volume.id))


def test_an_image_another_client_makes_while_a_mark_was_left_is_never_volimgs(
    volimg: VolimgRunner, admin_conn: Any, fresh_volume: Any, qcow2: tuple[str, ...]
) -> None:
    left = volimg("upload", fresh_volume.id, "--no-wait", "-f", "json", *qcow2)
    assert left.exit_code == 0, left
    wait_available(admin_conn, fresh_volume.id)
    answer = admin_conn.block_storage.post(
        f"/volumes/{fresh_volume.id}/action",
        json={
            "os-volume_upload_image": {"image_name": "by-another-client", "disk_format": "qcow2"}
        },
    )
    other = answer.json()["os-volume_upload_image"]["image_id"]
    wait_available(admin_conn, fresh_volume.id)
    raw = image_json(admin_conn, other)
    assert raw.get("volimg_mark") == "1"  # Cinder copied the mark onto it, as on any image
    assert unfinished_mark(other, raw["name"], {k: str(v) for k, v in raw.items()}) is None

    kept = volimg("upload", fresh_volume.id, "--keep", "1", "-f", "json", *qcow2)
    audit = volimg("audit", "--volume", fresh_volume.id, "-f", "json")

    assert kept.exit_code == 0, kept
    assert image_json(admin_conn, other)["status"] == "active", "--keep deleted another's image"
    deleted = {a["image_id"] for v in kept.doc["volumes"] for a in v["retention"]}
    assert left.doc["image"]["id"] in deleted  # volimg's own unfinished upload counts
    assert other not in deleted
    assert other not in {f["image"]["id"] for f in audit.doc["findings"]}
    admin_conn.image.delete_image(other, ignore_missing=True)


def test_a_once_per_rerun_writes_volimgs_stamp_over_a_glance_filter_stamp(
    volimg: VolimgRunner, admin_conn: Any, fresh_volume: Any, qcow2: tuple[str, ...]
) -> None:
    """Found by tests/scenarios/test_cron_real.py on the real tier: the Glance filter had
    stamped the image a killed run left, and the re-run took that stamp for its own."""
    first = volimg(
        "upload", fresh_volume.id, "--once-per", "day", "--no-wait", "-f", "json", *qcow2
    )
    assert first.exit_code == 0, first
    image_id = first.doc["volumes"][0]["image"]["id"]
    wait_available(admin_conn, fresh_volume.id)
    base = volume_image_metadata(admin_conn, fresh_volume.id)["image_id"]
    filter_stamp = Stamp(
        image_id=image_id,
        stamped_by=StampedBy.GLANCE_FILTER,
        stamped_at="2026-12-03T00:00:00Z",
        source_volume=None,
        base_image=base,
        type_store=None,
        rule=Rule.BASE_STORES,
    )
    admin_conn.image.patch(
        f"/images/{image_id}",
        json=[
            {"op": "add", "path": f"/{k}", "value": v} for k, v in filter_stamp.properties().items()
        ],
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
    )

    rerun = volimg("upload", fresh_volume.id, "--once-per", "day", "-f", "json", *qcow2)

    assert rerun.exit_code == 0, rerun
    stamp = own_stamp(image_json(admin_conn, image_id))
    assert stamp is not None, "the re-run kept the Glance filter's stamp as volimg's"
    assert stamp.period is not None
    assert stamp.source_volume == fresh_volume.id


def test_a_mark_names_only_the_run_that_wrote_it() -> None:
    """The unit behind the scenarios above (pure)."""
    intended = Stamp(
        image_id="",
        stamped_by=StampedBy.UPLOAD,
        stamped_at="2026-12-03T00:00:00Z",
        source_volume="vol-1",
        base_image=None,
        type_store=None,
        rule=Rule.DEFAULT_STORE,
    )
    mark = Mark.for_upload("r1", "vol-1-2026-12-03", intended)
    assert mark.claims("vol-1-2026-12-03")
    assert not mark.claims("vol-1-2026-12-04")


def test_an_upload_that_timed_out_is_finished_by_the_printed_step_with_its_stamp(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest, sandbox: Any
) -> None:
    """``--timeout`` ran out while Cinder uploaded: the image is born marked, and the
    ``volimg replicate`` the run prints stamps it as the run meant before it copies."""
    sandbox.timings.upload = 3.0
    run = volimg_sandbox("upload", "boot-vol", "--timeout", "1", "--prune", "-f", "json")

    assert run.exit_code == 4, run
    image_id = run.doc["image"]["id"]
    sandbox.timings.upload = 0.01
    follow(run.doc["next_steps"], volimg_sandbox, sandbox_cloud, expect_stores={"cheap", "archive"})
    conn = openstack.connect(cloud=sandbox_cloud.admin_cloud)
    stamp = own_stamp(image_json(conn, image_id))
    conn.close()
    assert stamp is not None, "the printed step left the image without volimg's stamp"
    assert stamp.prune  # the intent the timed-out run recorded in its mark


def test_an_image_whose_stamp_was_cut_short_is_still_found_by_audit(
    volimg_sandbox: VolimgRunner, sandbox: Any
) -> None:
    """Found by the invariant machine: a run killed while the stamp was being written.

    The stamp is the tag and the properties; the properties' patch removes the mark.
    Were they two requests with the tag last and lost, the image would carry neither
    the tag nor the mark, and audit (which finds volimg's images by one or the other)
    would never see it. They are one JSON-patch now: when it fails, the mark stays.
    """
    sandbox.faults.respond("PATCH", r"/image/v2/images/[^/]+$", 403, times=None)
    run = volimg_sandbox("upload", "data-vol", "-f", "json")
    sandbox.faults.clear()
    assert run.exit_code != 0, run
    image_id = run.doc["image"]["id"]

    audit = volimg_sandbox("audit", "-f", "json")

    found = {f["image"]["id"]: f["finding"] for f in audit.doc["findings"]}
    assert found.get(image_id) == "unfinished", audit.doc
