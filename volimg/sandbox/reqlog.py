"""The request log: every request the sandbox answered, for tests to assert on.

Records carry who sent the request (`origin`): "client" for callers outside the sandbox
and "cinder" for the sandbox Cinder's own calls to Glance, so a test can check exactly
what Cinder sent (`x-image-meta-store`, `x-openstack-base-image-ref`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from volimg.sandbox.http import Headers

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SECRET_HEADERS = frozenset({"x-auth-token", "x-subject-token", "x-service-token", "authorization"})


@dataclass(frozen=True)
class RequestRecord:
    """One answered (or dropped) request."""

    seq: int
    service: str
    """"identity", "volume", "image", or "sandbox" for paths outside the three."""
    method: str
    path: str
    """The full path as sent, e.g. "/image/v2/images/<id>/import"."""
    service_path: str
    """The path below the service prefix, e.g. "/v2/images/<id>/import"."""
    query: dict[str, list[str]]
    status: int
    """HTTP status answered; 0 when a fault hook dropped the connection."""
    headers: Headers
    """Request headers; token values are replaced by "***"."""
    json: Any
    """Parsed JSON body, or None (binary bodies are only counted in `body_size`)."""
    body_size: int
    request_id: str
    origin: str
    response_headers: Headers = field(default_factory=Headers)
    fault: str | None = None
    """Name of the fault hook that shaped this answer, if any."""

    @property
    def action(self) -> str | None:
        """A Cinder volume action's name: the one key of the JSON body, if any."""
        if isinstance(self.json, dict) and len(self.json) == 1:
            return str(next(iter(self.json)))
        return None

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        return self.headers.get(name)

    @property
    def mutating(self) -> bool:
        """POST/PUT/PATCH/DELETE, except asking Keystone for a token."""
        if self.method not in MUTATING:
            return False
        return not (
            self.service == "identity"
            and self.method == "POST"
            and self.service_path.rstrip("/") == "/v3/auth/tokens"
        )


def redact_headers(headers: Headers) -> Headers:
    return Headers([(k, "***" if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()])


def redact_body(body: Any) -> Any:
    """Hide passwords in Keystone auth bodies."""
    if isinstance(body, dict):
        return {
            k: ("***" if k == "password" and isinstance(v, str) else redact_body(v))
            for k, v in body.items()
        }
    if isinstance(body, list):
        return [redact_body(item) for item in body]
    return body


class RequestLog(Sequence[RequestRecord]):
    """Thread-safe, append-only (until `clear()`) list of `RequestRecord`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._seq = 0

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return sorted(self._records, key=lambda r: r.seq)

    @overload
    def __getitem__(self, index: int) -> RequestRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[RequestRecord]: ...
    def __getitem__(self, index: int | slice) -> RequestRecord | list[RequestRecord]:
        return self.snapshot()[index]

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self.snapshot())

    def filter(
        self,
        *,
        service: str | None = None,
        method: str | None = None,
        path: str | None = None,
        origin: str | None = None,
        status: int | None = None,
        action: str | None = None,
    ) -> list[RequestRecord]:
        """Records matching every given criterion; `path` is a regex searched in the full path.

        `action`: a Cinder volume action's name (the one key of the request body).
        """
        pattern = re.compile(path) if path is not None else None
        return [
            r
            for r in self.snapshot()
            if (service is None or r.service == service)
            and (method is None or r.method == method.upper())
            and (origin is None or r.origin == origin)
            and (status is None or r.status == status)
            and (pattern is None or pattern.search(r.path))
            and (action is None or r.action == action)
        ]

    def mutating(self, origin: str | None = None) -> list[RequestRecord]:
        """POST/PUT/PATCH/DELETE requests (token requests excluded), optionally by origin."""
        return [r for r in self.snapshot() if r.mutating and (origin is None or r.origin == origin)]
