"""``volimg demo`` and ``volimg sandbox``: the only places the product uses the sandbox.

The demo runs the very code path a real cloud gets (gateway → planner → executor →
renderer) against an in-process sandbox cloud, with human-scale timings.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import replace
from pathlib import Path

from volimg import core
from volimg.context import AppContext
from volimg.errors import ExitCode, InputError
from volimg.planner import UploadOptions

DEMO_VOLUME = "boot-vol"

NEXT_STEPS = """\
What to try next:
  volimg sandbox --clouds-yaml ./sandbox-clouds.yaml &     # a sandbox that stays up
  export OS_CLIENT_CONFIG_FILE=./sandbox-clouds.yaml OS_CLOUD=sandbox
  volimg stores                        # fast (default), cheap, archive
  volimg plan pinned-vol               # the volume type's store wins
  volimg upload boot-vol --prune       # exactly where cirros-base is: cheap, archive
  volimg upload data-vol               # no base image: Glance's default store only
  volimg upload busy-vol               # in-use: refused (exit 2); add --force
  volimg upload twin -f json           # two volumes share the name: exit 2, JSON error
  volimg replicate cirros-base --store fast --dry-run   # plan a copy of an existing image
On your own cloud: export OS_CLOUD=<cloud in clouds.yaml>, then volimg plan <volume>.
"""


def run_demo(app: AppContext) -> ExitCode:
    """Upload boot-vol on a fresh sandbox and show what a user sees on a real cloud."""
    from volimg.sandbox import Sandbox, Timings

    renderer = app.renderer()
    with Sandbox(seed="demo", timings=Timings.human()) as sandbox:
        renderer.notice(
            f"sandbox cloud (Keystone, Cinder, Glance with stores fast, cheap, archive) "
            f"serving at {sandbox.url}"
        )
        demo_app = replace(app, cloud=sandbox.admin_cloud, config_file=str(sandbox.clouds_yaml))
        try:
            with renderer.progress() as sink:
                outcome = core.upload(
                    demo_app.gateway(),
                    DEMO_VOLUME,
                    UploadOptions(),
                    demo_app.run_settings(),
                    emit=sink,
                    on_plan=None if renderer.json else renderer.show_plan,
                )
            renderer.outcome(outcome)
        finally:
            demo_app.close()
    if not renderer.json:
        renderer.err.print(NEXT_STEPS, highlight=False, markup=False, soft_wrap=True)
    return outcome.exit_code


def serve_sandbox(
    app: AppContext,
    *,
    host: str,
    port: int,
    seed: str,
    clouds_yaml: str | None,
    speed: str,
    allow_remote: bool,
    tls: bool = False,
) -> None:
    """Serve a sandbox cloud until interrupted (Ctrl-C or SIGTERM)."""
    from volimg.sandbox import Sandbox, SandboxBindRefused, Timings

    timings = Timings.human() if speed == "human" else Timings.instant()
    if clouds_yaml and not Path(clouds_yaml).parent.is_dir():
        raise InputError(
            f"--clouds-yaml {clouds_yaml}: directory {Path(clouds_yaml).parent} does not exist",
            hint="create it first, or name a file in an existing directory (volimg does not "
            "create directories)",
        )
    try:
        sandbox = Sandbox(
            host=host,
            port=port,
            seed=seed,
            clouds_yaml=Path(clouds_yaml) if clouds_yaml else None,
            timings=timings,
            allow_remote=allow_remote,
            tls=tls,
        )
        sandbox.start()
    except SandboxBindRefused as exc:
        raise InputError(
            f"refusing to serve the sandbox on non-loopback address {host!r}: it is a test "
            "cloud, not meant for the network",
            hint="bind 127.0.0.1 (the default), or pass --allow-remote on purpose",
        ) from exc
    except OSError as exc:
        if exc.filename is not None:  # the file, not the socket
            raise InputError(
                f"cannot write --clouds-yaml {clouds_yaml}: {exc.strerror or exc}",
                hint="name a file in a directory you can write",
            ) from exc
        raise InputError(
            f"cannot serve on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port, or leave it out to get a free one",
        ) from exc
    renderer = app.renderer()
    renderer.err.print(
        f"sandbox cloud serving at {sandbox.url} (seed {seed}, {speed} timings)\n"
        f"clouds.yaml: {sandbox.clouds_yaml}\n"
        f"  export OS_CLIENT_CONFIG_FILE={sandbox.clouds_yaml}\n"
        f"  export OS_CLOUD={sandbox.admin_cloud}   # or {sandbox.member_cloud} (member)\n"
        "Ctrl-C stops it.",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    stop = threading.Event()
    # SIGTERM (e.g. a CI job's cleanup) stops the sandbox as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        renderer.notice("stopping the sandbox")
    finally:
        sandbox.stop()
