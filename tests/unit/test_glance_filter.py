"""The Glance paste filter's decisions, without Glance.

The fake repository has the small interface the filter uses of Glance's own image
repository (``get``/``save``, images with ``extra_properties`` and ``tags``); the
real tier (tests/scenarios/test_glance_filter_real.py) runs the filter inside Glance 33.
"""

from __future__ import annotations

import logging
import re
import shutil
import string
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from volimg import provenance
from volimg.glance_filter import StampFilter, filter_factory, parse_enabled

IMAGE = "11111111-2222-4333-8444-555555555555"
BASE = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
OTHER = "99999999-8888-4777-8666-555555555555"
NOW = datetime(2026, 11, 30, 6, 0, 5, tzinfo=timezone.utc)
BODY = [b""]
HEADERS = [("Content-Type", "text/html; charset=UTF-8"), ("x-openstack-request-id", "req-1")]


class NotVisible(Exception):
    """Stands for glance.common.exception.NotFound."""


@dataclass
class FakeImage:
    extra_properties: dict[str, str] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)


@dataclass
class FakeRepo:
    """Glance's ImageRepo for one context: get raises for what the context cannot see."""

    images: dict[str, FakeImage]
    visible: set[str]
    saved: list[str] = field(default_factory=list)
    fail_on: str = ""  # "get" or "save": an unexpected error there

    def get(self, image_id: str) -> FakeImage:
        if self.fail_on == "get":
            raise RuntimeError("database is locked")
        if image_id not in self.visible or image_id not in self.images:
            raise NotVisible(image_id)
        return self.images[image_id]

    def save(self, image: FakeImage) -> None:
        if self.fail_on == "save":
            raise RuntimeError("database is locked")
        self.saved.append(next(k for k, v in self.images.items() if v is image))


@dataclass
class Context:
    request_id: str = "req-4c1d"


@dataclass
class Downstream:
    """Glance's app below the filter: answers like webob (start_response, then body)."""

    status: str = "204 No Content"
    calls: int = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls += 1
        start_response(self.status, list(HEADERS))
        return BODY


def upload_environ(**overrides: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "PUT",
        "PATH_INFO": f"/v2/images/{IMAGE}/file",
        "HTTP_X_OPENSTACK_BASE_IMAGE_REF": BASE,
        "webob.adhoc_attrs": {"context": Context()},
    }
    environ.update(overrides)
    return {k: v for k, v in environ.items() if v is not None}


def make_repo(**image_props: str) -> FakeRepo:
    return FakeRepo(
        images={IMAGE: FakeImage(dict(image_props)), BASE: FakeImage()},
        visible={IMAGE, BASE},
    )


def call(app: Any, environ: dict[str, Any]) -> tuple[list[Any], Any]:
    """Serve one request as a WSGI server does: call, send the body, then close it."""
    answers: list[Any] = []
    body = app(environ, lambda status, headers, exc_info=None: answers.append((status, headers)))
    sent = list(body)
    answers.append(("sent", sent))
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return answers, body


def run_filter(
    repo: FakeRepo, environ: dict[str, Any], status: str = "204 No Content"
) -> tuple[list[Any], Any, list[Any]]:
    """Run one request through the filter; returns the answer, body and repo requests."""
    asked: list[Any] = []

    def repos(context: Any) -> tuple[FakeRepo, tuple[type[BaseException], ...]]:
        asked.append(context)
        return repo, (NotVisible,)

    answers, body = call(StampFilter(Downstream(status), repos, clock=lambda: NOW), environ)
    return answers, body, asked


def expected_stamp(type_store: str | None = None) -> dict[str, str]:
    return provenance.Stamp(
        image_id=IMAGE,
        stamped_by=provenance.StampedBy.GLANCE_FILTER,
        stamped_at=provenance.stamp_time(NOW),
        source_volume=None,
        base_image=BASE,
        type_store=type_store,
        rule=provenance.Rule.TYPE_STORE if type_store else provenance.Rule.BASE_STORES,
        prune=False,
    ).properties()


# -- when it stamps -------------------------------------------------------------------


def test_the_stamp_is_written_only_once_the_server_has_sent_the_answer() -> None:
    """The uploader's 204 never waits for the stamp's database work."""
    repo = make_repo()
    answers: list[Any] = []
    app = StampFilter(Downstream(), lambda context: (repo, (NotVisible,)), clock=lambda: NOW)
    body = app(upload_environ(), lambda status, headers, exc_info=None: answers.append(status))
    assert answers == ["204 No Content"]
    assert list(body) == BODY
    assert repo.saved == []  # answered and sent, not yet stamped
    body.close()
    assert repo.saved == [IMAGE]
    assert repo.images[IMAGE].extra_properties == expected_stamp()


