"""What ``volimg audit`` finds: one finding per image, the most pressing, with its reason.

The expected stores come from the same planner as ``volimg upload``, fed with the cloud
as it is now: the base image's current stores, the volume type's store (or the one the
stamp recorded, when the volume is gone or its type's extra specs are hidden), and the
prune intent of the stamp. Which copies are extra is ``volimg.safety``'s to say
(docs/safety.md), never a rule of this module's own.

``_Cloud`` holds what the audit reads once and shares between images (each base image
and volume type read once however many images share it). Nothing here changes the
cloud: judging is reads only; ``volimg.audit.repair`` acts on the findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from volimg.core import SharedFacts
from volimg.errors import VolimgError
from volimg.gateway import Gateway
from volimg.model import (
    IMAGE_DEAD_STATUSES,
    CloudIdentity,
    GlanceInfo,
    Image,
    ImportTask,
    Volume,
    VolumeTypeInfo,
    format_time,
)
from volimg.planner import Plan, UploadFacts, UploadOptions, plan_upload
from volimg.provenance import UNKNOWN, Mark, Rule, Stamp
from volimg.safety import removable_copies

# Findings, most pressing first (docs/audit.md): an unfinished image is invisible to
# everything else volimg does until it is stamped; a failed copy or a stale lock needs
# a hand; a missing copy is the placement broken; an extra copy is only waste; the
# rest need nothing from anyone.
UNFINISHED = "unfinished"
FAILED_IMPORT = "failed-import"
STALE_LOCK = "stale-lock"
MISSING = "missing"
EXTRA = "extra"
IMPORTING = "importing"
NOT_ACTIVE = "not-active"
BASE_GONE = "base-gone"
OK = "ok"
FINDINGS = (
    UNFINISHED,
    FAILED_IMPORT,
    STALE_LOCK,
    MISSING,
    EXTRA,
    IMPORTING,
    NOT_ACTIVE,
    BASE_GONE,
    OK,
)
# What --fix leaves alone: nothing to do, or nothing it may do.
UNFIXABLE = (OK, IMPORTING, BASE_GONE, NOT_ACTIVE)
# Not errors: they count as done for the exit code.
SETTLED = (OK, BASE_GONE)

_RECORDED_TYPE = "(recorded)"  # the volume type audit makes up from a stamp's type store


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One image's state against the rules, with a one-line reason like a plan's."""

    image: Image
    stamp: Stamp | None  # None only for an unfinished image (see ``mark``)
    finding: str
    reason: str
    expected: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    prune: bool = False
    takeover_at: datetime | None = None  # stale-lock: when a new import may take over
    mark: Mark | None = None  # unfinished: the mark of the run that created the image


@dataclass
class _Cloud:
    """What the audit reads once and shares between images."""

    gateway: Gateway
    identity: CloudIdentity
    glance: GlanceInfo
    volumes: dict[str, Volume]
    shared: SharedFacts = field(default_factory=SharedFacts)

    def base_image(self, image_id: str) -> tuple[Image | None, str]:
        """The base image, or None and why not: gone, or unreadable (a 403, a 500).

        A read error is kept as the answer for every image of that base: it must not
        stop the audit of the others, and asking again per image would only repeat it.
        """

        def read() -> tuple[Image | None, str]:
            try:
                image = self.gateway.get_image(image_id)
            except VolimgError as exc:
                return None, f"could not be read ({exc.message})"
            if image is None or image.status in IMAGE_DEAD_STATUSES:
                return None, "no longer exists (or is hidden from you)"
            return image, ""

        return self.shared.get("base image", image_id, read)

    def volume_type(self, name: str) -> VolumeTypeInfo:
        return self.shared.get(
            "volume type",
            name,
            lambda: (
                self.gateway.volume_type(name, specs_visible=self.identity.is_admin)
                or VolumeTypeInfo(name=name, specs_visible=False)
            ),
        )


def no_replicate(stamp: Stamp) -> bool:
    """Was the image uploaded with ``--no-replicate`` (it stays where it landed)?"""
    if stamp.replicate is not None:
        return not stamp.replicate
    # Stamps before volimg_replicate: rule 3 although there was a base image.
    return stamp.rule is Rule.DEFAULT_STORE and stamp.base_image is not None


