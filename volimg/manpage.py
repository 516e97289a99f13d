"""The man page volimg.1, generated from the click commands when the wheel is built.

``setup.py`` calls ``render`` at build time, so the page always says what ``--help``
says: every command, its usage, its options with their environment variables and
defaults, as click formats them. Nothing here is written by hand but the section
headings.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from datetime import datetime, timezone

import click

from volimg.completion import CACHE_TTL

_SECTIONS_AFTER = """\
.SH ENVIRONMENT
Every option can take its default from the environment variable shown beside it
(\\fBVOLIMG_\\fP, the command and the option's name); an option on the command line wins.
openstacksdk reads \\fBOS_CLIENT_CONFIG_FILE\\fP and the other \\fBOS_*\\fP variables.
\\fBNO_COLOR\\fP turns colour off, as does \\fB\\-\\-no\\-color\\fP.
.SH FILES
.TP
.I $XDG_CACHE_HOME/volimg/
Shell completion's cache of volume, image and store names ({ttl:g} seconds).
.SH SEE ALSO
.BR openstack (1)
"""


def escape(text: str) -> str:
    """Roff-safe text: backslashes, hyphens, and no line taken for a request."""
    lines = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _paragraphs(text: str) -> Iterator[str]:
    for block in inspect.cleandoc(text).split("\n\n"):
        if block.strip():
            yield escape(" ".join(block.split()))


def _options(ctx: click.Context) -> list[str]:
    lines: list[str] = []
    for param in ctx.command.get_params(ctx):
        record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", f"\\fB{escape(names)}\\fP", escape(help_text or "")]
    return lines


def _commands(ctx: click.Context) -> Iterator[click.Context]:
    command = ctx.command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = click.Context(sub, info_name=name, parent=ctx)
            yield sub_ctx
            yield from _commands(sub_ctx)


def render(cli: click.Command, *, name: str, version: str, date: datetime | None = None) -> str:
    """The whole page, in roff (man(7) macros)."""
    if date is None:  # reproducible builds set SOURCE_DATE_EPOCH
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        date = (
            datetime.fromtimestamp(int(epoch), timezone.utc)
            if epoch
            else datetime.now(timezone.utc)
        )
    day = date.strftime("%Y-%m-%d")
    root = cli.make_context(name, [], resilient_parsing=True)  # with its context_settings
    summary = cli.get_short_help_str(limit=200).rstrip(".")
    lines = [
        f'.TH {name.upper()} 1 "{day}" "{name} {version}" "User Commands"',
        ".SH NAME",
        f"{name} \\- {escape(summary)}",
        ".SH SYNOPSIS",
        f"\\fB{name}\\fP {escape(' '.join(cli.collect_usage_pieces(root)))}",
        ".SH DESCRIPTION",
    ]
    for paragraph in _paragraphs(cli.help or ""):
        lines += [paragraph, ".PP"]
    lines += [".SH OPTIONS", *_options(root), ".SH COMMANDS"]
    for ctx in _commands(root):
        usage = " ".join(ctx.command.collect_usage_pieces(ctx))
        lines.append(f'.SS "{escape(ctx.command_path)} {escape(usage)}"')
        for paragraph in _paragraphs(ctx.command.help or ""):
            lines += [paragraph, ".PP"]
        lines += _options(ctx)
    return "\n".join(lines) + "\n" + _SECTIONS_AFTER.format(ttl=CACHE_TTL)
