"""``volimg audit``: is every volimg image in the stores its rules give it now? (--fix)

The command parses and reports; the audit itself is ``volimg.audit``. An interrupted
``--fix`` still reports (which repairs were started, and how to follow them) and
exits 130 or 143.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from volimg.commands._boundary import exit_with
from volimg.commands.options import NAME_OR_ID, complete_images, complete_volumes, with_app_formats

if TYPE_CHECKING:
    from volimg.context import AppContext


@click.command()
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
@click.option(
    "--fix",
    is_flag=True,
    help="Repair what can be repaired: stamp unfinished uploads, copy, prune (only what "
    "docs/safety.md allows), take over stale locks.",
)
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
    """Check that every volimg image is in the stores the rules give it now.

    Every image volimg stamped, and every image a volimg run created and never
    finished. One finding per image, most pressing first: unfinished, failed-import,
    stale-lock, missing, extra, importing, not-active, base-gone or ok (docs/audit.md).
    Exit 0 when everything is ok (or repaired), 3 when findings remain or a repair
    failed, 130/143 when a signal stopped --fix.
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
    if all_projects:
        identity = app.gateway().identity()
        if not identity.is_admin:
            # Glance and Cinder answer a member's all-projects listing with the
            # member's own project, silently: say so rather than look like a fleet.
            renderer.notice(
                "warning: --all-projects needs an admin role, which you do not have: this "
                f"audit covers your own project ({identity.project_id}) only"
            )
    with renderer.progress() as sink:
        outcome = run_audit(app.gateway(), options, app.run_settings(timeout=timeout), sink)
    if metrics_file is not None:
        write_audit_metrics(metrics_file, outcome)
    renderer.audit(outcome)
    exit_with(outcome.exit_code)
