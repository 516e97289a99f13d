"""The run lock (volimg.locking), with real processes holding and dying."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from volimg.errors import ExitCode, InputError, LockHeld
from volimg.locking import default_lock_path, held, state_dir

# A process that takes the lock, says so, and holds it until killed.
HOLDER = """
import sys, time
from pathlib import Path
from volimg.locking import held
with held(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""

# A process that tries the lock once and reports what happened and how long it took.
CONTENDER = """
import sys, time
from pathlib import Path
from volimg.errors import LockHeld
from volimg.locking import held
started = time.monotonic()
try:
    with held(Path(sys.argv[1])):
        outcome = "acquired"
except LockHeld as error:
    outcome = f"LockHeld {error.exit_code.value} {error}"
print(f"{time.monotonic() - started:.3f} {outcome}", flush=True)
"""


def _start_holder(path: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def _contend(path: Path) -> tuple[float, str]:
    proc = subprocess.run(
        [sys.executable, "-c", CONTENDER, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    seconds, _, outcome = proc.stdout.strip().partition(" ")
    return float(seconds), outcome


def test_second_process_is_locked_out_at_once(tmp_path: Path) -> None:
    lock = tmp_path / "upload.lock"
    holder = _start_holder(lock)
    try:
        seconds, outcome = _contend(lock)
    finally:
        holder.kill()
        holder.wait()
    assert outcome == f"LockHeld 75 another volimg run holds the lock {lock}"
    assert seconds < 0.5  # non-blocking: no waiting for the holder


def test_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    lock = tmp_path / "upload.lock"
    holder = _start_holder(lock)
    holder.send_signal(signal.SIGKILL)
    assert holder.wait() == -signal.SIGKILL
    assert lock.exists()  # the file stays; only the flock went with the process
    _, outcome = _contend(lock)
    assert outcome == "acquired"


def test_lock_is_released_after_the_block(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    with held(lock):
        with pytest.raises(LockHeld) as caught, held(lock):
            pass  # a second open file description in the same process is refused too
        assert caught.value.exit_code == ExitCode.LOCKED
        assert caught.value.hint
    with held(lock):
        pass
    assert lock.is_file()  # left in place: deleting it would let two runs lock two files


def test_lock_file_is_private(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    with held(lock):
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_planted_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious\n")
    lock = tmp_path / "run.lock"
    lock.symlink_to(target)
    refused = r"is a symbolic link; volimg does not follow it"
    with pytest.raises(InputError, match=refused), held(lock):
        pass
    assert target.read_text() == "precious\n"


def test_dangling_symlink_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    lock.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="symbolic link"), held(lock):
        pass
    assert not (tmp_path / "elsewhere").exists()


def test_missing_directory_of_an_explicit_path_is_an_input_error(tmp_path: Path) -> None:
    lock = tmp_path / "no-such-dir" / "run.lock"
    with pytest.raises(InputError) as caught, held(lock):
        pass
    assert str(caught.value) == (
        f"cannot create the lock file {lock}: the directory {lock.parent} does not exist"
    )
    assert not lock.parent.exists()


def test_directory_at_the_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot open the lock file"), held(tmp_path):
        pass


def test_fifo_at_the_path_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "run.lock"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="is not a regular file"), held(fifo):
        pass


def test_default_path_follows_xdg_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_lock_path() == tmp_path / "state" / "volimg" / "upload.lock"
    assert default_lock_path("audit") == tmp_path / "state" / "volimg" / "audit.lock"


@pytest.mark.parametrize("value", ["", "relative/state"])
def test_default_path_without_usable_xdg_state_home(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", value)
    assert default_lock_path() == tmp_path / ".local" / "state" / "volimg" / "upload.lock"


def test_default_directory_is_created_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with held(default_lock_path()):
        assert stat.S_IMODE(state_dir().stat().st_mode) == 0o700
        assert default_lock_path().is_file()


@pytest.mark.parametrize("name", ["", "a/b", ".."])
def test_default_path_refuses_names_that_are_not_file_names(name: str) -> None:
    with pytest.raises(ValueError, match="one plain file name"):
        default_lock_path(name)


def test_contender_does_not_wait_for_a_slow_holder(tmp_path: Path) -> None:
    """In-process timing of the refusal, for the record (the subprocess test asserts it)."""
    lock = tmp_path / "upload.lock"
    holder = _start_holder(lock)
    try:
        started = time.monotonic()
        with pytest.raises(LockHeld), held(lock):
            pass
        assert time.monotonic() - started < 0.1
    finally:
        holder.kill()
        holder.wait()


def test_a_filesystem_without_flock_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock = tmp_path / "run.lock"
    with pytest.raises(InputError, match=f"cannot lock {lock}: No locks available"), held(lock):
        pass
