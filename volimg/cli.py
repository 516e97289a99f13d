"""The volimg group: global options, --version, the error boundary, the commands' registration.

Each command is a module in ``volimg/commands/`` (its options, help and lazy imports
of the core); this module imports them and adds them to the group. No OpenStack call
is made here. ``VolimgGroup.invoke`` is the one error boundary: it turns a
``VolimgError`` into a message (or a JSON document) and its exit code.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import click
from click import formatting
from click.core import ParameterSource

from volimg import __version__

# Imported where they are used, not here: `volimg --help` is click and this module
# (docs/performance.md, "Where the start-up time goes"). volimg.errors is for a command
# that runs (the error boundary), the option stacks and the completion module for a
# command's own help or a shell's TAB, shlex for one usage error's message.

__all__ = ["EnvvarGroup", "VolimgContext", "VolimgGroup", "cli"]

ENVVAR_PREFIX = "VOLIMG"


def _wants_json(args: Sequence[str], command: str = "") -> bool:
    """Before options are parsed (a usage error), did the caller ask for JSON?

    The command line wins; else the command's VOLIMG_<COMMAND>_OUTPUT_FORMAT.
    """
    for i, arg in enumerate(args):
        if arg in ("-f", "--format") and i + 1 < len(args):
            return args[i + 1] == "json"
        if arg.startswith(("--format=", "-f")) and arg not in ("-f", "--format"):
            return arg.removeprefix("--format=").removeprefix("-f") == "json"
    variable = f"{ENVVAR_PREFIX}_{command.upper().replace('-', '_')}_OUTPUT_FORMAT"
    return bool(command) and os.environ.get(variable) == "json"


def show_envvars(command: click.Command) -> None:
    """Have --help show each option's environment variable, in subcommands too."""
    for param in command.params:
        if isinstance(param, click.Option) and not param.is_eager:
            param.show_envvar = True
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            show_envvars(sub)


def _complete_clouds(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """--os-cloud's TAB: the option stacks (and volimg.completion) load when a shell asks."""
    from volimg.commands.options import complete_clouds

    return complete_clouds(ctx, param, incomplete)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, without importing shutil.

    Python's shutil imports zlib, bz2 and lzma: a tenth of what ``volimg --help`` may
    cost. This is the same lookup (Lib/shutil.py ``get_terminal_size``): COLUMNS when
    it is a positive number, else the terminal on the process's stdout, else 80.
    """
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or 80


class VolimgContext(click.Context):
    """click's context, whose help formatter has click's width without importing shutil."""

    def make_formatter(self) -> click.HelpFormatter:
        width = self.terminal_width
        if width is None and formatting.FORCED_WIDTH is None:
            # click's own rule (click/formatting.py HelpFormatter.__init__); with
            # FORCED_WIDTH set (click's test runner) click decides, as before.
            limit = self.max_content_width if self.max_content_width is not None else 80
            width = max(min(_terminal_columns(), limit) - 2, 50)
        return self.formatter_class(width=width, max_width=self.max_content_width)


def _installed_version(distribution: str) -> str | None:
    """A distribution's version from the name of its ``NAME-VERSION.dist-info`` directory.

    pip names the directory so (the wheel spec: the name with runs of ``-_.`` written
    ``_``, then the version), and the first one along ``sys.path`` is the one importlib.metadata
    would read. importlib.metadata itself imports email, zipfile, csv and tempfile:
    half of what ``volimg --version`` took. None when there is no such directory (an
    egg-info install, say): then ``--version`` asks importlib.metadata.
    """
    import re

    def normalized(name: str) -> str:  # the wheel spec's escaping, case folded
        return re.sub(r"[-_.]+", "_", name).lower()

    wanted = normalized(distribution)
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            found, _, found_version = name.removesuffix(".dist-info").partition("-")
            if name.endswith(".dist-info") and found_version and normalized(found) == wanted:
                return found_version
    return None


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """volimg's, openstacksdk's and Python's versions, without importing openstacksdk."""
    if not value or ctx.resilient_parsing:
        return
    import platform

    sdk = _installed_version("openstacksdk")
    if sdk is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            sdk = version("openstacksdk")
        except PackageNotFoundError:
            sdk = "not installed"
    click.echo(f"volimg {__version__} (openstacksdk {sdk}, Python {platform.python_version()})")
    ctx.exit()


#: The commands: name -> (module, the first paragraph of its help). A command is
#: imported when it is used, so `volimg --help` lists them from this table alone (the
#: start-up floor docs/performance.md measures); tests/unit/test_cli_basics.py holds
#: each line to the command's own help. A new command is a module in volimg/commands/
#: and a line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "upload": (
        "volimg.commands.upload",
        "Upload each VOLUME (name or ID) to a new image and place it in the planned stores.",
    ),
    "plan": (
        "volimg.commands.plan",
        "Show the facts and the plan for VOLUME; change nothing (= upload --dry-run).",
    ),
    "replicate": (
        "volimg.commands.replicate",
        "Copy IMAGE (name or ID) to the stores of BASE_IMAGE and/or named stores.",
    ),
    "audit": (
        "volimg.commands.audit",
        "Check that every volimg image is in the stores the rules give it now.",
    ),
    "adopt": (
        "volimg.commands.adopt",
        "Stamp IMAGE, made without volimg, so that audit covers it. No data moves.",
    ),
    "stores": ("volimg.commands.stores", "List Glance's stores and whether copy-image is enabled."),
    "doctor": (
        "volimg.commands.doctor",
        "Check the cloud's configuration for volimg; change nothing. Run it first on a new cloud.",
    ),
    "demo": (
        "volimg.commands.demo",
        "Start a sandbox cloud in-process and upload boot-vol, as against a real cloud.",
    ),
    "sandbox": (
        "volimg.commands.sandbox",
        "Serve the sandbox cloud (Keystone, Cinder, Glance) until interrupted.",
    ),
    "completion": (
        "volimg.commands.completion",
        "Print the completion script for SHELL (bash, zsh or fish).",
    ),
}


