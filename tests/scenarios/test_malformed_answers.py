"""Answers that break the API's promises, from each of the three services.

Every one gives one line that names the service and the call, exit 1 (5 for 401/403),
and no traceback; with --debug, the traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, CloudUnderTest
from tests.scenarios.conftest import VolimgRunner
from volimg.errors import VolimgError
from volimg.sandbox import Sandbox

TOKENS = r"/identity/v3/auth/tokens$"
VOLUMES = r"/volume/v3/[^/]+/volumes/detail$"
STORES = r"/image/v2/info/stores$"
IMAGE = r"/image/v2/images/[0-9a-f-]{36}$"

# (id, service named in the message, method, path, how the answer is broken)
CASES = [
    ("keystone-missing-fields", "Keystone", "POST", TOKENS, (201, {"token": {}})),
    ("keystone-wrong-types", "Keystone", "POST", TOKENS, (201, {"token": {"catalog": "none"}})),
    ("keystone-html-500", "Keystone", "POST", TOKENS, "html-500"),
    ("keystone-truncated", "Keystone", "POST", TOKENS, "truncate"),
    ("keystone-403", "Keystone", "POST", TOKENS, (403, {"error": {"code": 403}})),
    ("cinder-missing-fields", "Cinder", "GET", VOLUMES, (200, {"volume": []})),
    (
        "cinder-wrong-types",
        "Cinder",
        "GET",
        VOLUMES,
        (200, {"volumes": [{"name": "boot-vol", "id": 7, "status": ["available"]}]}),
    ),
    (
        "cinder-no-status",
        "Cinder",
        "GET",
        VOLUMES,
        (200, {"volumes": [{"name": "boot-vol", "id": "x"}]}),
    ),
    ("cinder-html-502", "Cinder", "GET", VOLUMES, "html-502"),
    ("cinder-truncated", "Cinder", "GET", VOLUMES, "truncate"),
    ("cinder-not-json", "Cinder", "GET", VOLUMES, "not-json"),
    ("glance-missing-fields", "Glance", "GET", STORES, (200, {"stores": [{"description": "x"}]})),
    ("glance-wrong-types", "Glance", "GET", STORES, (200, {"stores": "fast,cheap"})),
    ("glance-image-missing-id", "Glance", "GET", IMAGE, (200, {"name": "cirros-base"})),
    ("glance-html-500", "Glance", "GET", STORES, "html-500"),
    ("glance-truncated", "Glance", "GET", IMAGE, "truncate"),
    ("glance-html-200", "Glance", "GET", IMAGE, "html"),
]


def break_answer(sandbox: Sandbox, method: str, path: str, how: object) -> None:
    # times=None: a broken proxy stays broken, so transport retries do not hide it.
    faults = sandbox.faults
    if isinstance(how, tuple):
        status, body = how
        faults.respond(method, path, status, body=json.dumps(body), times=None)
    elif isinstance(how, str) and how.startswith("html-"):
        faults.proxy_error(method, path, int(how[5:]), times=None)
    else:
        faults.corrupt_answer(method, path, str(how), times=None)


@pytest.mark.parametrize(
    ("service", "method", "path", "how"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_a_broken_answer_is_one_line_naming_the_service(
    volimg_sandbox: VolimgRunner,
    sandbox: Sandbox,
    service: str,
    method: str,
    path: str,
    how: object,
) -> None:
    break_answer(sandbox, method, path, how)

    run = volimg_sandbox("plan", "boot-vol")

    expected = 5 if isinstance(how, tuple) and how[0] in (401, 403) else 1
    assert run.exit_code == expected, run
    assert "Traceback" not in run.stdout + run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("volimg: error: ")]
    assert len(errors) == 1, run
    assert service in errors[0], errors[0]


@pytest.mark.parametrize(
    ("service", "method", "path", "how"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES if case[0].endswith("truncated")],
)
def test_with_debug_a_broken_answer_raises_with_its_traceback(
    sandbox_cloud: CloudUnderTest,
    sandbox: Sandbox,
    service: str,
    method: str,
    path: str,
    how: object,
) -> None:
    from click.testing import CliRunner

    from volimg.cli import cli
    from volimg.context import AppContext

    break_answer(sandbox, method, path, how)
    with pytest.raises(VolimgError, match=service):
        CliRunner().invoke(
            cli,
            ["--debug", "--os-cloud", sandbox.admin_cloud, "plan", "boot-vol"],
            obj=AppContext(poll_interval=0.02),
            catch_exceptions=False,
        )


@pytest.mark.parametrize(
    ("step_path", "method"),
    [
        pytest.param(r"/volumes/[^/]+/action$", "POST", id="upload-action"),
        pytest.param(r"/image/v2/images/[^/]+/tasks$", "GET", id="wait-for-copies"),
        pytest.param(r"/image/v2/stores/", "DELETE", id="prune"),
    ],
)
def test_debug_shows_the_traceback_after_the_first_change_too(
    sandbox: Sandbox, step_path: str, method: str
) -> None:
    """Errors after the first mutating request are folded into the report; --debug still
    raises them, after the report."""
    sandbox.faults.respond(method, step_path, 403, times=None)
    env = {
        **os.environ,
        "OS_CLIENT_CONFIG_FILE": str(sandbox.clouds_yaml),
        "PYTHONPATH": str(REPO_ROOT),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "volimg",
            "--debug",
            "--os-cloud",
            sandbox.admin_cloud,
            "upload",
            "boot-vol",
            "--prune",
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc
    assert "Traceback (most recent call last)" in proc.stderr
    assert "PermissionDenied" in proc.stderr
    assert json.loads(proc.stdout)["error"]["type"] == "PermissionDenied"  # the report came first
