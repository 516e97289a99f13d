"""A glance-api paste filter that records Cinder's base-image header as a volimg stamp.

Cinder names a new image's base image only in the ``x-openstack-base-image-ref`` header
of the data upload (cinder/image/glance.py, ``upload``); Glance ignores it (the string
appears nowhere in glance/). This filter sits after ``context`` in glance-api's keystone
pipeline and, after a successful ``PUT /v2/images/<id>/file`` carrying that header,
writes the provenance stamp (``volimg.provenance``) on the image through Glance's own
image repository, with the uploader's own request context. ``volimg audit --fix`` then
places the image like any other stamped one, whoever uploaded it (Horizon, the
openstack CLI, Nova).

Loaded only inside glance-api (``paste.filter_factory =
volimg.glance_filter:filter_factory``); the CLI never imports it. At import time it
needs only the standard library and ``volimg.provenance``; Glance is imported on the
first stamp, so volimg needs no dependency inside glance-api's environment.

Safety: the upload's response (status, headers, body) is returned as the app made it,
and the stamp is written in the response's ``close()``, which every WSGI server calls
when it is done with the response (PEP 3333); uWSGI, which the real test tier runs,
calls it after the answer has gone, so Glance's answer to the uploader does not wait
for the stamp. One image save through Glance's repository costs a median 17 ms of the
worker's time there; docs/glance-filter.md quotes the measurements and the price, a
stamp that lands some milliseconds after the uploader's 204. Any failure is logged
with the request id and swallowed; ``os_glance*`` keys are never written.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Protocol

from volimg import provenance

LOG = logging.getLogger(__name__)

#: The data upload, as the filter sees it after ``versionnegotiation`` (glance/api/v2/router.py).
UPLOAD_PATH = re.compile(r"^/v2/images/(?P<image_id>[^/]+)/file$")
BASE_IMAGE_HEADER = "HTTP_X_OPENSTACK_BASE_IMAGE_REF"  # x-openstack-base-image-ref
STORE_HEADER = "HTTP_X_IMAGE_META_STORE"  # x-image-meta-store

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class GlanceImage(Protocol):
    """The part of Glance's domain image (glance/domain/__init__.py) the filter uses."""

    @property
    def extra_properties(self) -> MutableMapping[str, str]: ...

    @property
    def tags(self) -> Any: ...  # a set (or Glance's quota proxy of one): .add(tag)


class ImageRepo(Protocol):
    """The part of Glance's image repository (``Gateway().get_repo(context)``) it uses."""

    def get(self, image_id: str) -> GlanceImage: ...

    def save(self, image: GlanceImage) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Upload:
    """A data upload that carried Cinder's base-image header."""

    image_id: str
    base_image: str
    type_store: str | None  # x-image-meta-store: the volume type's store, if any


class Outcome(str, Enum):
    """What the filter did with one successful upload (logged)."""

    STAMPED = "stamped"
    BASE_NOT_VISIBLE = "base image not visible to the uploader"
    KEPT_OWN_STAMP = "kept the image's own volimg stamp"


def upload_of(environ: MutableMapping[str, Any]) -> Upload | None:
    """The upload this request is, or None when the filter has nothing to do with it."""
    if environ.get("REQUEST_METHOD") != "PUT":
        return None
    match = UPLOAD_PATH.match(environ.get("PATH_INFO", ""))
    base = (environ.get(BASE_IMAGE_HEADER) or "").strip()
    if match is None or not base:
        return None
    image_id = match.group("image_id")
    # Glance image ids are UUIDs; anything else in the header is not Cinder's.
    if not (_is_uuid(image_id) and _is_uuid(base)) or base == image_id:
        return None
    store = (environ.get(STORE_HEADER) or "").strip()
    return Upload(image_id=image_id, base_image=base, type_store=store or None)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def is_success(status: str | None) -> bool:
    """A WSGI status line such as ``204 No Content`` is 2xx."""
    return status is not None and status[:1] == "2" and status[:3].isdigit()


def keeps_existing(image_id: str, properties: MutableMapping[str, str]) -> bool:
    """True when the image already carries its own stamp that is not the filter's.

    ``volimg upload`` stamps its own image (or ``volimg adopt`` one) once Cinder's
    upload is over; that stamp knows more (source volume, prune, also-stores) and stays.
    (When the filter is first, volimg's later stamp replaces the filter's.) A stamp
    whose ``volimg_image`` names another image was inherited: Cinder copies a base
    image's custom properties to the images made from its volumes, so it is replaced.
    """
    if properties.get(provenance.KEY_IMAGE) != image_id:
        return False
    return properties.get(provenance.KEY_STAMPED_BY) != provenance.StampedBy.GLANCE_FILTER.value


def stamp_properties(upload: Upload, now: datetime) -> dict[str, str]:
    """The provenance properties the filter writes for one upload."""
    return provenance.Stamp(
        image_id=upload.image_id,
        stamped_by=provenance.StampedBy.GLANCE_FILTER,
        stamped_at=provenance.stamp_time(now),
        source_volume=None,
        base_image=upload.base_image,
        type_store=upload.type_store,
        rule=provenance.Rule.TYPE_STORE if upload.type_store else provenance.Rule.BASE_STORES,
        prune=False,
    ).properties()


