"""Random option values and names for every command, against one sandbox per module.

Each run either does the job (exit 0; audit also 3) or refuses with exit 2 and a
one-line message; never a traceback, and never a changed cloud when it refused. A run
that did the job is held as strictly as a scenario: with ``-f json`` exactly one
document that follows docs/json.md (``check_document``), and a cloud in the state the
document describes (the image exists, in the stores it says, every store outcome true;
a dry run changed nothing; the stores, the stamps and the repairs are the cloud's).

Strategies draw real volume, image and store names from the demo seed often enough
that at least a third of each command's examples do the job; each test counts, and
asserts it, so that a strategy drifting into nothing but refusals fails loudly.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.scenarios.cloud_checks import check_report
from tests.scenarios.test_json_contract import check_document
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

# A shell would create this file; volimg must never run its arguments through one.
TOUCHED = Path("/tmp/volimg-fuzz-touched")
NASTY = [
    "",
    " ",
    "\t",
    "  boot-vol  ",
    f"$(touch {TOUCHED})",
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
# The demo seed's names: a run with these (and legal options) does its job.
GOOD_VOLUMES = ["boot-vol", "pinned-vol", "data-vol"]
STORES = ["fast", "cheap", "archive"]
# The sandbox's Cinder converts a volume to qcow2 only (docs/sandbox.md: no qemu-img);
# an upload as vmdk, vdi, vhd... reaches Glance as raw data and fails its inspection.
DISK_FORMATS = ["raw", "qcow2"]
real_volumes = st.sampled_from([*GOOD_VOLUMES, "busy-vol", "twin"])
good_volumes = st.sampled_from(GOOD_VOLUMES)
volumes = st.one_of(real_volumes, real_volumes, names)
stores = st.one_of(st.sampled_from(STORES), names)
images = st.one_of(st.just("cirros-base"), st.just("cirros-base"), names)
# The spellings of "-f json" click accepts, and global options a valid run may carry.
JSON_SPELLINGS = [["-f", "json"], ["-fjson"], ["--format", "json"], ["--format=json"]]
json_format = st.sampled_from(JSON_SPELLINGS)
global_options = st.lists(st.sampled_from(["-v", "--verbose", "--no-color"]), max_size=3)


def asks_for_json(args: list[str]) -> bool:
    """The last format option the command line gives is json."""
    chosen = None
    for i, arg in enumerate(args):
        if arg in ("-f", "--format") and i + 1 < len(args):
            chosen = args[i + 1]
        elif arg.startswith("--format="):
            chosen = arg.removeprefix("--format=")
        elif arg.startswith("-f") and not arg.startswith("--") and len(arg) > 2:
            chosen = arg[2:]
    return chosen == "json"


def option(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.builds(lambda v: [flag, v], values)


def flags(*choices: str) -> st.SearchStrategy[list[str]]:
    return st.builds(list, st.lists(st.sampled_from(choices), max_size=3))


def joined(*parts: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return st.builds(lambda *lists: [a for one in lists for a in one], *parts)


def some(one: st.SearchStrategy[list[str]], most: int) -> st.SearchStrategy[list[str]]:
    return st.builds(lambda parts: [a for p in parts for a in p], st.lists(one, max_size=most))


def formats() -> st.SearchStrategy[list[str]]:
    return st.one_of(st.just([]), json_format, json_format, option("-f", names))


def valid_or_fuzzy(
    valid: st.SearchStrategy[list[str]], fuzzy: st.SearchStrategy[list[str]]
) -> st.SearchStrategy[list[str]]:
    """Two in three examples valid: they must do the job (and be checked for it). A valid
    one asks for JSON in one of its spellings, after some global options."""
    legal = st.builds(lambda g, v, f: [*g, *v, *f], global_options, valid, json_format)
    return st.one_of(legal, legal, fuzzy)


def valid_placement() -> st.SearchStrategy[list[str]]:
    """Options a run must carry out, with odd but legal image names."""
    one = st.one_of(
        option("--name", st.text(min_size=1, max_size=100).filter(lambda n: n.strip() == n)),
        option("--disk-format", st.sampled_from(DISK_FORMATS)),
        option("--also-store", st.sampled_from(STORES)),
        flags("--prune", "--no-replicate", "--all-stores-must-succeed"),
    )
    return some(one, 3)


def fuzzy_placement() -> st.SearchStrategy[list[str]]:
    one = st.one_of(
        option("--name", names),
        option("--disk-format", st.one_of(st.sampled_from(DISK_FORMATS), names)),
        option("--container-format", st.one_of(st.just("bare"), names)),
        option("--visibility", st.one_of(st.sampled_from(["private", "shared"]), names)),
        option("--also-store", stores),
        flags("--force", "--prune", "--no-replicate", "--replicate", "--protected"),
    )
    return some(one, 4)


def upload_args() -> st.SearchStrategy[list[str]]:
    valid_waits = st.sampled_from([[], ["--no-wait"], ["--timeout", "30"]])
    waits = st.one_of(st.just(["--no-wait"]), option("--timeout", st.one_of(st.just("30"), names)))
    return valid_or_fuzzy(
        joined(st.just(["upload"]), st.builds(lambda v: [v], good_volumes), valid_placement(),
               valid_waits),
        joined(st.just(["upload"]), st.builds(lambda v: [v], volumes), fuzzy_placement(), waits,
               formats()),
    )  # fmt: skip


def plan_args() -> st.SearchStrategy[list[str]]:
    return valid_or_fuzzy(
        joined(st.just(["plan"]), st.builds(lambda v: [v], good_volumes), valid_placement()),
        joined(st.just(["plan"]), st.builds(lambda v: [v], volumes), fuzzy_placement(),
               formats()),
    )  # fmt: skip


def replicate_args() -> st.SearchStrategy[list[str]]:
    target = st.one_of(
        st.builds(lambda s: ["--store", *s[:1], *[a for x in s[1:] for a in ("--store", x)]],
                  st.lists(st.sampled_from(STORES), min_size=1, max_size=3, unique=True)),
        st.just(["--like", "cirros-base"]),
    )  # fmt: skip
    valid = joined(
        st.just(["replicate", "cirros-base"]),
        target,
        flags("--prune", "--dry-run", "--no-wait", "--all-stores-must-succeed"),
        st.sampled_from([[], ["--timeout", "30"]]),
    )
    one = st.one_of(
        option("--store", stores),
        option("--like", images),
        option("--timeout", st.one_of(st.just("30"), names)),
        flags("--prune", "--dry-run", "--no-wait", "--all-stores-must-succeed"),
    )
    fuzzy = st.builds(lambda i, r, f: ["replicate", i, *r, *f], images, some(one, 4), formats())
    return valid_or_fuzzy(valid, fuzzy)


def stores_args() -> st.SearchStrategy[list[str]]:
    extra = st.one_of(st.just([]), st.builds(lambda n: [n], names), option("--bogus", names))
    return valid_or_fuzzy(
        st.just(["stores"]), st.builds(lambda e, f: ["stores", *e, *f], extra, formats())
    )


def audit_args() -> st.SearchStrategy[list[str]]:
    valid_one = st.one_of(
        option("--volume", good_volumes),
        option("--concurrency", st.sampled_from(["1", "2", "8"])),
        option("--timeout", st.just("30")),
        flags("--fix", "--dry-run", "--all-projects"),
    )
    one = st.one_of(
        option("--image", st.one_of(st.just("cirros-base"), names)),
        option("--volume", volumes),
        option("--concurrency", st.one_of(st.just("2"), names)),
        option("--timeout", st.one_of(st.just("30"), names)),
        flags("--fix", "--dry-run", "--all-projects"),
    )
    return valid_or_fuzzy(
        joined(st.just(["audit"]), some(valid_one, 3)),
        joined(st.just(["audit"]), some(one, 4), formats()),
    )


def adopt_args() -> st.SearchStrategy[list[str]]:
    valid_extra = st.one_of(
        st.just([]), option("--volume", good_volumes), st.just(["--prune-intent"])
    )
    extra = st.one_of(
        st.just([]), option("--volume", volumes), flags("--prune-intent"), option("--base", images)
    )
    return valid_or_fuzzy(
        joined(st.just(["adopt", "cirros-base", "--base", "cirros-base", "--force"]), valid_extra),
        st.builds(lambda i, b, e, f: ["adopt", i, "--base", b, *e, *f], images, images, extra,
                  formats()),
    )  # fmt: skip


def cloud_state(sandbox: Sandbox) -> Any:
    """Everything a refused run, or a dry run, must leave alone."""
    sandbox.wait_idle(10)
    cloud = sandbox.cloud
    with cloud.lock:
        return (
            {
                i.id: (i.name, i.status, tuple(i.stores), tuple(sorted(i.extra.items())))
                for i in cloud.images.values()
            },
            {v.id: v.status for v in cloud.volumes.values()},
            len(cloud.tasks),
        )


class Tally:
    """How a fuzz test's examples ended: at least a third must have done the job."""

    def __init__(self) -> None:
        self.exits: Counter[int] = Counter()
        self.checked = 0  # exit-0 runs whose JSON document and cloud were checked

    def assert_enough_did_the_job(self, done: tuple[int, ...] = (0,)) -> None:
        total = sum(self.exits.values())
        did = sum(self.exits[code] for code in done)
        assert total >= 100, self.exits
        assert did * 3 >= total, f"only {did} of {total} examples did the job: {self.exits}"
        assert self.checked * 4 >= total, f"only {self.checked} of {total} checked as JSON"
        assert not TOUCHED.exists(), f"an argument reached a shell: {TOUCHED} exists"


