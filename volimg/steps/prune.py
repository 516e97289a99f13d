"""The prune step: remove the copies outside the target set, never the last one.

It runs only once every planned copy exists (not with ``--no-wait``); a store
deletion whose answer was lost is reconciled by reading the image, never resent.
"""

from __future__ import annotations

from volimg import events as ev
from volimg.errors import CloudError, PermissionDenied
from volimg.gateway import Gateway
from volimg.model import Image
from volimg.results import PRUNE_FAILED, PRUNED, SKIPPED
from volimg.steps.job import Job, watch_in_flight


def prune(gateway: Gateway, job: Job, image: Image) -> None:
    """Remove copies outside the target set once every copy exists; never the last."""
    extra = job.placement.extra_in(image.stores)
    if not job.placement.prune or not extra:
        return
    if not job.settings.wait or job.placement.missing_from(image.stores):
        reason = "--no-wait" if not job.settings.wait else "not every planned copy exists"
        for store in extra:
            job.settle(store, SKIPPED, f"not pruned: {reason}")
        return
    job.emit(ev.PhaseStarted, phase="prune", detail=f"removing copies in {', '.join(extra)}")
    for store in extra:
        current = job.reread(gateway, image.id)
        if store not in current.stores:
            continue
        if len(current.stores) <= 1:
            job.settle(store, SKIPPED, "never remove the last copy")
            continue
        try:
            gateway.delete_from_store(image.id, store)
        except PermissionDenied as exc:
            job.settle(store, PRUNE_FAILED, "removing a store's copy is admin-only: 403")
            job.reread(gateway, image.id)
            raise PermissionDenied(
                f"Glance refused to remove image {image.id} from store {store} (admin-only "
                f"by default); {job.where()}",
                hint=f"ask an admin to run: {job.resume()}",
            ) from exc
        except CloudError as exc:
            if _removed_despite(gateway, job, image, store, exc):
                continue
            job.settle(store, PRUNE_FAILED, exc.message)
            raise CloudError(
                f"could not remove image {image.id} from store {store}: {exc.message}; "
                f"{job.where()}",
                hint=f"once the cause is fixed, run: {job.resume()}",
                status=exc.status,
            ) from exc
        job.settle(store, PRUNED)
    job.reread(gateway, image.id)


def _removed_despite(gateway: Gateway, job: Job, image: Image, store: str, exc: CloudError) -> bool:
    """After a failed store deletion: is the copy gone all the same? Look, never resend."""

    def look() -> Image:
        return job.reread(gateway, image.id)

    def removed(seen: Image) -> bool:
        return store not in seen.stores

    current = look()
    if not removed(current) and exc.in_flight:
        current = watch_in_flight(job, look, seen=removed)
    if removed(current):
        job.settle(store, PRUNED, f"Glance removed it, though its answer was lost ({exc.message})")
        return True
    return False
