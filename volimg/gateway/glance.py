"""The one module that talks to openstacksdk.

It returns volimg's own frozen values (``volimg.model``) and turns every SDK and
keystoneauth exception into a ``volimg.errors`` exception, so nothing above it knows
openstacksdk exists. openstacksdk is imported lazily: ``volimg --help`` must not pay
for it.

Where openstacksdk's resources would hide a field volimg needs (an image's ``stores``,
a store's ``read-only`` flag, a task's ``request_id``) or would not raise on an error
response, the gateway sends the request itself through the SDK's proxies, which still
carry authentication, the service catalog, microversions and transport retries.
"""

from __future__ import annotations

import html
import logging
import re
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import TYPE_CHECKING, Any

from volimg.errors import (
    AmbiguousImage,
    AmbiguousVolume,
    AuthenticationFailed,
    CloudError,
    ConfigError,
    ConflictInCloud,
    ImageNotFound,
    InputError,
    NotFoundInCloud,
    PermissionDenied,
    RequestRejected,
    VolimgError,
    VolumeNotFound,
)
from volimg.model import (
    CloudIdentity,
    GlanceInfo,
    Image,
    ImportTask,
    Store,
    UploadAccepted,
    UserMessage,
    Volume,
    VolumeTypeInfo,
    split_stores,
    version_tuple,
)

if TYPE_CHECKING:
    import requests
    from openstack.connection import Connection

    from volimg.planner import UploadRequest

log = logging.getLogger("volimg.gateway")  # the name -v has always shown

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

# Cinder lists user messages from microversion 3.3 and filters them (resource_uuid)
# only from 3.5 (cinder/api/microversions.py MESSAGES, RESOURCE_FILTER).
MESSAGES_MICROVERSION = "3.3"
MESSAGES_FILTER_MICROVERSION = "3.5"

# Glance pages image lists (api_limit_max is 1000 by default).
IMAGE_PAGE = 200

_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_HTML_RESIDUE = re.compile(r"<[^>]+>")
# keystoneauth's ConnectFailure: "Unable to establish connection to URL: <cause>".
_URL_IN_MESSAGE = re.compile(r"connection to (\S+?):? ")


def _clean(detail: str | None) -> str:
    """Glance's JSON error messages keep HTML residue such as '<br /><br />'."""
    text = html.unescape(_HTML_RESIDUE.sub(" ", detail or ""))
    return " ".join(text.split())


def _request_id(response: requests.Response) -> str | None:
    return response.headers.get("x-openstack-request-id") or response.headers.get(
        "x-compute-request-id"
    )


def _unreachable(exc: BaseException, action: str, cloud: str | None) -> CloudError:
    """One line for a cloud that cannot be reached: which cloud, which URL, why.

    keystoneauth wraps urllib3's chain of wrappers into its message; the cause an
    operator acts on (connection refused, name not known, timed out) is the OS error
    at the bottom of it.
    """
    found = _URL_IN_MESSAGE.search(str(exc))
    url = found.group(1) if found else None
    where = f"cloud {cloud!r}" if cloud else "the cloud"
    at = f" at {url}" if url else ""
    from keystoneauth1 import exceptions as ksa

    return CloudError(
        f"cannot reach {where}{at}: {_os_cause(exc)} (while {action})",
        hint="check auth_url in clouds.yaml (or OS_AUTH_URL) and that the endpoints are "
        "reachable from here; -v shows keystoneauth's own account",
        # keystoneauth turns requests' read timeout into ConnectTimeout: the request was
        # sent, and the service may still act on it.
        in_flight=isinstance(exc, ksa.ConnectTimeout),
    )


