"""``volimg stores``: Glance's stores and whether copy-image is enabled."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from volimg.commands.options import with_app

if TYPE_CHECKING:
    from volimg.context import AppContext


@click.command()
@with_app
def stores(app: AppContext) -> None:
    """List Glance's stores and whether copy-image is enabled."""
    from volimg import core

    app.renderer().stores(core.stores(app.gateway()))
