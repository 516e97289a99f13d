"""One run at a time: an exclusive ``flock`` on a lock file.

The operating system drops an ``flock`` when its holder exits, however it exits
(SIGKILL, OOM, power loss of the process), so a lock left by a dead run is free again at
once: there is no PID file to read, parse or guess about. The file itself stays in
place after a run; deleting it would let a third run lock a new file while a second
still holds the old one.

The lock file is opened without following symbolic links (a link planted at the path
is refused) and created readable by its owner only. Only the default location's
directory (``$XDG_STATE_HOME/volimg``) is created when missing, 0700: a directory the
caller named must already exist, so a typo is an error and not a new directory tree.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from volimg.errors import InputError, LockHeld


def state_dir() -> Path:
    """volimg's state directory: ``$XDG_STATE_HOME/volimg``, else ``~/.local/state/volimg``.

    The XDG Base Directory spec says a relative ``$XDG_STATE_HOME`` is invalid and
    must be ignored.
    """
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "volimg"


def default_lock_path(name: str = "upload") -> Path:
    """Where ``--lock`` without a path locks: ``<state dir>/<name>.lock``."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"a lock name is one plain file name, not {name!r}")
    return state_dir() / f"{name}.lock"


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the ``with`` block, or raise at once.

    Raises ``LockHeld`` (exit 75) when another process holds it, and ``InputError``
    (exit 2) when the path cannot be a lock file (missing directory, a symbolic link,
    not a regular file, no permission).
    """
    if path.parent == state_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = _open_lock_file(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(
                f"another volimg run holds the lock {path}",
                hint="let it finish (it is released when that run exits, even if it is "
                "killed), or use a different --lock path",
            ) from None
        except OSError as error:  # e.g. ENOLCK: a filesystem without flock support
            raise InputError(
                f"cannot lock {path}: {error.strerror}",
                hint="put the lock file on a local filesystem",
            ) from None
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def _open_lock_file(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        raise InputError(
            f"cannot create the lock file {path}: the directory {path.parent} does not exist",
            hint="create that directory, or pass --lock without a path for the default",
        ) from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InputError(
                f"the lock file {path} is a symbolic link; volimg does not follow it",
                hint="remove the link, or point --lock at a regular file",
            ) from None
        raise InputError(
            f"cannot open the lock file {path}: {error.strerror}",
            hint="point --lock at a file you can write, in a directory that exists",
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(
            f"the lock file {path} is not a regular file",
            hint="point --lock at a regular file (it is created when missing)",
        )
    return fd