class _Commands(dict[str, click.Command]):
    """The group's commands, each imported on first use (``COMMANDS``).

    Looking one up imports its module only; anything that walks them all (the man
    page, completion of the command name, tests) imports them all, once.
    """

    def _load(self, name: str) -> None:
        if name in COMMANDS and not dict.__contains__(self, name):
            import importlib

            command = getattr(importlib.import_module(COMMANDS[name][0]), name)
            show_envvars(command)
            _use_context(command)
            dict.__setitem__(self, name, command)

    def _load_all(self) -> None:
        for name in COMMANDS:
            self._load(name)

    def __getitem__(self, name: str) -> click.Command:
        self._load(name)
        return dict.__getitem__(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        self._load(name)
        return dict.get(self, name, default)

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or dict.__contains__(self, name)

    def __iter__(self) -> Any:
        self._load_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._load_all()
        return dict.__len__(self)

    def keys(self) -> Any:
        self._load_all()
        return dict.keys(self)

    def values(self) -> Any:
        self._load_all()
        return dict.values(self)

    def items(self) -> Any:
        self._load_all()
        return dict.items(self)


def _use_context(command: click.Command) -> None:
    """Have a command's help formatted as the group's is (``VolimgContext``)."""
    if command.context_class is click.Context:
        command.context_class = VolimgContext


class EnvvarGroup(click.Group):
    """A group whose commands' --help show each option's environment variable."""

    # A group made with @group.group() is an EnvvarGroup too (click: type = "my class").
    group_class: type[click.Group] | type[type] | None = type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        show_envvars(self)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        show_envvars(cmd)
        super().add_command(cmd, name)


class VolimgGroup(EnvvarGroup):
    """The error boundary: expected failures become one message and one exit code."""

    group_class = EnvvarGroup  # one error boundary: nested groups do not repeat it
    context_class = VolimgContext

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands(self.commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lists them, from ``COMMANDS``: listing them imports none."""
        from click.utils import make_default_short_help

        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, make_default_short_help(COMMANDS[name][1], limit)) for name in names]  # type: ignore[operator]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["volimg.args"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from volimg import signals
        from volimg.context import AppContext
        from volimg.errors import ExitCode, Interrupted, VolimgError

        app = ctx.ensure_object(AppContext)
        try:
            with signals.handled():
                return super().invoke(ctx)
        except VolimgError as exc:
            if app.debug:
                raise
            app.renderer().error(exc, command=ctx.invoked_subcommand or "")
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt as exc:
            if app.debug:
                raise
            # The executor reports interrupts itself; one that reaches here came while
            # volimg was still reading the cloud, before any request that changes it.
            interrupted = Interrupted(
                "interrupted while reading the cloud; nothing was changed",
                hint="run the command again",
                signum=Interrupted.signal_of(exc),
            )
            app.renderer().error(interrupted, command=ctx.invoked_subcommand or "")
            ctx.exit(int(interrupted.exit_code))
        except click.NoSuchOption as exc:
            misplaced = _misplaced_global_option(self, exc)
            if misplaced is None:
                self._report_usage_error(ctx, exc)
                raise
            self._report_usage_error(ctx, misplaced)
            raise misplaced from None
        except click.UsageError as exc:
            self._report_usage_error(ctx, exc)
            raise
        except BrokenPipeError:
            # Whoever read stdout went away (``volimg plan boot-vol | head -1``); stderr
            # may still reach the operator. Exit as a writer killed by SIGPIPE would.
            _silence_stdout()
            try:
                click.echo("volimg: output not written: stdout was closed (broken pipe)", err=True)
            except BrokenPipeError:  # stderr went the same way (2>&1 | head)
                _silence(sys.stderr)
            ctx.exit(int(ExitCode.BROKEN_PIPE))
        finally:
            app.close()

    def _report_usage_error(self, ctx: click.Context, exc: click.UsageError) -> None:
        """In JSON mode a usage error still prints its one document."""
        if _wants_json(ctx.meta.get("volimg.args", []), ctx.invoked_subcommand or ""):
            from volimg.documents import dump_json, failure_doc
            from volimg.errors import UsageProblem

            problem = UsageProblem(exc.format_message(), hint="see --help")
            click.echo(dump_json(failure_doc(ctx.invoked_subcommand or "", problem)))


def _misplaced_global_option(
    group: click.Group, exc: click.NoSuchOption
) -> click.UsageError | None:
    """A global option given after the command: say where it belongs."""
    command = exc.ctx.info_name if exc.ctx is not None else "COMMAND"
    for param in group.params:
        if isinstance(param, click.Option) and exc.option_name in param.opts:
            takes_value = not (param.is_flag or param.count)
            args = exc.ctx.meta.get("volimg.args") if exc.ctx is not None else None
            corrected = _moved_to_front(args or [], exc.option_name, takes_value=takes_value)
            value = f" {param.metavar or 'VALUE'}" if takes_value else ""
            example = corrected or f"volimg {exc.option_name}{value} {command} ..."
            return click.UsageError(
                f"{exc.option_name} is a global option: give it before the command: {example}",
                ctx=exc.ctx,
            )
    return None


def _moved_to_front(args: list[str], option: str, *, takes_value: bool) -> str | None:
    """The command line as given, with the global ``option`` (and its value) moved
    before the command: the exact line to run instead."""
    import shlex

    for i, arg in enumerate(args):
        if arg == option:
            end = i + 2 if takes_value else i + 1
            if end > len(args):
                return None
            moved, rest = args[i:end], args[:i] + args[end:]
            return shlex.join(["volimg", *moved, *rest])
        if takes_value and arg.startswith(option + "="):
            return shlex.join(["volimg", arg, *args[:i], *args[i + 1 :]])
    return None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    _silence(sys.stdout)


def _silence(stream: TextIO) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # not a real file descriptor (a test runner's buffer)


@click.group(
    cls=VolimgGroup,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": ENVVAR_PREFIX},
)
@click.option(
    "--os-cloud",
    envvar="OS_CLOUD",
    metavar="NAME",
    shell_complete=_complete_clouds,
    help="Cloud from clouds.yaml; without it openstacksdk reads the OS_* variables.",
)
@click.option("--os-region-name", envvar="OS_REGION_NAME", metavar="REGION", help="Region.")
@click.option("-v", "--verbose", count=True, help="-v: volimg's steps; -vv: HTTP requests too.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("--no-color", is_flag=True, help="No colour (as does a set NO_COLOR).")
@click.option(
    "--insecure",
    is_flag=True,
    help="Do not verify TLS certificates (as verify: false in clouds.yaml); warns once.",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show volimg's, openstacksdk's and Python's versions and exit.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    os_cloud: str | None,
    os_region_name: str | None,
    verbose: int,
    debug: bool,
    no_color: bool,
    insecure: bool,
) -> None:
    """Upload a Cinder volume to Glance and put the image in every store its base image is in.

    Cinder sends Glance the base image (x-openstack-base-image-ref) but Glance ignores
    it; volimg plans the placement the original design promised (the volume type's
    store wins, else the base image's stores, else Glance's default store), uploads
    through Cinder, and copies the image with Glance's copy-image import.

    Exit codes: 0 done, 1 failed, 2 bad usage or input, 3 partial (a store copy
    failed), 4 timed out waiting, 5 authentication or permission refused, 75 another
    run holds the lock, 130 interrupted (Ctrl-C), 141 stdout closed (broken pipe),
    143 terminated (SIGTERM).
    """
    from volimg.context import AppContext

    app = ctx.ensure_object(AppContext)
    if os_cloud:
        app.cloud = os_cloud
    if os_region_name:
        app.region = os_region_name
    app.verbose, app.debug = verbose, debug
    app.no_color = app.no_color or no_color
    app.insecure = app.insecure or insecure
    if not verbose:
        return  # logging is set up with the first connection (help text never needs it)
    app.configure_logging()

    source = ctx.get_parameter_source("os_cloud")
    import logging

    log = logging.getLogger("volimg")
    if not app.cloud:
        log.info("cloud: none given (no --os-cloud, no OS_CLOUD): openstacksdk reads OS_*")
        return
    log.info(
        "cloud %s, from %s",
        app.cloud,
        "OS_CLOUD" if source is ParameterSource.ENVIRONMENT else "--os-cloud",
    )
