"""Files volimg writes: 0600, atomic, and never through a planted symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from volimg.files import write_private_file
from volimg.sandbox import Sandbox, Timings


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_file(tmp_path / "secret", "password: x\n")
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "secret") == 0o600
    assert (tmp_path / "secret").read_text() == "password: x\n"


def test_an_existing_readable_file_is_replaced_by_an_owner_only_one(tmp_path: Path) -> None:
    target = tmp_path / "clouds.yaml"
    target.write_text("old")
    target.chmod(0o644)
    write_private_file(target, "new")
    assert (target.read_text(), mode_of(target)) == ("new", 0o600)
    assert [p.name for p in tmp_path.iterdir()] == ["clouds.yaml"]  # no temporary file left


def test_a_planted_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    planted = tmp_path / "shared" / "clouds.yaml"
    planted.parent.mkdir()
    planted.symlink_to(victim)

    write_private_file(planted, "secrets")

    assert victim.read_text() == "untouched"
    assert not planted.is_symlink()
    assert (planted.read_text(), mode_of(planted)) == ("secrets", 0o600)


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "clouds.yaml"
    target.write_text("old")

    def broken_replace(src: str, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_private_file(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["clouds.yaml"]


def test_the_sandbox_writes_its_clouds_yaml_owner_only_and_not_through_a_symlink(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    wanted = tmp_path / "clouds.yaml"
    wanted.symlink_to(victim)
    with Sandbox(seed="empty", timings=Timings.instant(), clouds_yaml=wanted) as sandbox:
        assert sandbox.clouds_yaml == wanted
        assert not wanted.is_symlink()
        assert mode_of(wanted) == 0o600
        assert sandbox.admin.password in wanted.read_text()
    assert victim.read_text() == "untouched"
