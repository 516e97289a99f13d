"""docs/json.md is the contract: every table there is checked against real documents.

A documented field that disappears or changes type fails, and so does a field that
appears in a document without being documented. Values too: each field that takes one
of a list of values (`result`, `finding`, `action`, a repair's `result`, a store
outcome) takes one of the code's values, and docs/json.md lists exactly those; the
objects inside (`stamp`, `counts`, `cinder_headers`) hold what their rows say, and
`-f ndjson` prints lines of the documented `type`s. ``check_document`` applies the
whole contract to any one document (the fuzz test uses it too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.scenarios.conftest import VolimgRunner
from volimg import audit, batch, doctor, provenance, results
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
    "The `doctor` document": _each("doctor"),
    "`checks[]`": _each("doctor", "checks"),
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


# The values a field takes, from the code that gives them. A heading/field pair whose
# row says "as the document's `result`" is checked by comparing the two instead.
BATCH_DOCUMENT_RESULTS = (
    results.OK,
    results.PARTIAL,
    batch.TIMED_OUT,
    results.RESULT_FAILED,
    batch.INTERRUPTED,
    batch.RUN_EMPTY,
    batch.RUN_LOCKED,
    results.PLANNED,
)
AUDIT_RESULTS = ("ok", "findings", "interrupted")  # exit 0, 3, or a signal stopped --fix
RETENTION_ACTIONS = (batch.DELETED, batch.WOULD_DELETE, batch.KEPT_PROTECTED, batch.DELETE_FAILED)
STORE_OUTCOMES = (
    results.COPIED,
    results.ALREADY_PRESENT,
    results.FAILED,
    results.ROLLED_BACK,
    results.PENDING,
    results.PRUNED,
    results.SKIPPED,
    results.PRUNE_FAILED,
)
VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("The document", "result"): (
        results.OK,
        results.STARTED,
        results.PARTIAL,
        results.RESULT_FAILED,
        results.PLANNED,
    ),
    ("`checks[]`", "status"): doctor.STATUSES,
    ("The batch document", "result"): BATCH_DOCUMENT_RESULTS,
    # A volume never started is counted (summary.counts) but has no volumes[] entry.
    ("`volumes[]`", "result"): tuple(r for r in batch.BATCH_RESULTS if r != batch.NOT_STARTED),
    ("`volumes[].retention[]`", "action"): RETENTION_ACTIONS,
    ("The audit document", "result"): (*AUDIT_RESULTS, "interrupted", results.RESULT_FAILED),
    ("`findings[]`", "finding"): audit.FINDINGS,
    ("`repairs[]`", "result"): audit.REPAIR_RESULTS,
    ("The `adopt` document", "result"): ("ok", results.RESULT_FAILED),
    ("The `stores` document", "result"): ("ok", results.RESULT_FAILED),
}
# Fields whose values come from a list the row does not repeat.
UNLISTED: dict[tuple[str, str], tuple[str, ...]] = {
    ("The batch `summary`", "result"): BATCH_DOCUMENT_RESULTS,
    ("The audit `summary`", "result"): AUDIT_RESULTS,
    ("`repairs[]`", "finding"): audit.FINDINGS,
}
VALUE = re.compile(r"`([a-z][a-z-]*)`")
NDJSON_TYPE = re.compile(r'`"type": "([a-z]+)"`')


def documented_values(heading: str, field: str) -> set[str]:
    """The values a row names: its backquoted plain words, less options (`--keep`) and
    less the names of its table's fields (`reason`), unless the code has that value."""
    rows = documented_tables()[heading]
    (meaning,) = [m or kind for f, kind, m in rows if f == field]
    names = {f for f, _, _ in rows}
    values = VALUES.get((heading, field), ())
    return {v for v in VALUE.findall(meaning) if v not in names or v in values}


def _row(heading: str, field: str) -> str:
    (meaning,) = [m for f, _, m in documented_tables()[heading] if f == field]
    return meaning


def check_fields(heading: str, obj: Any, *, plan_of_replicate: bool = False) -> None:
    """The object has exactly the table's fields, with their types and values."""
    assert isinstance(obj, dict), (heading, obj)
    wanted = {
        field: kind
        for field, kind, meaning in documented_tables()[heading]
        if not (plan_of_replicate and meaning.startswith("(upload)"))
    }
    assert set(obj) == set(wanted), (heading, sorted(obj), sorted(wanted))
    for field, kind in wanted.items():
        assert matches_type(obj[field], kind), (heading, field, obj[field], kind)
        values = VALUES.get((heading, field)) or UNLISTED.get((heading, field))
        if values is not None:
            assert obj[field] in values, (heading, field, obj[field], values)


