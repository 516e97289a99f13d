"""The click commands: parse options, call ``volimg.core``, hand results to a renderer.

No OpenStack call is made here. ``VolimgGroup.invoke`` is the one error boundary: it
turns a ``VolimgError`` into a message (or a JSON document) and its exit code.
"""

from __future__ import annotations

import functools
import io
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click
from click.core import ParameterSource

from volimg import __version__
from volimg.errors import ExitCode, Interrupted, UsageProblem, VolimgError
from volimg.provenance import Period

if TYPE_CHECKING:
    from volimg.context import AppContext
    from volimg.events import EventSink
    from volimg.results import Outcome

F = TypeVar("F", bound=Callable[..., Any])

#: The shells ``volimg completion`` prints a script for (click's built-in ones).
SHELLS = ("bash", "zsh", "fish")


def _completer(name: str) -> Callable[[click.Context, click.Parameter, str], list[Any]]:
    """A completion callback that imports volimg.completion only when a shell asks."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from volimg import completion

        found: list[Any] = getattr(completion, name)(ctx, param, incomplete)
        return found

    complete.__name__ = name
    return complete


complete_volumes = _completer("complete_volumes")
complete_images = _completer("complete_images")
complete_base_images = _completer("complete_base_images")
complete_stores = _completer("complete_stores")
complete_clouds = _completer("complete_clouds")

# Cinder's os-volume_upload_image schema (cinder/api/schemas/volume_actions.py) and
# Glance's container formats (glance/common/config.py container_formats).
DISK_FORMATS = ("raw", "vmdk", "vdi", "qcow2", "vhd", "vhdx", "ploop")
CONTAINER_FORMATS = ("bare", "ovf", "ova", "aki", "ari", "ami", "docker", "compressed")
VISIBILITIES = ("private", "shared", "community", "public")


class NameOrId(click.types.StringParamType):
    """A name, ID or store id: an empty or blank value (an unset shell variable) is refused.

    Cinder and Glance accept the empty string as a name, so ``volimg plan ''`` would
    otherwise pick whatever nameless volume the project holds.
    """

    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = super().convert(value, param, ctx)
        if not text.strip():
            self.fail(
                f"{'an empty' if not text else 'a blank'} value is not a name or ID "
                "(an unset shell variable?)",
                param,
                ctx,
            )
        return text


NAME_OR_ID = NameOrId()


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


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """volimg's, openstacksdk's and Python's versions, without importing openstacksdk."""
    if not value or ctx.resilient_parsing:
        return
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        sdk = version("openstacksdk")
    except PackageNotFoundError:
        sdk = "not installed"
    click.echo(f"volimg {__version__} (openstacksdk {sdk}, Python {platform.python_version()})")
    ctx.exit()


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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["volimg.args"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from volimg import signals
        from volimg.context import AppContext

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
            click.echo("volimg: output not written: stdout was closed (broken pipe)", err=True)
            ctx.exit(int(ExitCode.BROKEN_PIPE))
        finally:
            app.close()

    def _report_usage_error(self, ctx: click.Context, exc: click.UsageError) -> None:
        """In JSON mode a usage error still prints its one document."""
        if _wants_json(ctx.meta.get("volimg.args", []), ctx.invoked_subcommand or ""):
            from volimg.render import dump_json, failure_doc

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
            value = f" {param.metavar or 'VALUE'}" if takes_value else ""
            return click.UsageError(
                f"{exc.option_name} is a global option: give it before the command, "
                f"e.g. volimg {exc.option_name}{value} {command} ...",
                ctx=exc.ctx,
            )
    return None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # not a real file descriptor (a test runner's buffer)


def _exit_with(code: int) -> None:
    if code:
        click.get_current_context().exit(code)


def _run_and_report(app: AppContext, work: Callable[[EventSink], Outcome]) -> None:
    """Run with progress on stderr, then the result on stdout, then its exit code."""
    renderer = app.renderer()
    with renderer.progress() as sink:
        outcome = work(sink)
    renderer.outcome(outcome)
    if app.debug and outcome.error is not None:
        # --debug promises the traceback at any step: the executor folds errors into
        # the outcome (which is printed above), so raise the one it caught.
        raise outcome.error
    _exit_with(int(outcome.exit_code))


def format_option(f: F, formats: Sequence[str] = ("table", "json")) -> F:
    ndjson = (
        " ndjson: one JSON line per volume (or finding) as soon as it is known, then a summary."
    )
    return click.option(
        "-f",
        "--format",
        "output_format",
        type=click.Choice(list(formats)),
        default="table",
        show_default=True,
        help="table for people; json for scripts (stdout holds exactly one document)."
        + (ndjson if "ndjson" in formats else ""),
    )(f)


def _with_app(f: F, formats: Sequence[str]) -> F:
    @functools.wraps(f)
    @click.pass_obj
    def wrapper(app: AppContext, /, *args: Any, output_format: str, **kwargs: Any) -> Any:
        app.output_format = output_format
        return f(app, *args, **kwargs)

    return format_option(wrapper, formats)  # type: ignore[return-value]


def with_app(f: F) -> F:
    """Pass the AppContext, with the command's output format recorded on it."""
    return _with_app(f, ("table", "json"))


def with_app_formats(*formats: str) -> Callable[[F], F]:
    """``with_app`` for a command that offers more formats (ndjson for batches)."""
    return lambda f: _with_app(f, formats)


def placement_options(f: F) -> F:
    """Options shared by ``upload`` and ``plan``: everything that shapes the plan."""
    decorators = [
        click.option(
            "--name",
            "image_name",
            type=NAME_OR_ID,
            help="Image name [default: <volume>-<UTC time>].",
        ),
        click.option(
            "--disk-format", type=click.Choice(DISK_FORMATS), help="[default: Cinder's, raw]"
        ),
        click.option(
            "--container-format",
            type=click.Choice(CONTAINER_FORMATS),
            help="[default: Cinder's, bare]",
        ),
        click.option(
            "--visibility",
            type=click.Choice(VISIBILITIES),
            help="Image visibility (sent at Cinder API 3.1) [default: shared: without it "
            "volimg uses API 3.0, where Cinder sends none and Glance's default applies].",
        ),
        click.option(
            "--protected/--unprotected",
            default=None,
            help="Protect the image from deletion (Cinder API 3.1).",
        ),
        click.option(
            "--force", is_flag=True, help="Upload an in-use volume (needs enable_force_upload)."
        ),
        click.option(
            "--replicate/--no-replicate",
            default=None,
            help="Follow the base image's stores, or not (--no-replicate; --also-store still "
            "copies) [default: as planned].",
        ),
        click.option(
            "--also-store",
            "also_stores",
            type=NAME_OR_ID,
            multiple=True,
            metavar="STORE",
            shell_complete=complete_stores,
            help="Also copy to this store (repeatable).",
        ),
        click.option(
            "--prune",
            is_flag=True,
            help="After every copy succeeded, remove copies outside the planned stores.",
        ),
        click.option(
            "--all-stores-must-succeed",
            is_flag=True,
            help="Let Glance undo every copy if one store fails (Glance's all_stores_must_succeed).",
        ),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def wait_options(what: str) -> Callable[[F], F]:
    """--wait/--no-wait and --timeout; ``what`` names what is waited for."""

    def decorate(f: F) -> F:
        return _wait_options(f, what)

    return decorate


def _wait_options(f: F, what: str) -> F:
    f = click.option(
        "--timeout",
        type=click.FloatRange(min=1),
        default=3600,
        show_default=True,
        metavar="SECONDS",
        help="Give up waiting after this long (exit 4); the cloud may still finish.",
    )(f)
    return click.option(
        "--wait/--no-wait",
        default=True,
        show_default=True,
        help=f"Wait for {what} to finish.",
    )(f)


def _upload_options(kwargs: dict[str, Any]) -> Any:
    from volimg.planner import UploadOptions

    return UploadOptions(
        image_name=kwargs["image_name"],
        disk_format=kwargs["disk_format"],
        container_format=kwargs["container_format"],
        visibility=kwargs["visibility"],
        protected=kwargs["protected"],
        force=kwargs["force"],
        replicate=kwargs["replicate"],
        also_stores=tuple(kwargs["also_stores"]),
        prune=kwargs["prune"],
        all_stores_must_succeed=kwargs["all_stores_must_succeed"],
    )


@click.group(
    cls=VolimgGroup,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": ENVVAR_PREFIX},
)
@click.option(
    "--os-cloud",
    envvar="OS_CLOUD",
    metavar="NAME",
    shell_complete=complete_clouds,
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

    logging.getLogger("volimg").info(
        "cloud %s, from %s",
        app.cloud or "(none: openstacksdk reads the OS_* variables)",
        "OS_CLOUD" if source is ParameterSource.ENVIRONMENT else "--os-cloud",
    )


def batch_options(f: F) -> F:
    """Options that select many volumes or shape a batch run (docs/cron.md)."""
    decorators = [
        click.option(
            "--from-file",
            "from_file",
            type=click.File("r", encoding="utf-8"),
            metavar="PATH|-",
            help="Read volume names or IDs from a file (one a line, # comments), - for stdin.",
        ),
        click.option(
            "--selector",
            "selectors",
            multiple=True,
            metavar="KEY=VALUE",
            help="Select volumes whose metadata has KEY=VALUE (repeatable, all must match).",
        ),
        click.option(
            "--all-projects", is_flag=True, help="With --selector: every project's volumes (admin)."
        ),
        click.option(
            "--require-match",
            is_flag=True,
            help="Exit 2 when the selection is empty (default: exit 0 saying so).",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 64),
            default=4,
            show_default=True,
            help="Volumes uploaded at once.",
        ),
        click.option(
            "--once-per",
            type=click.Choice([p.value for p in Period]),
            help="At most one image per volume per UTC period; a re-run finishes what is "
            "unfinished and skips what is done.",
        ),
        click.option(
            "--keep",
            type=click.IntRange(min=1),
            metavar="N",
            help="Keep the newest N volimg images of each volume done in this run; delete "
            "older ones (never protected ones).",
        ),
        click.option(
            "--lock",
            "lock",
            is_flag=False,
            flag_value="",
            default=None,
            metavar="[PATH]",
            help="Exit 75 at once if another run holds this lock [PATH default: "
            "$XDG_STATE_HOME/volimg/upload.lock].",
        ),
        click.option(
            "--metrics-file",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="PATH.prom",
            help="Write node_exporter textfile metrics of the run here (atomically).",
        ),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


@cli.command()
@click.argument(
    "volumes",
    nargs=-1,
    metavar="[VOLUME]...",
    type=NAME_OR_ID,
    shell_complete=complete_volumes,
)
@placement_options
@wait_options("the upload and the copies")
@batch_options
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@with_app_formats("table", "json", "ndjson")
def upload(
    app: AppContext,
    volumes: tuple[str, ...],
    wait: bool,
    timeout: float,
    dry_run: bool,
    from_file: TextIO | None,
    selectors: tuple[str, ...],
    all_projects: bool,
    require_match: bool,
    concurrency: int,
    once_per: str | None,
    keep: int | None,
    lock: str | None,
    metrics_file: Path | None,
    **kwargs: Any,
) -> None:
    """Upload each VOLUME (name or ID) to a new image and place it in the planned stores.

    One VOLUME runs as before. Several, --from-file or --selector make a batch: every
    volume runs even if another fails, busy volumes are skipped, and the exit code is
    0 when all are done (or were already done), 1 if any failed, 3 if any is partial.
    """
    from volimg import core
    from volimg.selection import parse_selector, parse_volume_list, unique_refs

    ctx = click.get_current_context()
    batch_flags = [
        name
        for name in ("from_file", "selectors", "all_projects", "require_match", "once_per",
                     "keep", "lock", "metrics_file", "concurrency")
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
    ]  # fmt: skip
    if len(volumes) == 1 and not batch_flags and app.output_format != "ndjson":
        _run_and_report(
            app,
            lambda sink: core.upload(
                app.gateway(),
                volumes[0],
                _upload_options(kwargs),
                app.run_settings(wait=wait, timeout=timeout),
                dry_run=dry_run,
                emit=sink,
            ),
        )
        return
    if kwargs["image_name"]:
        raise click.UsageError(
            "--name names one image; a batch names each image <volume>-<period or UTC time>"
        )
    refs = list(volumes)
    if from_file is not None:
        refs += parse_volume_list(from_file.read(), from_file.name)
    if not volumes and from_file is None and not selectors:
        raise click.UsageError("name at least one VOLUME, or use --from-file or --selector")
    from volimg.batch import BatchOptions, Selection

    selection = Selection(
        refs=unique_refs(refs),
        selectors=tuple(parse_selector(s) for s in selectors),
        all_projects=all_projects,
        require_match=require_match,
    )
    options = BatchOptions(
        upload=_upload_options(kwargs),
        concurrency=concurrency,
        once_per=Period(once_per) if once_per else None,
        keep=keep,
        dry_run=dry_run,
    )
    _run_batch(
        app, selection, options, app.run_settings(wait=wait, timeout=timeout), lock, metrics_file
    )


def _run_batch(
    app: AppContext,
    selection: Any,
    options: Any,
    settings: Any,
    lock: str | None,
    metrics_file: Path | None,
) -> None:
    """Take the lock, run the batch with live progress, render, write metrics, exit."""
    from contextlib import nullcontext

    from volimg.batch import run_batch
    from volimg.fleet_render import write_batch_metrics
    from volimg.locking import default_lock_path, held
    from volimg.metrics import check_textfile_path

    if metrics_file is not None:
        check_textfile_path(metrics_file)
    lock_path = None if lock is None else Path(lock) if lock else default_lock_path("upload")
    renderer = app.batch_renderer()
    with held(lock_path) if lock_path is not None else nullcontext():
        with renderer.progress() as sink:
            outcome = run_batch(
                app.gateway(), selection, options, settings, sink, on_result=renderer.on_result
            )
        # Metrics first: they must say how the run went even if stdout's reader is gone.
        if metrics_file is not None and not options.dry_run:
            write_batch_metrics(metrics_file, outcome)
        renderer.outcome(outcome)
    _exit_with(int(outcome.exit_code))


@cli.command()
@click.argument("volume", type=NAME_OR_ID, shell_complete=complete_volumes)
@placement_options
@with_app
def plan(app: AppContext, volume: str, **kwargs: Any) -> None:
    """Show the facts and the plan for VOLUME; change nothing (= upload --dry-run)."""
    from dataclasses import replace

    from volimg import core

    outcome = core.upload(
        app.gateway(),
        volume,
        _upload_options(kwargs),
        app.run_settings(),
        dry_run=True,
    )
    # The JSON document names the command that was run (docs/json.md).
    app.renderer().outcome(replace(outcome, command="plan"))


@cli.command()
@click.argument("image", type=NAME_OR_ID, shell_complete=complete_images)
@click.option(
    "--like",
    "like",
    type=NAME_OR_ID,
    metavar="BASE_IMAGE",
    shell_complete=complete_base_images,
    help="Copy to every store this image is in.",
)
@click.option(
    "--store",
    "stores",
    type=NAME_OR_ID,
    multiple=True,
    metavar="STORE",
    shell_complete=complete_stores,
    help="Copy to this store (repeatable).",
)
@click.option(
    "--prune",
    is_flag=True,
    help="After every copy succeeded, remove copies outside the target stores.",
)
@click.option(
    "--all-stores-must-succeed", is_flag=True, help="Let Glance undo every copy if one store fails."
)
@wait_options("the copies")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@with_app
def replicate(
    app: AppContext,
    image: str,
    like: str | None,
    stores: tuple[str, ...],
    prune: bool,
    all_stores_must_succeed: bool,
    wait: bool,
    timeout: float,
    dry_run: bool,
) -> None:
    """Copy IMAGE (name or ID) to the stores of BASE_IMAGE and/or named stores."""
    from volimg import core
    from volimg.planner import ReplicationOptions

    options = ReplicationOptions(
        stores=stores, prune=prune, all_stores_must_succeed=all_stores_must_succeed
    )
    _run_and_report(
        app,
        lambda sink: core.replicate(
            app.gateway(),
            image,
            like,
            options,
            app.run_settings(wait=wait, timeout=timeout),
            dry_run=dry_run,
            emit=sink,
        ),
    )


@cli.command()
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="IMAGE",
    type=NAME_OR_ID,
    shell_complete=complete_images,
    help="Audit this image (repeatable).",
)
@click.option(
    "--volume",
    "volumes",
    multiple=True,
    metavar="VOLUME",
    type=NAME_OR_ID,
    shell_complete=complete_volumes,
    help="Audit the images made from this volume (repeatable).",
)
@click.option("--all-projects", is_flag=True, help="Every project's stamped images (admin).")
@click.option("--fix", is_flag=True, help="Repair what can be repaired: copy, prune, take over.")
@click.option("--dry-run", is_flag=True, help="With --fix: print the repairs; change nothing.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Images repaired at once.",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH.prom",
    help="Write node_exporter textfile metrics of the audit here (atomically).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=3600,
    show_default=True,
    metavar="SECONDS",
    help="With --fix: give up waiting for one image's repair after this long.",
)
@with_app_formats("table", "json", "ndjson")
def audit(
    app: AppContext,
    images: tuple[str, ...],
    volumes: tuple[str, ...],
    all_projects: bool,
    fix: bool,
    dry_run: bool,
    concurrency: int,
    metrics_file: Path | None,
    timeout: float,
) -> None:
    """Check that every volimg-stamped image is in the stores the rules give it now.

    One finding per image: ok, missing, extra, failed-import, importing, stale-lock,
    base-gone or not-active (docs/audit.md). Exit 0 when everything is ok (or
    repaired), 3 when findings remain or a repair failed.
    """
    from volimg.audit import AuditOptions, run_audit
    from volimg.fleet_render import write_audit_metrics
    from volimg.metrics import check_textfile_path

    if dry_run and not fix:
        raise click.UsageError("--dry-run goes with --fix (audit alone changes nothing)")
    if metrics_file is not None:
        check_textfile_path(metrics_file)
    options = AuditOptions(
        images=images,
        volumes=volumes,
        all_projects=all_projects,
        fix=fix,
        dry_run=dry_run,
        concurrency=concurrency,
    )
    renderer = app.audit_renderer()
    with renderer.progress() as sink:
        outcome = run_audit(app.gateway(), options, app.run_settings(timeout=timeout), sink)
    if metrics_file is not None:
        write_audit_metrics(metrics_file, outcome)
    renderer.audit(outcome)
    _exit_with(outcome.exit_code)


@cli.command()
@click.argument("image", type=NAME_OR_ID, shell_complete=complete_images)
@click.option(
    "--base",
    required=True,
    metavar="BASE_IMAGE",
    type=NAME_OR_ID,
    shell_complete=complete_base_images,
    help="The image it was made from.",
)
@click.option(
    "--volume",
    metavar="VOLUME",
    type=NAME_OR_ID,
    shell_complete=complete_volumes,
    help="The volume it was uploaded from, if known.",
)
@click.option(
    "--prune-intent",
    is_flag=True,
    help="Record that the image belongs only in its target stores (audit reports others).",
)
@with_app
def adopt(app: AppContext, image: str, base: str, volume: str | None, prune_intent: bool) -> None:
    """Stamp IMAGE, made without volimg, so that audit covers it. No data moves."""
    from volimg.audit import adopt as adopt_image

    stamp = adopt_image(
        app.gateway(), image, base, volume, prune_intent=prune_intent, now=app.clock.wall()
    )
    app.renderer().stamped("adopt", stamp)


@cli.command()
@with_app
def stores(app: AppContext) -> None:
    """List Glance's stores and whether copy-image is enabled."""
    from volimg import core

    app.renderer().stores(core.stores(app.gateway()))


@cli.command()
@with_app
def demo(app: AppContext) -> None:
    """Start a sandbox cloud in-process and upload boot-vol, as against a real cloud."""
    from volimg.demo import run_demo

    _exit_with(int(run_demo(app)))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", default=0, type=click.IntRange(0, 65535), help="Port [default: a free one]."
)
@click.option("--seed", type=click.Choice(["demo", "empty"]), default="demo", show_default=True)
@click.option(
    "--clouds-yaml",
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write clouds.yaml [default: a temporary file].",
)
@click.option(
    "--speed",
    type=click.Choice(["human", "instant"]),
    default="human",
    show_default=True,
    help="Simulated durations of uploads and copies.",
)
@click.option("--allow-remote", is_flag=True, help="Allow binding a non-loopback address.")
@click.option(
    "--tls",
    is_flag=True,
    help="Serve HTTPS with a certificate made at start; clouds.yaml names its CA (cacert).",
)
@click.pass_obj
def sandbox(app: AppContext, /, **options: Any) -> None:
    """Serve the sandbox cloud (Keystone, Cinder, Glance) until interrupted."""
    from volimg.demo import serve_sandbox

    serve_sandbox(app, **options)


@cli.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    Install it with eval "$(volimg completion bash)" in ~/.bashrc (zsh: the same in
    ~/.zshrc; fish: save it as ~/.config/fish/completions/volimg.fish). Commands,
    options and their values complete, and VOLUME, IMAGE and STORE from the cloud.
    """
    from volimg.completion import script

    root = click.get_current_context().find_root().command
    click.echo(script(root, shell))