def expected_placement(
    cloud: _Cloud, image: Image, stamp: Stamp, *, base: Image | None, now: datetime
) -> Plan:
    """Plan the image's placement with upload's planner and today's cloud.

    The volume may be gone or hidden; the stamp then stands in for it (its base image
    and the type store it recorded). ``base`` is the base image as read now (None:
    gone or unreadable, or there is none).
    """
    volume = cloud.volumes.get(stamp.source_volume or "")
    metadata = {"image_id": stamp.base_image} if stamp.base_image else {}
    if volume is None:
        volume = Volume(
            id=stamp.source_volume or UNKNOWN,
            name="",
            status="gone",
            size=0,
            volume_type=None,
            image_metadata=metadata,
        )
    else:
        # The stamp names the base image the upload followed, even if the volume's
        # own metadata was edited since.
        volume = replace(volume, image_metadata={**volume.image_metadata, **metadata})
    volume_type = cloud.volume_type(volume.volume_type) if volume.volume_type else None
    recorded = stamp.type_store if stamp.type_store not in (None, UNKNOWN) else None
    if recorded and (volume_type is None or not volume_type.specs_visible):
        volume_type = VolumeTypeInfo(name=_RECORDED_TYPE, store=recorded)
    facts = UploadFacts(
        volume=volume,
        volume_type=volume_type,
        base_image=base,
        glance=cloud.glance,
        identity=cloud.identity,
        requested_at=now,
        resuming=image,
    )
    # The stamp carries the uploader's choice: an image uploaded with --no-replicate
    # stays where it landed.
    options = UploadOptions(
        image_name=image.name or image.id,
        replicate=False if no_replicate(stamp) else None,
        also_stores=tuple(s for s in stamp.also_stores if cloud.glance.store(s) is not None),
        prune=stamp.prune,
    )
    return plan_upload(facts, options)


def assess(
    cloud: _Cloud, image: Image, stamp: Stamp | None, *, now: datetime, mark: Mark | None = None
) -> Finding:
    """One finding for one image, the most pressing one."""

    def found(finding: str, reason: str, **extra: object) -> Finding:
        return Finding(
            image=image,
            stamp=stamp,
            finding=finding,
            reason=reason,
            mark=mark,
            **extra,  # type: ignore[arg-type]
        )

    if mark is not None or stamp is None:
        assert mark is not None, "an image audit judges has a stamp or a mark"
        return found(UNFINISHED, _unfinished_reason(image, mark))
    if not image.is_active:
        return found(
            NOT_ACTIVE, f"the image is {image.status}: nothing to place until it is active"
        )
    if image.import_task:
        task = _task(cloud.gateway, image)
        takeover = task.takeover_at() if task is not None else None
        if task is not None and not task.finished and not task.looks_dead(now):
            return found(
                IMPORTING,
                f"import task {task.id} is {task.status} ({task.message or 'no progress yet'}) "
                f"to {', '.join(image.importing_to_stores) or 'its stores'}; left alone",
            )
        when = format_time(takeover) if takeover else "now"
        return found(
            STALE_LOCK,
            f"the import lock names task {image.import_task}, "
            + (
                f"{task.status} and not updated since {format_time(task.updated_at or task.created_at)}"
                if task is not None
                else "which no longer exists"
            )
            + f"; a new import may take it over from {when} (Glance's rule: 60 minutes "
            "without progress, 120 while pending)",
            takeover_at=takeover,
        )
    base, problem = cloud.base_image(stamp.base_image) if stamp.base_image else (None, "")
    plan = expected_placement(cloud, image, stamp, base=base, now=now)
    expected = plan.placement.target_stores
    if problem and plan.rule is not Rule.TYPE_STORE and not no_replicate(stamp):
        # The rule follows a base image nobody can read now: any store volimg added or
        # removed would be a guess (Glance's default store is not where it belongs).
        return found(
            BASE_GONE,
            f"base image {stamp.base_image} {problem}: there are no stores to follow, so "
            "volimg adds nothing and removes nothing; not an error",
        )
    if no_replicate(stamp) and plan.rule is not Rule.TYPE_STORE:
        # Stays where it landed: only the stores recorded on purpose are copied to.
        missing = tuple(s for s in stamp.also_stores if s in expected and s not in image.stores)
    else:
        missing = tuple(s for s in expected if s not in image.stores)
    extra = removable_copies(image, keep=expected, stamp=stamp, base_readable=not problem)
    outside = tuple(s for s in image.stores if s not in expected and s not in extra)
    common = {"expected": expected, "missing": missing, "extra": extra, "prune": bool(extra)}
    why = _rule_reason(plan, stamp)
    if image.failed_import and missing:
        # A failed copy that a later one made good is history, not a finding.
        return found(
            FAILED_IMPORT,
            f"Glance lists {', '.join(image.failed_import)} in os_glance_failed_import: a copy "
            f"failed; still missing: {', '.join(missing)}",
            **common,
        )
    if missing:
        return found(MISSING, f"not in {', '.join(missing)}: {why}", **common)
    if extra:
        return found(
            EXTRA,
            f"in {', '.join(extra)} although the stamp records prune intent: only "
            f"{', '.join(unique_keep(expected, image, extra))} should hold it",
            **common,
        )
    if problem and stamp.prune and outside:
        return found(
            BASE_GONE,
            f"in {', '.join(image.stores)}: {why}; the copies in {', '.join(outside)} stay, "
            f"as volimg removes nothing while base image {stamp.base_image} {problem}",
            **common,
        )
    return found(OK, f"in {', '.join(image.stores)}: {why}", **common)


