"""Where output goes: rich's console on a terminal, ``PlainOutput`` everywhere else.

Every renderer writes through these. Off a terminal (cron, pipes, CI) rich is not
imported at all: ``might_be_terminal`` decides before rich is loaded, ``PlainOutput``
writes the text as it is, and ``say`` prints one line either way. Tables and colour
go only to a console ``rich_terminal`` lets through.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, TextIO, Union

if TYPE_CHECKING:
    from rich.console import Console


class PlainOutput:
    """Standard output or error when it is not a terminal: text as it is, unwrapped.

    Cron logs, pipes and CI read these. rich is imported only for a terminal
    (``might_be_terminal``), which saves loading it on every scripted call. It prints
    text only: a rich table or panel needs ``rich_terminal`` first, which mypy checks.
    """

    is_terminal = False
    is_dumb_terminal = False

    def __init__(self, file: TextIO) -> None:
        self.file = file

    def print(self, text: str, **_rich_options: object) -> None:
        self.file.write(text + "\n")
        self.file.flush()


Output = Union["Console", PlainOutput]


def rich_terminal(console: Output) -> Console | None:
    """The console, if it is rich's and a terminal: where tables and colour go."""
    if isinstance(console, PlainOutput) or not console.is_terminal:
        return None
    return console


def might_be_terminal(stream: IO[str], force_terminal: bool | None) -> bool:
    """False only where rich would say "not a terminal" too (rich/console.py is_terminal).

    ``TTY_COMPATIBLE=1`` and a non-empty ``FORCE_COLOR`` make rich treat any stream as a
    terminal; otherwise it asks the stream. Everything else rich decides itself.
    """
    if force_terminal is not None:
        return force_terminal
    if os.environ.get("TTY_COMPATIBLE") == "1" or os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False


def comma_list(items: Sequence[str]) -> str:
    """``a, b``, or ``-`` for none."""
    return ", ".join(items) if items else "-"


#: What rich's Text strips from a line (rich/control.py strip_control_codes): a
#: carriage return or form feed in a cloud's message must not garble a log.
_CONTROL_CODES = str.maketrans("", "", "\a\b\v\f\r")


def say(console: Output, message: str, *, style: str = "") -> None:
    """One line of text, never read as rich markup, never wrapped."""
    if isinstance(console, PlainOutput):
        console.print(message.translate(_CONTROL_CODES))
        return
    from rich.text import Text

    console.print(Text(message, style=style), soft_wrap=True)
