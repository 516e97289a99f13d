"""The demo and sandbox commands, interrupts, and volimg used as a library."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import CloudUnderTest, imported_modules
from tests.scenarios.conftest import make_runner
from tests.scenarios.next_steps import follow, last_clause
from volimg import core, events
from volimg.cli import cli
from volimg.context import AppContext
from volimg.errors import ExitCode
from volimg.gateway import connect
from volimg.planner import ReplicationOptions, UploadOptions
from volimg.results import RunSettings


def test_demo_uploads_boot_vol_and_says_what_to_try_next(monkeypatch: pytest.MonkeyPatch) -> None:
    from volimg.sandbox import Timings

    monkeypatch.setattr(Timings, "human", Timings.instant)  # same path, test speed
    result = CliRunner().invoke(cli, ["demo"], obj=AppContext(poll_interval=0.02))

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("plan\n")
    assert "why:" in result.stdout
    assert "store cheap    copied" in result.stdout
    assert "store archive  copied" in result.stdout
    assert "What to try next" in result.stderr


def test_demo_in_json_prints_exactly_one_document(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from volimg.sandbox import Timings

    monkeypatch.setattr(Timings, "human", Timings.instant)
    result = CliRunner().invoke(cli, ["demo", "-f", "json"], obj=AppContext(poll_interval=0.02))

    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["result"] == "ok"
    assert set(doc["image"]["stores"]) == {"fast", "cheap", "archive"}


def test_sandbox_command_serves_until_terminated(tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds), "OS_CLOUD": "sandbox"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "volimg",
            "sandbox",
            "--clouds-yaml",
            str(clouds),
            "--speed",
            "instant",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not clouds.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert clouds.exists(), "the sandbox never wrote its clouds.yaml"
        stores = subprocess.run(
            [sys.executable, "-m", "volimg", "stores", "-f", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert stores.returncode == 0, stores.stderr
        assert '"default_store": "fast"' in stores.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert "OS_CLIENT_CONFIG_FILE" in stderr


def test_sandbox_command_refuses_a_non_loopback_address() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "--host", "0.0.0.0"])

    assert result.exit_code == 2
    assert "--allow-remote" in result.stderr


def test_interrupt_before_anything_changed_is_exit_130() -> None:
    def interrupted(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyboardInterrupt

    result = CliRunner().invoke(cli, ["plan", "boot-vol"], obj=AppContext(connect=interrupted))

    assert result.exit_code == ExitCode.INTERRUPTED
    assert "nothing was changed" in result.stderr


def test_interrupt_after_the_upload_says_what_exists_and_how_to_finish(
    sandbox_cloud: CloudUnderTest,
) -> None:
    gateway = connect(sandbox_cloud.admin_cloud, None)

    def stop_after_upload(event: events.Event) -> None:
        if isinstance(event, events.UploadFinished):
            raise KeyboardInterrupt

    outcome = core.upload(
        gateway,
        "boot-vol",
        UploadOptions(),
        RunSettings(poll_interval=0.02),
        emit=stop_after_upload,
    )

    assert outcome.exit_code == ExitCode.INTERRUPTED
    assert outcome.image is not None
    assert outcome.image.stores == ("fast",)
    error = outcome.error
    assert error is not None
    assert outcome.image.id in error.message
    assert "fast" in error.message
    assert f"volimg replicate {outcome.image.id} --store cheap --store archive" in (
        error.hint or ""
    )
    gateway.close()
    volimg = make_runner(sandbox_cloud)
    everywhere = {"fast", "cheap", "archive"}
    follow(outcome.next_steps, volimg, sandbox_cloud, expect_stores=everywhere)
    follow([last_clause(error.hint)], volimg, sandbox_cloud, expect_stores=everywhere)


def test_library_use_without_click(sandbox_cloud: CloudUnderTest) -> None:
    gateway = connect(sandbox_cloud.admin_cloud, None)
    seen: list[events.Event] = []

    outcome = core.upload(
        gateway, "pinned-vol", UploadOptions(), RunSettings(poll_interval=0.02), emit=seen.append
    )

    assert outcome.result == "ok"
    assert outcome.image is not None
    assert outcome.image.stores == ("archive",)
    assert any(isinstance(e, events.UploadFinished) for e in seen)
    gateway.close()


def test_volimg_calls_no_deprecated_openstacksdk_api(sandbox_cloud: CloudUnderTest) -> None:
    """openstacksdk warns about its own internals; any other deprecation is volimg's."""
    import warnings

    from openstack.warnings import OpenStackDeprecationWarning, RemovedInSDK50Warning

    sdk_internal = (
        "influxdb",  # openstack/config/cloud_region.py, on every connection
        "'service_type' parameter is unnecesary",  # openstack/proxy.py, its own calls
        "_compute_attributes method is deprecated",  # openstack/resource.py internals
    )
    gateway = connect(sandbox_cloud.admin_cloud, None)
    settings = RunSettings(poll_interval=0.02)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = core.upload(gateway, "pinned-vol", UploadOptions(prune=True), settings)
        core.replicate(gateway, "cirros-base", None, ReplicationOptions(stores=("fast",)), settings)
    gateway.close()

    assert outcome.result == "ok"
    deprecations = [
        str(w.message)
        for w in caught
        if issubclass(w.category, (OpenStackDeprecationWarning, RemovedInSDK50Warning))
        or "openstack" in str(w.filename)
    ]
    assert deprecations, "expected openstacksdk's own internal warnings to be seen"
    ours = [m for m in deprecations if not any(known in m for known in sdk_internal)]
    assert ours == []


