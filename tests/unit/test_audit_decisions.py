"""What audit finds for each image, and what ``--fix`` does about it, with no cloud.

``assess`` judges one image against the rules (upload's planner, fed with the cloud as
it is now) and ``_repair`` decides what ``--fix`` does with one finding. The scenario
tests (tests/scenarios/test_audit.py) show both against the sandbox cloud; these show
each branch as an operator would meet it, in milliseconds. They are the fast tests of
the ``audit`` mutation target (docs/testing.md).

The cloud here is a few dicts behind the gateway calls audit makes, and
``run_replication`` (the upload's own copy and prune) is replaced by one that records
the plan it was given: what a repair asks for is the decision under test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import pytest

from volimg.audit import (
    BASE_GONE,
    EXTRA,
    FAILED_IMPORT,
    IMPORTING,
    INTERRUPTED,
    LEFT_ALONE,
    MISSING,
    NOT_ACTIVE,
    NOT_YET,
    OK,
    REPAIR_FAILED,
    REPAIRED,
    STALE_LOCK,
    UNFINISHED,
    WOULD_REPAIR,
    AuditOptions,
    Finding,
    Repair,
    _Cloud,
    assess,
    finish_image,
)
from volimg.audit.findings import no_replicate, unique_keep
from volimg.audit.repair import _repair
from volimg.errors import (
    CloudError,
    Interrupted,
    NotFoundInCloud,
    PartialReplication,
    VolimgError,
)
from volimg.model import (
    CloudIdentity,
    GlanceInfo,
    Image,
    ImportTask,
    Store,
    Volume,
    VolumeTypeInfo,
)
from volimg.planner import ReplicationPlan
from volimg.provenance import KEY_MARK, TAG, UNKNOWN, Mark, Rule, Stamp, StampedBy
from volimg.results import COPIED, PENDING, Outcome, RunSettings, StoreReport
from volimg.waiting import Clock

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
ADMIN = CloudIdentity(project_id="p1", roles=("admin", "member"))
MEMBER = CloudIdentity(project_id="p1", roles=("member", "reader"))
GLANCE = GlanceInfo(
    stores=(Store("fast", is_default=True), Store("cheap"), Store("archive")),
    import_methods=("glance-direct", "copy-image"),
)
BASE = Image(id="base-1", name="cirros", status="active", stores=("cheap", "archive"))
OTHER_BASE = Image(id="base-2", name="debian", status="active", stores=("fast",))
STANDARD = VolumeTypeInfo("standard")
PINNED = VolumeTypeInfo("pinned", store="archive")
VOLUME = Volume(
    id="vol-1",
    name="boot-vol",
    status="available",
    size=1,
    volume_type="standard",
    image_metadata={"image_id": BASE.id},
)
PINNED_VOLUME = replace(VOLUME, volume_type="pinned")
NAME = "boot-vol-20261130T020000Z"


class FakeCloud:
    """The reads audit makes, and the writes that finish an image, from dicts."""

    def __init__(
        self,
        *images: Image,
        types: Iterable[VolumeTypeInfo] = (STANDARD, PINNED),
        unreadable: Iterable[str] = (),
        tasks: Mapping[str, Sequence[ImportTask]] | None = None,
        refuse_writes: bool = False,
        forget_writes: bool = False,
    ) -> None:
        self.images = {image.id: image for image in images}
        self.types = {t.name: t for t in types}
        self.unreadable = set(unreadable)
        self.tasks = dict(tasks or {})
        self.refuse_writes = refuse_writes
        self.forget_writes = forget_writes
        self.image_reads: list[str] = []
        self.type_reads: list[tuple[str, bool]] = []
        self.writes: list[tuple[object, ...]] = []

    def get_image(self, image_id: str) -> Image | None:
        self.image_reads.append(image_id)
        if image_id in self.unreadable:
            raise CloudError("HTTP 500 from Glance", status=500)
        return self.images.get(image_id)

    def volume_type(self, name: str, *, specs_visible: bool) -> VolumeTypeInfo | None:
        self.type_reads.append((name, specs_visible))
        found = self.types.get(name)
        if found is not None and not specs_visible:
            return VolumeTypeInfo(name, specs_visible=False)  # Cinder hides the specs
        return found

    def image_tasks(self, image_id: str) -> list[ImportTask]:
        if image_id not in self.tasks:
            raise CloudError("HTTP 500 from Glance", status=500)
        return list(self.tasks[image_id])

    def add_image_tag(self, image_id: str, tag: str) -> None:
        self.writes.append(("tag", image_id, tag))
        if self.refuse_writes:
            raise CloudError("HTTP 409: the image changed", status=409)
        if not self.forget_writes:
            image = self.images[image_id]
            self.images[image_id] = replace(image, tags=(*image.tags, tag))

    def set_image_properties(
        self, image_id: str, properties: Mapping[str, str], *, remove: Sequence[str] = ()
    ) -> None:
        self.writes.append(("properties", image_id, dict(properties), tuple(remove)))
        if self.refuse_writes:
            raise CloudError("HTTP 409: the image changed", status=409)
        if not self.forget_writes:
            image = self.images[image_id]
            kept = {k: v for k, v in image.properties.items() if k not in remove}
            self.images[image_id] = replace(image, properties={**kept, **properties})


def stamp(**changes: object) -> Stamp:
    fields: dict[str, object] = {
        "image_id": "img-1",
        "stamped_by": StampedBy.UPLOAD,
        "stamped_at": "2026-11-30T02:00:00Z",
        "source_volume": VOLUME.id,
        "base_image": BASE.id,
        "type_store": None,
        "rule": Rule.BASE_STORES,
    }
    fields.update(changes)
    return Stamp(**fields)  # type: ignore[arg-type]


def image(*stores: str, **changes: object) -> Image:
    return replace(Image(id="img-1", name=NAME, status="active", stores=stores), **changes)


def audit_one(
    the_image: Image,
    the_stamp: Stamp | None,
    *,
    cloud: FakeCloud | None = None,
    volumes: Mapping[str, Volume] | None = None,
    identity: CloudIdentity = ADMIN,
    mark: Mark | None = None,
) -> Finding:
    gateway = cloud if cloud is not None else FakeCloud(BASE)
    shared = _Cloud(
        gateway,  # type: ignore[arg-type]
        identity,
        GLANCE,
        dict({VOLUME.id: VOLUME} if volumes is None else volumes),
    )
    return assess(shared, the_image, the_stamp, now=NOW, mark=mark)


# --- assess: one finding per image, the most pressing ----------------------------------------


@dataclass(frozen=True)
class Judged:
    image: Image
    stamp: Stamp
    finding: str
    expected: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    cloud: tuple[Image, ...] = (BASE,)
    unreadable: tuple[str, ...] = ()
    volume: Volume | None = VOLUME


FINDING_CASES = {
    "placed as its base image: ok": Judged(
        image("fast", "cheap", "archive"), stamp(), OK, expected=("cheap", "archive")
    ),
    "a store of the base image without a copy: missing": Judged(
        image("fast", "cheap"), stamp(), MISSING, ("cheap", "archive"), missing=("archive",)
    ),
    "a copy Glance lists as failed and still missing: failed-import": Judged(
        image("fast", "cheap", failed_import=("archive",)),
        stamp(),
        FAILED_IMPORT,
        ("cheap", "archive"),
        missing=("archive",),
    ),
    "a failed copy a later one made good is history: ok": Judged(
        image("fast", "cheap", "archive", failed_import=("archive",)),
        stamp(),
        OK,
        ("cheap", "archive"),
    ),
    "prune intent and a copy outside the rules: extra": Judged(
        image("fast", "cheap", "archive"),
        stamp(prune=True),
        EXTRA,
        ("cheap", "archive"),
        extra=("fast",),
    ),
    "a copy outside the rules without prune intent stays: ok": Judged(
        image("fast", "cheap", "archive"), stamp(), OK, ("cheap", "archive")
    ),
    "missing and extra at once: missing first": Judged(
        image("fast", "cheap"),
        stamp(prune=True),
        MISSING,
        ("cheap", "archive"),
        missing=("archive",),
        extra=("fast",),
    ),
    "the base image deleted: base-gone, nothing expected": Judged(
        image("fast"), stamp(), BASE_GONE, cloud=()
    ),
    "the base image unreadable: base-gone as well": Judged(
        image("fast"), stamp(), BASE_GONE, unreadable=(BASE.id,)
    ),
    "the base image killed: base-gone": Judged(
        image("fast"), stamp(), BASE_GONE, cloud=(replace(BASE, status="killed"),)
    ),
    "no base image at all: Glance's default store": Judged(
        image("fast"), stamp(base_image=None, rule=Rule.DEFAULT_STORE), OK, ("fast",)
    ),
    "--no-replicate: it stays where it landed": Judged(
        image("fast"), stamp(replicate=False, rule=Rule.DEFAULT_STORE), OK, ("fast",)
    ),
    "--no-replicate, and the base image gone: still where it landed, ok": Judged(
        image("fast"), stamp(replicate=False, rule=Rule.DEFAULT_STORE), OK, ("fast",), cloud=()
    ),
    "--no-replicate with --also-store: only the store asked for is missing": Judged(
        image("fast"),
        stamp(replicate=False, rule=Rule.DEFAULT_STORE, also_stores=("archive",)),
        MISSING,
        ("fast", "archive"),
        missing=("archive",),
    ),
    "the volume type's store wins over the base image": Judged(
        image("archive"),
        stamp(rule=Rule.TYPE_STORE, type_store="archive"),
        OK,
        ("archive",),
        volume=PINNED_VOLUME,
    ),
    "the type's store needs no base image: its copy is missing": Judged(
        image("fast"),
        stamp(rule=Rule.TYPE_STORE, type_store="archive"),
        MISSING,
        ("archive",),
        missing=("archive",),
        cloud=(),
        volume=PINNED_VOLUME,
    ),
    "a type store, prune intent and the base unreadable: the other copy stays": Judged(
        image("archive", "fast"),
        stamp(rule=Rule.TYPE_STORE, type_store="archive", prune=True),
        BASE_GONE,
        ("archive",),
        unreadable=(BASE.id,),
        volume=PINNED_VOLUME,
    ),
    "a type store and prune intent with the base readable: extra": Judged(
        image("archive", "fast"),
        stamp(rule=Rule.TYPE_STORE, type_store="archive", prune=True),
        EXTRA,
        ("archive",),
        extra=("fast",),
        volume=PINNED_VOLUME,
    ),
    "the volume gone: the stamp's base image stands in": Judged(
        image("fast", "cheap"), stamp(), MISSING, ("cheap", "archive"), ("archive",), volume=None
    ),
    "the volume gone: the type store the stamp recorded stands in": Judged(
        image("fast"),
        stamp(rule=Rule.TYPE_STORE, type_store="archive"),
        MISSING,
        ("archive",),
        missing=("archive",),
        volume=None,
    ),
    "--no-replicate with its also-store copied: ok": Judged(
        image("fast", "archive"),
        stamp(replicate=False, rule=Rule.DEFAULT_STORE, also_stores=("archive",)),
        OK,
        ("fast", "archive"),
    ),
    "--no-replicate with an also-store Glance no longer has: nothing missing": Judged(
        image("fast"),
        stamp(replicate=False, rule=Rule.DEFAULT_STORE, also_stores=("gone-store",)),
        OK,
        ("fast",),
    ),
    "--no-replicate and a type store: the type's store is still expected": Judged(
        image("fast"),
        stamp(replicate=False, rule=Rule.TYPE_STORE, type_store="archive"),
        MISSING,
        ("archive",),
        missing=("archive",),
        volume=PINNED_VOLUME,
    ),
    "a type store, prune intent, the base unreadable and no other copy: ok": Judged(
        image("archive"),
        stamp(rule=Rule.TYPE_STORE, type_store="archive", prune=True),
        OK,
        ("archive",),
        unreadable=(BASE.id,),
        volume=PINNED_VOLUME,
    ),
    "an image that is not active has nothing to place yet": Judged(
        image(status="queued"), stamp(), NOT_ACTIVE
    ),
}


@pytest.mark.parametrize("case", FINDING_CASES.values(), ids=FINDING_CASES.keys())
def test_each_image_gets_the_most_pressing_finding(case: Judged) -> None:
    found = audit_one(
        case.image,
        case.stamp,
        cloud=FakeCloud(*case.cloud, unreadable=case.unreadable),
        volumes={} if case.volume is None else {VOLUME.id: case.volume},
    )

    assert found.finding == case.finding, found.reason
    assert (found.expected, found.missing, found.extra) == (case.expected, case.missing, case.extra)
    assert found.prune is bool(case.extra)
    assert (found.image, found.stamp, found.mark) == (case.image, case.stamp, None)
    assert found.reason


def test_the_reasons_name_the_stores_and_images_they_are_about() -> None:
    missing = audit_one(image("fast", "cheap"), stamp())
    assert "archive" in missing.reason
    assert "cirros" in missing.reason  # the base image the placement follows
    failed = audit_one(image("fast", "cheap", failed_import=("archive",)), stamp())
    assert "archive" in failed.reason
    extra = audit_one(image("fast", "cheap", "archive"), stamp(prune=True))
    assert "in fast " in extra.reason
    assert "cheap, archive should hold it" in extra.reason
    gone = audit_one(image("fast"), stamp(), cloud=FakeCloud(unreadable=[BASE.id]))
    assert "base-1" in gone.reason
    assert "HTTP 500" in gone.reason  # why it could not be read
    recorded = audit_one(image("fast"), stamp(rule=Rule.TYPE_STORE, type_store="archive"))
    assert "archive" in recorded.reason
    staying = audit_one(
        image("archive", "fast"),
        stamp(rule=Rule.TYPE_STORE, type_store="archive", prune=True),
        cloud=FakeCloud(unreadable=[BASE.id]),
        volumes={VOLUME.id: PINNED_VOLUME},
    )
    assert "the copies in fast stay" in staying.reason  # the copy volimg leaves alone


def test_a_base_image_is_read_once_however_many_images_follow_it() -> None:
    cloud = FakeCloud(BASE)
    shared = _Cloud(cloud, ADMIN, GLANCE, {VOLUME.id: VOLUME})  # type: ignore[arg-type]
    first = assess(shared, image("fast", "cheap"), stamp(), now=NOW)
    second = assess(shared, replace(image("cheap", "archive"), id="img-2"), stamp(), now=NOW)

    assert (first.finding, second.finding) == (MISSING, OK)
    assert cloud.image_reads == [BASE.id]


def test_a_base_image_that_cannot_be_read_is_asked_for_once_and_stops_no_other_image() -> None:
    cloud = FakeCloud(BASE, OTHER_BASE, unreadable=[BASE.id])
    shared = _Cloud(cloud, ADMIN, GLANCE, {})  # type: ignore[arg-type]
    first = assess(shared, image("fast"), stamp(), now=NOW)
    again = assess(shared, replace(image("fast"), id="img-2"), stamp(), now=NOW)
    other = assess(shared, image("fast"), stamp(base_image=OTHER_BASE.id), now=NOW)

    assert (first.finding, again.finding, other.finding) == (BASE_GONE, BASE_GONE, OK)
    assert cloud.image_reads == [BASE.id, OTHER_BASE.id]


@pytest.mark.parametrize(
    ("identity", "specs_visible"), [(ADMIN, True), (MEMBER, False)], ids=["admin", "member"]
)
def test_a_volume_type_is_read_once_as_the_identity_may_see_it(
    identity: CloudIdentity, specs_visible: bool
) -> None:
    cloud = FakeCloud(BASE)
    shared = _Cloud(cloud, identity, GLANCE, {VOLUME.id: PINNED_VOLUME})  # type: ignore[arg-type]
    for image_id in ("img-1", "img-2"):
        assess(shared, image("archive", id=image_id), stamp(type_store="archive"), now=NOW)
    assert cloud.type_reads == [("pinned", specs_visible)]


def test_each_volume_type_is_read_once_and_each_image_placed_by_its_own() -> None:
    cloud = FakeCloud(BASE)
    other_volume = replace(VOLUME, id="vol-2")
    shared = _Cloud(
        cloud,  # type: ignore[arg-type]
        ADMIN,
        GLANCE,
        {VOLUME.id: PINNED_VOLUME, other_volume.id: other_volume},
    )
    pinned = assess(shared, image("archive"), stamp(), now=NOW)
    standard = assess(
        shared, image("cheap", "archive", id="img-2"), stamp(source_volume="vol-2"), now=NOW
    )

    assert (pinned.finding, pinned.expected) == (OK, ("archive",))
    assert (standard.finding, standard.expected) == (OK, ("cheap", "archive"))
    assert cloud.type_reads == [("pinned", True), ("standard", True)]


def test_a_volume_without_a_type_asks_cinder_for_none() -> None:
    cloud = FakeCloud(BASE)
    untyped = replace(VOLUME, volume_type=None)

    found = audit_one(image("cheap", "archive"), stamp(), cloud=cloud, volumes={VOLUME.id: untyped})

    assert found.finding == OK
    assert cloud.type_reads == []


def test_a_member_who_cannot_see_the_types_store_trusts_the_one_the_stamp_recorded() -> None:
    recorded = stamp(rule=Rule.TYPE_STORE, type_store="archive")

    found = audit_one(image("fast"), recorded, volumes={VOLUME.id: PINNED_VOLUME}, identity=MEMBER)

    assert (found.finding, found.expected, found.missing) == (MISSING, ("archive",), ("archive",))
    assert "(as the stamp recorded it)" in found.reason
    admin = audit_one(image("archive"), recorded, volumes={VOLUME.id: PINNED_VOLUME})
    assert (admin.finding, admin.expected) == (OK, ("archive",))
    assert "(as the stamp recorded it)" not in admin.reason


def test_a_type_cinder_does_not_show_at_all_falls_back_to_the_recorded_store() -> None:
    recorded = stamp(rule=Rule.TYPE_STORE, type_store="archive")
    hidden = FakeCloud(BASE, types=())

    found = audit_one(image("fast"), recorded, cloud=hidden, volumes={VOLUME.id: PINNED_VOLUME})

    assert (found.finding, found.expected) == (MISSING, ("archive",))


def test_a_type_store_the_stamper_could_not_see_is_not_taken_for_a_store() -> None:
    unknown = stamp(type_store=UNKNOWN)

    found = audit_one(image("fast", "cheap", "archive"), unknown, volumes={})

    assert (found.finding, found.expected) == (OK, ("cheap", "archive"))


def test_the_stamps_base_image_wins_over_the_volumes_edited_metadata() -> None:
    edited = replace(VOLUME, image_metadata={"image_id": OTHER_BASE.id, "image_name": "debian"})

    found = audit_one(
        image("fast"), stamp(), cloud=FakeCloud(BASE, OTHER_BASE), volumes={VOLUME.id: edited}
    )

    assert (found.expected, found.missing) == (("cheap", "archive"), ("cheap", "archive"))


def test_a_volume_with_other_image_metadata_keeps_it_beside_the_stamps_base() -> None:
    """The stamp names the base image; the rest of the volume's metadata is left as it is."""
    with_more = replace(VOLUME, image_metadata={"image_id": BASE.id, "hw_disk_bus": "scsi"})
    found = audit_one(image("cheap", "archive"), stamp(), volumes={VOLUME.id: with_more})
    assert found.finding == OK


