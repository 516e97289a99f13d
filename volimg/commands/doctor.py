"""``volimg doctor``: is this cloud set up for volimg? Reads it, never changes it.

The command parses and reports; the reads are ``volimg.checkup``, the checks
``volimg.doctor`` (docs/doctor.md explains each).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from volimg.commands._boundary import exit_with
from volimg.commands.options import NAME_OR_ID, with_app

if TYPE_CHECKING:
    from volimg.context import AppContext


@click.command()
@click.option(
    "--volume-type",
    "volume_types",
    multiple=True,
    metavar="TYPE",
    type=NAME_OR_ID,
    help="Check this volume type and its volumes only (repeatable) [default: every type].",
)
@with_app
def doctor(app: AppContext, volume_types: tuple[str, ...]) -> None:
    """Check the cloud's configuration for volimg; change nothing. Run it first on a new cloud.

    One row per check: multi-store, copy-image, each volume type's store, the base
    images' stores, the image endpoints of the catalog, the copy_image policy, Glance's
    quotas, stale import locks, Cinder's microversions and enable_force_upload, each
    with its status (ok, warn, fail, skipped), subject, detail and fix (docs/doctor.md).
    Exit 0 when no check fails (warnings allowed), 3 when any does, 1 when the doctor
    could not read the cloud, 5 when authentication is refused.
    """
    from volimg.checkup import DoctorOptions, run_doctor

    report = run_doctor(
        app.gateway(), DoctorOptions(volume_types=volume_types), now=app.clock.wall()
    )
    app.renderer().doctor(report)
    exit_with(report.exit_code)
