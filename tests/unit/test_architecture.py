"""docs/architecture.md is the rule: its module map and its layer tables, held on the code.

Every module of ``volimg/`` (each ``.py`` file, as a dotted name) is named in the map,
and every module named there exists unless it is marked *(arriving)*. Every module's
imports are read with ``ast``: at module level and inside functions, with those under
``if TYPE_CHECKING:`` told apart. They must follow the page's tables as it states them:
who may import whom, which packages only some modules may import (openstacksdk in the
gateway, rich at module level in the terminal module, the sandbox from the demo), no
cycle among module-level imports, and what ``volimg --help`` loads.

The checks are functions of a source tree and the page's text, so that
``test_each_check_catches_a_deliberate_violation`` can show each one failing on a copy
of the tree with one bad import.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, imported_modules

DOC = REPO_ROOT / "docs" / "architecture.md"
PACKAGE = REPO_ROOT / "volimg"

MAP = "## Modules"
LAYERS = "### Who may import whom"
CONFINED = "### Packages only some modules may import"
START_UP = "### Start-up"
HELP_ONLY = "**`volimg --help` loads of volimg's modules only:**"
HELP_NONE = "**`volimg --help` loads none of:**"

_MODULE_PATTERN = re.compile(r"`(volimg[\w.*]*)`")
_MAP_ROW = re.compile(r"`(volimg[\w.]*)`( \(arriving\))?")


# -- reading the page ----------------------------------------------------------------


def section(text: str, heading: str) -> str:
    """The body under ``heading`` (a whole line), up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    match = re.search(rf"^{re.escape(heading)}$", text, re.M)
    assert match, f"docs/architecture.md has no heading {heading!r}"
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, match.end())
    return text[match.end() : end.start() if end else len(text)]


def table_rows(text: str) -> Iterator[list[str]]:
    """The cells of every table row in ``text`` (header rows too; separators left out)."""
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            yield [cell.strip() for cell in line.strip().strip("|").split("|")]


def module_patterns(cell: str) -> tuple[str, ...]:
    return tuple(_MODULE_PATTERN.findall(cell))


def module_map(doc: str) -> dict[str, bool]:
    """Module -> whether it is marked *(arriving)*, from the map's tables."""
    named: dict[str, bool] = {}
    for cells in table_rows(section(doc, MAP)):
        match = _MAP_ROW.fullmatch(cells[0])
        if match is None:
            continue
        module = match.group(1)
        assert module not in named, f"{module} is on the map twice"
        assert len(cells) == 2, f"{module}: the map's rows have two cells"
        assert cells[1], f"{module}: the map says what it owns"
        named[module] = match.group(2) is not None
    return named


@dataclass(frozen=True)
class Rule:
    """One row of the layer table."""

    modules: tuple[str, ...]
    at_module_level: tuple[str, ...]
    in_functions: tuple[str, ...]


def layer_rules(doc: str) -> list[Rule]:
    rules = []
    for cells in table_rows(section(doc, LAYERS)):
        assert len(cells) == 3, f"a layer table row has three cells: {cells}"
        modules = module_patterns(cells[0])
        if modules:  # else the header
            rules.append(Rule(modules, module_patterns(cells[1]), module_patterns(cells[2])))
    return rules


@dataclass(frozen=True)
class Confinement:
    """One row of the table of packages only some modules may import."""

    packages: tuple[str, ...]
    only_in: tuple[str, ...]
    anywhere: bool  # False: only imports that run at module level count

    @property
    def id(self) -> str:
        return ",".join(self.packages)


def confinements(doc: str) -> list[Confinement]:
    rows = []
    for cells in table_rows(section(doc, CONFINED)):
        assert len(cells) == 3, f"a package table row has three cells: {cells}"
        packages = tuple(re.findall(r"`([\w.]+)`", cells[0]))
        if not packages:
            continue  # the header
        assert cells[2] in ("anywhere", "at module level"), cells
        rows.append(Confinement(packages, module_patterns(cells[1]), cells[2] == "anywhere"))
    return rows


