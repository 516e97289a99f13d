"""The planning rules as a table: facts in, a Plan out. No cloud, no fakes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest

from volimg.errors import (
    ImportMethodDisabled,
    InputError,
    StoreNotUsable,
    UnsupportedMicroversion,
    VolumeNotUploadable,
)
from volimg.model import CloudIdentity, GlanceInfo, Image, Store, Volume, VolumeTypeInfo
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

BASE_ID = "11111111-2222-3333-4444-555555555555"
ADMIN = CloudIdentity(project_id="p1", roles=("admin", "member"))
MEMBER = CloudIdentity(project_id="p2", roles=("member", "reader"))
AT = datetime(2026, 11, 25, 13, 15, 2, tzinfo=timezone.utc)

THREE_STORES = GlanceInfo(
    stores=(
        Store("fast", "Fast", is_default=True),
        Store("cheap", "Cheap"),
        Store("archive", "Archive"),
    ),
    import_methods=("glance-direct", "web-download", "copy-image"),
)
WITH_READ_ONLY = GlanceInfo(
    stores=(*THREE_STORES.stores, Store("http", "HTTP", read_only=True)),
    import_methods=THREE_STORES.import_methods,
)
NO_COPY_IMAGE = GlanceInfo(stores=THREE_STORES.stores, import_methods=("glance-direct",))
SINGLE_STORE = GlanceInfo(stores=(), import_methods=("glance-direct",))

STANDARD = VolumeTypeInfo(name="standard")
PINNED = VolumeTypeInfo(name="pinned-archive", store="archive")
HIDDEN = VolumeTypeInfo(name="pinned-archive", specs_visible=False)


def volume(status: str = "available", from_image: bool = True, name: str = "boot-vol") -> Volume:
    metadata = {"image_id": BASE_ID, "image_name": "cirros-base"} if from_image else {}
    return Volume(
        id="vvvvvvvv-0000-0000-0000-000000000001",
        name=name,
        status=status,
        size=1,
        volume_type="standard",
        image_metadata=metadata,
    )


def base(*stores: str) -> Image:
    return Image(id=BASE_ID, name="cirros-base", status="active", stores=stores)


@dataclass
class Case:
    """One row: the facts, the options, and what the plan must say."""

    id: str
    vol: Volume = field(default_factory=volume)
    vtype: VolumeTypeInfo | None = STANDARD
    base_image: Image | None = field(default_factory=lambda: base("cheap", "archive"))
    glance: GlanceInfo = THREE_STORES
    identity: CloudIdentity = ADMIN
    options: dict[str, Any] = field(default_factory=dict)
    upload_store: str | None = "fast"
    replicate_to: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    prune_from: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=lambda: {"x-openstack-base-image-ref": BASE_ID})
    reason_mentions: tuple[str, ...] = ()


CASES = [
    Case(
        "base image stores: default store, then copy to cheap and archive",
        replicate_to=("cheap", "archive"),
        targets=("cheap", "archive"),
        reason_mentions=("Glance ignores it", "default store (fast)"),
    ),
    Case(
        "base image stores with --prune: the default store copy is removed afterwards",
        options={"prune": True},
        replicate_to=("cheap", "archive"),
        targets=("cheap", "archive"),
        prune_from=("fast",),
        reason_mentions=("never the last copy",),
    ),
    Case(
        "base image already in the default store: only the other store is copied",
        base_image=base("fast", "archive"),
        replicate_to=("archive",),
        targets=("fast", "archive"),
    ),
    Case(
        "the volume type's store wins and nothing is copied",
        vtype=PINNED,
        upload_store="archive",
        targets=("archive",),
        headers={"x-image-meta-store": "archive", "x-openstack-base-image-ref": BASE_ID},
        reason_mentions=("image_service:store_id=archive", "pass --replicate"),
    ),
    Case(
        "type store plus --replicate: also the base image's other stores",
        vtype=PINNED,
        options={"replicate": True},
        upload_store="archive",
        replicate_to=("cheap",),
        targets=("archive", "cheap"),
        headers={"x-image-meta-store": "archive", "x-openstack-base-image-ref": BASE_ID},
    ),
    Case(
        "type store plus --also-store",
        vtype=PINNED,
        options={"also_stores": ("fast",)},
        upload_store="archive",
        replicate_to=("fast",),
        targets=("archive", "fast"),
        headers={"x-image-meta-store": "archive", "x-openstack-base-image-ref": BASE_ID},
    ),
    Case(
        "not from an image: Glance's default store only",
        vol=volume(from_image=False, name="data-vol"),
        base_image=None,
        targets=("fast",),
        headers={},
        reason_mentions=("not created from an image",),
    ),
    Case(
        "base image deleted: say so and stay in the default store",
        base_image=None,
        targets=("fast",),
        reason_mentions=("no longer exists",),
    ),
    Case(
        "--no-replicate: the image stays where Glance puts it",
        options={"replicate": False},
        targets=("fast",),
        reason_mentions=("--no-replicate",),
    ),
    Case(
        "--no-replicate --also-store: only the named store is copied",
        options={"replicate": False, "also_stores": ("cheap",)},
        replicate_to=("cheap",),
        targets=("fast", "cheap"),
        reason_mentions=("only --also-store cheap is copied",),
    ),
    Case(
        "--also-store adds an explicit target",
        base_image=base("cheap"),
        options={"also_stores": ("archive",)},
        replicate_to=("cheap", "archive"),
        targets=("cheap", "archive"),
    ),
    Case(
        "a read-only store of the base image is never a copy target",
        glance=WITH_READ_ONLY,
        base_image=base("cheap", "http"),
        replicate_to=("cheap",),
        targets=("cheap",),
        reason_mentions=("read-only",),
    ),
    Case(
        "a base image store Glance no longer has is skipped",
        base_image=base("cheap", "gone-store"),
        replicate_to=("cheap",),
        targets=("cheap",),
        reason_mentions=("no longer has",),
    ),
    Case(
        "a member cannot see extra specs: assume no type store, check after upload",
        vtype=HIDDEN,
        identity=MEMBER,
        replicate_to=("cheap", "archive"),
        targets=("cheap", "archive"),
        reason_mentions=("hides extra specs",),
    ),
    Case(
        "single-store Glance: nothing to place",
        glance=SINGLE_STORE,
        upload_store=None,
        targets=(),
        reason_mentions=("no multiple stores",),
    ),
    Case(
        "in-use with --force",
        vol=volume(status="in-use", name="busy-vol"),
        options={"force": True},
        replicate_to=("cheap", "archive"),
        targets=("cheap", "archive"),
        reason_mentions=("enable_force_upload",),
    ),
    Case(
        "no volume type at all",
        vtype=None,
        replicate_to=("cheap", "archive"),
        targets=("cheap", "archive"),
        reason_mentions=("no volume type",),
    ),
]


def facts(case: Case, max_mv: str | None = "3.71"):
    return UploadFacts(
        volume=case.vol,
        volume_type=case.vtype,
        base_image=case.base_image,
        glance=case.glance,
        identity=case.identity,
        cinder_max_microversion=max_mv,
        requested_at=AT,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_plan_table(case: Case) -> None:
    plan = plan_upload(facts(case), UploadOptions(**case.options))

    assert plan.upload_store == case.upload_store
    assert plan.replicate_to == case.replicate_to
    assert plan.placement.target_stores == case.targets
    assert plan.prune_from == case.prune_from
    assert dict(plan.cinder_headers) == case.headers
    reasons = " | ".join(f"{d.topic}: {d.outcome}: {d.reason}" for d in plan.decisions)
    for phrase in case.reason_mentions:
        assert phrase in reasons
    # every decision carries a one-line reason
    assert all(d.reason and "\n" not in d.reason for d in plan.decisions)


@dataclass
class Refusal:
    id: str
    error: type[Exception]
    mentions: str
    vol: Volume = field(default_factory=volume)
    vtype: VolumeTypeInfo | None = STANDARD
    glance: GlanceInfo = THREE_STORES
    options: dict[str, Any] = field(default_factory=dict)
    max_mv: str | None = "3.71"


REFUSALS = [
    Refusal("in-use without --force", VolumeNotUploadable, "--force", vol=volume("in-use")),
    Refusal("error status", VolumeNotUploadable, "'error'", vol=volume("error")),
    Refusal("already uploading", VolumeNotUploadable, "'uploading'", vol=volume("uploading")),
    Refusal(
        "unknown --also-store",
        StoreNotUsable,
        "no store 'nope'",
        options={"also_stores": ("nope",)},
    ),
    Refusal(
        "read-only --also-store",
        StoreNotUsable,
        "read-only",
        glance=WITH_READ_ONLY,
        options={"also_stores": ("http",)},
    ),
    Refusal("copy-image disabled", ImportMethodDisabled, "--no-replicate", glance=NO_COPY_IMAGE),
    Refusal(
        "--visibility on a pre-3.1 Cinder",
        UnsupportedMicroversion,
        "3.1",
        options={"visibility": "shared"},
        max_mv="3.0",
    ),
    Refusal(
        "an error volume needs an admin's reset, not a wait",
        VolumeNotUploadable,
        "openstack volume set --state available",
        vol=volume("error"),
    ),
    Refusal(
        "type store unknown to Glance",
        InputError,
        "no such store",
        vtype=VolumeTypeInfo(name="bad", store="nowhere"),
    ),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.id)
def test_plan_refuses_before_anything_changes(refusal: Refusal) -> None:
    case = Case("x", vol=refusal.vol, vtype=refusal.vtype, glance=refusal.glance)
    with pytest.raises(refusal.error) as info:
        plan_upload(facts(case, refusal.max_mv), UploadOptions(**refusal.options))
    assert refusal.mentions in info.value.message + (info.value.hint or "")  # type: ignore[attr-defined]


def test_copy_image_disabled_is_fine_when_nothing_needs_copying() -> None:
    case = Case("x", glance=NO_COPY_IMAGE, options={"replicate": False})
    plan = plan_upload(facts(case), UploadOptions(replicate=False))
    assert plan.replicate_to == ()


def test_upload_request_microversion() -> None:
    plain = plan_upload(facts(Case("x")), UploadOptions())
    assert plain.upload.microversion == "3.0"
    with_visibility = plan_upload(facts(Case("x")), UploadOptions(visibility="shared"))
    assert with_visibility.upload.microversion == "3.1"


def test_default_image_name_is_volume_and_utc_time() -> None:
    assert default_image_name(volume(), AT) == "boot-vol-20261125T131502Z"
    unnamed = Volume(id="abc", name="", status="available", size=1, volume_type=None)
    assert default_image_name(unnamed, AT) == "abc-20261125T131502Z"
    assert (
        plan_upload(facts(Case("x")), UploadOptions(image_name="mine")).upload.image_name == "mine"
    )


def test_placement_is_judged_by_the_real_stores() -> None:
    placement = Placement(target_stores=("cheap", "archive"), prune=True)
    landed = ("fast", "cheap")
    assert placement.missing_from(landed) == ("archive",)
    assert placement.extra_in(landed) == ("fast",)
    assert placement.expected_after(landed) == ("cheap", "archive")
    keep = Placement(target_stores=("cheap", "archive"))
    assert keep.expected_after(landed) == ("fast", "cheap", "archive")


def test_plan_says_where_the_image_ends_up() -> None:
    assert plan_upload(facts(Case("x")), UploadOptions()).expected_stores == (
        "fast",
        "cheap",
        "archive",
    )
    pruned = plan_upload(facts(Case("x")), UploadOptions(prune=True))
    assert pruned.expected_stores == ("cheap", "archive")


@pytest.mark.parametrize(
    ("options", "targets"),
    [
        ({}, ("archive",)),
        ({"replicate": True}, ("archive", "cheap")),
        ({"also_stores": ("fast",)}, ("archive", "fast")),
    ],
)
def test_a_member_replans_when_the_upload_lands_in_the_hidden_type_store(
    options: dict[str, Any], targets: tuple[str, ...]
) -> None:
    case = Case("x", vtype=HIDDEN, identity=MEMBER)
    first = plan_upload(facts(case), UploadOptions(**options))
    assert first.upload_store == "fast"
    assert "archive" in first.replicate_to or "cheap" in first.replicate_to

    again = replan_after_landing(first, ("archive",))

    assert again is not None
    assert again.upload_store == "archive"
    assert again.placement.target_stores == targets
    assert again.facts.volume_type is not None
    assert again.facts.volume_type.store_learned
    reasons = " ".join(d.reason for d in again.decisions)
    assert "learned after the upload" in reasons


def test_nothing_is_learned_when_the_upload_lands_where_planned() -> None:
    hidden = plan_upload(facts(Case("x", vtype=HIDDEN, identity=MEMBER)), UploadOptions())
    assert replan_after_landing(hidden, ("fast",)) is None
    visible = plan_upload(facts(Case("x")), UploadOptions())
    assert replan_after_landing(visible, ("archive",)) is None


def test_single_store_glance_ignores_the_type_store() -> None:
    case = Case("x", vtype=VolumeTypeInfo(name="t", store="nowhere"), glance=SINGLE_STORE)
    plan = plan_upload(facts(case), UploadOptions())
    assert plan.upload_store is None
    assert plan.replicate_to == ()


# --- volimg replicate ---------------------------------------------------------------

NEW = Image(id="new", name="boot-vol-x", status="active", stores=("fast",))


def replication(
    image: Image = NEW, like: Image | None = None, glance: GlanceInfo = THREE_STORES, **options: Any
):
    return plan_replication(
        ReplicationFacts(image=image, like=like, glance=glance, identity=ADMIN),
        ReplicationOptions(**options),
    )


def test_replicate_waits_for_an_image_still_being_uploaded() -> None:
    plan = replication(image=Image(id="q", name="q", status="queued"), stores=("cheap",))
    assert plan.replicate_to == ("cheap",)
    assert any(d.outcome == "not active yet" for d in plan.decisions)


def test_replicate_like_base_image() -> None:
    plan = replication(like=base("cheap", "archive"), prune=True)
    assert plan.replicate_to == ("cheap", "archive")
    assert plan.prune_from == ("fast",)


def test_replicate_to_named_stores_already_present() -> None:
    plan = replication(stores=("fast", "cheap"))
    assert plan.replicate_to == ("cheap",)
    assert any(d.topic == "already present" for d in plan.decisions)


@pytest.mark.parametrize(
    ("kwargs", "mentions"),
    [
        ({}, "--like"),
        ({"image": Image(id="k", name="k", status="killed"), "stores": ("cheap",)}, "active"),
        ({"stores": ("nope",)}, "no store 'nope'"),
        ({"like": base("http"), "glance": WITH_READ_ONLY}, "no store that can receive"),
        ({"stores": ("cheap",), "glance": SINGLE_STORE}, "no multiple stores"),
        ({"stores": ("cheap",), "glance": NO_COPY_IMAGE}, "copy-image"),
    ],
)
def test_replicate_refusals(kwargs: dict[str, Any], mentions: str) -> None:
    with pytest.raises(InputError) as info:
        replication(**kwargs)
    assert mentions in info.value.message


def test_an_error_volume_is_not_told_to_wait() -> None:
    with pytest.raises(VolumeNotUploadable) as info:
        plan_upload(facts(Case("x", vol=volume("error"))), UploadOptions())
    assert "wait" not in (info.value.hint or "")
    assert "admin" in (info.value.hint or "")
    assert "reset-state" in (info.value.hint or "")


def test_a_taken_image_name_is_warned_about() -> None:
    taken = UploadFacts(
        volume=volume(),
        volume_type=STANDARD,
        base_image=base("cheap"),
        glance=THREE_STORES,
        identity=ADMIN,
        requested_at=AT,
        same_name_images=("img-1",),
    )
    plan = plan_upload(taken, UploadOptions(image_name="golden"))
    (warning,) = [d for d in plan.decisions if d.topic == "image name"]
    assert warning.outcome == "already taken"
    assert "'golden'" in warning.reason
    assert "img-1" in warning.reason
    free = plan_upload(facts(Case("x")), UploadOptions(image_name="golden"))
    assert not [d for d in free.decisions if d.topic == "image name"]


@pytest.mark.parametrize(
    ("options", "outcomes"),
    [
        ({}, ["copy may be refused"]),
        ({"prune": True}, ["copy may be refused", "--prune may be refused"]),
        (
            {"visibility": "public", "replicate": False},
            ["--visibility public may be refused"],
        ),
        ({"visibility": "shared", "replicate": False}, []),
    ],
)
def test_a_member_is_warned_of_every_admin_only_step(
    options: dict[str, Any], outcomes: list[str]
) -> None:
    member = plan_upload(facts(Case("x", identity=MEMBER)), UploadOptions(**options))
    assert [d.outcome for d in member.decisions if d.topic == "permission"] == outcomes
    admin = plan_upload(facts(Case("x")), UploadOptions(**options))
    assert [d for d in admin.decisions if d.topic == "permission"] == []


def test_a_member_replicating_is_warned_about_copy_and_prune() -> None:
    plan = plan_replication(
        ReplicationFacts(image=NEW, like=None, glance=THREE_STORES, identity=MEMBER),
        ReplicationOptions(stores=("cheap",), prune=True),
    )
    assert [d.outcome for d in plan.decisions if d.topic == "permission"] == [
        "copy may be refused",
        "--prune may be refused",
    ]


def test_a_read_only_store_that_holds_the_image_is_already_present() -> None:
    held = Image(id="new", name="x", status="active", stores=("fast", "http"))
    named = replication(image=held, glance=WITH_READ_ONLY, stores=("http",))
    assert named.replicate_to == ()
    assert named.placement.target_stores == ("http",)
    liked = replication(image=held, glance=WITH_READ_ONLY, like=base("cheap", "http"))
    assert liked.replicate_to == ("cheap",)
    assert liked.placement.target_stores == ("cheap", "http")
    with pytest.raises(StoreNotUsable):
        replication(glance=WITH_READ_ONLY, stores=("http",))  # not there: still refused


def test_a_nameless_volume_is_named_by_its_id_and_a_spaced_name_is_quoted() -> None:
    nameless = volume(name="")
    assert nameless.label == nameless.id
    assert volume(name="my vol").label == "'my vol'"
    assert default_image_name(volume(name="my vol"), AT) == "my vol-20261125T131502Z"
    assert default_image_name(nameless, AT) == f"{nameless.id}-20261125T131502Z"