def _os_cause(exc: BaseException) -> str:
    """The OS-level reason at the bottom of an exception chain, e.g. "connection refused"."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TimeoutError) or type(current).__name__.endswith("Timeout"):
            return "timed out"
        if isinstance(current, OSError) and current.strerror:
            return current.strerror[0].lower() + current.strerror[1:]
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError
        linked = [current.__cause__, current.__context__, reason, *current.args]
        pending += [e for e in linked if isinstance(e, BaseException)]
    return _clean(str(exc))


def translate_error(exc: BaseException, action: str, *, cloud: str | None = None) -> VolimgError:
    """Map an SDK or keystoneauth exception to volimg's tree, with what to do next."""
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    if isinstance(exc, sdk.HttpException):
        status = exc.status_code
        detail = _clean(exc.details) or _clean(str(exc.message))
        message = f"{action}: {detail}" if detail else f"{action}: HTTP {status}"
        if status == 401:
            return AuthenticationFailed(
                message, hint="check the credentials of this cloud in clouds.yaml (or OS_*)"
            )
        if status == 403:
            return PermissionDenied(message, hint="this needs a role your user does not have")
        if status == 404:
            return NotFoundInCloud(message, status=status)
        if status == 409:
            return ConflictInCloud(message, status=status)
        if status == 400:
            return RequestRejected(message, status=status)
        return CloudError(message, status=status)
    if isinstance(exc, ksa.Unauthorized):
        return AuthenticationFailed(
            f"{action}: Keystone refused the credentials",
            hint="check username, password and project of this cloud in clouds.yaml (or OS_*)",
        )
    if isinstance(exc, ksa.http.Forbidden):
        return PermissionDenied(f"{action}: Keystone refused access ({_clean(str(exc))})")
    if isinstance(exc, ksa.EndpointNotFound):
        return ConfigError(
            f"{action}: the service catalog has no usable endpoint ({exc})",
            hint="check the region (--os-region-name) and interface of this cloud",
        )
    if isinstance(exc, ksa.ConnectionError) or (
        isinstance(exc, ksa.DiscoveryFailure) and _URL_IN_MESSAGE.search(str(exc))
    ):
        return _unreachable(exc, action, cloud)
    if isinstance(exc, ksa.DiscoveryFailure):
        return CloudError(
            f"{action}: could not discover the cloud's API versions ({_clean(str(exc))})",
            hint="check auth_url and that the endpoints are reachable from here",
        )
    if isinstance(exc, (ksa.MissingRequiredOptions, ksa.AuthPluginException)):
        return ConfigError(
            f"{action}: incomplete cloud configuration ({exc})",
            hint="choose a cloud with --os-cloud / OS_CLOUD, or set the OS_* variables",
        )
    if isinstance(exc, sdk.ConfigException):
        return ConfigError(
            f"{action}: {exc}", hint="check clouds.yaml (OS_CLIENT_CONFIG_FILE) and --os-cloud"
        )
    return CloudError(f"{action}: {_clean(str(exc))}")


@contextmanager
def _calling(action: str, *, cloud: str | None = None) -> Iterator[None]:
    """Turn whatever openstacksdk or keystoneauth raises during ``action`` into volimg's."""
    from keystoneauth1.exceptions import ClientException
    from openstack.exceptions import SDKException

    try:
        yield
    except (SDKException, ClientException) as exc:
        raise translate_error(exc, action, cloud=cloud) from exc
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # A 2xx whose body is not what the API reference promises: a missing field, a
        # wrong type, JSON that does not parse (ValueError).
        raise CloudError(
            f"{action}: the answer is not what the API promises ({type(exc).__name__}: "
            f"{_clean(str(exc))})",
            hint="a proxy in between may have cut or replaced the answer; run again, or with "
            "-vv to see it",
        ) from exc


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
    from keystoneauth1 import exceptions as ksa
    from openstack import connection
    from openstack import exceptions as sdk
    from openstack.config import OpenStackConfig

    from volimg import __version__

    options: dict[str, Any] = {
        "connect_retries": CONNECT_RETRIES,
        "status_code_retries": STATUS_CODE_RETRIES,
    }
    if not retries:
        options = {"connect_retries": 0, "status_code_retries": 0, "image_status_code_retries": 0}
    if timeout is not None:
        options["api_timeout"] = timeout
    with _calling("reading the cloud configuration", cloud=cloud):
        config = OpenStackConfig(
            config_files=[config_file] if config_file else None,
            app_name="volimg",
            app_version=__version__,
        )
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
            raise ConfigError(f"cannot use {where}: {exc}", hint=hint) from exc
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


def cloud_names() -> list[str]:
    """The clouds that clouds.yaml (and secure.yaml) name, as openstacksdk finds them."""
    from openstack.config import OpenStackConfig

    with _calling("reading the cloud configuration"):
        config = OpenStackConfig()
        # Without a file, openstacksdk makes up a cloud named "defaults": no name to offer.
        return sorted(config.get_cloud_names()) if config.config_filename else []