def _check_error(error: Any) -> None:
    if error is not None:
        check_fields("`error`", error)
        assert "\n" not in error["message"], error


def check_outcome(doc: Doc, heading: str = "The document") -> None:
    """A single run's document, or one of a batch's `volumes[]`."""
    check_fields(heading, doc)
    for field, table in (("volume", "`volume`"), ("base_image", "`base_image`")):
        if doc[field] is not None:
            check_fields(table, doc[field])
    if doc["image"] is not None:
        check_fields("`image`", doc["image"])
    _check_error(doc["error"])
    plan = doc["plan"]
    if plan is not None:
        check_fields("`plan`", plan, plan_of_replicate="upload_request" not in plan)
        for reason in plan["reasons"]:
            check_fields("`plan.reasons[]`", reason)
        if "cinder_headers" in plan:
            check_cinder_headers(doc, plan["cinder_headers"])
    assert set(doc["replication"].values()) <= set(STORE_OUTCOMES), doc["replication"]
    assert set(doc["details"]) <= set(doc["replication"]), (doc["details"], doc["replication"])
    assert all(isinstance(v, str) and "\n" not in v for v in doc["details"].values())


def check_cinder_headers(doc: Doc, headers: dict[str, Any]) -> None:
    """The placement headers the row names, and only those, with the facts they carry."""
    assert set(headers) <= set(re.findall(r"`(x-[a-z-]+)`", _row("`plan`", "cinder_headers")))
    assert headers.get("x-image-meta-store") == doc["volume_type_store"] or (
        "x-image-meta-store" not in headers and doc["volume_type_store"] is None
    ), (headers, doc["volume_type_store"])
    base = doc["base_image"]
    assert headers.get("x-openstack-base-image-ref") == (base["id"] if base else None), headers


def check_counts(counts: Any, values: tuple[str, ...], total: int) -> None:
    """Every value present (0 when none), and they add up."""
    assert isinstance(counts, dict)
    assert list(counts) == list(values), (counts, values)
    assert all(isinstance(n, int) and n >= 0 for n in counts.values()), counts
    assert sum(counts.values()) == total, (counts, total)


def check_batch(doc: Doc) -> None:
    check_fields("The batch document", doc)
    for volume in doc["volumes"]:
        check_outcome(volume, "`volumes[]`")
        for entry in volume["retention"]:
            check_fields("`volumes[].retention[]`", entry)
    summary = doc["summary"]
    check_fields("The batch `summary`", summary)
    assert summary["result"] == doc["result"]
    assert summary["volumes"] == len(doc["volumes"])
    check_counts(summary["counts"], batch.BATCH_RESULTS, len(doc["volumes"]))
    _check_error(summary["error"])


def check_audit(doc: Doc) -> None:
    check_fields("The audit document", doc)
    stamp_keys = re.findall(r"`([a-z_]+)`", _row("`findings[]`", "stamp").split(";")[0])
    image_keys = re.findall(r"`([a-z_]+)`", _row("`findings[]`", "image"))
    for finding in doc["findings"]:
        check_fields("`findings[]`", finding)
        # An unfinished image has no stamp yet: its mark carries the stamp it will get.
        stamp = finding["stamp"] if finding["stamp"] is not None else finding["mark"]["intended"]
        assert finding["stamp"] is not None or finding["finding"] == audit.UNFINISHED, finding
        assert list(stamp) == stamp_keys, stamp
        assert list(finding["image"]) == image_keys, finding["image"]
    for repair in doc["repairs"]:
        check_fields("`repairs[]`", repair)
        assert set(repair["replication"].values()) <= set(STORE_OUTCOMES), repair
        _check_error(repair["error"])
    summary = doc["summary"]
    if summary is None:  # the audit could not run: its failure document
        assert (doc["result"], doc["findings"], doc["repairs"]) == ("failed", [], []), doc
        _check_error(doc["error"])
        assert doc["error"] is not None
        return
    _check_error(doc["error"])
    check_fields("The audit `summary`", summary)
    assert summary["result"] == doc["result"]
    assert summary["images"] == len(doc["findings"])
    check_counts(summary["counts"], audit.FINDINGS, len(doc["findings"]))
    check_counts(summary["repairs"], audit.REPAIR_RESULTS, len(doc["repairs"]))


