#!/usr/bin/env python3
"""Bring a real Keystone 30 + Glance 33 (multi-store) + Cinder 29 up on loopback.

volimg's "real" test tier runs the same scenarios against these services as against
its own emulation (volimg/sandbox). Everything lives in one state directory::

    python tests/realcloud/stack.py up     --state DIR   # idempotent
    python tests/realcloud/stack.py status --state DIR
    python tests/realcloud/stack.py down   --state DIR

``up`` installs the services from PyPI into ``DIR/venv`` (pinned by
``constraints.txt`` next to this file), renders the configs in ``templates/`` into
``DIR``, initialises the SQLite databases, starts Keystone and Glance under uWSGI and
Cinder (api + scheduler + volume) as one process, seeds the cloud (``seed.py``) and
writes ``DIR/clouds.yaml`` and ``DIR/stack.json``. When the stack is already up and
healthy it returns at once, after restarting any service whose rendered configs or
loaded code changed since it started (``DIR/run/started.json``).

Glance runs with volimg's paste filter (``volimg.glance_filter``) in its keystone
pipeline, copied from this checkout into ``DIR/glance/pylib``; ``--glance-filter off``
renders ``enabled = false``. ``--glance-import-methods`` renders glance-api.conf's
``enabled_import_methods`` (e.g. without ``copy-image``, for ``volimg doctor``'s real
test); like any changed config, it restarts Glance, and ``up`` without it restores
the default.

Stdlib only: it runs under any Python >= 3.10 (volimg's venv, or the system's). The
services run in their own venv, never in volimg's.

The cloud (loopback only; fixed ports below the kernel's ephemeral range, so the
sandbox's random ports never collide; ``--port-base`` moves all three):

- Keystone http://127.0.0.1:25000/v3, Glance http://127.0.0.1:25292 (stores ``fast``
  (default), ``cheap``, ``archive``), Cinder http://127.0.0.1:25776/v3 (max 3.71).
- Users: ``admin``/``realstack-admin`` (roles admin+member, project ``admin``; cloud
  ``realstack``), ``demo``/``realstack-demo`` (role member, project ``demo``; cloud
  ``realstack-member``); service users ``glance`` and ``cinder`` in project ``service``.
- Cinder's default volume type is ``standard`` (``__DEFAULT__`` exists too).

Layout of DIR: ``venv/``, ``keystone/ glance/ cinder/`` (config, SQLite DB, data),
``logs/`` (one log per service, plus pip, db init and seed logs), ``run/pids.json``,
``clouds.yaml``, ``stack.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import grp
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
CONSTRAINTS = HERE / "constraints.txt"
SEED = HERE / "seed.py"
CHECKOUT = HERE.parent.parent  # glance-api's volimg.glance_filter comes from here

REQUIREMENTS = (
    "keystone==30.0.0",
    "glance==33.0.0",
    "cinder==29.0.0",
    "uwsgi",
    "python-openstackclient==10.5.0",  # brings openstacksdk, used by seed.py
)

#: Fixed ports, below Linux's ephemeral range (32768-60999) so that they never clash
#: with the sandbox, which binds port 0 and so always gets an ephemeral port.
DEFAULT_PORT_BASE = 25000
PORT_OFFSETS = {"keystone": 0, "glance": 292, "cinder": 776}  # 25000, 25292, 25776

REGION = "RegionOne"
ADMIN_CLOUD = "realstack"
MEMBER_CLOUD = "realstack-member"
ADMIN = {"username": "admin", "password": "realstack-admin", "project": "admin"}
MEMBER = {"username": "demo", "password": "realstack-demo", "project": "demo"}
SERVICE_PASSWORD = "realstack-service"
DEFAULT_VOLUME_TYPE = "standard"

#: Bump when the on-disk layout or the DB bootstrap changes: data is then re-created.
LAYOUT_VERSION = 1
SERVICES = ("keystone", "glance", "cinder")
#: glance-api.conf [DEFAULT] enabled_import_methods of a normal stack.
DEFAULT_IMPORT_METHODS = ("glance-direct", "web-download", "copy-image")

_T0 = time.monotonic()


class StackError(Exception):
    """A step of ``up`` failed; ``log`` names the file whose tail explains why."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