def test_interrupt_while_cinder_answers_the_upload_does_not_claim_nothing_exists(
    sandbox_cloud: CloudUnderTest, sandbox: Any
) -> None:
    from volimg.gateway import Gateway

    class AnswerInterrupted(Gateway):
        """Ctrl-C arrives after Cinder acted on the upload, before volimg read the answer."""

        def upload_volume(self, *args: Any, **kwargs: Any) -> Any:
            super().upload_volume(*args, **kwargs)
            raise KeyboardInterrupt

    gateway = connect(sandbox_cloud.admin_cloud, None)
    gateway.__class__ = AnswerInterrupted
    outcome = core.upload(
        gateway, "boot-vol", UploadOptions(image_name="boot-copy"), RunSettings(poll_interval=0.02)
    )
    gateway.close()

    assert outcome.exit_code == ExitCode.INTERRUPTED
    error = outcome.error
    assert error is not None
    assert "nothing was created" not in error.message
    assert "may have created image 'boot-copy'" in error.message
    assert "openstack image list --name boot-copy" in (error.hint or "")
    assert [i.name for i in sandbox.cloud.images_named("boot-copy")] == ["boot-copy"]


def test_the_live_panel_on_a_terminal_ends_with_the_result_table(
    sandbox_cloud: CloudUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm")  # TERM=dumb would get plain lines
    app = AppContext(poll_interval=0.02, force_terminal=True)
    result = CliRunner().invoke(
        cli, ["--os-cloud", sandbox_cloud.admin_cloud, "upload", "boot-vol"], obj=app
    )

    assert result.exit_code == 0, result.stderr
    assert "store cheap: copied" in result.stderr  # milestone lines above the panel
    assert "\x1b[" in result.stderr  # drawn for a terminal
    assert "result" in result.stdout
    assert "ok" in result.stdout


@pytest.mark.parametrize(
    "args", [["stores"], ["plan", "boot-vol"], ["upload", "boot-vol", "--dry-run"]], ids=" ".join
)
def test_commands_that_change_nothing_do_not_load_the_executor(
    sandbox_cloud: CloudUnderTest, args: list[str]
) -> None:
    """Reading and planning start faster without the upload steps (docs/performance.md)."""
    modules = imported_modules("--os-cloud", sandbox_cloud.admin_cloud, *args)
    assert "volimg.core" in modules
    assert not modules & {"volimg.executor", "volimg.steps", "tenacity"}, args


def test_stores_loads_the_gateway_and_a_renderer_of_lines_only(
    sandbox_cloud: CloudUnderTest,
) -> None:
    """`volimg stores` is measured against a bare openstacksdk script (docs/performance.md,
    the 1.05x target): beyond openstacksdk and click it loads the group, the command,
    the app context, the gateway with its values, and the renderer's plain output; no
    planner, events, results, doctor, provenance, JSON documents or progress; and of
    openstacksdk's services only those volimg calls."""
    modules = imported_modules("--os-cloud", sandbox_cloud.admin_cloud, "stores")
    ours = {m for m in modules if m == "volimg" or m.startswith("volimg.")}
    assert ours == {
        "volimg",
        "volimg.cli",
        "volimg.commands",
        "volimg.commands.options",
        "volimg.commands.stores",
        "volimg.context",
        "volimg.core",
        "volimg.errors",
        "volimg.gateway",
        "volimg.gateway.cinder",
        "volimg.gateway.errors",
        "volimg.gateway.glance",
        "volimg.gateway.services",
        "volimg.gateway.session",
        "volimg.gateway.values",
        "volimg.model",
        "volimg.output",
        "volimg.render",
        "volimg.signals",
        "volimg.waiting",
    }
    # openstacksdk's services volimg never calls are not loaded (volimg.gateway.services).
    assert not modules & {"openstack.load_balancer.v2._proxy", "openstack.key_manager.v1._proxy"}
    assert "openstack.image.v2._proxy" in modules


@pytest.mark.parametrize(
    "args",
    [["stores"], ["plan", "boot-vol"], ["upload", "boot-vol"], ["upload", "boot-vol", "data-vol"]],
    ids=" ".join,
)
def test_off_a_terminal_rich_is_not_even_imported(
    sandbox_cloud: CloudUnderTest, args: list[str]
) -> None:
    """Cron, pipes and CI get plain lines; rich is only for a terminal."""
    modules = imported_modules("--os-cloud", sandbox_cloud.admin_cloud, *args)
    assert "volimg.render" in modules
    assert not {m for m in modules if m == "rich" or m.startswith(("rich.", "volimg.live"))}
