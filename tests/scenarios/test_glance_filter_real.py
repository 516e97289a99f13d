"""volimg's Glance filter inside real Glance 33, with real Cinder 29 uploading.

The real stack runs glance-api with ``volimg_stamp`` in its keystone pipeline, loaded
from this checkout (tests/realcloud/templates/glance-api-paste.ini). Volumes are
uploaded the way other clients do, never through volimg: openstacksdk's
``upload_volume_to_image`` (Cinder's ``os-volume_upload_image`` action) and
python-openstackclient's ``openstack image create --volume``, as admin and as member.
Cinder itself sends ``x-openstack-base-image-ref`` on the data upload
(cinder/volume/volume_utils.py ``upload_volume``).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REALCLOUD_STATE, CloudUnderTest, _use
from tests.scenarios.conftest import make_runner
from volimg import provenance

pytestmark = pytest.mark.realcloud

BASE_IMAGE = "cirros-base"  # seeded in the stores cheap and archive, public
TIMEOUT = 120.0


@pytest.fixture
def real(realstack: CloudUnderTest, monkeypatch: pytest.MonkeyPatch) -> CloudUnderTest:
    return _use(realstack, monkeypatch)


@pytest.fixture
def conns(real: CloudUnderTest) -> Iterator[dict[str, Any]]:
    import openstack

    opened = {
        "admin": openstack.connect(cloud=real.admin_cloud),
        "member": openstack.connect(cloud=real.member_cloud),
    }
    yield opened
    for conn in opened.values():
        conn.close()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_volume(conn: Any, image_id: str | None = None, volume_type: str | None = None) -> Any:
    volume = conn.block_storage.create_volume(
        size=1, name=unique("filter-vol"), image_id=image_id, volume_type=volume_type
    )
    return conn.block_storage.wait_for_status(volume, "available", failures=["error"], wait=TIMEOUT)


def upload_with_sdk(conn: Any, real: CloudUnderTest, volume: Any, role: str) -> str:
    """openstacksdk straight to Cinder's os-volume_upload_image."""
    answer = conn.block_storage.upload_volume_to_image(
        volume, unique("filter-sdk"), disk_format="qcow2", container_format="bare"
    )
    return str(answer["image_id"])


