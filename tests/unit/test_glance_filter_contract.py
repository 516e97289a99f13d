"""The Glance filter as WSGI middleware, and the log lines docs/glance-filter.md shows.

tests/unit/test_glance_filter.py holds its decisions; these pin what its tests left
open (each was a surviving mutant of the ``glance_filter`` mutation target,
docs/testing.md): the app below gets the request as it came and the server gets the
app's answer as it was given, ``exc_info`` included; a request without ``PATH_INFO``
or without webob's attributes passes; each decision's log line reads as the doc shows
it, with the time it took in milliseconds.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from tests.unit.test_glance_filter import (
    BASE,
    HEADERS,
    IMAGE,
    Downstream,
    NotVisible,
    make_repo,
    run_filter,
    upload_environ,
)
from volimg import glance_filter
from volimg.glance_filter import StampFilter, filter_factory, upload_of


class Recording:
    """The app below the filter: records the environ it was called with."""

    def __init__(self, exc_info: bool = False) -> None:
        self.environs: list[dict[str, Any]] = []
        self.exc_info = exc_info

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.environs.append(environ)
        if self.exc_info:
            try:
                raise OSError("disk full")
            except OSError:
                start_response("500 Internal Server Error", [("X", "1")], sys.exc_info())
        else:
            start_response("204 No Content", [("X", "1")])
        return [b""]


@pytest.mark.parametrize(
    "environ", [upload_environ(), upload_environ(REQUEST_METHOD="GET")], ids=["upload", "other"]
)
def test_the_app_below_gets_the_request_as_it_came(environ: dict[str, Any]) -> None:
    app = Recording()
    body = StampFilter(app, lambda context: (make_repo(), (NotVisible,)))(environ, lambda *a: None)
    list(body)
    assert app.environs == [environ]
    assert app.environs[0] is environ


def test_the_server_gets_the_apps_answer_exc_info_and_all() -> None:
    given: list[tuple[Any, ...]] = []

    def start_response(*args: Any) -> None:
        given.append(args)

    for app in (Recording(exc_info=False), Recording(exc_info=True)):
        StampFilter(app, lambda context: (make_repo(), (NotVisible,)))(
            upload_environ(), start_response
        )
    assert given[0] == ("204 No Content", [("X", "1")])
    status, headers, exc_info = given[1]
    assert (status, headers) == ("500 Internal Server Error", [("X", "1")])
    assert isinstance(exc_info[1], OSError)


def test_a_request_without_path_info_is_not_an_upload() -> None:
    """PEP 3333: PATH_INFO may be missing for a request to the application's root."""
    environ = upload_environ()
    del environ["PATH_INFO"]
    assert upload_of(environ) is None


def test_without_webobs_attributes_it_says_where_the_filter_belongs(caplog: Any) -> None:
    environ = upload_environ()
    del environ["webob.adhoc_attrs"]
    with caplog.at_level(logging.WARNING, logger="volimg.glance_filter"):
        answers, _, asked = run_filter(make_repo(), environ)
    assert asked == []
    assert answers[0] == ("204 No Content", HEADERS)
    assert caplog.messages == [
        f"volimg_stamp: no request context for image {IMAGE} (request -): place the filter "
        "after 'context' in the pipeline"
    ]


@pytest.fixture
def a_stamp_takes_100_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([100.0, 100.1])
    monkeypatch.setattr(glance_filter.time, "perf_counter", lambda: next(ticks))


@pytest.mark.usefixtures("a_stamp_takes_100_ms")
@pytest.mark.parametrize(
    ("store", "shown"), [(None, "-"), ("archive", "archive")], ids=["no-store", "type-store"]
)
def test_each_stamp_is_one_log_line_as_the_doc_shows_it(
    store: str | None, shown: str, caplog: Any
) -> None:
    environ = upload_environ(HTTP_X_IMAGE_META_STORE=store)
    with caplog.at_level(logging.INFO, logger="volimg.glance_filter"):
        run_filter(make_repo(), environ)
    assert caplog.messages == [
        f"volimg_stamp: image {IMAGE}, base image {BASE}, store {shown}: stamped in 100.0 ms "
        "(request req-4c1d)"
    ]


def test_a_failure_is_one_warning_line_as_the_doc_shows_it(caplog: Any) -> None:
    repo = make_repo()
    repo.fail_on = "save"
    with caplog.at_level(logging.INFO, logger="volimg.glance_filter"):
        run_filter(repo, upload_environ())
    assert caplog.messages == [
        f"volimg_stamp: could not stamp image {IMAGE} with base image {BASE} (request "
        "req-4c1d): RuntimeError: database is locked"
    ]
    assert caplog.records[0].levelno == logging.WARNING


def test_the_factorys_filter_passes_requests_to_the_next_app_and_reads_glances_repos() -> None:
    app = Downstream()
    wrapped = filter_factory({}, enabled="true")(app)
    assert isinstance(wrapped, StampFilter)
    assert wrapped.app is app
    assert isinstance(wrapped.repos, glance_filter._GlanceRepos)
    list(wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": "/v2/images"}, lambda *a: None))
    assert app.calls == 1
