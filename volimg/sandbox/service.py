"""What the HTTP server needs from each emulated service."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod

from volimg.sandbox.http import HttpError, Request, Response, Router


class Service(ABC):
    """One emulated OpenStack service mounted under a path prefix (devstack layout)."""

    name: str
    """Service kind in the request log: "identity", "volume" or "image"."""
    prefix: str
    """Mount point, e.g. "/image"."""

    def __init__(self) -> None:
        self.router = Router()

    def request_id(self, req: Request) -> str:
        """oslo.middleware's request ID: `req-` and a UUID."""
        return f"req-{uuid.uuid4()}"

    def handle(self, req: Request) -> Response:
        """Route the request; services override `dispatch` to add their pipeline."""
        try:
            return self.dispatch(req)
        except HttpError as error:
            return error.response

    def dispatch(self, req: Request) -> Response:
        match = self.router.match(req.method, req.path)
        if match is None:
            return self.not_found(req)
        if match.handler is None:
            return self.method_not_allowed(req, match.allowed)
        return match.handler(req, match.params)

    @abstractmethod
    def error(self, req: Request, status: int, message: str | None = None) -> Response:
        """An error response in this service's format (used for fault hooks and 500s)."""

    def not_found(self, req: Request) -> Response:
        return self.error(req, 404)

    def method_not_allowed(self, req: Request, allowed: tuple[str, ...]) -> Response:
        response = self.error(req, 405)
        response.headers.append(("Allow", ", ".join(allowed)))
        return response
