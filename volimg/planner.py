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
from dataclasses import dataclass, replace
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
    IMAGE_FILLING_STATUSES,
    CloudIdentity,
    GlanceInfo,
    Image,
    Volume,
    VolumeTypeInfo,
    version_tuple,
)
from volimg.provenance import Rule

# Cinder's os-volume_upload_image takes visibility and protected only from 3.1
# (cinder/api/contrib/volume_actions.py, mv.UPLOAD_IMAGE_PARAMS).
UPLOAD_PARAMS_MICROVERSION = "3.1"
BASE_MICROVERSION = "3.0"


def _unique(stores: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(stores))


@dataclass(frozen=True)
class Decision:
    """One choice the plan makes, and the one-line reason an operator reads."""

    topic: str
    outcome: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where the image must be, and how to get it there with copy-image.

    Everything is judged against the image's real stores at the time, so a placement
    stays right if Glance ever honours x-openstack-base-image-ref.
    """

    target_stores: tuple[str, ...]
    replicate: bool = True
    prune: bool = False
    all_stores_must_succeed: bool = False

    def missing_from(self, stores: Sequence[str]) -> tuple[str, ...]:
        """Stores still to copy to."""
        if not self.replicate:
            return ()
        return tuple(s for s in self.target_stores if s not in stores)

    def extra_in(self, stores: Sequence[str]) -> tuple[str, ...]:
        """Copies outside the target set: what --prune removes."""
        return tuple(s for s in stores if s not in self.target_stores)

    def done_in(self, stores: Sequence[str]) -> bool:
        """Nothing left to copy, and (with prune intent) nothing left to remove."""
        return not self.missing_from(stores) and not (self.prune and self.extra_in(stores))

    def expected_after(self, stores: Sequence[str]) -> tuple[str, ...]:
        """Where the image ends up when every step succeeds."""
        kept = stores if not self.prune else [s for s in stores if s in self.target_stores]
        return _unique([*kept, *self.missing_from(stores)])


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
    requested_at: datetime
    cinder_max_microversion: str | None = None
    # An image an earlier run's upload made (found by its stamp or name): the plan is
    # for finishing that upload, so a volume still 'uploading' for it is expected.
    resuming: Image | None = None
    # IDs of the images visible to you that already carry the new image's name.
    same_name_images: tuple[str, ...] = ()

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

    facts: ReplicationFacts
    options: ReplicationOptions
    placement: Placement
    decisions: tuple[Decision, ...]

    @property
    def image(self) -> Image:
        return self.facts.image

    @property
    def like(self) -> Image | None:
        return self.facts.like

    @property
    def replicate_to(self) -> tuple[str, ...]:
        return self.placement.missing_from(self.image.stores)

    @property
    def prune_from(self) -> tuple[str, ...]:
        return self.placement.extra_in(self.image.stores) if self.placement.prune else ()

    @property
    def expected_stores(self) -> tuple[str, ...]:
        return self.placement.expected_after(self.image.stores)


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
        image_name=upload_image_name(facts.volume, options, facts.requested_at),
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


def _usable_stores(
    candidates: Sequence[str], glance: GlanceInfo, why: str, present: Sequence[str] = ()
) -> tuple[tuple[str, ...], list[Decision]]:
    """Keep the stores copy-image can write to (or that already hold the image ``present``);
    say why each other one is left out."""
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
        elif store.read_only and store_id not in present:
            decisions.append(
                Decision(
                    f"store {store_id}",
                    "skipped",
                    f"store {store_id!r} is read-only in Glance: never a copy target",
                )
            )
        else:
            usable.append(store_id)
    return _unique(usable), decisions


def _explicit_stores(
    stores: Sequence[str], glance: GlanceInfo, option: str, present: Sequence[str] = ()
) -> tuple[str, ...]:
    """Stores the operator named: unknown ones are refused outright, and read-only ones
    unless the image is already there (``present``): nothing needs writing then."""
    known = ", ".join(s.id for s in glance.stores) or "none"
    for store_id in stores:
        store = glance.store(store_id)
        if store is None:
            raise StoreNotUsable(
                f"{option} {store_id}: Glance has no store {store_id!r} (stores: {known})",
                hint="run 'volimg stores' to see the stores Glance offers",
            )
        if store.read_only and store_id not in present:
            raise StoreNotUsable(
                f"{option} {store_id}: store {store_id!r} is read-only and cannot receive a copy",
                hint="choose a writable store ('volimg stores')",
            )
    return _unique(stores)


def _check_copy_image(glance: GlanceInfo, replicate_to: Sequence[str], flag: str) -> None:
    if replicate_to and not glance.copy_image_enabled:
        raise ImportMethodDisabled(
            "Glance does not offer the copy-image import method "
            f"(enabled: {', '.join(glance.import_methods) or 'none'}), so the image cannot be "
            f"copied to {', '.join(replicate_to)}",
            hint=f"ask the operator to add copy-image to Glance's enabled_import_methods, or {flag}",
        )


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
    usable, skipped = _usable_stores(base.stores, facts.glance, "the base image")
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


def _name_taken(facts: UploadFacts, image_name: str) -> Decision | None:
    """Warn when the new image's name is already taken: names would stop identifying it."""
    taken = facts.same_name_images
    if not taken:
        return None
    count = f"{len(taken)} image{'s' if len(taken) > 1 else ''}"
    return Decision(
        "image name",
        "already taken",
        f"{count} visible to you already named {image_name!r} ({', '.join(taken)}): "
        "Glance allows it, but afterwards that name (volimg replicate NAME, --like NAME) is "
        "ambiguous; choose another --name, or refer to the new image by its ID",
    )


