"""An operator's first hour (issue 13): inputs, messages and wording found by trying
every command as a new user would, on the sandbox and, where the cloud allows, on the
real stack.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import openstack
import pytest
from click.testing import CliRunner

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import Run, VolimgRunner
from volimg.cli import cli
from volimg.context import AppContext
from volimg.sandbox import Sandbox, Timings
from volimg.waiting import Clock


def _blank_volume(conn: Any, name: str) -> Any:
    """A 1 GiB volume made from nothing: quick on both clouds."""
    volume = conn.block_storage.create_volume(size=1, name=name)
    conn.block_storage.wait_for_status(
        volume, "available", failures=["error"], interval=0.2, wait=120
    )
    return volume


@pytest.fixture
def scratch_volumes(admin_conn: Any) -> Iterator[list[Any]]:
    """Volumes a test creates; deleted afterwards so names stay unique on the real stack."""
    made: list[Any] = []
    yield made
    for volume in made:  # Cinder deletes an 'error' volume as well
        admin_conn.block_storage.delete_volume(volume, ignore_missing=True)


# --- inputs that must not surprise --------------------------------------------------


BLANK_NAMES = [
    ("plan", ""),
    ("plan", "   "),
    ("upload", "", "--dry-run"),
    ("upload", "boot-vol", "--also-store", "", "--dry-run"),
    ("upload", "boot-vol", "--name", " ", "--dry-run"),
    ("replicate", "", "--store", "cheap", "--dry-run"),
    ("replicate", "cirros-base", "--store", " ", "--dry-run"),
    ("replicate", "cirros-base", "--like", "", "--dry-run"),
]


def test_an_empty_or_blank_name_is_exit_2_whatever_the_cloud_holds(
    volimg: VolimgRunner, admin_conn: Any, scratch_volumes: list[Any]
) -> None:
    # A nameless volume: Cinder's name filter drops an empty value, so '' matched it.
    scratch_volumes.append(_blank_volume(admin_conn, ""))

    for args in BLANK_NAMES:
        run = volimg(*args, "-f", "json")

        assert run.exit_code == 2, (args, run)
        assert run.doc["result"] == "failed"
        message = run.doc["error"]["message"]
        assert "empty value" in message or "blank value" in message, (args, message)
        assert "unset shell variable" in message


def test_the_library_refuses_a_blank_name_too(
    cloud: CloudUnderTest, admin_conn: Any, scratch_volumes: list[Any]
) -> None:
    from volimg import core
    from volimg.errors import InputError
    from volimg.gateway import connect
    from volimg.planner import ReplicationOptions, UploadOptions

    scratch_volumes.append(_blank_volume(admin_conn, ""))
    gateway = connect(cloud.admin_cloud, None)
    try:
        with pytest.raises(InputError, match="empty volume name"):
            core.plan(gateway, "", UploadOptions(), now=datetime.now(timezone.utc))
        with pytest.raises(InputError, match="blank image name"):
            core.plan_copy(gateway, " ", None, ReplicationOptions(stores=("fast",)))
    finally:
        gateway.close()


def test_plan_warns_when_the_chosen_name_is_already_taken(volimg: VolimgRunner) -> None:
    run = volimg("plan", "boot-vol", "--name", "cirros-base", "-f", "json")

    assert run.exit_code == 0, run
    base = run.doc["base_image"]["id"]
    assert run.doc["plan"]["image_name_taken_by"] == [base]
    (warning,) = [r for r in run.doc["plan"]["reasons"] if r["topic"] == "image name"]
    assert warning["decision"] == "already taken"
    assert base in warning["reason"]
    assert "ambiguous" in warning["reason"]

    table = volimg("plan", "boot-vol", "--name", "cirros-base")
    assert "image name: already taken" in table.stdout

    free = volimg("plan", "boot-vol", "--name", f"free-{uuid.uuid4().hex}", "-f", "json")
    assert free.doc["plan"]["image_name_taken_by"] == []
    assert not [r for r in free.doc["plan"]["reasons"] if r["topic"] == "image name"]


def test_plan_warns_when_the_default_name_is_already_taken(
    cloud: CloudUnderTest, admin_conn: Any
) -> None:
    at = datetime.now(timezone.utc).replace(microsecond=0)
    default_name = f"boot-vol-{at.strftime('%Y%m%dT%H%M%SZ')}"
    squatter = admin_conn.image.create_image(
        name=default_name, disk_format="raw", container_format="bare", allow_duplicates=True
    )
    try:
        app = AppContext(clock=Clock(wall=lambda: at))
        result = CliRunner().invoke(
            cli, ["--os-cloud", cloud.admin_cloud, "plan", "boot-vol", "-f", "json"], obj=app
        )
        run = Run(result.exit_code, result.stdout, result.stderr)

        assert run.exit_code == 0, run
        # Issue 19: a taken default name gets a suffix, never a silent duplicate.
        assert run.doc["plan"]["image_name"] == f"{default_name}-2"
        assert run.doc["plan"]["image_name_taken_by"] == []
        (reason,) = [r for r in run.doc["plan"]["reasons"] if r["topic"] == "image name"]
        assert reason["decision"] == "suffixed"
        assert default_name in reason["reason"]
    finally:
        admin_conn.image.delete_image(squatter)


def test_no_replicate_with_also_store_copies_to_that_store_only(
    volimg: VolimgRunner, admin_conn: Any, qcow2: tuple[str, ...]
) -> None:
    run = volimg(
        "upload", "boot-vol", "--no-replicate", "--also-store", "archive", "-f", "json", *qcow2
    )

    assert run.exit_code == 0, run
    assert run.doc["plan"]["replicate_to"] == ["archive"]
    assert run.doc["replication"] == {"fast": "already-present", "archive": "copied"}
    body = admin_conn.image.get(f"/images/{run.doc['image']['id']}").json()
    assert set(body["stores"].split(",")) == {"fast", "archive"}


def test_no_replicate_help_and_guide_say_also_store_still_copies() -> None:
    result = CliRunner().invoke(cli, ["upload", "--help"], terminal_width=200)
    assert "--also-store still copies" in " ".join(result.stdout.split())
    guide = (Path(__file__).resolve().parents[2] / "docs" / "guide.md").read_text()
    assert "`--no-replicate --also-store X` copies to `X` only" in guide


def test_a_read_only_store_that_already_holds_the_image_is_already_present(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.scenarios.conftest import make_runner

    with Sandbox(seed="demo", timings=Timings.instant(), read_only_stores=("cheap",)) as sb:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(sb.clouds_yaml))
        volimg = make_runner(CloudUnderTest("sandbox", sb.clouds_yaml, "sandbox", "sandbox-member"))

        run = volimg("replicate", "cirros-base", "--store", "cheap", "-f", "json")

        assert run.exit_code == 0, run
        assert run.doc["result"] == "ok"
        assert run.doc["replication"] == {"cheap": "already-present"}
        assert sb.requests.mutating(origin="client") == []
        # A read-only store that does not hold the image is still refused as a target.
        refused = volimg("upload", "data-vol", "--also-store", "cheap", "--dry-run")
        assert refused.exit_code == 2, refused
        assert "read-only" in refused.stderr


def test_a_member_is_warned_about_public_visibility_and_prune_before_anything_is_made(
    cloud: CloudUnderTest, volimg: VolimgRunner, admin_conn: Any
) -> None:
    member = openstack.connect(cloud=cloud.member_cloud)
    base = admin_conn.image.find_image("cirros-base", ignore_missing=False)
    volume = member.block_storage.create_volume(
        size=1, image_id=base.id, name=f"member-warn-{uuid.uuid4().hex[:8]}"
    )
    member.block_storage.wait_for_status(
        volume, "available", failures=["error"], interval=0.2, wait=120
    )
    try:
        run = volimg(
            "plan", volume.id, "--visibility", "public", "--prune", "-f", "json", member=True
        )

        assert run.exit_code == 0, run
        warnings = {
            r["decision"]: r["reason"]
            for r in run.doc["plan"]["reasons"]
            if r["topic"] == "permission"
        }
        assert set(warnings) == {
            "--visibility public may be refused",
            "copy may be refused",
            "--prune may be refused",
        }
        assert "upload_public" in warnings["--visibility public may be refused"]
        assert "admin-only" in warnings["--prune may be refused"]

        replicate = volimg(
            "replicate", base.id, "--store", "fast", "--dry-run", "-f", "json", member=True
        )
        assert replicate.exit_code == 0, replicate
        assert "copy may be refused" in [
            r["decision"] for r in replicate.doc["plan"]["reasons"] if r["topic"] == "permission"
        ]

        admin = volimg("plan", "boot-vol", "--visibility", "public", "--prune", "-f", "json")
        assert [r for r in admin.doc["plan"]["reasons"] if r["topic"] == "permission"] == []
    finally:
        member.block_storage.delete_volume(volume, ignore_missing=True)
        member.close()


# --- messages that blame the right thing -------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def unreachable_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clouds.yaml whose Keystone is a closed port on this machine."""
    url = f"http://127.0.0.1:{_closed_port()}/identity/v3"
    config = tmp_path / "clouds.yaml"
    config.write_text(
        "clouds:\n  gone:\n    auth:\n"
        f"      auth_url: {url}\n      username: u\n      password: p\n"
        "      project_name: x\n      user_domain_name: Default\n"
        "      project_domain_name: Default\n    region_name: RegionOne\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(config))
    return url


def test_an_unreachable_cloud_is_one_line_naming_cloud_url_and_cause(
    unreachable_cloud: str,
) -> None:
    result = CliRunner().invoke(cli, ["--os-cloud", "gone", "plan", "boot-vol"], obj=AppContext())

    assert result.exit_code == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines  # the error and its hint, nothing else
    error = lines[0]
    assert error.startswith("volimg: error: ")
    assert "'gone'" in error
    assert unreachable_cloud in error
    assert "connection refused" in error
    assert "HTTPConnectionPool" not in error
    assert "Failed to discover" not in result.stderr  # keystoneauth's own line

    verbose = CliRunner().invoke(
        cli, ["-v", "--os-cloud", "gone", "plan", "boot-vol"], obj=AppContext()
    )
    assert verbose.exit_code == 1
    assert "keystoneauth" in verbose.stderr
    assert "Failed to discover available identity versions" in verbose.stderr


def test_sandbox_blames_a_clouds_yaml_it_cannot_write_and_makes_no_directory(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope" / "c.yaml"
    for path in ("/proc/nope/c.yaml", str(missing)):
        result = CliRunner().invoke(cli, ["sandbox", "--clouds-yaml", path], obj=AppContext())

        assert result.exit_code == 2, result.stderr
        assert f"--clouds-yaml {path}" in result.stderr
        assert "does not exist" in result.stderr
        assert "--port" not in result.stderr
    assert not missing.parent.exists()

    unwritable = CliRunner().invoke(
        cli, ["sandbox", "--clouds-yaml", "/proc/c.yaml"], obj=AppContext()
    )
    assert unwritable.exit_code == 2, unwritable.stderr
    assert "cannot write --clouds-yaml /proc/c.yaml" in unwritable.stderr
    assert "--port" not in unwritable.stderr


def test_an_unknown_region_gets_a_hint_about_regions(cloud: CloudUnderTest) -> None:
    result = CliRunner().invoke(
        cli,
        ["--os-cloud", cloud.admin_cloud, "--os-region-name", "RegionTwo", "plan", "boot-vol"],
        obj=AppContext(),
    )

    assert result.exit_code == 2, result.stderr
    assert "RegionTwo" in result.stderr
    hint = next(line for line in result.stderr.splitlines() if line.startswith("volimg: hint:"))
    assert "--os-region-name" in hint
    assert "name a cloud" not in hint


def test_an_error_volume_says_an_admin_must_reset_it(
    cloud: CloudUnderTest, volimg: VolimgRunner, admin_conn: Any, scratch_volumes: list[Any]
) -> None:
    volume = _blank_volume(admin_conn, f"broken-{uuid.uuid4().hex[:8]}")
    scratch_volumes.append(volume)
    if cloud.sandbox is not None:  # the sandbox has no os-reset_status action
        cloud.sandbox.cloud.set_volume_status(volume.id, "error")
    else:
        admin_conn.block_storage.reset_volume_status(volume, "error", None, None)

    run = volimg("plan", volume.id, "-f", "json")

    assert run.exit_code == 2, run
    assert run.doc["error"]["type"] == "VolumeNotUploadable"
    hint = run.doc["error"]["hint"]
    assert f"openstack volume set --state available {volume.id}" in hint
    assert "admin" in hint
    assert "wait" not in hint


def test_a_global_option_after_the_command_says_where_it_goes() -> None:
    result = CliRunner().invoke(cli, ["plan", "x", "--os-cloud", "sandbox"], obj=AppContext())

    assert result.exit_code == 2
    assert "--os-cloud is a global option: give it before the command" in result.stderr
    assert "before the command: volimg --os-cloud sandbox plan x" in result.stderr

    as_json = CliRunner().invoke(cli, ["plan", "x", "-v", "-f", "json"], obj=AppContext())
    assert as_json.exit_code == 2
    assert "-v is a global option" in as_json.stdout
    assert "before the command: volimg -v plan x -f json" in as_json.stdout

    unknown = CliRunner().invoke(cli, ["plan", "x", "--bogus"], obj=AppContext())
    assert unknown.exit_code == 2
    assert "No such option" in unknown.stderr


def test_refusing_a_remote_address_speaks_the_clis_words() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "--host", "0.0.0.0"], obj=AppContext())

    assert result.exit_code == 2
    assert "--allow-remote" in result.stderr
    assert "allow_remote" not in result.stderr


