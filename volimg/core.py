"""volimg as a library: gather facts, plan, run. The CLI is a thin layer over this.

    gateway = volimg.gateway.connect("mycloud", None)
    outcome = volimg.core.upload(gateway, "boot-vol", UploadOptions(), RunSettings())

Planning errors (unknown volume, bad state, unusable store) raise ``InputError``
before anything is changed. Everything after the first mutating request is in the
returned ``Outcome``, including the error that stopped it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from volimg.errors import ImageNameTaken, InputError
from volimg.gateway import Gateway
from volimg.model import GlanceInfo, Image, Volume, VolumeTypeInfo, counted

# The planner, the run's results and its events are imported by the functions that
# use them: `volimg stores` reads two things from Glance and must not pay for them
# (docs/performance.md, "Where the start-up time goes").
if TYPE_CHECKING:
    from volimg import events as ev
    from volimg.planner import (
        Plan,
        ReplicationOptions,
        ReplicationPlan,
        UploadFacts,
        UploadOptions,
    )
    from volimg.results import Outcome, RunSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


class SharedFacts:
    """Facts every volume of one run shares, read once however many volumes need them.

    Glance's stores, each volume type and each base image are the same for every
    volume in a batch (or every image in an audit); reading them once per run keeps
    the requests per volume flat. Thread-safe: batch workers share one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memo: dict[tuple[str, str], object] = {}
        self._reading: dict[tuple[str, str], threading.Lock] = {}

    def get(self, kind: str, key: str, read: Callable[[], T]) -> T:
        """The fact, read by the first worker that needs it while the others wait for it
        (four workers starting together would otherwise each read it)."""
        with self._lock:
            if (kind, key) in self._memo:
                return self._memo[(kind, key)]  # type: ignore[return-value]
            reading = self._reading.setdefault((kind, key), threading.Lock())
        with reading:
            with self._lock:
                if (kind, key) in self._memo:
                    return self._memo[(kind, key)]  # type: ignore[return-value]
            value = read()
            with self._lock:
                self._memo.setdefault((kind, key), value)
                return self._memo[(kind, key)]  # type: ignore[return-value]


# How many suffixed default names (``-2`` ...) an upload tries before it refuses.
DEFAULT_NAME_SUFFIXES = 8


def gather_upload_facts(
    gateway: Gateway,
    volume_ref: str | Volume,
    *,
    now: datetime,
    shared: SharedFacts | None = None,
    resuming: Image | None = None,
    image_name: str | None = None,
    check_name: bool = True,
) -> UploadFacts:
    """Read everything the plan depends on; change nothing.

    ``image_name`` is ``--name`` (None: the default name), looked up so the plan can
    warn when that name is already taken (``check_name``: a batch names its images
    itself and looks for its own earlier ones).
    """
    from volimg.planner import UploadFacts, default_image_name

    shared = shared or SharedFacts()
    identity = shared.get("identity", "", gateway.identity)
    volume = gateway.find_volume(volume_ref) if isinstance(volume_ref, str) else volume_ref
    log.info(
        "volume %s (%s): %s, type %s, made from image %s",
        volume.label,
        volume.id,
        volume.status,
        volume.volume_type or "-",
        volume.base_image_id or "-",
    )
    volume_type = None
    if volume.volume_type:
        type_name = volume.volume_type
        # Cinder shows image_service:store_id only to roles its policy allows
        # (volume_extension:types_extra_specs:read_sensitive, admin by default).
        volume_type = shared.get(
            "volume type",
            type_name,
            lambda: (
                gateway.volume_type(type_name, specs_visible=identity.is_admin)
                or VolumeTypeInfo(name=type_name, specs_visible=False)
            ),
        )
        log.info("volume type %s: image_service:store_id %s", volume_type.name, volume_type.store)
    base_id = volume.base_image_id
    base_image = (
        shared.get("image", base_id, lambda: gateway.get_image(base_id)) if base_id else None
    )
    if base_image is not None:
        log.info("base image %s: stores %s", base_image.id, ",".join(base_image.stores) or "-")
    glance = shared.get("glance", "", gateway.glance_info)
    log.info(
        "Glance stores %s (default %s), import methods %s",
        ",".join(s.id for s in glance.stores) or "-",
        glance.default_store,
        ",".join(glance.import_methods),
    )
    same_name: tuple[str, ...] = ()
    default_name: str | None = None
    if check_name and resuming is None:
        name = image_name or default_image_name(volume, now)
        same_name = tuple(sorted(image.id for image in gateway.images_named(name)))
        # A default name taken already gets a suffix, never a silent duplicate.
        for suffix in range(2, DEFAULT_NAME_SUFFIXES + 2):
            if image_name or not same_name:
                break
            default_name = f"{default_image_name(volume, now)}-{suffix}"
            same_name = tuple(sorted(i.id for i in gateway.images_named(default_name)))
    return UploadFacts(
        volume=volume,
        volume_type=volume_type,
        base_image=base_image,
        glance=glance,
        identity=identity,
        cinder_max_microversion=shared.get("cinder", "", gateway.cinder_max_microversion),
        requested_at=now,
        resuming=resuming,
        same_name_images=same_name,
        default_name=default_name,
    )


