"""``volimg adopt``: stamp an image made without volimg so that audit covers it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from volimg.commands.options import (
    NAME_OR_ID,
    complete_base_images,
    complete_images,
    complete_volumes,
    with_app,
)

if TYPE_CHECKING:
    from volimg.context import AppContext


@click.command()
@click.argument("image", type=NAME_OR_ID, shell_complete=complete_images)
@click.option(
    "--base",
    metavar="BASE_IMAGE",
    type=NAME_OR_ID,
    shell_complete=complete_base_images,
    help="The image it was made from (default: the one --volume was made from).",
)
@click.option(
    "--no-base",
    is_flag=True,
    help="It has no base image: it was uploaded from a blank volume.",
)
@click.option(
    "--volume",
    metavar="VOLUME",
    type=NAME_OR_ID,
    shell_complete=complete_volumes,
    help="The volume it was uploaded from, if known; its image metadata names the base.",
)
@click.option(
    "--prune-intent/--no-prune-intent",
    default=None,
    help="Record that the image belongs only in its target stores (audit reports others), "
    "or that it does not. Not given: none at first; with --force, the recorded one.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace a stamp the image already carries (volimg's upload, the Glance filter, "
    "an earlier adopt); the fields not given are kept.",
)
@with_app
def adopt(
    app: AppContext,
    image: str,
    base: str | None,
    no_base: bool,
    volume: str | None,
    prune_intent: bool | None,
    force: bool,
) -> None:
    """Stamp IMAGE, made without volimg, so that audit covers it. No data moves.

    The base comes from exactly one of --base, --no-base, or --volume (a volume made
    from an image). Another stamp is never replaced without --force.
    """
    from volimg.audit import AdoptOptions
    from volimg.audit import adopt as adopt_image

    options = AdoptOptions(
        base=base, no_base=no_base, volume=volume, prune_intent=prune_intent, force=force
    )
    stamp = adopt_image(app.gateway(), image, options, now=app.clock.wall())
    app.renderer().stamped("adopt", stamp)
