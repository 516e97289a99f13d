"""Fleet uploads from cron: many volumes, once per period, retention, metrics, output.

Volumes are made through the Cinder API (openstacksdk), so the same scenarios run on
the sandbox and, where marked, on the real stack.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CloudUnderTest
from tests.scenarios.arrivals import Arrivals, Gate
from tests.scenarios.conftest import MemberVolume, VolimgRunner
from tests.scenarios.test_upload import stores_of
from volimg.provenance import TAG, Period, Stamp, StampedBy, period_key

LIVE = ("queued", "saving", "uploading", "importing", "active")


def make_volumes(conn: Any, count: int, prefix: str, *, from_image: bool = True) -> list[Any]:
    """``count`` 1 GiB volumes made from cirros-base (or blank), all available."""
    base = conn.image.find_image("cirros-base", ignore_missing=False) if from_image else None
    made = [
        conn.block_storage.create_volume(
            size=1, name=f"{prefix}-{i:02d}", **({"image_id": base.id} if base else {})
        )
        for i in range(count)
    ]
    deadline = time.monotonic() + 300
    for volume in made:
        while True:
            current = conn.block_storage.get_volume(volume.id)
            if current.status == "available":
                break
            assert current.status != "error", current
            assert time.monotonic() < deadline, f"volume {volume.id} is still {current.status}"
            time.sleep(0.05)
    return made


def period_images(conn: Any, volume_id: str, period: str) -> list[Any]:
    """Live images stamped for this volume and period (what a re-run must not add to).

    openstacksdk drops query filters it does not know, so the check is done here.
    """
    found = []
    for image in conn.image.images(tag=TAG):
        stamp = stamp_of(image)
        if (
            image.status in LIVE
            and stamp is not None
            and stamp.source_volume == volume_id
            and stamp.period == period
        ):
            found.append(image)
    return found


def stamp_of(image: Any) -> Stamp | None:
    props = {k: str(v) for k, v in (image.properties or {}).items()}
    return Stamp.from_properties(image.id, props)


def write_list(tmp_path: Path, names: list[str], extra: str = "") -> Path:
    path = tmp_path / "volumes.txt"
    path.write_text("# nightly volumes\n" + "\n".join(names) + "\n" + extra)
    return path


def today() -> str:
    from datetime import datetime, timezone

    return period_key(Period.DAY, datetime.now(timezone.utc))


# --- the stamp ------------------------------------------------------------------------


def test_every_upload_is_stamped_and_the_stamp_survives_cinder(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    run = volimg("upload", "boot-vol", *qcow2, "-f", "json")

    assert run.exit_code == 0, run
    image = admin_conn.image.get_image(run.doc["image"]["id"])
    assert image.status == "active"
    stamp = stamp_of(image)
    assert stamp is not None, image.properties
    volume = admin_conn.block_storage.find_volume("boot-vol")
    # volimg's own stamp, never the Glance filter's (on in the real tier's glance-api).
    assert stamp.stamped_by is StampedBy.UPLOAD
    assert stamp.source_volume == volume.id
    assert stamp.base_image == admin_conn.image.find_image("cirros-base").id
    assert stamp.rule.value == "base-image-stores"
    assert stamp.prune is False
    assert stamp.period is None
    assert TAG in image.tags


@pytest.mark.parametrize(
    ("failing_store", "exit_code"), [(None, 0), ("archive", 3)], ids=["copies-ok", "a-copy-fails"]
)
def test_a_stamp_overwritten_while_the_copies_run_is_written_again(
    sandbox_cloud: CloudUnderTest,
    volimg_sandbox: VolimgRunner,
    failing_store: str | None,
    exit_code: int,
) -> None:
    """Another writer saves the image's whole property set over volimg's stamp.

    Glance's PATCH and the Glance filter both do (docs/glance-filter.md); here an
    admin rewrites the stamp as the filter's while the copies run. The copy wait reads
    the image anyway, so volimg sees it and writes its stamp again.
    """
    import threading

    import openstack

    assert sandbox_cloud.sandbox is not None
    sandbox_cloud.sandbox.timings.store_copy = 0.4
    if failing_store is not None:  # the run fails after its copy wait has read the image
        sandbox_cloud.sandbox.faults.fail_store_copy(failing_store)
    other = openstack.connect(cloud=sandbox_cloud.admin_cloud)
    overwritten: list[str] = []
    earlier = {image.id for image in other.image.images(tag=TAG)}  # the demo seed has some
    stop = threading.Event()

    def filter_like_writer() -> None:
        while not stop.is_set():
            for image in other.image.images(tag=TAG):
                props = image.properties or {}
                if (
                    props.get("volimg_stamped_by") == "upload"
                    and props.get("volimg_image") == image.id
                    and image.id not in earlier
                ):
                    other.image.patch(
                        f"/images/{image.id}",
                        json=[
                            {
                                "op": "replace",
                                "path": "/volimg_stamped_by",
                                "value": "glance-filter",
                            },
                            {"op": "replace", "path": "/volimg_source_volume", "value": "unknown"},
                        ],
                        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
                    ).raise_for_status()
                    overwritten.append(image.id)
                    return
            time.sleep(0.005)

    writer = threading.Thread(target=filter_like_writer)
    writer.start()
    try:
        run = volimg_sandbox("upload", "boot-vol", "-f", "json")
    finally:
        stop.set()
        writer.join()

    assert run.exit_code == exit_code, run
    image_id = run.doc["image"]["id"]
    assert overwritten == [image_id]
    assert f"the stamp on image {image_id} was overwritten" in run.stderr
    stamp = stamp_of(other.image.get_image(image_id))
    assert stamp is not None
    assert stamp.stamped_by is StampedBy.UPLOAD
    assert stamp.source_volume == other.block_storage.find_volume("boot-vol").id
    other.close()


def test_a_member_stamps_their_own_image(
    volimg: VolimgRunner,
    admin_conn: Any,
    qcow2: tuple[str, ...],
    pinned_member_volume: MemberVolume,
) -> None:
    volume = pinned_member_volume.volume

    run = volimg("upload", volume.id, *qcow2, "-f", "json", member=True)

    assert run.exit_code == 0, run
    image = admin_conn.image.get_image(run.doc["image"]["id"])
    stamp = stamp_of(image)
    assert stamp is not None, image.properties
    assert stamp.stamped_by is StampedBy.UPLOAD
    assert stamp.source_volume == volume.id
    # A member cannot see image_service:store_id; the landing taught volimg rule 1.
    assert stamp.rule.value == "volume-type-store"
    assert TAG in image.tags


# --- a batch ----------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_fifty_volumes_two_failing_then_a_rerun_finishes_them(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest, tmp_path: Path
) -> None:
    import openstack

    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    conn = openstack.connect(cloud=sandbox_cloud.admin_cloud)
    volumes = make_volumes(conn, 50, "fleet")
    failing = [volumes[7], volumes[31]]
    for volume in failing:
        sandbox.faults.fail_cinder_upload(volume=volume.id, times=1)
    listing = write_list(tmp_path, [v.name for v in volumes])

    first = volimg_sandbox(
        "upload", "--from-file", str(listing), "--concurrency", "8", "--once-per", "day",
        "-f", "json",
    )  # fmt: skip

    assert first.exit_code == 1, first
    doc = first.doc
    assert doc["summary"]["counts"]["ok"] == 48
    assert doc["summary"]["counts"]["failed"] == 2
    failed = {v["volume"]["id"] for v in doc["volumes"] if v["result"] == "failed"}
    assert failed == {v.id for v in failing}
    for entry in doc["volumes"]:
        if entry["result"] == "failed":
            assert entry["error"]["type"] == "UploadFailed"
            assert entry["next_steps"]
            assert "volimg upload" in entry["next_steps"][0]
    period = doc["summary"]["period"]
    assert period == today()
    uploads_before = len(
        sandbox.requests.filter(
            method="POST", path=r"/volumes/[^/]+/action$", action="os-volume_upload_image"
        )
    )

    second = volimg_sandbox(
        "upload", "--from-file", str(listing), "--concurrency", "8", "--once-per", "day",
        "-f", "json",
    )  # fmt: skip

    assert second.exit_code == 0, second
    counts = second.doc["summary"]["counts"]
    assert counts["already-done"] == 48
    assert counts["ok"] == 2
    uploads = sandbox.requests.filter(
        method="POST", path=r"/volumes/[^/]+/action$", action="os-volume_upload_image"
    )
    assert len(uploads) - uploads_before == 2
    for volume in volumes:
        assert len(period_images(conn, volume.id, period)) == 1, volume.name
    conn.close()


def test_an_empty_selection_is_exit_2_unless_it_is_allowed(
    volimg_sandbox: VolimgRunner, tmp_path: Path
) -> None:
    """Nothing selected is never a quiet success (issue 18): exit 2 by default."""
    listing = write_list(tmp_path, [])

    run = volimg_sandbox("upload", "--from-file", str(listing))
    required = volimg_sandbox("upload", "--from-file", str(listing), "--require-match")
    allowed = volimg_sandbox("upload", "--from-file", str(listing), "--allow-empty")

    assert run.exit_code == 2, run
    assert "no volume matches the selection" in run.stderr
    assert "--allow-empty" in run.stderr
    assert required.exit_code == 2, required
    assert allowed.exit_code == 0, allowed
    assert "no volume matched" in allowed.stdout
    assert "summary: empty (exit 0)" in allowed.stderr


def test_a_volume_named_twice_is_done_once(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest, tmp_path: Path
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    boot = sandbox.cloud.find_volume("boot-vol")
    listing = write_list(tmp_path, ["boot-vol", boot.id, "boot-vol"])

    run = volimg_sandbox("upload", "--from-file", str(listing), "data-vol", "-f", "json")

    assert run.exit_code == 0, run
    assert sorted(v["volume"]["name"] for v in run.doc["volumes"]) == ["boot-vol", "data-vol"]
    assert (
        len(
            sandbox.requests.filter(
                method="POST", path=r"/volumes/[^/]+/action$", action="os-volume_upload_image"
            )
        )
        == 2
    )


def test_busy_and_unknown_volumes_are_reported_and_the_rest_runs(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    sandbox.cloud.set_volume_status("data-vol", "backing-up")

    run = volimg_sandbox("upload", "boot-vol", "data-vol", "no-such-vol", "busy-vol", "-f", "json")

    assert run.exit_code == 1, run
    by_ref = {v["ref"]: v for v in run.doc["volumes"]}
    assert by_ref["boot-vol"]["result"] == "ok"
    assert by_ref["data-vol"]["result"] == "skipped"
    assert "backing-up" in by_ref["data-vol"]["reason"]
    assert by_ref["busy-vol"]["result"] == "skipped"
    assert "--force" in by_ref["busy-vol"]["error"]["hint"]
    assert by_ref["no-such-vol"]["result"] == "failed"
    assert by_ref["no-such-vol"]["error"]["type"] == "VolumeNotFound"


def test_ndjson_gives_one_parseable_line_per_volume_then_the_summary(
    volimg_sandbox: VolimgRunner,
) -> None:
    run = volimg_sandbox("upload", "boot-vol", "data-vol", "pinned-vol", "-f", "ndjson")

    assert run.exit_code == 0, run
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["volume"] * 3 + ["summary"]
    assert {line["volume"]["name"] for line in lines[:3]} == {"boot-vol", "data-vol", "pinned-vol"}
    assert all(line["result"] == "ok" for line in lines[:3])
    assert lines[-1]["counts"]["ok"] == 3


def test_plain_progress_lines_name_their_volume(volimg_sandbox: VolimgRunner) -> None:
    run = volimg_sandbox("upload", "boot-vol", "data-vol")

    assert run.exit_code == 0, run
    *progress, summary = [line for line in run.stderr.splitlines() if line.strip()]
    assert summary.startswith("volimg: summary: ok (exit 0)"), summary
    assert progress
    for line in progress:
        stamp, _, rest = line.partition(" ")
        assert stamp.endswith("Z"), line
        assert rest.split(":")[0] in ("boot-vol", "data-vol"), line


def test_the_metrics_file_parses_and_counts_every_result(
    volimg_sandbox: VolimgRunner, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    metrics = tmp_path / "volimg.prom"

    run = volimg_sandbox("upload", "boot-vol", "data-vol", "--metrics-file", str(metrics))

    assert run.exit_code == 0, run
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    by_result = {s.labels["result"]: s.value for s in families["volimg_batch_volumes"].samples}
    assert by_result["ok"] == 2
    assert by_result["failed"] == 0
    assert set(by_result) == {
        "ok",
        "already-done",
        "started",
        "partial",
        "timed-out",
        "failed",
        "skipped",
        "interrupted",
        "not-started",
        "planned",
    }
    success = families["volimg_batch_last_success_timestamp_seconds"].samples[0].value
    assert abs(success - time.time()) < 60
    assert families["volimg_batch_uploaded_bytes"].samples[0].value > 0

    failed = volimg_sandbox("upload", "no-such-vol", "boot-vol", "--metrics-file", str(metrics))

    assert failed.exit_code == 1, failed
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    assert families["volimg_batch_last_success_timestamp_seconds"].samples[0].value == success
    assert families["volimg_batch_exit_code"].samples[0].value == 1


def test_retention_keeps_the_newest_and_never_a_protected_or_foreign_image(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest
) -> None:
    import openstack

    conn = openstack.connect(cloud=sandbox_cloud.admin_cloud)
    made = []
    for _ in range(3):
        run = volimg_sandbox("upload", "data-vol", "-f", "json")
        assert run.exit_code == 0, run
        made.append(run.doc["image"]["id"])
        time.sleep(1.05)  # Glance's created_at has whole seconds
    conn.image.update_image(made[0], protected=True)
    foreign = conn.image.create_image(
        name="data-vol-by-hand", disk_format="raw", container_format="bare"
    )

    dry = volimg_sandbox("upload", "data-vol", "--keep", "1", "--dry-run", "-f", "json")

    assert dry.exit_code == 0, dry
    actions = {a["image_id"]: a["action"] for a in dry.doc["volumes"][0]["retention"]}
    assert actions == {made[0]: "kept-protected", made[1]: "would-delete", made[2]: "would-delete"}
    assert all(conn.image.find_image(i) is not None for i in made)

    run = volimg_sandbox("upload", "data-vol", "--keep", "1", "-f", "json")

    assert run.exit_code == 0, run
    new = run.doc["volumes"][0]["image"]["id"]
    actions = {a["image_id"]: a["action"] for a in run.doc["volumes"][0]["retention"]}
    assert actions == {made[0]: "kept-protected", made[1]: "deleted", made[2]: "deleted"}
    assert conn.image.find_image(made[0]) is not None
    assert conn.image.find_image(made[1]) is None
    assert conn.image.find_image(new) is not None
    assert conn.image.find_image(foreign.id) is not None
    conn.image.update_image(made[0], protected=False)
    conn.close()


def test_no_retention_for_a_volume_whose_upload_failed(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    first = volimg_sandbox("upload", "data-vol", "-f", "json")
    assert first.exit_code == 0, first
    sandbox.faults.fail_cinder_upload(volume="data-vol", times=1)

    run = volimg_sandbox("upload", "data-vol", "--keep", "1", "-f", "json")

    assert run.exit_code == 1, run
    assert run.doc["volumes"][0]["retention"] == []
    assert first.doc["image"]["id"] in sandbox.cloud.images


# --- the real stack -----------------------------------------------------------------------


@pytest.mark.realcloud
@pytest.mark.timeout(900)
def test_a_daily_batch_with_retention_on_the_real_stack(
    realstack: CloudUnderTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import openstack

    from tests.conftest import _use
    from tests.scenarios.conftest import make_runner

    cloud = _use(realstack, monkeypatch)
    volimg = make_runner(cloud)
    conn = openstack.connect(cloud=cloud.admin_cloud)
    prefix = f"nightly-{uuid.uuid4().hex[:6]}"
    volumes = make_volumes(conn, 5, prefix)
    listing = write_list(tmp_path, [v.name for v in volumes])
    args = ("upload", "--from-file", str(listing), "--once-per", "day", "--keep", "1",
            "--disk-format", "qcow2", "--concurrency", "3", "-f", "json")  # fmt: skip

    first = volimg(*args)

    assert first.exit_code == 0, first
    assert first.doc["summary"]["counts"]["ok"] == 5
    period = first.doc["summary"]["period"]
    images = {}
    for volume in volumes:
        found = period_images(conn, volume.id, period)
        assert len(found) == 1, (volume.name, found)
        image = found[0]
        assert image.status == "active"
        assert stores_of(conn, image.id) == {"fast", "cheap", "archive"}
        assert stamp_of(image) is not None
        images[volume.id] = image.id

    second = volimg(*args)

    assert second.exit_code == 0, second
    assert second.doc["summary"]["counts"]["already-done"] == 5
    for volume in volumes:
        found = period_images(conn, volume.id, period)
        assert [i.id for i in found] == [images[volume.id]]
    kinds = Counter(a["action"] for v in second.doc["volumes"] for a in v["retention"])
    assert kinds == Counter()  # one image per volume: nothing beyond --keep 1
    conn.close()


# --- real processes: the lock, and a batch killed with SIGKILL ------------------------------


def volimg_process(
    cloud: CloudUnderTest, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    import os
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "volimg", "--os-cloud", cloud.admin_cloud, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml), **(env or {})},
    )


UPLOAD_REQUEST = r"/volume/v3/[^/]+/volumes/[0-9a-f-]{36}/action$"
UPLOAD_ACTION = "os-volume_upload_image"  # Cinder's volume actions share one path
IMAGE_POLL = r"/image/v2/images(/[0-9a-f-]{36}(/tasks)?)?$"  # a batch polls by listing
COPY_REQUEST = r"/image/v2/images/[0-9a-f-]{36}/import$"


def finished(process: subprocess.Popen[str], within: float = 20.0) -> tuple[int, str]:
    """The exit code and stderr of a run that must end by itself, soon."""
    try:
        _, err = process.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"still running after {within} s: it took the lock\n{err}") from None
    return process.returncode, err


def test_two_nightly_batches_on_one_lock_the_second_exits_75_while_the_first_works(
    sandbox_cloud: CloudUnderTest, tmp_path: Path
) -> None:
    """Two real `volimg upload --lock PATH` batches: the one that came second exits 75 at
    once while the first is still working, and the first holds the lock to its very end
    (a run started while the first waits on its last answer still gets 75); once the
    first has ended, the next run takes the lock and does the job.

    The first is kept working by holding its requests in the sandbox: its upload
    request, then (once its copy-image import is requested) its polls, until the copy
    is over and nothing is left to it but reading that last answer.
    """
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    sandbox.timings.store_copy = 0.2
    lock = tmp_path / "nightly.lock"
    batch = ("upload", "boot-vol", "--lock", str(lock), "-f", "json")

    with Arrivals(sandbox).watching() as arrivals:
        upload = arrivals.hold("POST", UPLOAD_REQUEST, UPLOAD_ACTION)
        first = volimg_process(sandbox_cloud, *batch)
        arrivals.wait_until(lambda: upload.held)  # the first is working, lock in hand

        before = arrivals.last_seq
        code, err = finished(volimg_process(sandbox_cloud, *batch))
        assert code == 75, err
        assert str(lock) in err
        assert "Traceback" not in err
        assert first.poll() is None  # still working
        assert arrivals.last_seq == before  # the second sent nothing, not even a login

        upload.open()
        arrivals.wait_for("POST", COPY_REQUEST)
        last_polls = arrivals.hold("GET", IMAGE_POLL)  # before its first poll (1 s on)
        arrivals.wait_until(lambda: last_polls.held)
        image_id = arrivals.seen("POST", COPY_REQUEST)[0].path.split("/")[4]
        copied = sandbox.cloud.images[image_id]
        assert set(copied.stores) == {"fast", "cheap", "archive"}  # the copy is over

        code, err = finished(volimg_process(sandbox_cloud, *batch))
        assert code == 75, err  # right before the first ends, the lock is still held
        assert first.poll() is None

        last_polls.open()
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
        assert json.loads(out)["summary"]["counts"]["ok"] == 1

    after = volimg_process(sandbox_cloud, *batch)
    out, err = after.communicate(timeout=60)
    assert after.returncode == 0, err
    assert json.loads(out)["summary"]["counts"]["ok"] == 1
    uploads = sandbox.requests.filter(
        method="POST", path=UPLOAD_REQUEST, origin="client", action=UPLOAD_ACTION
    )
    assert len(uploads) == 2  # the first's and the last's; the refused runs sent none


def test_a_batch_killed_with_sigkill_while_holding_the_lock_frees_it_at_once(
    sandbox_cloud: CloudUnderTest, tmp_path: Path
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    lock = tmp_path / "nightly.lock"
    batch = ("upload", "boot-vol", "--lock", str(lock), "-f", "json")
    with Arrivals(sandbox).watching() as arrivals:
        upload = arrivals.hold("POST", UPLOAD_REQUEST, UPLOAD_ACTION)
        holder = volimg_process(sandbox_cloud, *batch)
        arrivals.wait_until(lambda: upload.held)
        holder.kill()
        holder.communicate(timeout=30)

    after = volimg_process(sandbox_cloud, *batch)
    out, err = after.communicate(timeout=60)
    assert after.returncode == 0, err
    assert json.loads(out)["summary"]["counts"]["ok"] == 1


@dataclass
class KillPoint:
    """What a run was doing when SIGKILL landed: a moment, and the volumes in flight."""

    moment: str
    in_flight: set[str]


class KilledRuns:
    """Start the batch, wait in the sandbox for a moment it means to interrupt, kill it.

    A volume is *in flight* for a run when the kill lands while that run is waiting on
    it: its upload request has reached Cinder and is held there unanswered; or Cinder is
    uploading it and this run has asked about it; or a copy-image import holds its
    image's lock and this run has asked about that image.
    """

    MOMENTS = ("upload requested", "Cinder uploading", "copy-image running")

    def __init__(self, cloud: CloudUnderTest, volumes: list[Any], args: tuple[str, ...]):
        assert cloud.sandbox is not None
        self.cloud, self.sandbox, self.args = cloud, cloud.sandbox, args
        self.volumes = {v.id: v.name for v in volumes}
        self.points: list[KillPoint] = []

    @property
    def covered(self) -> set[str]:
        return {name for point in self.points for name in point.in_flight}

    def image_of(self, name: str) -> Any:
        images = self.sandbox.cloud.images_named(f"{name}-{today()}")
        return max(images, key=lambda i: i.created_at) if images else None

    def state(self, since: int, gate: Gate | None) -> dict[str, set[str]]:
        """Volume names per moment, as of now, for the run whose requests start at ``since``."""
        asked = " ".join(r.path for r in self.sandbox.requests[since:])
        held = " ".join(a.path for a in gate.held) if gate else ""
        found: dict[str, set[str]] = {moment: set() for moment in self.MOMENTS}
        with self.sandbox.cloud.lock:
            for volume_id, name in self.volumes.items():
                volume = self.sandbox.cloud.volumes[volume_id]
                image = self.image_of(name)
                if f"/volumes/{volume_id}/action" in held:
                    found["upload requested"].add(name)
                if volume.status == "uploading" and volume_id in asked:
                    found["Cinder uploading"].add(name)
                if (
                    image is not None
                    and "os_glance_import_task" in image.extra
                    and image.id in asked
                ):
                    found["copy-image running"].add(name)
        return found

    def kill_at(self, moments: tuple[str, ...], arrivals: Arrivals) -> int:
        """One run, killed at the first of ``moments`` reached by a volume not yet covered
        (by any volume, once all are)."""
        since = len(self.sandbox.requests)
        gate = (
            arrivals.hold("POST", UPLOAD_REQUEST, UPLOAD_ACTION)
            if "upload requested" in moments
            else None
        )
        process = volimg_process(self.cloud, *self.args)
        deadline = time.monotonic() + 60
        try:
            while True:
                state = self.state(since, gate)
                targets = set(self.volumes.values()) - self.covered or set(self.volumes.values())
                reached = [m for m in moments if state[m] & targets]
                if reached:
                    break
                assert process.poll() is None, (
                    f"the run ended before any of {moments}: {self.points}"
                )
                assert time.monotonic() < deadline, f"no volume reached any of {moments}"
                time.sleep(0.01)
            process.kill()
            process.wait(timeout=30)
            # What was in flight when it landed: what the test saw just before, and what
            # the sandbox holds just after (an upload request that arrived in between).
            after = self.state(since, gate)
            in_flight = set().union(*state.values(), *after.values())
            self.points.append(KillPoint(reached[0], in_flight))
        finally:
            if gate is not None:
                gate.open()  # the held request reaches Cinder after its sender died
            process.kill()
            process.communicate(timeout=30)
        return process.returncode


@pytest.mark.timeout(300)
def test_a_batch_killed_while_uploads_and_copies_are_in_flight_and_run_again_leaves_one_image_per_volume(
    sandbox_cloud: CloudUnderTest, tmp_path: Path
) -> None:
    """SIGKILL lands at a moment the test waits for in the sandbox: an upload request
    held unanswered at Cinder, Cinder uploading, a copy-image import running; until every
    volume was in flight at some kill. Then one run finishes everything, with one image
    per volume and period, in every store."""
    import openstack

    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    conn = openstack.connect(cloud=sandbox_cloud.admin_cloud)
    volumes = make_volumes(conn, 6, "killed")
    sandbox.timings.upload = 0.6
    sandbox.timings.store_copy = 0.3
    listing = write_list(tmp_path, [v.name for v in volumes])
    args = ("upload", "--from-file", str(listing), "--once-per", "day", "--concurrency", "3",
            "-f", "ndjson")  # fmt: skip
    runs = KilledRuns(sandbox_cloud, volumes, args)

    with Arrivals(sandbox).watching() as arrivals:
        codes = [runs.kill_at((moment,), arrivals) for moment in KilledRuns.MOMENTS]
        while runs.covered != set(runs.volumes.values()) and len(codes) < 8:
            codes.append(runs.kill_at(KilledRuns.MOMENTS, arrivals))

    assert codes == [-9] * len(codes)
    assert [p.moment for p in runs.points][:3] == list(KilledRuns.MOMENTS)
    assert runs.covered == set(runs.volumes.values()), runs.points

    final = volimg_process(sandbox_cloud, *args)
    out, err = final.communicate(timeout=240)

    assert final.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[-1]["type"] == "summary"
    assert {r["result"] for r in lines[:-1]} <= {"ok", "already-done"}
    period = lines[-1]["period"]
    for volume in volumes:
        images = period_images(conn, volume.id, period)
        assert len(images) == 1, (volume.name, [(i.id, i.status) for i in images])
        assert images[0].status == "active"
        assert stores_of(conn, images[0].id) == {"fast", "cheap", "archive"}
        # No unstamped leftover either (a kill between Cinder's answer and the stamp).
        named = [
            i
            for i in conn.image.images()
            if i.name == f"{volume.name}-{period}" and i.status in LIVE
        ]
        assert len(named) == 1, volume.name
    conn.close()


def test_selectors_pick_volumes_by_metadata_and_all_must_match(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    tag = uuid.uuid4().hex[:8]
    volumes = make_volumes(admin_conn, 3, f"sel-{tag}", from_image=False)
    for volume, tier in zip(volumes, ("gold", "gold", "silver"), strict=True):
        admin_conn.block_storage.set_volume_metadata(volume, nightly=tag, tier=tier)

    run = volimg(
        "upload", "--selector", f"nightly={tag}", "--selector", "tier=gold", *qcow2,
        "--no-replicate", "-f", "json",
    )  # fmt: skip

    assert run.exit_code == 0, run
    chosen = sorted(v["volume"]["id"] for v in run.doc["volumes"])
    assert chosen == sorted(v.id for v in volumes[:2])
    assert run.doc["summary"]["counts"]["ok"] == 2

    none = volimg("upload", "--selector", f"nightly={tag}-none", "--require-match", "-f", "json")

    assert none.exit_code == 2, none


def test_a_batch_on_a_terminal_shows_a_live_table_and_on_a_dumb_one_plain_lines(
    sandbox_cloud: CloudUnderTest,
) -> None:
    from click.testing import CliRunner

    from volimg.cli import cli
    from volimg.context import AppContext

    def run(term: str) -> str:
        app = AppContext(poll_interval=0.02, force_terminal=True)
        result = CliRunner().invoke(
            cli,
            ["--os-cloud", sandbox_cloud.admin_cloud, "upload", "boot-vol", "data-vol"],
            obj=app,
            env={"TERM": term},
        )
        assert result.exit_code == 0, result.stderr
        return result.stderr

    live, dumb = run("xterm"), run("dumb")

    assert "\x1b[" in live  # the live table redraws
    assert "finished" in live
    assert "\x1b[" not in dumb
    *lines, summary = [line for line in dumb.splitlines() if line.strip()]
    assert summary.startswith("volimg: summary: ok"), summary
    assert lines
    assert all(line.split(" ", 1)[1].split(":")[0] in ("boot-vol", "data-vol") for line in lines)


def test_each_worker_has_its_own_session_and_no_request_is_shared_or_repeated(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest
) -> None:
    import openstack

    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    conn = openstack.connect(cloud=sandbox_cloud.admin_cloud)
    volumes = make_volumes(conn, 12, "workers")
    conn.close()
    sandbox.timings.upload = 0.3  # long enough for the workers to overlap
    before = len(sandbox.requests)

    run = volimg_sandbox("upload", *(v.id for v in volumes), "--concurrency", "4", "-f", "json")

    assert run.exit_code == 0, run
    sent = [r for r in list(sandbox.requests)[before:] if r.origin == "client"]
    # One login for the whole batch: the workers share the token, not the session.
    assert len([r for r in sent if r.path.endswith("/auth/tokens")]) == 1
    # Every request that changes something went out once, from one session.
    changing = [r for r in sent if r.method in ("POST", "PATCH", "PUT", "DELETE")]
    # (Cinder's volume actions share one path: the body tells them apart.)
    keys = [(r.method, r.path, json.dumps(r.json, sort_keys=True)) for r in changing]
    assert len(keys) == len(set(keys)), keys
    uploads = [r for r in changing if r.action == "os-volume_upload_image"]
    assert sorted(r.path.split("/")[-2] for r in uploads) == sorted(v.id for v in volumes)


def test_a_forked_gateway_has_its_own_http_session_and_shares_the_login(
    sandbox_cloud: CloudUnderTest,
) -> None:
    """What each batch worker gets (volimg.gateway.Gateway.fork)."""
    from volimg.gateway import connect

    gateway = connect(sandbox_cloud.admin_cloud, None)
    forked = gateway.fork()
    try:
        assert gateway.identity() == forked.identity()
        main, worker = gateway._conn.session, forked._conn.session
        assert worker is not main  # keystoneauth sessions are not shared by threads
        assert worker.session is not main.session  # nor are requests' sessions
        assert worker.auth is main.auth  # one token, one login
    finally:
        forked.close()
        gateway.close()
