"""``volimg sandbox``: serve the sandbox cloud (``volimg.sandbox``) until interrupted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from volimg.context import AppContext


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", default=0, type=click.IntRange(0, 65535), help="Port [default: a free one]."
)
@click.option("--seed", type=click.Choice(["demo", "empty"]), default="demo", show_default=True)
@click.option(
    "--clouds-yaml",
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write clouds.yaml [default: a temporary file].",
)
@click.option(
    "--speed",
    type=click.Choice(["human", "instant"]),
    default="human",
    show_default=True,
    help="Simulated durations of uploads and copies.",
)
@click.option("--allow-remote", is_flag=True, help="Allow binding a non-loopback address.")
@click.option(
    "--tls",
    is_flag=True,
    help="Serve HTTPS with a certificate made at start; clouds.yaml names its CA (cacert).",
)
@click.pass_obj
def sandbox(app: AppContext, /, **options: Any) -> None:
    """Serve the sandbox cloud (Keystone, Cinder, Glance) until interrupted."""
    from volimg.demo import serve_sandbox

    serve_sandbox(app, **options)
