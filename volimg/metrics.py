"""Prometheus metrics as a node_exporter textfile (``--metrics-file PATH.prom``).

node_exporter's textfile collector reads every ``*.prom`` file in its directory at
each scrape, so a half-written file would be scraped as it stands. The file is
therefore written under a temporary name in the same directory (created exclusively by
``mkstemp``, so a symbolic link planted there is never followed; its name does not end
in ``.prom``, so the collector ignores it), flushed to disk, and renamed over the
target in one step. A symbolic link at the target itself is replaced, not followed.

Samples carry no timestamps (the collector refuses them); the format is Prometheus'
text exposition format 0.0.4, written by hand: it is a few lines, and it keeps
``prometheus_client`` out of volimg's runtime dependencies (the tests parse the file
with it).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from volimg.errors import InputError, OperationFailed

SUFFIX = ".prom"
KINDS = ("gauge", "counter")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_READ_LIMIT = 1024 * 1024  # a textfile is a few hundred bytes; never read a device whole
_SAMPLE_LINE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>.*)\})?"
    r"[ \t]+(?P<value>\S+)(?:[ \t]+-?\d+)?[ \t]*$"
)
_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def _frozen(labels: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(labels or {}))


@dataclass(frozen=True)
class Sample:
    """One time series value. Samples with the same name form one metric family."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=_frozen)
    help: str = ""
    kind: str = "gauge"

    def __post_init__(self) -> None:
        if not METRIC_NAME.match(self.name):
            raise ValueError(f"{self.name!r} is not a Prometheus metric name")
        if self.kind not in KINDS:
            raise ValueError(f"metric kind {self.kind!r} is not one of {', '.join(KINDS)}")
        for label in self.labels:
            if not LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"{label!r} is not a Prometheus label name")
        object.__setattr__(self, "labels", _frozen(self.labels))


def check_textfile_path(path: Path) -> None:
    """Refuse, before any work, a path the textfile collector would never read.

    The name must end in ``.prom`` and its directory must exist and be writable.
    """
    if path.suffix != SUFFIX or path.name == SUFFIX:
        raise InputError(
            f"--metrics-file {path}: the name must end in {SUFFIX}",
            hint="node_exporter's textfile collector reads only *.prom files",
        )
    directory = path.parent
    if not directory.is_dir():
        raise InputError(
            f"--metrics-file {path}: the directory {directory} does not exist",
            hint="point it at node_exporter's --collector.textfile.directory",
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(
            f"--metrics-file {path}: cannot write in {directory}",
            hint="run as a user who may write there, or choose another directory",
        )


def render(samples: Sequence[Sample]) -> str:
    """The exposition text: HELP and TYPE once per family, families in first-seen order."""
    families: dict[str, list[Sample]] = {}
    for sample in samples:
        families.setdefault(sample.name, []).append(sample)
    lines: list[str] = []
    for name, members in families.items():
        first = members[0]
        seen: set[tuple[tuple[str, str], ...]] = set()
        for member in members:
            if (member.help, member.kind) != (first.help, first.kind):
                raise ValueError(f"samples of {name} disagree on help text or kind")
            key = tuple(sorted(member.labels.items()))
            if key in seen:
                raise ValueError(f"{name} has two samples with labels {dict(key)}")
            seen.add(key)
        if first.help:
            lines.append(f"# HELP {name} {_escape_help(first.help)}")
        lines.append(f"# TYPE {name} {first.kind}")
        lines += [f"{name}{_labels(m.labels)} {_value(m.value)}" for m in members]
    return "\n".join(lines) + "\n" if lines else ""


def write_textfile(path: Path, samples: Sequence[Sample]) -> None:
    """Replace ``path`` atomically with these samples (mode 0644: metrics are not secret).

    ``InputError`` (exit 2) for a path the collector would not read or a directory that
    cannot be written; ``OperationFailed`` (exit 1) when writing fails midway (a full
    disk), in which case the previous file is left as it was.
    """
    check_textfile_path(path)
    text = render(samples).encode("utf-8")
    directory = path.parent
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise InputError(
            f"--metrics-file {path}: cannot create a file in {directory}: {error.strerror}",
            hint="run as a user who may write there, or choose another directory",
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        if isinstance(error, OSError):
            raise OperationFailed(
                f"cannot write the metrics file {path}: {error.strerror or error}",
                hint="the previous metrics file is unchanged; free space or fix the directory",
            ) from None
        raise
    _fsync_directory(directory)


# A sample as read back: its name and its labels (sorted pairs).
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def read_samples(path: Path) -> dict[SeriesKey, float]:
    """Every sample of an existing textfile, by name and labels; {} when unreadable.

    Read as ``read_gauge`` reads (no symbolic link followed, at most 1 MiB); a line
    that does not parse is left out.
    """
    text = _read_small_file(path)
    found: dict[SeriesKey, float] = {}
    for line in (text or "").splitlines():
        match = _SAMPLE_LINE.match(line)
        if match is None:
            continue
        labels = _parse_labels(match.group("labels") or "")
        if labels is None:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        found[(match.group("name"), tuple(sorted(labels.items())))] = value
    return found


def update_textfile(
    path: Path, compose: Callable[[Mapping[SeriesKey, float]], Sequence[Sample]]
) -> None:
    """Replace ``path`` with ``compose(what it holds now)``, one writer at a time.

    A run that carries values over from the previous file (the last success time)
    reads and writes it while holding an ``flock`` on the directory, so two volimg
    runs ending together (one locked out, one finishing) never write each other's
    stale reading back. Where the filesystem has no ``flock``, it goes without.
    """
    check_textfile_path(path)
    with _directory_locked(path.parent):
        write_textfile(path, compose(read_samples(path)))


@contextlib.contextmanager
def _directory_locked(directory: Path) -> Iterator[None]:
    import fcntl

    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def read_gauge(path: Path, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of the sample ``name`` with exactly ``labels`` in an existing textfile.

    None when the file or the sample is missing or unreadable (a symbolic link is not
    followed, a file is read up to 1 MiB): a batch carries its last success time
    forward from the previous file, and a first run has none.
    """
    wanted = dict(labels or {})
    text = _read_small_file(path)
    if text is None:
        return None
    for line in text.splitlines():
        match = _SAMPLE_LINE.match(line)
        if match is None or match.group("name") != name:
            continue
        found = _parse_labels(match.group("labels") or "")
        if found != wanted:
            continue
        try:
            return float(match.group("value"))
        except ValueError:
            return None
    return None


def _read_small_file(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        data = handle.read(_READ_LIMIT)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _parse_labels(text: str) -> dict[str, str] | None:
    labels: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _LABEL_PAIR.match(text, position)
        if match is None:
            return None
        labels[match.group(1)] = _unescape(match.group(2))
        position = match.end()
    return labels


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed, escaped as the exposition format asks."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    pairs = ",".join(f'{key}="{_escape_label_value(value)}"' for key, value in labels.items())
    return "{" + pairs + "}"


def _value(value: float) -> str:
    """Go's ParseFloat spellings, which Prometheus reads: +Inf, -Inf, NaN."""
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX leaves it in the directory's cache)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
