"""Issue 18: the nightly signal never lies.

A batch run the way cron and systemd run it, on the sandbox over real HTTP, broken the
ways nights break: the cloud unreachable on the first run, a wrong password, one 503
on Keystone, a held lock, a closed stdout, SIGTERM, a deadline, an empty selection, an
always-attached volume. Each run must leave its mark (the metrics file, the JSON or
ndjson summary, one summary line on stderr), and docs/cron.md's alert rules are
evaluated against the very files those runs wrote.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO_ROOT, CloudUnderTest
from tests.metrics_rules import Vector, fires, scrape
from tests.scenarios.conftest import Run
from volimg.cli import cli
from volimg.context import AppContext
from volimg.sandbox import Sandbox, Timings
from volimg.waiting import Clock

TARGET = {"instance": "backup-1:9100", "job": "node"}
UPLOAD = ("POST", r"/volumes/[^/]+/action$", "os-volume_upload_image")

# --- helpers --------------------------------------------------------------------------


def volimg_run(
    cloud: str, *args: str, env: dict[str, str] | None = None, no_sleep: bool = False
) -> Run:
    """``volimg --os-cloud CLOUD ARGS`` in-process; ``no_sleep``: retries do not wait."""
    clock = Clock(sleep=lambda _s: None) if no_sleep else Clock()
    app = AppContext(poll_interval=0.02, clock=clock)
    result = CliRunner().invoke(
        cli, ["--os-cloud", cloud, *args], obj=app, env=env, catch_exceptions=False
    )
    return Run(result.exit_code, result.stdout, result.stderr)


def metrics(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def gauge(path: Path, name: str, **labels: str) -> float | None:
    return metrics(path).get(name, {}).get(tuple(sorted(labels.items())))


def stopped_reason(path: Path) -> str | None:
    """The one reason volimg_batch_stopped says 1 for (None: all 0)."""
    reasons = [dict(k)["reason"] for k, v in metrics(path)["volimg_batch_stopped"].items() if v]
    assert len(reasons) <= 1, reasons
    return reasons[0] if reasons else None


def ndjson(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def last_stderr_line(run: Run) -> str:
    return [line for line in run.stderr.splitlines() if line.strip()][-1]


def other_clouds_yaml(cloud: CloudUnderTest, tmp_path: Path, **auth: str) -> Path:
    """The sandbox's clouds.yaml with some auth settings changed (a wrong password...)."""
    config = yaml.safe_load(cloud.clouds_yaml.read_text())
    for entry in config["clouds"].values():
        entry["auth"].update(auth)
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def closed_port_url() -> str:
    """An auth_url nothing listens on: connection refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/identity/v3"


def spawn(cloud: CloudUnderTest, *args: str, **popen: Any) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml),
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("OS_CLOUD", None)
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen(
        [sys.executable, "-m", "volimg", "--os-cloud", cloud.admin_cloud, *args],
        text=True,
        env=env,
        start_new_session=True,
        **options,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the sandbox never reached the awaited state"
        time.sleep(0.05)


def uploads(sandbox: Sandbox) -> list[Any]:
    method, path, action = UPLOAD
    return sandbox.requests.filter(method=method, path=path, action=action)


@pytest.fixture
def sb(sandbox_cloud: CloudUnderTest) -> Sandbox:
    assert sandbox_cloud.sandbox is not None
    return sandbox_cloud.sandbox


@pytest.fixture
def slow_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """Uploads take 30 s: a signal or a deadline surely comes while volimg waits."""
    timings = Timings.instant()
    timings.upload = 30.0
    with Sandbox(seed="demo", timings=timings) as sandbox:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(sandbox.clouds_yaml))
        yield sandbox


# --- every run leaves its mark ------------------------------------------------------------


def test_a_first_run_that_cannot_reach_the_cloud_leaves_a_metrics_file_and_a_summary(
    sandbox_cloud: CloudUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: no file at all, nothing on stdout, exit 1 in a second with no retry."""
    unreachable = other_clouds_yaml(sandbox_cloud, tmp_path, auth_url=closed_port_url())
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(unreachable))
    prom = tmp_path / "volimg.prom"

    run = volimg_run(
        sandbox_cloud.admin_cloud, "-v", "upload", "boot-vol", "data-vol",
        "--metrics-file", str(prom), "-f", "ndjson", no_sleep=True,
    )  # fmt: skip

    assert run.exit_code == 1, run
    (summary,) = ndjson(run.stdout)
    assert summary["type"] == "summary"
    assert summary["stop_reason"] == "cloud-unreachable"
    assert summary["selected"] is None
    assert summary["error"]["type"] == "CloudError"
    assert run.stderr.count("retrying in") == 4  # 5 attempts, each retry logged (-v)
    assert last_stderr_line(run).startswith(
        "volimg: summary: failed (exit 1); stopped: cloud-unreachable"
    )
    assert gauge(prom, "volimg_batch_exit_code") == 1
    assert stopped_reason(prom) == "cloud-unreachable"
    assert gauge(prom, "volimg_batch_last_success_timestamp_seconds") == 0  # never
    assert gauge(prom, "volimg_batch_running") == 0
    start = gauge(prom, "volimg_batch_last_start_timestamp_seconds")
    end = gauge(prom, "volimg_batch_last_run_timestamp_seconds")
    assert start is not None
    assert end is not None
    assert start <= end <= time.time() + 1
    assert gauge(prom, "volimg_batch_selected_volumes") is None  # it never selected