def test_a_closed_stdout_pipe_is_exit_141_with_one_line_and_no_traceback(
    cloud: CloudUnderTest,
) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `volimg plan boot-vol | true`: the reader is gone
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "volimg", "--os-cloud", cloud.admin_cloud, "plan", "boot-vol"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)

    assert proc.returncode == 141, proc.stderr
    assert proc.stderr.strip() == "volimg: output not written: stdout was closed (broken pipe)"


# --- wording ------------------------------------------------------------------------


def test_volume_names_with_spaces_are_quoted_and_a_nameless_volume_shown_once(
    volimg: VolimgRunner, admin_conn: Any, scratch_volumes: list[Any]
) -> None:
    spaced = _blank_volume(admin_conn, f"my vol {uuid.uuid4().hex[:6]}")
    nameless = _blank_volume(admin_conn, "")
    scratch_volumes += [spaced, nameless]

    run = volimg("plan", spaced.name)

    assert run.exit_code == 0, run
    assert f"'{spaced.name}' ({spaced.id}): available" in run.stdout
    assert f"volume '{spaced.name}' is available" in run.stdout

    shown = volimg("plan", nameless.id)
    assert shown.exit_code == 0, shown
    assert f"{nameless.id} ({nameless.id})" not in shown.stdout
    (row,) = [line for line in shown.stdout.splitlines() if line.startswith("volume ")]
    assert row.split()[1] == f"{nameless.id}:"
    assert row.count(nameless.id) == 1