def check(sandbox: Sandbox, args: list[str], tally: Tally, done: tuple[int, ...] = (0,)) -> None:
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
    assert not TOUCHED.exists(), args
    tally.exits[result.exit_code] += 1
    event(f"exit {result.exit_code}")  # shown by --hypothesis-show-statistics
    if result.exit_code == 2:
        errors = [
            line
            for line in result.stderr.splitlines()
            if line.startswith(("Error:", "volimg: error:"))
        ]
        assert len(errors) == 1, (args, result.stderr)
        assert cloud_state(sandbox) == before, args
    elif asks_for_json(args):
        doc = json.loads(result.stdout)  # exactly one document
        check_document(doc)
        sandbox.wait_idle(10)
        check_cloud(sandbox, doc, before)
        tally.checked += 1


def check_cloud(sandbox: Sandbox, doc: dict[str, Any], before: Any) -> None:
    """The cloud is in the state the document describes."""
    cloud = sandbox.cloud
    command = doc["command"]
    if doc["result"] == "failed" and doc["error"] is not None and not doc.get("plan"):
        assert cloud_state(sandbox) == before, "a command that failed at once changed the cloud"
    elif command in ("upload", "plan", "replicate"):
        if doc["result"] == "planned":
            assert cloud_state(sandbox) == before, "a dry run changed the cloud"
        else:
            assert doc["image"] is not None, doc
        check_report(sandbox, doc)
    elif command == "stores":
        assert [s["id"] for s in doc["stores"]] == list(cloud.stores), doc["stores"]
        assert doc["default_store"] == cloud.default_store
    elif command == "adopt":
        image = cloud.images[doc["image_id"]]
        assert {k: image.extra.get(k) for k in doc["stamp"]} == doc["stamp"]
        assert doc["tag"] in image.tags
    elif command == "audit":
        fixing = doc["summary"]["fix"] and not doc["summary"]["dry_run"]
        if not fixing:
            assert cloud_state(sandbox) == before, "an audit without --fix changed the cloud"
            for finding in doc["findings"]:
                image = cloud.images[finding["image"]["id"]]
                assert finding["image"]["stores"] == list(image.stores), finding
        for repair in doc["repairs"]:
            if repair["result"] == "repaired":
                image = cloud.images[repair["image_id"]]
                assert repair["stores"] == list(image.stores), repair


