"""``volimg demo``: an upload against a sandbox cloud started in-process.

The demo itself is ``volimg.demo.run_demo``; this module only parses and exits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from volimg.commands._boundary import exit_with
from volimg.commands.options import with_app

if TYPE_CHECKING:
    from volimg.context import AppContext


@click.command()
@with_app
def demo(app: AppContext) -> None:
    """Start a sandbox cloud in-process and upload boot-vol, as against a real cloud."""
    from volimg.demo import run_demo

    exit_with(int(run_demo(app)))
