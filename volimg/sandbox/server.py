"""The HTTP side of the sandbox: one threading server, three services under prefixes.

This module owns everything about the wire: reading bodies (Content-Length or
chunked), keep-alive, the `x-openstack-request-id` header on every response, fault
hooks, the request log, and the single place where an unexpected error becomes a
JSON 500 instead of a traceback.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from volimg.sandbox.errors import keystone_error
from volimg.sandbox.faults import PROXY_PAGE, FaultAction, Faults
from volimg.sandbox.glance_client import ORIGIN_HEADER
from volimg.sandbox.http import Headers, Request, Response, reason
from volimg.sandbox.reqlog import RequestLog, RequestRecord, redact_body, redact_headers
from volimg.sandbox.service import Service

LOG = logging.getLogger(__name__)


class Dispatcher:
    """Turns one parsed HTTP request into a response, with faults and logging."""

    def __init__(
        self, services: list[Service], faults: Faults, log: RequestLog, secret: str
    ) -> None:
        self.services = services
        self.faults = faults
        self.log = log
        self.secret = secret

    def service_for(self, path: str) -> tuple[Service | None, str]:
        for service in self.services:
            if path == service.prefix or path.startswith(service.prefix + "/"):
                return service, path[len(service.prefix) :]
        return None, path

    def build_request(
        self, method: str, target: str, headers: Headers, body: bytes, base_url: str
    ) -> tuple[Request, Service | None]:
        split = urllib.parse.urlsplit(target)
        raw_path = split.path or "/"
        service, sub_path = self.service_for(raw_path)
        origin = "cinder" if headers.get(ORIGIN_HEADER) == self.secret else "client"
        clean = Headers([(k, v) for k, v in headers.items() if k.lower() != ORIGIN_HEADER.lower()])
        req = Request(
            method=method,
            path=sub_path,
            raw_path=target,
            query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
            headers=clean,
            body=body,
            base_url=base_url,
            service_url=base_url + (service.prefix if service else ""),
            origin=origin,
        )
        req.request_id = service.request_id(req) if service else f"req-{uuid.uuid4()}"
        # Numbered on arrival, so the log lists requests in the order they came in.
        req.attrs["seq"] = self.log.next_seq()
        return req, service

    def respond(self, req: Request, service: Service | None) -> Response:
        """The service's answer; the one boundary where an unexpected error is caught."""
        if service is None:
            return keystone_error(404, "The resource could not be found.")
        try:
            return service.handle(req)
        except Exception:  # the HTTP boundary: log it, answer a JSON 500, never a traceback
            LOG.exception(
                "sandbox %s service failed on %s %s", service.name, req.method, req.raw_path
            )
            return service.error(req, 500)

    def record(
        self,
        req: Request,
        service: Service | None,
        status: int,
        response: Response | None,
        fault: str | None,
    ) -> None:
        body: Any = None
        if req.body and (
            req.content_type.endswith("json") or req.content_type.endswith("json-patch")
        ):
            try:
                body = redact_body(json.loads(req.body.decode("utf-8")))
            except ValueError:
                body = None
        path = urllib.parse.urlsplit(req.raw_path).path
        self.log.append(
            RequestRecord(
                seq=req.attrs["seq"],
                service=service.name if service else "sandbox",
                method=req.method,
                path=path,
                service_path=self.service_for(path)[1],
                query=req.query,
                status=status,
                headers=redact_headers(req.headers),
                json=body,
                body_size=len(req.body),
                request_id=req.request_id,
                origin=req.origin,
                response_headers=Headers(response.headers) if response else Headers(),
                fault=fault,
            )
        )


