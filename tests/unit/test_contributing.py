"""CONTRIBUTING.md shows only commands that exist, and names only files that exist.

Each line of its ``sh`` blocks is read as a command (nothing is run): the programs are
the venv's or ``python3``; the scripts, modules and paths it names are in the checkout;
pytest's ``-m`` names markers pyproject.toml declares; a script's subcommand and
options appear in the script. Paths, test names and links in the prose exist too, and
the set-up command is the README's own test command.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from importlib.metadata import metadata
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

DOC = REPO_ROOT / "CONTRIBUTING.md"
TEXT = DOC.read_text()
VENV_BIN = ".venv/bin/"
MADE_BY_THE_COMMANDS = (".venv", ".realcloud")  # paths the commands themselves create


def sh_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", markdown, flags=re.M | re.S)


def commands(markdown: str) -> Iterator[list[str]]:
    """Each command of each ``sh`` block, split as the shell would (``&&`` separates)."""
    for block in sh_blocks(markdown):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words:
                end = words.index("&&") if "&&" in words else len(words)
                yield words[:end]
                words = words[end + 1 :]


def declared_markers(config: pytest.Config) -> set[str]:
    """The markers pyproject.toml declares, as pytest read them."""
    return {line.split(":", 1)[0].strip() for line in config.getini("markers")}


def _exists(path: str) -> bool:
    return path.startswith(MADE_BY_THE_COMMANDS) or (REPO_ROOT / path.split("::")[0]).exists()


def _module_file(module: str) -> str | None:
    """The checkout's file of a dotted module name, relative to the checkout, if any."""
    base = Path(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__main__.py"):
        if (REPO_ROOT / path).is_file():
            return str(path)
    return None


def pytest_problems(args: list[str], markers: set[str]) -> list[str]:
    problems = []
    words = iter(args)
    for word in words:
        if word == "-m":
            expression = next(words)
            unknown = set(re.findall(r"[\w-]+", expression)) - {"and", "or", "not"} - markers
            problems += [f"pytest -m names the undeclared marker {m!r}" for m in unknown]
        elif word in ("-k", "-p"):
            next(words)
        elif not word.startswith("-") and not _exists(word):
            problems.append(f"pytest runs {word}, which does not exist")
    return problems


def script_problems(script: str, args: list[str]) -> list[str]:
    path = REPO_ROOT / script
    if not path.is_file():
        return [f"no script {script}"]
    source = path.read_text()
    problems = []
    words = iter(args)
    positional_seen = False
    for word in words:
        if word.startswith("--"):
            if f'"{word}"' not in source:
                problems.append(f"{script} has no option {word}")
            if word in ("--state", "--output", "--runs"):
                next(words)  # its value
        elif not positional_seen and not _looks_like_path(word):
            positional_seen = True
            # argparse's choices when the script has them, else the word quoted anywhere
            choices = re.findall(
                r'"([\w-]+)"', " ".join(re.findall(r"choices=\(([^)]*)\)", source))
            )
            known = word in choices if choices else f'"{word}"' in source
            if not known:
                problems.append(f"{script} has no command {word!r}")
    return problems


def _looks_like_path(word: str) -> bool:
    return "/" in word or word.startswith(".")


def python_problems(args: list[str], markers: set[str]) -> list[str]:
    """``python -m MODULE ...`` or ``python SCRIPT ...``."""
    if args[0] != "-m":
        return script_problems(args[0], args[1:])
    module, rest = args[1], args[2:]
    if module == "venv":
        return [] if rest == [".venv"] else [f"python -m venv {rest}: the venv is .venv"]
    if module == "pytest":
        return pytest_problems(rest, markers)
    path = _module_file(module)
    return script_problems(path, rest) if path else [f"python -m {module}: no such module here"]


def command_problems(words: list[str], markers: set[str]) -> list[str]:
    program, args = words[0], words[1:]
    if program in ("python3", "python"):
        return python_problems(args, markers)
    if not program.startswith(VENV_BIN):
        return [f"{shlex.join(words)}: run from the venv or with python3"]
    name = program.removeprefix(VENV_BIN)
    if not (Path(sys.executable).parent / name).exists():
        return [f"{program}: the test extra installs no {name}"]
    if name in ("python", "python3"):
        return python_problems(args, markers)
    if name == "pip":
        extras = metadata("volimg").get_all("Provides-Extra") or []
        wanted = re.findall(r"\[(\w+)\]", " ".join(args))
        return [
            f"pip installs the extra {e!r}, which is not declared"
            for e in wanted
            if e not in extras
        ]
    if name == "ruff":
        paths = [a for a in args[1:] if not a.startswith("-")]
        return [f"ruff {args[0]} {p}: no such path" for p in paths if not _exists(p)]
    if name == "mypy":
        return [] if not args else [f"mypy takes its files from pyproject.toml, not {args}"]
    return [f"{shlex.join(words)}: not a command this test knows how to check"]


def test_the_page_shows_commands() -> None:
    shown = list(commands(TEXT))
    assert len(shown) >= 15
    assert any(words[:3] == [".venv/bin/python", "-m", "pytest"] for words in shown)


def unique(shown: Iterator[list[str]]) -> list[list[str]]:
    """Each command once, in the page's order (one is shown in two sections)."""
    return [list(words) for words in dict.fromkeys(tuple(words) for words in shown)]


@pytest.mark.parametrize("words", unique(commands(TEXT)), ids=shlex.join)
def test_every_command_shown_exists(words: list[str], pytestconfig: pytest.Config) -> None:
    problems = command_problems(words, declared_markers(pytestconfig))
    assert not problems, "\n".join(problems)


def test_the_set_up_is_the_readmes_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    (test_command,) = [block for block in sh_blocks(readme) if "pytest" in block]
    assert test_command in sh_blocks(TEXT)


def test_every_path_link_and_test_named_in_the_prose_exists() -> None:
    named = set(re.findall(r"\b((?:docs|tests|bench|volimg)/[\w./-]*[\w/])", TEXT))
    named |= {link for link in re.findall(r"\]\(([^)#]+)\)", TEXT) if "://" not in link}
    named |= {"setup.py", "pyproject.toml", "CHANGELOG.md"} & set(re.findall(r"[\w.]+", TEXT))
    missing = sorted(path for path in named if not _exists(path))
    assert not missing, f"CONTRIBUTING.md names {missing}, which do not exist"

    tests = {p: p.read_text() for p in (REPO_ROOT / "tests").rglob("test_*.py")}
    for name in set(re.findall(r"`(test_\w+)`", TEXT)):
        assert any(f"def {name}(" in source for source in tests.values()), name


def test_the_checker_catches_what_does_not_exist(pytestconfig: pytest.Config) -> None:
    """The checks above are not vacuous: made-up commands fail them."""
    for line in (
        ".venv/bin/python -m pytest -m 'not realclouds'",
        ".venv/bin/python -m pytest tests/unit/test_nothing.py",
        "python3 tests/realcloud/stack.py reboot --state .realcloud",
        "python3 tests/realcloud/stack.py state --state .realcloud",
        "python3 bench/run.py --fast",
        ".venv/bin/python -m tests.scenarios.no_such_matrix --write",
        ".venv/bin/black volimg",
        "pytest tests",
    ):
        assert command_problems(shlex.split(line), declared_markers(pytestconfig)), line