@pytest.mark.parametrize(
    ("setup", "reason", "code"),
    [
        pytest.param("wrong-password", "auth", 5, id="wrong-password"),
        pytest.param("keystone-503", "keystone-error", 1, id="keystone-503-every-time"),
        pytest.param("listing-502", "listing-failed", 1, id="listing-502-every-time"),
        pytest.param("no-such-cloud", "config", 2, id="no-such-cloud"),
        pytest.param("selector-twice", "input", 2, id="same-selector-key-twice"),
    ],
)
def test_a_run_that_cannot_start_says_why_everywhere(
    sandbox_cloud: CloudUnderTest,
    sb: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
    reason: str,
    code: int,
) -> None:
    """Before: the metrics file kept saying exit 0 and last night's times."""
    prom = tmp_path / "volimg.prom"
    good = volimg_run(sandbox_cloud.admin_cloud, "upload", "data-vol", "--metrics-file", str(prom))
    assert good.exit_code == 0, good
    good_end = gauge(prom, "volimg_batch_last_run_timestamp_seconds")
    success = gauge(prom, "volimg_batch_last_success_timestamp_seconds")
    cloud = sandbox_cloud.admin_cloud
    args = ["upload", "--selector", "tier=gold", "boot-vol"]
    if setup == "wrong-password":
        monkeypatch.setenv(
            "OS_CLIENT_CONFIG_FILE", str(other_clouds_yaml(sandbox_cloud, tmp_path, password="x"))
        )
    elif setup == "keystone-503":
        sb.faults.respond("POST", r"/auth/tokens", 503, times=None)
    elif setup == "listing-502":
        sb.faults.proxy_error("GET", r"/volumes/detail", 502, times=None)
    elif setup == "no-such-cloud":
        cloud = "no-such-cloud"
    else:
        args += ["--selector", "tier=silver"]
    before = len(sb.requests)

    run = volimg_run(cloud, *args, "--metrics-file", str(prom), "-f", "json", no_sleep=True)

    assert run.exit_code == code, run
    end = gauge(prom, "volimg_batch_last_run_timestamp_seconds")
    assert end is not None
    assert good_end is not None
    assert end > good_end  # before: last night's file, untouched
    assert gauge(prom, "volimg_batch_exit_code") == code
    assert stopped_reason(prom) == reason
    assert gauge(prom, "volimg_batch_last_success_timestamp_seconds") == success  # carried
    doc = run.doc
    assert doc["mode"] == "batch"
    assert doc["volumes"] == []
    assert doc["summary"]["stop_reason"] == reason
    assert doc["error"]["exit_code"] == code
    assert last_stderr_line(run).startswith(
        f"volimg: summary: failed (exit {code}); stopped: {reason}"
    )
    if setup == "selector-twice":
        assert "can never both match" in run.stderr
        assert len(sb.requests) == before  # refused before anything runs