def time_left(settings: RunSettings) -> Callable[[], float]:
    """What is left of the run's --timeout, counted from now: the reads that gather the
    facts are bounded by it (``Gateway.within``) as the steps are by the job's deadline,
    so that no request outlives --timeout by the HTTP timeout."""
    started = settings.clock.monotonic()
    return lambda: settings.timeout - (settings.clock.monotonic() - started)


def plan(gateway: Gateway, volume_ref: str, options: UploadOptions, *, now: datetime) -> Plan:
    """The plan ``volimg upload`` would carry out, with a reason for each decision."""
    from volimg.planner import plan_upload

    facts = gather_upload_facts(gateway, volume_ref, now=now, image_name=options.image_name)
    return plan_upload(facts, options)


def upload(
    gateway: Gateway,
    volume_ref: str,
    options: UploadOptions,
    settings: RunSettings,
    *,
    dry_run: bool = False,
    emit: ev.EventSink | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> Outcome:
    """Upload a volume to an image and place the image where the plan says.

    ``emit`` hears the run's events (None: nobody). ``on_plan`` sees the plan before
    anything changes (``volimg demo`` prints it).
    """
    with gateway.within(time_left(settings)):
        the_plan = plan(gateway, volume_ref, options, now=settings.clock.wall())
    if dry_run:
        from volimg.results import planned

        return planned("upload", the_plan)
    if on_plan is not None:
        on_plan(the_plan)
    _refuse_a_taken_name(the_plan, options)
    from volimg import events as ev
    from volimg.executor import run_upload  # not for plan, stores or --dry-run

    return run_upload(gateway, the_plan, settings, emit if emit is not None else ev.ignore)


def _refuse_a_taken_name(the_plan: Plan, options: UploadOptions) -> None:
    """A third image called ``golden`` makes ``volimg replicate golden`` ambiguous for
    everyone: refuse, before anything is made, unless told otherwise."""
    taken = the_plan.facts.same_name_images
    if not taken or options.allow_duplicate_name:
        return
    name = the_plan.upload.image_name
    count = counted(len(taken), "image")
    if options.image_name:
        hint = "choose another --name, or pass --allow-duplicate-name to make it anyway"
    else:  # the default name carries the time to the second
        hint = "run again in a second (the default name carries the time), or pass --name"
    raise ImageNameTaken(
        f"the image name {name!r} is already taken by {count} visible to you "
        f"({', '.join(taken)}); nothing was created",
        hint=hint,
    )


def plan_copy(
    gateway: Gateway, image_ref: str, like_ref: str | None, options: ReplicationOptions
) -> ReplicationPlan:
    """The plan ``volimg replicate`` would carry out."""
    from volimg.planner import ReplicationFacts, plan_replication

    identity = gateway.identity()
    image = gateway.find_image(image_ref)
    like = gateway.find_image(like_ref) if like_ref else None
    facts = ReplicationFacts(
        image=image, like=like, glance=gateway.glance_info(), identity=identity
    )
    return plan_replication(facts, options)


def replicate(
    gateway: Gateway,
    image_ref: str,
    like_ref: str | None,
    options: ReplicationOptions,
    settings: RunSettings,
    *,
    dry_run: bool = False,
    emit: ev.EventSink | None = None,
) -> Outcome:
    """Copy an existing image to the stores of another image, or to named stores.

    ``emit`` hears the run's events (None: nobody).
    """
    with gateway.within(time_left(settings)):
        the_plan = plan_copy(gateway, image_ref, like_ref, options)
    if dry_run:
        from volimg.results import planned

        return planned("replicate", the_plan)
    if not the_plan.image.is_active and not settings.wait:
        raise InputError(
            f"image {the_plan.image.id} is {the_plan.image.status}: --no-wait cannot copy an "
            "image that is not active yet",
            hint="drop --no-wait and volimg waits for the image, then copies it",
        )
    from volimg import events as ev
    from volimg.executor import run_replication

    asked = [f"--like {like_ref}"] if like_ref else []
    asked += [f"--store {store}" for store in options.stores]
    asked += ["--prune"] if options.prune else []
    return run_replication(
        gateway,
        the_plan,
        settings,
        emit if emit is not None else ev.ignore,
        intent_by=" ".join(["replicate", *asked]),
    )


def stores(gateway: Gateway) -> GlanceInfo:
    """Glance's stores and import methods."""
    return gateway.glance_info()