def test_a_volume_not_made_from_an_image_follows_the_default_store() -> None:
    plain = replace(VOLUME, image_metadata={})
    unstamped_base = stamp(base_image=None, rule=Rule.DEFAULT_STORE)
    found = audit_one(image("fast"), unstamped_base, volumes={VOLUME.id: plain})
    assert (found.finding, found.expected) == (OK, ("fast",))


def test_a_recorded_also_store_glance_no_longer_has_is_not_expected() -> None:
    asked = stamp(base_image=None, rule=Rule.DEFAULT_STORE, also_stores=("gone-store", "archive"))

    found = audit_one(image("fast"), asked)

    assert (found.finding, found.expected, found.missing) == (
        MISSING,
        ("fast", "archive"),
        ("archive",),
    )


def test_prune_intent_reaches_the_plan_only_as_the_stamp_records_it() -> None:
    """The stamp's prune intent is what makes a copy outside the rules extra."""
    kept = audit_one(image("fast", "cheap", "archive"), stamp(prune=False))
    pruned = audit_one(image("fast", "cheap", "archive"), stamp(prune=True))
    assert (kept.extra, pruned.extra) == ((), ("fast",))


@pytest.mark.parametrize(
    ("the_stamp", "stays"),
    [
        pytest.param(stamp(replicate=False), True, id="recorded-no-replicate"),
        pytest.param(
            stamp(replicate=True, rule=Rule.DEFAULT_STORE), False, id="recorded-replicate"
        ),
        pytest.param(stamp(rule=Rule.DEFAULT_STORE), True, id="old-stamp-default-store-with-base"),
        pytest.param(
            stamp(rule=Rule.DEFAULT_STORE, base_image=None), False, id="old-stamp-no-base"
        ),
        pytest.param(stamp(), False, id="old-stamp-base-stores"),
    ],
)
def test_an_upload_with_no_replicate_is_told_from_its_stamp(the_stamp: Stamp, stays: bool) -> None:
    assert no_replicate(the_stamp) is stays


