"""``volimg audit``: is every volimg image where the rules say, right now? ``--fix`` it.

The expected stores come from the same planner as ``volimg upload``, fed with the cloud
as it is now: the base image's current stores, the volume type's store (or the one the
stamp recorded, when the volume is gone or its type's extra specs are hidden), and the
prune intent of the stamp. Repairs are the upload's own steps (``volimg.executor``:
copy-image, prune), run ``concurrency`` images at a time; what they may remove is
``volimg.safety``'s to say (docs/safety.md), never a rule of this package's own.

Audit also finds the images a volimg run created and never finished (killed between
Cinder's answer and the stamp, ``--no-wait``): they carry the run's mark
(``volimg.provenance.Mark``) and no stamp, and ``--fix`` stamps them as their mark
records before it judges their placement like any other image's.

Cost: two filtered, paged listings (the tag, the mark), one listing of the volumes,
and each base image and volume type read once however many images share it.

``volimg adopt`` stamps an image volimg did not make, so that audit covers it.

The package, by concern; a module imports only the ones below it, never one beside it::

    __init__        run_audit: find, then --fix; AuditOutcome and its exit code
       |
    repair          --fix: Repair, finish_image, the repairs, the stop on a signal
       |
    findings        Finding, the cloud read once, expected_placement, assess
    listing         AuditOptions, audited_images: the stamped and the marked images

    adoption        volimg adopt and its refusals; imports nothing of the package

- ``findings``: the findings (``FINDINGS``, most pressing first), ``Finding``, the
  cloud read once (``_Cloud``), ``expected_placement``, ``assess`` and its reasons;
  it reads the cloud and changes nothing.
- ``listing``: ``AuditOptions`` (and the ``audit --fix`` line that repeats them) and
  ``audited_images``: the stamped images and the unfinished, marked ones.
- ``repair``: ``REPAIR_RESULTS``, ``Repair``, ``finish_image``, the repairs run
  ``concurrency`` at a time, the stop on a signal.
- ``adoption``: ``AdoptOptions``, ``adopt`` and its refusals (named so that the
  function ``volimg.audit.adopt`` does not shadow a module).

``run_audit`` and ``AuditOutcome`` are here, where finding and repairing meet. Every
public name of the former module ``volimg/audit.py`` is re-exported, so ``from
volimg.audit import ...`` keeps working: the commands, the fleet renderers and the
tests import from here, the package's own modules from the submodule.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from volimg import events as ev
from volimg.audit.adoption import AdoptOptions, adopt
from volimg.audit.findings import (
    BASE_GONE,
    EXTRA,
    FAILED_IMPORT,
    FINDINGS,
    IMPORTING,
    MISSING,
    NOT_ACTIVE,
    OK,
    SETTLED,
    STALE_LOCK,
    UNFINISHED,
    UNFIXABLE,
    Finding,
    _Cloud,
    assess,
    expected_placement,
    no_replicate,
    unique_keep,
)
from volimg.audit.listing import AuditOptions, audited_images
from volimg.audit.repair import (
    INTERRUPTED,
    LEFT_ALONE,
    NOT_STARTED,
    NOT_YET,
    REPAIR_FAILED,
    REPAIR_RESULTS,
    REPAIRED,
    WOULD_REPAIR,
    Repair,
    _repair_all,
    finish_image,
)
from volimg.errors import InputError, Interrupted
from volimg.gateway import Gateway
from volimg.model import Image
from volimg.provenance import Mark, Stamp, unfinished_mark
from volimg.results import RunSettings


@dataclass(frozen=True, kw_only=True)
class AuditOutcome:
    findings: tuple[Finding, ...]
    repairs: tuple[Repair, ...] = ()
    fix: bool = False
    dry_run: bool = False
    audited_at: datetime
    seconds: float = 0.0
    interrupted: Interrupted | None = None
    next_steps: tuple[str, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        """Images per finding; every finding present (0 when none)."""
        seen = Counter(f.finding for f in self.findings)
        return {finding: seen.get(finding, 0) for finding in FINDINGS}

    @property
    def remaining(self) -> int:
        """Findings other than ok (and base-gone, which is not an error) still open."""
        repaired = {r.image_id for r in self.repairs if r.result == REPAIRED}
        return sum(
            1 for f in self.findings if f.finding not in SETTLED and f.image.id not in repaired
        )

    @property
    def exit_code(self) -> int:
        """0: everything ok or repaired; 3: findings remain or a repair failed;
        130/143: a signal stopped ``--fix``."""
        if self.interrupted is not None:
            return int(self.interrupted.exit_code)
        failed = any(r.result == REPAIR_FAILED for r in self.repairs)
        return 3 if self.remaining or failed else 0

    @property
    def result(self) -> str:
        """ok | findings | interrupted (docs/json.md)."""
        if self.interrupted is not None:
            return "interrupted"
        return "ok" if self.exit_code == 0 else "findings"


def run_audit(
    gateway: Gateway,
    options: AuditOptions,
    settings: RunSettings,
    emit: ev.EventSink = ev.ignore,
) -> AuditOutcome:
    """Find each volimg image's state; with ``fix``, repair what can be repaired."""
    clock = settings.clock
    started, audited_at = clock.monotonic(), clock.wall()
    identity = gateway.identity()
    images = audited_images(gateway, options, identity)
    findings: list[Finding] = []
    unstamped: list[str] = []
    judged: list[tuple[Image, Stamp | None, Mark | None]] = []
    for image in images:
        stamp = Stamp.from_properties(image.id, image.properties)
        mark = unfinished_mark(image.id, image.name, image.properties)
        if stamp is None and mark is None:
            unstamped.append(image.id)
        else:
            judged.append((image, stamp, mark))
    if options.images and unstamped:
        raise InputError(
            f"image {', '.join(unstamped)} carries no volimg stamp of its own, so volimg "
            "cannot tell where it belongs",
            hint="stamp it first: volimg adopt IMAGE --base BASE_IMAGE | --no-base | --volume VOLUME",
        )
    sources = [
        (mark.volume_id if mark is not None else stamp.source_volume if stamp else None)
        for _, stamp, mark in judged
    ]
    volumes = (
        {v.id: v for v in gateway.list_volumes(all_projects=options.all_projects)}
        if any(sources)
        else {}
    )
    cloud = _Cloud(gateway, identity, gateway.glance_info(), volumes)
    for image, stamp, mark in judged:
        finding = assess(cloud, image, stamp, now=audited_at, mark=mark)
        findings.append(finding)
        emit(
            ev.ItemFinished(
                elapsed=clock.monotonic() - started,
                subject=image.name or image.id,
                result=finding.finding,
                reason=finding.reason,
            )
        )
    repairs: list[Repair] = []
    interrupted: Interrupted | None = None
    if options.fix:
        repairs, interrupted = _repair_all(gateway, cloud, findings, options, settings, emit)
    steps = [r.next_step for r in repairs if r.next_step]
    return AuditOutcome(
        findings=tuple(findings),
        repairs=tuple(repairs),
        fix=options.fix,
        dry_run=options.dry_run,
        audited_at=audited_at,
        seconds=clock.monotonic() - started,
        interrupted=interrupted,
        next_steps=tuple(dict.fromkeys(steps)),
    )


__all__ = [
    "BASE_GONE",
    "EXTRA",
    "FAILED_IMPORT",
    "FINDINGS",
    "IMPORTING",
    "INTERRUPTED",
    "LEFT_ALONE",
    "MISSING",
    "NOT_ACTIVE",
    "NOT_STARTED",
    "NOT_YET",
    "OK",
    "REPAIRED",
    "REPAIR_FAILED",
    "REPAIR_RESULTS",
    "SETTLED",
    "STALE_LOCK",
    "UNFINISHED",
    "UNFIXABLE",
    "WOULD_REPAIR",
    "AdoptOptions",
    "AuditOptions",
    "AuditOutcome",
    "Finding",
    "Repair",
    "adopt",
    "assess",
    "audited_images",
    "expected_placement",
    "finish_image",
    "no_replicate",
    "run_audit",
    "unique_keep",
]