def _member_warnings(
    identity: CloudIdentity, *, copies: bool, prunes: bool, public: bool = False
) -> list[Decision]:
    """Steps that default policies allow only admins: say so before anything changes."""
    if identity.is_admin:
        return []
    warnings: list[Decision] = []
    if public:
        warnings.append(
            Decision(
                "permission",
                "--visibility public may be refused",
                "Cinder's volume_extension:volume_actions:upload_public policy is admin-only "
                "by default and you have no admin role: Cinder would refuse the upload (403) "
                "before creating anything; leave out --visibility public, or ask an admin",
            )
        )
    if copies:
        warnings.append(
            Decision(
                "permission",
                "copy may be refused",
                "Glance's copy_image policy is admin-only by default and you have no admin "
                "role: if Glance refuses (403), volimg says which command an admin runs",
            )
        )
    if prunes:
        warnings.append(
            Decision(
                "permission",
                "--prune may be refused",
                "removing one store's copy (DELETE /v2/stores/..., Glance's "
                "delete_image_location policy) is admin-only by default and you have no admin "
                "role: the copies would stay, and volimg says which command an admin runs",
            )
        )
    return warnings


# --- the two planners -----------------------------------------------------------------


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
    name_taken = _name_taken(facts, request.image_name)
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
    also = _explicit_stores(options.also_stores, glance, "--also-store")

    landing = (upload_store,) if upload_store else ()
    if follow_base and base_targets:
        # Rule 2 replaces the landing store; rule 1 keeps it and adds to it.
        targets = _unique([*(landing if type_store else ()), *base_targets, *also])
    else:
        targets = _unique([*landing, *also])
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
    _check_copy_image(
        glance, replicate_to, "pass --no-replicate (without --also-store) to upload only"
    )
    decisions.extend(
        _member_warnings(
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


def plan_replication(facts: ReplicationFacts, options: ReplicationOptions) -> ReplicationPlan:
    """Decide which stores an existing image must be copied to (``volimg replicate``)."""
    image, glance = facts.image, facts.glance
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
    decisions: list[Decision] = []
    if image.status in IMAGE_FILLING_STATUSES:
        decisions.append(
            Decision(
                "image",
                "not active yet",
                f"image {image.name or image.id} is {image.status}: volimg waits for it to "
                "become active, then copies it (copy-image needs an active image)",
            )
        )
    elif not image.is_active:
        raise InputError(
            f"image {image.name or image.id} is {image.status!r}; copy-image needs an active "
            "image (Glance answers 409 otherwise)",
            hint="only an active image can be copied; upload it again if it was killed",
        )
    targets: tuple[str, ...] = ()
    if facts.like is not None:
        like_name = facts.like.name or facts.like.id
        like_targets, skipped = _usable_stores(
            facts.like.stores, glance, "the --like image", present=image.stores
        )
        decisions.append(
            Decision(
                "follow",
                like_name,
                f"--like {like_name}: it is in {', '.join(facts.like.stores) or 'no store'}",
            )
        )
        decisions.extend(skipped)
        targets = like_targets
    targets = _unique(
        [*targets, *_explicit_stores(options.stores, glance, "--store", present=image.stores)]
    )
    if not targets:
        raise InputError(
            "the --like image is in no store that can receive a copy",
            hint="name target stores with --store",
        )
    placement = Placement(
        target_stores=targets,
        prune=options.prune,
        all_stores_must_succeed=options.all_stores_must_succeed,
    )
    replicate_to = placement.missing_from(image.stores)
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
    prune_from = placement.extra_in(image.stores) if options.prune else ()
    decisions.extend(
        _member_warnings(facts.identity, copies=bool(replicate_to), prunes=bool(prune_from))
    )
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
        facts=facts, options=options, placement=placement, decisions=tuple(decisions)
    )
