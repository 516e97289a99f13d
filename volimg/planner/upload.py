"""Planning ``volimg upload``: where the new image goes and how it gets there.

Facts about the volume, its type, its base image and Glance in, a ``Plan`` out: the
os-volume_upload_image request, the headers Cinder sends Glance, the store the upload
lands in, and the copies (and, with ``--prune``, removals) that complete the
placement. The rules are the package's (``volimg.planner``): the volume type's store
wins, else the base image's stores, else Glance's default store.
``replan_after_landing`` plans again when the upload lands where only a volume type
store Cinder hid from the caller can have put it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from types import MappingProxyType

from volimg.errors import InputError, UnsupportedMicroversion, VolumeNotUploadable
from volimg.model import CloudIdentity, GlanceInfo, Image, Volume, VolumeTypeInfo, version_tuple
from volimg.planner.placement import (
    Decision,
    Placement,
    check_copy_image,
    explicit_stores,
    member_warnings,
    unique,
    usable_stores,
)
from volimg.provenance import Rule

# Cinder's os-volume_upload_image takes visibility and protected only from 3.1
# (cinder/api/contrib/volume_actions.py, mv.UPLOAD_IMAGE_PARAMS).
UPLOAD_PARAMS_MICROVERSION = "3.1"
BASE_MICROVERSION = "3.0"


@dataclass(frozen=True, kw_only=True)
class UploadRequest:
    """The body volimg sends with os-volume_upload_image, and at which microversion."""

    image_name: str
    force: bool = False
    disk_format: str | None = None
    container_format: str | None = None
    visibility: str | None = None
    protected: bool | None = None

    @property
    def microversion(self) -> str:
        if self.visibility is not None or self.protected is not None:
            return UPLOAD_PARAMS_MICROVERSION
        return BASE_MICROVERSION


@dataclass(frozen=True, kw_only=True)
class UploadOptions:
    """What the operator asked for; ``None`` means "as planned" / "Cinder's default"."""

    image_name: str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    visibility: str | None = None
    protected: bool | None = None
    force: bool = False
    replicate: bool | None = None
    also_stores: tuple[str, ...] = ()
    prune: bool = False
    all_stores_must_succeed: bool = False
    allow_duplicate_name: bool = False  # upload refuses a taken name without it


@dataclass(frozen=True, kw_only=True)
class UploadFacts:
    """Everything the gateway found out before anything is changed."""

    volume: Volume
    volume_type: VolumeTypeInfo | None
    base_image: Image | None
    glance: GlanceInfo
    identity: CloudIdentity
    requested_at: datetime
    cinder_max_microversion: str | None = None
    # An image an earlier run's upload made (found by its stamp or name): the plan is
    # for finishing that upload, so a volume still 'uploading' for it is expected.
    resuming: Image | None = None
    # IDs of the images visible to you that already carry the new image's name.
    same_name_images: tuple[str, ...] = ()
    # The default name with a suffix (``-2``, ...) when the plain one was taken (two
    # uploads of one volume in the same second); None: the plain default.
    default_name: str | None = None

    @property
    def base_image_missing(self) -> bool:
        return self.volume.base_image_id is not None and self.base_image is None


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What ``volimg upload`` will do, printed in full by ``plan`` and ``--dry-run``."""

    facts: UploadFacts
    options: UploadOptions
    upload: UploadRequest
    volume_type_store: str | None
    upload_store: str | None  # where Glance will put the upload (None: single store)
    placement: Placement
    cinder_headers: Mapping[str, str]
    decisions: tuple[Decision, ...]
    rule: Rule  # which placement rule decided (recorded in the provenance stamp)

    @property
    def volume(self) -> Volume:
        return self.facts.volume

    @property
    def base_image(self) -> Image | None:
        return self.facts.base_image

    @property
    def landing(self) -> tuple[str, ...]:
        return (self.upload_store,) if self.upload_store else ()

    @property
    def replicate_to(self) -> tuple[str, ...]:
        """Expected copies; rechecked against the image's real stores after the upload."""
        return self.placement.missing_from(self.landing)

    @property
    def prune_from(self) -> tuple[str, ...]:
        return self.placement.extra_in(self.landing) if self.placement.prune else ()

    @property
    def expected_stores(self) -> tuple[str, ...]:
        return self.placement.expected_after(self.landing)

    @property
    def warnings(self) -> tuple[Decision, ...]:
        """The decisions an operator must read before anything is made (upload shows
        them on stderr first): a taken name, a step the policies may refuse."""
        return tuple(d for d in self.decisions if d.topic in WARNING_TOPICS)


