"""docs/audit.md is a claim: its findings, repairs and metrics are volimg's own."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from volimg.audit import FINDINGS, REPAIR_RESULTS
from volimg.cli import cli
from volimg.fleet_render import write_audit_metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC = (DOCS / "audit.md").read_text()
JSON_MD = (DOCS / "json.md").read_text()


def test_every_finding_is_documented_once_and_nothing_else_most_pressing_first() -> None:
    table = DOC.split("## Findings", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.M)
    assert documented == list(FINDINGS)


def _json_values(table: str, field: str) -> list[str]:
    """The backquoted values docs/json.md lists for ``field`` in the table ``table``."""
    section = JSON_MD.split(f"### {table}", 1)[1].split("\n#", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith(f"| `{field}` |"))
    meaning = row.split("|")[3]
    return re.findall(r"`([a-z-]+)`", meaning)


def test_json_md_lists_every_finding_and_repair_result_in_order() -> None:
    assert _json_values("`findings[]`", "finding") == list(FINDINGS)
    assert _json_values("`repairs[]`", "result") == list(REPAIR_RESULTS)


def test_every_repair_result_is_documented() -> None:
    repairs = DOC.split("## Repairs", 1)[1].split("\n## ", 1)[0]
    for result in REPAIR_RESULTS:
        assert f"`{result}`" in repairs


def test_the_metrics_named_are_the_metrics_written() -> None:
    section = DOC.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    # The per-store metrics (and the oldest unfixed finding) are documented with the
    # nightly batch's alerts, in docs/cron.md.
    cron = (Path(__file__).resolve().parents[2] / "docs" / "cron.md").read_text()
    section += cron.split("## The audit's metrics per store", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(volimg_audit_[a-z_]+)", section))
    from tests.unit.test_metrics_audit_stores import audit_with_stores

    outcome = audit_with_stores()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "audit.prom"
        write_audit_metrics(path, outcome)
        written = {f.name for f in text_string_to_metric_families(path.read_text())}
    assert documented == written


def test_every_option_in_the_usage_block_is_an_option_of_audit_or_adopt() -> None:
    help_text = CliRunner().invoke(cli, ["audit", "--help"]).output
    help_text += CliRunner().invoke(cli, ["adopt", "--help"]).output
    usage = DOC.split("```sh", 1)[1].split("```", 1)[0]
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", usage))
    assert {"--fix", "--dry-run", "--all-projects", "--base", "--prune-intent"} <= options
    assert sorted(o for o in options if o not in help_text) == []
