"""Run volimg's CLI in-process against a cloud, the way an operator runs it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import CloudUnderTest
from volimg.cli import cli
from volimg.context import AppContext


@dataclass
class Run:
    """One volimg invocation: its exit code and its two streams."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict[str, Any]:
        """The JSON document on stdout (there must be exactly one)."""
        return json.loads(self.stdout)

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"Run(exit={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


VolimgRunner = Callable[..., Run]


def make_runner(cloud: CloudUnderTest) -> VolimgRunner:
    poll = 0.02 if cloud.kind == "sandbox" else 0.25

    def run(*args: str, member: bool = False) -> Run:
        app = AppContext(poll_interval=poll)
        name = cloud.member_cloud if member else cloud.admin_cloud
        result = CliRunner().invoke(
            cli, ["--os-cloud", name, *args], obj=app, catch_exceptions=False
        )
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def volimg(cloud: CloudUnderTest) -> VolimgRunner:
    """``volimg(...)`` on the cloud under test (sandbox, then the real stack)."""
    return make_runner(cloud)


@pytest.fixture
def volimg_sandbox(sandbox_cloud: CloudUnderTest) -> VolimgRunner:
    """``volimg(...)`` on the sandbox only, for tests that use its hooks."""
    return make_runner(sandbox_cloud)


@pytest.fixture
def admin_conn(cloud: CloudUnderTest) -> Iterator[Any]:
    """openstacksdk as the admin, to set up and check what volimg did."""
    import openstack

    conn = openstack.connect(cloud=cloud.admin_cloud)
    yield conn
    conn.close()


@pytest.fixture
def qcow2(cloud: CloudUnderTest) -> tuple[str, ...]:
    """Upload as qcow2 on the real stack: a sparse 1 GiB raw upload takes seconds there."""
    return ("--disk-format", "qcow2") if cloud.kind == "real" else ()


@dataclass
class MemberVolume:
    """A project member's connection and a volume of theirs on the pinned-archive type."""

    conn: Any
    volume: Any


@pytest.fixture
def pinned_member_volume(cloud: CloudUnderTest, admin_conn: Any) -> Iterator[MemberVolume]:
    """A member's volume made from cirros-base on the type whose store is archive.

    Cinder hides the type's ``image_service:store_id`` from members, so this is the
    volume on which volimg learns the type's store from where Cinder's upload landed.
    """
    import uuid

    import openstack

    member = openstack.connect(cloud=cloud.member_cloud)
    base = admin_conn.image.find_image("cirros-base", ignore_missing=False)
    volume = member.block_storage.create_volume(
        size=1,
        image_id=base.id,
        volume_type="pinned-archive",
        name=f"member-pinned-{uuid.uuid4().hex[:8]}",
    )
    member.block_storage.wait_for_status(volume, "available", failures=["error"], wait=120)
    yield MemberVolume(member, volume)
    member.close()
