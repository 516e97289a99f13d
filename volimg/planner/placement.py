"""What both planners share: a ``Decision`` with its reason, the ``Placement`` of an
image across Glance's stores, and the store rules every copy target passes.

A store named by a rule (the base image's, the ``--like`` image's) is skipped with a
reason when Glance cannot write to it; a store the operator named is refused outright.
Copies need Glance's copy-image import method, and default policies let only admins
copy or prune: ``member_warnings`` says so before anything changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from volimg.errors import ImportMethodDisabled, StoreNotUsable
from volimg.model import CloudIdentity, GlanceInfo


def unique(stores: Sequence[str]) -> tuple[str, ...]:
    """The stores in their first order, each once."""
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
        return unique([*kept, *self.missing_from(stores)])


def usable_stores(
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
    return unique(usable), decisions


def explicit_stores(
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
    return unique(stores)


def check_copy_image(glance: GlanceInfo, replicate_to: Sequence[str], flag: str) -> None:
    """Refuse a plan that copies when Glance offers no copy-image; ``flag`` is the way out."""
    if replicate_to and not glance.copy_image_enabled:
        raise ImportMethodDisabled(
            "Glance does not offer the copy-image import method "
            f"(enabled: {', '.join(glance.import_methods) or 'none'}), so the image cannot be "
            f"copied to {', '.join(replicate_to)}",
            hint=f"ask the operator to add copy-image to Glance's enabled_import_methods, or {flag}",
        )


def member_warnings(
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
