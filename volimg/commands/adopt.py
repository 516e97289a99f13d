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
