"""Every decision a plan shows, in order, and what the plan passes on to the steps.

tests/unit/test_planner.py checks where each case's image goes and a phrase of its
reasons; these pin what it left open (each was a surviving mutant of the ``planner``
mutation target, docs/testing.md): the topic and outcome of every decision ``volimg
plan`` prints, that every refusal says what to do next, that the upload request
carries the operator's options, the microversion boundary, a resumed upload, and the
replication plan's options, prune set and expected stores.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.unit.test_planner import (
    ADMIN,
    AT,
    BASE_ID,
    CASES,
    HIDDEN,
    MEMBER,
    NEW,
    NO_COPY_IMAGE,
    REFUSALS,
    SINGLE_STORE,
    STANDARD,
    THREE_STORES,
    WITH_READ_ONLY,
    Case,
    base,
    facts,
    replication,
    volume,
)
from tests.unit.test_planner import (
    PINNED as PINNED_TYPE,
)
from volimg.errors import InputError, VolimgError
from volimg.model import Image
from volimg.planner import (
    Placement,
    ReplicationFacts,
    ReplicationOptions,
    UploadFacts,
    UploadOptions,
    default_image_name,
    plan_replication,
    plan_upload,
    replan_after_landing,
)
from volimg.provenance import Rule

START = [("volume", "uploadable"), ("volume type store", "none"), ("upload store", "fast")]
FROM_BASE = [("base image", BASE_ID)]
PINNED = [("volume", "uploadable"), ("volume type store", "archive"), ("upload store", "archive")]

# What `volimg plan` shows for each case of test_planner.CASES: (topic, outcome), in order.
DECISIONS: dict[str, list[tuple[str, str]]] = {
    "base image stores: default store, then copy to cheap and archive": [
        *START,
        *FROM_BASE,
        ("follow base image stores", "yes"),
        ("replicate", "cheap, archive"),
    ],
    "base image stores with --prune: the default store copy is removed afterwards": [
        *START,
        *FROM_BASE,
        ("follow base image stores", "yes"),
        ("prune", "fast"),
        ("replicate", "cheap, archive"),
    ],
    "base image already in the default store: only the other store is copied": [
        *START,
        *FROM_BASE,
        ("follow base image stores", "yes"),
        ("replicate", "archive"),
    ],
    "the volume type's store wins and nothing is copied": [
        *PINNED,
        *FROM_BASE,
        ("follow base image stores", "no"),
        ("replicate", "nothing"),
    ],
    "type store plus --replicate: also the base image's other stores": [
        *PINNED,
        *FROM_BASE,
        ("follow base image stores", "yes"),
        ("replicate", "cheap"),
    ],
    "type store plus --also-store": [
        *PINNED,
        *FROM_BASE,
        ("follow base image stores", "no"),
        ("store fast", "copy"),
        ("replicate", "fast"),
    ],
    "not from an image: Glance's default store only": [
        *START,
        ("base image", "none"),
        ("replicate", "nothing"),
    ],
    "base image deleted: say so and stay in the default store": [
        *START,
        ("base image", "gone"),
        ("replicate", "nothing"),
    ],
    "--no-replicate: the image stays where Glance puts it": [
        *START,
        *FROM_BASE,
        ("follow base image stores", "no"),
        ("replicate", "nothing"),
    ],
    "--no-replicate --also-store: only the named store is copied": [
        *START,
        *FROM_BASE,
        ("follow base image stores", "no"),
        ("store cheap", "copy"),
        ("replicate", "cheap"),
    ],
    "--also-store adds an explicit target": [
        *START,
        *FROM_BASE,
        ("follow base image stores", "yes"),
        ("store archive", "copy"),
        ("replicate", "cheap, archive"),
    ],
    "a read-only store of the base image is never a copy target": [
        *START,
        *FROM_BASE,
        ("store http", "skipped"),
        ("follow base image stores", "yes"),
        ("replicate", "cheap"),
    ],
    "a base image store Glance no longer has is skipped": [
        *START,
        *FROM_BASE,
        ("store gone-store", "skipped"),
        ("follow base image stores", "yes"),
        ("replicate", "cheap"),
    ],
    "a member cannot see extra specs: assume no type store, check after upload": [
        ("volume", "uploadable"),
        ("volume type store", "unknown"),
        ("upload store", "fast"),
        *FROM_BASE,
        ("follow base image stores", "yes"),
        ("permission", "copy may be refused"),
        ("replicate", "cheap, archive"),
    ],
    "single-store Glance: nothing to place": [
        ("volume", "uploadable"),
        ("volume type store", "none"),
        ("upload store", "the only store"),
        *FROM_BASE,
        ("replicate", "nothing"),
    ],
    "in-use with --force": [
        ("volume", "uploadable (forced)"),
        ("volume type store", "none"),
        ("upload store", "fast"),
        *FROM_BASE,
        ("follow base image stores", "yes"),
        ("replicate", "cheap, archive"),
    ],
    "no volume type at all": [
        *START,
        *FROM_BASE,
        ("follow base image stores", "yes"),
        ("replicate", "cheap, archive"),
    ],
}


def test_every_case_has_its_decisions_here() -> None:
    assert sorted(DECISIONS) == sorted(case.id for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_plan_shows_each_decision_it_made_in_order(case: Case) -> None:
    plan = plan_upload(facts(case), UploadOptions(**case.options))
    assert [(d.topic, d.outcome) for d in plan.decisions] == DECISIONS[case.id]
    assert all(isinstance(d.reason, str) and d.reason for d in plan.decisions)


def test_the_reasons_name_the_images_and_stores_they_are_about() -> None:
    plan = plan_upload(facts(Case("x")), UploadOptions())
    reasons = {d.topic: d.reason for d in plan.decisions}
    assert "made from cirros-base, which is in cheap, archive" in reasons["base image"]
    assert "default store (fast)" in reasons["upload store"]
    nameless = replace(base("cheap"), name="")
    plan = plan_upload(facts(Case("x", base_image=nameless)), UploadOptions())
    assert f"made from {BASE_ID}, which is in cheap" in plan.decisions[3].reason


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.id)
def test_every_refusal_of_an_upload_says_what_to_do_next(refusal: Any) -> None:
    case = Case("x", vol=refusal.vol, vtype=refusal.vtype, glance=refusal.glance)
    with pytest.raises(VolimgError) as info:
        plan_upload(facts(case, refusal.max_mv), UploadOptions(**refusal.options))
    assert info.value.hint


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"image": Image(id="k", name="k", status="killed"), "stores": ("cheap",)},
        {"stores": ("nope",)},
        {"like": base("http"), "glance": WITH_READ_ONLY},
        {"stores": ("http",), "glance": WITH_READ_ONLY},
        {"stores": ("cheap",), "glance": NO_COPY_IMAGE},
    ],
)
def test_every_refusal_of_a_replication_says_what_to_do_next(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InputError) as info:
        replication(**kwargs)
    assert info.value.hint


def test_the_refusals_name_the_store_and_the_stores_there_are() -> None:
    with pytest.raises(InputError) as info:
        plan_upload(facts(Case("x")), UploadOptions(also_stores=("nope",)))
    assert (
        info.value.message
    ) == "--also-store nope: Glance has no store 'nope' (stores: fast, cheap, archive)"
    with pytest.raises(InputError) as info:
        replication(stores=("cheap",), glance=SINGLE_STORE)
    assert "nowhere to copy to" in info.value.message
    with pytest.raises(InputError) as info:
        plan_upload(facts(Case("x", glance=NO_COPY_IMAGE)), UploadOptions())
    assert "(enabled: glance-direct)" in info.value.message
    assert "copied to cheap, archive" in info.value.message


# --- what the plan hands to the steps --------------------------------------------------------


def test_the_upload_request_carries_the_operators_options() -> None:
    options = UploadOptions(
        image_name="golden",
        force=True,
        disk_format="qcow2",
        container_format="bare",
        visibility="shared",
        protected=True,
    )
    plan = plan_upload(facts(Case("x", vol=volume("in-use"))), options)
    request = plan.upload
    assert (request.image_name, request.force, request.disk_format) == ("golden", True, "qcow2")
    assert (request.container_format, request.visibility, request.protected) == (
        "bare",
        "shared",
        True,
    )
    assert request.microversion == "3.1"


@pytest.mark.parametrize(("max_mv", "allowed"), [("3.1", True), ("3.0", False), (None, True)])
def test_visibility_needs_exactly_cinder_3_1(max_mv: str | None, allowed: bool) -> None:
    def plan() -> Any:
        return plan_upload(facts(Case("x"), max_mv), UploadOptions(protected=False))

    if allowed:
        assert plan().upload.protected is False
    else:
        with pytest.raises(InputError, match=r"3\.1"):
            plan()


def test_a_resumed_upload_is_planned_whatever_the_volume_status() -> None:
    earlier = Image(id="img-0", name="boot-vol-x", status="saving", stores=("fast",))
    resumed = UploadFacts(
        volume=volume("uploading"),
        volume_type=STANDARD,
        base_image=base("cheap"),
        glance=THREE_STORES,
        identity=ADMIN,
        requested_at=AT,
        resuming=earlier,
    )
    plan = plan_upload(resumed, UploadOptions())
    assert plan.decisions[0].topic == "volume"
    assert plan.decisions[0].outcome == "resumed"
    assert "img-0 (saving)" in plan.decisions[0].reason
    assert plan.replicate_to == ("cheap",)


# --- volimg replicate ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "decisions", "prune_from", "expected"),
    [
        pytest.param(
            {"like": base("cheap", "archive"), "prune": True},
            [("follow", "cirros-base"), ("replicate", "cheap, archive"), ("prune", "fast")],
            ("fast",),
            ("cheap", "archive"),
            id="like-with-prune",
        ),
        pytest.param(
            {"like": base("cheap", "archive")},
            [("follow", "cirros-base"), ("replicate", "cheap, archive")],
            (),
            ("fast", "cheap", "archive"),
            id="like-without-prune",
        ),
        pytest.param(
            {"stores": ("fast", "cheap")},
            [("already present", "fast"), ("replicate", "cheap")],
            (),
            ("fast", "cheap"),
            id="named-one-already-present",
        ),
        pytest.param(
            {"stores": ("fast",), "prune": True},
            [("already present", "fast"), ("replicate", "nothing"), ("prune", "nothing")],
            (),
            ("fast",),
            id="nothing-to-do",
        ),
        pytest.param(
            {"image": Image(id="q", name="q", status="queued"), "stores": ("cheap",)},
            [("image", "not active yet"), ("replicate", "cheap")],
            (),
            ("cheap",),
            id="still-uploading",
        ),
        pytest.param(
            {"like": base("cheap", "http"), "glance": WITH_READ_ONLY},
            [("follow", "cirros-base"), ("store http", "skipped"), ("replicate", "cheap")],
            (),
            ("fast", "cheap"),
            id="like-with-a-read-only-store",
        ),
        pytest.param(
            {
                "image": replace(NEW, stores=("fast", "archive")),
                "like": Image(id="b2", name="", status="active", stores=("cheap",)),
                "stores": ("fast",),
                "prune": True,
            },
            [
                ("follow", "b2"),
                ("already present", "fast"),
                ("replicate", "cheap"),
                ("prune", "archive"),
            ],
            ("archive",),
            ("fast", "cheap"),
            id="nameless-like-and-a-store",
        ),
    ],
)
def test_a_replication_plan_shows_each_decision_and_where_the_image_ends_up(
    kwargs: dict[str, Any],
    decisions: list[tuple[str, str]],
    prune_from: tuple[str, ...],
    expected: tuple[str, ...],
) -> None:
    plan = replication(**kwargs)
    assert [(d.topic, d.outcome) for d in plan.decisions] == decisions
    assert all(isinstance(d.reason, str) and d.reason for d in plan.decisions)
    assert plan.prune_from == prune_from
    assert plan.expected_stores == expected


def test_a_replication_plan_keeps_the_operators_options() -> None:
    options = ReplicationOptions(stores=("cheap",), prune=True, all_stores_must_succeed=True)
    plan = plan_replication(
        ReplicationFacts(image=NEW, like=None, glance=THREE_STORES, identity=ADMIN), options
    )
    assert plan.options is options
    assert plan.placement == Placement(
        target_stores=("cheap",), prune=True, all_stores_must_succeed=True
    )


def test_a_member_replicating_without_prune_is_warned_about_the_copy_only() -> None:
    held = replace(NEW, stores=("fast", "archive"))
    plan = plan_replication(
        ReplicationFacts(image=held, like=None, glance=THREE_STORES, identity=MEMBER),
        ReplicationOptions(stores=("cheap",)),
    )
    assert [d.outcome for d in plan.decisions if d.topic == "permission"] == ["copy may be refused"]
    assert plan.prune_from == ()


# --- a placement ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("placement", "stores", "done"),
    [
        (Placement(target_stores=("cheap",)), ("fast", "cheap"), True),
        (Placement(target_stores=("cheap",)), ("fast",), False),
        (Placement(target_stores=("cheap",), prune=True), ("fast", "cheap"), False),
        (Placement(target_stores=("cheap",), prune=True), ("cheap",), True),
        (Placement(target_stores=("cheap",), replicate=False), ("fast",), True),
        (Placement(target_stores=("cheap",), replicate=False, prune=True), ("fast",), False),
    ],
)
def test_a_placement_is_done_when_nothing_is_left_to_copy_or_remove(
    placement: Placement, stores: tuple[str, ...], done: bool
) -> None:
    assert placement.done_in(stores) is done


# --- what the stamp records of the plan ---------------------------------------------------

TYPE, BASE, DEFAULT = Rule.TYPE_STORE, Rule.BASE_STORES, Rule.DEFAULT_STORE
# The placement rule each case's stamp records (volimg_rule), and its type store.
RULES: dict[str, tuple[Rule, str | None]] = {
    "base image stores: default store, then copy to cheap and archive": (BASE, None),
    "base image stores with --prune: the default store copy is removed afterwards": (BASE, None),
    "base image already in the default store: only the other store is copied": (BASE, None),
    "the volume type's store wins and nothing is copied": (TYPE, "archive"),
    "type store plus --replicate: also the base image's other stores": (TYPE, "archive"),
    "type store plus --also-store": (TYPE, "archive"),
    "not from an image: Glance's default store only": (DEFAULT, None),
    "base image deleted: say so and stay in the default store": (DEFAULT, None),
    "--no-replicate: the image stays where Glance puts it": (DEFAULT, None),
    "--no-replicate --also-store: only the named store is copied": (DEFAULT, None),
    "--also-store adds an explicit target": (BASE, None),
    "a read-only store of the base image is never a copy target": (BASE, None),
    "a base image store Glance no longer has is skipped": (BASE, None),
    "a member cannot see extra specs: assume no type store, check after upload": (BASE, None),
    "single-store Glance: nothing to place": (DEFAULT, None),
    "in-use with --force": (BASE, None),
    "no volume type at all": (BASE, None),
}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_plan_names_the_rule_and_type_store_its_stamp_records(case: Case) -> None:
    plan = plan_upload(facts(case), UploadOptions(**case.options))
    assert (plan.rule, plan.volume_type_store) == RULES[case.id]


def test_all_stores_must_succeed_reaches_the_upload_plans_placement() -> None:
    plan = plan_upload(facts(Case("x")), UploadOptions(all_stores_must_succeed=True))
    assert plan.placement.all_stores_must_succeed is True
    assert plan_upload(facts(Case("x")), UploadOptions()).placement.all_stores_must_succeed is False


def test_no_replicate_copies_nothing_wherever_the_upload_lands() -> None:
    plan = plan_upload(facts(Case("x")), UploadOptions(replicate=False))
    assert plan.placement.replicate is False
    assert plan.placement.missing_from(("archive",)) == ()
    single = plan_upload(facts(Case("x", glance=SINGLE_STORE)), UploadOptions())
    assert single.placement.replicate is False
    assert (single.landing, single.expected_stores) == ((), ())


def test_an_also_store_the_upload_lands_in_is_kept_not_copied() -> None:
    plan = plan_upload(facts(Case("x")), UploadOptions(also_stores=("fast",)))
    assert ("store fast", "keep") in [(d.topic, d.outcome) for d in plan.decisions]
    assert all(isinstance(d.reason, str) and d.reason for d in plan.decisions)
    assert plan.replicate_to == ("cheap", "archive")


def test_a_learned_type_store_is_shown_and_learned_once() -> None:
    first = plan_upload(facts(Case("x", vtype=HIDDEN, identity=MEMBER)), UploadOptions())
    again = replan_after_landing(first, ("archive",))
    assert again is not None
    assert ("volume type store", "archive") in [(d.topic, d.outcome) for d in again.decisions]
    assert again.facts.volume_type is not None
    assert again.facts.volume_type.specs_visible is True
    assert (again.rule, again.volume_type_store) == (Rule.TYPE_STORE, "archive")
    assert replan_after_landing(again, ("cheap",)) is None


@pytest.mark.parametrize(
    "options", [{"visibility": "public", "replicate": False}, {"prune": True}], ids=str
)
def test_every_permission_warning_gives_its_reason(options: dict[str, Any]) -> None:
    member = plan_upload(facts(Case("x", identity=MEMBER)), UploadOptions(**options))
    warnings = [d for d in member.decisions if d.topic == "permission"]
    assert warnings
    assert all(isinstance(d.reason, str) and "admin" in d.reason for d in warnings)


def test_the_default_image_name_is_utc_whatever_the_machines_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert default_image_name(volume(), AT) == "boot-vol-20261125T131502Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_an_outcome_names_every_store_it_is_about() -> None:
    held = replace(NEW, stores=("fast", "cheap"))
    plan = replication(image=held, stores=("fast", "cheap", "archive"))
    assert ("already present", "fast, cheap") in [(d.topic, d.outcome) for d in plan.decisions]
    plan = replication(image=held, stores=("archive",), prune=True)
    assert ("prune", "fast, cheap") in [(d.topic, d.outcome) for d in plan.decisions]


def test_an_outcome_says_so_when_there_is_nothing_or_no_default_store() -> None:
    pinned = plan_upload(facts(Case("x", vtype=PINNED_TYPE)), UploadOptions(prune=True))
    assert ("prune", "nothing") in [(d.topic, d.outcome) for d in pinned.decisions]
    no_default = replace(
        THREE_STORES, stores=tuple(replace(s, is_default=False) for s in THREE_STORES.stores)
    )
    plan = plan_upload(facts(Case("x", glance=no_default)), UploadOptions())
    assert ("upload store", "default") in [(d.topic, d.outcome) for d in plan.decisions]
    assert all(d.reason for d in plan.decisions)


# --- the new image's name: the default, a suffixed default, and the warnings first --------


def test_without_name_the_upload_requests_the_default_name() -> None:
    plan = plan_upload(facts(Case("x")), UploadOptions())
    assert plan.upload.image_name == "boot-vol-20261125T131502Z"
    assert not [d for d in plan.decisions if d.topic == "image name"]


def test_a_taken_default_name_is_suffixed_and_the_plan_says_so() -> None:
    """Two uploads of one volume in the same second: the second is named ``...-2``."""
    suffixed = replace(facts(Case("x")), default_name="boot-vol-20261125T131502Z-2")

    plan = plan_upload(suffixed, UploadOptions())

    assert plan.upload.image_name == "boot-vol-20261125T131502Z-2"
    (decision,) = [d for d in plan.decisions if d.topic == "image name"]
    assert decision.outcome == "suffixed"
    assert "'boot-vol-20261125T131502Z'" in decision.reason  # the plain default, taken
    assert "'boot-vol-20261125T131502Z-2'" in decision.reason  # the new image's name
    assert plan.warnings == (decision,)


def test_a_name_given_with_name_is_kept_and_not_called_suffixed() -> None:
    given = replace(facts(Case("x")), default_name="boot-vol-20261125T131502Z-2")

    plan = plan_upload(given, UploadOptions(image_name="golden"))

    assert plan.upload.image_name == "golden"
    assert not [d for d in plan.decisions if d.topic == "image name"]


def test_the_warnings_upload_shows_first_are_the_taken_name_and_the_permissions() -> None:
    taken = replace(facts(Case("x", identity=MEMBER)), same_name_images=("img-1",))

    plan = plan_upload(taken, UploadOptions(image_name="golden", prune=True))

    assert [(d.topic, d.outcome) for d in plan.warnings] == [
        (d.topic, d.outcome) for d in plan.decisions if d.topic in ("image name", "permission")
    ]
    assert {d.topic for d in plan.warnings} == {"image name", "permission"}
    quiet = plan_upload(facts(Case("x")), UploadOptions())
    assert quiet.warnings == ()