# Decision topics that are warnings (``Plan.warnings``).
WARNING_TOPICS = ("image name", "permission")


def default_image_name(volume: Volume, at: datetime) -> str:
    """``<volume name or id>-<UTC timestamp>``: unique per second and sortable."""
    stamp = at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{volume.name or volume.id}-{stamp}"


def upload_image_name(volume: Volume, options: UploadOptions, at: datetime) -> str:
    """The name the new image will get: ``--name``, else the default."""
    return options.image_name or default_image_name(volume, at)


# --- checks and single decisions ------------------------------------------------------


def _check_uploadable(volume: Volume, force: bool) -> Decision:
    # Cinder accepts 'available', and 'in-use' only with force (and only if the
    # operator set enable_force_upload; cinder/volume/api.py copy_volume_to_image).
    if volume.status == "available":
        return Decision("volume", "uploadable", f"volume {volume.label} is available")
    if volume.status == "in-use":
        if not force:
            raise VolumeNotUploadable(
                f"volume {volume.label} is in-use; Cinder uploads an attached volume only "
                "when forced",
                hint="pass --force (Cinder must have enable_force_upload = true), "
                "or detach the volume first",
            )
        return Decision(
            "volume",
            "uploadable (forced)",
            f"volume {volume.label} is in-use and --force was given; Cinder honours it only "
            "if enable_force_upload = true in cinder.conf",
        )
    if volume.status.startswith("error"):
        # Cinder never leaves an error state by itself; only an admin's reset does.
        hint = (
            f"the volume stays {volume.status!r} until an admin resets its state once the data "
            f"is known to be sound: openstack volume set --state available {volume.id} "
            f"(cinder reset-state --state available {volume.id})"
        )
    else:
        hint = "wait until the volume is available, or fix its state first"
    raise VolumeNotUploadable(
        f"volume {volume.label} is {volume.status!r}; Cinder uploads only available "
        "(or, forced, in-use) volumes",
        hint=hint,
    )


def _upload_request(facts: UploadFacts, options: UploadOptions) -> UploadRequest:
    request = UploadRequest(
        image_name=(options.image_name or facts.default_name)
        or upload_image_name(facts.volume, options, facts.requested_at),
        force=options.force,
        disk_format=options.disk_format,
        container_format=options.container_format,
        visibility=options.visibility,
        protected=options.protected,
    )
    max_mv = facts.cinder_max_microversion
    if max_mv and version_tuple(request.microversion) > version_tuple(max_mv):
        raise UnsupportedMicroversion(
            f"--visibility/--protected need Cinder API {request.microversion}, "
            f"this cloud's Cinder offers up to {max_mv}",
            hint="leave them out and set them on the image afterwards",
        )
    return request


def _type_store(facts: UploadFacts) -> tuple[str | None, Decision]:
    """The volume type's image_service:store_id, as far as volimg can know it."""
    volume_type, glance = facts.volume_type, facts.glance
    if volume_type is None:
        return None, Decision("volume type store", "none", "the volume has no volume type")
    if volume_type.store is not None:
        if volume_type.store_learned:
            return volume_type.store, Decision(
                "volume type store",
                volume_type.store,
                f"learned after the upload: Glance put the image in {volume_type.store}, "
                "not in its default store, and only the volume type's image_service:store_id "
                f"(hidden from you) does that for type {volume_type.name!r}",
            )
        # Single-store Glance ignores x-image-meta-store, so only multi-store checks it.
        if glance.multi_store and glance.store(volume_type.store) is None:
            raise InputError(
                f"volume type {volume_type.name!r} sets image_service:store_id="
                f"{volume_type.store}, but Glance has no such store: Cinder's upload would fail",
                hint="fix the volume type's extra spec, or retype the volume",
            )
        return volume_type.store, Decision(
            "volume type store",
            volume_type.store,
            f"volume type {volume_type.name!r} sets image_service:store_id={volume_type.store}",
        )
    if not volume_type.specs_visible:
        return None, Decision(
            "volume type store",
            "unknown",
            f"volume type {volume_type.name!r}: Cinder hides extra specs from non-admins "
            f"(roles: {', '.join(facts.identity.roles) or 'none'}); assuming no "
            "image_service:store_id, and re-planning if the image lands elsewhere",
        )
    return None, Decision(
        "volume type store",
        "none",
        f"volume type {volume_type.name!r} has no image_service:store_id extra spec",
    )


