"""Prometheus naming rules for volimg's metrics, as a checker tests can call.

From Prometheus' "Metric and label naming" and "Instrumentation" pages, as
/work/shared/README.md sums them up for batch jobs: an application prefix; base units
(`_seconds`, `_bytes`), never milli/kilo/minutes; `_total` for counters and only for
counters; timestamps as `..._timestamp_seconds`; no high-cardinality labels (no
volume or image ids); and a 0 for every outcome that can occur, so a rate or an alert
does not see a missing series as "no data".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from volimg.metrics import Sample

_NON_BASE_UNITS = (
    "_milliseconds", "_microseconds", "_nanoseconds", "_ms", "_minutes", "_hours", "_days",
    "_kilobytes", "_megabytes", "_gigabytes", "_kb", "_mb", "_gb", "_kib", "_mib", "_gib",
    "_percent",
)  # fmt: skip
# Labels that would carry one series per resource.
_HIGH_CARDINALITY_LABELS = frozenset(
    ("id", "uuid", "volume", "volume_id", "image", "image_id", "request_id", "task_id", "name")
)
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


def naming_problems(
    samples: Sequence[Sample],
    *,
    prefix: str = "volimg_",
    outcomes: Mapping[str, tuple[str, Iterable[str]]] | None = None,
) -> list[str]:
    """Every rule a set of samples breaks, one sentence each (empty: all is well).

    ``outcomes`` maps a metric name to (label, every value it can take): each of those
    must have its own sample, 0 when it did not happen.
    """
    problems: list[str] = []
    for sample in samples:
        name = sample.name
        if not name.startswith(prefix):
            problems.append(f"{name}: lacks the application prefix {prefix!r}")
        if ":" in name:
            problems.append(f"{name}: colons are reserved for recording rules")
        if sample.kind == "counter" and not name.endswith("_total"):
            problems.append(f"{name}: a counter's name ends in _total")
        if sample.kind != "counter" and name.endswith("_total"):
            problems.append(f"{name}: only counters end in _total")
        for unit in _NON_BASE_UNITS:
            if name.endswith(unit) or f"{unit}_" in name:
                problems.append(f"{name}: use base units (seconds, bytes), not {unit[1:]}")
        if "timestamp" in name and not name.endswith("_timestamp_seconds"):
            problems.append(f"{name}: a timestamp is ..._timestamp_seconds (Unix seconds)")
        if not sample.help:
            problems.append(f"{name}: has no HELP text")
        for label, value in sample.labels.items():
            if label in _HIGH_CARDINALITY_LABELS:
                problems.append(f"{name}: label {label!r} has one value per resource")
            if _UUID.search(value):
                problems.append(f"{name}: label {label}={value!r} carries an id")
    for name, (label, values) in (outcomes or {}).items():
        present = {s.labels.get(label) for s in samples if s.name == name}
        for value in values:
            if value not in present:
                problems.append(f"{name}: no sample for {label}={value!r} (export 0)")
    return problems
