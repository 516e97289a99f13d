"""The connection to one cloud: opening it, Keystone, and what every service part shares.

``connect`` builds the openstacksdk Connection from openstacksdk's own configuration
(clouds.yaml, OS_*) with volimg's transport settings: a timeout on every request, and
keystoneauth's retries for reads only (``NO_RETRY`` for requests that create or delete
something). ``Session`` holds that connection; ``Gateway`` (``volimg/gateway/__init__.py``)
is a Session with the Cinder and Glance parts on top, and the Keystone call
(``identity``) lives here because the token is the connection's. openstacksdk and
keystoneauth are imported inside the functions that use them: ``volimg --help`` must not
pay for them.

``retry_while_starting`` is the one retry of a whole call (tenacity): the reads a batch
makes before its first volume (the token, version discovery, the volume listing and
lookups, this period's images), where one 503, 502 or reset would otherwise end the
night at once.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from volimg.errors import CloudError, ConfigError, InputError, VolimgError
from volimg.gateway.errors import _calling
from volimg.gateway.services import defer_unused_services
from volimg.model import CloudIdentity, ImageEndpoint

if TYPE_CHECKING:
    from openstack.connection import Connection

    from volimg.gateway import Gateway

# keystoneauth owns transport retries, and only reads may use them. It counts a
# connection dropped after the request was sent, and a read timeout, as connection
# failures (keystoneauth1/session.py _send_request), and openstacksdk has it retry
# Glance's 503s for every method (image_status_code_retries = 5). So requests that
# create or delete something go out with NO_RETRY: a resent upload could create a
# second image; a resent copy-image would meet its own import lock.
CONNECT_RETRIES = 3
# Reads answered 503 are sent again this many times by keystoneauth (0.5, 1, 2 s apart;
# it does not read Retry-After). openstacksdk already does so for Glance (5 times);
# this extends it to Cinder and Keystone. Requests that change something never are.
STATUS_CODE_RETRIES = 3
NO_RETRY: dict[str, int] = {"connect_retries": 0, "status_code_retries": 0}

# Seconds one HTTP request may take before keystoneauth gives up on it, unless the cloud
# sets api_timeout in clouds.yaml. openstacksdk's own default is no limit at all, so a
# service that accepted a connection and never answered would hang volimg for ever.
DEFAULT_HTTP_TIMEOUT = 60.0
# The least time a request bounded by what is left of --timeout is given: one that
# cannot even be answered would only turn a late answer into a lost one.
MIN_REQUEST_SECONDS = 1.0

# Retries of a whole read while a batch starts (``retry_while_starting``): at most this
# many attempts, each wait drawn at random between 0 and FIRST x 2^(attempt - 1) seconds
# (full jitter, so that the hosts of a fleet woken by the same timer do not retry in
# step), never over MAX_WAIT. Worst case about 1 + 2 + 4 + 8 = 15 s of waiting.

T = TypeVar("T")
_log = logging.getLogger("volimg")

# What Cinder's and Glance's lookups share: a reference that looks like an ID is tried
# as one first; a blank reference is refused (_require_ref).
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


def connect(
    cloud: str | None,
    region: str | None,
    *,
    config_file: str | None = None,
    timeout: float | None = None,
    retries: bool = True,
    insecure: bool = False,
) -> Gateway:
    """Open a connection from openstacksdk's own configuration (clouds.yaml, OS_*).

    ``config_file`` names one clouds.yaml to read instead of the usual search path
    (``volimg demo`` uses it for the sandbox's); authentication happens on first use.
    ``timeout`` bounds every request (openstacksdk's ``api_timeout``); ``retries=False``
    turns keystoneauth's transport retries off, including the five that openstacksdk
    gives Glance's 503s (``image_status_code_retries``): shell completion must answer
    quickly or not at all.
    ``insecure`` turns TLS verification off, as ``verify: false`` in clouds.yaml does;
    ``Gateway.verifies_tls`` says which it is, so the CLI can warn once.
    """
    defer_unused_services()  # before openstacksdk's first import: volimg calls three services
    from keystoneauth1 import exceptions as ksa
    from openstack import connection
    from openstack import exceptions as sdk
    from openstack.config import OpenStackConfig

    from volimg import __version__
    from volimg.gateway import Gateway  # Session and the service parts, composed

    options: dict[str, Any] = {
        "connect_retries": CONNECT_RETRIES,
        "status_code_retries": STATUS_CODE_RETRIES,
    }
    if not retries:
        options = {"connect_retries": 0, "status_code_retries": 0, "image_status_code_retries": 0}
    if timeout is not None:
        options["api_timeout"] = timeout
    _check_config_files(config_file)
    with _calling("reading the cloud configuration", cloud=cloud):
        config = OpenStackConfig(
            config_files=[config_file] if config_file else None,
            app_name="volimg",
            app_version=__version__,
        )
        _require_parsed(config, config_file)
        try:
            region_config = config.get_one(cloud=cloud, region_name=region, **options)
        except (sdk.ConfigException, ksa.ClientException) as exc:
            where = f"cloud {cloud!r}" if cloud else "the default cloud"
            # openstacksdk (openstack/config/loader.py _get_region): "Region X is not a
            # valid region name for cloud Y. Valid choices are ...".
            if region and "not a valid region name" in str(exc):
                hint = (
                    f"region {region!r} comes from --os-region-name (or OS_REGION_NAME): pass "
                    "one of the valid regions, or leave it out to use the cloud's own"
                )
            else:
                hint = (
                    "name a cloud from clouds.yaml with --os-cloud (or OS_CLOUD), or set the "
                    "OS_* variables"
                )
            read = f" (read {config.config_filename})" if config.config_filename else ""
            raise ConfigError(f"cannot use {where}: {exc}{read}", hint=hint) from exc
        _log_config_files(config, region_config.name)
        _require_password(region_config, config.config_filename)
        if region_config.config.get("api_timeout") is None:
            region_config.config["api_timeout"] = DEFAULT_HTTP_TIMEOUT
        if insecure:
            region_config.config["insecure"] = True
        verifies_tls = not (
            region_config.config.get("insecure") or region_config.config.get("verify") is False
        )
        if not verifies_tls:
            # volimg says it once; urllib3 would say it on every request.
            import urllib3

            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        return Gateway(
            connection.Connection(config=region_config), cloud=cloud, verifies_tls=verifies_tls
        )


# Authentication types that need a password: keystoneauth's generic and versioned
# password plugins (openstacksdk's default auth_type is "password").
_PASSWORD_AUTH = {"password", "v2password", "v3password", "v3multifactor"}


def _config_files(config_file: str | None) -> list[str]:
    """The clouds.yaml files openstacksdk looks at, in its order (the first found wins)."""
    defer_unused_services()
    from openstack.config import loader

    override = os.environ.get("OS_CLIENT_CONFIG_FILE")
    usual = [config_file] if config_file else loader.CONFIG_FILES
    return [*([override] if override else []), *usual]


def _check_config_files(config_file: str | None) -> None:
    """Refuse an ``OS_CLIENT_CONFIG_FILE`` (or ``config_file``) that does not exist.

    openstacksdk passes over it in silence and then says only "Cloud X was not
    found": name the file instead. A file it cannot parse is ``_require_parsed``'s.
    """
    named = {"OS_CLIENT_CONFIG_FILE": os.environ.get("OS_CLIENT_CONFIG_FILE"), "": config_file}
    for given, path in named.items():
        if not path or os.path.exists(path):
            continue
        raise ConfigError(
            f"{given or 'the configuration file'} {path} does not exist",
            hint="point OS_CLIENT_CONFIG_FILE at an existing clouds.yaml, or unset it to use "
            "the usual places (./clouds.yaml, ~/.config/openstack/clouds.yaml, "
            "/etc/openstack/clouds.yaml); then name a cloud with --os-cloud (or OS_CLOUD)",
        )


def _require_parsed(config: Any, config_file: str | None) -> None:
    """Name a clouds.yaml that openstacksdk skipped because it cannot parse it.

    openstacksdk passes over such a file (a warning in its log) and then says only
    "Cloud X was not found". The file it read is ``config.config_filename``; when that
    is not the first file found, the first one was skipped, and parsing it again here
    gives its error. Only then: the file openstacksdk read is not parsed twice (pure
    Python YAML, a percent of ``volimg stores``'s start-up).
    """
    import yaml

    read = config.config_filename
    for path in _config_files(config_file):
        if not os.path.exists(path):
            continue
        if read is not None and os.path.realpath(path) == os.path.realpath(read):
            return  # the file openstacksdk read (it skipped any before it as unreadable)
        try:
            with open(path, encoding="utf-8") as stream:
                yaml.safe_load(stream)
        except OSError:
            continue  # openstacksdk skips an unreadable file too, for the next one
        except (ValueError, yaml.YAMLError) as exc:
            cause = " ".join(str(exc).split())
            raise ConfigError(
                f"cannot parse {path}: {cause}",
                hint=f"fix the YAML of {path} (openstacksdk would skip the file and then "
                "not find the cloud)",
            ) from exc
        return  # the first file found is the one openstacksdk reads


def _log_config_files(config: Any, cloud: str) -> None:
    """With -v: which configuration files were read, for which cloud."""
    log = logging.getLogger("volimg")
    files = [f for f in (config.config_filename, config.secure_config_filename) if f]
    if files:
        log.info("cloud %r: configuration read from %s", cloud, ", ".join(files))
    else:
        log.info("cloud %r: no clouds.yaml found; configuration from the OS_* variables", cloud)


def _require_password(region_config: Any, config_filename: str | None) -> None:
    """A password cloud without a password fails at once, naming the cloud and the field.

    keystoneauth would raise a bare ``Exception('password is a required attribute')``
    at the first request, which no error boundary can tell from a bug.
    """
    settings = region_config.config
    auth_type = str(settings.get("auth_type") or "password")
    auth = settings.get("auth") or {}
    if auth_type not in _PASSWORD_AUTH or auth.get("password"):
        return
    name = region_config.name
    if name == "envvars" or not config_filename:
        raise ConfigError(
            f"cloud {name!r} (the OS_* variables) has no password: OS_PASSWORD is not set",
            hint="export OS_PASSWORD, or name a cloud from clouds.yaml with --os-cloud",
        )
    raise ConfigError(
        f"cloud {name!r} in {config_filename} has no password (auth.password is missing)",
        hint=f"add password: under auth: of cloud {name!r} (or in secure.yaml), or use "
        "another auth_type such as v3applicationcredential",
    )


def cloud_names() -> list[str]:
    """The clouds that clouds.yaml (and secure.yaml) name, as openstacksdk finds them."""
    defer_unused_services()
    from openstack.config import OpenStackConfig

    with _calling("reading the cloud configuration"):
        config = OpenStackConfig()
        # Without a file, openstacksdk makes up a cloud named "defaults": no name to offer.
        return sorted(config.get_cloud_names()) if config.config_filename else []


class Session:
    """The one openstacksdk connection that Gateway's Keystone, Cinder and Glance calls share.

    The connection carries authentication, the service catalog, microversions and
    transport retries; the service parts (``CinderCalls``, ``GlanceCalls``) reach their
    service through ``self._conn`` and wrap every call in ``self._calling``.
    """

    def __init__(
        self, conn: Connection, *, cloud: str | None = None, verifies_tls: bool = True
    ) -> None:
        self._conn = conn
        # What is left of each deadline in force (``within``), innermost last.
        self._limits: list[Callable[[], float]] = []
        self._bounding = False
        self.cloud = cloud  # its name in clouds.yaml, for messages
        self.verifies_tls = verifies_tls
        """False when TLS certificates are not checked (--insecure, verify: false)."""

    def _calling(self, action: str) -> AbstractContextManager[None]:
        return _calling(action, cloud=self.cloud)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def within(self, time_left: Callable[[], float]) -> Iterator[None]:
        """Every request sent inside, each attempt of it, takes at most what
        ``time_left()`` says is left of the run's --timeout when it goes out (at least
        MIN_REQUEST_SECONDS), never the whole HTTP timeout; nested, the tightest wins.

        The one place that bounds requests by the run's deadline: a 60 s HTTP timeout
        (api_timeout) must not let one slow answer outlive ``--timeout 20``. The bound
        is set on requests' own call, below keystoneauth, because keystoneauth sends
        a read that timed out again (``connect_retries``) with the same arguments: each
        attempt gets what is left then, not what was left at the first.
        """
        if not self._bounding:
            with self._calling("opening the connection"):
                self._bound_requests()
        self._limits.append(time_left)
        try:
            yield
        finally:
            self._limits.pop()

    def _time_left(self) -> float | None:
        """Seconds the next request may take under the deadlines in force; None: no bound."""
        if not self._limits:
            return None
        return max(MIN_REQUEST_SECONDS, min(limit() for limit in self._limits))

    def _bound_requests(self) -> None:
        """Wrap the requests.Session under keystoneauth's (and openstacksdk's: its
        proxies send through the same keystoneauth Session): every attempt's
        ``timeout``, which keystoneauth fills from api_timeout
        (keystoneauth1/session.py ``request``), is cut to ``_time_left()``."""
        transport: Any = self._conn.session.session
        send = transport.request

        def request(method: str, url: str, **kwargs: Any) -> Any:
            left = self._time_left()
            if left is not None:
                given = kwargs.get("timeout")
                if isinstance(given, tuple):  # requests' (connect, read)
                    kwargs["timeout"] = tuple(min(float(t), left) for t in given)
                else:
                    kwargs["timeout"] = left if given is None else min(float(given), left)
            return send(method, url, **kwargs)

        transport.request = request
        self._bounding = True

    def fork(self) -> Gateway:
        """A gateway for another thread: its own HTTP session, the same login.

        keystoneauth's Session and requests' Session are not meant to be shared by
        threads, so each worker of a batch gets its own; the auth plugin (one token,
        guarded by keystoneauth's own lock) and the discovery cache are shared, so a
        worker costs no extra Keystone or version-discovery request.
        """
        import copy

        from openstack import connection

        from volimg.gateway import Gateway

        region = copy.copy(self._conn.config)
        region._keystone_session = None  # CloudRegion.get_session() builds a new one
        return Gateway(
            connection.Connection(config=region), cloud=self.cloud, verifies_tls=self.verifies_tls
        )

    # --- identity ---------------------------------------------------------------

    def identity(self) -> CloudIdentity:
        with self._calling("authenticating with Keystone"):
            auth: Any = self._conn.session.auth
            access = auth.get_access(self._conn.session)
        return CloudIdentity(project_id=access.project_id, roles=tuple(access.role_names or ()))

    def image_endpoints(self) -> tuple[ImageEndpoint, ...]:
        """The catalog's image endpoints of this connection's interface, every region.

        The catalog came with the token (Keystone's ``catalog`` in the token body), so
        this sends no request beyond authentication.
        """
        interface = str(self._conn.config.get_interface() or "public").removesuffix("URL")
        found: list[ImageEndpoint] = []
        with self._calling("reading the service catalog"):
            auth: Any = self._conn.session.auth
            access = auth.get_access(self._conn.session)
            for service in access.service_catalog.catalog or []:
                if service.get("type") != "image":
                    continue
                for endpoint in service.get("endpoints") or []:
                    if str(endpoint.get("interface", "")).removesuffix("URL") != interface:
                        continue
                    found.append(
                        ImageEndpoint(
                            region=endpoint.get("region_id") or endpoint.get("region"),
                            interface=interface,
                            url=str(endpoint["url"]),
                        )
                    )
        return tuple(found)


def is_unreachable(error: VolimgError) -> bool:
    """The cloud could not be reached at all (refused, reset, no route, timed out),
    as opposed to a service that answered with an error."""
    from keystoneauth1 import exceptions as ksa

    if not isinstance(error, CloudError):
        return False
    cause = error.__cause__
    if isinstance(cause, ksa.ConnectionError):
        return True
    return isinstance(cause, ksa.DiscoveryFailure) and error.message.startswith("cannot reach")


def _require_ref(ref: str, noun: str) -> None:
    """Cinder and Glance drop an empty name filter, so '' would match nameless resources."""
    if not ref.strip():
        raise InputError(
            f"{'an empty' if not ref else 'a blank'} {noun} name or ID names no {noun}",
            hint=f"pass the {noun}'s name or ID (an unset shell variable?)",
        )


def new_request_id() -> str:
    """A request id in the form OpenStack services accept from callers."""
    return f"req-{uuid.uuid4()}"