def _upload_store(glance: GlanceInfo, type_store: str | None) -> tuple[str | None, Decision]:
    if not glance.multi_store:
        return None, Decision(
            "upload store",
            "the only store",
            "Glance has no multiple stores (GET /v2/info/stores is not offered): there is "
            "nothing to place or copy",
        )
    if type_store:
        return type_store, Decision(
            "upload store",
            type_store,
            f"the volume type's store wins: Cinder sends x-image-meta-store: {type_store} and "
            "Glance writes the image there",
        )
    default = glance.default_store
    return default, Decision(
        "upload store",
        default or "default",
        "no volume type store: Cinder sends no x-image-meta-store, so Glance writes to its "
        f"default store{f' ({default})' if default else ''}",
    )


def _base_image_stores(facts: UploadFacts) -> tuple[tuple[str, ...], list[Decision]]:
    """The base image's stores that can receive a copy, and what volimg saw."""
    volume, base = facts.volume, facts.base_image
    if facts.base_image_missing:
        return (), [
            Decision(
                "base image",
                "gone",
                f"the volume was made from image {volume.base_image_id}, which no longer exists "
                "or is not visible to you: there are no base image stores to follow",
            )
        ]
    if base is None:
        return (), [Decision("base image", "none", "the volume was not created from an image")]
    seen = Decision(
        "base image",
        base.id,
        f"the volume was made from {base.name or base.id}, which is in "
        f"{', '.join(base.stores) or 'no store'}",
    )
    if not facts.glance.multi_store:
        return (), [seen]
    usable, skipped = usable_stores(base.stores, facts.glance, "the base image")
    return usable, [seen, *skipped]


def _follow_base(
    options: UploadOptions, type_store: str | None, base_targets: tuple[str, ...]
) -> tuple[bool, Decision | None]:
    """Whether to copy to the base image's stores: rule 1 beats rule 2."""
    if type_store:
        follow = options.replicate is True
        reason = (
            "--replicate asks to copy to the base image's stores as well"
            if follow
            else "the volume type's store wins over the base image's stores "
            f"({', '.join(base_targets)}); pass --replicate to copy there too"
        )
    else:
        follow = options.replicate is not False
        reason = (
            "Cinder sends x-openstack-base-image-ref but Glance ignores it, so volimg copies "
            f"the image to the base image's stores ({', '.join(base_targets)})"
            if follow
            else "--no-replicate: the image does not follow the base image's stores"
            + (
                f" (only --also-store {', '.join(options.also_stores)} is copied)"
                if options.also_stores
                else "; it stays where Glance puts it"
            )
        )
    if not base_targets:
        return follow, None
    return follow, Decision("follow base image stores", "yes" if follow else "no", reason)


def _name_taken(facts: UploadFacts, options: UploadOptions, image_name: str) -> Decision | None:
    """Warn when the new image's name is already taken: names would stop identifying it."""
    taken = facts.same_name_images
    if not taken and facts.default_name and not options.image_name:
        return Decision(
            "image name",
            "suffixed",
            f"the default name {default_image_name(facts.volume, facts.requested_at)!r} is "
            f"already taken (an upload of this volume in the same second): the new image "
            f"is named {image_name!r}",
        )
    if not taken:
        return None
    count = f"{len(taken)} image{'s' if len(taken) > 1 else ''}"
    return Decision(
        "image name",
        "already taken",
        f"{count} visible to you already named {image_name!r} ({', '.join(taken)}): "
        "Glance allows it, but afterwards that name (volimg replicate NAME, --like NAME) is "
        "ambiguous; "
        + (
            "--allow-duplicate-name: uploaded anyway; refer to the new image by its ID"
            if options.allow_duplicate_name
            else "volimg upload refuses it: choose another --name, or pass --allow-duplicate-name"
        ),
    )


# --- the planner ----------------------------------------------------------------------


