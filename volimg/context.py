"""The application context on ``ctx.obj``: streams, consoles, clocks, the connection.

Tests build their own (``AppContext(poll_interval=0.01, ...)``) and hand it to
click's runner; nothing else in volimg reads sys.stdout, the time or the network
configuration directly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO, TypeVar

from volimg.waiting import Clock

if TYPE_CHECKING:
    import logging

    from volimg.fleet_render import AuditRenderer, BatchRenderer
    from volimg.gateway import Gateway
    from volimg.render import Renderer, Streams
    from volimg.results import RunSettings

S = TypeVar("S", bound="Streams")  # a renderer: Renderer, BatchRenderer, AuditRenderer


def _connect(
    cloud: str | None, region: str | None, config_file: str | None, *, insecure: bool = False
) -> Gateway:
    from volimg.gateway import connect

    return connect(cloud, region, config_file=config_file, insecure=insecure)


@dataclass
class AppContext:
    connect: Callable[..., Gateway] = _connect  # (cloud, region, config_file, *, insecure)
    clock: Clock = field(default_factory=Clock)
    poll_interval: float | None = None  # None: results.DEFAULT_POLL_INTERVAL
    stdout: TextIO | None = None  # None: the process's streams at the time of use
    stderr: TextIO | None = None
    force_terminal: bool | None = None  # None: ask the stream
    no_color: bool = False  # --no-color; rich honours NO_COLOR by itself
    # Set from the global options.
    cloud: str | None = None
    region: str | None = None
    config_file: str | None = None  # one clouds.yaml instead of openstacksdk's search path
    verbose: int = 0
    debug: bool = False
    insecure: bool = False  # --insecure: no TLS verification
    output_format: str = "table"
    _gateway: Gateway | None = field(default=None, init=False, repr=False)
    _log_handler: logging.Handler | None = field(default=None, init=False, repr=False)
    _saved_levels: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def gateway(self) -> Gateway:
        """One connection per command, opened on first use."""
        if self._gateway is None:
            if self._log_handler is None:
                # Before the first request: keystoneauth's warnings go where -v says.
                self.configure_logging()
            self._gateway = self.connect(
                self.cloud, self.region, self.config_file, insecure=self.insecure
            )
            if not self._gateway.verifies_tls:
                self.renderer().notice(
                    "warning: TLS certificates are not verified (--insecure, or verify: false "
                    "in clouds.yaml); anyone on the path can read the credentials"
                )
        return self._gateway

    def close(self) -> None:
        if self._gateway is not None:
            self._gateway.close()
            self._gateway = None
        if self._log_handler is not None:
            import logging

            for name, level in self._saved_levels.items():
                logger = logging.getLogger(name)
                logger.removeHandler(self._log_handler)
                logger.setLevel(level)
            self._log_handler = None
            self._saved_levels.clear()

    def run_settings(self, *, wait: bool = True, timeout: float | None = None) -> RunSettings:
        # Imported here: help and version must not pay for the executor (and tenacity).
        from volimg.results import RunSettings

        kwargs = {"timeout": timeout} if timeout is not None else {}
        if self.poll_interval is not None:
            kwargs["poll_interval"] = self.poll_interval
        return RunSettings(wait=wait, clock=self.clock, **kwargs)

    def renderer(self) -> Renderer:
        from volimg.render import Renderer

        return self._streams(Renderer)

    def batch_renderer(self) -> BatchRenderer:
        from volimg.fleet_render import BatchRenderer

        return self._streams(BatchRenderer)

    def audit_renderer(self) -> AuditRenderer:
        from volimg.fleet_render import AuditRenderer

        return self._streams(AuditRenderer)

    def _streams(self, kind: type[S]) -> S:
        """A renderer of ``kind`` on this run's stdout and stderr, in its output format."""
        from volimg.render import Output, PlainOutput, might_be_terminal

        def console(stream: TextIO) -> Output:
            if not might_be_terminal(stream, self.force_terminal):
                return PlainOutput(stream)  # cron, pipes, CI: rich is not even imported
            from rich.console import Console

            return Console(
                file=stream,
                force_terminal=self.force_terminal,
                no_color=True if self.no_color else None,  # None: rich reads NO_COLOR
                highlight=False,
                soft_wrap=False,
            )

        return kind(
            stdout=console(self.stdout or sys.stdout),
            stderr=console(self.stderr or sys.stderr),
            fmt=self.output_format,
            wall_clock=self.clock.wall,
        )

    def configure_logging(self) -> None:
        """Quiet by default; -v: volimg's own steps and keystoneauth's warnings (a
        connection retried, an endpoint that could not be discovered); -vv: also every
        openstacksdk/keystoneauth request.

        Without -v, keystoneauth's warnings would reach stderr through Python's
        last-resort handler, beside volimg's own one-line error that already says it.
        keystoneauth logs request headers with the token replaced by its SHA-256, and
        volimg logs where a setting came from, never its value.
        """
        import logging  # here: help text must not pay for it

        if self.verbose <= 0:
            handler: logging.Handler = logging.NullHandler()
            levels = {"keystoneauth": logging.NOTSET, "openstack": logging.NOTSET}
        else:
            handler = logging.StreamHandler(self.stderr or sys.stderr)
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
            )
            levels = {
                "volimg": logging.DEBUG if self.verbose > 1 else logging.INFO,
                "keystoneauth": logging.DEBUG if self.verbose > 1 else logging.WARNING,
            }
            if self.verbose > 1:
                levels["openstack"] = logging.DEBUG
        self._log_handler = handler
        for name, level in levels.items():
            logger = logging.getLogger(name)
            self._saved_levels[name] = logger.level
            logger.addHandler(handler)
            if level != logging.NOTSET:
                logger.setLevel(level)