def test_a_second_close_does_not_save_the_image_again() -> None:
    repo = make_repo()
    app = StampFilter(Downstream(), lambda context: (repo, (NotVisible,)), clock=lambda: NOW)
    body = app(upload_environ(), lambda *args: None)
    list(body)
    body.close()
    body.close()
    assert repo.saved == [IMAGE]


def test_an_error_answered_while_the_body_is_sent_is_not_stamped() -> None:
    """The app answers 204, then fails while its body is sent and answers again."""
    repo = make_repo()

    def downstream(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("204 No Content", [])

        def body() -> Any:
            yield b""
            try:
                raise OSError("store went away")
            except OSError:
                start_response("500 Internal Server Error", [], sys.exc_info())

        return body()

    app = StampFilter(downstream, lambda context: (repo, (NotVisible,)), clock=lambda: NOW)
    body = app(upload_environ(), lambda *args: None)
    list(body)
    body.close()
    assert repo.saved == []


@dataclass
class ClosingBody:
    """A response body with its own close(), as webob's and Glance's can have."""

    events: list[str]
    fail: bool = False

    def __iter__(self) -> Any:
        return iter(BODY)

    def close(self) -> None:
        self.events.append("body closed")
        if self.fail:
            raise OSError("client went away")


@pytest.mark.parametrize("fail", [False, True], ids=["closes", "close-raises"])
def test_the_apps_own_close_runs_first_and_the_stamp_still_follows(fail: bool) -> None:
    events: list[str] = []
    repo = make_repo()
    original_save = repo.save

    def save(image: FakeImage) -> None:
        events.append("stamped")
        original_save(image)

    repo.save = save  # type: ignore[method-assign]

    def downstream(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("204 No Content", [])
        return ClosingBody(events, fail=fail)

    body = StampFilter(downstream, lambda context: (repo, (NotVisible,)))(
        upload_environ(), lambda *args: None
    )
    assert list(body) == BODY
    if fail:
        with pytest.raises(OSError, match="client went away"):
            body.close()
    else:
        body.close()
    assert events == ["body closed", "stamped"]


def test_a_successful_upload_with_the_header_is_stamped_and_tagged() -> None:
    repo = make_repo(os_distro="cirros")
    run_filter(repo, upload_environ())
    image = repo.images[IMAGE]
    assert image.extra_properties == {"os_distro": "cirros", **expected_stamp()}
    assert image.tags == {provenance.TAG}
    assert repo.saved == [IMAGE]
    assert provenance.Stamp.from_properties(IMAGE, image.extra_properties) is not None


def test_the_store_header_makes_it_the_type_store_rule() -> None:
    repo = make_repo()
    run_filter(repo, upload_environ(HTTP_X_IMAGE_META_STORE="archive"))
    props = repo.images[IMAGE].extra_properties
    assert props == expected_stamp("archive")
    assert props[provenance.KEY_RULE] == provenance.Rule.TYPE_STORE.value


def test_it_uses_the_uploaders_own_context() -> None:
    context = Context("req-member")
    _, _, asked = run_filter(
        make_repo(), upload_environ(**{"webob.adhoc_attrs": {"context": context}})
    )
    assert asked == [context]


@pytest.mark.parametrize(
    "overrides",
    [
        {"REQUEST_METHOD": "GET"},
        {"REQUEST_METHOD": "POST"},
        {"REQUEST_METHOD": "PATCH"},
        {"PATH_INFO": f"/v2/images/{IMAGE}/stage"},
        {"PATH_INFO": f"/v2/images/{IMAGE}"},
        {"PATH_INFO": f"/v2/images/{IMAGE}/file/more"},
        {"PATH_INFO": f"/v1/images/{IMAGE}/file"},
        {"PATH_INFO": "/v2/images/not-a-uuid/file"},
        {"HTTP_X_OPENSTACK_BASE_IMAGE_REF": None},
        {"HTTP_X_OPENSTACK_BASE_IMAGE_REF": ""},
        {"HTTP_X_OPENSTACK_BASE_IMAGE_REF": "not-a-uuid"},
        {"HTTP_X_OPENSTACK_BASE_IMAGE_REF": IMAGE},  # an image cannot be its own base
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_other_requests_pass_through_untouched(overrides: dict[str, Any]) -> None:
    repo = make_repo()
    answers, body, asked = run_filter(repo, upload_environ(**overrides))
    assert asked == []
    assert repo.saved == []
    assert answers == [("204 No Content", HEADERS), ("sent", BODY)]
    assert body is BODY


@pytest.mark.parametrize(
    "status", ["400 Bad Request", "403 Forbidden", "409 Conflict", "413 Too Large", "500 Error"]
)
def test_a_failed_upload_is_not_stamped(status: str) -> None:
    repo = make_repo()
    answers, _, asked = run_filter(repo, upload_environ(), status=status)
    assert asked == []
    assert repo.saved == []
    assert answers[0][0] == status


def test_a_base_image_the_uploader_cannot_see_is_not_recorded(caplog: Any) -> None:
    repo = make_repo()
    repo.visible.discard(BASE)
    with caplog.at_level(logging.INFO, logger="volimg.glance_filter"):
        run_filter(repo, upload_environ())
    assert repo.saved == []
    assert repo.images[IMAGE].extra_properties == {}
    assert repo.images[IMAGE].tags == set()
    assert re.search(
        r"base image not visible to the uploader in [0-9.]+ ms \(request req-4c1d\)", caplog.text
    )


def test_a_deleted_base_image_is_not_recorded() -> None:
    repo = make_repo()
    del repo.images[BASE]
    run_filter(repo, upload_environ())
    assert repo.saved == []


# -- an image that already carries a stamp ----------------------------------------------


def own_stamp(by: provenance.StampedBy, **extra: Any) -> dict[str, str]:
    return provenance.Stamp(
        image_id=IMAGE,
        stamped_by=by,
        stamped_at="2026-11-30T05:59:59Z",
        source_volume="vol-1",
        base_image=BASE,
        type_store=None,
        rule=provenance.Rule.BASE_STORES,
        **extra,
    ).properties()


@pytest.mark.parametrize("by", [provenance.StampedBy.UPLOAD, provenance.StampedBy.ADOPT])
def test_volimgs_own_stamp_on_this_image_is_kept(by: provenance.StampedBy) -> None:
    stamp = own_stamp(by, prune=True, also_stores=("cheap",))
    repo = make_repo(**stamp)
    run_filter(repo, upload_environ())
    assert repo.images[IMAGE].extra_properties == stamp
    assert repo.saved == []


def test_an_inherited_stamp_is_replaced_whole() -> None:
    """Cinder copied an ancestor image's stamp: none of its keys may survive as ours."""
    inherited = provenance.Stamp(
        image_id=OTHER,
        stamped_by=provenance.StampedBy.UPLOAD,
        stamped_at="2026-01-01T00:00:00Z",
        source_volume="vol-ancestor",
        base_image=None,
        type_store="cheap",
        rule=provenance.Rule.TYPE_STORE,
        prune=True,
        also_stores=("archive",),
        period="2026-01-01",
    ).properties()
    repo = make_repo(os_distro="cirros", **inherited)
    run_filter(repo, upload_environ())
    assert repo.images[IMAGE].extra_properties == {"os_distro": "cirros", **expected_stamp()}
    assert repo.saved == [IMAGE]


def test_the_filters_own_earlier_stamp_is_rewritten() -> None:
    repo = make_repo(**own_stamp(provenance.StampedBy.GLANCE_FILTER))
    run_filter(repo, upload_environ())
    assert repo.images[IMAGE].extra_properties == expected_stamp()


def test_os_glance_properties_are_left_as_they_are() -> None:
    reserved = {"os_glance_import_task": "task-1", "os_glance_failed_import": ""}
    repo = make_repo(**reserved)
    run_filter(repo, upload_environ())
    props = repo.images[IMAGE].extra_properties
    assert {k: props[k] for k in reserved} == reserved
    assert not [k for k in expected_stamp() if k.startswith("os_glance")]


# -- failures never reach the uploader --------------------------------------------------


def _broken_repos(context: Any) -> Any:
    raise RuntimeError("no database configured")


@pytest.mark.parametrize("where", ["repos", "get", "save"])
def test_a_failure_inside_leaves_the_uploads_status_headers_and_bytes_as_they_were(
    where: str, caplog: Any
) -> None:
    downstream = Downstream()
    plain_answers, plain_body = call(downstream, upload_environ())
    repo = make_repo()
    repo.fail_on = where

    def repos(context: Any) -> tuple[FakeRepo, tuple[type[BaseException], ...]]:
        if where == "repos":
            _broken_repos(context)
        return repo, (NotVisible,)

    with caplog.at_level(logging.WARNING, logger="volimg.glance_filter"):
        answers, body = call(StampFilter(downstream, repos), upload_environ())
    assert answers == plain_answers == [("204 No Content", HEADERS), ("sent", BODY)]
    assert list(body) == list(plain_body) == BODY
    assert repo.saved == []
    assert f"could not stamp image {IMAGE} with base image {BASE} (request req-4c1d)" in (
        caplog.text
    )
    assert "RuntimeError" in caplog.text


def test_without_a_request_context_it_says_where_the_filter_belongs(caplog: Any) -> None:
    repo = make_repo()
    with caplog.at_level(logging.WARNING, logger="volimg.glance_filter"):
        answers, _, asked = run_filter(repo, upload_environ(**{"webob.adhoc_attrs": {}}))
    assert asked == []
    assert answers == [("204 No Content", HEADERS), ("sent", BODY)]
    assert "after 'context'" in caplog.text


def test_an_app_that_answers_lazily_is_passed_through() -> None:
    def lazy(environ: dict[str, Any], start_response: Any) -> Any:
        yield b""  # start_response only once the body is iterated
        start_response("204 No Content", [])

    asked: list[Any] = []
    app = StampFilter(lazy, lambda context: asked.append(context) or (make_repo(), ()))
    call(app, upload_environ())
    assert asked == []


# -- the paste factory -------------------------------------------------------------------


def test_the_factory_wraps_the_next_app_when_enabled() -> None:
    downstream = Downstream()
    assert isinstance(filter_factory({}, enabled="true")(downstream), StampFilter)
    assert isinstance(filter_factory({})(downstream), StampFilter)  # on by default


@pytest.mark.parametrize("value", ["false", "False", "no", "off", "0"])
def test_enabled_false_returns_the_next_app_itself(value: str) -> None:
    downstream = Downstream()
    assert filter_factory({}, enabled=value)(downstream) is downstream


def test_a_typo_in_enabled_stops_glance_api_from_loading_with_the_reason() -> None:
    with pytest.raises(ValueError, match="enabled = 'ture': use true or false"):
        parse_enabled("ture")


# -- what it imports ----------------------------------------------------------------------


def _modules_after(code: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(proc.stdout.split())


def test_the_filter_imports_only_the_stdlib_and_volimg_provenance() -> None:
    modules = _modules_after("import volimg.glance_filter")
    ours = {m for m in modules if m.split(".")[0] == "volimg"}
    assert ours == {"volimg", "volimg.provenance", "volimg.glance_filter"}
    third_party = {"glance", "webob", "click", "openstack", "rich", "tenacity", "keystoneauth1"}
    assert not {m for m in modules if m.split(".")[0] in third_party}
    added = {m.split(".")[0] for m in modules - _modules_after("pass")}
    assert not added - set(sys.stdlib_module_names) - {"volimg"}


def test_the_cli_never_imports_the_filter() -> None:
    assert "volimg.glance_filter" not in _modules_after("import volimg.cli, volimg.__main__")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "volimg", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "volimg.cli" in proc.stderr
    assert "volimg.glance_filter" not in proc.stderr


# -- docs/glance-filter.md's claims -----------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = ROOT / "docs" / "glance-filter.md"
PASTE_TEMPLATE = ROOT / "tests" / "realcloud" / "templates" / "glance-api-paste.ini"


def _doc_paste_block() -> list[str]:
    blocks = re.findall(r"```ini\n(.*?)```", DOC.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "[composite:api]" in b]
    return [line for line in block.splitlines() if line.strip()]


def test_the_docs_paste_lines_are_the_real_tiers() -> None:
    template = string.Template(PASTE_TEMPLATE.read_text()).safe_substitute(
        glance_filter_enabled="true"
    )
    template_lines = template.splitlines()
    doc_lines = _doc_paste_block()
    assert [line for line in doc_lines if line not in template_lines] == []
    pipelines = [line for line in template_lines if line.startswith("keystone")]
    assert len(pipelines) == 3
    assert all(line in doc_lines for line in pipelines)
    assert all(" context volimg_stamp " in line for line in pipelines)


def test_the_three_files_the_doc_names_are_enough_without_site_packages(tmp_path: Path) -> None:
    named = re.findall(r"`(volimg/[a-z_]+\.py)`", DOC.read_text())
    assert sorted(set(named)) == [
        "volimg/__init__.py",
        "volimg/glance_filter.py",
        "volimg/provenance.py",
    ]
    (tmp_path / "volimg").mkdir()
    for name in set(named):
        shutil.copy(ROOT / name, tmp_path / name)
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import volimg.glance_filter as f;"
        " app = lambda environ, start_response: [];"
        " assert isinstance(f.filter_factory({}, enabled='true')(app), f.StampFilter)"
    )
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_glance_release_the_doc_names_is_the_one_the_real_tier_runs() -> None:
    stack = (ROOT / "tests" / "realcloud" / "stack.py").read_text()
    (version,) = re.findall(r'"glance==([0-9.]+)"', stack)
    assert f"Glance {version} (with Cinder" in DOC.read_text()


@pytest.mark.parametrize("value", ["true", "yes", "on", "1", "false", "no", "off", "0"])
def test_the_enabled_values_the_doc_lists_are_accepted(value: str) -> None:
    assert "true/false (or yes/no, on/off, 1/0)" in DOC.read_text()
    assert parse_enabled(value) is (value in ("true", "yes", "on", "1"))
