"""The application context on ``ctx.obj``: streams, consoles, clocks, the connection.

Tests build their own (``AppContext(poll_interval=0.01, ...)``) and hand it to
click's runner; nothing else in volimg reads sys.stdout, the time or the network
configuration directly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from volimg.waiting import Clock

if TYPE_CHECKING:
    import logging

    from volimg.executor import RunSettings
    from volimg.gateway import Gateway
    from volimg.render import Renderer


def _connect(cloud: str | None, region: str | None, config_file: str | None) -> Gateway:
    from volimg.gateway import connect

    return connect(cloud, region, config_file=config_file)


@dataclass
class AppContext:
    connect: Callable[[str | None, str | None, str | None], Gateway] = _connect
    clock: Clock = field(default_factory=Clock)
    poll_interval: float | None = None  # None: the executor's DEFAULT_POLL_INTERVAL
    stdout: TextIO | None = None  # None: the process's streams at the time of use
    stderr: TextIO | None = None
    force_terminal: bool | None = None  # None: ask the stream
    # Set from the global options.
    cloud: str | None = None
    region: str | None = None
    config_file: str | None = None  # one clouds.yaml instead of openstacksdk's search path
    verbose: int = 0
    debug: bool = False
    output_format: str = "table"
    _gateway: Gateway | None = field(default=None, init=False, repr=False)
    _log_handler: logging.Handler | None = field(default=None, init=False, repr=False)
    _saved_levels: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def gateway(self) -> Gateway:
        """One connection per command, opened on first use."""
        if self._gateway is None:
            self._gateway = self.connect(self.cloud, self.region, self.config_file)
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
        from volimg.executor import RunSettings

        kwargs = {"timeout": timeout} if timeout is not None else {}
        if self.poll_interval is not None:
            kwargs["poll_interval"] = self.poll_interval
        return RunSettings(wait=wait, clock=self.clock, **kwargs)

    def renderer(self) -> Renderer:
        from rich.console import Console

        from volimg.render import Renderer

        def console(stream: TextIO) -> Console:
            return Console(
                file=stream,
                force_terminal=self.force_terminal,
                highlight=False,
                soft_wrap=False,
            )

        return Renderer(
            stdout=console(self.stdout or sys.stdout),
            stderr=console(self.stderr or sys.stderr),
            fmt=self.output_format,
            wall_clock=self.clock.wall,
        )

    def configure_logging(self) -> None:
        """-v: volimg's own steps; -vv: also openstacksdk/keystoneauth requests.

        keystoneauth logs request headers with the token replaced by its SHA-256, and
        volimg logs where a setting came from, never its value.
        """
        if self.verbose <= 0:
            return
        import logging  # here: help text must not pay for it

        handler = logging.StreamHandler(self.stderr or sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        self._log_handler = handler
        levels = {"volimg": logging.DEBUG if self.verbose > 1 else logging.INFO}
        if self.verbose > 1:
            levels.update(openstack=logging.DEBUG, keystoneauth=logging.DEBUG)
        for name, level in levels.items():
            logger = logging.getLogger(name)
            self._saved_levels[name] = logger.level
            logger.addHandler(handler)
            logger.setLevel(level)
