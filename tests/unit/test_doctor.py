"""volimg.doctor: the checks as table tests, facts in and rows out, with no cloud."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from volimg import doctor as d
from volimg.model import (
    CinderVersions,
    CloudIdentity,
    GlanceInfo,
    Image,
    ImportTask,
    QuotaUsage,
    Store,
    Volume,
    VolumeTypeInfo,
)

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
ADMIN = CloudIdentity(project_id="p1", roles=("admin", "member", "reader"))
MEMBER = CloudIdentity(project_id="p2", roles=("member", "reader"))
STORES = (
    Store("fast", is_default=True),
    Store("cheap"),
    Store("archive"),
    Store("web", read_only=True),
)
GLANCE = GlanceInfo(stores=STORES, import_methods=("glance-direct", "copy-image"))
BASE = Image(id="base-1", name="cirros", status="active", stores=("cheap", "archive"))


def volume(name: str = "vol", *, size: int = 1, vtype: str = "standard", **kw: Any) -> Volume:
    return Volume(
        id=f"id-{name}",
        name=name,
        status=kw.pop("status", "available"),
        size=size,
        volume_type=vtype,
        image_metadata=kw.pop("image_metadata", {"image_id": BASE.id}),
    )


def facts(**overrides: Any) -> d.DoctorFacts:
    values: dict[str, Any] = {
        "identity": ADMIN,
        "endpoint": "https://glance.example:9292",
        "glance": GLANCE,
        "cinder": CinderVersions("3.0", "3.71"),
        "volumes": (volume("a"), volume("b", size=4)),
        "volume_types": (
            VolumeTypeInfo("standard"),
            VolumeTypeInfo("pinned", store="archive"),
        ),
        "base_images": {BASE.id: BASE},
        "usage": (),
        "stamped": (),
        "now": NOW,
    }
    values.update(overrides)
    return d.DoctorFacts(**values)


def rows(check: str, f: d.DoctorFacts) -> list[d.Check]:
    return d.CHECK_FUNCTIONS[check](f)


def statuses(check: str, f: d.DoctorFacts) -> list[str]:
    return [row.status for row in rows(check, f)]


# --- every check: an ok case and a case that is not ------------------------------------------

CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    (d.MULTI_STORE, {}, ["ok"]),
    (d.MULTI_STORE, {"glance": GlanceInfo(stores=(), import_methods=("copy-image",))}, ["warn"]),
    (d.MULTI_STORE, {"glance": replace(GLANCE, stores=(Store("fast"),))}, ["warn"]),
    (d.COPY_IMAGE, {}, ["ok"]),
    (d.COPY_IMAGE, {"glance": replace(GLANCE, import_methods=("glance-direct",))}, ["fail"]),
    (d.COPY_IMAGE, {"glance": GlanceInfo(stores=(), import_methods=())}, ["skipped"]),
    (d.TYPE_STORE, {}, ["ok", "ok"]),
    (d.TYPE_STORE, {"volume_types": (VolumeTypeInfo("bad", store="nowhere"),)}, ["fail"]),
    (d.TYPE_STORE, {"volume_types": (VolumeTypeInfo("web", store="web"),)}, ["fail"]),
    (
        d.TYPE_STORE,
        {"volume_types": (VolumeTypeInfo("standard", specs_visible=False),), "identity": MEMBER},
        ["skipped"],
    ),
    (d.TYPE_STORE, {"wanted_types": ("pinned", "nope")}, ["fail", "ok"]),
    (
        d.TYPE_STORE,
        {"volume_types": d.Unread("HTTP 500", refused=False)},
        ["warn"],
    ),
    (d.BASE_STORES, {}, ["ok"]),
    (d.BASE_STORES, {"volumes": (volume("blank", image_metadata={}),)}, ["ok"]),
    (
        d.BASE_STORES,
        {"base_images": {BASE.id: replace(BASE, stores=("cheap", "edge-1"))}},
        ["warn"],
    ),
    (d.BASE_STORES, {"base_images": {BASE.id: replace(BASE, stores=())}}, ["skipped"]),
    (d.BASE_STORES, {"glance": GlanceInfo(stores=(), import_methods=())}, ["skipped"]),
    (d.BASE_STORES, {"base_images": d.Unread("forbidden", refused=True)}, ["skipped"]),
    (d.ENDPOINTS, {}, ["ok"]),
    (
        d.ENDPOINTS,
        {
            "endpoints": (
                d.EndpointStores("One", "https://a", ("fast", "cheap"), current=True),
                d.EndpointStores("Two", "https://b", ("fast",)),
            )
        },
        ["ok", "warn"],
    ),
    (
        d.ENDPOINTS,
        {
            "endpoints": (
                d.EndpointStores("One", "https://a", ("fast",), current=True),
                d.EndpointStores("Two", "https://b", d.Unread("connection refused")),
                d.EndpointStores("Three", "https://c", None),
            )
        },
        ["ok", "warn", "warn"],
    ),
    (d.POLICY, {}, ["ok"]),
    (d.POLICY, {"identity": MEMBER}, ["warn"]),
    (d.POLICY, {"glance": replace(GLANCE, import_methods=())}, ["skipped"]),
    (d.QUOTA, {"usage": (QuotaUsage("image_size_total", 100, 100_000),)}, ["ok"]),
    (d.QUOTA, {"usage": (QuotaUsage("image_stage_total", 0, 1000),)}, ["fail"]),
    (d.QUOTA, {"usage": (QuotaUsage("image_size_total", 0, 5000),)}, ["warn"]),
    (d.QUOTA, {"usage": (QuotaUsage("image_count_total", 95, 100),)}, ["warn"]),
    (d.QUOTA, {"usage": (QuotaUsage("image_count_total", 9, 10),)}, ["warn"]),
    (d.QUOTA, {"usage": (QuotaUsage("image_count_uploading", 3, 3),)}, ["fail"]),
    (d.QUOTA, {"usage": (QuotaUsage("image_count_uploading", 3, -1),)}, ["ok"]),
    (d.QUOTA, {"usage": ()}, ["skipped"]),
    (d.QUOTA, {"usage": None}, ["skipped"]),
    (d.QUOTA, {"usage": d.Unread("HTTP 500")}, ["warn"]),
    (d.LOCKS, {}, ["ok"]),
    (d.CINDER_API, {}, ["ok"]),
    (d.CINDER_API, {"cinder": CinderVersions("3.0", "3.0")}, ["warn"]),
    (d.CINDER_API, {"cinder": CinderVersions(None, None)}, ["warn"]),
    (d.FORCE_UPLOAD, {}, ["ok"]),
    (d.FORCE_UPLOAD, {"volumes": (volume("busy", status="in-use"),)}, ["warn"]),
    (d.FORCE_UPLOAD, {"identity": MEMBER}, ["skipped"]),
]


@pytest.mark.parametrize(
    ("check", "overrides", "expected"),
    CASES,
    ids=[f"{c}-{'-'.join(e)}-{n}" for n, (c, _, e) in enumerate(CASES)],
)
def test_each_check_on_its_facts(
    check: str, overrides: dict[str, Any], expected: list[str]
) -> None:
    found = rows(check, facts(**overrides))
    assert [r.status for r in found] == expected, found
    for row in found:
        assert row.check == check
        assert row.subject
        assert row.detail
        assert "\n" not in row.detail
        assert (row.fix is None) == (row.status == d.OK), row


def test_every_check_has_a_case_that_is_ok_and_one_that_is_not() -> None:
    ok = {c for c, _, e in CASES if e == ["ok"] * len(e)}
    not_ok = {c for c, _, e in CASES if set(e) - {"ok"}} | {d.LOCKS}  # locks: below
    assert ok == not_ok == set(d.CHECKS)


def test_a_wrong_type_store_names_the_type_the_store_and_the_command() -> None:
    (row,) = rows(d.TYPE_STORE, facts(volume_types=(VolumeTypeInfo("gold", store="nowhere"),)))
    assert row.subject == "gold"
    assert "image_service:store_id=nowhere" in row.detail
    assert "openstack volume type set --property image_service:store_id=STORE gold" in (
        row.fix or ""
    )
    assert "fast, cheap, archive" in (row.fix or "")  # writable stores only


def test_a_type_store_with_a_single_store_glance_has_no_effect() -> None:
    single = GlanceInfo(stores=(), import_methods=())
    (row,) = rows(d.TYPE_STORE, facts(glance=single))[1:]
    assert row.status == "warn"
    assert "ignores" in row.detail


def test_copy_image_disabled_names_the_setting() -> None:
    (row,) = rows(d.COPY_IMAGE, facts(glance=replace(GLANCE, import_methods=("web-download",))))
    assert row.subject == "enabled_import_methods"
    assert "glance-api.conf [DEFAULT] enabled_import_methods" in (row.fix or "")


def test_the_admin_ok_says_it_rests_on_glances_default_policy() -> None:
    (row,) = rows(d.POLICY, facts())
    assert "default copy_image rule" in row.detail
    assert "no API shows" in row.detail
    (member,) = rows(d.POLICY, facts(identity=MEMBER))
    assert "oslopolicy" in (member.fix or "")
    assert "policy.yaml" in (member.fix or "")


def test_the_edge_endpoint_is_told_which_endpoint_copies_everywhere() -> None:
    endpoints = (
        d.EndpointStores("Edge", "https://edge", ("fast",), current=True),
        d.EndpointStores("Central", "https://central", ("fast", "cheap", "archive")),
    )
    found = rows(d.ENDPOINTS, facts(endpoints=endpoints))
    assert [(r.subject.split()[1], r.status) for r in found] == [
        ("Edge", "warn"),
        ("Central", "ok"),
    ]
    assert "copies to archive, cheap must go through region Central" in found[0].detail
    assert "--os-region-name Central" in (found[0].fix or "")
    base = rows(
        d.BASE_STORES,
        facts(
            glance=GlanceInfo(stores=(Store("fast", is_default=True),), import_methods=()),
            endpoints=endpoints,
        ),
    )
    assert base[0].status == "warn"
    assert "cirros in cheap, archive" in base[0].detail
    assert "--os-region-name Central" in (base[0].fix or "")


def test_quota_sizes_are_measured_against_the_largest_volume() -> None:
    volumes = (volume("small"), volume("big", size=10))
    (row,) = rows(d.QUOTA, facts(volumes=volumes, usage=(QuotaUsage("image_size_total", 0, 9000),)))
    assert row.status == "fail"
    assert "largest volume (10 GiB) needs up to 10240 MiB" in row.detail


def test_base_images_gone_are_said_and_not_an_error() -> None:
    (row,) = rows(d.BASE_STORES, facts(base_images={}))
    assert row.status == "ok"
    assert "gone or not visible" in row.detail


# --- stale import locks: audit's rule ---------------------------------------------------------


def task(status: str, minutes_ago: float, task_id: str = "t1") -> ImportTask:
    moment = (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return ImportTask(task_id, status, "", None, created_at=moment, updated_at=moment)


LOCKED = Image(id="img-1", name="nightly", status="active", stores=("fast",), import_task="t1")

LOCK_CASES = [
    ("processing, fresh", (task("processing", 1),), False),
    ("processing, silent 10 minutes", (task("processing", 10),), True),
    ("pending, silent 90 minutes", (task("pending", 90),), True),
    ("succeeded, lock left", (task("success", 1),), True),
    ("task gone", (task("processing", 1, task_id="other"),), True),
    ("tasks unreadable", None, True),
]


@pytest.mark.parametrize(
    ("tasks", "stale"), [c[1:] for c in LOCK_CASES], ids=[c[0] for c in LOCK_CASES]
)
def test_a_lock_is_stale_by_audits_rule(tasks: tuple[ImportTask, ...] | None, stale: bool) -> None:
    assert d.lock_is_stale(LOCKED, tasks, NOW) is stale
    found = rows(d.LOCKS, facts(stamped=(LOCKED,), lock_tasks={LOCKED.id: tasks}))
    assert [r.status for r in found] == (["warn"] if stale else ["ok"])


@pytest.mark.parametrize(
    ("tasks", "stale"), [c[1:] for c in LOCK_CASES], ids=[c[0] for c in LOCK_CASES]
)
def test_audit_finds_the_same_locks_stale(
    tasks: tuple[ImportTask, ...] | None, stale: bool
) -> None:
    """The doctor's rule and audit's ``assess`` agree on every kind of lock."""
    from volimg.audit import IMPORTING, STALE_LOCK, _Cloud, assess
    from volimg.provenance import Rule, Stamp, StampedBy

    class Tasks:
        def image_tasks(self, image_id: str) -> list[ImportTask]:
            if tasks is None:
                from volimg.errors import CloudError

                raise CloudError("HTTP 500")
            return list(tasks)

    cloud = _Cloud(Tasks(), ADMIN, GLANCE, {})  # type: ignore[arg-type]
    stamp = Stamp(
        image_id=LOCKED.id,
        stamped_by=StampedBy.UPLOAD,
        stamped_at="2026-11-30T02:00:00Z",
        source_volume=None,
        base_image=None,
        type_store=None,
        rule=Rule.DEFAULT_STORE,
    )
    finding = assess(cloud, LOCKED, stamp, now=NOW)
    assert finding.finding == (STALE_LOCK if stale else IMPORTING)


def test_a_stale_lock_says_when_glance_lets_a_new_import_take_it_over() -> None:
    (row,) = rows(
        d.LOCKS, facts(stamped=(LOCKED,), lock_tasks={LOCKED.id: (task("processing", 10),)})
    )
    assert row.subject == "image nightly (img-1)"
    assert "refused (409) until 2026-12-01T02:50:00Z" in row.detail
    assert row.fix == "volimg audit --fix --image img-1, from 2026-12-01T02:50:00Z"


def test_locks_beyond_the_bound_are_counted_not_read() -> None:
    many = tuple(replace(LOCKED, id=f"img-{n}") for n in range(d.MAX_LOCK_TASK_READS + 3))
    examined = {i.id: (task("processing", 1),) for i in many[: d.MAX_LOCK_TASK_READS]}
    found = rows(d.LOCKS, facts(stamped=many, lock_tasks=examined))
    assert [r.status for r in found] == ["warn"]
    assert "3 more locked images not examined" in found[0].detail


# --- the report ------------------------------------------------------------------------------


def test_the_report_orders_rows_by_check_and_counts_every_status() -> None:
    report = d.diagnose(facts())
    assert [c.check for c in report.checks] == sorted(
        (c.check for c in report.checks), key=d.CHECKS.index
    )
    assert set(report.counts) == set(d.STATUSES)
    assert sum(report.counts.values()) == len(report.checks)


@pytest.mark.parametrize(
    ("overrides", "result", "code"),
    [
        ({}, "ok", 0),
        ({"identity": MEMBER, "volume_types": ()}, "warn", 0),
        ({"glance": replace(GLANCE, import_methods=())}, "fail", 3),
    ],
)
def test_result_and_exit_code(overrides: dict[str, Any], result: str, code: int) -> None:
    report = d.diagnose(facts(usage=(QuotaUsage("image_count_total", 1, -1),), **overrides))
    assert report.result == result
    assert report.exit_code == code
