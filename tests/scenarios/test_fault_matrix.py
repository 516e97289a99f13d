"""Every fault at every step of ``upload`` and ``replicate``, against the sandbox.

The cells are data (``tests/scenarios/fault_matrix.py``); docs/reliability.md shows
the same table, generated from it. For each cell: the documented exit code, one JSON
document that matches what the sandbox really holds (the image, its stores, and every
store outcome in ``replication``), at most one image per upload, and no traceback.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.scenarios import fault_matrix as fm
from tests.scenarios.cloud_checks import check_report
from volimg.cli import cli
from volimg.context import AppContext
from volimg.sandbox import Sandbox


def apply_fault(sandbox: Sandbox, step: fm.Step, fault: str) -> None:
    """Arm ``fault`` on the first request of ``step``."""
    faults = sandbox.faults
    method, path = step.method, step.path
    if fault == "refused":
        faults.refuse_connection(method, path, action=step.action)
    elif fault == "down":
        faults.refuse_connection(method, path, times=None, action=step.action)
    elif fault == "dropped":
        faults.drop_connection(method, path, action=step.action)
    elif fault == "lost":
        faults.lose_answer(method, path, action=step.action)
    elif fault in ("500-html", "502-html"):
        faults.proxy_error(method, path, int(fault[:3]), action=step.action)
    elif fault == "503-retry":
        faults.proxy_error(method, path, 503, retry_after=1, action=step.action)
    elif fault == "truncated":
        faults.corrupt_answer(method, path, "truncate", action=step.action)
    elif fault == "not-json":
        faults.corrupt_answer(method, path, "not-json", action=step.action)
    elif fault == "slow":
        faults.delay(method, path, fm.SLOW_SECONDS, action=step.action)
    elif fault == "token-expired":
        faults.expire_token(method, path, action=step.action)
    elif fault == "403":
        faults.respond(
            method,
            path,
            403,
            message="Policy doesn't allow this to be performed.",
            action=step.action,
        )
    elif fault == "409":
        faults.respond(
            method, path, 409, message="Image has an import in progress.", action=step.action
        )
    else:
        raise AssertionError(f"no such fault {fault!r}")


def clouds_yaml_with_timeout(sandbox: Sandbox, where: Path) -> Path:
    """The sandbox's clouds.yaml with a short api_timeout ("slow" outlasts it) and retry delay."""
    config = yaml.safe_load(sandbox.clouds_yaml.read_text())
    for cloud in config["clouds"].values():
        cloud["api_timeout"] = fm.CLIENT_TIMEOUT
        cloud["connect_retry_delay"] = fm.RETRY_DELAY
        cloud["status_code_retry_delay"] = fm.RETRY_DELAY
    path = where / "clouds.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def run_cell(sandbox: Sandbox, tmp_path: Path, cell: fm.Cell) -> dict[str, Any]:
    """Run the cell's command; return what the test checks."""
    clouds = clouds_yaml_with_timeout(sandbox, tmp_path)
    if cell.command == "batch":
        # An older volimg image of data-vol, for --keep 1 to delete.
        older = CliRunner().invoke(
            cli,
            ["--os-cloud", sandbox.admin_cloud, "upload", "data-vol"],
            obj=AppContext(poll_interval=0.02),
            env={"OS_CLIENT_CONFIG_FILE": str(clouds), "OS_CLOUD": None},
        )
        assert older.exit_code == 0, older.stderr
        sandbox.wait_idle(10)
    first_request = len(sandbox.requests)
    apply_fault(sandbox, fm.step(cell.command, cell.step), cell.fault)
    images_before = set(sandbox.cloud.images)
    app = AppContext(poll_interval=0.02)
    result = CliRunner().invoke(
        cli,
        ["--os-cloud", sandbox.admin_cloud, *fm.COMMANDS[cell.command].args, "-f", "json"],
        obj=app,
        catch_exceptions=False,
        env={"OS_CLIENT_CONFIG_FILE": str(clouds), "OS_CLOUD": None},
    )
    if cell.fault == "slow" and fm.step(cell.command, cell.step).method != "GET":
        # Let the held change reach the service, as it would.
        time.sleep(fm.SLOW_SECONDS - fm.CLIENT_TIMEOUT + 0.5)
    sandbox.wait_idle(10)
    assert sandbox.faults.fired() >= 1, f"the {cell.fault} fault never met a request"
    return {
        "exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "new_images": set(sandbox.cloud.images) - images_before,
        "first_request": first_request,
    }


