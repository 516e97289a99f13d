"""The option stacks and decorators the commands share, and the types of their values.

Each command's own options stay in its module; what two commands (or the group's
``--os-cloud``) use is here: ``placement_options`` (upload, plan), ``wait_options``,
``batch_options``, ``with_app`` and its ``--format``, the ``NAME_OR_ID`` type, and the
completion callbacks, which import ``volimg.completion`` only when a shell asks.
Nothing here imports the core: ``volimg --help`` loads this module.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

# volimg.copy_slots.DEFAULT_MAX_COPIES, spelled out so that `volimg --help` does not
# import the batch's modules (tests/unit/test_cli_basics.py holds the two together).
DEFAULT_MAX_COPIES = 8

# volimg.provenance.Period's values, spelled out so that `volimg --help` does not import
# provenance (tests/unit/test_cli_basics.py holds the two together).
PERIODS = ("hour", "day", "week", "month")


if TYPE_CHECKING:
    from volimg.context import AppContext

F = TypeVar("F", bound=Callable[..., Any])


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
        if not text.strip() and param is not None and param.name == "image_name":
            self.fail(
                f"{'an empty' if not text else 'a blank'} value is no image name (Glance "
                "would take it, and no command could name the image later); leave out "
                "--name for the default <volume>-<UTC time> (an unset shell variable?)",
                param,
                ctx,
            )
        if not text.strip():
            self.fail(
                f"{'an empty' if not text else 'a blank'} value is not a name or ID "
                "(an unset shell variable?)",
                param,
                ctx,
            )
        return text


NAME_OR_ID = NameOrId()

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


if TYPE_CHECKING:  # click 8.5 types its ParamType by value; older clicks cannot subscript it
    _FloatType = click.ParamType[float]
    _LockType = click.ParamType[str | None]
else:
    _FloatType = _LockType = click.ParamType


class Duration(_FloatType):
    """A duration: seconds, or parts such as ``90m``, ``5h30m``, ``2d`` (s, m, h, d)."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            text = str(value).strip().lower()
            parts = _DURATION_PART.findall(text)
            if not text or "".join(n + u for n, u in parts) != text:
                self.fail(f"{value!r} is not a duration such as 3600, 90m, 5h30m or 2d", param, ctx)
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
        if seconds <= 0:
            self.fail(f"{value!r}: a duration must be longer than 0", param, ctx)
        return seconds


DURATION = Duration()

# Boolean-looking values of --lock (VOLIMG_UPLOAD_LOCK=true is not a file named "true").
LOCK_DEFAULT_WORDS = ("1", "true", "yes", "on")
LOCK_OFF_WORDS = ("0", "false", "no", "off")


class LockPath(_LockType):
    """``--lock``'s value: a path; ``""`` (no value) or a true-looking word: the default
    path; a false-looking word: no lock. ``./true`` still names a file called true."""

    name = "path"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> str | None:
        text = str(value)
        word = text.strip().lower()
        if word in LOCK_DEFAULT_WORDS:
            return ""
        if word in LOCK_OFF_WORDS:
            return None
        return text


# Cinder's volume statuses (cinder/objects/fields.py VolumeStatus), for --skip-status.
VOLUME_STATUSES = (
    "available", "in-use", "error", "error_deleting", "error_backing-up", "error_restoring",
    "error_extending", "error_managing", "creating", "deleting", "attaching", "detaching",
    "maintenance", "reserved", "awaiting-transfer", "backing-up", "restoring-backup",
    "downloading", "uploading", "retyping", "extending", "managing",
)  # fmt: skip


def format_option(f: F, formats: Sequence[str] = ("table", "json")) -> F:
    # Each command says what its lines are: audit's findings and repairs, upload's volumes.
    lines = "finding and per repair" if f.__name__ == "audit" else "volume"
    ndjson = f" ndjson: one JSON line per {lines} as soon as it is known, then a summary."
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
            "--allow-duplicate-name",
            is_flag=True,
            help="Upload even if an image visible to you already has that name (refused "
            "otherwise: the name would then be ambiguous).",
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


def upload_options_from(kwargs: dict[str, Any]) -> Any:
    """The planner's UploadOptions from what ``placement_options`` parsed."""
    from volimg.planner import UploadOptions

    return UploadOptions(
        image_name=kwargs["image_name"],
        allow_duplicate_name=kwargs.get("allow_duplicate_name", False),
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
            "--require-match/--allow-empty",
            default=True,
            show_default=True,
            help="An empty selection is exit 2 (--require-match), or exit 0 reported as "
            "'empty' (--allow-empty); either way it is never a success in the metrics.",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 64),
            default=4,
            show_default=True,
            help="Volumes uploaded at once.",
        ),
        click.option(
            "--max-copies",
            type=click.IntRange(min=0),
            default=DEFAULT_MAX_COPIES,
            show_default=True,
            metavar="N",
            help="Copy-image imports in flight at once across the batch; a volume whose "
            "upload is done waits for a slot (0: no cap).",
        ),
        click.option(
            "--once-per",
            type=click.Choice(PERIODS),
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
            type=LockPath(),
            is_flag=False,
            flag_value="",
            default=None,
            metavar="[PATH]",
            help="Exit 75 at once if another run holds this lock [PATH default: "
            "$XDG_STATE_HOME/volimg/upload.lock; true/1/yes/on: that default; "
            "false/0/no/off: no lock].",
        ),
        click.option(
            "--deadline",
            type=DURATION,
            metavar="DURATION",
            help="Stop the whole batch after this long (e.g. 5h30m): start no more volumes, "
            "stop waiting, report (exit 4). Keep it under systemd's TimeoutStartSec.",
        ),
        click.option(
            "--skip-status",
            "skip_statuses",
            type=click.Choice(VOLUME_STATUSES),
            multiple=True,
            metavar="STATUS",
            help="Leave out volumes in this Cinder status, reported as skipped (repeatable; "
            "e.g. error).",
        ),
        click.option(
            "--stale-after",
            type=DURATION,
            metavar="DURATION",
            help="Count a selected volume whose newest volimg image is older than this as "
            "not backed up [default: two --once-per periods, else 2d].",
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
