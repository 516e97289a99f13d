"""The click commands: parse options, call ``volimg.core``, hand results to a renderer.

No OpenStack call is made here. ``VolimgGroup.invoke`` is the one error boundary: it
turns a ``VolimgError`` into a message (or a JSON document) and its exit code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from volimg import __version__

if TYPE_CHECKING:
    from volimg.context import AppContext
    from volimg.events import EventSink
    from volimg.executor import Outcome

F = TypeVar("F", bound=Callable[..., Any])

# Cinder's os-volume_upload_image schema (cinder/api/schemas/volume_actions.py) and
# Glance's container formats (glance/common/config.py container_formats).
DISK_FORMATS = ("raw", "vmdk", "vdi", "qcow2", "vhd", "vhdx", "ploop")
CONTAINER_FORMATS = ("bare", "ovf", "ova", "aki", "ari", "ami", "docker", "compressed")
VISIBILITIES = ("private", "shared", "community", "public")


def _wants_json(args: Sequence[str]) -> bool:
    """Before options are parsed (a usage error), did the caller ask for JSON?"""
    for i, arg in enumerate(args):
        if arg in ("-f", "--format") and i + 1 < len(args) and args[i + 1] == "json":
            return True
        if arg in ("--format=json", "-fjson"):
            return True
    return False


class VolimgGroup(click.Group):
    """The error boundary: expected failures become one message and one exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["volimg.args"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        # Imported here, not at the top: ``volimg --help`` and ``--version`` never get
        # this far and must not pay for them (tests/unit/test_cli_basics.py).
        from volimg.context import AppContext
        from volimg.errors import Interrupted, UsageProblem, VolimgError

        app = ctx.ensure_object(AppContext)
        try:
            return super().invoke(ctx)
        except VolimgError as exc:
            if app.debug:
                raise
            app.renderer().error(exc, command=ctx.invoked_subcommand or "")
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            if app.debug:
                raise
            # The executor reports interrupts itself; one that reaches here came while
            # volimg was still reading the cloud, before any request that changes it.
            interrupted = Interrupted("interrupted while reading the cloud; nothing was changed")
            app.renderer().error(interrupted, command=ctx.invoked_subcommand or "")
            ctx.exit(int(interrupted.exit_code))
        except click.UsageError as exc:
            if _wants_json(ctx.meta.get("volimg.args", [])):
                from volimg.render import dump_json, failure_doc

                problem = UsageProblem(exc.format_message(), hint="see --help")
                click.echo(dump_json(failure_doc(ctx.invoked_subcommand or "", problem)))
            raise
        finally:
            app.close()


def _exit_with(code: int) -> None:
    if code:
        click.get_current_context().exit(code)


def _run_and_report(app: AppContext, work: Callable[[EventSink], Outcome]) -> None:
    """Run with progress on stderr, then the result on stdout, then its exit code."""
    renderer = app.renderer()
    with renderer.progress() as sink:
        outcome = work(sink)
    renderer.outcome(outcome)
    _exit_with(int(outcome.exit_code))


def format_option(f: F) -> F:
    return click.option(
        "-f",
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="table for people; json for scripts (stdout holds exactly one document).",
    )(f)


def with_app(f: F) -> F:
    """Pass the AppContext, with the command's output format recorded on it."""

    @functools.wraps(f)
    @click.pass_obj
    def wrapper(app: AppContext, /, *args: Any, output_format: str, **kwargs: Any) -> Any:
        app.output_format = output_format
        return f(app, *args, **kwargs)

    return format_option(wrapper)  # type: ignore[return-value]


def placement_options(f: F) -> F:
    """Options shared by ``upload`` and ``plan``: everything that shapes the plan."""
    decorators = [
        click.option("--name", "image_name", help="Image name [default: <volume>-<UTC time>]."),
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
            help="Image visibility (sent at Cinder API 3.1) [default: Cinder's, private].",
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
            help="Copy to the base image's stores [default: as planned].",
        ),
        click.option(
            "--also-store",
            "also_stores",
            multiple=True,
            metavar="STORE",
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


def wait_options(f: F) -> F:
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
        help="Wait for the upload and the copies to finish.",
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


@click.group(cls=VolimgGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--os-cloud",
    envvar="OS_CLOUD",
    metavar="NAME",
    help="Cloud from clouds.yaml (env OS_CLOUD); without it openstacksdk reads OS_* variables.",
)
@click.option(
    "--os-region-name", envvar="OS_REGION_NAME", metavar="REGION", help="env OS_REGION_NAME"
)
@click.option("-v", "--verbose", count=True, help="-v: volimg's steps; -vv: HTTP requests too.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(__version__, prog_name="volimg")
@click.pass_context
def cli(
    ctx: click.Context, os_cloud: str | None, os_region_name: str | None, verbose: int, debug: bool
) -> None:
    """Upload a Cinder volume to Glance and put the image in every store its base image is in.

    Cinder sends Glance the base image (x-openstack-base-image-ref) but Glance ignores
    it; volimg plans the placement the original design promised (the volume type's
    store wins, else the base image's stores, else Glance's default store), uploads
    through Cinder, and copies the image with Glance's copy-image import.

    Exit codes: 0 done, 1 failed, 2 bad usage or input, 3 partial (a store copy
    failed), 4 timed out waiting, 5 authentication or permission refused.
    """
    from volimg.context import AppContext

    app = ctx.ensure_object(AppContext)
    if os_cloud:
        app.cloud = os_cloud
    if os_region_name:
        app.region = os_region_name
    app.verbose, app.debug = verbose, debug
    app.configure_logging()
    if not verbose:
        return  # nothing would show; and help text need not import logging
    import logging

    source = ctx.get_parameter_source("os_cloud")
    logging.getLogger("volimg").info(
        "cloud %s, from %s",
        app.cloud or "(none: openstacksdk reads the OS_* variables)",
        "OS_CLOUD" if source is ParameterSource.ENVIRONMENT else "--os-cloud",
    )


@cli.command()
@click.argument("volume")
@placement_options
@wait_options
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@with_app
def upload(
    app: AppContext, volume: str, wait: bool, timeout: float, dry_run: bool, **kwargs: Any
) -> None:
    """Upload VOLUME (name or ID) to a new image and place it in the planned stores."""
    from volimg import core

    _run_and_report(
        app,
        lambda sink: core.upload(
            app.gateway(),
            volume,
            _upload_options(kwargs),
            app.run_settings(wait=wait, timeout=timeout),
            dry_run=dry_run,
            emit=sink,
        ),
    )


@cli.command()
@click.argument("volume")
@placement_options
@with_app
def plan(app: AppContext, volume: str, **kwargs: Any) -> None:
    """Show the facts and the plan for VOLUME; change nothing (= upload --dry-run)."""
    from volimg import core

    outcome = core.upload(
        app.gateway(),
        volume,
        _upload_options(kwargs),
        app.run_settings(),
        dry_run=True,
    )
    app.renderer().outcome(outcome)


@cli.command()
@click.argument("image")
@click.option("--like", "like", metavar="BASE_IMAGE", help="Copy to every store this image is in.")
@click.option(
    "--store", "stores", multiple=True, metavar="STORE", help="Copy to this store (repeatable)."
)
@click.option(
    "--prune",
    is_flag=True,
    help="After every copy succeeded, remove copies outside the target stores.",
)
@click.option(
    "--all-stores-must-succeed", is_flag=True, help="Let Glance undo every copy if one store fails."
)
@wait_options
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
@click.pass_obj
def sandbox(app: AppContext, /, **options: Any) -> None:
    """Serve the sandbox cloud (Keystone, Cinder, Glance) until interrupted."""
    from volimg.demo import serve_sandbox

    serve_sandbox(app, **options)
