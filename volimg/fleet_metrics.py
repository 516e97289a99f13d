"""The node_exporter textfiles of the fleet commands: a batch of uploads and an audit.

Which metrics, in which order, with which HELP text: ``BATCH_FAMILIES`` and
``AUDIT_FAMILIES`` are the one definition, and docs/cron.md's example file is rendered
from them (tests/unit/test_cron_doc.py checks it). ``volimg.metrics`` writes the file.

A batch writes its file twice: when it starts (``write_batch_start``: the start time,
``volimg_batch_running 1``, the rest carried over from the previous file), so that a
run killed with SIGKILL or hung for hours is visible, and when it ends, however it
ends (``write_batch_end``). A dry run writes nothing.

Labels are bounded: a result, a reason class, a Glance store; never a volume or an
image (docs/cron.md, tests/metrics_rules.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from volimg.audit import BASE_GONE, OK, REPAIR_RESULTS, REPAIRED, AuditOutcome
from volimg.batch import STOP_LOCK, STOP_REASONS, BatchOutcome
from volimg.metrics import Sample, SeriesKey, update_textfile, write_textfile
from volimg.model import Image, parse_time


@dataclass(frozen=True)
class Family:
    """A metric family: its name, HELP text and, if it has one, its label."""

    name: str
    help: str
    label: str | None = None


# --- a batch -------------------------------------------------------------------------

LAST_START = Family(
    "volimg_batch_last_start_timestamp_seconds",
    "When the last volimg batch run started (Unix time).",
)
RUNNING = Family(
    "volimg_batch_running",
    "1 from the start of a volimg batch run until it ends; still 1 long after the start "
    "time: the run was killed (SIGKILL, out of memory) or hangs.",
)
LAST_RUN = Family(
    "volimg_batch_last_run_timestamp_seconds",
    "When the last volimg batch run ended (Unix time), however it ended.",
)
DURATION = Family("volimg_batch_duration_seconds", "How long the last volimg batch run took.")
EXIT_CODE = Family(
    "volimg_batch_exit_code",
    "Exit code of the last volimg batch run (0 ok, 1 failed, 2 bad input or empty "
    "selection, 3 partial, 4 timed out, 5 refused, 75 locked out, 130/143 interrupted, "
    "141 stdout closed).",
)
STOPPED = Family(
    "volimg_batch_stopped",
    "1 for the reason that stopped the last volimg batch run before it finished, 0 for "
    "the others; all 0 when it ran to its end.",
    "reason",
)
LAST_SUCCESS = Family(
    "volimg_batch_last_success_timestamp_seconds",
    "When a volimg batch run last ended with at least one volume selected and every "
    "selected volume ok or already-done (Unix time); 0: never.",
)
SELECTED = Family(
    "volimg_batch_selected_volumes",
    "Volumes the last volimg batch run selected (absent: it stopped before selecting).",
)
VOLUMES = Family(
    "volimg_batch_volumes", "Volumes of the last volimg batch run, by result.", "result"
)
SKIPPED = Family(
    "volimg_batch_skipped_volumes",
    "Skipped volumes of the last volimg batch run, by reason.",
    "reason",
)
STALE = Family(
    "volimg_batch_stale_volumes",
    "Selected volumes whose newest active volimg image is older than "
    "volimg_batch_stale_after_seconds (absent: the last run did not check).",
)
STALE_AFTER = Family(
    "volimg_batch_stale_after_seconds",
    "The age beyond which the last volimg batch run counted a volume's newest image stale.",
)
UPLOADED = Family(
    "volimg_batch_uploaded_bytes", "Bytes of the images the last volimg batch run uploaded."
)

BATCH_FAMILIES = (
    LAST_START,
    RUNNING,
    LAST_RUN,
    DURATION,
    EXIT_CODE,
    STOPPED,
    LAST_SUCCESS,
    SELECTED,
    VOLUMES,
    SKIPPED,
    STALE,
    STALE_AFTER,
    UPLOADED,
)
# What a locked-out run keeps from the file: they describe the run that holds the lock
# (or the last one that ran), not the one that did nothing.
_KEPT_WHEN_LOCKED_OUT = (
    LAST_START,
    RUNNING,
    SELECTED,
    VOLUMES,
    SKIPPED,
    STALE,
    STALE_AFTER,
    UPLOADED,
)


def _sample(family: Family, value: float, label: str | None = None) -> Sample:
    labels = {family.label: label} if family.label and label is not None else {}
    return Sample(family.name, value, labels, help=family.help)


def _carried(family: Family, previous: Mapping[SeriesKey, float]) -> list[Sample]:
    """The family's samples as the previous file had them (labels of its own kind only)."""
    found = []
    for (name, labels), value in previous.items():
        if name != family.name:
            continue
        if family.label is None and not labels:
            found.append(_sample(family, value))
        elif family.label is not None and len(labels) == 1 and labels[0][0] == family.label:
            found.append(_sample(family, value, labels[0][1]))
    return found


