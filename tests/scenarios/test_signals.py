"""SIGTERM and SIGINT on a real ``python -m volimg`` process, during each wait.

The sandbox runs in the test process with slow timings, so the subprocess is surely
waiting when the signal arrives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import REPO_ROOT
from tests.scenarios.arrivals import Arrivals
from volimg.sandbox import Sandbox, Timings


@pytest.fixture
def slow_sandbox() -> Iterator[Sandbox]:
    timings = Timings.instant()
    timings.upload = 30.0
    timings.store_copy = 30.0
    with Sandbox(seed="demo", timings=timings) as sb:
        yield sb


UUID = "[0-9a-f-]{36}"


def start_volimg(sandbox: Sandbox, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "OS_CLIENT_CONFIG_FILE": str(sandbox.clouds_yaml),
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("OS_CLOUD", None)
    return subprocess.Popen(
        [sys.executable, "-m", "volimg", "--os-cloud", sandbox.admin_cloud, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the sandbox never reached the awaited state"
        time.sleep(0.05)


def answered(sandbox: Sandbox, method: str, path: str, action: str | None = None) -> bool:
    """The request was answered, and a moment has passed for volimg to read the answer
    and start waiting (a signal before that is a different case: the hint then says
    how to check whether the request took effect)."""
    done = [r for r in sandbox.requests.filter(method=method, path=path, action=action) if r.status]
    if done:
        time.sleep(0.5)
    return bool(done)


def uploading(sandbox: Sandbox) -> Callable[[], bool]:
    return lambda: answered(sandbox, "POST", r"/volumes/[^/]+/action$", "os-volume_upload_image")


def copying(sandbox: Sandbox) -> Callable[[], bool]:
    return lambda: answered(sandbox, "POST", r"/images/[^/]+/import$")


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


@pytest.mark.parametrize(
    ("command", "during", "resume_word"),
    [
        pytest.param(("upload", "boot-vol"), uploading, "replicate", id="upload-wait-image"),
        pytest.param(("upload", "boot-vol"), copying, "replicate", id="upload-wait-copies"),
        pytest.param(
            ("replicate", "cirros-base", "--store", "fast"),
            copying,
            "replicate",
            id="replicate-wait-copies",
        ),
    ],
)
def test_sigterm_during_a_wait_stops_cleanly_with_exit_143(
    slow_sandbox: Sandbox,
    command: tuple[str, ...],
    during: Callable[[Sandbox], Callable[[], bool]],
    resume_word: str,
) -> None:
    if during is copying:
        slow_sandbox.timings.upload = 0.05
    process = start_volimg(slow_sandbox, *command, "-f", "json")
    wait_until(during(slow_sandbox))

    process.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(process)

    assert code == 143, (stdout, stderr)
    doc = json.loads(stdout)  # exactly one document
    assert doc["error"]["type"] == "Interrupted"
    assert doc["error"]["exit_code"] == 143
    assert "Traceback" not in stdout + stderr
    assert f"volimg {resume_word} " in stderr  # the resume command
    # What exists: the report names the image the cloud really has.
    image = slow_sandbox.cloud.images.get(doc["image"]["id"]) if doc["image"] else None
    assert image is not None or "Cinder is uploading to image" in doc["error"]["message"]


def test_sigint_during_a_wait_is_exit_130(slow_sandbox: Sandbox) -> None:
    process = start_volimg(slow_sandbox, "upload", "boot-vol", "-f", "json")
    wait_until(uploading(slow_sandbox))

    process.send_signal(signal.SIGINT)
    code, stdout, stderr = finish(process)

    assert code == 130, (stdout, stderr)
    assert json.loads(stdout)["error"]["exit_code"] == 130
    assert "volimg replicate " in stderr
    assert "Traceback" not in stdout + stderr


def test_sigterm_before_any_change_says_nothing_was_changed(slow_sandbox: Sandbox) -> None:
    slow_sandbox.faults.delay("GET", r"/volumes/detail$", 30)
    process = start_volimg(slow_sandbox, "upload", "boot-vol", "-f", "json")
    wait_until(lambda: bool(slow_sandbox.requests.filter(path=r"/volumes/detail$")) or _held())

    process.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(process)

    assert code == 143, (stdout, stderr)
    assert "nothing was changed" in json.loads(stdout)["error"]["message"]
    assert "Traceback" not in stderr
    assert slow_sandbox.cloud.find_volume("boot-vol").status == "available"


def _held() -> bool:
    time.sleep(1.0)  # the delayed request is only logged once answered: give it a moment
    return True


def test_two_signals_in_a_row_exit_without_a_traceback(slow_sandbox: Sandbox) -> None:
    # Back to back, the second lands during the clean stop or after it; either way the
    # exit code is the first signal's and no traceback shows.
    process = start_volimg(slow_sandbox, "upload", "boot-vol", "-f", "json")
    wait_until(uploading(slow_sandbox))

    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    code, _stdout, stderr = finish(process)

    assert code == 130, stderr
    assert "Traceback" not in stderr


def test_the_second_signal_during_the_clean_stop_exits_at_once_with_the_first_ones_code() -> None:
    from volimg import signals

    exits: list[int] = []
    with signals.handled(exit_now=exits.append):
        with pytest.raises(signals.Interrupt) as first:  # noqa: PT012 - kill, then wait for it
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal is delivered before this ends
        # The clean stop is under way: a second signal, of the other kind, must not
        # raise again, and the exit code stays the one the report (if any) states.
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
    assert first.value.signum == signal.SIGTERM
    assert exits == [143]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_once_the_entry_points_block_has_seen_a_signal_later_ones_are_ignored() -> None:
    """Python restores the default actions while it shuts down: a SIGINT then would kill
    the process (-2, "130") under a report that says 143. So the entry point leaves both
    signals ignored once the clean stop is over."""
    from volimg import signals

    saved = {signum: signal.getsignal(signum) for signum in signals.HANDLED}
    try:
        with (  # noqa: PT012 - kill, then wait for it
            pytest.raises(signals.Interrupt),
            signals.handled(exit_now=lambda code: None, keep_after_signal=True),
        ):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal is delivered before this ends
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.mark.parametrize("gap", [0.02, 0.05, 0.1], ids=["20ms", "50ms", "100ms"])
def test_sigint_soon_after_sigterm_mid_upload_exits_143_as_its_report_says(
    slow_sandbox: Sandbox, gap: float
) -> None:
    """SIGTERM, then SIGINT 20-100 ms later: wherever the second lands (during the clean
    stop, after the report, while Python shuts down), the process exits with the first
    signal's code, and a report on stdout, if the clean stop got to write it, says so."""
    process = start_volimg(slow_sandbox, "upload", "boot-vol", "-f", "json")
    wait_until(uploading(slow_sandbox))

    process.send_signal(signal.SIGTERM)
    time.sleep(gap)
    process.send_signal(signal.SIGINT)
    code, stdout, stderr = finish(process)

    assert code == 143, (stdout, stderr)
    assert "Traceback" not in stdout + stderr
    at_once = [line for line in stderr.splitlines() if "stopping at once" in line]
    assert at_once in ([], ["volimg: SIGINT after SIGTERM: stopping at once"]), stderr
    if stdout:
        assert json.loads(stdout)["error"]["exit_code"] == 143  # exactly one document