@pytest.fixture(scope="module")
def fuzz_sandbox() -> Iterator[Sandbox]:
    """ONE sandbox for all examples of the module (a fresh one per example is too slow)."""
    saved = {k: os.environ.get(k) for k in ("OS_CLIENT_CONFIG_FILE", "OS_CLOUD")}
    TOUCHED.unlink(missing_ok=True)
    with Sandbox(seed="demo", timings=Timings.instant()) as sandbox:
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(sandbox.clouds_yaml)
        os.environ.pop("OS_CLOUD", None)
        yield sandbox
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def fuzz(
    sandbox: Sandbox, strategy: st.SearchStrategy[list[str]], done: tuple[int, ...] = (0,)
) -> None:
    """Run the examples, then hold the tally: a third did the job, nothing reached a shell."""
    tally = Tally()

    @FUZZ
    @given(args=strategy)
    def example(args: list[str]) -> None:
        check(sandbox, args, tally, done)

    example()
    tally.assert_enough_did_the_job(done)


def test_fuzz_upload(fuzz_sandbox: Sandbox) -> None:
    fuzz(fuzz_sandbox, upload_args())


def test_fuzz_plan(fuzz_sandbox: Sandbox) -> None:
    fuzz(fuzz_sandbox, plan_args())


def test_fuzz_replicate(fuzz_sandbox: Sandbox) -> None:
    fuzz(fuzz_sandbox, replicate_args())


def test_fuzz_stores(fuzz_sandbox: Sandbox) -> None:
    fuzz(fuzz_sandbox, stores_args())


def test_fuzz_audit(fuzz_sandbox: Sandbox) -> None:
    fuzz(fuzz_sandbox, audit_args(), done=(0, 3))


def test_fuzz_adopt(fuzz_sandbox: Sandbox) -> None:
    fuzz(fuzz_sandbox, adopt_args())
