"""docs/reliability.md's retry policy, held: its numbers are the code's, and real requests
obey them.

The page says "every statement here is held by a test". The retry table states counts
and delays; this module reads them from where they are decided (volimg/gateway.py,
volimg/waiting.py, keystoneauth's session, openstacksdk's defaults), checks that the
page states those, and counts the attempts a real volimg run makes against the sandbox.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import REPO_ROOT
from tests.scenarios.arrivals import Arrivals
from volimg.cli import cli
from volimg.context import AppContext
from volimg.sandbox import Sandbox

DOC = REPO_ROOT / "docs" / "reliability.md"
VOLUME_LIST = r"/volume/v3/[^/]+/volumes/detail$"
STORE_LIST = r"/image/v2/info/stores$"


def retry_table() -> dict[str, str]:
    """The "Retry policy" table: what is retried -> how often."""
    section = DOC.read_text().split("## Retry policy", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].removeprefix("| "): cells[2] for cells in rows[2:]}


def keystoneauth_delays(count: int) -> list[float]:
    """The delays keystoneauth sleeps between its retries when none is configured."""
    from keystoneauth1.session import _Retries

    delays = _Retries()
    return [next(delays) for _ in range(count)]


def openstacksdk_default(name: str) -> Any:
    from openstack.config import defaults

    return defaults.get_defaults()[name]


def seconds(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def test_the_retry_table_states_the_counts_and_delays_the_code_uses() -> None:
    from volimg.gateway import CONNECT_RETRIES, STATUS_CODE_RETRIES
    from volimg.waiting import MAX_CONSECUTIVE_POLL_ERRORS

    table = retry_table()
    connect = table["a read whose connection failed (refused, reset, closed, timed out)"]
    assert connect == (
        f"{CONNECT_RETRIES} more times, {seconds(keystoneauth_delays(CONNECT_RETRIES))} s apart"
    )
    first_delay = keystoneauth_delays(1)[0]
    assert table["a read answered 503"] == (
        f"Glance {openstacksdk_default('image_status_code_retries')} more times "
        f"(openstacksdk's default), Cinder {STATUS_CODE_RETRIES} (volimg sets "
        f"`status_code_retries`); {first_delay:g} s doubling, or the `Retry-After` the "
        "service sent (whole seconds)"
    )
    assert table["a read answered 401 (the token expired)"] == "once, with a new token"
    assert table["a poll that failed (5xx, no connection, an unreadable answer)"] == (
        f"again at the next poll, up to {MAX_CONSECUTIVE_POLL_ERRORS} failed polls in a "
        "row, never past `--timeout`"
    )
    assert (
        table["`os-volume_upload_image`, `copy-image`, removing a store's copy, deleting an image"]
        == "never"
    )


def test_the_timeouts_the_page_states_are_the_codes() -> None:
    from volimg.gateway import DEFAULT_HTTP_TIMEOUT
    from volimg.waiting import IN_FLIGHT_GRACE

    text = " ".join(DOC.read_text().split())
    assert f"`api_timeout` from clouds.yaml, else {DEFAULT_HTTP_TIMEOUT:g} s" in text
    assert f"(reads only, up to {IN_FLIGHT_GRACE:g} s and never past `--timeout`)" in text


def test_a_poll_is_given_up_after_the_stated_failures_in_a_row() -> None:
    """Up to MAX failed polls in a row are polled through; one more is reported."""
    from volimg.errors import CloudError
    from volimg.waiting import MAX_CONSECUTIVE_POLL_ERRORS, Clock, Deadline, poll

    def run(failures: int) -> str:
        left = [failures]

        def fetch() -> str:
            if left[0]:
                left[0] -= 1
                raise CloudError("502 from the proxy", status=502)
            return "active"

        clock = Clock(sleep=lambda _s: None)
        return poll(fetch, done=lambda s: s == "active", deadline=Deadline(clock, 60), interval=1)

    assert run(MAX_CONSECUTIVE_POLL_ERRORS) == "active"
    with pytest.raises(CloudError):
        run(MAX_CONSECUTIVE_POLL_ERRORS + 1)


def clouds_yaml(sandbox: Sandbox, where: Path, *, retry_delay: float | None) -> Path:
    """The sandbox's clouds.yaml, with keystoneauth's delays shortened (counts unchanged)."""
    config = yaml.safe_load(sandbox.clouds_yaml.read_text())
    for cloud in config["clouds"].values():
        if retry_delay is not None:
            cloud["connect_retry_delay"] = retry_delay
            cloud["status_code_retry_delay"] = retry_delay
    path = where / "clouds.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def volimg(sandbox: Sandbox, clouds: Path, *args: str) -> int:
    result = CliRunner().invoke(
        cli,
        ["--os-cloud", sandbox.admin_cloud, *args, "-f", "json"],
        obj=AppContext(poll_interval=0.02),
        env={"OS_CLIENT_CONFIG_FILE": str(clouds), "OS_CLOUD": None},
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code


def test_a_read_whose_connection_fails_is_sent_again_three_times_0_5_1_2_s_apart(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from volimg.gateway import CONNECT_RETRIES

    sandbox.faults.refuse_connection("GET", VOLUME_LIST, times=None)
    with Arrivals(sandbox).watching() as arrivals:
        assert volimg(sandbox, clouds_yaml(sandbox, tmp_path, retry_delay=None), "plan", "x") == 1
    sent = arrivals.seen("GET", VOLUME_LIST)
    assert len(sent) == 1 + CONNECT_RETRIES
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(sent)]
    delays = keystoneauth_delays(CONNECT_RETRIES)
    assert all(d <= gap < d + 1.5 for gap, d in zip(gaps, delays, strict=True)), gaps


@pytest.mark.parametrize(
    ("service", "path", "args"),
    [("cinder", VOLUME_LIST, ("plan", "boot-vol")), ("glance", STORE_LIST, ("stores",))],
)
def test_a_read_answered_503_is_sent_again_as_often_as_the_page_says(
    sandbox: Sandbox, tmp_path: Path, service: str, path: str, args: tuple[str, ...]
) -> None:
    from volimg.gateway import STATUS_CODE_RETRIES

    retries = {
        "cinder": STATUS_CODE_RETRIES,
        "glance": openstacksdk_default("image_status_code_retries"),
    }[service]
    sandbox.faults.proxy_error("GET", path, 503, times=None)
    assert volimg(sandbox, clouds_yaml(sandbox, tmp_path, retry_delay=0.01), *args) == 1
    assert len(sandbox.requests.filter(method="GET", path=path)) == 1 + retries


def test_a_retry_after_in_whole_seconds_replaces_the_retry_delay(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.faults.proxy_error("GET", VOLUME_LIST, 503, retry_after=1)
    with Arrivals(sandbox).watching() as arrivals:
        began = time.monotonic()
        code = volimg(sandbox, clouds_yaml(sandbox, tmp_path, retry_delay=0.01), "plan", "boot-vol")
    assert code == 0
    first, second = arrivals.seen("GET", VOLUME_LIST)[:2]
    assert second.at - first.at >= 1.0, time.monotonic() - began