def test_sigint_during_the_clean_stop_of_a_batch_stops_at_once_without_a_report(
    slow_sandbox: Sandbox,
) -> None:
    """The batch's clean stop waits for its running volume, held here in a request to
    Cinder (its upload request); the SIGINT that comes 50 ms after the SIGTERM ends it
    there: one line, no report, and the exit code of the first signal
    (docs/reliability.md)."""
    with Arrivals(slow_sandbox).watching() as arrivals:
        gate = arrivals.hold(
            "POST", rf"/volume/v3/[^/]+/volumes/{UUID}/action$", "os-volume_upload_image"
        )
        process = start_volimg(
            slow_sandbox, "upload", "boot-vol", "--concurrency", "1", "-f", "json"
        )
        arrivals.wait_until(lambda: gate.held)  # the worker waits on Cinder's answer

        process.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        assert process.poll() is None  # still in its clean stop, waiting for the worker
        process.send_signal(signal.SIGINT)
        code, stdout, stderr = finish(process)

    assert code == 143, (stdout, stderr)
    assert stdout == ""  # no report
    at_once = [line for line in stderr.splitlines() if "stopping at once" in line]
    assert at_once == ["volimg: SIGINT after SIGTERM: stopping at once"], stderr
    assert "Traceback" not in stderr


@pytest.fixture
def batch_sandbox() -> Iterator[Sandbox]:
    timings = Timings.instant()
    timings.upload = 3.0  # long enough to be waiting when the signal comes
    with Sandbox(seed="demo", timings=timings) as sb:
        yield sb


def test_sigterm_stops_a_batch_says_what_was_not_started_and_a_rerun_finishes(
    batch_sandbox: Sandbox,
) -> None:
    """The running volumes stop at their next wait; the others are never started."""
    slow_sandbox = batch_sandbox
    args = ("upload", "boot-vol", "data-vol", "pinned-vol", "--concurrency", "1",
            "--once-per", "day", "-f", "json")  # fmt: skip
    process = start_volimg(slow_sandbox, *args)
    wait_until(uploading(slow_sandbox))

    process.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(process)

    assert code == 143, stderr
    assert "Traceback" not in stderr
    doc = json.loads(stdout)  # still exactly one document
    assert doc["result"] == "interrupted"
    summary = doc["summary"]
    assert summary["exit_code"] == 143
    assert len(summary["not_started"]) == 2, summary
    (started,) = doc["volumes"]
    assert started["error"]["exit_code"] == 143
    assert started["image"] is not None  # Cinder's upload goes on; the report names it
    uploads = slow_sandbox.requests.filter(
        method="POST", path=r"/volumes/[^/]+/action$", action="os-volume_upload_image"
    )
    assert len(uploads) == 1

    slow_sandbox.timings.upload = 0.05
    slow_sandbox.timings.store_copy = 0.05
    rerun = start_volimg(slow_sandbox, *args)
    code, stdout, stderr = finish(rerun)

    assert code == 0, stderr
    results = {v["volume"]["name"]: v["result"] for v in json.loads(stdout)["volumes"]}
    assert results == {"boot-vol": "ok", "data-vol": "ok", "pinned-vol": "ok"}
    assert "resumed image" in next(
        v["reason"]
        for v in json.loads(stdout)["volumes"]
        if v["volume"]["name"] == started["volume"]["name"]
    )
    uploads = slow_sandbox.requests.filter(
        method="POST", path=r"/volumes/[^/]+/action$", action="os-volume_upload_image"
    )
    assert len(uploads) == 3  # the interrupted upload was finished, not sent again


def test_reliability_md_says_what_these_tests_hold_about_a_second_signal() -> None:
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:]
        for line in (REPO_ROOT / "docs" / "reliability.md").read_text().splitlines()
        if line.startswith("| a ") and "signal" in line
    }
    during = rows["a second SIGINT/SIGTERM (of either kind) during the clean stop"]
    assert during[0] == "130/143 (of the first signal)"
    assert 'one line "stopping at once", no report' in during[2]
    after = rows["a further signal once the report is written"]
    assert after[0] == "130/143 (of the first signal)"
    assert "its `error.exit_code` is the exit code" in after[2]
