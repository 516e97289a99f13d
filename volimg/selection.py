"""Which volumes a batch works on: volume lists, metadata selectors, de-duplication.

Pure text handling, no I/O: the CLI reads the file (or stdin) and passes its text here,
so every rule below is tested without a cloud. Errors are ``InputError`` (exit 2) and
name what is wrong.

Rules of a volume list (``--from-file``):

* one volume name or ID a line; surrounding whitespace is stripped;
* a line whose first non-blank character is ``#`` is a comment; a ``#`` anywhere else
  is part of the name (Cinder allows ``#`` in names, so ``vol-a # nightly`` names the
  volume ``vol-a # nightly``, and the lookup then says there is no such volume);
* blank lines are ignored; a UTF-8 byte-order mark before the first line is dropped;
* a volume named twice is kept once, at its first place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from volimg.errors import InputError

# Cinder's limit for a volume name (cinder/api/validation/parameter_types.py `name`).
MAX_REF_LENGTH = 255
# Cinder's metadata keys (parameter_types.extra_specs, used by the volume metadata
# schema): a key outside this pattern cannot exist, so a selector on it matches nothing.
METADATA_KEY = re.compile(r"^[a-zA-Z0-9-_:. /]{1,255}$")
_BOM = "\ufeff"


def parse_volume_list(text: str, source: str) -> tuple[str, ...]:
    """The volume names and IDs in a volume list, in order, each once.

    ``source`` names where the text came from (a path, or ``-`` for stdin) for errors.
    """
    refs: list[str] = []
    for number, line in enumerate(text.removeprefix(_BOM).splitlines(), start=1):
        ref = line.strip()
        if not ref or ref.startswith("#"):
            continue
        if "\x00" in ref:
            raise InputError(
                f"line {number} of {source} contains a NUL byte",
                hint="the volume list must be a text file: one volume name or ID a line",
            )
        if len(ref) > MAX_REF_LENGTH:
            raise InputError(
                f"line {number} of {source} is {len(ref)} characters long; "
                f"a volume name or ID has at most {MAX_REF_LENGTH}",
                hint="put one volume name or ID on each line",
            )
        refs.append(ref)
    return tuple(dict.fromkeys(refs))


def parse_selector(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as (key, value); the value may itself contain ``=`` or be empty."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InputError(
            f"--selector {text!r}: expected KEY=VALUE",
            hint="select volumes by their metadata, e.g. --selector backup=nightly",
        )
    if not METADATA_KEY.match(key):
        raise InputError(
            f"--selector {text!r}: {key!r} cannot be a Cinder metadata key",
            hint="metadata keys are 1-255 letters, digits, spaces or '-_:./'",
        )
    return key, value


def selector_mapping(selectors: Iterable[str]) -> dict[str, str]:
    """Several ``--selector`` options as one metadata filter (they are ANDed).

    The same key with two different values could never match, so it is refused
    rather than silently selecting nothing.
    """
    wanted: dict[str, str] = {}
    for text in selectors:
        key, value = parse_selector(text)
        if key in wanted and wanted[key] != value:
            raise InputError(
                f"--selector {key}={wanted[key]!r} and --selector {key}={value!r} "
                "can never both match",
                hint="give each metadata key once",
            )
        wanted[key] = value
    return wanted


def unique_refs(refs: Iterable[str]) -> tuple[str, ...]:
    """Volume references in their first order, each once; a blank one is an error."""
    kept: dict[str, None] = {}
    for position, ref in enumerate(refs, start=1):
        if not ref.strip():
            raise InputError(
                f"volume reference {position} is blank",
                hint="name each volume by its name or ID",
            )
        kept.setdefault(ref, None)
    return tuple(kept)
