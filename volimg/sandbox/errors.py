"""Error bodies in the exact shapes the real services produce.

Three families exist upstream and clients parse all of them:

* webob's own rendering of `webob.exc.HTTPError` (Glance everywhere, Cinder's router
  404s): the body depends on the `Accept` header - JSON `{"message", "code", "title"}`
  with the `<br /><br />` residue of webob's body template, HTML, or plain text.
* Cinder's `Fault` (cinder/api/openstack/wsgi.py): `{"badRequest": {"code", "message"}}`.
* Keystone and keystonemiddleware: `{"error": {"code", "title", "message"}}`.
"""

from __future__ import annotations

import html
import json
import re

from volimg.sandbox.http import JSON, Request, Response, reason

# webob.exc default explanations, per class (webob 1.8).
_WEBOB_EXPLANATIONS = {
    400: "The server could not comply with the request since it is either malformed or otherwise incorrect.",
    401: "This server could not verify that you are authorized to access the document you requested. Either you supplied the wrong credentials (e.g., bad password), or your browser does not understand how to supply the credentials required.",
    403: "Access was denied to this resource.",
    404: "The resource could not be found.",
    405: "The server could not comply with the request since it is either malformed or otherwise incorrect.",
    406: "The server could not comply with the request since it is either malformed or otherwise incorrect.",
    409: "There was a conflict when trying to complete your request.",
    410: "This resource is no longer available. No forwarding address is given.",
    413: "The body of your request was too large for this server.",
    415: "The server could not comply with the request since it is either malformed or otherwise incorrect.",
    500: "The server has either erred or is incapable of performing the requested operation.",
    503: "The server is currently unavailable. Please try again at a later time.",
}

# Cinder's Fault._fault_names; anything else is "computeFault".
_CINDER_FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    501: "notImplemented",
    503: "serviceUnavailable",
}

_BR = re.compile(r"<br.*?>", re.I | re.S)
_TAG = re.compile(r"<.*?>", re.S)
_COMMENT = re.compile(r"<!--|-->")


def webob_explanation(status: int) -> str:
    """The class-level explanation webob uses when a service gives none."""
    return _WEBOB_EXPLANATIONS.get(status, _WEBOB_EXPLANATIONS[500 if status >= 500 else 400])


def _accepted_offers(accept: str | None) -> list[str]:
    """webob's `acceptable_offers(['text/html', 'application/json'])`, best first.

    No `Accept` header at all parses as an empty header, which accepts nothing, so webob
    falls back to plain text; `*/*` prefers HTML because it is offered first.
    """
    if accept is None:
        return []
    ranges: list[tuple[str, float]] = []
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        if not parts[0]:
            continue
        quality = 1.0
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((parts[0].lower(), quality))
    scored: list[tuple[float, int, str]] = []
    for index, offer in enumerate(("text/html", "application/json")):
        major = offer.split("/")[0]
        best: tuple[int, float] | None = None
        for media, quality in ranges:
            if media == offer:
                specificity = 3
            elif media == f"{major}/*":
                specificity = 2
            elif media == "*/*":
                specificity = 1
            else:
                continue
            if best is None or specificity > best[0]:
                best = (specificity, quality)
        if best is not None and best[1] > 0:
            scored.append((-best[1], index, offer))
    return [offer for _, _, offer in sorted(scored)]


def webob_error(
    req: Request,
    status: int,
    explanation: str | None = None,
    *,
    detail: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Response:
    """Render `webob.exc.HTTP<status>(explanation=..., detail=...)` as webob does."""
    title = reason(status)
    status_line = f"{status} {title}"
    if explanation is None:
        explanation = webob_explanation(status)
    if status == 405:
        head, tail = f"The method {req.method} is not allowed for this resource. ", ""
    elif status == 415:
        media = req.headers.get("Content-Type", "")
        head, tail = f"The request media type {media} is not supported by this server.\n", ""
    else:
        head, tail = explanation, "\n\n"
    raw_body = f"{head}<br /><br />\n{detail or ''}{tail}"
    offers = _accepted_offers(req.headers.get("Accept"))
    match = offers[0] if offers else None
    if match == "application/json":
        body = json.dumps({"message": raw_body, "code": status_line, "title": title})
        content_type = JSON
    elif match == "text/html":
        escaped = f"{html.escape(head)}<br /><br />\n{html.escape(detail or '')}{tail}"
        body = (
            f"<html>\n <head>\n  <title>{status_line}</title>\n </head>\n <body>\n"
            f"  <h1>{status_line}</h1>\n  {escaped}\n </body>\n</html>"
        )
        content_type = "text/html; charset=UTF-8"
    else:
        stripped = raw_body.replace("\n", " ").replace("\r", "")
        stripped = _TAG.sub("", _COMMENT.sub("", _BR.sub("\n", stripped)))
        body = f"{status_line}\n\n{stripped}"
        content_type = "text/plain; charset=UTF-8"
    return Response(
        status, body.encode("utf-8"), [("Content-Type", content_type), *(headers or [])]
    )


def cinder_fault(status: int, message: str | None = None) -> Response:
    """Cinder's `Fault(webob.exc.HTTP<status>(explanation=message))` body."""
    name = _CINDER_FAULT_NAMES.get(status, "computeFault")
    text = message if message is not None else webob_explanation(status)
    return Response.json(status, {name: {"code": status, "message": text}})


def keystone_error(
    status: int, message: str, headers: list[tuple[str, str]] | None = None
) -> Response:
    """Keystone's (and keystonemiddleware's) `{"error": {...}}` body."""
    document = {"error": {"code": status, "title": reason(status), "message": message}}
    return Response.json(status, document, headers)


UNAUTHENTICATED = "The request you have made requires authentication."
