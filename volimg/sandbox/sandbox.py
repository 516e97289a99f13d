"""`Sandbox`: start, inspect and stop one sandbox cloud.

Binding happens in `start()`, never at import or construction; a non-loopback host is
refused before any socket is opened unless the caller explicitly allows it.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import tempfile
import threading
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from volimg.files import write_private_file
from volimg.sandbox.cinder import Cinder
from volimg.sandbox.cinder_manager import BLANK_VOLUME, VolumeManager, volume_image_metadata
from volimg.sandbox.diskformat import to_raw
from volimg.sandbox.faults import Faults
from volimg.sandbox.glance import Glance
from volimg.sandbox.glance_client import InternalGlanceClient
from volimg.sandbox.glance_import import ImportRunner
from volimg.sandbox.glance_views import image_view
from volimg.sandbox.jobs import Jobs
from volimg.sandbox.keystone import REGION, Keystone
from volimg.sandbox.reqlog import RequestLog
from volimg.sandbox.seed import (
    SEEDS,
    Credentials,
    Identities,
    seed_base,
    seed_demo,
    seed_identities,
)
from volimg.sandbox.server import Dispatcher, SandboxHTTPServer
from volimg.sandbox.service import Service
from volimg.sandbox.state import CLOCK, Cloud, CloudConfig, Volume, new_id, now
from volimg.sandbox.timings import Timings
from volimg.sandbox.tls import TlsFiles, make_certificates

DEFAULT_IMPORT_METHODS = ("glance-direct", "web-download", "copy-image")
_WILDCARDS = ("0.0.0.0", "::", "")


class SandboxBindRefused(ValueError):
    """The sandbox was asked to listen on a non-loopback address without `allow_remote`."""

    @classmethod
    def for_host(cls, host: str) -> SandboxBindRefused:
        return cls(
            f"refusing to bind the sandbox to non-loopback address {host!r}; pass allow_remote=True to expose it"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Sandbox:
    """A Keystone + Cinder + Glance emulation on one port (devstack path layout).

    Use as a context manager, or `start()`/`stop()`; `serve_forever()` blocks until
    interrupted (the `volimg sandbox` command).
    """

    admin_cloud = "sandbox"
    member_cloud = "sandbox-member"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: str = "demo",
        clouds_yaml: Path | str | None = None,
        timings: Timings | None = None,
        allow_remote: bool = False,
        enable_force_upload: bool = True,
        import_methods: tuple[str, ...] = DEFAULT_IMPORT_METHODS,
        read_only_stores: tuple[str, ...] = (),
        token_ttl: float = 3600,
        tls: bool = False,
        multi_store: bool = True,
        copy_image_roles: tuple[str, ...] = ("admin",),
        glance_limits: Mapping[str, int] | None = None,
        image_regions: Mapping[str, tuple[str, ...]] | None = None,
        cinder_max_microversion: str = "3.71",
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise SandboxBindRefused.for_host(host)
        if seed not in SEEDS:
            raise ValueError(f"unknown seed {seed!r}; choose one of {', '.join(SEEDS)}")
        self.host = host
        self.port = port
        self.seed = seed
        self.timings = timings or Timings()
        self.requests = RequestLog()
        self.cloud = Cloud(
            CloudConfig(
                import_methods=tuple(import_methods),
                enable_force_upload=enable_force_upload,
                token_ttl=float(token_ttl),
                max_microversion=cinder_max_microversion,
                multi_store=multi_store,
                copy_image_roles=tuple(copy_image_roles),
                glance_limits=dict(glance_limits) if glance_limits is not None else None,
            )
        )
        # Other regions' image endpoints (edge sites): region -> the stores its
        # glance-api knows. They share this Glance's images and tasks, as glance-api
        # nodes share one database; only what each node has configured differs.
        self.image_regions = {r: tuple(s) for r, s in (image_regions or {}).items()}
        if REGION in self.image_regions:
            raise ValueError(f"{REGION} is the sandbox's own region; name the others")
        self.faults = Faults(expire_tokens=self.cloud.expire_tokens)
        self._read_only_stores = tuple(read_only_stores)
        self._clouds_yaml_wanted = Path(clouds_yaml) if clouds_yaml is not None else None
        self._clouds_yaml: Path | None = None
        self._temp_dir: Path | None = None
        self._jobs = Jobs()
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._identities: Identities | None = None
        self._stopped = False
        self._runner: ImportRunner | None = None
        self._clock_advanced = 0.0
        self.tls = tls
        self.tls_files: TlsFiles | None = None
        """With `tls`: the CA (also named as `cacert` in clouds.yaml), certificate and key."""

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Sandbox:
        """Bind, seed, write clouds.yaml and serve in a background thread."""
        if self._server is not None:
            return self
        if self._stopped:
            raise RuntimeError("a stopped sandbox cannot start again; make a new one")
        secret = secrets.token_hex(16)
        dispatcher = Dispatcher([], self.faults, self.requests, secret)
        if self.tls:
            self._temp_dir = self._temp_dir or Path(tempfile.mkdtemp(prefix="volimg-sandbox-"))
            self.tls_files = make_certificates(self._temp_dir, self.host)
        server = SandboxHTTPServer(
            (self.host, self.port),
            dispatcher,
            tls=self.tls_files.server_context() if self.tls_files else None,
        )
        ready = False
        try:
            self.port = int(server.server_address[1])
            dispatcher.services.extend(self._services(secret))
            with self.cloud.lock:
                self._identities = seed_identities(self.cloud)
                seed_base(self.cloud, self._read_only_stores)
                if self.seed == "demo":
                    seed_demo(self.cloud)
            self._write_clouds_yaml()
            ready = True
        finally:
            if not ready:  # e.g. clouds.yaml not writable: release the port
                server.server_close()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sandbox-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def _services(self, secret: str) -> list[Service]:
        internal_host = "127.0.0.1" if self.host in _WILDCARDS else self.host
        glance_client = InternalGlanceClient(
            internal_host,
            self.port,
            Glance.prefix,
            secret,
            tls=self.tls_files.client_context() if self.tls_files else None,
        )
        timings = lambda: self.timings  # noqa: E731 - the live Timings, tests may swap it
        runner = ImportRunner(self.cloud, self._jobs, self.faults, timings)
        self._runner = runner
        manager = VolumeManager(self.cloud, self._jobs, self.faults, glance_client, timings)
        regional: dict[str, Glance] = {}
        for region, stores in self.image_regions.items():
            edge = Glance(self.cloud, self._jobs, runner)
            edge.prefix = region_image_prefix(region)
            edge.known_stores = stores
            regional[region] = edge
        return [
            Keystone(
                self.cloud,
                Cinder.prefix,
                Glance.prefix,
                {region: glance.prefix for region, glance in regional.items()},
            ),
            Cinder(self.cloud, manager, glance_client),
            Glance(self.cloud, self._jobs, runner),
            *regional.values(),
        ]

    def stop(self) -> None:
        """Stop serving, wake background jobs, remove a temporary clouds.yaml."""
        CLOCK.rewind(self._clock_advanced)
        self._clock_advanced = 0.0
        if self._server is None:
            return
        self._stopped = True
        self._jobs.stop()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
        self._thread = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def serve_forever(self) -> None:
        """Serve until KeyboardInterrupt, then stop cleanly."""
        self.start()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no asynchronous job (volume, upload, copy) is running."""
        return self._jobs.wait_idle(timeout)

    # -- test conveniences ----------------------------------------------------------------
    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox's clock forward: everything that reads the time sees it.

        Task ages (Glance's stale import lock: 60 minutes, 120 for a pending task),
        token expiry, `created_at`/`updated_at` of new resources. Clients keep their
        own clock; a token that expires this way is refused with 401 and keystoneauth
        fetches a new one. The offset is process-wide (see `state.CLOCK`) and is taken
        back when this sandbox stops.
        """
        with self.cloud.lock:  # no request sees the new time before live tasks do
            CLOCK.advance(seconds)
            self._clock_advanced += seconds
            if self._runner is not None:
                self._runner.refresh_live()  # a live task has touched updated_at meanwhile

    @property
    def clock_offset(self) -> float:
        """Seconds the sandbox's clock runs ahead of the real one."""
        return CLOCK.offset.total_seconds()

    def add_volumes(
        self,
        count: int,
        *,
        name_prefix: str = "bulk",
        base_image: str | None = None,
        volume_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        project: str | None = None,
        size: int = 1,
    ) -> list[str]:
        """Create `count` available volumes directly in the sandbox's state; their IDs.

        A test and benchmark convenience: no API calls and no `creating` phase, so a
        fleet of hundreds exists at once. Each volume looks as if Cinder had made it:
        named `<name_prefix>-0001`..., of `volume_type` (name or ID; Cinder's default
        type when None), owned by `project` (name or ID; the admin's project when
        None), with a copy of `metadata`, and - from `base_image` (name or ID, must be
        active) - the image's data, `bootable` and `volume_image_metadata`.
        """
        if count < 0 or size < 1:
            raise ValueError("count must be >= 0 and size >= 1")
        identities = self._require_identities()
        with self.cloud.lock:
            owner_project = self.cloud.find_project(project or identities.admin.project_name)
            owner = next(
                (u for u in self.cloud.users.values() if u.default_project_id == owner_project.id),
                self.cloud.find_user(identities.admin.username),
            )
            vtype = self.cloud.find_volume_type(volume_type or self.cloud.default_volume_type or "")
            image_meta: dict[str, str] = {}
            data = BLANK_VOLUME
            if base_image is not None:
                image = self.cloud.find_image(base_image)
                if image.status != "active" or not image.locations:
                    raise ValueError(f"base image {base_image!r} is not active")
                image_meta = volume_image_metadata(image_view(image))
                data = to_raw(self.cloud.stores[image.locations[0]].blobs[image.id])
            width = max(4, len(str(count)))
            start = now()
            ids: list[str] = []
            for number in range(1, count + 1):
                created = start + timedelta(microseconds=number)
                volume = Volume(
                    id=new_id(),
                    name=f"{name_prefix}-{number:0{width}d}",
                    project_id=owner_project.id,
                    user_id=owner.id,
                    size=size,
                    volume_type_id=vtype.id,
                    status="available",
                    bootable=base_image is not None,
                    host=self.cloud.config.volume_host,
                    service_uuid=self.cloud.service_uuid,
                    metadata=dict(metadata or {}),
                    image_metadata=dict(image_meta),
                    data=data,
                    created_at=created,
                    updated_at=created,
                )
                self.cloud.volumes[volume.id] = volume
                ids.append(volume.id)
        return ids

    # -- connection settings -------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT (the port is known once started)."""
        host = "127.0.0.1" if self.host in _WILDCARDS else self.host
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def auth_url(self) -> str:
        """Keystone v3, as written in clouds.yaml."""
        return f"{self.url}{Keystone.prefix}/v3"

    @property
    def clouds_yaml(self) -> Path:
        if self._clouds_yaml is None:
            raise RuntimeError("the sandbox is not started")
        return self._clouds_yaml

    @property
    def admin(self) -> Credentials:
        """Credentials of the admin user (roles admin and member)."""
        return self._require_identities().admin

    @property
    def member(self) -> Credentials:
        """Credentials of the member-only user."""
        return self._require_identities().member

    def _require_identities(self) -> Identities:
        if self._identities is None:
            raise RuntimeError("the sandbox is not started")
        return self._identities

    def _write_clouds_yaml(self) -> None:
        if self._clouds_yaml_wanted is None:
            self._temp_dir = self._temp_dir or Path(tempfile.mkdtemp(prefix="volimg-sandbox-"))
            path = self._temp_dir / "clouds.yaml"
        else:
            path = self._clouds_yaml_wanted  # its directory must exist: none is made
        # It holds passwords: 0600, atomic, never through a symlink planted in a shared
        # directory (volimg.files).
        write_private_file(
            path,
            render_clouds_yaml(
                self.auth_url,
                {self.admin_cloud: self.admin, self.member_cloud: self.member},
                cacert=self.tls_files.ca_cert if self.tls_files else None,
                regions=(REGION, *self.image_regions) if self.image_regions else (),
            ),
        )
        self._clouds_yaml = path


def region_image_prefix(region: str) -> str:
    """Where another region's glance-api answers: /image-<region>, path-safe."""
    return "/image-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in region.lower())


def render_clouds_yaml(
    auth_url: str,
    clouds: dict[str, Credentials],
    *,
    cacert: Path | None = None,
    regions: tuple[str, ...] = (),
) -> str:
    """A clouds.yaml; every scalar is a JSON string, which YAML reads as-is.

    ``regions``: every region of the catalog, listed so that ``--os-region-name`` may
    choose one (openstacksdk accepts only the regions clouds.yaml names); the first is
    the default.
    """
    q = json.dumps
    lines = [
        "# Written by volimg's sandbox cloud. Use it with:",
        "#   export OS_CLIENT_CONFIG_FILE=<this file>",
        f"#   export OS_CLOUD={next(iter(clouds))}",
        "clouds:",
    ]
    for name, creds in clouds.items():
        lines += [
            f"  {q(name)}:",
            f"    auth_type: {q('password')}",
            "    auth:",
            f"      auth_url: {q(auth_url)}",
            f"      username: {q(creds.username)}",
            f"      password: {q(creds.password)}",
            f"      project_name: {q(creds.project_name)}",
            f"      user_domain_name: {q('Default')}",
            f"      project_domain_name: {q('Default')}",
            f"    region_name: {q(REGION)}",
            *([f"    regions: [{', '.join(q(r) for r in regions)}]"] if regions else []),
            f"    interface: {q('public')}",
            "    identity_api_version: 3",
        ]
        if cacert is not None:
            lines.append(f"    cacert: {q(str(cacert))}")
    return "\n".join(lines) + "\n"
