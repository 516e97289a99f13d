"""The JSON documents of the fleet commands: a batch of uploads and an audit.

``-f json`` prints one document (``batch_doc``, ``audit_doc``); ``-f ndjson`` one line
per volume, finding or repair as it comes, then a summary line (``ndjson_line``).
docs/json.md is their contract. A batch's volume carries the single upload's fields
(``volimg.documents.outcome_doc``) plus its own. Nothing is printed here:
``volimg.fleet_render`` writes them.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from volimg.audit import REPAIR_RESULTS, AuditOutcome, Finding, Repair
from volimg.batch import BatchOutcome, VolumeResult
from volimg.documents import _volume_doc, document, error_doc, outcome_doc
from volimg.model import format_time

if TYPE_CHECKING:  # the stamp and the mark are read, not built, here
    from volimg.provenance import Mark, Stamp

# --- a batch --------------------------------------------------------------------------


def volume_doc(result: VolumeResult) -> dict[str, Any]:
    """One volume of a batch: the single upload's fields, plus the batch's own."""
    doc: dict[str, Any] = {"ref": result.ref, "result": result.result, "reason": result.reason}
    if result.outcome is not None:
        single = outcome_doc(result.outcome)
        for key in ("volimg", "schema_version", "command", "result"):
            single.pop(key)
        doc.update(single)
    else:
        doc.update(
            volume=_volume_doc(result.volume),
            base_image=None,
            volume_type_store=None,
            plan=None,
            image=None,
            replication={},
            details={},
            next_steps=[],
            copy_slot_wait_seconds=None,
            glance_limits_hit=[],
        )
    doc["error"] = error_doc(result.error)
    doc["retention"] = [
        {
            "image_id": a.image_id,
            "name": a.name,
            "created_at": _moment(a.created_at),
            "action": a.action,
            "detail": a.detail,
        }
        for a in result.retention
    ]
    doc["seconds"] = round(result.seconds, 3)
    doc["uploaded_bytes"] = result.uploaded_bytes
    doc["skip_reason"] = result.skip_reason
    return doc


def summary_doc(outcome: BatchOutcome) -> dict[str, Any]:
    """The batch's summary: the ``summary`` of ``-f json``, the last line of ``-f ndjson``."""
    return {
        "result": outcome.result,
        "exit_code": int(outcome.exit_code),
        "dry_run": outcome.dry_run,
        "period": outcome.period,
        "selected": outcome.selected,
        "volumes": len(outcome.results),
        "counts": outcome.counts,
        "skipped": outcome.skipped,
        "not_started": list(outcome.not_started),
        "stale": None if outcome.stale is None else list(outcome.stale),
        "stale_after_seconds": outcome.stale_after,
        "started_at": format_time(outcome.started_at),
        "seconds": round(outcome.seconds, 3),
        "uploaded_bytes": outcome.uploaded_bytes,
        "stop_reason": outcome.stop_reason,
        "error": error_doc(outcome.stopped),
        "next_steps": list(outcome.next_steps),
    }


def batch_doc(outcome: BatchOutcome) -> dict[str, Any]:
    """The one JSON document of a batch (``-f json``), also when it stopped early."""
    return document(
        "upload",
        outcome.result,
        mode="batch",
        dry_run=outcome.dry_run,
        error=error_doc(outcome.stopped),
        volumes=[volume_doc(r) for r in outcome.results],
        next_steps=list(outcome.next_steps),
        summary=summary_doc(outcome),
    )


def _moment(value: datetime | str | None) -> str | None:
    """A moment in a document: ``2026-12-03T11:41:06Z`` (``volimg.model.format_time``),
    whatever form Glance, Cinder or another writer of the stamp gave it in; None stays
    None."""
    return format_time(value) if value else None


def ndjson_line(kind: str, doc: dict[str, Any]) -> str:
    return json.dumps({"type": kind, **doc}, separators=(",", ":"))


# --- an audit -------------------------------------------------------------------------


def stamp_doc(stamp: Stamp) -> dict[str, Any]:
    """A stamp as the audit shows it (docs/provenance.md names every field)."""
    return {
        "stamped_by": stamp.stamped_by.value,
        "stamped_at": _moment(stamp.stamped_at),
        "source_volume": stamp.source_volume,
        "base_image": stamp.base_image,
        "type_store": stamp.type_store,
        "rule": stamp.rule.value,
        "prune": stamp.prune,
        "also_stores": list(stamp.also_stores),
        "replicate": stamp.replicate,
        "intent_by": stamp.intent_by or None,
        "intent_at": _moment(stamp.intent_at),
        "period": stamp.period,
    }


def mark_doc(mark: Mark) -> dict[str, Any]:
    """The mark of an unfinished image: the run, and the stamp it meant to write."""
    return {
        "run": mark.run,
        "marked_at": _moment(mark.marked_at),
        "source_volume": mark.volume_id,
        "intended": stamp_doc(mark.intended),
    }


def finding_doc(finding: Finding) -> dict[str, Any]:
    image = finding.image
    return {
        "image": {
            "id": image.id,
            "name": image.name,
            "status": image.status,
            "stores": list(image.stores),
        },
        "finding": finding.finding,
        "reason": finding.reason,
        "expected_stores": list(finding.expected),
        "missing": list(finding.missing),
        "extra": list(finding.extra),
        "takeover_at": _moment(finding.takeover_at),
        "stamp": stamp_doc(finding.stamp) if finding.stamp is not None else None,
        "mark": mark_doc(finding.mark) if finding.mark is not None else None,
    }


def repair_doc(repair: Repair) -> dict[str, Any]:
    outcome = repair.outcome
    return {
        "image_id": repair.image_id,
        "finding": repair.finding,
        "result": repair.result,
        "detail": repair.detail,
        "replication": {r.store: r.outcome for r in outcome.stores} if outcome else {},
        "stores": list(outcome.image.stores) if outcome and outcome.image else None,
        "error": error_doc(outcome.error) if outcome else None,
        "next_step": repair.next_step,
    }


def audit_summary_doc(outcome: AuditOutcome) -> dict[str, Any]:
    repairs = Counter(r.result for r in outcome.repairs)
    return {
        "result": outcome.result,
        "exit_code": outcome.exit_code,
        "images": len(outcome.findings),
        "counts": outcome.counts,
        "remaining": outcome.remaining,
        "repairs": {result: repairs.get(result, 0) for result in REPAIR_RESULTS},
        "fix": outcome.fix,
        "dry_run": outcome.dry_run,
        "audited_at": format_time(outcome.audited_at),
        "seconds": round(outcome.seconds, 3),
        "error": error_doc(outcome.interrupted),
    }


def audit_doc(outcome: AuditOutcome) -> dict[str, Any]:
    """The one JSON document of ``volimg audit``."""
    return document(
        "audit",
        outcome.result,
        findings=[finding_doc(f) for f in outcome.findings],
        repairs=[repair_doc(r) for r in outcome.repairs],
        next_steps=list(outcome.next_steps),
        summary=audit_summary_doc(outcome),
        error=error_doc(outcome.interrupted),
    )
