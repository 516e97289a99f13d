"""Fixtures shared by every test tier.

Two clouds can stand under a test:

* ``sandbox``: volimg's own emulation (``volimg.sandbox``), started fresh for each test
  on a free loopback port. Fast, and it has fault hooks and a request log.
* ``real``: real Keystone, Glance and Cinder installed from PyPI and started by
  ``tests/realcloud/stack.py`` (see docs/testing.md). Started once per session.

A scenario written against the ``cloud`` fixture runs on both; tests that need the
sandbox's hooks (faults, request log, timings) take ``sandbox`` or ``sandbox_cloud``
and run on the sandbox alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

if TYPE_CHECKING:
    from volimg.sandbox import Sandbox

REPO_ROOT = Path(__file__).resolve().parent.parent
REALCLOUD_STATE = Path(os.environ.get("VOLIMG_REALCLOUD_STATE", REPO_ROOT / ".realcloud"))


@dataclass(frozen=True)
class CloudUnderTest:
    """What a scenario needs to know about the cloud it runs against."""

    kind: Literal["sandbox", "real"]
    clouds_yaml: Path
    admin_cloud: str
    member_cloud: str
    sandbox: Sandbox | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the fast tier first and the real-OpenStack tier after it, in one session."""
    items.sort(key=lambda item: item.get_closest_marker("realcloud") is not None)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh sandbox cloud with the demo seed and near-instant timings."""
    from volimg.sandbox import Sandbox, Timings

    with Sandbox(seed="demo", timings=Timings.instant()) as sb:
        yield sb


@pytest.fixture(scope="session")
def realstack() -> CloudUnderTest:
    """The real Keystone/Glance/Cinder stack, brought up once (idempotent)."""
    stack_json = REALCLOUD_STATE / "stack.json"
    script = REPO_ROOT / "tests" / "realcloud" / "stack.py"
    proc = subprocess.run(
        [sys.executable, str(script), "up", "--state", str(REALCLOUD_STATE)],
        check=False,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(
            "could not bring up the real OpenStack stack "
            f"(exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    info = json.loads(stack_json.read_text())
    return CloudUnderTest(
        kind="real",
        clouds_yaml=Path(info["clouds_yaml"]),
        admin_cloud=info["admin_cloud"],
        member_cloud=info["member_cloud"],
    )


def _use(under_test: CloudUnderTest, monkeypatch: pytest.MonkeyPatch) -> CloudUnderTest:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(under_test.clouds_yaml))
    for name in ("OS_CLOUD", "OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME"):
        monkeypatch.delenv(name, raising=False)
    return under_test


@pytest.fixture
def sandbox_cloud(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> CloudUnderTest:
    """The sandbox as a CloudUnderTest, for tests that need its hooks or request log."""
    return _use(
        CloudUnderTest(
            kind="sandbox",
            clouds_yaml=sandbox.clouds_yaml,
            admin_cloud=sandbox.admin_cloud,
            member_cloud=sandbox.member_cloud,
            sandbox=sandbox,
        ),
        monkeypatch,
    )


@pytest.fixture(params=["sandbox", pytest.param("real", marks=pytest.mark.realcloud)])
def cloud(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> CloudUnderTest:
    """The cloud a scenario runs against; OS_CLIENT_CONFIG_FILE points at its clouds.yaml."""
    if request.param == "sandbox":
        return request.getfixturevalue("sandbox_cloud")
    return _use(request.getfixturevalue("realstack"), monkeypatch)


# Runs ``python -m volimg ARGS`` (as runpy runs it for -m) and, at exit, writes every
# module the process holds to the file VOLIMG_TEST_MODULES names.
_REPORT_MODULES = """\
import atexit, os, runpy, sys
path = os.environ.pop("VOLIMG_TEST_MODULES")
atexit.register(lambda: open(path, "w").write("\\n".join(sorted(sys.modules))))
sys.argv[0] = "volimg"
runpy.run_module("volimg", run_name="__main__", alter_sys=True)
"""


def imported_modules(*args: str) -> set[str]:
    """The modules ``python -m volimg ARGS`` has loaded when it exits, output to pipes.

    Read from ``sys.modules`` at exit, not from ``-X importtime``: importtime does not
    see a module loaded by ``importlib.import_module`` (the group loads each command so),
    nor what such a module imports before its first plain ``import``.
    ``FORCE_COLOR`` and ``TTY_COMPATIBLE`` are dropped: either would make rich see a
    terminal in a pipe (as the user asked), which is not what these tests measure.
    """
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "modules")
        env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
        proc = subprocess.run(
            [sys.executable, "-c", _REPORT_MODULES, *args],
            capture_output=True,
            text=True,
            env={**env, "VOLIMG_TEST_MODULES": report},
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        with open(report, encoding="utf-8") as lines:
            return set(lines.read().split())
