"""What README, the guide and --help say about options and exit codes is what the CLI does."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from tests.conftest import REPO_ROOT
from volimg.cli import cli
from volimg.errors import ExitCode

README = (REPO_ROOT / "README.md").read_text()
GUIDE = (REPO_ROOT / "docs" / "guide.md").read_text()


def exit_codes_in_table(markdown: str) -> set[int]:
    section = markdown.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(m) for m in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)}


def options_of(command: str) -> set[str]:
    found: set[str] = set()
    for param in cli.commands[command].params:
        if isinstance(param, click.Option):
            found.update(param.opts)
            found.update(param.secondary_opts)
    return found


@pytest.mark.parametrize("document", [README, GUIDE], ids=["README", "guide"])
def test_the_exit_code_tables_list_every_exit_code(document: str) -> None:
    assert exit_codes_in_table(document) == {int(code) for code in ExitCode}


def test_volimg_help_lists_every_exit_code() -> None:
    shown = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
    listed = {int(n) for n in re.findall(r"(\d+) [a-z]", shown.split("Exit codes:", 1)[1])}
    assert listed == {int(code) for code in ExitCode}


def test_readme_lists_the_options_of_upload_and_plan_as_they_are() -> None:
    both, upload_only = README.split("Options of `upload` and `plan`: ", 1)[1].split(
        "`upload`\nalone: ", 1
    )
    upload_only = upload_only.split(". Global options", 1)[0]

    def flags(text: str) -> set[str]:
        return {
            flag
            for group in re.findall(r"`([^`]+)`", text)
            for flag in re.findall(r"--?[a-z][a-z-]*", group)
        }

    assert flags(both) <= options_of("plan") & options_of("upload")
    assert flags(upload_only) <= options_of("upload")
    assert not flags(upload_only) & options_of("plan")
    assert options_of("plan") - {"-h", "--help"} <= flags(both)


def test_the_commands_that_take_format_are_those_the_guide_names() -> None:
    sentence = (
        "Every command that prints a result takes `-f/--format table|json` (`upload` and "
        "`audit`\nalso `ndjson`); `sandbox` and `completion` do not."
    )
    assert sentence in GUIDE
    without = {"sandbox", "completion"}
    for name in cli.commands:
        assert ("-f" in options_of(name)) == (name not in without), name
    for name, formats in (("upload", "ndjson"), ("audit", "ndjson")):
        help_text = CliRunner().invoke(cli, [name, "--help"]).output
        assert formats in help_text, name


def test_bench_readme_names_every_bench_script_and_what_quotes_it() -> None:
    """Each benchmark is listed in bench/README.md, and the doc it names quotes it."""
    readme = (REPO_ROOT / "bench" / "README.md").read_text()
    rows = re.findall(
        r"^\| `bench/([a-z_]+\.py)[^`]*` \| [^|]+ \| (docs/[a-z-]+\.md) \|$", readme, re.M
    )
    helpers = {"run.py", "floor_stores.py"}  # run.py is the page's own; floor_stores.py its probe
    scripts = {p.name for p in (REPO_ROOT / "bench").glob("*.py")} - helpers
    assert {name for name, _ in rows} == scripts
    for name, doc in rows:
        assert f"bench/{name}" in (REPO_ROOT / doc).read_text(), (name, doc)
