"""``volimg upload``: one volume to an image in its stores, or many as a batch.

One VOLUME runs through ``volimg.core.upload``; several, ``--from-file``,
``--selector`` or any batch option go through ``_run_batch`` (the lock, live
progress, the metrics file) to ``volimg.batch``.
"""

from __future__ import annotations

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
    once_per: str | None,
    keep: int | None,
    lock: str | None,
    metrics_file: Path | None,
    **kwargs: Any,
) -> None:
    """Upload each VOLUME (name or ID) to a new image and place it in the planned stores.

    One VOLUME is uploaded, awaited and placed on its own. Several, --from-file or --selector make a batch: every
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
    refs = list(volumes)
    if from_file is not None:
        refs += parse_volume_list(from_file.read(), from_file.name)
    if not volumes and from_file is None and not selectors:
        raise click.UsageError("name at least one VOLUME, or use --from-file or --selector")
    from volimg.batch import BatchOptions, Selection
    from volimg.provenance import Period

    selection = Selection(
        refs=unique_refs(refs),
        selectors=tuple(parse_selector(s) for s in selectors),
        all_projects=all_projects,
        require_match=require_match,
    )
    options = BatchOptions(
        upload=upload_options_from(kwargs),
        concurrency=concurrency,
        once_per=Period(once_per) if once_per else None,
        keep=keep,
        dry_run=dry_run,
    )
    _run_batch(
        app, selection, options, app.run_settings(wait=wait, timeout=timeout), lock, metrics_file
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
    exit_with(int(outcome.exit_code))
