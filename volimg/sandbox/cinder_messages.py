"""Cinder's user messages controller (microversion 3.3 and later): list, show, delete.

Mirrors cinder/api/v3/messages.py `MessagesController`; the messages themselves are
written by `cinder_manager.py` when an asynchronous operation fails.
"""

from __future__ import annotations

from typing import Any

from volimg.sandbox.cinder_base import CinderBase
from volimg.sandbox.cinder_views import message_view
from volimg.sandbox.errors import cinder_fault
from volimg.sandbox.http import HttpError, Request, Response


class MessagesController(CinderBase):
    """Handlers for /messages."""

    def list_messages(self, req: Request, _: dict[str, str]) -> Response:
        self._require(req, "3.3")
        token, version = req.token, req.attrs["version"]
        assert token is not None
        # Filters are only read from 3.5 (MESSAGES_PAGINATION) and checked from 3.31.
        filters = self._filters(req, "message") if version.at_least("3.5") else {}
        ctx = self._ctx(req)
        with self.cloud.lock:
            messages = [
                m
                for m in self.cloud.messages.values()
                if (token.is_admin or m.project_id == token.project_id)
                and all(str(getattr(m, key, None)) == value for key, value in filters.items())
            ]
            messages.sort(key=lambda m: m.created_at, reverse=True)
            return Response.json(200, {"messages": [message_view(m, ctx) for m in messages]})

    def _message(self, req: Request, message_id: str) -> Any:
        token = req.token
        assert token is not None
        message = self.cloud.messages.get(message_id)
        if message is None or not (token.is_admin or message.project_id == token.project_id):
            raise HttpError(cinder_fault(404, f"Message {message_id} could not be found."))
        return message

    def show_message(self, req: Request, params: dict[str, str]) -> Response:
        self._require(req, "3.3")
        with self.cloud.lock:
            return Response.json(
                200,
                {"message": message_view(self._message(req, params["message_id"]), self._ctx(req))},
            )

    def delete_message(self, req: Request, params: dict[str, str]) -> Response:
        self._require(req, "3.3")
        with self.cloud.lock:
            message = self._message(req, params["message_id"])
            del self.cloud.messages[message.id]
        return Response.empty(204)