def test_the_stores_that_keep_an_image_are_the_expected_then_its_other_copies_once() -> None:
    kept = unique_keep(("cheap", "archive"), image("fast", "archive", "web"), ("fast",))
    assert kept == ("cheap", "archive", "web")


# --- an unfinished image, an import running or a stale lock -------------------------------


def mark_of(run: str = "run-7", **changes: object) -> Mark:
    return Mark.for_upload(run, NAME, stamp(image_id="", **changes))


@pytest.mark.parametrize("status", ["active", "queued", "killed"])
def test_an_image_with_a_mark_and_no_stamp_is_unfinished_whatever_its_state(status: str) -> None:
    mark = mark_of()

    found = audit_one(image(status=status), None, mark=mark)

    assert (found.finding, found.mark, found.stamp) == (UNFINISHED, mark, None)
    assert "run-7" in found.reason
    assert "vol-1" in found.reason


def test_a_marked_image_the_glance_filter_stamped_is_still_unfinished() -> None:
    """The filter knows neither the volume nor the run's intent: the mark decides."""
    mark = mark_of()
    filtered = stamp(stamped_by=StampedBy.GLANCE_FILTER, source_volume=None)

    found = audit_one(image("fast", "cheap", "archive"), filtered, mark=mark)

    assert (found.finding, found.mark, found.stamp) == (UNFINISHED, mark, filtered)


