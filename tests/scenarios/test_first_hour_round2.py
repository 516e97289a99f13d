"""An operator's first hour, round 2 (issue 19): advice that works at the edges, errors
that name the real cause, and JSON documents that keep their keys on every path. Each
test here failed before its fix; all run on the sandbox.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import openstack
import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import MemberVolume, Run, VolimgRunner
from tests.scenarios.next_steps import follow
from tests.scenarios.test_completion import complete
from volimg.cli import cli
from volimg.context import AppContext
from volimg.sandbox import Sandbox
from volimg.waiting import Clock

# --- errors that name the cause -----------------------------------------------------


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), obj=AppContext(poll_interval=0.02))
    return result.exit_code, result.stdout, result.stderr


def _without_password(sandbox_cloud: CloudUnderTest, tmp_path: Path) -> Path:
    config = yaml.safe_load(sandbox_cloud.clouds_yaml.read_text())
    del config["clouds"][sandbox_cloud.admin_cloud]["auth"]["password"]
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_clouds_yaml_entry_without_password_is_one_line_naming_cloud_and_field(
    sandbox_cloud: CloudUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    path = _without_password(sandbox_cloud, tmp_path)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    cloud = sandbox_cloud.admin_cloud

    code, out, err = _invoke("--os-cloud", cloud, "plan", "boot-vol", "-f", fmt)

    assert code == 2, err
    assert "Traceback" not in err
    assert "required attribute" not in err
    error = [line for line in err.splitlines() if line.startswith("volimg: error:")]
    assert len(error) == 1, err
    assert f"'{cloud}'" in error[0]
    assert "password" in error[0]
    assert str(path) in error[0]
    if fmt == "json":
        doc = json.loads(out)
        assert doc["result"] == "failed"
        assert doc["error"]["exit_code"] == 2
        assert doc["replication"] == {}
        assert doc["next_steps"] == []
    # And TAB stays silent.
    assert complete(f"volimg --os-cloud {cloud} upload ") == []


def test_os_variables_without_os_password_name_the_missing_variable(
    sandbox_cloud: CloudUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = yaml.safe_load(sandbox_cloud.clouds_yaml.read_text())["clouds"][
        sandbox_cloud.admin_cloud
    ]["auth"]
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "empty.yaml"))
    (tmp_path / "empty.yaml").write_text("clouds: {}\n")
    monkeypatch.chdir(tmp_path)
    for key in ("OS_CLOUD", "OS_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OS_AUTH_URL", auth["auth_url"])
    monkeypatch.setenv("OS_USERNAME", auth["username"])
    monkeypatch.setenv("OS_PROJECT_NAME", auth.get("project_name", "admin"))

    code, out, err = _invoke("stores", "-f", "json")

    assert code == 2, err
    assert "Traceback" not in err
    assert "OS_PASSWORD" in json.loads(out)["error"]["message"]
    assert complete("volimg upload ") == []


def test_a_malformed_clouds_yaml_is_named_with_its_parse_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "clouds.yaml"
    broken.write_text("clouds:\n  sandbox:\n    auth: [unclosed\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(broken))

    code, _, err = _invoke("--os-cloud", "sandbox", "stores")

    assert code == 2, err
    assert str(broken) in err
    assert "was not found" not in err
    assert "line" in err  # the parser's position
    assert len([ln for ln in err.splitlines() if ln.startswith("volimg: error:")]) == 1


def test_a_missing_os_client_config_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope" / "clouds.yaml"
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(missing))

    code, _, err = _invoke("--os-cloud", "sandbox", "stores")

    assert code == 2, err
    assert f"OS_CLIENT_CONFIG_FILE {missing} does not exist" in err
    assert complete("volimg --os-cloud sandbox upload ") == []


def test_verbose_says_which_configuration_files_were_read(
    volimg_sandbox: object, sandbox_cloud: CloudUnderTest
) -> None:
    code, _, err = _invoke("-v", "--os-cloud", sandbox_cloud.admin_cloud, "stores")

    assert code == 0, err
    assert f"configuration read from {sandbox_cloud.clouds_yaml}" in err


def test_verbose_without_a_cloud_does_not_say_it_came_from_os_cloud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OS_CLOUD", raising=False)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "none.yaml"))

    _, _, err = _invoke("-v", "stores")

    assert "from --os-cloud" not in err


def test_a_wrong_password_names_the_cloud(
    sandbox_cloud: CloudUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = yaml.safe_load(sandbox_cloud.clouds_yaml.read_text())
    cloud = sandbox_cloud.admin_cloud
    config["clouds"][cloud]["auth"]["password"] = "definitely-wrong"
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))

    code, _, err = _invoke("--os-cloud", cloud, "plan", "boot-vol")

    assert code == 5, err
    (error,) = [line for line in err.splitlines() if line.startswith("volimg: error:")]
    assert f"'{cloud}'" in error, error


# --- advice that works --------------------------------------------------------------


def test_the_retry_after_a_failed_cinder_upload_keeps_every_option_and_stands_alone(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest, sandbox: Sandbox
) -> None:
    sandbox.faults.fail_cinder_upload(volume="boot-vol")
    options = ("--also-store", "cheap", "--prune", "--name", "dv-golden")
    options += ("--visibility", "private", "--timeout", "300")

    run = volimg_sandbox("upload", "boot-vol", *options, "-f", "json")

    assert run.exit_code == 1, run
    (step,) = run.doc["next_steps"]
    assert "above" not in step, step
    command = shlex.split(step.split(": ", 1)[1])
    assert command[:2] == ["volimg", "upload"]
    for option in (*options[:4], "--name dv-golden", "--visibility private", "--timeout 300"):
        assert option in " ".join(command), (option, step)
    expected = set(run.doc["plan"]["expected_stores"])
    sandbox.faults.clear()
    (done,) = follow([step], volimg_sandbox, sandbox_cloud, expect_stores=expected)
    assert done.doc["image"]["name"] == "dv-golden"
    assert done.doc["image"]["visibility"] == "private"


def test_a_failed_upload_of_a_protected_image_names_the_leftover_and_how_to_remove_it(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest, sandbox: Sandbox
) -> None:
    """Glance refuses Cinder's delete of a protected image: it stays queued for ever."""
    sandbox.faults.fail_cinder_upload(volume="boot-vol")

    run = volimg_sandbox("upload", "boot-vol", "--protected", "-f", "json")

    assert run.exit_code == 1, run
    leftover = sandbox.cloud.images[run.doc["error"]["message"].split("image ")[1].split()[0]]
    assert leftover.status == "queued"
    assert leftover.protected
    error = run.doc["error"]
    assert "never become active" in error["message"], error
    assert "protected" in error["message"], error
    (step,) = run.doc["next_steps"]
    assert "is active: volimg replicate" not in step, step
    unprotect = f"openstack image set --unprotected {leftover.id}"
    delete = f"openstack image delete {leftover.id}"
    for text in (step, error["hint"]):
        assert unprotect in text, text
        assert text.index(unprotect) < text.index(delete), text
    assert "--protected" in step

    # The printed commands work in that order (openstacksdk's calls behind them).
    conn = openstack.connect(cloud=sandbox_cloud.admin_cloud)
    try:
        conn.image.update_image(leftover.id, is_protected=False)
        conn.image.delete_image(leftover.id)
    finally:
        conn.close()
    sandbox.faults.clear()
    expected = set(run.doc["plan"]["expected_stores"])
    (done,) = follow([step], volimg_sandbox, sandbox_cloud, expect_stores=expected)
    assert sandbox.cloud.images[done.doc["image"]["id"]].protected


