"""openstacksdk's and keystoneauth's exceptions, turned into volimg's (``volimg.errors``).

Every call the gateway makes runs inside ``_calling``, so nothing above the gateway
ever meets an SDK exception: each becomes a volimg error that says what volimg was
doing, at which cloud, and what to do next (an unreachable cloud, refused credentials,
a missing endpoint, an answer the API reference does not promise). The rules live in
one module so that Keystone, Cinder and Glance failures read alike.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from volimg.errors import (
    AuthenticationFailed,
    CloudError,
    ConfigError,
    ConflictInCloud,
    NotFoundInCloud,
    PermissionDenied,
    RequestRejected,
    VolimgError,
)

if TYPE_CHECKING:
    import requests

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
            of = f" (cloud {cloud!r})" if cloud else ""
            return AuthenticationFailed(
                message + of, hint="check the credentials of this cloud in clouds.yaml (or OS_*)"
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
        of = f" of cloud {cloud!r}" if cloud else " of the default cloud (no --os-cloud)"
        return AuthenticationFailed(
            f"{action}: Keystone refused the credentials{of}",
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


def _raise_for(response: requests.Response) -> None:
    """An error answer to a request sent by hand raises, as openstacksdk's own calls do."""
    from openstack import exceptions as sdk

    sdk.raise_from_response(response)
