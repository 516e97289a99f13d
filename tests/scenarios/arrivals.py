"""Requests as they reach the sandbox, before it answers, and gates that hold some of them.

The sandbox's request log (``Sandbox.requests``) records a request once it is answered;
a test that must act *while* a request is in flight (kill volimg mid-request, signal it
while it waits on an answer, start a second run while the first is still working) needs
to know when the request arrived, and sometimes to hold it until the test is ready.

``Arrivals`` wraps the sandbox's fault hooks (``Sandbox.faults.match``, which the server
calls for every request before the service sees it), so each request is seen on arrival
and a ``Gate`` can hold the matching ones: they reach the service, unchanged, once the
gate opens. Nothing about the request or its answer changes; the client (openstacksdk
in a real volimg process) only sees a slower answer.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from volimg.sandbox import Sandbox
from volimg.sandbox.faults import FaultAction


@dataclass(frozen=True)
class Arrival:
    seq: int
    method: str
    path: str
    origin: str
    at: float  # time.monotonic()
    action: str | None = None  # a Cinder volume action's name (they share one path)


@dataclass
class Gate:
    """Holds the requests that match ``method`` and ``path`` (a regex) until opened."""

    method: str
    path: re.Pattern[str]
    action: str | None = None
    opened: threading.Event = field(default_factory=threading.Event)
    held: list[Arrival] = field(default_factory=list)

    def matches(self, method: str, path: str, action: str | None = None) -> bool:
        return (
            self.method in ("*", method)
            and self.path.search(path) is not None
            and (self.action is None or self.action == action)
        )

    def open(self) -> None:
        self.opened.set()


class Arrivals:
    """Every request the sandbox receives, in arrival order, and the gates holding some."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._faults = sandbox.faults
        self._match = sandbox.faults.match
        self._changed = threading.Condition()
        self._seen: list[Arrival] = []
        self._gates: list[Gate] = []

    def _on_request(
        self, method: str, path: str, origin: str, action: str | None = None
    ) -> list[FaultAction]:
        with self._changed:
            arrival = Arrival(len(self._seen) + 1, method, path, origin, time.monotonic(), action)
            self._seen.append(arrival)
            gates = [
                g for g in self._gates if not g.opened.is_set() and g.matches(method, path, action)
            ]
            for gate in gates:
                gate.held.append(arrival)
            self._changed.notify_all()
        for gate in gates:
            gate.opened.wait(120)
        return self._match(method, path, origin, action)

    @contextmanager
    def watching(self) -> Iterator[Arrivals]:
        """See every request while the block runs; every gate opens when it ends."""
        self._faults.match = self._on_request  # type: ignore[method-assign]
        try:
            yield self
        finally:
            for gate in self._gates:
                gate.open()
            self._faults.match = self._match  # type: ignore[method-assign]

    def hold(self, method: str, path: str, action: str | None = None) -> Gate:
        """Hold every request that matches from now on, until the gate is opened."""
        gate = Gate(method.upper(), re.compile(path), action)
        with self._changed:
            self._gates.append(gate)
        return gate

    def seen(
        self,
        method: str = "*",
        path: str = "",
        *,
        origin: str | None = "client",
        action: str | None = None,
    ) -> list[Arrival]:
        """The requests received so far that match (``path`` is a regex searched)."""
        pattern = re.compile(path)
        with self._changed:
            return [
                a
                for a in self._seen
                if method in ("*", a.method)
                and pattern.search(a.path)
                and (origin is None or a.origin == origin)
                and (action is None or a.action == action)
            ]

    def wait_for(
        self,
        method: str,
        path: str,
        *,
        count: int = 1,
        after: int = 0,
        timeout: float = 60.0,
        origin: str | None = "client",
        action: str | None = None,
    ) -> list[Arrival]:
        """Block until ``count`` matching requests with ``seq > after`` have arrived."""
        return self.wait_until(
            lambda: [
                a for a in self.seen(method, path, origin=origin, action=action) if a.seq > after
            ],
            count=count,
            timeout=timeout,
        )

    def wait_until(
        self, select: Callable[[], list[Arrival]], *, count: int = 1, timeout: float = 60.0
    ) -> list[Arrival]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := select()) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"only {len(found)} of {count} awaited requests arrived"
                self._changed.wait(remaining)
        return found

    @property
    def last_seq(self) -> int:
        with self._changed:
            return len(self._seen)