def _runner_at(cloud: CloudUnderTest, sandbox: Sandbox) -> VolimgRunner:
    """volimg with its clock as far ahead as the sandbox's (after advance_clock)."""
    offset = timedelta(seconds=sandbox.clock_offset)

    def run(*args: str, member: bool = False) -> Run:
        clock = Clock(wall=lambda: datetime.now(timezone.utc) + offset)
        result = CliRunner().invoke(
            cli,
            ["--os-cloud", cloud.admin_cloud, *args],
            obj=AppContext(poll_interval=0.02, clock=clock),
            catch_exceptions=False,
        )
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


def test_replicate_reports_an_abandoned_imports_stale_lock_and_exits_promptly(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest, sandbox: Sandbox
) -> None:
    made = volimg_sandbox("upload", "boot-vol", "-f", "json")
    assert made.exit_code == 0, made
    image_id = made.doc["image"]["id"]
    sandbox.cloud.images[image_id].locations.remove("cheap")  # lost, say
    sandbox.faults.abandon_import(image=image_id)
    started = volimg_sandbox("replicate", image_id, "--store", "cheap", "--no-wait")
    assert started.exit_code == 0, started
    sandbox.wait_idle()  # the worker has died: updated_at is frozen from here on
    task = sandbox.cloud.tasks[sandbox.cloud.images[image_id].extra["os_glance_import_task"]]
    takeover = task.updated_at + timedelta(minutes=60)

    sandbox.advance_clock(10 * 60)  # silent for longer than audit's stale rule
    begun = time.monotonic()
    run = _runner_at(sandbox_cloud, sandbox)(
        "replicate", image_id, "--store", "cheap", "--timeout", "60", "-f", "json"
    )

    assert time.monotonic() - begun < 8, "followed the dead import"
    assert run.exit_code == 3, run
    when = takeover.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "abandoned" in run.doc["error"]["message"], run.doc["error"]
    assert when in run.doc["error"]["message"], (when, run.doc["error"])
    assert run.doc["replication"] == {"cheap": "failed"}, run.doc
    (step,) = run.doc["next_steps"]
    assert step.startswith(f"at or after {when}: volimg replicate {image_id}"), step

    sandbox.advance_clock(51 * 60)  # the step's condition: Glance's takeover time
    follow(
        [step],
        _runner_at(sandbox_cloud, sandbox),
        sandbox_cloud,
        expect_stores=set(made.doc["image"]["stores"]),
    )