def say(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text[-lines:])


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Stack:
    """Paths, ports and commands of one stack, all derived from its state directory."""

    state: Path
    port_base: int
    python: str
    debug: bool = False
    glance_filter: bool = True  # `enabled` of volimg's paste filter in glance-api
    # glance-api.conf [DEFAULT] enabled_import_methods
    glance_import_methods: tuple[str, ...] = DEFAULT_IMPORT_METHODS

    # -- layout ---------------------------------------------------------------

    @property
    def venv(self) -> Path:
        return self.state / "venv"

    @property
    def vpython(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def pids_file(self) -> Path:
        return self.run / "pids.json"

    @property
    def started_file(self) -> Path:
        return self.run / "started.json"

    @property
    def stack_json(self) -> Path:
        return self.state / "stack.json"

    @property
    def clouds_yaml(self) -> Path:
        return self.state / "clouds.yaml"

    @property
    def seeded_marker(self) -> Path:
        return self.run / "seeded"

    def port(self, service: str) -> int:
        return self.port_base + PORT_OFFSETS[service]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port(service)}"

    @property
    def endpoints(self) -> dict[str, str]:
        """Catalog URLs (public interface), as the install guides register them."""
        return {
            "identity": f"{self.url('keystone')}/v3",
            "image": self.url("glance"),
            "block-storage": f"{self.url('cinder')}/v3/%(project_id)s",
            "volumev3": f"{self.url('cinder')}/v3/%(project_id)s",
        }

    @property
    def seed_state(self) -> str:
        return digest(SEED.read_bytes(), str(LAYOUT_VERSION), str(self.port_base))

    def tool(self, name: str, *args: str) -> list[str]:
        # Run console scripts through the venv's python, not their shebang: a shebang
        # holds the venv's absolute path and breaks when the state dir moves.
        return [str(self.vpython), str(self.venv / "bin" / name), *args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        env["PYTHONPATH"] = str(HERE)
        env.pop("PYTHONHOME", None)
        env.pop("OS_CLOUD", None)
        env.pop("OS_CLIENT_CONFIG_FILE", None)
        return env

    def service_command(self, service: str) -> list[str]:
        if service == "cinder":
            conf = self.state / "cinder" / "cinder.conf"
            return [str(self.vpython), "-m", "realstack.cinder_all", "--config-file", str(conf)]
        return [str(self.venv / "bin" / "uwsgi"), "--ini", str(self.state / service / "uwsgi.ini")]

    # -- health ---------------------------------------------------------------

    def read_pids(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self.pids_file.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def is_ours(self, service: str, pid: int) -> bool:
        """Alive and running this stack's service (guards against PID reuse).

        Normally the command line names the service's config file. uWSGI blanks its
        own command line while it starts (it moves argv to make room for process
        names), so an empty one counts when the working directory is the service's
        folder, where ``start_service`` starts it.
        """
        proc = Path(f"/proc/{pid}")
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if self.service_command(service)[-1].encode() in argv:
                return True
            return argv == [b""] and os.readlink(proc / "cwd") == str(self.state / service)
        except (OSError, IndexError):
            return False

    def answers(self, service: str, timeout: float = 2.0) -> bool:
        path = {"keystone": "/v3", "glance": "/versions", "cinder": "/"}[service]
        try:
            with urllib.request.urlopen(self.url(service) + path, timeout=timeout) as resp:
                return resp.status < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500  # Cinder's version document is a 300
        except (OSError, ValueError):
            return False

    def services_problem(self) -> str | None:
        """None when all three services run and answer; else what is wrong."""
        pids = self.read_pids()
        if set(pids) != set(SERVICES):
            return "not running"
        for service in SERVICES:
            if not self.is_ours(service, pids[service]):
                return f"{service} (pid {pids[service]}) is gone"
            if not self.answers(service):
                return f"{service} does not answer on {self.url(service)}"
        return None

    def is_seeded(self) -> bool:
        """The running services were seeded by this seed.py for these ports."""
        try:
            return self.stack_json.exists() and self.seeded_marker.read_text() == self.seed_state
        except OSError:
            return False


# -- steps of `up` ------------------------------------------------------------------


def ensure_qemu_utils() -> None:
    """Cinder converts images with qemu-img (Debian package qemu-utils)."""
    if shutil.which("qemu-img"):
        return
    if os.geteuid() != 0:
        raise StackError("qemu-img is missing: install the Debian package qemu-utils (as root)")
    say("installing qemu-utils (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "qemu-utils"]
    if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise StackError(f"apt-get install qemu-utils failed:\n{proc.stdout}\n{proc.stderr}")


def ensure_venv(stack: Stack) -> None:
    """Create DIR/venv and pip install the pinned services, unless already done."""
    wanted = digest(CONSTRAINTS.read_bytes(), *REQUIREMENTS, stack.python)
    marker = stack.venv / ".realstack-installed"
    if marker.exists():
        if stack.vpython.exists() and marker.read_text() == wanted:
            return
        # Other pins or another interpreter: start from an empty venv, no leftovers.
        say("constraints, requirements or interpreter changed: re-creating the venv")
        shutil.rmtree(stack.venv)
    pip_log = stack.logs / "pip.log"
    if not stack.vpython.exists():
        say(f"creating venv {stack.venv} ({stack.python})")
        proc = subprocess.run(
            [stack.python, "-m", "venv", str(stack.venv)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise StackError(
                f"{stack.python} -m venv failed (Debian's python needs python3-venv; or pass"
                f" --python):\n{proc.stdout}\n{proc.stderr}"
            )
    say("pip install " + " ".join(REQUIREMENTS) + f" -c {CONSTRAINTS.name} (log: {pip_log})")
    started = time.monotonic()
    cmd = [
        str(stack.vpython),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        # pip would byte-compile all ~150 packages, test suites included (cinder alone
        # ships thousands of test modules): ~80 of ~140 s here. See compileall below.
        "--no-compile",
        "-c",
        str(CONSTRAINTS),
        *REQUIREMENTS,
    ]
    with pip_log.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=stack.env())
    if proc.returncode != 0:
        raise StackError(
            "pip install failed (is PyPI reachable? uWSGI builds from source: it needs gcc"
            f" and the Python headers of {stack.python})",
            pip_log,
        )
    # Compile what the services run, not the packages' own test suites, on all cores:
    # ~19 s instead of pip's ~80 s; without it each first import compiles on the fly,
    # several times over when the db-init commands run in parallel.
    site = next((stack.venv / "lib").glob("python3*/site-packages"))
    cmd = [str(stack.vpython), "-m", "compileall", "-q", "-j", "0", "-x", "/tests?/", str(site)]
    with pip_log.open("a") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    marker.write_text(wanted)
    say(f"installed in {time.monotonic() - started:.0f}s")


#: Per service: the templates rendered for it and the code it loads. When any of them
#: differs from what the running service was started with, `up` restarts it.
SERVICE_TEMPLATES = {
    "keystone": ("keystone.conf", "keystone-uwsgi.ini"),
    "glance": ("glance-api.conf", "glance-uwsgi.ini", "glance-api-paste.ini"),
    "cinder": ("cinder.conf",),
}
#: What glance-api needs of volimg (stdlib + volimg.provenance): copied into the state
#: dir, so that the running Glance never depends on the checkout that started it.
FILTER_FILES = ("__init__.py", "provenance.py", "glance_filter.py")
SERVICE_CODE = {
    "keystone": ("realstack/keystone_app.py", "realstack/sqlite_txn.py"),
    "glance": (
        "realstack/glance_app.py",
        "realstack/sqlite_txn.py",
        # The paste filter under test, copied from this checkout (see render).
        *(f"../../volimg/{name}" for name in FILTER_FILES),
    ),
    "cinder": ("realstack/cinder_all.py", "realstack/file_driver.py"),
}


def rendered(stack: Stack, pkgdir: str | None = None) -> dict[str, tuple[Path, str]]:
    """Every config from templates/ (string.Template, ${name} placeholders): target, text."""
    values = {
        "state": str(stack.state),
        "venv": str(stack.venv),
        "logs": str(stack.logs),
        "pkgdir": pkgdir or str(HERE),
        "keystone_port": str(stack.port("keystone")),
        "glance_port": str(stack.port("glance")),
        "cinder_port": str(stack.port("cinder")),
        "service_password": SERVICE_PASSWORD,
        "default_volume_type": DEFAULT_VOLUME_TYPE,
        "debug": "true" if stack.debug else "false",
        "glance_filter_enabled": "true" if stack.glance_filter else "false",
        "glance_import_methods": ",".join(stack.glance_import_methods),
    }
    targets = {
        "keystone.conf": stack.state / "keystone" / "keystone.conf",
        "keystone-uwsgi.ini": stack.state / "keystone" / "uwsgi.ini",
        "glance-api.conf": stack.state / "glance" / "glance-api.conf",
        "glance-uwsgi.ini": stack.state / "glance" / "uwsgi.ini",
        "glance-api-paste.ini": stack.state / "glance" / "glance-api-paste.ini",
        "cinder.conf": stack.state / "cinder" / "cinder.conf",
    }
    return {
        template: (target, string.Template((TEMPLATES / template).read_text()).substitute(values))
        for template, target in targets.items()
    }


def render(stack: Stack) -> None:
    """Write every config from templates/, and copy the filter's code for glance-api."""
    for target, text in rendered(stack).values():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    pylib = stack.state / "glance" / "pylib" / "volimg"
    pylib.mkdir(parents=True, exist_ok=True)
    for name in FILTER_FILES:
        shutil.copyfile(CHECKOUT / "volimg" / name, pylib / name)


def service_digests(stack: Stack) -> dict[str, str]:
    """Per service, a digest of its rendered configs and of the code it loads.

    The checkout's path is left out: several checkouts (git worktrees) may share one
    stack, and only a change of what runs should restart it.
    """
    configs = rendered(stack, pkgdir="<checkout>/tests/realcloud")
    return {
        service: digest(
            *(configs[t][1] for t in SERVICE_TEMPLATES[service]),
            *((HERE / path).read_bytes() for path in SERVICE_CODE[service]),
        )
        for service in SERVICES
    }


def stale_services(stack: Stack) -> list[str]:
    """Running services started with other configs or code (or before this was recorded)."""
    try:
        started = json.loads(stack.started_file.read_text())
    except (OSError, ValueError):
        started = {}
    wanted = service_digests(stack)
    return [s for s in SERVICES if started.get(s) != wanted[s]]


def record_started(stack: Stack, services: list[str] | tuple[str, ...]) -> None:
    try:
        started = json.loads(stack.started_file.read_text())
    except (OSError, ValueError):
        started = {}
    wanted = service_digests(stack)
    started.update({s: wanted[s] for s in services})
    stack.started_file.write_text(json.dumps(started, indent=2))


def reset_data_if_moved(stack: Stack) -> None:
    """Data made for another path or layout is dropped (Glance stores file:// paths)."""
    layout_file = stack.state / "layout.json"
    wanted = {"layout": LAYOUT_VERSION, "state": str(stack.state)}
    try:
        current = json.loads(layout_file.read_text())
    except (OSError, ValueError):
        current = None
    if current != wanted:
        if current is not None:
            say(f"state layout changed ({current} -> {wanted}): re-creating service data")
        for service in SERVICES:
            shutil.rmtree(stack.state / service, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            stack.seeded_marker.unlink()
        layout_file.write_text(json.dumps(wanted))


def make_dirs(stack: Stack) -> None:
    for sub in (
        "logs",
        "run",
        "seed",
        "keystone",
        "glance/stores/fast",
        "glance/stores/cheap",
        "glance/stores/archive",
        "glance/staging",
        "glance/tasks",
        "cinder/volumes",
        "cinder/conversion",
        "cinder/locks",
        "cinder/coordination",
    ):
        (stack.state / sub).mkdir(parents=True, exist_ok=True)


def init_steps(stack: Stack) -> dict[str, list[list[list[str]]]]:
    """Per service, steps of commands; the commands of one step run in parallel."""
    kconf = ["--config-file", str(stack.state / "keystone" / "keystone.conf")]
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    owner = ["--keystone-user", user, "--keystone-group", group]
    bootstrap = stack.tool(
        "keystone-manage",
        *kconf,
        "bootstrap",
        "--bootstrap-username",
        ADMIN["username"],
        "--bootstrap-password",
        ADMIN["password"],
        "--bootstrap-project-name",
        ADMIN["project"],
        "--bootstrap-role-name",
        "admin",
        "--bootstrap-service-name",
        "keystone",
        "--bootstrap-region-id",
        REGION,
        "--bootstrap-public-url",
        stack.endpoints["identity"],
    )
    glance_conf = str(stack.state / "glance" / "glance-api.conf")
    cinder_conf = str(stack.state / "cinder" / "cinder.conf")
    return {
        "keystone": [
            [
                stack.tool("keystone-manage", *kconf, "db_sync"),
                # The key repositories do not need the database.
                stack.tool("keystone-manage", *kconf, "fernet_setup", *owner),
                stack.tool("keystone-manage", *kconf, "credential_setup", *owner),
            ],
            [bootstrap],
        ],
        "glance": [[stack.tool("glance-manage", "--config-file", glance_conf, "db_sync")]],
        "cinder": [[stack.tool("cinder-manage", "--config-file", cinder_conf, "db", "sync")]],
    }


def init_database(stack: Stack, service: str, steps: list[list[list[str]]]) -> None:
    """Run one service's DB/key setup once (marker file); StackError on failure."""
    marker = stack.state / service / ".db-initialised"
    if marker.exists():
        return
    for leftover in (stack.state / service).glob("*.sqlite"):
        leftover.unlink()  # from an interrupted earlier attempt
    log = stack.logs / f"init-{service}.log"
    with log.open("w") as out:
        for step in steps:
            for cmd in step:
                out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            procs = [
                subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=stack.env())
                for cmd in step
            ]
            if any([proc.wait() != 0 for proc in procs]):  # wait for all of them
                raise StackError(f"database initialisation of {service} failed", log)
    marker.write_text("ok\n")


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stray_processes(stack: Stack) -> dict[int, str]:
    """Processes running one of this state dir's services (PID -> command line).

    They exist when the pids file was lost (e.g. the state dir was wiped while the
    stack ran); without this their ports would stay taken. Matched by command line,
    or, for uWSGI processes that blanked theirs, by binary and working directory.
    """
    uwsgi = str(stack.venv / "bin" / "uwsgi")
    strays = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        for service in SERVICES:
            if stack.is_ours(service, pid) and (argv != [b""] or exe == uwsgi):
                strays[pid] = b" ".join(argv).decode(errors="replace") or exe
    return strays


def stop_strays(stack: Stack) -> None:
    strays = stray_processes(stack)
    for pid, cmdline in strays.items():
        say(f"stopping a leftover process of this state dir: {pid} {cmdline[:100]}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while strays and time.monotonic() < deadline:
        strays = {p: c for p, c in strays.items() if not _reaped(p)}
        time.sleep(0.2)
    for pid in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_service(stack: Stack, service: str) -> int:
    log = stack.logs / f"{service}.log"
    with log.open("a") as out:
        out.write(f"\n===== realstack: starting {service} at {time.ctime()} =====\n")
        out.flush()
        proc = subprocess.Popen(
            stack.service_command(service),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=stack.env(),
            cwd=stack.state / service,
            start_new_session=True,  # own process group: `down` stops its children too
        )
    return proc.pid


def init_and_start(stack: Stack) -> None:
    """Per service: initialise its database if needed, then start it.

    The three go in parallel and each starts as soon as its own database is ready
    (Glance and Cinder need Keystone only when the first request comes in), so
    Glance's ~10 s app load overlaps Keystone's longer bootstrap.
    """
    stop_strays(stack)
    busy = [s for s in SERVICES if port_in_use(stack.port(s))]
    if busy:
        ports = ", ".join(f"{s}={stack.port(s)}" for s in busy)
        raise StackError(
            f"ports already in use by something else: {ports}; stop it or pass --port-base"
        )
    todo = [s for s in SERVICES if not (stack.state / s / ".db-initialised").exists()]
    if todo:
        say(f"initialising databases: {', '.join(todo)}")
    steps = init_steps(stack)
    pids: dict[str, int] = {}
    errors: list[StackError] = []
    started = time.monotonic()

    def bring_up(service: str) -> None:
        try:
            init_database(stack, service, steps[service])
        except StackError as exc:
            errors.append(exc)
            return
        if service in todo:
            say(f"{service} database ready in {time.monotonic() - started:.1f}s")
        pids[service] = start_service(stack, service)

    threads = [threading.Thread(target=bring_up, args=(s,)) for s in SERVICES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stack.pids_file.write_text(json.dumps(pids, indent=2))
    record_started(stack, tuple(pids))
    if errors:
        for line in stop(stack):
            say(f"stopping after failure: {line}")
        raise errors[0]
    say("started " + ", ".join(f"{s} (pid {p}, port {stack.port(s)})" for s, p in pids.items()))


def wait_answering(stack: Stack, services: tuple[str, ...], timeout: float = 90.0) -> None:
    pids = stack.read_pids()
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending:
        for service in list(pending):
            if not stack.is_ours(service, pids[service]):
                raise StackError(f"{service} exited during start-up", stack.logs / f"{service}.log")
            if stack.answers(service, timeout=1.0):
                pending.remove(service)
        if pending and time.monotonic() > deadline:
            name = pending[0]
            raise StackError(
                f"{name} does not answer on {stack.url(name)} after {timeout:.0f}s",
                stack.logs / f"{name}.log",
            )
        if pending:
            time.sleep(0.2)
    say(f"answering: {', '.join(services)}")


def write_clouds_yaml(stack: Stack) -> None:
    def cloud(name: str, user: dict[str, str]) -> str:
        return (
            f"  {name}:\n"
            f"    auth:\n"
            f"      auth_url: {stack.endpoints['identity']}\n"
            f"      username: {user['username']}\n"
            f"      password: {user['password']}\n"
            f"      project_name: {user['project']}\n"
            f"      user_domain_name: Default\n"
            f"      project_domain_name: Default\n"
            f"    region_name: {REGION}\n"
            f"    interface: public\n"
            f"    identity_api_version: 3\n"
        )

    stack.clouds_yaml.write_text(
        "# Real Keystone/Glance/Cinder test stack (tests/realcloud/stack.py). Loopback only.\n"
        "clouds:\n" + cloud(ADMIN_CLOUD, ADMIN) + cloud(MEMBER_CLOUD, MEMBER)
    )


def run_seed(stack: Stack, phase: str) -> None:
    config = stack.state / "seed-config.json"
    config.write_text(
        json.dumps(
            {
                "auth_url": stack.endpoints["identity"],
                "region": REGION,
                "admin": ADMIN,
                "member": MEMBER,
                "service_password": SERVICE_PASSWORD,
                "work": str(stack.state / "seed"),
                "catalog": [
                    {"name": "keystone", "type": "identity", "url": stack.endpoints["identity"]},
                    {"name": "glance", "type": "image", "url": stack.endpoints["image"]},
                    {
                        "name": "cinder",
                        "type": "block-storage",
                        "url": stack.endpoints["block-storage"],
                    },
                    {"name": "cinderv3", "type": "volumev3", "url": stack.endpoints["volumev3"]},
                ],
            },
            indent=2,
        )
    )
    log = stack.logs / f"seed-{phase}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(stack.vpython), str(SEED), phase, "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=stack.env(),
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if line.startswith("  seed"):
                print(line, end="", flush=True)
        proc.wait()
    if proc.returncode != 0:
        raise StackError(f"seed {phase} failed", log)


def write_stack_json(stack: Stack) -> None:
    info = {
        "clouds_yaml": str(stack.clouds_yaml),
        "admin_cloud": ADMIN_CLOUD,
        "member_cloud": MEMBER_CLOUD,
        "endpoints": {
            "keystone": stack.url("keystone"),
            "glance": stack.url("glance"),
            "cinder": stack.url("cinder"),
            "catalog": stack.endpoints,
        },
        "pids": stack.read_pids(),
        "logs": str(stack.logs),
        "venv": str(stack.venv),
        "users": {
            "admin": {**ADMIN, "roles": ["admin", "member"]},
            "member": {**MEMBER, "roles": ["member"]},
        },
        "stores": {"default": "fast", "all": ["fast", "cheap", "archive"]},
        "default_volume_type": DEFAULT_VOLUME_TYPE,
    }
    stack.stack_json.write_text(json.dumps(info, indent=2) + "\n")


# -- commands ------------------------------------------------------------------------


@contextlib.contextmanager
def exclusive(stack: Stack) -> Iterator[None]:
    """One `up`/`down` at a time per state dir (e.g. parallel pytest sessions)."""
    stack.state.mkdir(parents=True, exist_ok=True)
    with (stack.state / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another stack.py holds the lock on this state dir; waiting")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def stop(stack: Stack, timeout: float = 20.0, services: tuple[str, ...] = SERVICES) -> list[str]:
    """SIGTERM each recorded process group, wait, then SIGKILL what is left."""
    recorded = stack.read_pids()
    pids = {s: p for s, p in recorded.items() if s in services}
    report = []
    alive = {s: p for s, p in pids.items() if stack.is_ours(s, p)}
    for pid in alive.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        alive = {s: p for s, p in alive.items() if stack.is_ours(s, p) and not _reaped(p)}
        time.sleep(0.2)
    for service, pid in alive.items():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        report.append(f"{service} (pid {pid}) killed after {timeout:.0f}s")
    for service, pid in pids.items():
        if service not in alive:
            report.append(f"{service} (pid {pid}) stopped")
    left = {s: p for s, p in recorded.items() if s not in services}
    if left:
        stack.pids_file.write_text(json.dumps(left, indent=2))
    else:
        with contextlib.suppress(FileNotFoundError):
            stack.pids_file.unlink()
    return report


def restart_stale(stack: Stack) -> None:
    """Restart the services whose configs or code changed since they started.

    A stack started before this was recorded restarts all three once, so that an old
    stack picks up new templates (e.g. volimg's paste filter in glance-api).
    """
    stale = tuple(stale_services(stack))
    if not stale:
        return
    say(f"restarting {', '.join(stale)}: configs or code changed since they started")
    render(stack)
    for line in stop(stack, services=stale):
        say(f"restarting: {line}")
    pids = stack.read_pids()
    for service in stale:
        pids[service] = start_service(stack, service)
    stack.pids_file.write_text(json.dumps(pids, indent=2))
    record_started(stack, stale)
    wait_answering(stack, stale)


def _reaped(pid: int) -> bool:
    """True once a process is a zombie or gone (it is not our child, so no waitpid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def cmd_up(stack: Stack) -> int:
    problem = stack.services_problem()
    if problem is None:
        restart_stale(stack)
        if stack.is_seeded():
            say(f"already up: {stack.stack_json}")
            return 0
        say("services up but not seeded by this seed.py: seeding")
        seed_and_finish(stack)
        return 0
    say(f"bringing the stack up in {stack.state} ({problem})")
    if stack.read_pids():
        for line in stop(stack):
            say(f"restarting: {line}")
    (stack.state / "logs").mkdir(exist_ok=True)
    reset_data_if_moved(stack)
    make_dirs(stack)
    ensure_qemu_utils()
    ensure_venv(stack)
    render(stack)
    write_clouds_yaml(stack)
    init_and_start(stack)
    try:
        wait_answering(stack, ("keystone",))
        run_seed(stack, "identity")
        wait_answering(stack, ("glance", "cinder"))
        seed_and_finish(stack, identity=False)
    except StackError:
        for line in stop(stack):
            say(f"stopping after failure: {line}")
        raise
    return 0


def seed_and_finish(stack: Stack, identity: bool = True) -> None:
    """Seed (both steps are idempotent), then publish clouds.yaml and stack.json."""
    with contextlib.suppress(FileNotFoundError):
        stack.seeded_marker.unlink()
    write_clouds_yaml(stack)
    if identity:
        run_seed(stack, "identity")
    run_seed(stack, "scenario")
    stack.seeded_marker.write_text(stack.seed_state)
    write_stack_json(stack)
    say(f"up: clouds.yaml {stack.clouds_yaml} (clouds {ADMIN_CLOUD}, {MEMBER_CLOUD})")


def cmd_restart(stack: Stack, services: tuple[str, ...]) -> int:
    """Stop and start the named services (SIGTERM, as systemd would), keep the data.

    For tests of what volimg does when a service goes away under it (e.g. glance-api
    restarted while copies run): whatever the service was doing in that moment is lost,
    as on a real cloud.
    """
    unknown = [s for s in services if s not in SERVICES]
    if unknown or not services:
        raise StackError(f"restart takes services among {', '.join(SERVICES)}, not {unknown}")
    for line in stop(stack, services=services):
        say(f"restarting: {line}")
    pids = stack.read_pids()
    for service in services:
        pids[service] = start_service(stack, service)
    stack.pids_file.write_text(json.dumps(pids, indent=2))
    record_started(stack, services)
    wait_answering(stack, services)
    say(f"restarted {', '.join(services)}")
    return 0


def cmd_down(stack: Stack) -> int:
    if not stack.read_pids():
        say("nothing recorded as running")
        return 0
    for line in stop(stack):
        say(line)
    return 0


def cmd_status(stack: Stack) -> int:
    pids = stack.read_pids()
    if not pids:
        print(f"not running (no {stack.pids_file})")
        return 3
    ok = True
    for service in SERVICES:
        pid = pids.get(service)
        alive = pid is not None and stack.is_ours(service, pid)
        answering = alive and stack.answers(service)
        ok = ok and answering
        state = "answering" if answering else ("running, not answering" if alive else "DEAD")
        print(f"{service:9} pid {pid}  {stack.url(service)}  {state}")
    print(f"clouds.yaml: {stack.clouds_yaml}\nlogs: {stack.logs}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "restart"))
    parser.add_argument(
        "services", nargs="*", help="with restart: the services to restart (default: all three)"
    )
    parser.add_argument("--state", required=True, type=Path, help="state directory")
    parser.add_argument(
        "--port-base",
        type=int,
        default=int(os.environ.get("VOLIMG_REALCLOUD_PORT_BASE", DEFAULT_PORT_BASE)),
        help=f"Keystone's port; Glance +292, Cinder +776 (default {DEFAULT_PORT_BASE})",
    )
    parser.add_argument(
        "--python",
        default=os.environ.get("VOLIMG_REALCLOUD_PYTHON")
        or getattr(sys, "_base_executable", None)
        or sys.executable,
        help="interpreter for the stack's venv (default: this Python's base interpreter)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=bool(os.environ.get("VOLIMG_REALCLOUD_DEBUG")),
        help="debug logging in the services",
    )
    parser.add_argument(
        "--glance-filter",
        choices=("on", "off"),
        default=os.environ.get("VOLIMG_REALCLOUD_GLANCE_FILTER", "on"),
        help="volimg's paste filter in glance-api: on (default) or off (enabled = false);"
        " changing it restarts Glance",
    )
    parser.add_argument(
        "--glance-import-methods",
        default=os.environ.get(
            "VOLIMG_REALCLOUD_GLANCE_IMPORT_METHODS", ",".join(DEFAULT_IMPORT_METHODS)
        ),
        metavar="M1,M2",
        help="glance-api.conf enabled_import_methods (default "
        f"{','.join(DEFAULT_IMPORT_METHODS)}); changing it restarts Glance",
    )
    args = parser.parse_args(argv)
    stack = Stack(
        state=args.state.resolve(),
        port_base=args.port_base,
        # Resolved, so that python3 / python3.11 / a venv's base name the same
        # interpreter (the venv marker hashes this path).
        python=os.path.realpath(args.python),
        debug=args.debug,
        glance_filter=args.glance_filter == "on",
        glance_import_methods=tuple(
            m.strip() for m in args.glance_import_methods.split(",") if m.strip()
        ),
    )
    if args.command == "restart":
        with exclusive(stack):
            try:
                return cmd_restart(stack, tuple(args.services) or SERVICES)
            except StackError as exc:
                print(f"\nrealstack restart FAILED: {exc}", file=sys.stderr)
                return 1
    command = {"up": cmd_up, "down": cmd_down, "status": cmd_status}[args.command]
    try:
        if args.command == "status":
            return command(stack)
        with exclusive(stack):
            return command(stack)
    except StackError as exc:
        print(f"\nrealstack {args.command} FAILED: {exc}", file=sys.stderr)
        if exc.log is not None:
            print(f"--- last lines of {exc.log} ---\n{tail(exc.log)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
