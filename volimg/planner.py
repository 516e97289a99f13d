"""Pure planning: facts about the cloud in, a ``Plan`` out, with a reason for each decision.

Nothing here talks to a cloud, reads a clock or prints. Every check that can refuse a
request happens here, so a refusal always comes before the first mutating request.

The rules are the ones Cinder and Glance were designed to follow (the Glance spec for
``x-openstack-base-image-ref``) but Glance never implemented:

1. the volume type's store (extra spec ``image_service:store_id``) wins;
2. else the new image goes to every store the base image is in;
3. else (no base image) it stays in Glance's default store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType

from volimg.errors import (
    ImportMethodDisabled,
    InputError,
    StoreNotUsable,
    UnsupportedMicroversion,
    VolumeNotUploadable,
)
from volimg.model import (
    CloudIdentity,
    GlanceInfo,
    Image,
    Volume,
    VolumeTypeInfo,
    version_tuple,
)

# Cinder's os-volume_upload_image takes visibility and protected only from 3.1
# (cinder/api/contrib/volume_actions.py, mv.UPLOAD_IMAGE_PARAMS).
UPLOAD_PARAMS_MICROVERSION = "3.1"
BASE_MICROVERSION = "3.0"


@dataclass(frozen=True)
class Decision:
    """One choice the plan makes, and the one-line reason an operator reads."""

    topic: str
    outcome: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where the image must end up, and how to get it there with copy-image."""

    target_stores: tuple[str, ...]
    replicate: bool = True
    prune: bool = False
    all_stores_must_succeed: bool = False

    def missing_from(self, image: Image) -> tuple[str, ...]:
        """Stores still to copy to, judged by the image's real stores."""
        if not self.replicate:
            return ()
        return tuple(s for s in self.target_stores if s not in image.stores)

    def extra_in(self, image: Image) -> tuple[str, ...]:
        """Copies outside the target set: what --prune removes."""
        return tuple(s for s in image.stores if s not in self.target_stores)


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


