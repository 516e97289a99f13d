"""The JSON documents of a single upload, plan, replicate, stores, adopt or doctor (``-f json``).

docs/json.md is their contract: every document starts with the same keys
(``document``), then its own. Plain dicts of model values, nothing printed here:
``volimg.render`` writes them (``dump_json``) and draws the same facts as rows for
people; ``volimg.fleet_documents`` builds a batch's and an audit's documents from these.
"""

from __future__ import annotations

import json
from typing import Any

from volimg import __version__
from volimg.doctor import DoctorReport
from volimg.errors import VolimgError
from volimg.model import GlanceInfo, Image, Volume
from volimg.planner import Plan, ReplicationPlan
from volimg.results import Outcome

SCHEMA_VERSION = 1


def document(
    command: str, result: str, *, mode: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A JSON document: every one starts with the same keys (docs/json.md), then its own."""
    head: dict[str, Any] = {
        "volimg": __version__,
        "schema_version": SCHEMA_VERSION,
        "command": command,
    }
    if mode is not None:
        head["mode"] = mode
    return {**head, "result": result, **fields}


def _volume_doc(volume: Volume | None) -> dict[str, Any] | None:
    if volume is None:
        return None
    return {
        "id": volume.id,
        "name": volume.name,
        "status": volume.status,
        "volume_type": volume.volume_type,
        "size": volume.size,
    }


def _image_doc(image: Image | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {
        "id": image.id,
        "name": image.name,
        "status": image.status,
        "stores": list(image.stores),
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "visibility": image.visibility,
        "size": image.size,
        "checksum": image.checksum,
    }


def _base_doc(image: Image | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {"id": image.id, "name": image.name, "stores": list(image.stores)}


def error_doc(error: VolimgError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "type": error.kind,
        "exit_code": int(error.exit_code),
        "message": error.message,
        "hint": error.hint,
    }


def plan_doc(plan: Plan | ReplicationPlan) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "replicate_to": list(plan.replicate_to),
        "prune": list(plan.prune_from),
        "target_stores": list(plan.placement.target_stores),
        "expected_stores": list(plan.expected_stores),
        "all_stores_must_succeed": plan.placement.all_stores_must_succeed,
        "reasons": [
            {"topic": d.topic, "decision": d.outcome, "reason": d.reason} for d in plan.decisions
        ],
    }
    if isinstance(plan, Plan):
        doc = {
            "image_name": plan.upload.image_name,
            "image_name_taken_by": list(plan.facts.same_name_images),
            "upload_store": plan.upload_store,
            "cinder_microversion": plan.upload.microversion,
            "cinder_headers": dict(plan.cinder_headers),
            "upload_request": {
                k: v
                for k, v in {
                    "image_name": plan.upload.image_name,
                    "force": plan.upload.force,
                    "disk_format": plan.upload.disk_format,
                    "container_format": plan.upload.container_format,
                    "visibility": plan.upload.visibility,
                    "protected": plan.upload.protected,
                }.items()
                if v is not None
            },
            **doc,
        }
    return doc


def outcome_doc(outcome: Outcome) -> dict[str, Any]:
    """The one JSON document of ``upload``, ``plan`` and ``replicate``."""
    plan = outcome.plan
    if isinstance(plan, Plan):
        volume, base, type_store = plan.volume, plan.base_image, plan.volume_type_store
    else:
        volume, base, type_store = None, plan.like, None
    return document(
        outcome.command,
        outcome.result,
        volume=_volume_doc(volume),
        base_image=_base_doc(base),
        volume_type_store=type_store,
        plan=plan_doc(plan),
        image=None if outcome.dry_run and isinstance(plan, Plan) else _image_doc(outcome.image),
        replication={r.store: r.outcome for r in outcome.stores},
        details={r.store: r.detail for r in outcome.stores if r.detail},
        error=error_doc(outcome.error),
        next_steps=list(outcome.next_steps),
        copy_slot_wait_seconds=(
            None if outcome.copy_slot_wait is None else round(outcome.copy_slot_wait, 3)
        ),
        glance_limits_hit=list(outcome.limits_hit),
    )


# Each command's own keys and their value when nothing applies: a command's failure
# document has the same top-level keys as its success document (docs/json.md), so
# that ``jq '.replication'`` or ``.next_steps`` in CI works whichever way it ended.
_OUTCOME_KEYS: dict[str, Any] = {
    "volume": None,
    "base_image": None,
    "volume_type_store": None,
    "plan": None,
    "image": None,
    "replication": {},
    "details": {},
    "next_steps": [],
    "copy_slot_wait_seconds": None,
    "glance_limits_hit": [],
}
EMPTY_FIELDS: dict[str, dict[str, Any]] = {
    "upload": _OUTCOME_KEYS,
    "plan": _OUTCOME_KEYS,
    "replicate": _OUTCOME_KEYS,
    "stores": {
        "multi_store": None,
        "default_store": None,
        "copy_image_enabled": None,
        "import_methods": [],
        "stores": [],
    },
    "adopt": {"image_id": None, "stamp": {}, "tag": None},
    "audit": {"findings": [], "repairs": [], "next_steps": [], "summary": None},
    "doctor": {"checks": [], "counts": {}},
}


def failure_doc(command: str, error: VolimgError) -> dict[str, Any]:
    """The JSON document when a command fails before it has anything else to say: the
    command's own keys, null or empty, and the error."""
    fields = {key: _empty(value) for key, value in EMPTY_FIELDS.get(command, {}).items()}
    return document(command, "failed", error=error_doc(error), **fields)


def _empty(value: Any) -> Any:
    return type(value)() if isinstance(value, (dict, list)) else value


def stores_doc(info: GlanceInfo) -> dict[str, Any]:
    return document(
        "stores",
        "ok",
        multi_store=info.multi_store,
        default_store=info.default_store,
        copy_image_enabled=info.copy_image_enabled,
        import_methods=list(info.import_methods),
        stores=[
            {
                "id": s.id,
                "default": s.is_default,
                "read_only": s.read_only,
                "description": s.description,
            }
            for s in info.stores
        ],
        error=None,
    )


def doctor_doc(report: DoctorReport) -> dict[str, Any]:
    """``volimg doctor``: one object per row, in the order of the table."""
    return document(
        "doctor",
        report.result,
        checks=[
            {
                "check": c.check,
                "status": c.status,
                "subject": c.subject,
                "detail": c.detail,
                "fix": c.fix,
            }
            for c in report.checks
        ],
        counts=report.counts,
        error=None,
    )


def dump_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)