def plan_upload(facts: UploadFacts, options: UploadOptions) -> Plan:
    """Decide where the new image goes and how it gets there. Raises ``InputError``."""
    glance = facts.glance
    if facts.resuming is not None:
        decisions = [
            Decision(
                "volume",
                "resumed",
                f"an earlier run already uploaded {facts.volume.label} to image "
                f"{facts.resuming.id} ({facts.resuming.status}): volimg finishes that one "
                "instead of uploading again",
            )
        ]
    else:
        decisions = [_check_uploadable(facts.volume, options.force)]
    request = _upload_request(facts, options)
    name_taken = _name_taken(facts, options, request.image_name)
    if name_taken is not None:
        decisions.append(name_taken)

    type_store, decision = _type_store(facts)
    decisions.append(decision)
    upload_store, decision = _upload_store(glance, type_store)
    decisions.append(decision)
    base_targets, base_decisions = _base_image_stores(facts)
    decisions.extend(base_decisions)
    follow_base, follow_decision = _follow_base(options, type_store, base_targets)
    if follow_decision:
        decisions.append(follow_decision)
    also = explicit_stores(options.also_stores, glance, "--also-store")

    landing = (upload_store,) if upload_store else ()
    if follow_base and base_targets:
        # Rule 2 replaces the landing store; rule 1 keeps it and adds to it.
        targets = unique([*(landing if type_store else ()), *base_targets, *also])
    else:
        targets = unique([*landing, *also])
    placement = Placement(
        target_stores=targets,
        replicate=glance.multi_store and (follow_base or bool(also)),
        prune=options.prune,
        all_stores_must_succeed=options.all_stores_must_succeed,
    )
    replicate_to = placement.missing_from(landing)
    prune_from = placement.extra_in(landing) if options.prune else ()

    for store_id in also:
        decisions.append(
            Decision(
                f"store {store_id}", "keep", f"--also-store {store_id}: the upload lands there"
            )
            if store_id in landing
            else Decision(f"store {store_id}", "copy", f"--also-store {store_id} was asked for")
        )
    check_copy_image(
        glance, replicate_to, "pass --no-replicate (without --also-store) to upload only"
    )
    decisions.extend(
        member_warnings(
            facts.identity,
            copies=bool(replicate_to),
            prunes=bool(prune_from),
            public=request.visibility == "public",
        )
    )
    if options.prune:
        decisions.append(
            Decision(
                "prune",
                ", ".join(prune_from) or "nothing",
                f"--prune: once every copy has succeeded, remove the copy in "
                f"{', '.join(prune_from)} so the image sits only in the planned stores "
                "(never the last copy)"
                if prune_from
                else "--prune: the image will have no copy outside the planned stores",
            )
        )
    decisions.append(
        Decision(
            "replicate",
            ", ".join(replicate_to) or "nothing",
            "copy with Glance's import method copy-image, checked against the image's real "
            "stores after the upload"
            if replicate_to
            else "the image will already be in every planned store",
        )
    )

    if type_store:
        rule = Rule.TYPE_STORE
    elif follow_base and base_targets:
        rule = Rule.BASE_STORES
    else:
        rule = Rule.DEFAULT_STORE
    headers = {}
    if type_store:
        headers["x-image-meta-store"] = type_store
    if facts.volume.base_image_id:
        headers["x-openstack-base-image-ref"] = facts.volume.base_image_id
    return Plan(
        facts=facts,
        options=options,
        upload=request,
        volume_type_store=type_store,
        upload_store=upload_store,
        placement=placement,
        cinder_headers=MappingProxyType(headers),
        decisions=tuple(decisions),
        rule=rule,
    )


def replan_after_landing(plan: Plan, landed_in: Sequence[str]) -> Plan | None:
    """Plan again when the upload landed where only a hidden type store can have put it.

    Cinder hides image_service:store_id from non-admins, so their plan assumes
    Glance's default store. If the image lands in one other store, that store is the
    volume type's, and rule 1 applies after all. Returns None when nothing was learned.
    """
    volume_type = plan.facts.volume_type
    if (
        volume_type is None
        or volume_type.specs_visible
        or len(landed_in) != 1
        or landed_in[0] == plan.upload_store
    ):
        return None
    learned = replace(volume_type, store=landed_in[0], specs_visible=True, store_learned=True)
    return plan_upload(replace(plan.facts, volume_type=learned), plan.options)