def stamp(
    repo: ImageRepo,
    upload: Upload,
    now: datetime,
    not_visible: tuple[type[BaseException], ...],
) -> Outcome:
    """Stamp the uploaded image if its base image is visible to the repo's context.

    ``not_visible`` are the exceptions ``repo.get`` raises for an image the caller
    cannot see (Glance: ``NotFound``, ``Forbidden``); any other error propagates.
    """
    try:
        repo.get(upload.base_image)
    except not_visible:
        return Outcome.BASE_NOT_VISIBLE
    image = repo.get(upload.image_id)
    if keeps_existing(upload.image_id, image.extra_properties):
        return Outcome.KEPT_OWN_STAMP
    wanted = stamp_properties(upload, now)
    for key in provenance.STAMP_KEYS:  # an inherited stamp's extra keys are not ours
        if key not in wanted:
            image.extra_properties.pop(key, None)
    for key, value in wanted.items():
        image.extra_properties[key] = value
    image.tags.add(provenance.TAG)
    repo.save(image)
    return Outcome.STAMPED


RepoFactory = Callable[[Any], tuple[ImageRepo, tuple[type[BaseException], ...]]]


class _GlanceRepos:
    """Glance's image repository for a request context, built on first use.

    Imported lazily: this module must load without Glance (unit tests, the CLI's
    environment). ``Gateway()`` builds a notifier and a policy enforcer, so one is kept.
    """

    def __init__(self) -> None:
        self._gateway: Any = None

    def __call__(self, context: Any) -> tuple[ImageRepo, tuple[type[BaseException], ...]]:
        import glance.gateway  # type: ignore[import-not-found]
        from glance.common import exception  # type: ignore[import-not-found]

        if self._gateway is None:
            self._gateway = glance.gateway.Gateway()
        return self._gateway.get_repo(context), (exception.NotFound, exception.Forbidden)


class ThenStamp:
    """The app's response body as it is; ``then`` runs once, when the server closes it.

    Every WSGI server calls ``close()`` when it is done with a response (PEP 3333);
    uWSGI calls it after the answer has been sent (the real tier's measurement), so the
    uploader has Glance's answer before the stamp's database work starts, and the same
    worker writes it straight after. The body's own ``close()`` runs first, as the
    server would have called it. A server or middleware that never calls ``close()``
    gets no stamp (and no log line).
    """

    def __init__(self, body: Iterable[bytes], then: Callable[[], None]) -> None:
        self._body = body
        self._then = then
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        if self._closed:  # a second close() must not save the image again
            return
        self._closed = True
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._then()


class StampFilter:
    """The WSGI middleware: pass every request through; stamp after a good upload."""

    def __init__(
        self,
        app: WSGIApp,
        repos: RepoFactory,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.app = app
        self.repos = repos
        self.clock = clock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        upload = upload_of(environ)
        if upload is None:
            return self.app(environ, start_response)
        answered: list[str] = []

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            answered.append(status)
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        body = self.app(environ, recording_start_response)
        # Glance's webob apps call start_response before returning the body; an app
        # that answers lazily leaves ``answered`` empty and is not stamped.
        if not (answered and is_success(answered[-1])):
            return body

        def stamp_if_still_successful() -> None:
            # The app may answer again (start_response with exc_info) while its body
            # is sent: only the last answer counts.
            if is_success(answered[-1]):
                self._stamp_quietly(environ, upload)

        return ThenStamp(body, stamp_if_still_successful)

    def _stamp_quietly(self, environ: dict[str, Any], upload: Upload) -> None:
        context = environ.get("webob.adhoc_attrs", {}).get("context")  # req.context
        request_id = getattr(context, "request_id", None) or "-"
        if context is None:
            LOG.warning(
                "volimg_stamp: no request context for image %s (request %s): place the"
                " filter after 'context' in the pipeline",
                upload.image_id,
                request_id,
            )
            return
        started = time.perf_counter()
        try:
            repo, not_visible = self.repos(context)
            outcome = stamp(repo, upload, self.clock(), not_visible)
        # The contract is that the upload succeeds whatever happens here: any error
        # is reported and swallowed.
        except Exception as exc:  # noqa: BLE001
            LOG.warning(
                "volimg_stamp: could not stamp image %s with base image %s (request %s): %s: %s",
                upload.image_id,
                upload.base_image,
                request_id,
                type(exc).__name__,
                exc,
            )
            return
        LOG.info(
            "volimg_stamp: image %s, base image %s, store %s: %s in %.1f ms (request %s)",
            upload.image_id,
            upload.base_image,
            upload.type_store or "-",
            outcome.value,
            (time.perf_counter() - started) * 1000,
            request_id,
        )


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_enabled(value: str) -> bool:
    """The ``enabled`` key of the paste section; a typo stops glance-api from loading."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"volimg_stamp: enabled = {value!r}: use true or false")


def filter_factory(global_conf: dict[str, str], **local_conf: str) -> Callable[[WSGIApp], WSGIApp]:
    """paste.deploy's filter factory: ``[filter:volimg_stamp]`` calls this.

    ``enabled = false`` in the section returns the next app itself: no code of the
    filter runs on any request.
    """
    enabled = parse_enabled(local_conf.get("enabled", "true"))
    repos = _GlanceRepos()

    def wrap(app: WSGIApp) -> WSGIApp:
        if not enabled:
            LOG.info("volimg_stamp: disabled (enabled = false)")
            return app
        return StampFilter(app, repos)

    return wrap