def test_replicate_help_does_not_speak_of_the_upload() -> None:
    result = CliRunner().invoke(cli, ["replicate", "--help"])

    assert result.exit_code == 0
    assert "upload" not in result.stdout
    assert "Wait for the copies to finish" in result.stdout


def test_the_live_panel_never_shows_copying_after_that_stores_copied_line(
    sandbox_cloud: CloudUnderTest, sandbox: Sandbox
) -> None:
    sandbox.timings.store_copy = 0.3  # long enough for the panel to draw "copying"
    app = AppContext(poll_interval=0.02, force_terminal=True)
    result = CliRunner().invoke(
        cli, ["--os-cloud", sandbox_cloud.admin_cloud, "upload", "boot-vol"], obj=app
    )

    assert result.exit_code == 0, result.stderr
    for store in ("cheap", "archive"):
        # A panel row names the store and its state (a bar in between).
        row = re.compile(rf"{store}\b[^\r\n]*\bcopying\b")
        assert row.search(result.stderr)  # the panel did show it
        after = result.stderr[result.stderr.index(f"store {store}: copied") :]
        assert not row.search(after)


def test_plan_says_command_plan_whether_it_succeeds_or_fails(volimg: VolimgRunner) -> None:
    ok = volimg("plan", "boot-vol", "-f", "json")
    failed = volimg("plan", "no-such-volume", "-f", "json")
    dry = volimg("upload", "boot-vol", "--dry-run", "-f", "json")

    assert (ok.exit_code, failed.exit_code, dry.exit_code) == (0, 2, 0)
    assert ok.doc["command"] == "plan"
    assert failed.doc["command"] == "plan"
    assert dry.doc["command"] == "upload"
    assert dry.doc["result"] == "planned"
