"""Files volimg writes: owner-only, atomic, and never through a planted symlink.

A file that holds secrets (the sandbox's clouds.yaml) or that other programs read
while volimg writes it (metrics, state) is written to a new temporary file in the
same directory, created with O_EXCL and O_NOFOLLOW and mode 0600 (``mkstemp``), then
renamed over the target. ``rename`` replaces a symlink at the target instead of
following it, so a link planted in a shared directory cannot redirect the write, and
a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

OWNER_ONLY = 0o600


def write_private_file(path: Path, text: str, *, mode: int = OWNER_ONLY) -> None:
    """Replace ``path`` atomically with ``text``, created with ``mode`` (default 0600).

    A missing directory is not made: the error names ``path`` itself, not the
    temporary file.
    """
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such directory for the file", str(path))
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            if mode != OWNER_ONLY:
                os.fchmod(stream.fileno(), mode)
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