def help_lists(doc: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(volimg's modules ``--help`` may load, packages it must not load)."""
    body = section(doc, START_UP)
    found = {}
    for lead in (HELP_ONLY, HELP_NONE):
        match = re.search(rf"^- {re.escape(lead)} (.+)$", body, re.M)
        assert match, f"docs/architecture.md's start-up section lacks the line {lead}"
        found[lead] = tuple(re.findall(r"`([\w.*]+)`", match.group(1)))
    return found[HELP_ONLY], found[HELP_NONE]


def matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# -- reading the code ----------------------------------------------------------------


def source_modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file, for every .py file of the package (a package by its __init__)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@dataclass(frozen=True)
class Import:
    target: str  # what the statement imports: a volimg module, or a third-party name
    line: int
    lazy: bool  # inside a function: runs when the function is called
    typing_only: bool  # under ``if TYPE_CHECKING:``: never runs

    @property
    def at_import_time(self) -> bool:
        return not self.lazy and not self.typing_only


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import statement of the module, at any depth.

    ``from a.b import c`` imports ``a.b.c`` when that is a module, else ``a.b`` (where
    ``c`` is a name); relative imports are resolved against the module's package.
    """
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def base_of(node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        parts = module.split(".")[: None if is_package else -1]
        parts = parts[: len(parts) - (node.level - 1)]
        return ".".join([*parts, *([node.module] if node.module else [])])

    def visit(node: ast.AST, lazy: bool, typing_only: bool) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            lazy = True
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, lazy, True)
            for child in node.orelse:
                visit(child, lazy, typing_only)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, node.lineno, lazy, typing_only) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = base_of(node)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append(
                    Import(target if target in modules else base, node.lineno, lazy, typing_only)
                )
        for child in ast.iter_child_nodes(node):
            visit(child, lazy, typing_only)

    visit(ast.parse(path.read_text(), filename=str(path)), False, False)
    return found


@functools.cache
def all_imports(package: Path) -> tuple[tuple[str, Path, Import], ...]:
    """Every import of every module of the tree, read once per tree (a test's tree is new)."""
    modules = source_modules(package)
    return tuple(
        (module, path, imported)
        for module, path in modules.items()
        for imported in imports_of(module, path, modules)
    )


def _where(package: Path, path: Path, imported: Import) -> str:
    kind = (
        "under TYPE_CHECKING"
        if imported.typing_only
        else "inside a function"
        if imported.lazy
        else "at module level"
    )
    return f"{path.relative_to(package.parent)}:{imported.line} ({kind})"


# -- the checks: each returns what is wrong ------------------------------------------


def unmapped_modules(package: Path, doc: str) -> list[str]:
    named = module_map(doc)
    return [
        f"{module} ({path.relative_to(package.parent)}) is not on docs/architecture.md's map"
        for module, path in source_modules(package).items()
        if module not in named
    ]


def vanished_modules(package: Path, doc: str) -> list[str]:
    present = source_modules(package)
    return [
        f"docs/architecture.md names {module}, which does not exist "
        "(remove its row, or mark it (arriving))"
        for module, arriving in module_map(doc).items()
        if module not in present and not arriving
    ]


def rows_for(module: str, rules: list[Rule]) -> list[Rule]:
    """The rows a module follows: the most specific pattern wins (exact, then longer)."""
    ranked = [
        ((not any(c in pattern for c in "*?["), len(pattern)), rule)
        for rule in rules
        for pattern in rule.modules
        if fnmatchcase(module, pattern)
    ]
    if not ranked:
        return []
    best = max(rank for rank, _ in ranked)
    return list({id(rule): rule for rank, rule in ranked if rank == best}.values())


def row_problems(package: Path, doc: str) -> list[str]:
    """Every module has one row; every name in the tables is a module on the map."""
    rules = layer_rules(doc)
    known = set(source_modules(package)) | set(module_map(doc))
    problems = []
    for module in sorted(known):
        found = rows_for(module, rules)
        if len(found) != 1:
            problems.append(f"{module} is in {len(found)} rows of the layer table, not 1")
    patterns = [p for rule in rules for cells in vars(rule).values() for p in cells]
    patterns += [p for row in confinements(doc) for p in row.only_in]
    patterns += list(help_lists(doc)[0])
    for pattern in sorted(set(patterns)):
        if not any(fnmatchcase(module, pattern) for module in known):
            problems.append(f"docs/architecture.md's tables name {pattern}: no module on the map")
    return problems


def layer_violations(package: Path, doc: str) -> list[str]:
    """Imports of volimg's modules (outside TYPE_CHECKING) that their row does not allow."""
    rules = layer_rules(doc)
    problems = []
    for module, path, imported in all_imports(package):
        if imported.typing_only or not is_within(imported.target, "volimg"):
            continue
        if imported.target == module:
            continue
        found = rows_for(module, rules)
        if len(found) != 1:
            continue  # row_problems says so
        row = found[0]
        allowed = row.at_module_level + (row.in_functions if imported.lazy else ())
        if not matches(imported.target, allowed):
            problems.append(
                f"{_where(package, path, imported)}: {module} imports {imported.target}, "
                "which its row of docs/architecture.md's layer table does not allow"
            )
    return problems


def confinement_violations(package: Path, doc: str, row: Confinement) -> list[str]:
    problems = []
    for module, path, imported in all_imports(package):
        if not any(is_within(imported.target, name) for name in row.packages):
            continue
        if not row.anywhere and not imported.at_import_time:
            continue
        if not matches(module, row.only_in):
            problems.append(
                f"{_where(package, path, imported)}: {module} imports {imported.target}; "
                f"docs/architecture.md allows it only in {', '.join(row.only_in)}"
            )
    return problems


def import_cycles(package: Path) -> list[list[str]]:
    """The strongly connected components (Tarjan) of the module-level import graph
    that hold a cycle: more than one module, or one that imports itself."""
    modules = source_modules(package)
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for module, _, imported in all_imports(package):
        if imported.at_import_time and imported.target in modules:
            graph[module].add(imported.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return components


# -- the tests -----------------------------------------------------------------------

TEXT = DOC.read_text()


def test_the_page_has_the_tables_the_test_reads() -> None:
    """A reformatted table must not turn the checks into checks of nothing."""
    assert len(module_map(TEXT)) >= 90
    assert len(layer_rules(TEXT)) >= 30
    rows = {name: row for row in confinements(TEXT) for name in row.packages}
    assert rows["openstack"].only_in == rows["keystoneauth1"].only_in == ("volimg.gateway.*",)
    assert rows["rich"].only_in == ("volimg.live",)
    assert not rows["rich"].anywhere
    assert "volimg.demo" in rows["volimg.sandbox"].only_in
    only, none = help_lists(TEXT)
    assert "volimg.cli" in only
    assert {"openstack", "rich", "tenacity"} <= set(none)


def test_every_module_of_volimg_is_on_the_map() -> None:
    problems = unmapped_modules(PACKAGE, TEXT)
    assert not problems, "\n".join(problems)


def test_every_module_on_the_map_exists() -> None:
    problems = vanished_modules(PACKAGE, TEXT)
    assert not problems, "\n".join(problems)


def test_every_module_has_one_row_and_every_row_names_modules() -> None:
    problems = row_problems(PACKAGE, TEXT)
    assert not problems, "\n".join(problems)


def test_imports_follow_the_layer_table() -> None:
    problems = layer_violations(PACKAGE, TEXT)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("row", confinements(TEXT), ids=lambda row: row.id)
def test_packages_are_imported_only_where_the_page_says(row: Confinement) -> None:
    problems = confinement_violations(PACKAGE, TEXT, row)
    assert not problems, "\n".join(problems)


def test_no_cycle_among_module_level_imports() -> None:
    cycles = import_cycles(PACKAGE)
    assert not cycles, "module-level import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_help_loads_what_the_page_says() -> None:
    only, none = help_lists(TEXT)
    loaded = imported_modules("--help")
    assert "volimg.cli" in loaded
    ours = {m for m in loaded if is_within(m, "volimg")}
    unexpected = sorted(m for m in ours if not matches(m, only))
    assert not unexpected, f"volimg --help loads {unexpected}: not in the page's start-up list"
    heavy = sorted(m for m in loaded if any(is_within(m, name) for name in none))
    assert not heavy, f"volimg --help loads {heavy}: the page says it loads none of {none}"


# -- the checks, shown failing -------------------------------------------------------

VIOLATIONS = {
    # check -> (file to change, line to add, what the check must say)
    "layers": ("planner/placement.py", "import volimg.gateway", "volimg.planner.placement imports volimg.gateway"),
    "layers-lazy": ("commands/plan.py", "def _f() -> None:\n    import volimg.gateway", "volimg.commands.plan imports volimg.gateway"),
    "openstack": ("core.py", "def _f() -> None:\n    import openstack", "volimg.core imports openstack"),
    "rich": ("render.py", "import rich.table", "volimg.render imports rich.table"),
    "sandbox": ("batch.py", "def _f() -> None:\n    from volimg.sandbox import Sandbox", "volimg.batch imports volimg.sandbox"),
    "cycle": ("model.py", "from volimg import events", "volimg.events -> volimg.model"),
    "cycle-package": ("gateway/session.py", "from volimg.gateway import Gateway as G", "volimg.gateway.session"),
    "unmapped": ("unmapped.py", "", "volimg.unmapped"),
}  # fmt: skip


def _checks(package: Path, doc: str) -> dict[str, list[str]]:
    row = {name: row for row in confinements(doc) for name in row.packages}
    return {
        "layers": layer_violations(package, doc),
        "openstack": confinement_violations(package, doc, row["openstack"]),
        "rich": confinement_violations(package, doc, row["rich"]),
        "sandbox": confinement_violations(package, doc, row["volimg.sandbox"]),
        "cycle": [" -> ".join(c) for c in import_cycles(package)],
        "unmapped": unmapped_modules(package, doc) + row_problems(package, doc),
    }


@pytest.mark.parametrize("violation", VIOLATIONS)
def test_each_check_catches_a_deliberate_violation(violation: str, tmp_path: Path) -> None:
    """A copy of volimg/ with one bad import: its check names it, the others stay quiet."""
    package = tmp_path / "volimg"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    file, line, said = VIOLATIONS[violation]
    target = package / file
    target.write_text((target.read_text() if target.exists() else "") + "\n" + line + "\n")
    check = violation.split("-")[0]
    for name, problems in _checks(package, TEXT).items():
        if name == check:
            assert any(said in problem for problem in problems), (name, problems)
        elif not (name == "layers" and check in ("sandbox", "cycle")):
            # An import of the sandbox, or one that closes a cycle, breaks a row too.
            assert problems == [], (name, problems)


def test_a_row_for_a_module_that_is_gone_is_caught() -> None:
    renamed = TEXT.replace("| `volimg.files` |", "| `volimg.old_files` |", 1)
    assert vanished_modules(PACKAGE, renamed) == [
        "docs/architecture.md names volimg.old_files, which does not exist "
        "(remove its row, or mark it (arriving))"
    ]
    assert unmapped_modules(PACKAGE, renamed) == [
        "volimg.files (volimg/files.py) is not on docs/architecture.md's map"
    ]
    arriving = TEXT.replace("| `volimg.files` |", "| `volimg.old_files` (arriving) |", 1)
    assert vanished_modules(PACKAGE, arriving) == []