def task(status: str, minutes_ago: float, task_id: str = "t1") -> ImportTask:
    moment = (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return ImportTask(task_id, status, "Copied 12 MiB", None, created_at=moment, updated_at=moment)


def test_a_running_import_is_left_alone_and_named() -> None:
    locked = image("fast", import_task="t1", importing_to_stores=("archive",))
    cloud = FakeCloud(BASE, tasks={"img-1": [task("processing", 1)]})

    found = audit_one(locked, stamp(), cloud=cloud)

    assert found.finding == IMPORTING
    assert "t1" in found.reason
    assert "archive" in found.reason
    assert found.takeover_at is None


@pytest.mark.parametrize(
    ("tasks", "takeover"),
    [
        pytest.param([task("processing", 10)], NOW + timedelta(minutes=50), id="silent-running"),
        pytest.param([task("pending", 10)], NOW + timedelta(minutes=110), id="silent-pending"),
        pytest.param([task("success", 1)], NOW + timedelta(minutes=59), id="finished-lock-left"),
        pytest.param([task("processing", 1, task_id="t2")], None, id="its-task-gone"),
    ],
)
def test_a_stale_lock_says_when_glance_lets_a_new_import_take_it_over(
    tasks: list[ImportTask], takeover: datetime | None
) -> None:
    locked = image("fast", import_task="t1")

    found = audit_one(locked, stamp(), cloud=FakeCloud(BASE, tasks={"img-1": tasks}))

    assert found.finding == STALE_LOCK
    assert found.takeover_at == takeover
    assert "t1" in found.reason
    if takeover is not None:
        assert takeover.strftime("%Y-%m-%dT%H:%M:%SZ") in found.reason
    else:  # nothing left to wait for: the operator may go on at once
        assert "may take it over from now" in found.reason


# --- _repair: what --fix does with one finding ------------------------------------------------


@dataclass
class Replications:
    """The replications a repair asked for, and what each one comes to."""

    plans: list[ReplicationPlan]
    error: VolimgError | None = None
    pending: tuple[str, ...] = ()
    called_with: list[tuple[object, RunSettings, object]] = field(default_factory=list)

    def run(
        self, gateway: object, plan: ReplicationPlan, settings: RunSettings, emit: object
    ) -> Outcome:
        self.plans.append(plan)
        self.called_with.append((gateway, settings, emit))
        stores = tuple(
            StoreReport(s, PENDING if s in self.pending else COPIED) for s in plan.replicate_to
        )
        return Outcome(
            command="replicate", plan=plan, image=plan.image, stores=stores, error=self.error
        )


@pytest.fixture
def replications(monkeypatch: pytest.MonkeyPatch) -> Replications:
    recorded = Replications(plans=[])
    monkeypatch.setattr("volimg.audit.repair.run_replication", recorded.run)
    return recorded


class MainConnection:
    """The audit's own connection, which the shared facts hold: a repair runs in a worker
    thread on a forked connection of its own, and must not use this one."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"a repair used the audit's main connection ({name})")


SETTINGS = RunSettings(clock=Clock(wall=lambda: NOW))


def emit(event: object) -> None:
    """The audit's event sink; the repairs' events are not under test here."""


def fix(
    finding: Finding,
    cloud: FakeCloud | None = None,
    *,
    dry_run: bool = False,
    now: datetime = NOW,
    glance: GlanceInfo = GLANCE,
) -> Repair:
    worker = cloud if cloud is not None else FakeCloud(BASE)
    shared = _Cloud(MainConnection(), ADMIN, glance, {VOLUME.id: VOLUME})  # type: ignore[arg-type]
    settings = SETTINGS if now == NOW else RunSettings(clock=Clock(wall=lambda: now))
    return _repair(
        worker,  # type: ignore[arg-type]
        shared,
        finding,
        AuditOptions(fix=True, dry_run=dry_run),
        settings,
        emit,
    )


def found(finding: str, the_image: Image, **fields: object) -> Finding:
    return Finding(image=the_image, stamp=stamp(), finding=finding, reason="r", **fields)  # type: ignore[arg-type]


MISSING_ARCHIVE = found(
    MISSING, image("fast", "cheap"), expected=("cheap", "archive"), missing=("archive",)
)


def test_a_missing_copy_is_copied_to_and_nothing_removed(replications: Replications) -> None:
    repair = fix(MISSING_ARCHIVE)

    (plan,) = replications.plans
    assert (plan.replicate_to, plan.prune_from) == (("archive",), ())
    assert plan.image == MISSING_ARCHIVE.image
    assert (repair.image_id, repair.finding, repair.result) == ("img-1", MISSING, REPAIRED)
    assert repair.detail == "copy to archive"
    assert repair.outcome is not None
    assert repair.outcome.plan is plan
    assert repair.next_step is None


def test_a_repair_copies_on_its_workers_connection_with_the_audits_settings_and_sink(
    replications: Replications,
) -> None:
    worker = FakeCloud(BASE)

    fix(MISSING_ARCHIVE, worker)

    assert replications.called_with == [(worker, SETTINGS, emit)]


def test_an_extra_copy_is_removed_and_every_other_copy_kept(replications: Replications) -> None:
    """The prune removes what the finding names, nothing more: the image's other copies
    outside the expected stores are targets too."""
    extra = found(
        EXTRA, image("fast", "cheap", "archive"), expected=("cheap",), extra=("fast",), prune=True
    )

    repair = fix(extra)

    (plan,) = replications.plans
    assert plan.prune_from == ("fast",)
    assert plan.replicate_to == ()
    assert plan.options.prune is True
    assert (repair.result, repair.detail) == (
        REPAIRED,
        "remove the copies in fast (never the last)",
    )


def test_a_copy_without_prune_intent_is_not_pruned(replications: Replications) -> None:
    fix(MISSING_ARCHIVE)
    (plan,) = replications.plans
    assert plan.options.prune is False


def test_a_dry_run_says_what_it_would_do_and_does_nothing(replications: Replications) -> None:
    both = found(
        MISSING,
        image("fast", "cheap"),
        expected=("cheap", "archive"),
        missing=("archive",),
        extra=("fast",),
    )

    repair = fix(both, dry_run=True)

    assert replications.plans == []
    assert (repair.result, repair.outcome) == (WOULD_REPAIR, None)
    assert repair.detail == "copy to archive; remove the copies in fast (never the last)"


def test_nothing_to_copy_and_nothing_to_remove_is_left_alone(replications: Replications) -> None:
    failed_then_made_good = found(FAILED_IMPORT, image("cheap", "archive"), expected=("cheap",))

    repair = fix(failed_then_made_good)

    assert replications.plans == []
    assert repair.result == LEFT_ALONE
    assert repair.detail  # says why


def test_a_repair_glance_cannot_do_fails_before_anything_is_asked(
    replications: Replications,
) -> None:
    no_copy_image = replace(GLANCE, import_methods=("glance-direct",))

    repair = fix(MISSING_ARCHIVE, glance=no_copy_image)

    assert replications.plans == []
    assert repair.result == REPAIR_FAILED
    assert "copy-image" in repair.detail


def test_a_copy_that_fails_is_a_failed_repair_with_its_outcome(replications: Replications) -> None:
    replications.error = PartialReplication("the copy to archive failed")

    repair = fix(MISSING_ARCHIVE)

    assert (repair.result, repair.detail) == (REPAIR_FAILED, "the copy to archive failed")
    assert repair.outcome is not None
    assert repair.outcome.error is replications.error


def test_an_interrupted_copy_says_it_goes_on_in_glance_and_how_to_follow_it(
    replications: Replications,
) -> None:
    replications.error = Interrupted("interrupted; the copies requested go on in Glance")
    replications.pending = ("archive",)

    repair = fix(MISSING_ARCHIVE)

    assert repair.result == INTERRUPTED
    assert "archive" in repair.detail
    assert repair.next_step is not None
    assert repair.next_step.endswith(": volimg audit --fix --image img-1")
    assert "archive" in repair.next_step
    assert repair.outcome is not None


def test_an_interrupted_repair_with_nothing_requested_says_how_to_run_it_again(
    replications: Replications,
) -> None:
    replications.error = Interrupted("interrupted; nothing was requested")

    repair = fix(MISSING_ARCHIVE)

    assert repair.result == INTERRUPTED
    assert repair.detail == "interrupted; nothing was requested"
    assert repair.next_step == "volimg audit --fix --image img-1"
    assert repair.outcome is not None
    assert repair.outcome.error is replications.error


# --- a stale lock -------------------------------------------------------------------------


def stale_lock(takeover_at: datetime | None, *stores: str) -> Finding:
    return found(STALE_LOCK, image(*stores, import_task="t1"), takeover_at=takeover_at)


def test_a_lock_glance_does_not_yet_let_go_is_not_yet(replications: Replications) -> None:
    repair = fix(stale_lock(NOW + timedelta(minutes=1), "fast", "cheap"))

    assert replications.plans == []
    assert repair.result == NOT_YET
    assert "2026-12-01T02:01:00Z" in repair.detail


@pytest.mark.parametrize(
    "takeover_at", [NOW, NOW - timedelta(minutes=1), None], ids=["now", "past", "task-gone"]
)
def test_a_stale_lock_is_taken_over_by_the_copy_that_was_missing(
    replications: Replications, takeover_at: datetime | None
) -> None:
    repair = fix(stale_lock(takeover_at, "fast", "cheap"))

    (plan,) = replications.plans
    assert plan.replicate_to == ("archive",)
    assert (repair.finding, repair.result) == (STALE_LOCK, REPAIRED)
    assert repair.detail == "take over the stale import lock; copy to archive"


def test_a_stale_lock_on_an_image_in_every_store_is_left_to_the_next_import(
    replications: Replications,
) -> None:
    repair = fix(stale_lock(NOW, "fast", "cheap", "archive"))

    assert replications.plans == []
    assert repair.result == LEFT_ALONE


# --- an unfinished image: stamped as its mark records, then placed ---------------------------


def unfinished(status: str = "active", *stores: str) -> Finding:
    mark = mark_of()
    marked = image(*stores, status=status, properties=mark.metadata())
    return Finding(image=marked, stamp=None, finding=UNFINISHED, reason="r", mark=mark)


@pytest.mark.parametrize(
    ("status", "delete_it"), [("killed", True), ("deleted", True), ("queued", False)]
)
def test_an_unfinished_image_that_is_not_active_is_left_alone_and_not_stamped(
    replications: Replications, status: str, delete_it: bool
) -> None:
    finding = unfinished(status)
    cloud = FakeCloud(BASE, finding.image)

    repair = fix(finding, cloud)

    assert repair.result == LEFT_ALONE
    assert ("openstack image delete img-1" in repair.detail) is delete_it
    assert cloud.writes == []
    assert replications.plans == []


@pytest.mark.parametrize(
    ("stores", "then"),
    [
        (("fast", "cheap", "archive"), "then ok: "),
        (("fast", "cheap"), "then copy to archive"),
    ],
)
def test_a_dry_run_says_it_would_stamp_the_image_then_what_it_would_place(
    replications: Replications, stores: tuple[str, ...], then: str
) -> None:
    finding = unfinished("active", *stores)
    cloud = FakeCloud(BASE, finding.image)

    repair = fix(finding, cloud, dry_run=True)

    assert repair.result == WOULD_REPAIR
    assert repair.detail.startswith("stamp it as its mark (run run-7) records; " + then)
    assert cloud.writes == []
    assert replications.plans == []


def test_a_dry_run_of_an_unfinished_image_with_an_import_running_leaves_it_to_the_import(
    replications: Replications,
) -> None:
    finding = unfinished("active", "fast")
    running = replace(finding, image=replace(finding.image, import_task="t1"))
    cloud = FakeCloud(BASE, running.image, tasks={"img-1": [task("processing", 1)]})

    repair = fix(running, cloud, dry_run=True)

    assert repair.result == WOULD_REPAIR
    assert "; then importing: " in repair.detail
    assert cloud.writes == []


def test_an_unfinished_image_in_place_is_stamped_as_its_mark_records(
    replications: Replications,
) -> None:
    finding = unfinished("active", "fast", "cheap", "archive")
    cloud = FakeCloud(BASE, finding.image)

    repair = fix(finding, cloud)

    assert (repair.finding, repair.result) == (UNFINISHED, REPAIRED)
    assert repair.detail.startswith("stamped it as its mark (run run-7) records; ")
    assert replications.plans == []
    stamped = Stamp.from_properties("img-1", cloud.images["img-1"].properties)
    assert stamped == stamp(stamped_at="2026-12-01T02:00:00Z")
    assert KEY_MARK not in cloud.images["img-1"].properties


def test_an_unfinished_image_missing_a_copy_is_stamped_then_copied(
    replications: Replications,
) -> None:
    finding = unfinished("active", "fast", "cheap")
    cloud = FakeCloud(BASE, finding.image)

    repair = fix(finding, cloud)

    (plan,) = replications.plans
    assert plan.replicate_to == ("archive",)
    assert plan.image.properties.get("volimg_stamped_by") == "upload"  # the stamped image
    assert (repair.finding, repair.result) == (UNFINISHED, REPAIRED)
    assert repair.detail == "stamped it as its mark (run run-7) records; copy to archive"


def test_an_unfinished_image_whose_base_is_gone_is_stamped_and_that_is_all(
    replications: Replications,
) -> None:
    finding = unfinished("active", "fast")
    cloud = FakeCloud(finding.image)  # no base image

    repair = fix(finding, cloud)

    assert repair.result == REPAIRED
    assert "base-1" in repair.detail
    assert replications.plans == []
    assert TAG in cloud.images["img-1"].tags


def test_an_unfinished_image_with_an_import_running_is_stamped_and_left_to_it(
    replications: Replications,
) -> None:
    finding = unfinished("active", "fast")
    running = replace(finding, image=replace(finding.image, import_task="t1"))
    cloud = FakeCloud(BASE, running.image, tasks={"img-1": [task("processing", 1)]})

    repair = fix(running, cloud)

    assert repair.result == LEFT_ALONE
    assert repair.detail.startswith("stamped it as its mark (run run-7) records; importing: ")
    assert replications.plans == []


def test_an_unfinished_image_glance_will_not_stamp_is_a_failed_repair(
    replications: Replications,
) -> None:
    finding = unfinished("active", "fast", "cheap")
    cloud = FakeCloud(BASE, finding.image, refuse_writes=True)

    repair = fix(finding, cloud)

    assert repair.result == REPAIR_FAILED
    assert repair.detail == "could not stamp it: HTTP 409: the image changed"
    assert replications.plans == []


# --- finish_image: the stamp written, the mark removed, or another run's stamp kept ------------


def test_finishing_tags_first_then_writes_the_stamp_and_removes_the_mark() -> None:
    mark = mark_of()
    inherited = {**mark.metadata(), "volimg_period": "2026-11", "volimg_also_stores": "cheap"}
    marked = image("fast", properties=inherited)
    cloud = FakeCloud(marked)
    wanted = mark.stamp_for("img-1", stamped_at="2026-12-01T02:00:00Z")

    current, kept = finish_image(cloud, marked, wanted)  # type: ignore[arg-type]

    assert cloud.writes[0] == ("tag", "img-1", TAG)
    _, image_id, written, removed = cloud.writes[1]
    assert (image_id, written) == ("img-1", wanted.properties())
    assert set(removed) == {*mark.metadata(), "volimg_period", "volimg_also_stores"}
    assert kept == wanted
    assert current == cloud.images["img-1"]


def test_finishing_an_image_another_run_finished_meanwhile_keeps_that_runs_stamp() -> None:
    theirs = stamp(stamped_at="2026-12-01T01:59:00Z")
    finished = image("fast", properties=theirs.properties(), tags=(TAG,))
    cloud = FakeCloud(finished, refuse_writes=True)
    ours = stamp(stamped_at="2026-12-01T02:00:00Z")

    current, kept = finish_image(cloud, image("fast"), ours)  # type: ignore[arg-type]

    assert (current, kept) == (finished, theirs)


@pytest.mark.parametrize(
    "there",
    [
        pytest.param(None, id="gone"),
        pytest.param(image("fast"), id="unstamped"),
        pytest.param(image("fast", properties=stamp().properties()), id="stamped-but-untagged"),
        pytest.param(
            image(
                "fast",
                tags=(TAG,),
                properties=stamp(stamped_by=StampedBy.ADOPT).properties(),
            ),
            id="adopted-not-uploaded",
        ),
    ],
)
def test_a_refused_stamp_is_an_error_unless_another_upload_run_finished_it(
    there: Image | None,
) -> None:
    cloud = FakeCloud(*(() if there is None else (there,)), refuse_writes=True)

    with pytest.raises(CloudError, match="409"):
        finish_image(cloud, image("fast"), stamp())  # type: ignore[arg-type]


def test_an_image_that_disappears_while_it_is_stamped_says_so() -> None:
    class Vanishing(FakeCloud):
        def get_image(self, image_id: str) -> Image | None:
            return None

    with pytest.raises(NotFoundInCloud, match="img-1"):
        finish_image(Vanishing(image("fast")), image("fast"), stamp())  # type: ignore[arg-type]


def test_a_stamp_glance_did_not_keep_is_an_error() -> None:
    cloud = FakeCloud(image("fast"), forget_writes=True)

    with pytest.raises(VolimgError, match="did not keep the stamp"):
        finish_image(cloud, image("fast"), stamp())  # type: ignore[arg-type]
