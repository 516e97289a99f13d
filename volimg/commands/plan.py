"""``volimg plan``: the facts and the plan for one volume, with nothing changed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from volimg.commands.options import (
    NAME_OR_ID,
    complete_volumes,
    placement_options,
    upload_options_from,
    with_app,
)

if TYPE_CHECKING:
    from volimg.context import AppContext


@click.command()
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
        upload_options_from(kwargs),
        app.run_settings(),
        dry_run=True,
    )
    # The JSON document names the command that was run (docs/json.md).
    app.renderer().outcome(replace(outcome, command="plan"))
