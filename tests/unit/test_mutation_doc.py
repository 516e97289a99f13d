"""docs/testing.md's mutation record is of the code as it is, and says why each mutant lives.

The mutation runs (``python -m tests.mutation``, mutmut) take minutes and are not part
of the test run; their record is. A target whose code changed since its recorded run
(its digest: the scope's code without comments, docstrings or layout) fails here with
the command that brings the record up to date, and so does a surviving mutant nobody
gave a reason for.
"""

from __future__ import annotations

import ast

import pytest

from tests.mutation import DOC, TARGETS, TODO, Target, digest, read_doc, rewrite_properties

RECORDED = read_doc()


def test_every_target_has_its_record() -> None:
    assert sorted(RECORDED) == sorted(TARGETS)


@pytest.mark.parametrize("target", TARGETS.values(), ids=lambda t: t.name)
def test_the_recorded_run_is_of_the_code_as_it_is(target: Target) -> None:
    recorded = RECORDED[target.name]
    assert sorted(recorded.rows) == sorted(scope.label() for scope in target.scopes)
    changed = [
        scope.label()
        for scope in target.scopes
        if recorded.rows[scope.label()]["digest"].strip("`") != digest(scope)
    ]
    assert not changed, (
        f"{', '.join(changed)} changed since the mutation run recorded in {DOC.name}: run "
        f"'.venv/bin/python -m tests.mutation {target.name} --write' and give each new "
        "survivor its reason"
    )


@pytest.mark.parametrize("target", TARGETS.values(), ids=lambda t: t.name)
def test_every_survivor_is_listed_with_its_reason(target: Target) -> None:
    recorded = RECORDED[target.name]
    survived = sum(int(row["survived"]) for row in recorded.rows.values())
    assert len(recorded.survivors) == survived
    for name, (_, reason) in recorded.survivors.items():
        assert any(scope.holds(name) for scope in target.scopes), name
        assert reason.strip(), f"{name} has no reason"
        assert TODO not in reason, f"{name} has no reason yet"


@pytest.mark.parametrize("target", TARGETS.values(), ids=lambda t: t.name)
def test_the_scores_add_up(target: Target) -> None:
    for label, row in RECORDED[target.name].rows.items():
        mutants, killed, survived = (int(row[k]) for k in ("mutants", "killed", "survived"))
        assert killed + survived <= mutants, label
        assert row["score"] == f"{100 * killed / mutants:.0f} %", label


@pytest.mark.parametrize("target", TARGETS.values(), ids=lambda t: t.name)
def test_a_targets_tests_exist(target: Target) -> None:
    from tests.conftest import REPO_ROOT

    assert target.test_files
    assert all((REPO_ROOT / path).is_file() for path in target.test_files)
    assert all((REPO_ROOT / scope.path).is_file() for scope in target.scopes)


def test_the_property_rewrite_keeps_the_class_as_it_was() -> None:
    """mutmut skips decorated functions; the scratch copy's properties are plain ones."""
    source = "class A:\n    x = 1\n\n    @property\n    def double(self) -> int:\n        return 2 * self.x\n\n    def f(self) -> None:\n        pass\n"
    rewritten = rewrite_properties(source)
    assert "@property" not in rewritten
    assert "    double = property(double)\n" in rewritten
    namespace: dict[str, object] = {}
    exec(compile(rewritten, "<rewritten>", "exec"), namespace)
    cls = namespace["A"]
    assert isinstance(vars(cls)["double"], property)  # type: ignore[arg-type]
    assert cls().double == 2  # type: ignore[operator]
    ast.parse(rewritten)


def test_a_reason_stays_with_its_change_when_a_new_line_renumbers_the_mutants() -> None:
    """A line added to a function shifts mutmut's numbers after it: ``--write`` must not
    give a renumbered survivor the reason written for the change that had its number."""
    from tests.mutation import Mutant, Recorded, Scope, ScopeResult, carried_reasons

    def mutant(number: int, old: str, new: str) -> Mutant:
        return Mutant(f"volimg.m.x_f__mutmut_{number}", 10, old, new)

    plural = mutant(3, "> 1", ">= 1")
    wording = mutant(4, '"a"', '"XXaXX"')
    recorded = Recorded(
        rows={},
        survivors={
            plural.name: (plural.shown(), "message text: the plural"),
            wording.name: (wording.shown(), "message text"),
        },
        seconds="1 s",
    )
    # A new line before them: what was _3 is now _5, and _3 is a new mutant.
    new_line = mutant(3, "if taken", "if not taken")
    now = ScopeResult(
        Scope("volimg/m.py"),
        mutants=9,
        survived=[
            (new_line, "survived"),
            (mutant(5, "> 1", ">= 1"), "survived"),
            (mutant(6, '"a"', '"XXaXX"'), "survived"),
        ],
    )

    reasons = carried_reasons(recorded, [now])

    assert reasons == {
        "volimg.m.x_f__mutmut_5": "message text: the plural",
        "volimg.m.x_f__mutmut_6": "message text",
    }
    assert new_line.name not in reasons  # a new survivor: TODO until someone says why


def test_a_target_that_gave_scopes_away_keeps_the_record_of_the_rest() -> None:
    """``--write`` narrows the record of a target some of whose scopes went to another
    target: its counts and survivors become those of the scopes it still has."""
    from tests.mutation import Scope, narrowed_block

    kept_scope = Scope("volimg/steps/mark.py", ("mark_volume",))
    target = Target("t", (kept_scope,), ("tests/unit/test_x.py",))
    block = (
        "#### `t`: 7 of 10 killed, took 300 s\n\nTests: `tests/unit/test_x.py`.\n\n"
        "- `volimg.steps.copy.x_f__mutmut_1` (line 3): `a` → `b` — gone\n"
        "- `volimg.steps.mark.x_mark_volume__mutmut_2` (line 9): `c` → `d` — kept\n"
    )
    row = f"| `t` | `{kept_scope.label()}` | 4 | 3 | 1 | 75 % | `abc` |"

    narrowed = narrowed_block(target, [row], block)

    heading = narrowed.splitlines()[0]
    assert heading.startswith("#### `t`: 3 of 4 killed, took 300 s")
    assert "x_mark_volume__mutmut_2" in narrowed
    assert "volimg.steps.copy" not in narrowed
    assert "Tests: `tests/unit/test_x.py`." in narrowed


def test_a_moved_scope_takes_its_survivors_reasons_along() -> None:
    from tests.mutation import Recorded, Scope, recorded_for

    moved = Scope("volimg/steps/copy.py", ("_settle_copies",))
    recorded = {
        "old": Recorded(
            rows={},
            survivors={
                "volimg.steps.copy.x__settle_copies__mutmut_4": ("`a` → `b`", "defensive"),
                "volimg.steps.mark.x_mark_volume__mutmut_2": ("`c` → `d`", "equivalent"),
            },
            seconds="9 s",
        )
    }

    found = recorded_for(recorded, Target("new", (moved,), ("tests/unit/test_x.py",)))

    assert found is not None
    assert found.survivors == {
        "volimg.steps.copy.x__settle_copies__mutmut_4": ("`a` → `b`", "defensive")
    }
