"""Fault hooks: make the sandbox misbehave the ways real clouds do.

HTTP-level hooks (`respond`, `refuse_connection`, `drop_connection`, `delay`,
`expire_token`) act on the N-th request that matches a method and a path regex, before
the service sees it; `lose_answer` and `corrupt_answer` let the service act and then
drop or spoil the answer. The other hooks act inside the services' asynchronous work
instead: a Glance copy to a given store failing, a Cinder upload failing the way
Cinder's volume manager fails one, and a Glance import task that never ends - either
alive forever (`hang_import`) or dead with its lock still held (`abandon_import`), the
two cases Glance's stale-lock rule tells apart.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _HttpRule:
    kind: str
    method: str
    pattern: re.Pattern[str]
    nth: int
    times: int | None
    origin: str | None
    status: int = 0
    action: str | None = None  # a Cinder volume action's name, e.g. os-volume_upload_image
    message: str | None = None
    seconds: float = 0.0
    body: bytes | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    mode: str = ""
    seen: int = 0
    fired: int = 0


# What a proxy in front of a service answers when the service behind it fails.
PROXY_PAGE = (
    "<html><head><title>{status} {reason}</title></head><body>\n"
    "<h1>{status} {reason}</h1>\n"
    "The server is temporarily unable to service your request.\n"
    "</body></html>\n"
)
CORRUPTIONS = ("truncate", "not-json", "html")


@dataclass(frozen=True)
class FaultAction:
    """What to do to one request: the kind of the rule that fired, and its settings."""

    kind: str
    status: int = 0
    message: str | None = None
    seconds: float = 0.0
    body: bytes | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    mode: str = ""


@dataclass
class _Countdown:
    key: str | None
    remaining: int | None
    message: str = ""

    def take(self) -> bool:
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


def _check_counts(nth: int, times: int | None) -> None:
    if nth < 1:
        raise ValueError("nth counts from 1")
    if times is not None and times < 1:
        raise ValueError("times must be at least 1 (or None for always)")


class Faults:
    """The fault hooks of one sandbox (`Sandbox.faults`)."""

    def __init__(self, expire_tokens: Callable[[], None] | None = None) -> None:
        self.expire_tokens = expire_tokens or (lambda: None)
        """Called by the server for an `expire_token` rule (the sandbox's Cloud.expire_tokens)."""
        self._lock = threading.Lock()
        self._rules: list[_HttpRule] = []
        self._store_failures: list[_Countdown] = []
        self._upload_failures: list[_Countdown] = []
        self._hung_imports: list[_Countdown] = []
        self._abandoned_imports: list[_Countdown] = []

    # -- HTTP-level hooks --------------------------------------------------------------
    def fired(self) -> int:
        """How many requests the HTTP fault rules armed so far have acted on (tests check
        that the fault they armed really met a request)."""
        with self._lock:
            return sum(rule.fired for rule in self._rules)

    def respond(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        nth: int = 1,
        times: int | None = 1,
        message: str | None = None,
        origin: str | None = "client",
        action: str | None = None,
        body: bytes | str | None = None,
        content_type: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Answer the nth matching request (and `times` in all) with `status` and a JSON error.

        The service never sees those requests. `path_regex` is searched in the full path
        (e.g. "/image/v2/images/.*/import"); `origin=None` also matches Cinder's own calls.
        `body` (with `content_type`) replaces the service's error document, e.g. a proxy's
        HTML page or a 200 that is not JSON; `headers` are added (e.g. Retry-After).
        """
        raw = body.encode("utf-8") if isinstance(body, str) else body
        self._add(
            "respond",
            method,
            path_regex,
            nth,
            times,
            origin,
            status=status,
            message=message,
            body=raw,
            content_type=content_type,
            headers=tuple(headers),
            action=action,
        )

    def proxy_error(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        nth: int = 1,
        times: int | None = 1,
        retry_after: int | None = None,
        origin: str | None = "client",
        action: str | None = None,
    ) -> None:
        """Answer with a load balancer's HTML error page instead of the service's JSON."""
        from volimg.sandbox.http import reason

        page = PROXY_PAGE.format(status=status, reason=reason(status))
        extra = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
        self.respond(
            method,
            path_regex,
            status,
            nth=nth,
            times=times,
            origin=origin,
            body=page,
            content_type="text/html",
            headers=extra,
            action=action,
        )

    def refuse_connection(
        self,
        method: str,
        path_regex: str,
        *,
        nth: int = 1,
        times: int | None = 1,
        origin: str | None = "client",
        action: str | None = None,
    ) -> None:
        """Reset the TCP connection (RST) of the nth matching request; the service never acts.

        What a client sees when nothing listens behind the endpoint: requests raises
        ConnectionError and keystoneauth ConnectFailure, as for ECONNREFUSED.
        """
        self._add("refuse_connection", method, path_regex, nth, times, origin, action=action)

    def corrupt_answer(
        self,
        method: str,
        path_regex: str,
        mode: str = "truncate",
        *,
        nth: int = 1,
        times: int | None = 1,
        origin: str | None = "client",
        action: str | None = None,
    ) -> None:
        """Let the service act, then spoil its answer (status kept).

        `mode`: "truncate" sends the first half of the body (declared length matches,
        so the client reads broken JSON), "not-json" a plain-text body, "html" an HTML
        page, both still labelled application/json as a broken proxy would.
        """
        if mode not in CORRUPTIONS:
            raise ValueError(f"mode must be one of {', '.join(CORRUPTIONS)}")
        self._add(
            "corrupt_answer", method, path_regex, nth, times, origin, mode=mode, action=action
        )

    def expire_token(
        self,
        method: str,
        path_regex: str,
        *,
        nth: int = 1,
        times: int | None = 1,
        origin: str | None = "client",
        action: str | None = None,
    ) -> None:
        """Expire every issued token just before the nth matching request is handled.

        The service then answers 401, as keystonemiddleware does for a token that
        expired while the client held it.
        """
        self._add("expire_token", method, path_regex, nth, times, origin, action=action)

    def drop_connection(
        self,
        method: str,
        path_regex: str,
        *,
        nth: int = 1,
        times: int | None = 1,
        origin: str | None = "client",
        action: str | None = None,
    ) -> None:
        """Close the socket of the nth matching request without answering."""
        self._add("drop_connection", method, path_regex, nth, times, origin, action=action)

    def lose_answer(
        self,
        method: str,
        path_regex: str,
        *,
        nth: int = 1,
        times: int | None = 1,
        origin: str | None = "client",
        action: str | None = None,
    ) -> None:
        """Let the service handle the nth matching request, then close without answering.

        The request takes effect but the caller never hears of it: what a client sees
        when a proxy or the network drops an answer.
        """
        self._add("lose_answer", method, path_regex, nth, times, origin, action=action)

    def delay(
        self,
        method: str,
        path_regex: str,
        seconds: float,
        *,
        nth: int = 1,
        times: int | None = 1,
        origin: str | None = "client",
        action: str | None = None,
    ) -> None:
        """Hold the nth matching request for `seconds` before the service handles it."""
        self._add("delay", method, path_regex, nth, times, origin, seconds=seconds, action=action)

    def _add(
        self,
        kind: str,
        method: str,
        path_regex: str,
        nth: int,
        times: int | None,
        origin: str | None,
        **extra: object,
    ) -> None:
        _check_counts(nth, times)
        rule = _HttpRule(kind, method.upper(), re.compile(path_regex), nth, times, origin)
        for name, value in extra.items():
            setattr(rule, name, value)
        with self._lock:
            self._rules.append(rule)

    def match(
        self, method: str, path: str, origin: str, action: str | None = None
    ) -> list[FaultAction]:
        """Count this request against every rule; return the actions that fire for it.

        ``action``: the name of a Cinder volume action (the one key of the body of
        ``POST /volumes/{id}/action``); a rule made with ``action=`` matches only it.
        """
        actions: list[FaultAction] = []
        with self._lock:
            for rule in self._rules:
                if rule.method not in ("*", method.upper()) or not rule.pattern.search(path):
                    continue
                if rule.origin is not None and rule.origin != origin:
                    continue
                if rule.action is not None and rule.action != action:
                    continue
                rule.seen += 1
                if rule.seen < rule.nth or (rule.times is not None and rule.fired >= rule.times):
                    continue
                rule.fired += 1
                actions.append(
                    FaultAction(
                        rule.kind,
                        rule.status,
                        rule.message,
                        rule.seconds,
                        rule.body,
                        rule.content_type,
                        rule.headers,
                        rule.mode,
                    )
                )
        return actions

    # -- service-level hooks -------------------------------------------------------------
    def fail_store_copy(self, store: str, *, times: int | None = None) -> None:
        """Make Glance's copy of an image to `store` fail (`times=None`: every time)."""
        _check_counts(1, times)
        with self._lock:
            self._store_failures.append(_Countdown(store, times))

    def fail_cinder_upload(
        self,
        *,
        volume: str | None = None,
        message: str = "Simulated backend failure during upload",
        times: int | None = 1,
    ) -> None:
        """Make Cinder's `os-volume_upload_image` fail after its 202, as the volume manager fails.

        The volume goes back to its previous status, the queued image is deleted and a
        user message is recorded. `volume` is an ID or name (None: any volume);
        `message` is the internal error, which Cinder logs but never shows to users.
        """
        _check_counts(1, times)
        with self._lock:
            self._upload_failures.append(_Countdown(volume, times, message))

    def hang_import(self, *, image: str | None = None, times: int | None = 1) -> None:
        """Make a copy-image task run forever while holding the image's import lock.

        The task goes `processing` and then makes no progress, but stays alive: it keeps
        its `updated_at` fresh the way a running copy does ("Copied N MiB" about once a
        minute), also across `Sandbox.advance_clock`, so Glance never considers its lock
        stale and every new import of the image gets 409. It ends when the sandbox stops.
        `image` is an image ID (None: any image).
        """
        _check_counts(1, times)
        with self._lock:
            self._hung_imports.append(_Countdown(image, times))

    def abandon_import(
        self, *, image: str | None = None, status: str = "processing", times: int | None = 1
    ) -> None:
        """Make a copy-image task die where it stands, its import lock still held.

        As when the glance-api worker running it is killed: the task stays `status`
        ("processing", or "pending" as if never picked up) with `updated_at` frozen, and
        nothing clears the lock until a new import finds it stale (60 minutes after that
        `updated_at`, 120 for a pending task; see `Sandbox.advance_clock`).
        """
        if status not in ("pending", "processing"):
            raise ValueError("an abandoned task is left 'pending' or 'processing'")
        _check_counts(1, times)
        with self._lock:
            self._abandoned_imports.append(_Countdown(image, times, status))

    def take_import_fault(self, image_id: str) -> str | None:
        """What happens to a new import task: "hang", "pending", "processing" or None."""
        with self._lock:
            for rule in self._hung_imports:
                if rule.key in (None, image_id) and rule.take():
                    return "hang"
            for rule in self._abandoned_imports:
                if rule.key in (None, image_id) and rule.take():
                    return rule.message
        return None

    def take_store_failure(self, store: str) -> bool:
        with self._lock:
            return any(rule.key == store and rule.take() for rule in self._store_failures)

    def take_upload_failure(self, volume_id: str, volume_name: str | None) -> str | None:
        with self._lock:
            for rule in self._upload_failures:
                if rule.key in (None, volume_id, volume_name) and rule.take():
                    return rule.message
        return None

    def clear(self) -> None:
        """Forget every hook."""
        with self._lock:
            self._rules.clear()
            self._store_failures.clear()
            self._upload_failures.clear()
            self._hung_imports.clear()
            self._abandoned_imports.clear()