# --- warnings before anything is created ----------------------------------------------


def test_upload_warns_first_and_refuses_a_taken_name_unless_told_otherwise(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """`plan` warned that `cirros-base` is taken; `upload` made a duplicate silently."""
    images = len(sandbox.cloud.images)

    refused = volimg_sandbox("upload", "boot-vol", "--name", "cirros-base", "-f", "json")

    assert refused.exit_code == 2, refused
    assert refused.doc["error"]["type"] == "ImageNameTaken"
    assert "--allow-duplicate-name" in refused.doc["error"]["hint"]
    assert "warning: image name: already taken" in refused.stderr
    assert len(sandbox.cloud.images) == images  # nothing was created
    assert not sandbox.requests.filter(method="POST", action="os-volume_upload_image")

    made = volimg_sandbox(
        "upload", "boot-vol", "--name", "cirros-base", "--allow-duplicate-name", "-f", "json"
    )

    assert made.exit_code == 0, made
    assert "warning: image name: already taken" in made.stderr
    lines = made.stderr.splitlines()
    assert lines[0].startswith("volimg: warning: image name: already taken"), made.stderr
    assert [r for r in made.doc["plan"]["reasons"] if r["decision"] == "already taken"]


def test_upload_as_a_member_shows_the_copy_warning_before_it_creates_anything(
    volimg: VolimgRunner, pinned_member_volume: MemberVolume, qcow2: tuple[str, ...]
) -> None:
    volume = pinned_member_volume.volume.id
    run = volimg("upload", volume, "--also-store", "cheap", *qcow2, member=True)

    lines = run.stderr.splitlines()
    warned = [
        i for i, line in enumerate(lines) if "warning: permission: copy may be refused" in line
    ]
    assert warned, run.stderr
    progress = [i for i, line in enumerate(lines) if not line.startswith("volimg:")]
    assert not progress or warned[0] < progress[0], run.stderr


# --- truth about what was created -----------------------------------------------------


def test_a_delayed_upload_request_is_bounded_by_timeout_and_never_called_nothing(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """Delayed 12 s with --timeout 5: the HTTP timeout (60 s) won, and the run said
    "nothing was created" a moment before the image appeared."""
    sandbox.faults.delay("POST", r"/action$", 12, action="os-volume_upload_image")
    name = "late-golden"
    begun = time.monotonic()

    run = volimg_sandbox("upload", "boot-vol", "--name", name, "--timeout", "5", "-f", "json")

    assert time.monotonic() - begun < 11, "the request outlived --timeout"
    assert run.exit_code != 0, run
    error = run.doc["error"]
    assert "nothing was created" not in error["message"] + (error["hint"] or "")
    assert "may have been created" in error["message"], error
    assert f"openstack image list --name {name}" in error["hint"], error
    deadline = time.monotonic() + 20  # Cinder handles the request once the delay ends
    while not [i for i in sandbox.cloud.images.values() if i.name == name]:
        assert time.monotonic() < deadline, "the delayed upload never made its image"
        time.sleep(0.2)
    sandbox.wait_idle(30)


# --- work that does not depend on who reads the output ------------------------------


VOLIMG = (sys.executable, "-m", "volimg")


def test_an_upload_whose_reader_went_away_finishes_the_work_then_exits_141(
    sandbox_cloud: CloudUnderTest, sandbox: Sandbox
) -> None:
    """`volimg upload boot-vol 2>&1 | head -3`: the run stopped at the first write
    after the reader left, the image in one store, no copies, no stamp."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        proc = subprocess.run(
            [
                *VOLIMG,
                "--os-cloud",
                sandbox_cloud.admin_cloud,
                "upload",
                "boot-vol",
                "--name",
                "unread",
            ],
            stdout=write_end,
            stderr=write_end,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)

    assert proc.returncode == 141
    (image,) = [i for i in sandbox.cloud.images.values() if i.name == "unread"]
    plan = volimg_plan(sandbox_cloud)
    assert set(image.stores) == set(plan["expected_stores"]), image.stores
    assert image.extra.get("volimg_stamped_by") == "upload", image.extra


def volimg_plan(cloud: CloudUnderTest) -> dict[str, object]:
    code, out, err = _invoke("--os-cloud", cloud.admin_cloud, "plan", "boot-vol", "-f", "json")
    assert code == 0, err
    plan: dict[str, object] = json.loads(out)["plan"]
    return plan


def test_audit_all_projects_as_a_member_says_it_covers_one_project(
    volimg_sandbox: VolimgRunner,
) -> None:
    run = volimg_sandbox("audit", "--all-projects", member=True)

    assert "--all-projects needs an admin role" in run.stderr, run.stderr
    assert "your own project" in run.stderr
    admin = volimg_sandbox("audit", "--all-projects")
    assert "needs an admin role" not in admin.stderr


def test_tab_after_a_whole_shared_name_offers_the_ids_it_stands_for(
    sandbox_cloud: CloudUnderTest, sandbox: Sandbox
) -> None:
    """bash shows no help text: "twin" alone said nothing of the two volumes."""
    twins = sorted(v.id for v in sandbox.cloud.volumes.values() if v.name == "twin")
    assert len(twins) == 2

    assert complete("volimg --os-cloud sandbox upload tw") == ["twin"]
    assert complete("volimg --os-cloud sandbox upload twin") == twins


def test_the_plain_stores_table_has_a_header_row(volimg_sandbox: VolimgRunner) -> None:
    run = volimg_sandbox("stores")

    assert run.exit_code == 0, run
    assert run.stdout.splitlines()[0] == "store\tflags\tdescription", run.stdout


def test_help_says_what_each_commands_lines_and_one_volume_are() -> None:
    audit_help = CliRunner().invoke(cli, ["audit", "--help"]).stdout
    upload_help = CliRunner().invoke(cli, ["upload", "--help"]).stdout

    assert "(or finding)" not in audit_help + upload_help
    assert "finding and per" in " ".join(audit_help.split())
    assert "runs as before" not in upload_help


def test_the_readme_lists_every_result_and_store_outcome() -> None:
    from tests.conftest import REPO_ROOT
    from volimg import results

    text = " ".join((REPO_ROOT / "README.md").read_text().split())
    listed = text.split("each store's outcome is", 1)[1].split(".", 1)[0]
    outcomes = (results.COPIED, results.ALREADY_PRESENT, results.FAILED, results.ROLLED_BACK)
    outcomes += (results.PENDING, results.PRUNED, results.SKIPPED, results.PRUNE_FAILED)
    for outcome in outcomes:
        assert f"`{outcome}`" in listed, outcome


# --- counts and moments, written one way ------------------------------------------------


def test_a_count_of_one_is_singular_in_audits_and_doctors_summaries(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """`volimg audit --image ID` said "1 stamped images: 1 ok"."""
    image = next(i for i in sandbox.cloud.images.values() if "volimg" in i.tags)

    run = volimg_sandbox("audit", "--image", image.id)

    summary = run.stdout.splitlines()[-1]
    assert summary.startswith("1 stamped image: "), run.stdout
    many = volimg_sandbox("audit").stdout.splitlines()[-1]
    assert many.startswith(f"{len(_stamped(sandbox))} stamped images: "), many
    doctor = volimg_sandbox("doctor").stdout.splitlines()[-1]
    assert doctor.startswith("12 checks: "), doctor


def _stamped(sandbox: Sandbox) -> list[object]:
    return [i for i in sandbox.cloud.images.values() if "volimg" in i.tags]


MOMENT = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def test_audit_and_doctor_write_every_moment_as_utc_seconds_with_z(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest, sandbox: Sandbox
) -> None:
    """A stale import lock's "not updated since" quoted Glance's task time as it came:
    `2026-12-03T11:41:06.207444`, beside a takeover time in `...Z`."""
    import re

    made = volimg_sandbox("upload", "boot-vol", "-f", "json")
    image_id = made.doc["image"]["id"]
    sandbox.cloud.images[image_id].locations.remove("cheap")  # lost, say
    sandbox.faults.abandon_import(image=image_id)
    assert volimg_sandbox("replicate", image_id, "--store", "cheap", "--no-wait").exit_code == 0
    sandbox.wait_idle()
    sandbox.advance_clock(10 * 60)
    late = _runner_at(sandbox_cloud, sandbox)

    audit = late("audit", "--image", image_id, "-f", "json")
    doctor = late("doctor", "-f", "json")
    plain = late("audit", "--image", image_id)

    (finding,) = audit.doc["findings"]
    (row,) = [r for r in doctor.doc["checks"] if r["check"] == "stale-import-locks"]
    texts = [finding["reason"], row["detail"], row["fix"], plain.stdout]
    for text in texts:
        assert "since" in text or "from" in text, text
        assert not re.search(r"\d\d:\d\d:\d\d\.\d", text), text
        assert re.search(MOMENT, text), text
    for key in ("stamped_at", "intent_at"):
        value = (finding["stamp"] or {}).get(key)
        assert value is None or re.fullmatch(MOMENT, value), (key, value)
    assert re.fullmatch(MOMENT, finding["takeover_at"]), finding
    assert re.fullmatch(MOMENT, audit.doc["summary"]["audited_at"]), audit.doc["summary"]


# --- the batch's plain table ------------------------------------------------------------


def test_a_piped_batch_prints_a_header_row_and_a_dry_run_says_what_it_would_do(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`volimg upload --from-file list --dry-run | cat`: no header, rows `planned - - -`,
    and a log that said each volume had `started`."""
    listing = tmp_path / "nightly.txt"
    listing.write_text("boot-vol\npinned-vol\n")
    plan = volimg_plan_of(volimg_sandbox, "boot-vol")
    images = len(sandbox.cloud.images)

    dry = volimg_sandbox("upload", "--from-file", str(listing), "--dry-run")

    assert dry.exit_code == 0, dry
    lines = dry.stdout.splitlines()
    header = "volume\tresult\timage\tstores\twhy / next"
    assert lines[1] == header, dry.stdout
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[2:4]}
    _, result, name, stores, why = rows["boot-vol"]
    assert result == "planned"
    assert name.startswith("boot-vol-"), name  # the name the run would give it
    assert stores.split(",") == plan["expected_stores"], rows
    assert f"would upload to {plan['upload_store']}" in why, why
    assert f"copy to {', '.join(plan['replicate_to'])}" in why, why
    assert rows["pinned-vol"][4] == "would upload to archive", rows  # its type's store
    assert ": started" not in dry.stderr, dry.stderr
    assert "boot-vol: planning" in dry.stderr, dry.stderr
    assert len(sandbox.cloud.images) == images  # nothing was made

    real = volimg_sandbox("upload", "--from-file", str(listing))

    assert real.exit_code == 0, real
    assert real.stdout.splitlines()[0] == header, real.stdout
    assert ": started" in real.stderr


def volimg_plan_of(volimg: VolimgRunner, volume: str) -> dict[str, Any]:
    run = volimg("plan", volume, "-f", "json")
    assert run.exit_code == 0, run
    plan: dict[str, Any] = run.doc["plan"]
    return plan


# --- a stopped batch says what finishes it ------------------------------------------------


def test_sigint_to_a_batch_without_once_per_prints_what_finishes_this_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It said "run the same command again: with --once-per it finishes what this run
    began"; run as printed, that made two more images and left the interrupted one
    unfinished. The printed steps, run, must finish every volume with no extra image."""
    from tests.conftest import _use
    from tests.scenarios.conftest import make_runner
    from tests.scenarios.test_signals import finish, start_volimg, uploading, wait_until
    from volimg.sandbox import Timings

    timings = Timings.instant()
    timings.upload = 3.0  # long enough to be waiting when the signal comes
    with Sandbox(seed="demo", timings=timings) as sb:
        cloud = _use(
            CloudUnderTest("sandbox", sb.clouds_yaml, sb.admin_cloud, sb.member_cloud, sb),
            monkeypatch,
        )
        volimg = make_runner(cloud)
        expected = {v: set(volimg_plan_of(volimg, v)["expected_stores"]) for v in VOLUMES}
        before = set(sb.cloud.images)
        args = ("upload", *VOLUMES, "--concurrency", "1", "-f", "json")
        process = start_volimg(sb, *args)
        wait_until(uploading(sb))

        process.send_signal(signal.SIGINT)
        code, stdout, stderr = finish(process)

        assert code == 130, stderr
        doc = json.loads(stdout)
        assert doc["result"] == "interrupted"
        assert "--once-per" not in doc["error"]["hint"], doc["error"]
        steps = doc["next_steps"]
        assert steps == doc["summary"]["next_steps"]
        assert len(steps) == len(VOLUMES), steps  # one per volume, the started one first
        (started,) = doc["volumes"]
        image_id = started["image"]["id"]
        assert steps[0] == started["next_steps"][0], steps
        assert f"volimg replicate {image_id}" in steps[0], steps
        for step in steps:
            assert f"volimg: next: {step}" in stderr, stderr
        names = {v["volume"]["id"]: v["volume"]["name"] for v in [started]}
        names.update({v.id: v.name for v in sb.cloud.volumes.values() if v.name in VOLUMES})

        sb.timings.upload = 0.05
        for step in steps:
            volume = started["volume"]["name"] if image_id in step else names[step.split()[2]]
            follow([step], volimg, cloud, expect_stores=expected[volume])

        made = [sb.cloud.images[i] for i in set(sb.cloud.images) - before]
        assert sorted(str(i.extra.get("volimg_source_volume")) for i in made) == sorted(
            v.id for v in sb.cloud.volumes.values() if v.name in VOLUMES
        ), "an extra image, or a volume without its image"
        for image in made:
            assert image.status == "active", image
            assert image.extra.get("volimg_stamped_by") in ("upload", "replicate"), image.extra


VOLUMES = ("boot-vol", "data-vol", "pinned-vol")


# --- --timeout bounds every request -------------------------------------------------------


def test_a_delayed_copy_image_request_is_bounded_by_timeout_and_may_still_start(
    volimg_sandbox: VolimgRunner, sandbox_cloud: CloudUnderTest, sandbox: Sandbox
) -> None:
    """Delayed 12 s with --timeout 5, the copy-image POST waited for its answer for the
    whole HTTP timeout (60 s): only the upload request was bounded by --timeout."""
    sandbox.faults.delay("POST", r"/images/[^/]+/import$", 12)
    begun = time.monotonic()

    run = volimg_sandbox("upload", "boot-vol", "--timeout", "5", "-f", "json")

    assert time.monotonic() - begun < 10, "the copy-image request outlived --timeout"
    assert run.exit_code == 4, run
    image_id = run.doc["image"]["id"]
    error = run.doc["error"]
    assert "may still start the import" in error["message"], error
    assert "started no import" not in error["message"], error
    assert "safe" not in error["hint"], error
    assert f"volimg audit --image {image_id}" in error["hint"], error
    assert set(run.doc["replication"].values()) == {"pending"}, run.doc
    deadline = time.monotonic() + 20  # Glance handles the request once the delay ends
    while not sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$"):
        assert time.monotonic() < deadline, "the delayed copy-image was never handled"
        time.sleep(0.2)
    sandbox.wait_idle(30)
    imports = sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")
    assert len(imports) == 1  # sent once, never again
    expected = set(run.doc["plan"]["expected_stores"])
    follow(run.doc["next_steps"], volimg_sandbox, sandbox_cloud, expect_stores=expected)
    imports = sandbox.requests.filter(method="POST", path=r"/images/[^/]+/import$")
    assert len(imports) == 1, "the late import was copied again instead of followed"


def test_a_delayed_read_during_the_copy_wait_is_bounded_by_timeout(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """A GET of the image's tasks delayed 12 s held `replicate --timeout 5` for 12 s."""
    sandbox.faults.delay("GET", r"/images/[^/]+/tasks$", 12)
    begun = time.monotonic()

    run = volimg_sandbox("replicate", "cirros-base", "--store", "fast", "--timeout", "5")

    assert time.monotonic() - begun < 10, "the read outlived --timeout"
    assert run.exit_code in (0, 4), run  # the read is sent again (bounded), or time is up
    time.sleep(max(0.0, begun + 12.5 - time.monotonic()))  # the delayed read is answered


def test_a_batch_stopped_by_its_deadline_without_once_per_prints_what_finishes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deadline gave the same advice as a signal: "run the same command again"."""
    from tests.conftest import _use
    from tests.scenarios.conftest import make_runner
    from volimg.sandbox import Timings

    timings = Timings.instant()
    timings.upload = 3.0  # still uploading when the deadline passes
    with Sandbox(seed="demo", timings=timings) as sb:
        cloud = _use(
            CloudUnderTest("sandbox", sb.clouds_yaml, sb.admin_cloud, sb.member_cloud, sb),
            monkeypatch,
        )
        volimg = make_runner(cloud)
        expected = {v: set(volimg_plan_of(volimg, v)["expected_stores"]) for v in VOLUMES[:2]}
        before = set(sb.cloud.images)

        run = volimg("upload", *VOLUMES[:2], "--concurrency", "1", "--deadline", "1", "-f", "json")

        assert run.exit_code == 4, run
        assert run.doc["summary"]["stop_reason"] == "deadline"
        assert "--once-per" not in run.doc["error"]["hint"], run.doc["error"]
        (started,) = run.doc["volumes"]
        steps = run.doc["next_steps"]
        assert steps[0] == started["next_steps"][0], steps
        (left,) = [v for v in sb.cloud.volumes.values() if v.name == VOLUMES[1]]
        assert steps[1:] == [f"volimg upload {left.id}"], steps
        sb.timings.upload = 0.05
        follow(steps[:1], volimg, cloud, expect_stores=expected[started["volume"]["name"]])
        follow(steps[1:], volimg, cloud, expect_stores=expected[VOLUMES[1]])
        assert len(set(sb.cloud.images) - before) == 2, "an extra image"