def unique_keep(expected: Sequence[str], image: Image, extra: Sequence[str]) -> tuple[str, ...]:
    """The stores that keep the image once the extra copies are gone."""
    kept = [*expected, *(s for s in image.stores if s not in extra)]
    return tuple(dict.fromkeys(kept))


def _unfinished_reason(image: Image, mark: Mark) -> str:
    volume = mark.volume_id or "an unknown volume"
    reason = (
        f"created by volimg run {mark.run} (upload of volume {volume}, marked "
        f"{format_time(mark.marked_at) if mark.marked_at else 'at an unknown time'}) and never finished: it carries the "
        "run's mark but no stamp"
    )
    if image.status in IMAGE_DEAD_STATUSES:
        return reason + f"; the image is {image.status}: Cinder's upload failed"
    if not image.is_active:
        return reason + f"; the image is {image.status}: Cinder may still be uploading it"
    return reason


def _rule_reason(plan: Plan, stamp: Stamp) -> str:
    """What the expected stores follow, in the words of the rule (and recorded intent)."""
    if plan.rule is Rule.TYPE_STORE:
        volume_type = plan.facts.volume_type
        recorded = volume_type is not None and volume_type.name == _RECORDED_TYPE
        why = (
            f"the volume type's store {plan.volume_type_store}"
            + (" (as the stamp recorded it)" if recorded else "")
            + " wins"
        )
    elif plan.rule is Rule.BASE_STORES and plan.base_image is not None:
        base = plan.base_image
        why = f"its base image {base.name or base.id} is in {', '.join(base.stores)}"
    elif no_replicate(stamp):
        why = "uploaded with --no-replicate: it stays where it landed"
    else:
        why = "no base image to follow: Glance's default store" + (
            f" {plan.upload_store}" if plan.upload_store else ""
        )
    also = [s for s in stamp.also_stores if s in plan.placement.target_stores]
    if also:
        asked = (
            f"recorded by '{stamp.intent_by}' (volimg_intent_by"
            + (f", {format_time(stamp.intent_at)}" if stamp.intent_at else "")
            + ")"
            if stamp.intent_by
            else "asked for with --also-store at upload"
        )
        why += f"; also {', '.join(also)}: {asked}"
    return why


def _task(gateway: Gateway, image: Image) -> ImportTask | None:
    try:
        tasks = gateway.image_tasks(image.id)
    except VolimgError:
        return None
    return next((t for t in tasks if t.id == image.import_task), None)
