"""Fixtures shared by every test tier.

Two clouds can stand under a test:

* ``sandbox``: volimg's own emulation (``volimg.sandbox``), started fresh for each test
  on a free loopback port. Fast, and it has fault hooks and a request log.
* ``real``: real Keystone, Glance and Cinder installed from PyPI and started by
  ``tests/realcloud/stack.py`` (see docs/testing.md). Started once per session.

A scenario written against the ``cloud`` fixture runs on both; tests that need the
sandbox's hooks take the ``sandbox`` fixture (or ``cloud`` plus the ``sandbox_only``
marker) and run on the sandbox alone.
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


@pytest.fixture(params=["sandbox", pytest.param("real", marks=pytest.mark.realcloud)])
def cloud(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> CloudUnderTest:
    """The cloud a scenario runs against; OS_CLIENT_CONFIG_FILE points at its clouds.yaml."""
    if request.param == "sandbox":
        sb: Sandbox = request.getfixturevalue("sandbox")
        under_test = CloudUnderTest(
            kind="sandbox",
            clouds_yaml=sb.clouds_yaml,
            admin_cloud=sb.admin_cloud,
            member_cloud=sb.member_cloud,
            sandbox=sb,
        )
    else:
        if request.node.get_closest_marker("sandbox_only"):
            pytest.skip("needs the sandbox's hooks")
        under_test = request.getfixturevalue("realstack")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(under_test.clouds_yaml))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    return under_test
