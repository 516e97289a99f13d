"""``volimg replicate``: copy an existing image to a base image's stores or named ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from volimg.commands._boundary import run_and_report
from volimg.commands.options import (
    NAME_OR_ID,
    complete_base_images,
    complete_images,
    complete_stores,
    wait_options,
    with_app,
)

if TYPE_CHECKING:
    from volimg.context import AppContext


@click.command()
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
    run_and_report(
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
