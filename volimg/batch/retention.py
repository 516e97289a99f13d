"""Retention (``--keep``): delete the oldest of a volume's own images, and say what it did.

Only images volimg uploaded of this very volume are ever candidates (docs/safety.md);
a delete whose answer was lost is looked at again, never sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from volimg.errors import VolimgError
from volimg.gateway import Gateway
from volimg.model import IMAGE_DEAD_STATUSES, Volume
from volimg.provenance import KEY_MARK, KEY_SOURCE_VOLUME, SCHEMA, TAG
from volimg.safety import own_upload_of
from volimg.waiting import Clock

# Retention actions.
DELETED = "deleted"
WOULD_DELETE = "would-delete"
KEPT_PROTECTED = "kept-protected"
DELETE_FAILED = "delete-failed"


@dataclass(frozen=True)
class RetentionAction:
    image_id: str
    name: str
    created_at: str | None
    action: str  # deleted | would-delete | kept-protected | delete-failed
    detail: str = ""


def _retention(
    gateway: Gateway,
    volume: Volume,
    keep: int | None,
    *,
    keep_id: str | None,
    clock: Clock,
    dry_run: bool = False,
) -> tuple[RetentionAction, ...]:
    """Delete the oldest volimg images of the volume beyond ``keep``.

    Only images that are volimg's own upload of this very volume (``volimg.safety``,
    docs/safety.md: never an adopted, Glance-filter-stamped, inherited or unstamped
    one), never a protected one, and never the image this run made or kept.
    """
    if keep is None:
        return ()
    owner = gateway.identity().project_id
    # The stamped images of the volume, and the images its killed runs never finished
    # (born with the mark, no stamp yet): one filtered listing each.
    listed = {
        image.id: image
        for image in [
            *gateway.list_images(tag=TAG, properties={KEY_SOURCE_VOLUME: volume.id}, owner=owner),
            *gateway.list_images(properties={KEY_MARK: SCHEMA}, owner=owner),
        ]
    }
    images = [
        image
        for image in listed.values()
        if image.status not in IMAGE_DEAD_STATUSES and own_upload_of(image, volume.id)
    ]
    images.sort(key=lambda i: (i.created_at or "", i.id), reverse=True)
    if keep_id is not None:
        # The image this run made or kept always counts among the newest.
        images.sort(key=lambda i: i.id != keep_id)
    actions: list[RetentionAction] = []
    for image in images[keep:]:
        if image.protected:
            actions.append(
                RetentionAction(image.id, image.name, image.created_at, KEPT_PROTECTED, "protected")
            )
        elif dry_run:
            actions.append(RetentionAction(image.id, image.name, image.created_at, WOULD_DELETE))
        else:
            try:
                gateway.delete_image(image.id)
            except VolimgError as exc:
                if _gone_despite(gateway, image.id, exc, clock):
                    actions.append(
                        RetentionAction(
                            image.id,
                            image.name,
                            image.created_at,
                            DELETED,
                            f"Glance deleted it, though its answer was lost ({exc.message})",
                        )
                    )
                    continue
                actions.append(
                    RetentionAction(
                        image.id, image.name, image.created_at, DELETE_FAILED, exc.message
                    )
                )
            else:
                actions.append(RetentionAction(image.id, image.name, image.created_at, DELETED))
    return tuple(actions)


def _gone_despite(gateway: Gateway, image_id: str, exc: VolimgError, clock: Clock) -> bool:
    """After a failed delete: is the image gone all the same? Look, never resend."""
    from volimg.errors import CloudError
    from volimg.waiting import IN_FLIGHT_GRACE, watch

    def gone() -> bool:
        try:
            return gateway.get_image(image_id) is None
        except VolimgError:
            return False

    if gone():
        return True
    if not (isinstance(exc, CloudError) and exc.in_flight):
        return False
    return watch(gone, seen=bool, clock=clock, seconds=IN_FLIGHT_GRACE, interval=1.0)