class Gateway:
    """volimg's view of one cloud: Keystone, Cinder and Glance through one connection."""

    def __init__(
        self, conn: Connection, *, cloud: str | None = None, verifies_tls: bool = True
    ) -> None:
        self._conn = conn
        self.cloud = cloud  # its name in clouds.yaml, for messages
        self.verifies_tls = verifies_tls
        """False when TLS certificates are not checked (--insecure, verify: false)."""

    def _calling(self, action: str) -> AbstractContextManager[None]:
        return _calling(action, cloud=self.cloud)

    def close(self) -> None:
        self._conn.close()

    def fork(self) -> Gateway:
        """A gateway for another thread: its own HTTP session, the same login.

        keystoneauth's Session and requests' Session are not meant to be shared by
        threads, so each worker of a batch gets its own; the auth plugin (one token,
        guarded by keystoneauth's own lock) and the discovery cache are shared, so a
        worker costs no extra Keystone or version-discovery request.
        """
        import copy

        from openstack import connection

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

    # --- Cinder -------------------------------------------------------------------

    def cinder_max_microversion(self) -> str | None:
        with self._calling("discovering Cinder's API versions"):
            data = self._conn.block_storage.get_endpoint_data()
        version = getattr(data, "max_microversion", None)
        if not version:
            return None
        return ".".join(str(part) for part in version[:2])

    def find_volume(self, ref: str) -> Volume:
        """A volume by ID or by exact name; refuses a name several volumes share."""
        _require_ref(ref, "volume")
        if _UUID.match(ref):
            volume = self.get_volume(ref)
            if volume is not None:
                return volume  # else a volume may be named like a UUID: try the name
        with self._calling(f"looking up volume {ref!r} in Cinder"):
            matches = [
                v for v in self._conn.block_storage.volumes(details=True, name=ref) if v.name == ref
            ]
            if not matches:
                raise VolumeNotFound(ref)
            if len(matches) > 1:
                raise AmbiguousVolume(ref, sorted(v.id for v in matches))
            return _volume(matches[0])

    def list_volume_names(self) -> dict[str, str]:
        """Every volume of the caller's project: id and name (shell completion).

        The summary list (``GET /v3/volumes``, not ``/detail``) is enough, and Cinder
        shows an admin only their own project's volumes unless asked for all_tenants.
        """
        with _calling("listing volume names"):
            return {v.id: v.name or "" for v in self._conn.block_storage.volumes(details=False)}

    def get_volume(self, volume_id: str) -> Volume | None:
        from openstack import exceptions as sdk

        with self._calling(f"reading volume {volume_id} from Cinder"):
            try:
                return _volume(self._conn.block_storage.get_volume(volume_id))
            except sdk.NotFoundException:
                return None

    def volume_type(self, name_or_id: str, *, specs_visible: bool) -> VolumeTypeInfo | None:
        """The type and its ``image_service:store_id``; None if the type is not visible."""
        from openstack import exceptions as sdk

        with self._calling(f"reading volume type {name_or_id!r} from Cinder"):
            found = None
            if _UUID.match(name_or_id):
                with suppress(sdk.NotFoundException):
                    found = self._conn.block_storage.get_type(name_or_id)
            if found is None:
                # A volume shows its type by name, and Cinder reads type IDs only
                # (cinder/volume/volume_types.py get_volume_type): find_type's first
                # GET /types/<name> is a certain 404, so go straight to the list, with
                # private types too (Cinder's 'none'; the default lists public ones).
                found = next(
                    (
                        t
                        for t in self._conn.block_storage.types(is_public="none")
                        if name_or_id in (t.name, t.id)
                    ),
                    None,
                )
            if found is None:
                return None
        specs = found.extra_specs or {}
        return VolumeTypeInfo(
            name=found.name,
            store=specs.get("image_service:store_id") or None,
            specs_visible=specs_visible,
        )

    def upload_volume(self, volume_id: str, request: UploadRequest) -> UploadAccepted:
        """POST os-volume_upload_image once. Never retried: it creates an image."""
        body: dict[str, Any] = {"image_name": request.image_name, "force": request.force}
        for key in ("disk_format", "container_format", "visibility", "protected"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        with self._calling(f"asking Cinder to upload volume {volume_id}"):
            response = self._conn.block_storage.post(
                f"/volumes/{volume_id}/action",
                json={"os-volume_upload_image": body},
                microversion=request.microversion,
                **NO_RETRY,
            )
            _raise_for(response)
            image_id = response.json()["os-volume_upload_image"]["image_id"]
        log.info("Cinder accepted the upload of volume %s: image %s", volume_id, image_id)
        return UploadAccepted(image_id=image_id, request_id=_request_id(response))

    def volume_messages(self, volume_id: str) -> list[UserMessage]:
        """Cinder's user messages about a volume, newest first (why an upload failed)."""
        max_version = self.cinder_max_microversion() or MESSAGES_MICROVERSION
        filtered = version_tuple(max_version) >= version_tuple(MESSAGES_FILTER_MICROVERSION)
        with self._calling(f"reading Cinder's messages about volume {volume_id}"):
            response = self._conn.block_storage.get(
                "/messages",
                params={"resource_uuid": volume_id},
                microversion=MESSAGES_FILTER_MICROVERSION if filtered else MESSAGES_MICROVERSION,
            )
            _raise_for(response)
            found = [
                UserMessage(
                    event_id=m.get("event_id", ""),
                    user_message=m.get("user_message", ""),
                    request_id=m.get("request_id"),
                    created_at=m.get("created_at"),
                )
                for m in response.json().get("messages", [])
                if m.get("resource_uuid") == volume_id
            ]
        return sorted(found, key=lambda m: m.created_at or "", reverse=True)

    def list_volumes(
        self, *, metadata: Mapping[str, str] | None = None, all_projects: bool = False
    ) -> list[Volume]:
        """Volumes whose metadata holds every given pair, filtered by Cinder, all pages.

        Cinder reads the ``metadata`` filter with ``ast.literal_eval``
        (volume/api.py ``check_volume_filters``), so it travels as a Python dict
        literal, and every pair must match exactly (db/api.py
        ``_process_volume_filters``). The filter is open to every user at every
        microversion (resource_filters.json). ``all_projects`` sends
        ``all_tenants=True``: honoured for admins, silently dropped for anyone else.

        The literal goes in openstacksdk's client-side name ``properties``: given as
        ``metadata=`` the SDK would also filter the answer itself, comparing each
        volume's metadata dict with the string (nothing matches), and a dict would be
        sent as one ``metadata=KEY`` parameter per key, which Cinder matches with no
        volume. No ``limit`` is sent: Cinder then pages by its ``osapi_max_limit``
        with next links, which the SDK follows, and the SDK's extra probe for a
        further page (made whenever a limit was given) is saved.
        """
        query: dict[str, Any] = {}
        action = "listing volumes"
        if metadata:
            query["properties"] = repr({str(k): str(v) for k, v in metadata.items()})
            action += " with metadata " + ", ".join(f"{k}={v}" for k, v in metadata.items())
        with _calling(action):
            return [
                _volume(v)
                for v in self._conn.block_storage.volumes(
                    details=True, all_projects=all_projects, **query
                )
            ]

    # --- Glance -------------------------------------------------------------------

    def glance_info(self) -> GlanceInfo:
        """Stores (GET /v2/info/stores) and import methods (GET /v2/info/import)."""
        with self._calling("reading Glance's stores"):
            response = self._conn.image.get("/info/stores")
            # Glance answers 404 when enabled_backends is not set (single store).
            stores: list[Store] = []
            if response.status_code != 404:
                _raise_for(response)
                stores = [_store(s) for s in response.json().get("stores", [])]
        with self._calling("reading Glance's import methods"):
            response = self._conn.image.get("/info/import")
            _raise_for(response)
            methods = response.json().get("import-methods", {}).get("value", [])
        return GlanceInfo(stores=tuple(stores), import_methods=tuple(methods))

    def list_image_names(
        self, *, owner: str | None = None, visibility: str | None = None
    ) -> dict[str, str]:
        """Every image's id and name (shell completion), filtered by Glance, all pages."""
        params: dict[str, Any] = {"limit": IMAGE_PAGE}
        if owner:
            params["owner"] = owner
        if visibility:
            params["visibility"] = visibility
        found: dict[str, str] = {}
        with _calling("listing image names"):
            while True:
                response = self._conn.image.get("/images", params=params)
                _raise_for(response)
                page = response.json()["images"]
                found.update((i["id"], i.get("name") or "") for i in page)
                if len(page) < IMAGE_PAGE:
                    return found
                params["marker"] = page[-1]["id"]

    def get_image(self, image_id: str) -> Image | None:
        """An image by ID, or None when Glance says 404 (gone, or not visible to you)."""
        with self._calling(f"reading image {image_id} from Glance"):
            response = self._conn.image.get(f"/images/{image_id}")
            if response.status_code == 404:
                return None
            _raise_for(response)
            return _image(response.json())

    def find_image(self, ref: str) -> Image:
        """An image by ID or exact name; refuses a name several images share."""
        _require_ref(ref, "image")
        if _UUID.match(ref):
            image = self.get_image(ref)
            if image is not None:
                return image
        matches = self.images_named(ref)
        if not matches:
            raise ImageNotFound(ref)
        if len(matches) > 1:
            raise AmbiguousImage(ref, sorted(i.id for i in matches))
        return matches[0]

    def images_named(self, name: str, *, owner: str | None = None) -> list[Image]:
        """Every image visible to you with exactly this name (and owner), all pages."""
        params: dict[str, Any] = {"name": name, "limit": IMAGE_PAGE}
        if owner:
            params["owner"] = owner
        found: list[Image] = []
        with self._calling(f"looking up images named {name!r} in Glance"):
            while True:
                response = self._conn.image.get("/images", params=params)
                _raise_for(response)
                page = response.json()["images"]
                found += [_image(i) for i in page if i.get("name") == name]
                if len(page) < IMAGE_PAGE:
                    return found
                params["marker"] = page[-1]["id"]

    def list_images(
        self,
        *,
        tag: str | None = None,
        properties: Mapping[str, str] | None = None,
        owner: str | None = None,
        all_projects: bool = False,
    ) -> list[Image]:
        """Images filtered on the server (tag, custom properties, owner), all pages.

        Glance filters on any custom property given as a query parameter
        (glance/api/v2/images.py index: unknown keys become property filters), so
        volimg never lists the whole cloud to find its own images. Glance lists every
        project's images to an admin, so ``owner`` narrows to one project unless
        ``all_projects`` is asked for.
        """
        params: dict[str, Any] = {"limit": IMAGE_PAGE, "sort": "created_at:asc,id:asc"}
        if tag:
            params["tag"] = tag
        if owner and not all_projects:
            params["owner"] = owner
        params.update(properties or {})
        found: list[Image] = []
        with self._calling("listing Glance's images"):
            while True:
                response = self._conn.image.get("/images", params=params)
                _raise_for(response)
                page = response.json()["images"]
                found += [_image(i) for i in page]
                if len(page) < IMAGE_PAGE:
                    return found
                params["marker"] = page[-1]["id"]

    def set_image_properties(self, image_id: str, properties: Mapping[str, str]) -> None:
        """Add or overwrite custom properties with one JSON-patch (draft 10 ``add``).

        Safe to resend: the same patch leaves the same image, so keystoneauth's
        transport retries may apply. Glance refuses os_glance* keys (403).
        """
        ops = [
            {"op": "add", "path": "/" + key.replace("~", "~0").replace("/", "~1"), "value": value}
            for key, value in properties.items()
        ]
        with self._calling(f"setting properties on Glance image {image_id}"):
            response = self._conn.image.patch(
                f"/images/{image_id}",
                json=ops,
                headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
            )
            _raise_for(response)

    def add_image_tag(self, image_id: str, tag: str) -> None:
        """PUT /v2/images/{id}/tags/{tag}: idempotent (glance/api/v2/image_tags.py)."""
        with self._calling(f"tagging Glance image {image_id}"):
            response = self._conn.image.put(f"/images/{image_id}/tags/{tag}")
            _raise_for(response)

    def delete_image(self, image_id: str) -> None:
        """DELETE /v2/images/{id}, sent once (a resend after success would say 404)."""
        with self._calling(f"deleting Glance image {image_id}"):
            response = self._conn.image.delete(f"/images/{image_id}", **NO_RETRY)
            _raise_for(response)
        log.info("deleted image %s", image_id)

    def copy_image(
        self,
        image_id: str,
        stores: Sequence[str],
        *,
        all_stores_must_succeed: bool,
        request_id: str,
    ) -> None:
        """Start a copy-image import whose task will carry ``request_id``.

        Glance takes the caller's X-OpenStack-Request-ID as its own request id
        (glance/api/middleware/context.py) and records it on the import task, so volimg
        can find its task even when the answer to this request is lost.

        Sent by hand rather than with ``image.import_image``: that call does not raise on
        an error answer, and its ``store=`` form adds an x-image-meta-store header that
        multi-store Glance refuses beside a ``stores`` body (400). Glance's own default
        for all_stores_must_succeed is true; volimg always says what it wants.
        """
        body = {
            "method": {"name": "copy-image"},
            "stores": list(stores),
            "all_stores": False,
            "all_stores_must_succeed": all_stores_must_succeed,
        }
        with self._calling(f"asking Glance to copy image {image_id} to {', '.join(stores)}"):
            response = self._conn.image.post(
                f"/images/{image_id}/import",
                json=body,
                global_request_id=request_id,
                **NO_RETRY,
            )
            _raise_for(response)
        log.info("Glance accepted copy-image of %s (request %s)", image_id, request_id)

    def image_tasks(self, image_id: str) -> list[ImportTask]:
        """GET /v2/images/{id}/tasks (Glance API 2.12): the image's import tasks."""
        with self._calling(f"reading Glance's import tasks of image {image_id}"):
            response = self._conn.image.get(f"/images/{image_id}/tasks")
            _raise_for(response)
            return [
                ImportTask(
                    id=t["id"],
                    status=t["status"],
                    message=t.get("message") or "",
                    # The API reference's sample spells it request-id.
                    request_id=t.get("request_id") or t.get("request-id"),
                    created_at=t.get("created_at"),
                    updated_at=t.get("updated_at"),
                    stores=tuple((t.get("input") or {}).get("backend") or ()),
                )
                for t in response.json()["tasks"]
            ]

    def delete_from_store(self, image_id: str, store: str) -> None:
        """DELETE /v2/stores/{store}/{image}: remove one store's copy (admin by default)."""
        with self._calling(f"asking Glance to remove image {image_id} from store {store}"):
            response = self._conn.image.delete(f"/stores/{store}/{image_id}", **NO_RETRY)
            _raise_for(response)
        log.info("removed image %s from store %s", image_id, store)


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


def _raise_for(response: requests.Response) -> None:
    from openstack import exceptions as sdk

    sdk.raise_from_response(response)


def _required(kind: str, **fields: Any) -> None:
    """Raise TypeError (an unreadable answer) when a field volimg relies on is no string."""
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise TypeError(f"{kind} {name} is {value!r}, not a string")


def _volume(resource: Any) -> Volume:
    _required("volume", id=resource.id, status=resource.status)
    image_metadata: Mapping[str, Any] = resource.volume_image_metadata or {}
    metadata: Mapping[str, Any] = resource.metadata or {}
    return Volume(
        id=resource.id,
        name=resource.name or "",
        status=resource.status,
        size=int(resource.size or 0),
        volume_type=resource.volume_type,
        image_metadata={str(k): str(v) for k, v in image_metadata.items()},
        metadata={str(k): str(v) for k, v in metadata.items()},
        project_id=resource.project_id or None,
    )


def _store(data: Mapping[str, Any]) -> Store:
    # Glance renders these booleans as strings: "default": "true", "read-only": "true".
    return Store(
        id=data["id"],
        description=data.get("description", ""),
        is_default=str(data.get("default", "")).lower() == "true",
        read_only=str(data.get("read-only", "")).lower() == "true",
    )


# What Glance's image view shows besides custom properties (glance/api/v2/images.py
# ResponseSerializer._format_image, with multiple stores): not part of ``properties``.
_CORE_IMAGE_FIELDS = frozenset(
    (
        "id", "name", "status", "visibility", "protected", "os_hidden", "owner", "size",
        "virtual_size", "checksum", "os_hash_algo", "os_hash_value", "disk_format",
        "container_format", "min_disk", "min_ram", "created_at", "updated_at", "tags",
        "self", "file", "schema", "direct_url", "locations", "stores",
    )
)  # fmt: skip


def _custom_properties(data: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(k): str(v)
        for k, v in data.items()
        if k not in _CORE_IMAGE_FIELDS and not str(k).startswith("os_glance") and v is not None
    }


def _image(data: Mapping[str, Any]) -> Image:
    _required("image", id=data["id"], status=data.get("status"))
    return Image(
        id=data["id"],
        name=data.get("name") or "",
        status=data.get("status", ""),
        stores=split_stores(data.get("stores")),
        disk_format=data.get("disk_format"),
        container_format=data.get("container_format"),
        visibility=data.get("visibility"),
        owner=data.get("owner"),
        created_at=data.get("created_at"),
        size=data.get("size"),
        checksum=data.get("checksum"),
        import_task=data.get("os_glance_import_task") or None,
        importing_to_stores=split_stores(data.get("os_glance_importing_to_stores")),
        failed_import=split_stores(data.get("os_glance_failed_import")),
        protected=bool(data.get("protected", False)),
        tags=tuple(data.get("tags") or ()),
        updated_at=data.get("updated_at"),
        properties=_custom_properties(data),
    )
