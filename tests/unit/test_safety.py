"""volimg.safety: the one table of what volimg deletes, and the checks that apply it.

docs/safety.md shows ``DELETE_RULES`` as its table, so the promise an operator reads is
the rule the code applies; the checks are held here case by case.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from volimg.model import Image
from volimg.provenance import Mark, Rule, Stamp, StampedBy
from volimg.safety import DELETE_RULES, own_upload_of, removable_copies, rules_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "safety.md"
BEGIN = "<!-- delete rules: begin (generated from volimg.safety.DELETE_RULES) -->\n"
END = "<!-- delete rules: end -->"

VOLUME = "11111111-1111-4111-8111-111111111111"
OTHER_VOLUME = "22222222-2222-4222-8222-222222222222"
IMAGE = "33333333-3333-4333-8333-333333333333"
BASE = "44444444-4444-4444-8444-444444444444"
NAME = "boot-vol-20261201T020000Z"


def test_the_doc_shows_exactly_the_delete_rules() -> None:
    text = DOC.read_text()
    assert BEGIN in text, "docs/safety.md lost its table markers"
    assert END in text, "docs/safety.md lost its table markers"
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert shown == rules_table(), (
        "docs/safety.md and volimg.safety.DELETE_RULES differ; paste this between the "
        f"markers:\n{rules_table()}"
    )


def test_every_rule_is_a_row_and_every_row_names_its_evidence() -> None:
    rows = rules_table().splitlines()[2:]
    assert len(rows) == len(DELETE_RULES)
    for rule, row in zip(DELETE_RULES, rows, strict=True):
        assert row.startswith(f"| {rule.command} |")
        if rule.deletes != "nothing":
            assert rule.evidence, rule
            assert rule.never, rule


def test_a_pipe_in_a_rules_words_stays_in_its_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``|`` in a rule's words (a shell pipe, say) must not add a column to the table."""
    import volimg.safety

    piped = replace(DELETE_RULES[0], evidence="`volimg audit | grep extra` shows it")
    monkeypatch.setattr(volimg.safety, "DELETE_RULES", (piped,))

    row = volimg.safety.rules_table().splitlines()[2]

    assert "`volimg audit \\| grep extra` shows it" in row
    assert row.replace("\\|", "").count("|") == 5  # four cells


def test_the_docs_that_promise_it_link_to_it() -> None:
    root = DOC.parents[1]
    cron = (root / "docs" / "cron.md").read_text()
    promise = next(line for line in cron.splitlines() if "never one volimg did not make" in line)
    assert "safety.md" in promise
    assert "docs/safety.md" in (root / "README.md").read_text().split("## Documentation", 1)[1]


# --- own_upload_of: what --keep may delete as a whole image ---------------------------


def stamp(**fields: object) -> Stamp:
    defaults: dict[str, object] = {
        "image_id": IMAGE,
        "stamped_by": StampedBy.UPLOAD,
        "stamped_at": "2026-12-01T02:00:00Z",
        "source_volume": VOLUME,
        "base_image": BASE,
        "type_store": None,
        "rule": Rule.BASE_STORES,
    }
    return Stamp(**{**defaults, **fields})  # type: ignore[arg-type]


def mark_of(volume: str, *, name: str = NAME) -> dict[str, str]:
    intended = replace(stamp(source_volume=volume), image_id="")
    return Mark.for_upload("run-1", name, intended).metadata()


def image(
    properties: dict[str, str] | None = None,
    *,
    stores: tuple[str, ...] = ("fast",),
    status: str = "active",
    protected: bool = False,
) -> Image:
    return Image(
        id=IMAGE,
        name=NAME,
        status=status,
        stores=stores,
        protected=protected,
        tags=("volimg",),
        properties=properties or {},
    )