def upload_with_openstackclient(conn: Any, real: CloudUnderTest, volume: Any, role: str) -> str:
    """``openstack image create --volume`` from the stack's python-openstackclient."""
    venv = Path(json.loads((REALCLOUD_STATE / "stack.json").read_text())["venv"])
    cloud = real.admin_cloud if role == "admin" else real.member_cloud
    proc = subprocess.run(
        [
            str(venv / "bin" / "python"),
            str(venv / "bin" / "openstack"),
            "--os-cloud",
            cloud,
            "image",
            "create",
            "--volume",
            volume.id,
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "-f",
            "json",
            unique("filter-osc"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stdout}\n{proc.stderr}"
    return str(json.loads(proc.stdout)["image_id"])


UPLOADERS = {"sdk": upload_with_sdk, "openstackclient": upload_with_openstackclient}


def glance_log() -> Path:
    return Path(json.loads((REALCLOUD_STATE / "stack.json").read_text())["logs"]) / "glance.log"


def data_upload_finished(image_id: str) -> None:
    """Wait for uWSGI's request line of the image's data upload in Glance's log.

    The filter stamps in the response's ``close()``, after the 204 has gone to Cinder;
    uWSGI writes the request line only after ``close()`` returns, so once the line is
    there the filter has done whatever it was going to do with this upload.
    """
    line = re.compile(rf"PUT /v2/images/{image_id}/file => generated .* \(HTTP/1.1 204\)")
    wait_for(
        f"Glance's request line for the data upload of {image_id}",
        lambda: line.search(glance_log().read_text(errors="replace")),
    )


def uploaded_image(conn: Any, volume: Any, image_id: str) -> Any:
    """The image once the upload is over and the filter has had its turn.

    Over: the volume back to ``available`` (Cinder does that only after Glance's 204)
    and the image ``active``. The filter's turn comes right after the 204
    (docs/glance-filter.md, "When the stamp lands"), so the image is read again once
    Glance has logged the request.
    """

    def done() -> Any:
        vol = conn.block_storage.get_volume(volume.id)
        image = conn.image.get_image(image_id)
        assert image.status not in ("killed", "deleted"), image.status
        return image if vol.status == "available" and image.status == "active" else None

    wait_for(f"image {image_id} active and volume {volume.id} available", done)
    data_upload_finished(image_id)
    return conn.image.get_image(image_id)


def stores_of(conn: Any, image_id: str) -> set[str]:
    """The image's stores as Glance reports them (a comma-separated string; admin only)."""
    body = conn.image.get(f"/images/{image_id}").json()
    return {s for s in body.get("stores", "").split(",") if s}


def stamp_keys(image: Any) -> dict[str, str]:
    return {k: v for k, v in image.properties.items() if k.startswith("volimg_")}


def assert_filter_stamp(image: Any, base_id: str, type_store: str | None = None) -> None:
    props = stamp_keys(image)
    stamp = provenance.Stamp.from_properties(image.id, props)
    assert stamp is not None, props
    assert stamp.stamped_by is provenance.StampedBy.GLANCE_FILTER
    assert stamp.base_image == base_id
    assert stamp.type_store == type_store
    assert stamp.rule is (provenance.Rule.TYPE_STORE if type_store else provenance.Rule.BASE_STORES)
    assert stamp.source_volume is None
    assert not stamp.prune
    # Exactly the keys the stamp writes, nothing else with volimg's prefix.
    assert props == {**stamp.properties(), provenance.KEY_STAMPED_AT: stamp.stamped_at}
    assert provenance.TAG in image.tags


#: Images the filter stamped in this session, for the audit test: (image id, base id).
STAMPED: list[tuple[str, str]] = []


@pytest.mark.parametrize("role", ["admin", "member"])
@pytest.mark.parametrize("client", sorted(UPLOADERS))
def test_a_volume_upload_by_any_client_is_stamped_with_its_base_image(
    conns: dict[str, Any], real: CloudUnderTest, client: str, role: str
) -> None:
    conn = conns[role]
    base = conn.image.find_image(BASE_IMAGE, ignore_missing=False)
    volume = make_volume(conn, image_id=base.id)
    image_id = UPLOADERS[client](conn, real, volume, role)
    image = uploaded_image(conn, volume, image_id)
    assert image.owner == conn.current_project_id
    assert_filter_stamp(image, base.id)
    STAMPED.append((image.id, base.id))


def test_a_pinned_types_store_header_is_recorded_as_the_type_store(
    conns: dict[str, Any], real: CloudUnderTest
) -> None:
    conn = conns["member"]  # a member cannot read the type's extra spec; Cinder sends it
    base = conn.image.find_image(BASE_IMAGE, ignore_missing=False)
    volume = make_volume(conn, image_id=base.id, volume_type="pinned-archive")
    image = uploaded_image(conn, volume, upload_with_sdk(conn, real, volume, "member"))
    assert_filter_stamp(image, base.id, type_store="archive")
    assert stores_of(conns["admin"], image.id) == {"archive"}  # stores: admin only


@pytest.mark.parametrize("role", ["admin", "member"])
@pytest.mark.parametrize("client", sorted(UPLOADERS))
def test_a_volume_without_a_base_image_gets_no_stamp(
    conns: dict[str, Any], real: CloudUnderTest, client: str, role: str
) -> None:
    conn = conns[role]
    volume = make_volume(conn)
    image = uploaded_image(conn, volume, UPLOADERS[client](conn, real, volume, role))
    assert stamp_keys(image) == {}
    assert provenance.TAG not in image.tags


def test_a_base_image_the_uploader_cannot_see_gets_no_stamp(
    conns: dict[str, Any], real: CloudUnderTest
) -> None:
    """A member points their volume at another project's private image.

    Cinder lets a project member set a volume's image metadata, ``image_id`` included
    (policy ``volume_extension:volume_image_metadata:set``: project member), and then
    sends that id as ``x-openstack-base-image-ref`` with the member's own token.
    """
    admin, member = conns["admin"], conns["member"]
    private = admin.image.create_image(
        name=unique("filter-private"),
        disk_format="raw",
        container_format="bare",
        visibility="private",
        data=io.BytesIO(b"\0" * 1024),
    )
    assert member.image.find_image(private.id) is None  # hidden from the member
    volume = make_volume(member)
    member.block_storage.post(
        f"/volumes/{volume.id}/action",
        json={"os-set_image_metadata": {"metadata": {"image_id": private.id}}},
    ).raise_for_status()
    assert member.block_storage.get_volume(volume.id).volume_image_metadata == {
        "image_id": private.id
    }
    image = uploaded_image(member, volume, upload_with_sdk(member, real, volume, "member"))
    assert stamp_keys(image) == {}
    assert provenance.TAG not in image.tags

    # The same header from an uploader who can see the image is recorded.
    admin_volume = make_volume(admin)
    admin.block_storage.post(
        f"/volumes/{admin_volume.id}/action",
        json={"os-set_image_metadata": {"metadata": {"image_id": private.id}}},
    ).raise_for_status()
    admin_image = uploaded_image(
        admin, admin_volume, upload_with_sdk(admin, real, admin_volume, "admin")
    )
    assert_filter_stamp(admin_image, private.id)


def test_a_stamp_cinder_copies_from_the_base_image_is_replaced(
    conns: dict[str, Any], real: CloudUnderTest
) -> None:
    """Cinder copies a base image's custom properties, volimg's stamp included.

    A volume made from a stamped image carries that stamp in its image metadata, and
    the image uploaded from it starts with it (``volimg_image`` naming the ancestor).
    The filter replaces it whole: none of the ancestor's keys survive.
    """
    conn = conns["admin"]
    base = conn.image.find_image(BASE_IMAGE, ignore_missing=False)
    volume = make_volume(conn, image_id=base.id)
    ancestor = uploaded_image(conn, volume, upload_with_sdk(conn, real, volume, "admin"))
    assert_filter_stamp(ancestor, base.id)
    extra = {provenance.KEY_ALSO_STORES: "fast", provenance.KEY_PERIOD: "2026-11-30"}
    conn.image.patch(
        f"/images/{ancestor.id}",
        json=[{"op": "add", "path": f"/{k}", "value": v} for k, v in extra.items()],
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
    ).raise_for_status()

    child_volume = make_volume(conn, image_id=ancestor.id)
    inherited = conn.block_storage.get_volume(child_volume.id).volume_image_metadata
    assert inherited[provenance.KEY_IMAGE] == ancestor.id  # Cinder copied the stamp
    assert inherited[provenance.KEY_ALSO_STORES] == "fast"
    image = uploaded_image(conn, child_volume, upload_with_sdk(conn, real, child_volume, "admin"))
    assert_filter_stamp(image, ancestor.id)  # exactly the filter's keys: no also/period


def test_the_filter_logs_each_decision_with_the_request_id(
    conns: dict[str, Any], real: CloudUnderTest
) -> None:
    conn = conns["member"]
    base = conn.image.find_image(BASE_IMAGE, ignore_missing=False)
    volume = make_volume(conn, image_id=base.id)
    image = uploaded_image(conn, volume, upload_with_sdk(conn, real, volume, "member"))
    log = glance_log().read_text().splitlines()
    lines = [line for line in log if f"image {image.id}," in line]
    assert len(lines) == 1, lines
    assert re.search(
        rf"base image {base.id}, store -: stamped in [0-9.]+ ms \(request req-[0-9a-f-]+\)",
        lines[0],
    )
    # What data_upload_finished relies on: uWSGI logs the request only after close(),
    # where the filter stamps, so the filter's line comes first.
    stamped_at = log.index(lines[0])
    (request_at,) = [i for i, line in enumerate(log) if f"PUT /v2/images/{image.id}/file" in line]
    assert stamped_at < request_at


def test_audit_fix_puts_every_stamped_image_in_its_base_images_stores(
    conns: dict[str, Any], real: CloudUnderTest
) -> None:
    admin = conns["admin"]
    stamped = list(STAMPED)
    if not stamped:  # run alone: make one stamped image by each role first
        for role in ("admin", "member"):
            conn = conns[role]
            base = conn.image.find_image(BASE_IMAGE, ignore_missing=False)
            volume = make_volume(conn, image_id=base.id)
            image = uploaded_image(conn, volume, upload_with_sdk(conn, real, volume, role))
            assert_filter_stamp(image, base.id)
            stamped.append((image.id, base.id))
    # The shared stack holds other tests' leftovers: audit exactly these images.
    images = [arg for image_id, _ in stamped for arg in ("--image", image_id)]
    run = make_runner(real)("audit", "--fix", "--all-projects", *images, "-f", "json")
    assert run.exit_code == 0, run
    assert {f["stamp"]["stamped_by"] for f in run.doc["findings"]} == {"glance-filter"}
    for image_id, base_id in stamped:
        assert stores_of(admin, base_id) <= stores_of(admin, image_id), image_id


def test_the_stamp_is_saved_after_the_uploader_has_its_answer(conns: dict[str, Any]) -> None:
    """The filter's promise: the uploader's ``PUT .../file`` is not delayed by the stamp.

    The filter logs "stamped in N ms" once its save is done. Saved before the answer,
    that line would come before the uploader got its 204; saved after the answer (in
    the response's close()), it comes about N ms after it. The uploader here is a plain
    HTTP client sending what Cinder sends (``x-openstack-base-image-ref``), which notes
    the moment its answer arrived; glance-api writes its log with millisecond times on
    the same clock.
    """
    from datetime import datetime

    conn = conns["admin"]
    base = conn.image.find_image(BASE_IMAGE, ignore_missing=False)
    gaps = []
    for _ in range(5):
        image = conn.image.create_image(
            name=unique("after-answer"), disk_format="raw", container_format="bare"
        )
        response = conn.image.put(
            f"/images/{image.id}/file",
            data=b"\0" * 4096,
            headers={
                "Content-Type": "application/octet-stream",
                "x-openstack-base-image-ref": base.id,
            },
        )
        answered = time.time()
        assert response.status_code == 204, response.text

        def stamp_line(image_id: str = image.id) -> str | None:
            lines = [
                line
                for line in glance_log().read_text().splitlines()
                if f"image {image_id}," in line
            ]
            return lines[0] if lines else None

        line = wait_for("the filter's log line", stamp_line)
        logged = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").astimezone().timestamp()
        took = float(re.search(r"stamped in ([0-9.]+) ms", line).group(1)) / 1000  # type: ignore[union-attr]
        # The save began about when the answer left: it ended `took` after the answer
        # arrived (log times are cut to the millisecond: 2 ms of slack).
        assert logged >= answered + took / 2 - 0.002, (line, answered, took)
        gaps.append(logged - answered)
        conn.image.delete_image(image, ignore_missing=True)
    assert all(gap > 0 for gap in gaps), gaps