class SandboxHTTPServer(ThreadingHTTPServer):
    """A thread per connection; daemon threads so a stuck client cannot block shutdown."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        dispatcher: Dispatcher,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, SandboxRequestHandler)
        if tls is not None:
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished mid-request is not the sandbox's error: log, don't print."""
        LOG.debug("connection from %s ended abnormally", client_address, exc_info=True)


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: every response carries Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "volimg-sandbox"
    sys_version = ""
    server: SandboxHTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus the
        # client's delayed ACK would add ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            # The handshake runs here, in the connection's own thread, not in accept():
            # a client that never completes it must not stall the server.
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s - %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _base_url(self) -> str:
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_port}"
        scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        return f"{scheme}://{host}"

    def _handle(self) -> None:
        dispatcher = self.server.dispatcher
        body = self._read_body()
        headers = Headers(list(self.headers.items()))
        req, service = dispatcher.build_request(
            self.command, self.path, headers, body, self._base_url()
        )
        fault: str | None = None
        response: Response | None = None
        lose_answer = False
        corruption: str | None = None
        path = urllib.parse.urlsplit(req.raw_path).path
        for action in dispatcher.faults.match(
            req.method, path, req.origin, volume_action(req.method, path, body)
        ):
            if action.kind == "delay":
                time.sleep(action.seconds)
                fault = fault or "delay"
            elif action.kind in ("drop_connection", "refuse_connection"):
                dispatcher.record(req, service, 0, None, action.kind)
                self._hang_up(reset=action.kind == "refuse_connection")
                return
            elif action.kind == "lose_answer":
                lose_answer = True
            elif action.kind == "corrupt_answer":
                corruption = action.mode
            elif action.kind == "expire_token":
                dispatcher.faults.expire_tokens()
                fault = fault or "expire_token"
            elif response is None:
                fault = "respond"
                response = _fault_response(req, service, action)
        if response is None:
            response = dispatcher.respond(req, service)
        if lose_answer:
            dispatcher.record(req, service, 0, response, "lose_answer")
            self._hang_up(reset=False)
            return
        if corruption is not None:
            response = _corrupt(response, corruption)
            fault = "corrupt_answer"
        response.set_header("x-openstack-request-id", req.request_id)
        dispatcher.record(req, service, response.status, response, fault)
        self._write(response)

    def _hang_up(self, *, reset: bool) -> None:
        """Close without answering: a FIN (dropped) or, with `reset`, an RST (refused)."""
        self.close_connection = True
        if reset:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        self.connection.shutdown(socket.SHUT_RDWR)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    do_GET = _handle
    do_HEAD = _handle
    do_POST = _handle
    do_PUT = _handle
    do_PATCH = _handle
    do_DELETE = _handle
    do_OPTIONS = _handle


def _fault_response(req: Request, service: Service | None, action: FaultAction) -> Response:
    """The answer of a `respond` rule: the service's error format, or the rule's own body."""
    if action.body is not None:
        content_type = action.content_type or "application/json"
        response = Response(action.status, action.body, [("Content-Type", content_type)])
    elif service is not None:
        response = service.error(req, action.status, action.message)
    else:
        response = keystone_error(action.status, action.message or "")
    for name, value in action.headers:
        response.set_header(name, value)
    return response


def _corrupt(response: Response, mode: str) -> Response:
    """Spoil an answer the way a broken proxy or a cut connection does (status kept)."""
    if mode == "truncate":
        body = response.body[: len(response.body) // 2]
    elif mode == "html":
        body = PROXY_PAGE.format(status=response.status, reason=reason(response.status)).encode()
    else:
        body = b"Service temporarily overloaded, try again later\n"
    headers = [(k, v) for k, v in response.headers if k.lower() != "content-type"]
    return Response(response.status, body, [("Content-Type", "application/json"), *headers])


def volume_action(method: str, path: str, body: bytes) -> str | None:
    """The name of a Cinder volume action (``POST .../volumes/{id}/action``), or None.

    Every action shares one path; fault hooks and the request log tell them apart by
    the body's one key, e.g. ``os-volume_upload_image`` or ``os-set_image_metadata``.
    """
    if method != "POST" or not path.endswith("/action"):
        return None
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(parsed, dict) and len(parsed) == 1:
        (name,) = parsed
        return str(name)
    return None
