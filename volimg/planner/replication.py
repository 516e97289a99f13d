"""Planning ``volimg replicate``: which stores an existing image must be copied to.

The targets are the ``--like`` image's stores Glance can write to, plus the stores
named with ``--store``; ``--prune`` removes the copies outside them afterwards. The
image must be active, or on its way to it (volimg waits), since copy-image copies only
an active image. Pure, like the upload's planner: facts in, a plan out.
"""

from __future__ import annotations

from dataclasses import dataclass

from volimg.errors import InputError
from volimg.model import IMAGE_FILLING_STATUSES, CloudIdentity, GlanceInfo, Image
from volimg.planner.placement import (
    Decision,
    Placement,
    check_copy_image,
    explicit_stores,
    member_warnings,
    unique,
    usable_stores,
)


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
        like_targets, skipped = usable_stores(
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
    targets = unique(
        [*targets, *explicit_stores(options.stores, glance, "--store", present=image.stores)]
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
    check_copy_image(glance, replicate_to, "copy the data some other way")
    prune_from = placement.extra_in(image.stores) if options.prune else ()
    decisions.extend(
        member_warnings(facts.identity, copies=bool(replicate_to), prunes=bool(prune_from))
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
