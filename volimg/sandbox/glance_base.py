"""What every Glance controller shares: errors in webob's shape, the policy checks
(visibility, ownership, `ImageAPIPolicy._enforce`), the image lookup and body parsing.

The controllers (`glance_images.py`, `glance_image_update.py`, `glance_image_data.py`,
`glance_import_api.py`, `glance_stores.py`) are mixins of this class; `glance.py`
composes them into `Glance` and owns the pipeline and the routes, as
glance/api/v2/router.py does upstream.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from volimg.sandbox.errors import webob_error
from volimg.sandbox.glance_import import ImportRunner
from volimg.sandbox.http import HttpError, Request, Response
from volimg.sandbox.service import Service
from volimg.sandbox.state import Cloud, Image, Token

_NOT_FOUND = "No image found with ID {}"


def forbidden_action(action: str) -> str:
    """oslo.policy's PolicyNotAuthorized text as Glance words it."""
    return f"You are not authorized to complete {action} action."


class GlanceBase(Service):
    """The helpers the controllers call on `self`; `Glance.__init__` sets the attributes."""

    cloud: Cloud
    runner: ImportRunner
    # The stores this glance-api node has in its enabled_backends; None: every store of
    # the cloud. A second region's (edge) endpoint knows fewer (`Sandbox(image_regions=)`).
    known_stores: tuple[str, ...] | None = None

    def knows_store(self, store_id: str) -> bool:
        """The store is configured on this node (it exists, and this node lists it)."""
        return store_id in self.cloud.stores and (
            self.known_stores is None or store_id in self.known_stores
        )

    def default_store_here(self) -> str | None:
        """This node's default_backend: the cloud's, or its first store when it lacks it."""
        default = self.cloud.default_store
        if default is not None and self.knows_store(default):
            return default
        return next((s for s in self.cloud.stores if self.knows_store(s)), None)

    @abstractmethod
    def image_document(self, image: Image) -> dict[str, Any]:
        """An image as the API shows it; `Glance` (glance.py) decides which view."""

    def error(self, req: Request, status: int, message: str | None = None) -> Response:
        return webob_error(req, status, message)

    def fail(
        self, req: Request, status: int, message: str | None = None, **kwargs: Any
    ) -> HttpError:
        return HttpError(webob_error(req, status, message, **kwargs))

    @staticmethod
    def visible(token: Token, image: Image) -> bool:
        """The DB layer's visibility rule (no image members in the sandbox)."""
        if token.is_admin or image.owner == token.project_id:
            return True
        return image.visibility in ("public", "community")

    @staticmethod
    def owns(token: Token, image: Image) -> bool:
        """`ADMIN_OR_PROJECT_MEMBER` against the image owner (modify/upload/delete)."""
        return token.is_admin or ("member" in token.roles and image.owner == token.project_id)

    def _get(self, req: Request, image_id: str) -> Image:
        assert req.token is not None
        image = self.cloud.images.get(image_id)
        if image is None or not self.visible(req.token, image):
            raise self.fail(req, 404, _NOT_FOUND.format(image_id))
        return image

    def _enforce(self, req: Request, image: Image, action: str, allowed: bool) -> None:
        """ImageAPIPolicy._enforce: Forbidden, or NotFound if the image is not visible."""
        assert req.token is not None
        if allowed:
            return
        if not self.visible(req.token, image):
            raise self.fail(req, 404)
        raise self.fail(req, 403, forbidden_action(action))

    def _body(self, req: Request) -> Any:
        if not req.body:
            raise self.fail(req, 400, "Body expected in request.")
        try:
            return req.parse_json()
        except ValueError:
            raise self.fail(req, 400, "Malformed JSON in request body.") from None
