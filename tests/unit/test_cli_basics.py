"""The command line's own behaviour: help, version, start-up cost, usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from tests.conftest import imported_modules
from volimg import __version__
from volimg.cli import cli


def test_help_and_version_do_not_import_openstacksdk() -> None:
    for args in (["--help"], ["--version"], ["upload", "--help"]):
        modules = imported_modules(*args)
        assert "volimg.cli" in modules
        assert not {m for m in modules if m.split(".")[0] in ("openstack", "keystoneauth1")}, args


def test_help_imports_neither_the_executor_nor_tenacity_nor_rich() -> None:
    """The start-up floor docs/performance.md measures: help is click and volimg.cli."""
    heavy = ("tenacity", "rich", "logging", "volimg.executor", "volimg.planner", "volimg.events")
    for args in (["--help"], ["--version"], ["upload", "--help"]):
        modules = imported_modules(*args)
        assert "volimg.cli" in modules
        assert not {m for m in modules if m.startswith(heavy)}, args


def test_help_leaves_completion_and_the_app_context_until_they_are_used() -> None:
    """Completion callbacks import volimg.completion when a shell asks, not at start-up."""
    for args in (["--help"], ["--version"]):
        modules = imported_modules(*args)
        assert "volimg.cli" in modules
        assert not modules & {"volimg.completion", "volimg.context"}, args
    # What the completion module would have brought (--version reads package metadata,
    # which imports json on some Pythons, so only --help is checked for these).
    assert not imported_modules("--help") & {"hashlib", "json"}


def test_version_names_volimg_openstacksdk_and_python() -> None:
    from importlib.metadata import version
    from platform import python_version

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == (
        f"volimg {__version__} (openstacksdk {version('openstacksdk')}, Python {python_version()})\n"
    )


def _modules_of(code: str) -> set[str]:
    """The modules a ``python -c CODE`` holds at its end."""
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(proc.stdout.split())


# What `volimg --help` may load beyond `import click`: volimg's entry point, group and
# error tree, the signal handler, and what click's help formatting imports when it runs
# (gettext's locale lookup, the text wrapper).
HELP_BEYOND_CLICK = {
    "volimg",
    "volimg.cli",
    "volimg.errors",
    "volimg.signals",
    "signal",
    "locale",
    "_locale",
    "textwrap",
    "click._textwrap",
}


def test_help_is_click_and_the_group_only() -> None:
    """The 2.5x `python -c pass` target (docs/performance.md) leaves volimg about 8 ms
    beyond click's import: --help loads nothing else (not shutil: volimg.cli sizes the
    help itself; not the option stacks or the completion module; not shlex)."""
    click_alone = _modules_of("import atexit, os, runpy, sys, click")
    assert imported_modules("--help") - click_alone <= HELP_BEYOND_CLICK
    assert not imported_modules("--help") & {"shutil", "shlex", "volimg.commands.options"}


def test_version_does_not_load_package_metadata() -> None:
    """importlib.metadata (email, zipfile, csv, tempfile) would double --version's start-up:
    openstacksdk's version comes from its dist-info directory's name."""
    click_alone = _modules_of("import atexit, os, runpy, sys, click")
    loaded = imported_modules("--version") - click_alone
    assert loaded <= HELP_BEYOND_CLICK | {"platform"}, sorted(loaded - HELP_BEYOND_CLICK)


@pytest.mark.parametrize(
    "distribution", ["openstacksdk", "click", "PyYAML", "dogpile.cache", "typing-extensions"]
)
def test_the_dist_info_version_is_the_one_package_metadata_reads(distribution: str) -> None:
    from importlib.metadata import version

    from volimg.cli import _installed_version

    assert _installed_version(distribution) == version(distribution)


def test_a_distribution_without_a_dist_info_has_no_version_from_it() -> None:
    from volimg.cli import _installed_version

    assert _installed_version("no-such-distribution") is None


@pytest.mark.parametrize("columns", ["40", "72", "100", "250", "0", "wide", None])
def test_help_is_as_wide_as_clicks_own_formatter_makes_it(
    monkeypatch: pytest.MonkeyPatch, columns: str | None
) -> None:
    """VolimgContext sizes the help without shutil, and to the same width as click."""
    import click
    from click import formatting

    from volimg.cli import VolimgContext

    monkeypatch.setattr(formatting, "FORCED_WIDTH", None)  # as outside click's test runner
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert VolimgContext(cli).make_formatter().width == click.HelpFormatter().width


def test_each_commands_help_is_sized_as_the_groups() -> None:
    """A command's context is a VolimgContext too, so its help never imports shutil."""
    from volimg.cli import VolimgContext

    assert cli.context_class is VolimgContext
    assert all(command.context_class is VolimgContext for command in cli.commands.values())


def test_python_dash_m_works() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "volimg", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert "upload" in proc.stdout


def test_a_bad_option_value_is_exit_2_with_a_one_line_reason() -> None:
    result = CliRunner().invoke(cli, ["upload", "vol", "--timeout", "0"])
    assert result.exit_code == 2
    assert "--timeout" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_cloud_configured_is_exit_2_with_a_hint(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "none.yaml"))
    for name in ("OS_CLOUD", "OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["plan", "vol"])
    assert result.exit_code == 2, result.stderr
    assert "--os-cloud" in result.stderr


def test_the_once_per_choices_are_the_periods_volimg_knows() -> None:
    """--once-per spells the periods out (help must not import provenance); they agree."""
    from volimg.commands.options import PERIODS
    from volimg.provenance import Period

    assert tuple(p.value for p in Period) == PERIODS
    assert "volimg.provenance" not in imported_modules("--help")


def test_the_command_table_lists_each_command_with_its_own_help() -> None:
    """`volimg --help` lists the commands from volimg.cli.COMMANDS without importing them."""
    import inspect

    from volimg.cli import COMMANDS

    for name, (_, line) in COMMANDS.items():
        command = cli.commands[name]
        assert command.name == name
        assert line == inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
    assert not {m for m in imported_modules("--help") if m.startswith("volimg.commands")}


def test_the_max_copies_default_in_the_help_is_the_batchs() -> None:
    from volimg.batch.options import BatchOptions
    from volimg.commands.options import DEFAULT_MAX_COPIES
    from volimg.copy_slots import DEFAULT_MAX_COPIES as BATCH_DEFAULT

    assert DEFAULT_MAX_COPIES == BATCH_DEFAULT == BatchOptions().max_copies
