"""``volimg adopt``: stamp an image volimg did not make, so that audit covers it.

No data moves: adopt writes the stamp (``volimg.provenance``) and the tag, and checks
Glance kept them. It refuses, before any change, to replace another stamp unasked or
to stamp an unfinished volimg upload, and says which option does it anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from volimg.errors import InputError, VolimgError
from volimg.gateway import Gateway
from volimg.model import Volume, format_time
from volimg.provenance import (
    MARK_KEYS,
    STAMP_KEYS,
    TAG,
    UNKNOWN,
    Rule,
    Stamp,
    StampedBy,
    stamp_time,
    unfinished_mark,
)


@dataclass(frozen=True, kw_only=True)
class AdoptOptions:
    """What ``volimg adopt`` is told; None and False mean "not given"."""

    base: str | None = None  # the base image (name or ID)
    no_base: bool = False  # the image has no base image (a blank volume's)
    volume: str | None = None  # the volume it was uploaded from
    prune_intent: bool | None = None  # None: keep the recorded intent (none at first)
    force: bool = False  # replace a stamp the image already carries


def _stamp_words(stamp: Stamp) -> str:
    """Whose stamp it is, for a refusal."""
    if stamp.stamped_by is StampedBy.UPLOAD:
        who = f"volimg's own upload of volume {stamp.source_volume or UNKNOWN}"
    elif stamp.stamped_by is StampedBy.ADOPT:
        who = "an earlier volimg adopt"
    else:
        who = "the Glance filter"
    when = format_time(stamp.stamped_at) if stamp.stamped_at else "at an unknown time"
    return f"{who}, stamped {when}"


def _adopted_base(
    gateway: Gateway, options: AdoptOptions, volume: Volume | None, kept: Stamp | None
) -> str | None:
    """The base image ID the stamp records: --base, --no-base, the volume's, or the kept one."""
    if options.base and options.no_base:
        raise InputError(
            "--base and --no-base contradict each other", hint="pass one of them, not both"
        )
    from_volume = volume.base_image_id if volume is not None else None
    if options.no_base:
        if from_volume and not options.force:
            raise InputError(
                f"--no-base contradicts volume {volume.label if volume else ''}, which was made "
                f"from image {from_volume}",
                hint="drop --no-base to record that base image, or add --force to record none",
            )
        return None
    if options.base:
        base_id = gateway.find_image(options.base).id
        if volume is not None and from_volume != base_id and not options.force:
            made = f"image {from_volume}" if from_volume else "no image (a blank volume)"
            raise InputError(
                f"--base {options.base} contradicts volume {volume.label}, which was made "
                f"from {made}",
                hint="drop --base to record the volume's own base, or add --force to record "
                "--base anyway",
            )
        return base_id
    if volume is not None:
        if from_volume:
            return from_volume
        raise InputError(
            f"volume {volume.label} was not made from an image, so it names no base image",
            hint="pass --no-base to record that the image has none (or --base BASE_IMAGE)",
        )
    if kept is not None:
        return kept.base_image
    raise InputError(
        "adopt needs the image's base: pass --base BASE_IMAGE, --no-base, or --volume VOLUME "
        "(a volume made from an image)",
        hint="--no-base records an image uploaded from a blank volume",
    )


def adopt(gateway: Gateway, image_ref: str, options: AdoptOptions, *, now: datetime) -> Stamp:
    """Stamp an image volimg did not make, so that audit covers it. No data moves.

    It never replaces another stamp unasked (``force``): not volimg's own upload's
    (``--keep`` would no longer know the image), not the Glance filter's, not an
    earlier adopt's; nor does it stamp an unfinished volimg upload, whose mark records
    how ``audit --fix`` finishes it. With ``force`` the fields not named are kept.
    """
    identity = gateway.identity()
    image = gateway.find_image(image_ref)
    existing = Stamp.from_properties(image.id, image.properties)
    mark = unfinished_mark(image.id, image.name, image.properties)
    if mark is not None and not options.force:
        raise InputError(
            f"image {image.id} is an unfinished volimg upload of volume "
            f"{mark.volume_id or UNKNOWN} (run {mark.run}): its mark says how to stamp it",
            hint=f"finish it as that run meant to: volimg audit --fix --image {image.id} "
            "(or add --force to adopt it instead)",
        )
    if existing is not None and not options.force:
        raise InputError(
            f"image {image.id} already carries a volimg stamp ({_stamp_words(existing)}); "
            "adopt does not replace it",
            hint="add --force to replace it; the fields you do not name are kept",
        )
    kept = existing if options.force else None
    volume = gateway.find_volume(options.volume) if options.volume else None
    base_id = _adopted_base(gateway, options, volume, kept)
    type_store: str | None = kept.type_store if kept is not None and volume is None else None
    if volume is not None and volume.volume_type:
        volume_type = gateway.volume_type(volume.volume_type, specs_visible=identity.is_admin)
        if volume_type is None or not volume_type.specs_visible:
            type_store = UNKNOWN
        else:
            type_store = volume_type.store
    replicate = kept.replicate if kept is not None else None
    if type_store not in (None, UNKNOWN):
        rule = Rule.TYPE_STORE
    elif base_id is not None and replicate is not False:
        rule = Rule.BASE_STORES
    else:
        rule = Rule.DEFAULT_STORE
    prune = options.prune_intent
    if prune is None:
        prune = kept.prune if kept is not None else False
    stamped_at = stamp_time(now)
    stamp = Stamp(
        image_id=image.id,
        stamped_by=StampedBy.ADOPT,
        stamped_at=stamped_at,
        source_volume=volume.id if volume is not None else kept.source_volume if kept else None,
        base_image=base_id,
        type_store=type_store,
        rule=rule,
        prune=prune,
        also_stores=kept.also_stores if kept is not None else (),
        period=kept.period if kept is not None else None,
        replicate=replicate,
        intent_by="adopt",
        intent_at=stamped_at,
    )
    wanted = stamp.properties()
    # Keys of a stamp the image inherited (or of the one replaced) that this stamp does
    # not set would otherwise read as part of it; the mark goes too.
    stale = tuple(k for k in (*MARK_KEYS, *STAMP_KEYS) if k in image.properties and k not in wanted)
    gateway.add_image_tag(image.id, TAG)  # first: never a stamp without the tag
    gateway.set_image_properties(image.id, wanted, remove=stale)
    current = gateway.get_image(image.id)
    if (
        current is None
        or TAG not in current.tags
        or Stamp.from_properties(image.id, current.properties) != stamp
    ):
        raise VolimgError(
            f"Glance did not keep the stamp on image {image.id}",
            hint="check the image's properties with 'openstack image show'",
        )
    return stamp
