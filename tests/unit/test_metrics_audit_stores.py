"""The audit's metrics per Glance store (issue 18): which site is behind, at a glance.

Built from ``AuditOutcome`` fields that exist (findings with the image's stores, the
expected and the missing stores, repairs), so the audit itself needs no new field.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.metrics_rules import naming_problems
from volimg.audit import MISSING, OK, REPAIRED, AuditOutcome, Finding, Repair
from volimg.fleet_metrics import audit_samples, write_audit_metrics
from volimg.model import Image
from volimg.provenance import Rule, Stamp, StampedBy
from volimg.results import Outcome

AUDITED_AT = datetime(2026, 12, 3, 5, 17, tzinfo=timezone.utc)
DAY = 86400.0


def _finding(
    image_id: str,
    stores: tuple[str, ...],
    *,
    finding: str = OK,
    expected: tuple[str, ...] = (),
    missing: tuple[str, ...] = (),
    created: str = "2026-12-01T05:17:00Z",
    size: int = 1000,
) -> Finding:
    image = Image(image_id, f"img-{image_id}", "active", stores, created_at=created, size=size)
    stamp = Stamp(
        image_id=image_id,
        stamped_by=StampedBy.UPLOAD,
        stamped_at=created,
        source_volume="vol",
        base_image=None,
        type_store=None,
        rule=Rule.BASE_STORES,
    )
    return Finding(
        image=image,
        stamp=stamp,
        finding=finding,
        reason="",
        expected=expected or stores,
        missing=missing,
    )


def audit_with_stores() -> AuditOutcome:
    """Three sites: fast has everything, cheap lacks two copies (one repaired), archive one."""
    repaired_image = Image(
        "b", "img-b", "active", ("fast", "cheap", "archive"), size=2000,
        created_at="2026-12-02T05:17:00Z",
    )  # fmt: skip
    return AuditOutcome(
        findings=(
            _finding("a", ("fast", "cheap", "archive")),
            _finding(
                "b",
                ("fast", "archive"),
                finding=MISSING,
                expected=("fast", "cheap", "archive"),
                missing=("cheap",),
                created="2026-12-02T05:17:00Z",
                size=2000,
            ),
            _finding(
                "c",
                ("fast",),
                finding=MISSING,
                expected=("fast", "cheap", "archive"),
                missing=("cheap", "archive"),
                created="2026-11-29T05:17:00Z",
                size=4000,
            ),
        ),
        repairs=(
            Repair(
                image_id="b",
                finding=MISSING,
                result=REPAIRED,
                outcome=Outcome(command="replicate", plan=None, image=repaired_image),  # type: ignore[arg-type]
            ),
        ),
        fix=True,
        audited_at=AUDITED_AT,
        seconds=12.0,
    )


def _by_store(samples: list, name: str) -> dict[str, float]:  # type: ignore[type-arg]
    return {s.labels["store"]: s.value for s in samples if s.name == name}


def test_every_store_gets_its_images_bytes_missing_copies_and_oldest_gap() -> None:
    samples = audit_samples(audit_with_stores())

    assert _by_store(samples, "volimg_audit_store_images") == {
        "archive": 2, "cheap": 2, "fast": 3,
    }  # fmt: skip
    assert _by_store(samples, "volimg_audit_store_bytes") == {
        "archive": 3000, "cheap": 3000, "fast": 7000,
    }  # fmt: skip
    # b's copy to cheap was repaired; c still lacks cheap and archive.
    assert _by_store(samples, "volimg_audit_store_missing_copies") == {
        "archive": 1, "cheap": 1, "fast": 0,
    }  # fmt: skip
    assert _by_store(samples, "volimg_audit_store_oldest_missing_age_seconds") == {
        "archive": 4 * DAY, "cheap": 4 * DAY, "fast": 0,
    }  # fmt: skip
    (oldest,) = [s for s in samples if s.name == "volimg_audit_oldest_unfixed_finding_age_seconds"]
    assert oldest.value == 4 * DAY


def test_the_store_series_follow_the_naming_rules_and_parse(tmp_path: Path) -> None:
    path = tmp_path / "volimg-audit.prom"
    write_audit_metrics(path, audit_with_stores())
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert {s.labels["store"] for s in families["volimg_audit_store_images"].samples} == {
        "fast", "cheap", "archive",
    }  # fmt: skip
    samples = audit_samples(audit_with_stores())
    assert naming_problems(samples) == []


def test_an_empty_audit_has_no_store_series_and_no_unfixed_age() -> None:
    samples = audit_samples(AuditOutcome(findings=(), audited_at=AUDITED_AT))
    assert not [s for s in samples if "store" in s.labels]
    (oldest,) = [s for s in samples if s.name == "volimg_audit_oldest_unfixed_finding_age_seconds"]
    assert oldest.value == 0