OWN_UPLOAD_CASES = [
    pytest.param(stamp().properties(), "stamped by volimg's upload", id="own-upload"),
    pytest.param(stamp(source_volume=OTHER_VOLUME).properties(), None, id="own-of-other-volume"),
    pytest.param(stamp(stamped_by=StampedBy.ADOPT).properties(), None, id="adopted"),
    pytest.param(stamp(stamped_by=StampedBy.GLANCE_FILTER).properties(), None, id="glance-filter"),
    pytest.param(
        stamp(image_id="55555555-5555-4555-8555-555555555555").properties(), None, id="inherited"
    ),
    pytest.param({}, None, id="unstamped"),
    pytest.param(mark_of(VOLUME), "not finished", id="marked-unfinished-of-this-volume"),
    pytest.param(mark_of(OTHER_VOLUME), None, id="marked-unfinished-of-another-volume"),
    pytest.param(mark_of(VOLUME, name="by-horizon"), None, id="mark-that-names-another-image"),
    pytest.param(
        {**stamp(stamped_by=StampedBy.GLANCE_FILTER).properties(), **mark_of(VOLUME)},
        "not finished",
        id="marked-unfinished-with-a-glance-filter-stamp",
    ),
    pytest.param(
        {**stamp(source_volume=OTHER_VOLUME).properties(), **mark_of(VOLUME)},
        None,
        id="finished-upload-of-another-volume-still-marked",
    ),
]


@pytest.mark.parametrize(("properties", "why"), OWN_UPLOAD_CASES)
def test_own_upload_of(properties: dict[str, str], why: str | None) -> None:
    found = own_upload_of(image(properties), VOLUME)
    if why is None:
        assert found is None
    else:
        assert found is not None
        assert why in found


def test_a_protected_image_is_left_to_the_caller() -> None:
    """own_upload_of answers whose it is; --keep keeps a protected one all the same."""
    assert own_upload_of(image(stamp().properties(), protected=True), VOLUME) is not None


# --- removable_copies: what audit --fix may remove of one image ------------------------

REMOVABLE_CASES = [
    pytest.param(
        stamp(prune=True), ("fast", "cheap"), ("cheap",), True, ("fast",), id="prune-intent"
    ),
    pytest.param(stamp(prune=False), ("fast", "cheap"), ("cheap",), True, (), id="no-prune"),
    pytest.param(None, ("fast", "cheap"), ("cheap",), True, (), id="unstamped"),
    pytest.param(stamp(prune=True), ("fast", "cheap"), ("cheap",), False, (), id="base-unreadable"),
    pytest.param(
        stamp(prune=True, base_image=None, rule=Rule.DEFAULT_STORE),
        ("fast", "cheap"),
        ("cheap",),
        False,
        ("fast",),
        id="no-base-to-read",
    ),
    pytest.param(
        stamp(prune=True, also_stores=("fast",)),
        ("fast", "cheap", "archive"),
        ("cheap",),
        True,
        ("archive",),
        id="also-stores-kept",
    ),
    pytest.param(
        stamp(prune=True, type_store="archive", rule=Rule.TYPE_STORE),
        ("fast", "cheap", "archive"),
        ("cheap",),
        True,
        ("fast",),
        id="recorded-type-store-kept",
    ),
    pytest.param(stamp(prune=True), ("fast",), (), True, (), id="last-copy-nothing-kept"),
    pytest.param(
        stamp(prune=True), ("fast",), ("cheap",), True, ("fast",), id="last-copy-after-the-copy"
    ),
]


@pytest.mark.parametrize(("the_stamp", "stores", "keep", "readable", "removable"), REMOVABLE_CASES)
def test_removable_copies(
    the_stamp: Stamp | None,
    stores: tuple[str, ...],
    keep: tuple[str, ...],
    readable: bool,
    removable: tuple[str, ...],
) -> None:
    found = removable_copies(
        image(stores=stores), keep=keep, stamp=the_stamp, base_readable=readable
    )
    assert found == removable


def test_nothing_is_removable_of_an_image_that_is_not_active() -> None:
    queued = image(stores=("fast", "cheap"), status="queued")
    assert (
        removable_copies(queued, keep=("cheap",), stamp=stamp(prune=True), base_readable=True) == ()
    )