def test_a_run_locked_out_says_so_and_leaves_the_holders_figures(
    sandbox_cloud: CloudUnderTest, tmp_path: Path
) -> None:
    """Before: exit 75 and no line on stdout, no trace in the metrics."""
    from volimg.locking import held

    prom = tmp_path / "volimg.prom"
    lock = tmp_path / "upload.lock"
    good = volimg_run(
        sandbox_cloud.admin_cloud, "upload", "data-vol", "boot-vol", "--metrics-file", str(prom)
    )
    assert good.exit_code == 0, good

    with held(lock):
        run = volimg_run(
            sandbox_cloud.admin_cloud, "upload", "data-vol", "--lock", str(lock),
            "--metrics-file", str(prom), "-f", "ndjson",
        )  # fmt: skip

    assert run.exit_code == 75, run
    (summary,) = ndjson(run.stdout)
    assert summary["result"] == "locked"
    assert summary["stop_reason"] == "lock-held"
    assert gauge(prom, "volimg_batch_exit_code") == 75
    assert stopped_reason(prom) == "lock-held"
    # The rest still describes the last run that ran.
    assert gauge(prom, "volimg_batch_volumes", result="ok") == 2
    assert gauge(prom, "volimg_batch_selected_volumes") == 2


def test_an_unexpected_error_still_leaves_its_mark(
    sandbox_cloud: CloudUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (anything volimg did not expect) is a traceback, and the metrics say so."""
    import volimg.batch

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(volimg.batch, "run_batch", broken)
    prom = tmp_path / "volimg.prom"
    app = AppContext(poll_interval=0.02)
    result = CliRunner().invoke(
        cli,
        ["--os-cloud", sandbox_cloud.admin_cloud, "upload", "boot-vol", "data-vol",
         "--metrics-file", str(prom)],
        obj=app,
    )  # fmt: skip

    assert isinstance(result.exception, RuntimeError)
    assert gauge(prom, "volimg_batch_exit_code") == 1
    assert stopped_reason(prom) == "internal-error"
    assert gauge(prom, "volimg_batch_running") == 0


@pytest.mark.parametrize("fmt", ["table", "json", "ndjson"])
def test_stderr_ends_with_one_summary_line_in_every_format(
    sandbox_cloud: CloudUnderTest, fmt: str
) -> None:
    """Before: -f ndjson (and json) left no summary on stderr."""
    run = volimg_run(sandbox_cloud.admin_cloud, "upload", "boot-vol", "data-vol", "-f", fmt)

    assert run.exit_code == 0, run
    assert last_stderr_line(run) == next(
        line for line in run.stderr.splitlines() if line.startswith("volimg: summary:")
    )
    assert last_stderr_line(run).startswith("volimg: summary: ok (exit 0); 2 selected (2 ok)")


# --- transient failures while starting -------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(("respond", "POST", r"/auth/tokens", 503), id="one-503-on-the-token"),
        pytest.param(("refuse", "POST", r"/auth/tokens", 0), id="one-reset-on-the-token"),
        pytest.param(("proxy", "GET", r"/volumes/detail", 502), id="one-502-on-the-listing"),
        pytest.param(("refuse", "GET", r"/identity/v3$", 0), id="one-reset-on-keystone-discovery"),
        pytest.param(("proxy", "GET", r"/image/v2/images", 502), id="one-502-on-glance"),
    ],
)
def test_a_passing_fault_while_starting_is_retried_and_shown_under_v(
    sandbox_cloud: CloudUnderTest, sb: Sandbox, fault: tuple[str, str, str, int]
) -> None:
    """Before: exit 1 in under a second, no retry."""
    kind, method, path, status = fault
    if kind == "respond":
        sb.faults.respond(method, path, status)
    elif kind == "proxy":
        sb.faults.proxy_error(method, path, status)
    else:
        sb.faults.refuse_connection(method, path)

    run = volimg_run(
        sandbox_cloud.admin_cloud, "-v", "upload", "--selector", "tier=gold", "boot-vol",
        "--once-per", "day", "-f", "json",
    )  # fmt: skip

    assert run.exit_code == 0, run
    assert run.doc["summary"]["counts"]["ok"] == 1
    assert "retrying in" in run.stderr
    assert len(uploads(sb)) == 1  # nothing that creates something went twice


# --- results that mean what they say ---------------------------------------------------


def test_sigterm_counts_interrupted_and_not_started_volumes_never_failed(
    slow_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Before: the running volume was `failed` and the others counted nowhere."""
    cloud = CloudUnderTest(
        kind="sandbox",
        clouds_yaml=slow_sandbox.clouds_yaml,
        admin_cloud=slow_sandbox.admin_cloud,
        member_cloud=slow_sandbox.member_cloud,
        sandbox=slow_sandbox,
    )
    prom = tmp_path / "volimg.prom"
    process = spawn(
        cloud, "upload", "boot-vol", "data-vol", "pinned-vol", "--concurrency", "1",
        "--metrics-file", str(prom), "-f", "ndjson",
    )  # fmt: skip
    wait_until(lambda: bool([r for r in uploads(slow_sandbox) if r.status]))
    time.sleep(0.5)

    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 143, stderr
    *volumes, summary = ndjson(stdout)
    assert [v["result"] for v in volumes] == ["interrupted"]
    assert summary["counts"]["interrupted"] == 1
    assert summary["counts"]["not-started"] == 2
    assert summary["counts"]["failed"] == 0
    assert summary["stop_reason"] == "interrupted"
    assert gauge(prom, "volimg_batch_volumes", result="interrupted") == 1
    assert gauge(prom, "volimg_batch_volumes", result="not-started") == 2
    assert gauge(prom, "volimg_batch_volumes", result="failed") == 0
    assert gauge(prom, "volimg_batch_exit_code") == 143
    assert stopped_reason(prom) == "interrupted"
    assert gauge(prom, "volimg_batch_running") == 0


def test_the_deadline_stops_starting_stops_waiting_and_exits_4(
    slow_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Before: no --deadline; a hung night ran for the whole per-volume --timeout."""
    prom = tmp_path / "volimg.prom"
    began = time.monotonic()

    run = volimg_run(
        slow_sandbox.admin_cloud, "upload", "boot-vol", "data-vol", "pinned-vol",
        "--concurrency", "1", "--deadline", "2s", "--metrics-file", str(prom), "-f", "json",
    )  # fmt: skip

    assert time.monotonic() - began < 20
    assert run.exit_code == 4, run
    summary = run.doc["summary"]
    assert run.doc["result"] == "timed-out"
    assert summary["stop_reason"] == "deadline"
    assert summary["counts"]["interrupted"] == 1
    assert summary["counts"]["not-started"] == 2
    (volume,) = run.doc["volumes"]
    assert volume["error"]["type"] == "DeadlineReached"
    assert volume["image"] is not None  # Cinder's upload goes on; the report names it
    assert stopped_reason(prom) == "deadline"
    assert gauge(prom, "volimg_batch_exit_code") == 4
    assert len(uploads(slow_sandbox)) == 1


def test_a_volume_that_timed_out_is_timed_out_and_the_batch_exits_4(
    sandbox_cloud: CloudUnderTest, sb: Sandbox
) -> None:
    """Before: result failed, batch exit 1, although docs/cron.md lists 4."""
    sb.timings.upload = 4.0

    run = volimg_run(
        sandbox_cloud.admin_cloud, "upload", "boot-vol", "data-vol", "--timeout", "1",
        "-f", "json",
    )  # fmt: skip

    assert run.exit_code == 4, run
    assert {v["result"] for v in run.doc["volumes"]} == {"timed-out"}
    assert run.doc["summary"]["counts"]["timed-out"] == 2
    assert run.doc["result"] == "timed-out"


def test_an_empty_selection_never_advances_the_last_success(
    sandbox_cloud: CloudUnderTest, tmp_path: Path
) -> None:
    """Before: a selector with a typo exited 0 and advanced last_success."""
    prom = tmp_path / "volimg.prom"
    good = volimg_run(sandbox_cloud.admin_cloud, "upload", "data-vol", "--metrics-file", str(prom))
    assert good.exit_code == 0, good
    success = gauge(prom, "volimg_batch_last_success_timestamp_seconds")

    typo = volimg_run(
        sandbox_cloud.admin_cloud, "upload", "--selector", "teir=gold",
        "--metrics-file", str(prom), "-f", "json",
    )  # fmt: skip

    assert typo.exit_code == 2, typo
    assert typo.doc["result"] == "empty"
    assert typo.doc["summary"]["selected"] == 0
    assert gauge(prom, "volimg_batch_selected_volumes") == 0
    assert stopped_reason(prom) == "empty-selection"
    assert gauge(prom, "volimg_batch_last_success_timestamp_seconds") == success

    allowed = volimg_run(
        sandbox_cloud.admin_cloud, "upload", "--selector", "teir=gold", "--allow-empty",
        "--metrics-file", str(prom), "-f", "ndjson",
    )  # fmt: skip

    assert allowed.exit_code == 0, allowed
    (summary,) = ndjson(allowed.stdout)
    assert summary["result"] == "empty"
    assert gauge(prom, "volimg_batch_selected_volumes") == 0
    assert gauge(prom, "volimg_batch_exit_code") == 0
    assert gauge(prom, "volimg_batch_last_success_timestamp_seconds") == success


def test_an_always_attached_volume_is_skipped_by_reason_stale_and_no_success(
    sandbox_cloud: CloudUnderTest, tmp_path: Path
) -> None:
    """Before: skipped every night with exit 0 and last_success advancing, unnoticed."""
    prom = tmp_path / "volimg.prom"

    run = volimg_run(
        sandbox_cloud.admin_cloud, "upload", "boot-vol", "busy-vol",
        "--metrics-file", str(prom), "-f", "json",
    )  # fmt: skip

    assert run.exit_code == 0, run
    assert gauge(prom, "volimg_batch_last_success_timestamp_seconds") == 0
    assert gauge(prom, "volimg_batch_stale_volumes") == 1
    busy = next(v for v in run.doc["volumes"] if v["ref"] == "busy-vol")
    assert busy["result"] == "skipped"
    assert busy["skip_reason"] == "in-use"
    summary = run.doc["summary"]
    assert summary["skipped"] == {"busy": 0, "in-use": 1, "skip-status": 0}
    assert summary["stale"] == ["busy-vol"]  # never backed up at all
    assert "not backed up for over 2 days (1): busy-vol" in run.stderr
    assert gauge(prom, "volimg_batch_skipped_volumes", reason="in-use") == 1


def test_skip_status_leaves_volumes_out_and_the_stale_check_still_watches_them(
    sandbox_cloud: CloudUnderTest, sb: Sandbox, tmp_path: Path
) -> None:
    """Before: no way to leave volumes in `error` out; they failed every night."""
    prom = tmp_path / "volimg.prom"
    first = volimg_run(sandbox_cloud.admin_cloud, "upload", "data-vol", "-f", "json")
    assert first.exit_code == 0, first
    sb.cloud.set_volume_status("data-vol", "error")
    before = len(uploads(sb))

    run = volimg_run(
        sandbox_cloud.admin_cloud, "upload", "boot-vol", "data-vol", "--skip-status", "error",
        "--stale-after", "1h", "--metrics-file", str(prom), "-f", "json",
    )  # fmt: skip

    assert run.exit_code == 0, run
    data = next(v for v in run.doc["volumes"] if v["ref"] == "data-vol")
    assert data["result"] == "skipped"
    assert data["skip_reason"] == "skip-status"
    assert "left out by --skip-status" in data["reason"]
    assert len(uploads(sb)) == before + 1  # boot-vol only
    assert run.doc["summary"]["stale"] == []  # its image is minutes old
    # Left out on purpose: it does not hold the last success back.
    success = gauge(prom, "volimg_batch_last_success_timestamp_seconds")
    assert success is not None
    assert success > 0

    time.sleep(2.1)
    later = volimg_run(
        sandbox_cloud.admin_cloud, "upload", "boot-vol", "data-vol", "--skip-status", "error",
        "--stale-after", "1s", "-f", "json",
    )  # fmt: skip

    assert later.exit_code == 0, later
    assert later.doc["summary"]["stale"] == ["data-vol"]
    assert later.doc["summary"]["stale_after_seconds"] == 1.0


# --- a closed stdout or stderr ---------------------------------------------------------


def test_a_closed_stdout_never_stops_the_work_and_the_metrics_are_written(
    sandbox_cloud: CloudUnderTest, sb: Sandbox, tmp_path: Path
) -> None:
    """`volimg upload ... -f ndjson | head -1`. Before: exit 141 and no metrics file."""
    sb.timings.upload = 0.3
    prom = tmp_path / "volimg.prom"
    process = spawn(
        sandbox_cloud, "upload", "boot-vol", "data-vol", "pinned-vol", "--concurrency", "1",
        "--metrics-file", str(prom), "-f", "ndjson",
    )  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline()  # head -1
    process.stdout.close()

    _, stderr = process.communicate(timeout=120)

    assert json.loads(first)["type"] == "volume"
    assert process.returncode == 141, stderr
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    assert gauge(prom, "volimg_batch_volumes", result="ok") == 3
    assert gauge(prom, "volimg_batch_exit_code") == 141
    success = gauge(prom, "volimg_batch_last_success_timestamp_seconds")
    assert success is not None
    assert abs(success - time.time()) < 60  # a good night still
    assert len(uploads(sb)) == 3
    assert last_stderr_line(Run(0, "", stderr)).startswith("volimg: summary: ok (exit 0)")


def test_a_closed_stderr_changes_nothing(sandbox_cloud: CloudUnderTest, tmp_path: Path) -> None:
    prom = tmp_path / "volimg.prom"
    read, write = os.pipe()
    os.close(read)  # nobody reads stderr: every write is EPIPE
    try:
        process = spawn(
            sandbox_cloud, "upload", "boot-vol", "data-vol", "--metrics-file", str(prom),
            "-f", "ndjson", stderr=write,
        )  # fmt: skip
    finally:
        os.close(write)
    stdout, _ = process.communicate(timeout=120)

    assert process.returncode == 0
    assert [line["type"] for line in ndjson(stdout)] == ["volume", "volume", "summary"]
    assert gauge(prom, "volimg_batch_volumes", result="ok") == 2
    assert gauge(prom, "volimg_batch_exit_code") == 0


# --- inputs that quietly meant something else --------------------------------------------


def test_a_boolean_lock_variable_means_the_default_lock(
    sandbox_cloud: CloudUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: VOLIMG_UPLOAD_LOCK=true locked a file named `true` in the working directory."""
    from volimg.locking import default_lock_path, held

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    cloud = sandbox_cloud.admin_cloud

    for word in ("true", "1", "yes", "ON"):
        run = volimg_run(cloud, "upload", "data-vol", env={"VOLIMG_UPLOAD_LOCK": word})
        assert run.exit_code == 0, run
        assert not (tmp_path / word).exists()
    assert default_lock_path().exists()

    with held(default_lock_path()):
        locked = volimg_run(cloud, "upload", "data-vol", env={"VOLIMG_UPLOAD_LOCK": "true"})
        unlocked = volimg_run(cloud, "upload", "data-vol", env={"VOLIMG_UPLOAD_LOCK": "0"})
    assert locked.exit_code == 75, locked
    assert unlocked.exit_code == 0, unlocked  # false-looking: no lock at all


@pytest.mark.parametrize("fmt", ["table", "json", "ndjson"])
def test_a_dry_run_from_the_environment_says_so_everywhere_and_never_writes_metrics(
    sandbox_cloud: CloudUnderTest, tmp_path: Path, fmt: str
) -> None:
    """Before: a leftover VOLIMG_UPLOAD_DRY_RUN=1 reported `"result": "ok"`, exit 0."""
    prom = tmp_path / "volimg.prom"
    prom.write_text("# last night's file\n")

    run = volimg_run(
        sandbox_cloud.admin_cloud, "upload", "boot-vol", "data-vol", "--metrics-file",
        str(prom), "-f", fmt, env={"VOLIMG_UPLOAD_DRY_RUN": "1"},
    )  # fmt: skip

    assert run.exit_code == 0, run
    assert prom.read_text() == "# last night's file\n"
    assert "dry run (from VOLIMG_UPLOAD_DRY_RUN)" in run.stderr.splitlines()[0]
    assert "dry run (from VOLIMG_UPLOAD_DRY_RUN): nothing was changed" in last_stderr_line(run)
    if fmt == "json":
        assert run.doc["result"] == "planned"
        assert run.doc["dry_run"] is True
        assert run.doc["summary"]["dry_run"] is True
    elif fmt == "ndjson":
        summary = ndjson(run.stdout)[-1]
        assert summary["dry_run"] is True
        assert summary["result"] == "planned"
    else:
        assert run.stdout.startswith("dry run (from VOLIMG_UPLOAD_DRY_RUN): nothing was changed")


def test_a_single_upload_dry_run_from_the_environment_says_so(
    sandbox_cloud: CloudUnderTest,
) -> None:
    run = volimg_run(
        sandbox_cloud.admin_cloud, "upload", "boot-vol", env={"VOLIMG_UPLOAD_DRY_RUN": "yes"}
    )

    assert run.exit_code == 0, run
    assert "dry run (from VOLIMG_UPLOAD_DRY_RUN): nothing will be changed" in run.stderr
    assert run.stdout.startswith("plan (nothing changed)")


# --- the audit's stores ----------------------------------------------------------------------


def test_the_audit_metrics_show_which_store_is_behind(
    sandbox_cloud: CloudUnderTest, tmp_path: Path
) -> None:
    """Before: no audit metric had a store label."""
    prom = tmp_path / "volimg-audit.prom"

    run = volimg_run(sandbox_cloud.admin_cloud, "audit", "--metrics-file", str(prom))

    assert run.exit_code == 3, run  # the demo seed has an image that lost a copy
    missing = metrics(prom)["volimg_audit_store_missing_copies"]
    behind = {dict(k)["store"] for k, v in missing.items() if v}
    assert behind  # the store that lost the copy
    assert set(dict(k)["store"] for k in missing) >= behind | {"fast"}
    images = metrics(prom)["volimg_audit_store_images"]
    assert all(v >= 0 for v in images.values())

    fixed = volimg_run(sandbox_cloud.admin_cloud, "audit", "--fix", "--metrics-file", str(prom))

    assert fixed.exit_code == 0, fixed
    missing = metrics(prom)["volimg_audit_store_missing_copies"]
    assert not [k for k, v in missing.items() if v]


# --- docs/cron.md's alert rules against files real runs wrote ----------------------------


def cron_rules() -> dict[str, dict[str, Any]]:
    doc = (REPO_ROOT / "docs" / "cron.md").read_text()
    text = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    return {rule["alert"]: rule for rule in yaml.safe_load(text)["groups"][0]["rules"]}


def _for_seconds(rule: dict[str, Any]) -> float:
    spec = str(rule.get("for", "0s"))
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(spec[:-1]) * units[spec[-1]]


def firing(series: Vector, at: float) -> set[str]:
    """The docs' alerts that fire at ``at`` over ``series`` (unchanged for their ``for``)."""
    return {
        name
        for name, rule in cron_rules().items()
        if fires(rule["expr"], series, at, for_seconds=_for_seconds(rule))
    }


def scraped(path: Path | None) -> Vector:
    return scrape(path.read_text(), **TARGET) if path is not None and path.exists() else []


HOUR = 3600.0


def test_the_alert_rules_hold_against_the_files_real_runs_wrote(
    sandbox_cloud: CloudUnderTest, sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = sandbox_cloud.admin_cloud
    runs: dict[str, Path] = {}

    def night(name: str, *args: str, copy_from: str | None = None, **kwargs: Any) -> Run:
        prom = tmp_path / f"{name}.prom"
        if copy_from is not None:
            prom.write_text(runs[copy_from].read_text())
        run = volimg_run(cloud, "upload", *args, "--metrics-file", str(prom), **kwargs)
        runs[name] = prom
        return run

    assert night("good", "boot-vol", "data-vol").exit_code == 0
    sb.faults.fail_cinder_upload(volume="data-vol", times=1)
    assert night("failed", "boot-vol", "data-vol", copy_from="good").exit_code == 1
    sb.faults.fail_store_copy("archive", times=1)
    assert night("partial", "boot-vol", copy_from="good").exit_code == 3
    assert night("empty", "--selector", "teir=gold", copy_from="good").exit_code == 2
    assert night("allowed-empty", "--selector", "teir=gold", "--allow-empty").exit_code == 0
    assert night("stale", "boot-vol", "busy-vol", copy_from="good").exit_code == 0
    unreachable = other_clouds_yaml(sandbox_cloud, tmp_path, auth_url=closed_port_url())
    with monkeypatch.context() as patch:
        patch.setenv("OS_CLIENT_CONFIG_FILE", str(unreachable))
        assert night("first-unreachable", "boot-vol", no_sleep=True).exit_code == 1
    from volimg.locking import held

    with held(tmp_path / "lock"):
        assert night("locked", "boot-vol", "--lock", str(tmp_path / "lock"),
                     copy_from="good").exit_code == 75  # fmt: skip

    def ended(name: str) -> float:
        value = gauge(runs[name], "volimg_batch_last_run_timestamp_seconds")
        assert value is not None
        return value

    soon = {name: firing(scraped(path), ended(name) + 60) for name, path in runs.items()}
    assert soon == {
        "good": set(),
        "failed": {"VolimgNightlyFailed"},
        "partial": {"VolimgNightlyIncomplete"},
        "empty": {"VolimgNightlyFailed", "VolimgNightlyEmptySelection"},
        "allowed-empty": {"VolimgNightlyEmptySelection", "VolimgNightlyNotSucceeding"},
        "stale": {"VolimgVolumesNotBackedUp"},
        # The first run's file says "never succeeded" (0): the dead-man's rule fires at once.
        "first-unreachable": {"VolimgNightlyFailed", "VolimgNightlyNotSucceeding"},
        "locked": set(),
    }
    # A night that never came: the good file, 31 hours on.
    assert firing(scraped(runs["good"]), ended("good") + 31.5 * HOUR) == {
        "VolimgNightlyNotSucceeding",
        "VolimgNightlyNotRunning",
    }
    # No file at all, ever: only absent() can tell.
    assert firing([], time.time()) == {"VolimgNightlyNeverRan"}


def test_the_rules_fire_for_interrupted_and_killed_runs(
    slow_sandbox: Sandbox, tmp_path: Path
) -> None:
    cloud = CloudUnderTest(
        kind="sandbox",
        clouds_yaml=slow_sandbox.clouds_yaml,
        admin_cloud=slow_sandbox.admin_cloud,
        member_cloud=slow_sandbox.member_cloud,
        sandbox=slow_sandbox,
    )
    found: dict[str, Path] = {}
    # Each run on volumes of its own: the first run's uploads go on in Cinder for 30 s,
    # and a busy volume is skipped, which would end the second run before the kill.
    runs = (
        ("terminated", signal.SIGTERM, ("boot-vol", "data-vol")),
        ("killed", signal.SIGKILL, ("pinned-vol",)),
    )
    for name, how, volumes in runs:
        prom = tmp_path / f"{name}.prom"
        asked = len(uploads(slow_sandbox))
        process = spawn(cloud, "upload", *volumes, "--metrics-file", str(prom))
        wait_until(lambda p=prom: p.exists() and gauge(p, "volimg_batch_running") == 1)
        # Kill it while it works: once Cinder has been asked for an upload.
        wait_until(lambda n=asked: len(uploads(slow_sandbox)) > n)
        process.send_signal(how)
        process.communicate(timeout=120)
        found[name] = prom

    terminated = found["terminated"]
    end = gauge(terminated, "volimg_batch_last_run_timestamp_seconds")
    assert end is not None
    assert firing(scraped(terminated), end + 60) == {
        "VolimgNightlyInterrupted",
        "VolimgNightlyNotSucceeding",  # a first night that never succeeded: 0
    }
    killed = found["killed"]
    assert gauge(killed, "volimg_batch_running") == 1  # SIGKILL: nobody wrote the end
    start = gauge(killed, "volimg_batch_last_start_timestamp_seconds")
    assert start is not None
    assert "VolimgNightlyStuck" not in firing(scraped(killed), start + 60)
    assert "VolimgNightlyStuck" in firing(scraped(killed), start + 7 * HOUR)


def test_the_thresholds_leave_room_for_the_units_timeout_and_random_delay(
    sandbox_cloud: CloudUnderTest, tmp_path: Path
) -> None:
    """Two healthy nights as far apart as the unit allows: no rule fires in between.

    Night 1 ends; night 2 starts 24 h + RandomizedDelaySec later (its start is written
    at once), and is still running, healthily, at TimeoutStartSec.
    """
    import configparser

    from tests.unit.test_cron_doc import _seconds
    from volimg.fleet_metrics import write_batch_start

    doc = (REPO_ROOT / "docs" / "cron.md").read_text()
    blocks = doc.split("```ini\n")
    service, timer = (configparser.RawConfigParser(strict=False) for _ in range(2))
    service.read_string(blocks[1].split("```", 1)[0])
    timer.read_string(blocks[2].split("```", 1)[0])
    timeout = _seconds(service["Service"]["TimeoutStartSec"])
    delay = _seconds(timer["Timer"]["RandomizedDelaySec"])
    prom = tmp_path / "volimg.prom"
    first = volimg_run(sandbox_cloud.admin_cloud, "upload", "boot-vol", "--metrics-file", str(prom))
    assert first.exit_code == 0, first
    start = gauge(prom, "volimg_batch_last_start_timestamp_seconds")
    assert start is not None
    # Worst case: night 1 started early and ended at once; night 2 starts late.
    second_start = start + 24 * HOUR + delay
    assert firing(scraped(prom), second_start - 1) == set()

    from datetime import datetime, timezone

    write_batch_start(prom, datetime.fromtimestamp(second_start, timezone.utc))

    for moment in (second_start + 60, second_start + timeout):
        assert firing(scraped(prom), moment) == set(), moment
    # ... but a run still "running" well past the unit's timeout was killed or hangs.
    assert firing(scraped(prom), second_start + timeout + HOUR) >= {"VolimgNightlyStuck"}