def _previous_value(family: Family, previous: Mapping[SeriesKey, float]) -> float | None:
    return previous.get((family.name, ()))


def start_samples(started_at: datetime, previous: Mapping[SeriesKey, float]) -> list[Sample]:
    """What the file says while a run is under way: it started; the rest as it was."""
    samples: list[Sample] = []
    for family in BATCH_FAMILIES:
        if family is LAST_START:
            samples.append(_sample(family, started_at.timestamp()))
        elif family is RUNNING:
            samples.append(_sample(family, 1))
        elif family is LAST_SUCCESS:
            samples.append(_sample(family, _previous_value(family, previous) or 0.0))
        else:
            samples += _carried(family, previous)
    return samples


def batch_samples(
    outcome: BatchOutcome, *, exit_code: int, previous: Mapping[SeriesKey, float]
) -> list[Sample]:
    """The file once a run has ended: ``exit_code`` is the process's (141 included).

    The last success time moves only when ``outcome.succeeded``; otherwise it is the
    previous file's, or 0 when there is none, so that the dead-man's rule has a value
    from the very first run on.
    """
    ended = outcome.started_at.timestamp() + outcome.seconds
    locked_out = outcome.stop_reason == STOP_LOCK
    success = ended if outcome.succeeded else _previous_value(LAST_SUCCESS, previous) or 0.0
    samples: list[Sample] = []
    for family in BATCH_FAMILIES:
        if locked_out and family in _KEPT_WHEN_LOCKED_OUT:
            samples += _carried(family, previous)
        elif family is LAST_START:
            samples.append(_sample(family, outcome.started_at.timestamp()))
        elif family is RUNNING:
            samples.append(_sample(family, 0))
        elif family is LAST_RUN:
            samples.append(_sample(family, ended))
        elif family is DURATION:
            samples.append(_sample(family, outcome.seconds))
        elif family is EXIT_CODE:
            samples.append(_sample(family, exit_code))
        elif family is STOPPED:
            samples += [
                _sample(family, int(reason == outcome.stop_reason), reason)
                for reason in STOP_REASONS
            ]
        elif family is LAST_SUCCESS:
            samples.append(_sample(family, success))
        elif family is SELECTED:
            if outcome.selected is not None:
                samples.append(_sample(family, outcome.selected))
        elif family is VOLUMES:
            samples += [_sample(family, n, result) for result, n in outcome.counts.items()]
        elif family is SKIPPED:
            samples += [_sample(family, n, reason) for reason, n in outcome.skipped.items()]
        elif family is STALE:
            if outcome.stale is not None:
                samples.append(_sample(family, len(outcome.stale)))
        elif family is STALE_AFTER:
            if outcome.stale_after is not None:
                samples.append(_sample(family, outcome.stale_after))
        elif family is UPLOADED:
            samples.append(_sample(family, outcome.uploaded_bytes))
    return samples


def write_batch_start(path: Path, started_at: datetime) -> None:
    """The file while a run is under way (``start_samples``)."""
    update_textfile(path, lambda previous: start_samples(started_at, previous))


def write_batch_end(path: Path, outcome: BatchOutcome, *, exit_code: int) -> None:
    """The file once a run has ended (``batch_samples``), atomically."""
    update_textfile(
        path, lambda previous: batch_samples(outcome, exit_code=exit_code, previous=previous)
    )


def write_batch_metrics(path: Path, outcome: BatchOutcome) -> None:
    """The file of a run that ended with the outcome's own exit code."""
    write_batch_end(path, outcome, exit_code=int(outcome.exit_code))


