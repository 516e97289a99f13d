"""Random option values and names for every command, against one sandbox per module.

Each run either does the job (exit 0) or refuses with exit 2 and a one-line message;
never a traceback, and never a changed cloud when it refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from volimg.cli import cli
from volimg.context import AppContext
from volimg.sandbox import Sandbox, Timings

EXAMPLES = 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every CI run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

NASTY = [
    "",
    " ",
    "\t",
    "  boot-vol  ",
    "$(touch /tmp/volimg-fuzz)",
    "; ls",
    "`id`",
    "a'b\"c",
    "x" * 1000,
    "ü名前🙂",
    "-x",
    "\x00",
    "../../etc/passwd",
    "00000000-0000-0000-0000-000000000000",
]
names = st.one_of(st.sampled_from(NASTY), st.text(max_size=300))
# Real names often enough that many runs do the job: the jobs must survive odd options too.
real_volumes = st.sampled_from(["boot-vol", "pinned-vol", "data-vol", "busy-vol", "twin"])
volumes = st.one_of(real_volumes, real_volumes, names)
stores = st.one_of(st.sampled_from(["fast", "cheap", "archive"]), names)
images = st.one_of(st.just("cirros-base"), st.just("cirros-base"), names)


def option(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.builds(lambda v: [flag, v], values)


def flags(*choices: str) -> st.SearchStrategy[list[str]]:
    return st.builds(list, st.lists(st.sampled_from(choices), max_size=3))


def formats() -> st.SearchStrategy[list[str]]:
    return st.one_of(
        st.just([]), st.just(["-f", "json"]), st.just(["-f", "json"]), option("-f", names)
    )


def placement() -> st.SearchStrategy[list[str]]:
    return st.one_of(valid_placement(), fuzzy_placement())


def valid_placement() -> st.SearchStrategy[list[str]]:
    """Options a run must carry out, with odd but legal image names."""
    one = st.one_of(
        option("--name", st.text(min_size=1, max_size=100).filter(lambda n: n.strip() == n)),
        option("--disk-format", st.sampled_from(["raw", "qcow2", "vmdk"])),
        option("--also-store", st.sampled_from(["fast", "cheap", "archive"])),
        flags("--prune", "--no-replicate", "--all-stores-must-succeed"),
    )
    return st.builds(lambda parts: [a for p in parts for a in p], st.lists(one, max_size=3))


def fuzzy_placement() -> st.SearchStrategy[list[str]]:
    one = st.one_of(
        option("--name", names),
        option("--disk-format", st.one_of(st.sampled_from(["raw", "qcow2", "vmdk"]), names)),
        option("--container-format", st.one_of(st.just("bare"), names)),
        option("--visibility", st.one_of(st.sampled_from(["private", "shared"]), names)),
        option("--also-store", stores),
        flags("--force", "--prune", "--no-replicate", "--replicate", "--protected"),
    )
    return st.builds(lambda parts: [a for p in parts for a in p], st.lists(one, max_size=4))


def upload_args() -> st.SearchStrategy[list[str]]:
    waits = st.one_of(st.just(["--no-wait"]), option("--timeout", st.one_of(st.just("30"), names)))
    return st.builds(
        lambda v, p, w, f: ["upload", v, *p, *w, *f], volumes, placement(), waits, formats()
    )


def plan_args() -> st.SearchStrategy[list[str]]:
    return st.builds(lambda v, p, f: ["plan", v, *p, *f], volumes, placement(), formats())


def replicate_args() -> st.SearchStrategy[list[str]]:
    one = st.one_of(
        option("--store", stores),
        option("--like", images),
        option("--timeout", st.one_of(st.just("30"), names)),
        flags("--prune", "--dry-run", "--no-wait", "--all-stores-must-succeed"),
    )
    rest = st.builds(lambda parts: [a for p in parts for a in p], st.lists(one, max_size=4))
    return st.builds(lambda i, r, f: ["replicate", i, *r, *f], images, rest, formats())


def stores_args() -> st.SearchStrategy[list[str]]:
    extra = st.one_of(st.just([]), st.builds(lambda n: [n], names), option("--bogus", names))
    return st.builds(lambda e, f: ["stores", *e, *f], extra, formats())


def audit_args() -> st.SearchStrategy[list[str]]:
    one = st.one_of(
        option("--image", st.one_of(st.just("cirros-base"), names)),
        option("--volume", volumes),
        option("--concurrency", st.one_of(st.just("2"), names)),
        option("--timeout", st.one_of(st.just("30"), names)),
        flags("--fix", "--dry-run", "--all-projects"),
    )
    rest = st.builds(lambda parts: [a for p in parts for a in p], st.lists(one, max_size=4))
    return st.builds(lambda r, f: ["audit", *r, *f], rest, formats())


def adopt_args() -> st.SearchStrategy[list[str]]:
    extra = st.one_of(
        st.just([]), option("--volume", volumes), flags("--prune-intent"), option("--base", images)
    )
    return st.builds(
        lambda i, b, e, f: ["adopt", i, "--base", b, *e, *f], images, images, extra, formats()
    )


@pytest.fixture(scope="module")
def fuzz_sandbox() -> Iterator[Sandbox]:
    """ONE sandbox for all examples of the module (a fresh one per example is too slow)."""
    saved = {k: os.environ.get(k) for k in ("OS_CLIENT_CONFIG_FILE", "OS_CLOUD")}
    with Sandbox(seed="demo", timings=Timings.instant()) as sandbox:
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(sandbox.clouds_yaml)
        os.environ.pop("OS_CLOUD", None)
        yield sandbox
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def cloud_state(sandbox: Sandbox) -> Any:
    """Everything a refused run must leave alone."""
    sandbox.wait_idle(10)
    cloud = sandbox.cloud
    with cloud.lock:
        return (
            {i.id: (i.name, i.status, tuple(i.stores)) for i in cloud.images.values()},
            {v.id: v.status for v in cloud.volumes.values()},
            len(cloud.tasks),
        )


def check(sandbox: Sandbox, args: list[str], done: tuple[int, ...] = (0,)) -> None:
    """``done``: the exit codes of a run that did its job (audit: 3, findings remain)."""
    before = cloud_state(sandbox)
    result = CliRunner().invoke(
        cli,
        ["--os-cloud", sandbox.admin_cloud, *args],
        obj=AppContext(poll_interval=0.01),
        catch_exceptions=True,
    )
    shown = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.exception,
        shown,
    )
    assert "Traceback" not in shown, (args, shown)
    assert result.exit_code in (*done, 2), (args, result.exit_code, shown)
    event(f"exit {result.exit_code}")  # shown by --hypothesis-show-statistics
    if result.exit_code == 2:
        errors = [
            line
            for line in result.stderr.splitlines()
            if line.startswith(("Error:", "volimg: error:"))
        ]
        assert len(errors) == 1, (args, result.stderr)
        assert cloud_state(sandbox) == before, args


@FUZZ
@given(args=upload_args())
def test_fuzz_upload(fuzz_sandbox: Sandbox, args: list[str]) -> None:
    check(fuzz_sandbox, args)


@FUZZ
@given(args=plan_args())
def test_fuzz_plan(fuzz_sandbox: Sandbox, args: list[str]) -> None:
    check(fuzz_sandbox, args)


@FUZZ
@given(args=replicate_args())
def test_fuzz_replicate(fuzz_sandbox: Sandbox, args: list[str]) -> None:
    check(fuzz_sandbox, args)


@FUZZ
@given(args=stores_args())
def test_fuzz_stores(fuzz_sandbox: Sandbox, args: list[str]) -> None:
    check(fuzz_sandbox, args)


@FUZZ
@given(args=audit_args())
def test_fuzz_audit(fuzz_sandbox: Sandbox, args: list[str]) -> None:
    check(fuzz_sandbox, args, done=(0, 3))


@FUZZ
@given(args=adopt_args())
def test_fuzz_adopt(fuzz_sandbox: Sandbox, args: list[str]) -> None:
    check(fuzz_sandbox, args)
