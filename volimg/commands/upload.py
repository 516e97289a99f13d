"""``volimg upload``: one volume to an image in its stores, or many as a batch.

One VOLUME runs through ``volimg.core.upload``; several, ``--from-file``,
``--selector`` or any batch option go through ``_run_batch`` (the lock, live
progress, the metrics file) to ``volimg.batch``. A batch's inputs are all checked
before the lock is taken or the cloud is asked anything.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
from click.core import ParameterSource

from volimg.commands._boundary import exit_with, run_and_report
from volimg.commands.options import (
    NAME_OR_ID,
    batch_options,
    complete_volumes,
    placement_options,
    upload_options_from,
    wait_options,
    with_app_formats,
)

if TYPE_CHECKING:
    from volimg.context import AppContext


@click.command()
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
    max_copies: int,
    once_per: str | None,
    keep: int | None,
    lock: str | None,
    deadline: float | None,
    skip_statuses: tuple[str, ...],
    stale_after: float | None,
    metrics_file: Path | None,
    **kwargs: Any,
) -> None:
    """Upload each VOLUME (name or ID) to a new image and place it in the planned stores.

    One VOLUME is uploaded, awaited and placed on its own. Several, --from-file or --selector make a batch: every
    volume runs even if another fails, busy volumes are skipped, and the exit code is
    0 when all are done (or were already done), 1 if any failed, 4 if any timed out,
    3 if any is partial, 2 for an empty selection (unless --allow-empty).
    """
    from volimg import core

    ctx = click.get_current_context()
    batch_flags = [
        name
        for name in ("from_file", "selectors", "all_projects", "require_match", "once_per",
                     "keep", "lock", "metrics_file", "concurrency", "max_copies", "deadline",
                     "skip_statuses", "stale_after")
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
    ]  # fmt: skip
    from_environment = ctx.get_parameter_source("dry_run") is ParameterSource.ENVIRONMENT
    dry_run_source = "from VOLIMG_UPLOAD_DRY_RUN" if from_environment else "--dry-run"
    if len(volumes) == 1 and not batch_flags and app.output_format != "ndjson":
        if dry_run:
            app.renderer().notice(f"dry run ({dry_run_source}): nothing will be changed")
        run_and_report(
            app,
            lambda sink: core.upload(
                app.gateway(),
                volumes[0],
                upload_options_from(kwargs),
                app.run_settings(wait=wait, timeout=timeout),
                dry_run=dry_run,
                emit=sink,
                on_plan=lambda plan: _warn(app, plan),
            ),
        )
        return
    if kwargs["image_name"]:
        raise click.UsageError(
            "--name names one image; a batch names each image <volume>-<period or UTC time>"
        )
    if not volumes and from_file is None and not selectors:
        raise click.UsageError("name at least one VOLUME, or use --from-file or --selector")
    from volimg.batch import BatchOptions, Selection
    from volimg.provenance import Period
    from volimg.selection import parse_volume_list, selector_mapping, unique_refs

    def plan_batch() -> tuple[Selection, BatchOptions]:
        """Every input checked before anything runs (InputError: exit 2)."""
        refs = list(volumes)
        if from_file is not None:
            refs += parse_volume_list(from_file.read(), from_file.name)
        selection = Selection(
            refs=unique_refs(refs),
            # The same key twice can never match: refused, never "the last one wins".
            selectors=tuple(selector_mapping(selectors).items()),
            all_projects=all_projects,
            require_match=require_match,
        )
        options = BatchOptions(
            upload=upload_options_from(kwargs),
            concurrency=concurrency,
            max_copies=max_copies,
            once_per=Period(once_per) if once_per else None,
            keep=keep,
            dry_run=dry_run,
            deadline=deadline,
            skip_statuses=skip_statuses,
            stale_after=stale_after,
        )
        return selection, options

    _run_batch(
        app,
        plan_batch,
        app.run_settings(wait=wait, timeout=timeout),
        lock=lock,
        metrics_file=metrics_file,
        dry_run=dry_run,
        dry_run_source=dry_run_source,
    )


def _warn(app: AppContext, plan: Any) -> None:
    """Every warning of the plan on stderr, before anything is created (as ``plan``
    shows them; in JSON they are the document's ``plan.reasons``)."""
    for decision in plan.warnings:
        try:
            app.renderer().notice(
                f"warning: {decision.topic}: {decision.outcome}: {decision.reason}"
            )
        except BrokenPipeError:
            return  # whoever read stderr went away; the upload does not depend on it


def _run_batch(
    app: AppContext,
    plan_batch: Callable[[], tuple[Any, Any]],
    settings: Any,
    *,
    lock: str | None,
    metrics_file: Path | None,
    dry_run: bool,
    dry_run_source: str,
) -> None:
    """Take the lock, run the batch with live progress, render, write metrics, exit.

    Whatever ends the run, it leaves its mark (docs/cron.md): the metrics file (written
    when the run starts, and again when it ends), one document with -f json, a summary
    line with -f ndjson, and a summary line on stderr. A closed stdout or stderr
    changes none of that; a lost stdout is exit 141 once the metrics are written.
    """
    from contextlib import ExitStack

    from volimg.batch import (
        STOP_INTERNAL,
        STOP_INTERRUPTED,
        BatchOutcome,
        run_batch,
        stop_reason,
    )
    from volimg.errors import ExitCode, Interrupted, OperationFailed, VolimgError
    from volimg.fleet_metrics import write_batch_end, write_batch_start
    from volimg.locking import default_lock_path, held
    from volimg.metrics import check_textfile_path

    clock = app.clock
    started_at, began = clock.wall(), clock.monotonic()
    if metrics_file is not None:
        check_textfile_path(metrics_file)  # a file nobody could write: exit 2 at once
    metrics = None if dry_run else metrics_file
    renderer = app.batch_renderer()
    if dry_run:
        renderer.notice(
            f"dry run ({dry_run_source}): nothing will be changed, and the metrics file "
            "is not written"
        )

    def stopped(error: VolimgError, reason: str) -> BatchOutcome:
        return BatchOutcome.stopped_before_start(
            error, reason, started_at=started_at, seconds=clock.monotonic() - began, dry_run=dry_run
        )

    with ExitStack() as stack:
        try:
            selection, options = plan_batch()
            if lock is not None:
                stack.enter_context(held(Path(lock) if lock else default_lock_path("upload")))
            if metrics is not None:
                try:
                    write_batch_start(metrics, started_at)
                except VolimgError as exc:  # a full disk must not cost the night's backups
                    renderer.notice(f"warning: {exc.message}")
            gateway = app.gateway()
            with renderer.progress() as sink:
                outcome = run_batch(
                    gateway, selection, options, settings, sink, on_result=renderer.on_result
                )
        except VolimgError as exc:
            outcome = stopped(exc, stop_reason(exc))
        except KeyboardInterrupt as exc:
            interrupted = Interrupted(
                "interrupted before the batch started; nothing was changed",
                hint="run the command again",
                signum=Interrupted.signal_of(exc),
            )
            outcome = stopped(interrupted, STOP_INTERRUPTED)
        except BaseException:
            if metrics is not None:  # a bug: the metrics still say the run failed
                crash = OperationFailed("volimg stopped on an unexpected error")
                with suppress(VolimgError, OSError):
                    write_batch_end(metrics, stopped(crash, STOP_INTERNAL), exit_code=1)
            raise
        renderer.outcome(outcome, dry_run_source=dry_run_source)
        code = ExitCode.BROKEN_PIPE if renderer.lost_stdout else outcome.exit_code
        if metrics is not None:
            try:
                write_batch_end(metrics, outcome, exit_code=int(code))
            except VolimgError as exc:
                renderer.notice(f"error: {exc.message}")
                if exc.hint:
                    renderer.notice(f"hint: {exc.hint}")
                code = code or exc.exit_code
    if app.debug and outcome.stopped is not None and outcome.interrupted is None:
        raise outcome.stopped  # --debug: the traceback of what stopped the run
    exit_with(int(code))