# --- an audit --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Checked:
    """One audited image after the audit's repairs: where it is, what it still lacks."""

    image: Image
    missing: tuple[str, ...]
    age: float  # seconds since Glance created it, at the audit
    unfixed: bool  # a finding other than ok / base-gone that no repair fixed


def _checked(outcome: AuditOutcome) -> list[_Checked]:
    repaired = {r.image_id: r for r in outcome.repairs}
    checked: list[_Checked] = []
    for finding in outcome.findings:
        repair = repaired.get(finding.image.id)
        image = finding.image
        if repair is not None and repair.outcome is not None and repair.outcome.image is not None:
            image = repair.outcome.image
        fixed = repair is not None and repair.result == REPAIRED
        born = parse_time(finding.image.created_at)
        checked.append(
            _Checked(
                image=image,
                missing=() if fixed else tuple(s for s in finding.missing if s not in image.stores),
                age=max(0.0, (outcome.audited_at - born).total_seconds()) if born else 0.0,
                unfixed=finding.finding not in (OK, BASE_GONE) and not fixed,
            )
        )
    return checked


def audit_samples(outcome: AuditOutcome) -> list[Sample]:
    """The audit's textfile: totals, findings, repairs, and one series per Glance store.

    The stores are every store the audit met (where images are, should be, or lack a
    copy): one series each, bounded by the cloud's Glance stores.
    """
    repairs = Counter(r.result for r in outcome.repairs)
    checked = _checked(outcome)
    stores = sorted(
        {s for f in outcome.findings for s in (*f.image.stores, *f.expected, *f.missing)}
        | {s for c in checked for s in c.image.stores}
    )
    samples = [
        Sample(
            "volimg_audit_last_run_timestamp_seconds",
            outcome.audited_at.timestamp() + outcome.seconds,
            help="When the last volimg audit ended (Unix time).",
        ),
        Sample(
            "volimg_audit_duration_seconds",
            outcome.seconds,
            help="How long the last volimg audit took.",
        ),
        Sample(
            "volimg_audit_images",
            len(outcome.findings),
            help="volimg-stamped images the last audit looked at.",
        ),
        Sample(
            "volimg_audit_remaining_findings",
            outcome.remaining,
            help="Images still not where the rules say after the last audit (and its repairs).",
        ),
        *(
            Sample(
                "volimg_audit_findings",
                count,
                labels={"finding": finding},
                help="Images of the last volimg audit, by finding (before repairs).",
            )
            for finding, count in outcome.counts.items()
        ),
        *(
            Sample(
                "volimg_audit_repairs",
                repairs.get(result, 0),
                labels={"result": result},
                help="Repairs of the last volimg audit --fix, by result.",
            )
            for result in REPAIR_RESULTS
        ),
        Sample(
            "volimg_audit_oldest_unfixed_finding_age_seconds",
            max((c.age for c in checked if c.unfixed), default=0.0),
            help="Age of the oldest image the last volimg audit left with a finding (0: none).",
        ),
    ]
    return samples + _per_store(stores, checked)


def _per_store(stores: Iterable[str], checked: Iterable[_Checked]) -> list[Sample]:
    images: Counter[str] = Counter()
    size: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    oldest: dict[str, float] = {}
    for item in checked:
        for store in item.image.stores:
            images[store] += 1
            size[store] += item.image.size or 0
        for store in item.missing:
            missing[store] += 1
            oldest[store] = max(oldest.get(store, 0.0), item.age)
    families: tuple[tuple[str, Mapping[str, float], str], ...] = (
        ("volimg_audit_store_images", images, "volimg-stamped images in this Glance store."),
        (
            "volimg_audit_store_bytes",
            size,
            "Bytes of the volimg-stamped images in this Glance store.",
        ),
        (
            "volimg_audit_store_missing_copies",
            missing,
            "Stamped images that should be in this Glance store and are not, after the "
            "last audit's repairs.",
        ),
        (
            "volimg_audit_store_oldest_missing_age_seconds",
            oldest,
            "Age of the oldest stamped image still missing its copy in this Glance store "
            "(0: none).",
        ),
    )
    return [
        Sample(name, values.get(store, 0), {"store": store}, help=text)
        for name, values, text in families
        for store in stores
    ]


def write_audit_metrics(path: Path, outcome: AuditOutcome) -> None:
    """The node_exporter textfile of an audit (docs/audit.md, docs/cron.md)."""
    write_textfile(path, audit_samples(outcome))