def check_cell(sandbox: Sandbox, cell: fm.Cell, seen: dict[str, Any]) -> None:
    shown = seen["stdout"] + seen["stderr"]
    assert "Traceback" not in shown, shown
    doc = json.loads(seen["stdout"])  # exactly one document
    assert (seen["exit_code"], doc["result"]) == (cell.exit_code, cell.result), seen
    if doc.get("error") is not None:
        assert doc["error"]["exit_code"] == cell.exit_code
        assert "\n" not in doc["error"]["message"]
    reports = doc["volumes"] if cell.command == "batch" else [doc]
    for report in reports:
        check_report(sandbox, report)
        if report.get("error") is not None:
            assert "\n" not in report["error"]["message"]
    step = fm.step(cell.command, cell.step)
    if step.method != "GET" and cell.fault != "token-expired":
        # A request that changes something is sent once per resource, whatever happened
        # to it (after a 401 keystoneauth sends it again with a new token: the service
        # did not act).
        sent = [
            r
            for r in sandbox.requests.filter(
                method=step.method, path=step.path, origin="client", action=step.action
            )
            if r.seq >= seen["first_request"]
        ]
        paths = [r.path for r in sent]
        assert len(paths) == len(set(paths)), [(r.method, r.path, r.status) for r in sent]
    if cell.command == "batch":
        # At most one new image per volume, each one reported.
        new = seen["new_images"]
        assert len(new) <= 2, new
        named = {r["image"]["id"] for r in reports if r.get("image")}
        assert new <= named, (new, doc)
        deleted = {
            a["image_id"] for r in reports for a in r["retention"] if a["action"] == "deleted"
        }
        assert not deleted & set(sandbox.cloud.images), deleted
    elif cell.command == "upload":
        # At most one image per requested upload, and only the one reported if any.
        new = seen["new_images"]
        assert len(new) <= 1, new
        image_doc = doc.get("image")
        if new and (image_doc is None or image_doc["id"] not in new):
            raise AssertionError(f"image {new} exists but the report does not say so: {doc}")
    else:
        assert not seen["new_images"]


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param(
            cell,
            id=cell.id,
            marks=[pytest.mark.xfail(strict=True, reason=cell.xfail)] if cell.xfail else [],
        )
        for cell in fm.CELLS
    ],
)
def test_fault_matrix_cell(sandbox: Sandbox, tmp_path: Path, cell: fm.Cell) -> None:
    check_cell(sandbox, cell, run_cell(sandbox, tmp_path, cell))


def test_the_matrix_has_at_least_60_cells_and_no_duplicates() -> None:
    assert len(fm.CELLS) >= 60
    assert len({c.id for c in fm.CELLS}) == len(fm.CELLS)
    for cell in fm.CELLS:
        assert cell.fault in fm.FAULTS
        fm.step(cell.command, cell.step)


def test_docs_reliability_md_shows_the_matrix_as_the_test_runs_it() -> None:
    document = fm.DOC.read_text()
    assert fm.BEGIN in document
    assert fm.END in document
    assert fm.with_table(document) == document, (
        "docs/reliability.md is out of date: run python -m tests.scenarios.fault_matrix --write"
    )


def test_every_request_has_a_timeout_unless_clouds_yaml_sets_one(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volimg.gateway import DEFAULT_HTTP_TIMEOUT, connect

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(sandbox.clouds_yaml))
    default = connect(sandbox.admin_cloud, None)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml_with_timeout(sandbox, tmp_path)))
    configured = connect(sandbox.admin_cloud, None)
    try:
        assert default._conn.session.timeout == DEFAULT_HTTP_TIMEOUT == 60
        assert configured._conn.session.timeout == fm.CLIENT_TIMEOUT
    finally:
        default.close()
        configured.close()
