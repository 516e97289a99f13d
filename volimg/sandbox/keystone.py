"""Keystone v3: version discovery and password tokens, nothing more.

Only what keystoneauth needs to authenticate and what Cinder's and Glance's
keystonemiddleware needs to validate a token. Token bodies follow
keystone/models/token_model.py `render_token_response_from_model`.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

from volimg.sandbox.errors import UNAUTHENTICATED, keystone_error
from volimg.sandbox.http import HttpError, Request, Response
from volimg.sandbox.service import Service
from volimg.sandbox.state import Cloud, Token, keystone_time, now

# keystone/api/discovery.py
_V3 = {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z"}
_MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]
# `keystone-manage bootstrap` makes admin imply member and member imply reader.
# (Keystone 2024.1 added `manager` between admin and member.)
IMPLIED_ROLES = {"admin": ("manager",), "manager": ("member",), "member": ("reader",)}
REGION = "RegionOne"
_CLIENT_ERROR = "The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error."
# werkzeug's own pages: Keystone (flask) answers unknown routes and methods in HTML.
_FLASK_PAGES = {
    404: (
        "Not Found",
        "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
    ),
    405: ("Method Not Allowed", "The method is not allowed for the requested URL."),
}


def expand_roles(names: tuple[str, ...]) -> tuple[str, ...]:
    """Assigned roles plus the roles they imply, as Keystone puts them in a token."""
    result: list[str] = []
    pending = list(names)
    while pending:
        name = pending.pop(0)
        if name not in result:
            result.append(name)
            pending.extend(IMPLIED_ROLES.get(name, ()))
    return tuple(result)


def _stable_id(*parts: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)).hex


class Keystone(Service):
    name = "identity"
    prefix = "/identity"

    def __init__(
        self,
        cloud: Cloud,
        volume_prefix: str,
        image_prefix: str,
        other_regions: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.cloud = cloud
        self.volume_prefix = volume_prefix
        self.image_prefix = image_prefix
        # Region name -> the path prefix of that region's glance-api (an edge site's):
        # the catalog lists an image endpoint and the one Cinder for each of them.
        self.other_regions = dict(other_regions or {})
        self.router.add("GET", r"/?", self.versions)
        self.router.add("GET", r"/v3/?", self.version)
        self.router.add("POST", r"/v3/auth/tokens", self.issue_token)
        self.router.add("GET", r"/v3/auth/tokens", self.validate_token)
        self.router.add("HEAD", r"/v3/auth/tokens", self.validate_token)
        self.router.add("DELETE", r"/v3/auth/tokens", self.revoke_token)

    def error(self, req: Request, status: int, message: str | None = None) -> Response:
        defaults = {
            401: UNAUTHENTICATED,
            404: "The resource could not be found.",
            405: "The method is not allowed for the requested URL.",
        }
        return keystone_error(
            status,
            message
            or defaults.get(
                status, "An unexpected error prevented the server from fulfilling your request."
            ),
        )

    def not_found(self, req: Request) -> Response:
        return self._flask_page(404)

    def method_not_allowed(self, req: Request, allowed: tuple[str, ...]) -> Response:
        response = self._flask_page(405)
        response.headers.append(("Allow", ", ".join(sorted({*allowed, "OPTIONS"}))))
        return response

    @staticmethod
    def _flask_page(status: int) -> Response:
        title, text = _FLASK_PAGES[status]
        page = f"<!doctype html>\n<html lang=en>\n<title>{status} {title}</title>\n<h1>{title}</h1>\n<p>{text}</p>\n"
        return Response(status, page.encode(), [("Content-Type", "text/html; charset=utf-8")])

    @staticmethod
    def _expecting(attribute: str, target: str) -> HttpError:
        """keystone.exception.ValidationError's wording."""
        return HttpError(
            keystone_error(400, f"Expecting to find {attribute} in {target}. {_CLIENT_ERROR}")
        )

    def handle(self, req: Request) -> Response:
        response = super().handle(req)
        response.set_header("Vary", "X-Auth-Token")
        return response

    def unauthorized(self, req: Request) -> HttpError:
        return HttpError(
            keystone_error(
                401, UNAUTHENTICATED, [("WWW-Authenticate", f'Keystone uri="{req.service_url}"')]
            )
        )

    # -- discovery ---------------------------------------------------------------------
    def _v3(self, req: Request) -> dict[str, Any]:
        return {
            **_V3,
            "links": [{"rel": "self", "href": f"{req.service_url}/v3/"}],
            "media-types": _MEDIA,
        }

    def versions(self, req: Request, _: dict[str, str]) -> Response:
        return Response.json(300, {"versions": {"values": [self._v3(req)]}})

    def version(self, req: Request, _: dict[str, str]) -> Response:
        return Response.json(200, {"version": self._v3(req)})

    # -- tokens ------------------------------------------------------------------------
    def issue_token(self, req: Request, _: dict[str, str]) -> Response:
        try:
            body = req.parse_json()
        except ValueError:
            raise self._expecting("valid JSON", "request body") from None
        if not isinstance(body, dict) or not isinstance(body.get("auth"), dict):
            raise self._expecting("auth", "request body")
        identity = body["auth"].get("identity")
        if not isinstance(identity, dict):
            raise self._expecting("identity", "auth")
        methods = identity.get("methods") or []
        if "password" in methods:
            user_id = self._password_user(req, identity.get("password", {}))
        elif "token" in methods:
            user_id = self._token_user(req, identity.get("token", {}))
        else:
            raise self.unauthorized(req)
        project_id = self._scope(req, user_id, body["auth"].get("scope"))
        token = self._issue(user_id, project_id, tuple(methods))
        headers = [("X-Subject-Token", token.id), ("Vary", "X-Auth-Token")]
        return Response.json(
            201, self.token_body(req, token, catalog=req.param("nocatalog") is None), headers
        )

    def _password_user(self, req: Request, password: Any) -> str:
        spec = password.get("user") if isinstance(password, dict) else None
        if not isinstance(spec, dict) or "password" not in spec:
            raise self.unauthorized(req)
        with self.cloud.lock:
            if "id" in spec:
                user = self.cloud.users.get(spec["id"])
            else:
                domain = spec.get("domain") or {}
                if (
                    domain.get("id", "default") != "default"
                    or domain.get("name", "Default") != "Default"
                ):
                    raise self.unauthorized(req)
                user = next(
                    (u for u in self.cloud.users.values() if u.name == spec.get("name")), None
                )
            # Keystone masks every credential error as the same 401.
            if user is None or not secrets.compare_digest(user.password, str(spec["password"])):
                raise self.unauthorized(req)
            return user.id

    def _token_user(self, req: Request, spec: Any) -> str:
        token = self.cloud.valid_token(spec.get("id") if isinstance(spec, dict) else None)
        if token is None:
            raise self.unauthorized(req)
        return token.user_id

    def _scope(self, req: Request, user_id: str, scope: Any) -> str | None:
        with self.cloud.lock:
            user = self.cloud.users[user_id]
            if not scope:
                # Keystone scopes to the default project when the request names none.
                return (
                    user.default_project_id
                    if (user_id, user.default_project_id) in self.cloud.assignments
                    else None
                )
            spec = scope.get("project") if isinstance(scope, dict) else None
            if not isinstance(spec, dict):
                raise self.unauthorized(req)
            if "id" in spec:
                project = self.cloud.projects.get(spec["id"])
            else:
                project = next(
                    (p for p in self.cloud.projects.values() if p.name == spec.get("name")), None
                )
            if project is None or (user_id, project.id) not in self.cloud.assignments:
                raise self.unauthorized(req)
            return project.id

    def _issue(self, user_id: str, project_id: str | None, methods: tuple[str, ...]) -> Token:
        issued = now().replace(microsecond=0)
        with self.cloud.lock:
            assigned = self.cloud.assignments.get((user_id, project_id), ()) if project_id else ()
            token = Token(
                id="gAAAAA" + secrets.token_urlsafe(96),
                user_id=user_id,
                project_id=project_id,
                roles=expand_roles(assigned),
                issued_at=issued,
                expires_at=issued + timedelta(seconds=self.cloud.config.token_ttl),
                audit_id=secrets.token_urlsafe(16)[:22],
                methods=methods,
            )
            self.cloud.tokens[token.id] = token
        return token

    def validate_token(self, req: Request, _: dict[str, str]) -> Response:
        if self.cloud.valid_token(req.headers.get("X-Auth-Token")) is None:
            raise self.unauthorized(req)
        subject_id = req.headers.get("X-Subject-Token", "")
        subject = self.cloud.valid_token(subject_id)
        if subject is None:
            raise HttpError(keystone_error(404, f"Could not find token: {subject_id}."))
        headers = [("X-Subject-Token", subject.id)]
        response = Response.json(
            200, self.token_body(req, subject, catalog=req.param("nocatalog") is None), headers
        )
        if req.method == "HEAD":
            response.body = b""
        return response

    def revoke_token(self, req: Request, _: dict[str, str]) -> Response:
        if self.cloud.valid_token(req.headers.get("X-Auth-Token")) is None:
            raise self.unauthorized(req)
        subject_id = req.headers.get("X-Subject-Token", "")
        with self.cloud.lock:
            if self.cloud.tokens.pop(subject_id, None) is None:
                raise HttpError(keystone_error(404, f"Could not find token: {subject_id}."))
        return Response.empty(204)

    def token_body(self, req: Request, token: Token, *, catalog: bool = True) -> dict[str, Any]:
        with self.cloud.lock:
            user = self.cloud.users[token.user_id]
            body: dict[str, Any] = {
                "methods": list(token.methods),
                "user": {
                    "domain": {"id": "default", "name": "Default"},
                    "id": user.id,
                    "name": user.name,
                    "password_expires_at": None,
                },
                "audit_ids": [token.audit_id],
                "expires_at": keystone_time(token.expires_at),
                "issued_at": keystone_time(token.issued_at),
            }
            if token.project_id:
                project = self.cloud.projects[token.project_id]
                body["project"] = {
                    "domain": {"id": "default", "name": "Default"},
                    "id": project.id,
                    "name": project.name,
                }
                body["is_domain"] = False
                body["roles"] = [
                    {"id": self.cloud.role_by_name(name).id, "name": name} for name in token.roles
                ]
                if catalog:
                    body["catalog"] = self.catalog(req.base_url, project.id)
        return {"token": body}

    def catalog(self, base_url: str, project_id: str) -> list[dict[str, Any]]:
        """The service catalog: devstack's path-prefix layout on one port."""
        volume_url = f"{base_url}{self.volume_prefix}/v3/{project_id}"
        services = [
            ("identity", "keystone", f"{base_url}{self.prefix}"),
            ("block-storage", "cinder", volume_url),
            ("volumev3", "cinderv3", volume_url),
            ("image", "glance", f"{base_url}{self.image_prefix}"),
        ]
        catalog: list[dict[str, Any]] = [
            {
                "endpoints": [
                    {
                        "id": _stable_id(base_url, kind, "public", project_id),
                        "interface": "public",
                        "region": REGION,
                        "region_id": REGION,
                        "url": url,
                    }
                ],
                "id": _stable_id(base_url, kind),
                "type": kind,
                "name": name,
            }
            for kind, name, url in services
        ]
        for region, image_prefix in self.other_regions.items():
            for service in catalog:
                url = (
                    f"{base_url}{image_prefix}"
                    if service["type"] == "image"
                    else service["endpoints"][0]["url"]
                )
                service["endpoints"].append(
                    {
                        "id": _stable_id(base_url, service["type"], "public", project_id, region),
                        "interface": "public",
                        "region": region,
                        "region_id": region,
                        "url": url,
                    }
                )
        return catalog
