"""Request/response values and a tiny router shared by the three emulated services.

The services are plain functions from a `Request` to a `Response`; the HTTP server
(`server.py`) does the socket work. Keeping them apart lets each service module read
like the real service's controller and keeps the wire handling in one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from volimg.sandbox.state import Token

JSON = "application/json"


class Headers(Mapping[str, str]):
    """Case-insensitive, single-valued header map (what the services need)."""

    def __init__(self, items: Mapping[str, str] | list[tuple[str, str]] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        pairs = items.items() if isinstance(items, Mapping) else (items or [])
        for name, value in pairs:
            self._items[name.lower()] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass
class Request:
    """One HTTP request as a service sees it: `path` is relative to the service prefix."""

    method: str
    path: str
    raw_path: str
    query: dict[str, list[str]]
    headers: Headers
    body: bytes
    base_url: str
    service_url: str
    request_id: str = ""
    origin: str = "client"
    token: Token | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    """Per-request values a service pipeline computes (e.g. Cinder's microversion)."""

    def param(self, name: str) -> str | None:
        """First value of a query parameter, as webob's `req.params.get` returns it."""
        values = self.query.get(name)
        return values[0] if values else None

    def params(self) -> dict[str, str]:
        """All query parameters, last value wins (webob's MultiDict `.copy()` view)."""
        return {name: values[-1] for name, values in self.query.items() if values}

    @property
    def content_type(self) -> str:
        """Media type of the body, without parameters such as charset."""
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def parse_json(self) -> Any:
        """Decode the body; raises ValueError for malformed JSON (services map it)."""
        return json.loads(self.body.decode("utf-8"))

    @property
    def url(self) -> str:
        """Full URL of the request, as webob's `req.url`."""
        return self.base_url + self.raw_path


@dataclass
class Response:
    """What a service answers; the server adds Content-Length and the request ID."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(
        cls, status: int, document: Any, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        """A JSON response; `Content-Type: application/json` like every OpenStack API."""
        body = json.dumps(document).encode("utf-8")
        return cls(status, body, [("Content-Type", JSON), *(headers or [])])

    @classmethod
    def empty(cls, status: int, headers: list[tuple[str, str]] | None = None) -> Response:
        """A bodiless response such as 202/204."""
        return cls(status, b"", list(headers or []))

    def header(self, name: str) -> str | None:
        """First value of a response header, case-insensitively."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def set_header(self, name: str, value: str) -> None:
        """Replace (or add) a header."""
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))


class HttpError(Exception):
    """Raised by a service to answer with an error response built by its own formatter."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


def reason(status: int) -> str:
    """The standard reason phrase ("Not Found"), as webob titles its errors."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


Handler = Callable[[Request, dict[str, str]], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


@dataclass(frozen=True)
class Match:
    """Result of routing: a handler, or the methods the path does allow (for a 405)."""

    handler: Handler | None
    params: dict[str, str]
    allowed: tuple[str, ...] = ()


class Router:
    """Method + regular-expression routing, the way `routes.Mapper` is used upstream."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append(Route(method, re.compile(f"^{pattern}$"), handler))

    def match(self, method: str, path: str) -> Match | None:
        allowed: list[str] = []
        for route in self._routes:
            found = route.pattern.match(path)
            if not found:
                continue
            if route.method == method:
                return Match(route.handler, found.groupdict())
            if route.method not in allowed:
                allowed.append(route.method)
        if allowed:
            return Match(None, {}, tuple(allowed))
        return None