def check_document(doc: Doc) -> None:
    """One document of any command against the whole of docs/json.md."""
    command = doc.get("command")
    if command == "stores":
        check_fields("The `stores` document", doc)
        for store in doc["stores"]:
            check_fields("`stores[]`", store)
    elif command == "adopt":
        check_fields("The `adopt` document", doc)
        assert set(doc["stamp"]) <= set(provenance.STAMP_KEYS), doc["stamp"]
    elif command == "audit" and "findings" in doc:
        check_audit(doc)
    elif command == "doctor" and "checks" in doc:
        check_fields("The `doctor` document", doc)
        for row in doc["checks"]:
            check_fields("`checks[]`", row)
    elif doc.get("mode") == "batch":
        check_batch(doc)
    else:
        check_outcome(doc)


# A command each, as a user would type it; with a cloud that does not exist every one
# fails before it has anything to say, and its document keeps the command's keys.
FAILING_COMMANDS: dict[str, tuple[str, ...]] = {
    "upload": ("boot-vol",),
    "plan": ("boot-vol",),
    "replicate": ("cirros-base", "--store", "fast"),
    "stores": (),
    "adopt": ("cirros-base", "--base", "cirros-base"),
    "audit": (),
    "doctor": (),
}


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
    # Every command failing before it has anything to say: a cloud that does not exist.
    failures = {
        command: volimg_sandbox("--os-cloud", "nowhere", command, *args, "-f", "json")
        for command, args in FAILING_COMMANDS.items()
    }
    for command, failed in failures.items():
        assert failed.exit_code == 2, (command, failed)
        assert failed.doc["command"] == command, failed.doc
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
    # A type whose store Glance lacks: a failing row (with a fix) beside ok ones (fix null).
    sandbox.cloud.add_volume_type("gold", extra_specs={"image_service:store_id": "nowhere"})
    doctor = volimg_sandbox("doctor", "-f", "json")
    assert doctor.exit_code == 3, doctor
    sandbox.faults.fail_store_copy("cheap")
    runs["upload-partial"] = volimg_sandbox("upload", "boot-vol", "-f", "json")
    assert runs["upload-partial"].exit_code == 3, runs["upload-partial"]
    more = {"audit": [audit.doc], "adopt": [adopt.doc], "doctor": [doctor.doc]}
    return {
        "batch": [batch.doc, empty.doc],
        "outcome": [
            r.doc for name, r in runs.items() if name.startswith(("upload-", "plan", "replicate"))
        ]
        + [failures[c].doc for c in ("upload", "plan", "replicate")],
        "failure": [runs["failure"].doc, *(r.doc for r in failures.values())],
        "stores": [runs["stores"].doc, failures["stores"].doc],
        **{k: [*v, failures[k].doc] for k, v in more.items()},
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
    plans = [d["plan"] for d in documents["outcome"] if d["command"] == "upload" and d["plan"]]
    for plan in plans:
        assert plan["image_name"]
        assert plan["upload_request"]["image_name"] == plan["image_name"]
        assert plan["cinder_microversion"] in ("3.0", "3.1")
        assert isinstance(plan["all_stores_must_succeed"], bool)


def test_no_wait_gives_the_outcomes_json_md_says(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    """`upload --no-wait`: the copies are `skipped`, the landing store is not listed (so
    `{}` when there is nothing to copy); `replicate --no-wait`: the copies are `pending`."""
    tables = documented_tables()
    outcomes = {field: meaning for field, meaning, _ in tables[OUTCOMES]}  # two columns
    replication = next(m for f, _, m in tables["The document"] if f == "replication")
    assert "`upload --no-wait`" in outcomes["skipped"]
    assert "`--no-wait`" in outcomes["pending"]
    assert all(f"`{word}`" in replication for word in ("skipped", "{}", "pending"))

    boot = volimg_sandbox("upload", "boot-vol", "--no-wait", "-f", "json")
    data = volimg_sandbox("upload", "data-vol", "--no-wait", "-f", "json")
    sandbox.wait_idle()
    copy = volimg_sandbox("replicate", "cirros-base", "--store", "fast", "--no-wait", "-f", "json")

    assert (boot.doc["result"], data.doc["result"], copy.doc["result"]) == ("started",) * 3
    assert boot.doc["replication"] == {"cheap": "skipped", "archive": "skipped"}
    assert data.doc["replication"] == {}
    assert copy.doc["replication"] == {"fast": "pending"}


def test_each_value_list_in_json_md_is_the_codes(documents: dict[str, list[Doc]]) -> None:
    """The rows name exactly the values the code gives; the store outcome table too."""
    for (heading, field), values in VALUES.items():
        assert documented_values(heading, field) == set(values), (heading, field)
    assert {field for field, _, _ in documented_tables()[OUTCOMES]} == set(STORE_OUTCOMES)
    for heading, field in UNLISTED:
        assert _row(heading, field).startswith(("as the document's `result`", "the finding")), (
            heading,
            field,
        )


def test_every_document_follows_the_whole_contract(documents: dict[str, list[Doc]]) -> None:
    for docs in documents.values():
        for doc in docs:
            check_document(doc)


def test_an_upload_from_an_image_to_a_typed_store_names_both_cinder_headers(
    volimg_sandbox: VolimgRunner,
) -> None:
    """pinned-vol: made from cirros-base, on the type whose store is archive."""
    doc = volimg_sandbox("plan", "pinned-vol", "-f", "json").doc
    check_document(doc)
    assert doc["plan"]["cinder_headers"] == {
        "x-image-meta-store": "archive",
        "x-openstack-base-image-ref": doc["base_image"]["id"],
    }


def ndjson_types(section: str) -> list[str]:
    """The `"type": "..."` values the section's prose names, in order."""
    text = JSON_MD.read_text().split(section, 1)[1].split("\n### ", 1)[0]
    return NDJSON_TYPE.findall(text)


def test_ndjson_lines_are_the_documented_objects_with_their_type(
    volimg_sandbox: VolimgRunner, sandbox: Sandbox
) -> None:
    assert ndjson_types("## `upload` of many volumes (a batch)") == ["volume", "summary"]
    assert ndjson_types("## `audit`") == ["finding", "repair", "summary"]

    fleet = volimg_sandbox("upload", "data-vol", "no-such-vol", "-f", "ndjson")
    assert fleet.exit_code == 1, fleet
    lines = [json.loads(line) for line in fleet.stdout.splitlines()]
    *volumes, summary = lines
    assert [line.pop("type") for line in lines] == ["volume"] * len(volumes) + ["summary"]
    check_batch(
        {
            "volimg": "", "schema_version": 1, "command": "upload", "mode": "batch",
            "result": summary["result"], "volumes": volumes, "summary": summary,
            "dry_run": summary["dry_run"], "error": None,
            "next_steps": summary["next_steps"],
        }
    )  # fmt: skip

    audited = volimg_sandbox("audit", "--fix", "-f", "ndjson")
    assert audited.exit_code == 0, audited
    lines = [json.loads(line) for line in audited.stdout.splitlines()]
    kinds = [line.pop("type") for line in lines]
    assert kinds == sorted(kinds, key=["finding", "repair", "summary"].index), kinds
    assert kinds.count("summary") == 1
    assert "repair" in kinds
    check_audit(
        {
            "volimg": "", "schema_version": 1, "command": "audit",
            "result": lines[-1]["result"],
            "next_steps": lines[-1].get("next_steps", []),
            "findings": [line for line, kind in zip(lines, kinds, strict=True) if kind == "finding"],
            "repairs": [line for line, kind in zip(lines, kinds, strict=True) if kind == "repair"],
            "summary": lines[-1],
            "error": lines[-1]["error"],
        }
    )  # fmt: skip


def test_a_failure_document_has_the_keys_of_its_commands_success(
    documents: dict[str, list[Doc]],
) -> None:
    """CI's ``jq '.replication | to_entries[]'`` (docs/guide.md) works on an early error."""
    failed = {d["command"]: d for d in documents["failure"] if d["error"]["exit_code"] == 2}
    succeeded = {
        d["command"]: d
        for kind in ("outcome", "stores", "audit", "adopt", "doctor")
        for d in documents[kind]
        if d["result"] != "failed"
    }
    assert set(failed) == set(FAILING_COMMANDS) <= set(succeeded), (failed, succeeded)
    for command, doc in failed.items():
        assert set(doc) == set(succeeded[command]), command
        assert doc["result"] == "failed"
        assert "nowhere" in doc["error"]["message"], doc["error"]
    upload = failed["upload"]
    assert (upload["replication"], upload["next_steps"], upload["plan"]) == ({}, [], None)
