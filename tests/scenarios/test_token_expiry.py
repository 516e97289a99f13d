"""A token that expires during a long wait: volimg re-authenticates and carries on.

On the sandbox the token is expired under volimg's feet (a 401 mid-wait). On the real
Keystone the real tier's tokens live 125 s (tests/realcloud/templates/keystone.conf),
and keystoneauth renews a token that has less than 120 s left, so any run longer than
5 s must get a new token in the middle of its wait.
"""

from __future__ import annotations

import re
import time
from typing import Any

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import VolimgRunner
from tests.scenarios.test_upload import stores_of
from volimg.sandbox import Sandbox

TASKS = r"/image/v2/images/[^/]+/tasks$"
# keystoneauth never logs its token requests (they carry the password), but -vv logs the
# SHA-256 of the token each request carries: a new hash is a renewed token.
TOKEN_USED = re.compile(r"X-Auth-Token: \{SHA256\}([0-9a-f]{64})")


def test_a_token_expired_in_the_middle_of_the_wait_is_renewed(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    sandbox.timings.store_copy = 1.5  # the copy outlasts a first poll, so a second comes
    sandbox.faults.expire_token("GET", TASKS, nth=2)

    run = volimg_sandbox("upload", "boot-vol", "-f", "json")

    assert run.exit_code == 0, run
    assert run.doc["replication"] == {"cheap": "copied", "archive": "copied"}
    polls = sandbox.requests.filter(method="GET", path=TASKS)
    refused = [r for r in polls if r.status == 401]
    assert len(refused) == 1
    token_requests = sandbox.requests.filter(method="POST", path=r"/v3/auth/tokens$")
    assert [r for r in token_requests if r.seq > refused[0].seq], "no new token after the 401"
    assert polls[-1].status == 200


def test_keystoneauth_renews_a_token_with_less_than_120_s_left() -> None:
    """The rule the real tier's token lifetime relies on (keystoneauth's own constant)."""
    from keystoneauth1.identity.base import BaseIdentityPlugin

    assert BaseIdentityPlugin.MIN_TOKEN_LIFE_SECONDS == 120


def test_the_default_upload_is_raw_and_shared_and_outlives_its_token(
    cloud: CloudUnderTest, volimg: VolimgRunner, admin_conn: Any
) -> None:
    """volimg's defaults on both tiers: raw (Cinder's default disk format) and, at Cinder
    API 3.0 where no visibility is sent, Glance's default visibility: shared. On the real
    tier it is a 1 GiB raw upload (several seconds), so the token is renewed mid-run."""
    began = time.monotonic()
    run = volimg("-vv", "upload", "boot-vol", "-f", "json")
    elapsed = time.monotonic() - began

    assert run.exit_code == 0, run
    image = admin_conn.image.get(f"/images/{run.doc['image']['id']}").json()
    assert (image["disk_format"], image["container_format"]) == ("raw", "bare")
    assert image["visibility"] == "shared"
    assert run.doc["plan"]["cinder_microversion"] == "3.0"
    assert stores_of(admin_conn, image["id"]) == {"fast", "cheap", "archive"}
    if cloud.kind == "real":
        lifetime = _token_lifetime(admin_conn)
        assert lifetime <= 125, f"the real tier's tokens live {lifetime} s, not 125"
        assert elapsed > lifetime - 120, f"the run took {elapsed:.1f} s: too short to prove it"
        tokens = set(TOKEN_USED.findall(run.stderr))
        assert len(tokens) >= 2, f"{len(tokens)} token(s) used in a {elapsed:.1f} s run"


def _token_lifetime(conn: Any) -> float:
    from datetime import datetime

    access = conn.session.auth.get_access(conn.session)
    issued: datetime = access.issued
    expires: datetime = access.expires
    return (expires - issued).total_seconds()


def test_help_states_the_visibility_default_the_test_above_proves() -> None:
    from click.testing import CliRunner

    from volimg.cli import cli

    shown = CliRunner().invoke(cli, ["upload", "--help"]).output
    assert "[default: shared" in " ".join(shown.split())