@dataclass(frozen=True, kw_only=True)
class UploadFacts:
    """Everything the gateway found out before anything is changed."""

    volume: Volume
    volume_type: VolumeTypeInfo | None
    base_image: Image | None
    glance: GlanceInfo
    identity: CloudIdentity
    cinder_max_microversion: str | None = None
    requested_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def base_image_missing(self) -> bool:
        return self.volume.base_image_id is not None and self.base_image is None


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What ``volimg upload`` will do, printed in full by ``plan`` and ``--dry-run``."""

    volume: Volume
    base_image: Image | None
    volume_type_store: str | None
    upload: UploadRequest
    upload_store: str | None  # where Glance will put the upload (None: single store)
    placement: Placement
    replicate_to: tuple[str, ...]  # expected copies; rechecked against the real image
    prune_from: tuple[str, ...]  # expected removals, likewise rechecked
    cinder_headers: Mapping[str, str]
    decisions: tuple[Decision, ...]


@dataclass(frozen=True, kw_only=True)
class ReplicationOptions:
    stores: tuple[str, ...] = ()
    prune: bool = False
    all_stores_must_succeed: bool = False


@dataclass(frozen=True, kw_only=True)
class ReplicationFacts:
    image: Image
    like: Image | None
    glance: GlanceInfo
    identity: CloudIdentity


@dataclass(frozen=True, kw_only=True)
class ReplicationPlan:
    """What ``volimg replicate`` will do to an image that already exists."""

    image: Image
    like: Image | None
    placement: Placement
    replicate_to: tuple[str, ...]
    prune_from: tuple[str, ...]
    decisions: tuple[Decision, ...]


def default_image_name(volume: Volume, at: datetime) -> str:
    """``<volume name or id>-<UTC timestamp>``: unique per second and sortable."""
    stamp = at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{volume.label}-{stamp}"


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
    raise VolumeNotUploadable(
        f"volume {volume.label} is {volume.status!r}; Cinder uploads only available "
        "(or, forced, in-use) volumes",
        hint="wait until the volume is available, or fix its state first",
    )


def _usable_stores(
    candidates: Sequence[str], glance: GlanceInfo, why: str
) -> tuple[tuple[str, ...], list[Decision]]:
    """Keep the stores copy-image can write to; say why each other one is left out."""
    usable: list[str] = []
    decisions: list[Decision] = []
    for store_id in candidates:
        store = glance.store(store_id)
        if store is None:
            decisions.append(
                Decision(
                    f"store {store_id}",
                    "skipped",
                    f"{why} names store {store_id!r}, which Glance no longer has",
                )
            )
        elif store.read_only:
            decisions.append(
                Decision(
                    f"store {store_id}",
                    "skipped",
                    f"store {store_id!r} is read-only in Glance: never a copy target",
                )
            )
        elif store_id not in usable:
            usable.append(store_id)
    return tuple(usable), decisions


def _explicit_stores(stores: Sequence[str], glance: GlanceInfo, option: str) -> tuple[str, ...]:
    """Stores the operator named: unknown or read-only ones are refused outright."""
    for store_id in stores:
        store = glance.store(store_id)
        known = ", ".join(s.id for s in glance.stores) or "none"
        if store is None:
            raise StoreNotUsable(
                f"{option} {store_id}: Glance has no store {store_id!r} (stores: {known})",
                hint="run 'volimg stores' to see the stores Glance offers",
            )
        if store.read_only:
            raise StoreNotUsable(
                f"{option} {store_id}: store {store_id!r} is read-only and cannot receive a copy",
                hint="choose a writable store ('volimg stores')",
            )
    return tuple(dict.fromkeys(stores))


def _check_copy_image(glance: GlanceInfo, replicate_to: Sequence[str], flag: str) -> None:
    if replicate_to and not glance.copy_image_enabled:
        raise ImportMethodDisabled(
            "Glance does not offer the copy-image import method "
            f"(enabled: {', '.join(glance.import_methods) or 'none'}), so the image cannot be "
            f"copied to {', '.join(replicate_to)}",
            hint=f"ask the operator to add copy-image to Glance's enabled_import_methods, or {flag}",
        )


def _type_store_decision(
    volume_type: VolumeTypeInfo | None, identity: CloudIdentity, glance: GlanceInfo
) -> tuple[str | None, Decision]:
    if volume_type is None:
        return None, Decision("volume type store", "none", "the volume has no volume type")
    if volume_type.store is not None:
        if glance.store(volume_type.store) is None:
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
            f"(roles: {', '.join(identity.roles) or 'none'}); assuming no image_service:store_id "
            "and checking where the image really lands after the upload",
        )
    return None, Decision(
        "volume type store",
        "none",
        f"volume type {volume_type.name!r} has no image_service:store_id extra spec",
    )


def plan_upload(facts: UploadFacts, options: UploadOptions) -> Plan:
    """Decide where the new image goes and how it gets there. Raises ``InputError``."""
    volume, glance = facts.volume, facts.glance
    decisions = [_check_uploadable(volume, options.force)]

    request = UploadRequest(
        image_name=options.image_name or default_image_name(volume, facts.requested_at),
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
    if options.replicate is False and options.also_stores:
        raise InputError(
            "--also-store asks for copies and --no-replicate forbids them",
            hint="drop one of the two options",
        )

    type_store, type_decision = _type_store_decision(facts.volume_type, facts.identity, glance)
    decisions.append(type_decision)

    headers: dict[str, str] = {}
    if type_store:
        headers["x-image-meta-store"] = type_store
    base = facts.base_image
    if volume.base_image_id:
        headers["x-openstack-base-image-ref"] = volume.base_image_id

    default_store = glance.default_store
    if not glance.multi_store:
        upload_store = None
        decisions.append(
            Decision(
                "upload store",
                "the only store",
                "Glance has no multiple stores (GET /v2/info/stores is not offered): "
                "there is nothing to place or copy",
            )
        )
    elif type_store:
        upload_store = type_store
        decisions.append(
            Decision(
                "upload store",
                type_store,
                f"the volume type's store wins: Cinder sends x-image-meta-store: {type_store} "
                "and Glance writes the image there",
            )
        )
    else:
        upload_store = default_store
        decisions.append(
            Decision(
                "upload store",
                default_store or "default",
                "no volume type store: Cinder sends no x-image-meta-store, so Glance writes "
                f"to its default store{f' ({default_store})' if default_store else ''}",
            )
        )

    if facts.base_image_missing:
        decisions.append(
            Decision(
                "base image",
                "gone",
                f"the volume was made from image {volume.base_image_id}, which no longer exists "
                "or is not visible to you: there are no base image stores to follow",
            )
        )
    elif base is None:
        decisions.append(Decision("base image", "none", "the volume was not created from an image"))
    else:
        decisions.append(
            Decision(
                "base image",
                base.id,
                f"the volume was made from {base.name or base.id}, which is in "
                f"{', '.join(base.stores) or 'no store'}",
            )
        )

    base_targets: tuple[str, ...] = ()
    if base is not None and glance.multi_store:
        base_targets, skipped = _usable_stores(base.stores, glance, "the base image")
        decisions.extend(skipped)
    also = _explicit_stores(options.also_stores, glance, "--also-store")

    if not glance.multi_store:
        follow_base = False
        replicate = False
    elif type_store:
        follow_base = options.replicate is True
        replicate = follow_base or bool(also)
        if base_targets:
            decisions.append(
                Decision(
                    "follow base image stores",
                    "yes" if follow_base else "no",
                    "--replicate asks to copy to the base image's stores as well"
                    if follow_base
                    else "the volume type's store wins over the base image's stores "
                    f"({', '.join(base_targets)}); pass --replicate to copy there too",
                )
            )
    else:
        follow_base = options.replicate is not False
        replicate = follow_base
        if base_targets:
            decisions.append(
                Decision(
                    "follow base image stores",
                    "yes" if follow_base else "no",
                    "Cinder sends x-openstack-base-image-ref but Glance ignores it, so volimg "
                    f"copies the image to the base image's stores ({', '.join(base_targets)})"
                    if follow_base
                    else "--no-replicate: the image stays where Glance puts it",
                )
            )

    landing = (upload_store,) if upload_store else ()
    if type_store:
        targets = landing + (base_targets if follow_base else ()) + also
    elif follow_base and base_targets:
        targets = base_targets + also
    else:
        targets = landing + also
    targets = tuple(dict.fromkeys(targets))

    replicate_to = tuple(s for s in targets if s not in landing) if replicate else ()
    for store_id in also:
        decisions.append(
            Decision(
                f"store {store_id}", "keep", f"--also-store {store_id}: the upload lands there"
            )
            if store_id in landing
            else Decision(f"store {store_id}", "copy", f"--also-store {store_id} was asked for")
        )
    _check_copy_image(glance, replicate_to, "pass --no-replicate to upload only")
    if replicate_to and not facts.identity.is_admin:
        decisions.append(
            Decision(
                "permission",
                "may be refused",
                "Glance's copy_image policy is admin-only by default and you have no admin "
                "role: if Glance refuses (403), volimg says which command an admin runs",
            )
        )

    prune_from: tuple[str, ...] = ()
    if options.prune:
        prune_from = tuple(s for s in landing if s not in targets) if replicate_to else ()
        decisions.append(
            Decision(
                "prune",
                ", ".join(prune_from) or "nothing",
                f"--prune: once every copy has succeeded, remove the copy in {', '.join(prune_from)} "
                "so the image sits only in the planned stores (never the last copy)"
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

    return Plan(
        volume=volume,
        base_image=base,
        volume_type_store=type_store,
        upload=request,
        upload_store=upload_store,
        placement=Placement(
            target_stores=targets,
            replicate=replicate,
            prune=options.prune,
            all_stores_must_succeed=options.all_stores_must_succeed,
        ),
        replicate_to=replicate_to,
        prune_from=prune_from,
        cinder_headers=MappingProxyType(headers),
        decisions=tuple(decisions),
    )


def plan_replication(facts: ReplicationFacts, options: ReplicationOptions) -> ReplicationPlan:
    """Decide which stores an existing image must be copied to (``volimg replicate``)."""
    image, glance = facts.image, facts.glance
    decisions: list[Decision] = []
    if not glance.multi_store:
        raise InputError(
            "Glance has no multiple stores (GET /v2/info/stores is not offered): there is "
            "nowhere to copy to",
        )
    if facts.like is None and not options.stores:
        raise InputError(
            "nothing to copy to: name a base image with --like or stores with --store",
            hint="e.g. volimg replicate IMAGE --like BASE_IMAGE",
        )
    if not image.is_active:
        raise InputError(
            f"image {image.name or image.id} is {image.status!r}; copy-image needs an active "
            "image (Glance answers 409 otherwise)",
            hint="wait until the image is active, then run this again",
        )
    targets: tuple[str, ...] = ()
    if facts.like is not None:
        like_targets, skipped = _usable_stores(facts.like.stores, glance, "the --like image")
        decisions.extend(skipped)
        targets += like_targets
        decisions.append(
            Decision(
                "follow",
                facts.like.name or facts.like.id,
                f"--like {facts.like.name or facts.like.id}: it is in "
                f"{', '.join(facts.like.stores) or 'no store'}",
            )
        )
    targets += _explicit_stores(options.stores, glance, "--store")
    targets = tuple(dict.fromkeys(targets))
    if not targets:
        raise InputError(
            f"the --like image {facts.like.name or facts.like.id if facts.like else ''} is in no "
            "store that can receive a copy",
            hint="name target stores with --store",
        )
    placement = Placement(
        target_stores=targets,
        prune=options.prune,
        all_stores_must_succeed=options.all_stores_must_succeed,
    )
    replicate_to = placement.missing_from(image)
    present = [s for s in targets if s in image.stores]
    if present:
        decisions.append(
            Decision("already present", ", ".join(present), "the image is already there")
        )
    decisions.append(
        Decision(
            "replicate",
            ", ".join(replicate_to) or "nothing",
            "copy with Glance's import method copy-image"
            if replicate_to
            else "the image is already in every planned store",
        )
    )
    _check_copy_image(glance, replicate_to, "copy the data some other way")
    prune_from = placement.extra_in(image) if options.prune else ()
    if options.prune:
        decisions.append(
            Decision(
                "prune",
                ", ".join(prune_from) or "nothing",
                f"--prune: after every copy succeeded, remove the copies in {', '.join(prune_from)}"
                if prune_from
                else "--prune: no copy lies outside the planned stores",
            )
        )
    return ReplicationPlan(
        image=image,
        like=facts.like,
        placement=placement,
        replicate_to=replicate_to,
        prune_from=prune_from,
        decisions=tuple(decisions),
    )
