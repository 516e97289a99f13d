"""docs/json.md is the contract: every table there is checked against real documents.

A documented field that disappears or changes type fails, and so does a field that
appears in a document without being documented.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.scenarios.conftest import VolimgRunner
from volimg.sandbox import Sandbox

JSON_MD = REPO_ROOT / "docs" / "json.md"
ROW = re.compile(r"^\| `([^`]+)` \| ([^|]+?) \|(?: (.*) \|)?$")

Doc = dict[str, Any]
# Heading in docs/json.md -> the objects of a set of documents that table describes.
Objects = Callable[[dict[str, list[Doc]]], Iterator[Doc]]


def _each(kind: str, *path: str) -> Objects:
    def objects(docs: dict[str, list[Doc]]) -> Iterator[Doc]:
        for doc in docs[kind]:
            value: Any = doc
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, list):
                yield from value
            elif value is not None:
                yield value

    return objects


SECTIONS: dict[str, Objects] = {
    "The document": _each("outcome"),
    "`volume`": _each("outcome", "volume"),
    "`base_image`": _each("outcome", "base_image"),
    "`image`": _each("outcome", "image"),
    "`error`": lambda docs: (
        d["error"] for d in docs["outcome"] + docs["failure"] if d.get("error")
    ),
    "`plan`": _each("outcome", "plan"),
    "`plan.reasons[]`": _each("outcome", "plan", "reasons"),
    "The failure document": _each("failure"),
    "The `stores` document": _each("stores"),
    "`stores[]`": _each("stores", "stores"),
    "The batch document": _each("batch"),
    "`volumes[]`": _each("batch", "volumes"),
    "`volumes[].retention[]`": lambda docs: (
        entry for v in _each("batch", "volumes")(docs) for entry in v["retention"]
    ),
    "The batch `summary`": _each("batch", "summary"),
    "The audit document": _each("audit"),
    "`findings[]`": _each("audit", "findings"),
    "`repairs[]`": _each("audit", "repairs"),
    "The audit `summary`": _each("audit", "summary"),
    "The `adopt` document": _each("adopt"),
}
OUTCOMES = "Store outcomes in `replication`"


def documented_tables() -> dict[str, list[tuple[str, str, str]]]:
    """Heading -> rows (field, type, meaning) of every table in docs/json.md."""
    tables: dict[str, list[tuple[str, str, str]]] = {}
    heading = ""
    for line in JSON_MD.read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            continue
        match = ROW.match(line)
        if match:
            field, second, meaning = match.groups()
            tables.setdefault(heading, []).append((field, second.strip(), meaning or ""))
    return tables


def matches_type(value: Any, documented: str) -> bool:
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "list": lambda v: isinstance(v, list),
        "list of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "null": lambda v: v is None,
    }
    return any(checks[alternative](value) for alternative in documented.split(" or "))


@pytest.fixture
def documents(volimg_sandbox: VolimgRunner, sandbox: Sandbox) -> dict[str, list[Doc]]:
    """Real documents of every command, covering every object that can be null."""
    runs = {
        "upload-ok": volimg_sandbox("upload", "boot-vol", "-f", "json"),
        "upload-no-base": volimg_sandbox("upload", "data-vol", "-f", "json"),
        "plan": volimg_sandbox("plan", "pinned-vol", "--replicate", "-f", "json"),
        "replicate": volimg_sandbox("replicate", "cirros-base", "--store", "fast", "-f", "json"),
        "replicate-like": volimg_sandbox(
            "replicate", "cirros-base", "--like", "cirros-base", "--dry-run", "-f", "json"
        ),
        "failure": volimg_sandbox("upload", "twin", "-f", "json"),
        "stores": volimg_sandbox("stores", "-f", "json"),
    }
    # A batch with an older image to retain, a volume that does not exist and a skip.
    older = volimg_sandbox("upload", "data-vol", "--no-wait", "-f", "json")
    assert older.exit_code == 0, older
    sandbox.wait_idle()
    batch = volimg_sandbox(
        "upload", "data-vol", "no-such-vol", "busy-vol", "--keep", "1", "-f", "json"
    )
    assert batch.exit_code == 1, batch
    # A batch that stops before its first volume still prints its one document.
    empty = volimg_sandbox("upload", "--selector", "no-such-key=1", "-f", "json")
    assert empty.exit_code == 2, empty
    # The demo seed has an image that lost a copy: audit finds it, --fix repairs it.
    audit = volimg_sandbox("audit", "--fix", "-f", "json")
    assert audit.exit_code == 0, audit
    adopt = volimg_sandbox("adopt", "cirros-base", "--base", "cirros-base", "-f", "json")
    assert adopt.exit_code == 0, adopt
    sandbox.faults.fail_store_copy("cheap")
    runs["upload-partial"] = volimg_sandbox("upload", "boot-vol", "-f", "json")
    assert runs["upload-partial"].exit_code == 3, runs["upload-partial"]
    return {
        "batch": [batch.doc, empty.doc],
        "audit": [audit.doc],
        "adopt": [adopt.doc],
        "outcome": [
            r.doc for name, r in runs.items() if name.startswith(("upload-", "plan", "replicate"))
        ],
        "failure": [runs["failure"].doc],
        "stores": [runs["stores"].doc],
    }


def test_every_table_in_json_md_is_one_the_test_knows() -> None:
    assert set(documented_tables()) == {*SECTIONS, OUTCOMES}


def test_every_documented_field_is_in_every_document_with_its_type(
    documents: dict[str, list[Doc]],
) -> None:
    tables = documented_tables()
    for heading, objects in SECTIONS.items():
        rows = tables[heading]
        checked = 0
        for obj in objects(documents):
            replicate_plan = heading == "`plan`" and "upload_request" not in obj
            wanted = {
                field: kind
                for field, kind, meaning in rows
                if not (replicate_plan and meaning.startswith("(upload)"))
            }
            assert set(obj) == set(wanted), (heading, sorted(obj), sorted(wanted))
            for field, kind in wanted.items():
                assert matches_type(obj[field], kind), (heading, field, obj[field], kind)
            checked += 1
        assert checked, f"no document had a {heading} to check"


def test_replication_outcomes_and_details_are_documented(
    documents: dict[str, list[Doc]],
) -> None:
    outcomes = {field for field, _, _ in documented_tables()[OUTCOMES]}
    seen = {value for doc in documents["outcome"] for value in doc["replication"].values()}
    assert seen <= outcomes
    assert {"copied", "failed"} <= seen
    details = [doc["details"] for doc in documents["outcome"] if doc["details"]]
    assert details, "no document explained a store outcome"
    for explained in details:
        assert all(isinstance(v, str) and "\n" not in v for v in explained.values())


def test_the_plan_fields_of_an_upload_are_filled_in(documents: dict[str, list[Doc]]) -> None:
    plans = [d["plan"] for d in documents["outcome"] if d["command"] == "upload"]
    for plan in plans:
        assert plan["image_name"]
        assert plan["upload_request"]["image_name"] == plan["image_name"]
        assert plan["cinder_microversion"] in ("3.0", "3.1")
        assert isinstance(plan["all_stores_must_succeed"], bool)
