"""Shell completion through click's own protocol (``_VOLIMG_COMPLETE``), on the sandbox.

Commands, options and option values complete from the click command tree, VOLUME and
IMAGE from the cloud (cached under $XDG_CACHE_HOME/volimg), and whatever the cloud
does, a completion prints nothing but its answer.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.conftest import REPO_ROOT, CloudUnderTest
from volimg import completion
from volimg.cli import cli
from volimg.commands.completion import SHELLS
from volimg.sandbox import Sandbox, Timings


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets an empty cache of its own."""
    home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    return home


def _cword(line: str) -> str:
    words = line.split()
    return str(len(words) if line.endswith(" ") else len(words) - 1)


def complete(line: str, *, shell: str = "bash") -> list[str]:
    """What TAB offers after ``line`` (e.g. "volimg upload b"), as the shell asks click.

    The answer must be the only output: nothing on stderr, exit 0.
    """
    result = CliRunner().invoke(
        cli,
        [],
        prog_name="volimg",
        env={
            "_VOLIMG_COMPLETE": f"{shell}_complete",
            "COMP_WORDS": line,
            "COMP_CWORD": _cword(line),
        },
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result
    assert result.stderr == "", result.stderr
    lines = [line for line in result.stdout.splitlines() if line]  # nothing: one "\n"
    if shell == "zsh":  # type, value, help: three lines per item
        return [f"{lines[i + 1]}:{lines[i + 2]}" for i in range(0, len(lines), 3)]
    return [line.split(",", 1)[1] for line in lines]


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def names(offered: list[str]) -> list[str]:
    """Without the ids that a prefix such as "b" may also match."""
    return [value for value in offered if not _UUID.match(value)]


def client_requests(sandbox: Sandbox) -> int:
    return len(sandbox.requests.filter(origin="client"))


# --- from the command tree --------------------------------------------------------------


def test_every_command_completes() -> None:
    assert set(complete("volimg ")) == set(cli.commands)


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_option_of_every_command_completes(name: str) -> None:
    command = cli.commands[name]
    offered = set(complete(f"volimg {name} --"))
    expected = {
        opt
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("--")
    }
    assert expected <= offered, expected - offered


def test_global_options_complete() -> None:
    assert {"--os-cloud", "--no-color", "--verbose", "--version"} <= set(complete("volimg --"))


@pytest.mark.parametrize(
    "name",
    sorted(n for n, c in cli.commands.items() if any(p.name == "output_format" for p in c.params)),
)
def test_format_completes_its_choices(name: str) -> None:
    option = next(p for p in cli.commands[name].params if p.name == "output_format")
    assert isinstance(option.type, click.Choice)
    assert complete(f"volimg {name} -f ") == list(option.type.choices)
    assert "json" in complete(f"volimg {name} -f j")


def test_os_cloud_completes_the_clouds_of_clouds_yaml(
    sandbox_cloud: CloudUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert complete("volimg --os-cloud ") == ["sandbox", "sandbox-member"]
    assert complete("volimg --os-cloud sandbox-") == ["sandbox-member"]
    assert sandbox_cloud.sandbox is not None
    assert len(sandbox_cloud.sandbox.requests) == 0  # a local read, no request

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/openstack/clouds.yaml either
    monkeypatch.chdir(tmp_path)
    assert complete("volimg --os-cloud ") == []


def test_the_completion_command_completes_its_shells() -> None:
    assert complete("volimg completion ") == list(SHELLS)


# --- from the cloud ----------------------------------------------------------------------


def test_volume_names_come_from_the_cloud_then_from_the_cache(
    sandbox_cloud: CloudUnderTest, cache_home: Path
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    before = client_requests(sandbox)

    assert names(complete("volimg --os-cloud sandbox upload b")) == ["boot-vol", "busy-vol"]
    asked = client_requests(sandbox)
    assert sandbox.requests.filter(origin="client", path=r"^/volume/v3/[^/]+/volumes$")
    assert asked > before

    # The second TAB answers from the cache: not one request.
    assert names(complete("volimg --os-cloud sandbox plan b")) == ["boot-vol", "busy-vol"]
    assert client_requests(sandbox) == asked


def test_names_complete_on_every_cloud(cloud: CloudUnderTest) -> None:
    """The same listings from the real Cinder and Glance (real tier) as from the sandbox."""
    volumes = names(complete(f"volimg --os-cloud {cloud.admin_cloud} upload b"))
    assert {"boot-vol", "busy-vol"} <= set(volumes)
    assert "data-vol" not in volumes
    assert "cirros-base" in names(
        complete(f"volimg --os-cloud {cloud.admin_cloud} replicate --like c")
    )
    stores = complete(f"volimg --os-cloud {cloud.admin_cloud} replicate x --store ")
    assert {"fast", "cheap", "archive"} <= set(stores)


def test_a_completion_from_the_cache_does_not_import_openstacksdk(
    sandbox_cloud: CloudUnderTest,
) -> None:
    """What keeps a second TAB quick: 0.10-0.12 s median here over 20 runs, not 0.4-0.7 s."""
    assert "boot-vol" in complete("volimg --os-cloud sandbox upload ")  # fills the cache
    env = {
        **os.environ,
        "_VOLIMG_COMPLETE": "bash_complete",
        "COMP_WORDS": "volimg --os-cloud sandbox upload b",
        "COMP_CWORD": "4",
    }
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "volimg"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "plain,boot-vol" in proc.stdout.splitlines()
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "volimg" in imported
    assert not imported & {"openstack", "keystoneauth1", "requests"}


def test_a_volume_id_completes_once_its_first_characters_are_typed(
    sandbox_cloud: CloudUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    monkeypatch.setenv("OS_CLOUD", "sandbox")  # the environment's cloud, as OS_CLOUD
    boot = next(v for v in sandbox.cloud.volumes.values() if v.name == "boot-vol")

    assert complete(f"volimg upload {boot.id[:6]}") == [boot.id]
    assert boot.id not in complete("volimg upload ")  # names only, for an empty prefix
    # zsh and fish show the id beside a name, and the name beside an id.
    assert f"boot-vol:{boot.id}" in complete("volimg upload b", shell="zsh")


def test_a_shared_volume_name_is_offered_once_and_says_it_is_shared(
    sandbox_cloud: CloudUnderTest,
) -> None:
    offered = complete("volimg --os-cloud sandbox upload tw", shell="zsh")
    assert offered == ["twin:2 volumes share this name"]


def test_image_names_complete_for_replicate_and_like(sandbox_cloud: CloudUnderTest) -> None:
    assert names(complete("volimg --os-cloud sandbox replicate c")) == ["cirros-base"]
    assert names(complete("volimg --os-cloud sandbox replicate x --like c")) == ["cirros-base"]


def test_stores_complete_for_store_and_also_store_without_read_only_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Sandbox(timings=Timings.instant(), read_only_stores=("archive",)) as sandbox:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(sandbox.clouds_yaml))
        monkeypatch.setenv("OS_CLOUD", sandbox.admin_cloud)
        assert complete("volimg replicate img --store ") == ["cheap", "fast"]
        assert complete("volimg upload vol --also-store c") == ["cheap"]


def test_the_cache_is_private_atomic_and_short_lived(
    sandbox_cloud: CloudUnderTest, cache_home: Path
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    complete("volimg --os-cloud sandbox upload ")

    directory = cache_home / "volimg"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert len(files) == 1
    assert files[0].suffix == ".json"  # no temporary file left behind
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600

    # Older than CACHE_TTL: the next TAB asks the cloud again.
    asked = client_requests(sandbox)
    old = time.time() - completion.CACHE_TTL - 1
    os.utime(files[0], (old, old))
    assert "boot-vol" in complete("volimg --os-cloud sandbox upload ")
    assert client_requests(sandbox) > asked


def test_an_unwritable_cache_still_completes(
    sandbox_cloud: CloudUnderTest, cache_home: Path
) -> None:
    cache_home.write_text("a file where the cache directory would be")
    assert "boot-vol" in complete("volimg --os-cloud sandbox upload ")


def test_each_cloud_has_its_own_cache(sandbox_cloud: CloudUnderTest) -> None:
    assert "boot-vol" in complete("volimg --os-cloud sandbox upload ")
    # The member's project has no volumes: the admin's cached names are not shown.
    assert complete("volimg --os-cloud sandbox-member upload ") == []


# --- whatever the cloud does, nothing but the answer -------------------------------------


def test_a_cloud_that_is_down_completes_nothing_quietly(
    sandbox_cloud: CloudUnderTest, cache_home: Path
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    sandbox.stop()

    assert complete("volimg --os-cloud sandbox upload ") == []
    assert not (cache_home / "volimg").exists() or not list((cache_home / "volimg").iterdir())


def test_a_wrong_password_completes_nothing_quietly(
    sandbox_cloud: CloudUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    wrong = tmp_path / "clouds.yaml"
    wrong.write_text(
        sandbox_cloud.clouds_yaml.read_text().replace(sandbox.admin.password, "not-the-password")
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(wrong))

    assert complete("volimg --os-cloud sandbox upload ") == []
    assert sandbox.requests.filter(path="/identity/v3/auth/tokens", status=401)


def test_no_cloud_configured_completes_nothing_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "none.yaml"))
    for name in ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)

    assert complete("volimg upload ") == []
    assert complete("volimg --os-cloud nowhere replicate --store ") == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/identity/v3/auth/tokens", 503),
        ("GET", "/volume/v3/.*/volumes", 500),
        ("GET", "/image/v2/info/stores", 403),
    ],
)
def test_an_error_answer_completes_nothing_quietly_and_is_not_retried(
    sandbox_cloud: CloudUnderTest, method: str, path: str, status: int
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    sandbox.faults.respond(method, path, status, times=None)

    line = "volimg --os-cloud sandbox " + (
        "replicate x --store " if "stores" in path else "upload "
    )
    assert complete(line) == []
    assert len(sandbox.requests.filter(method=method, path=path)) == 1  # asked once, no retry


def test_a_slow_cloud_is_given_up_on_after_the_request_timeout(
    sandbox_cloud: CloudUnderTest,
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    sandbox.faults.delay("GET", "/volume/v3/.*/volumes", seconds=completion.REQUEST_TIMEOUT + 3)

    started = time.monotonic()
    assert complete("volimg --os-cloud sandbox upload ") == []
    # One timeout, not one per retry.
    assert time.monotonic() - started < completion.REQUEST_TIMEOUT + 2.5


def test_the_real_entry_point_prints_no_traceback_when_the_cloud_is_down(
    sandbox_cloud: CloudUnderTest, cache_home: Path
) -> None:
    sandbox = sandbox_cloud.sandbox
    assert sandbox is not None
    sandbox.stop()
    env = {
        **os.environ,
        "_VOLIMG_COMPLETE": "zsh_complete",
        "COMP_WORDS": "volimg --os-cloud sandbox upload ",
        "COMP_CWORD": "4",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "volimg"], env=env, capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "", "")


# --- the scripts -------------------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_the_completion_command_prints_clicks_script(shell: str) -> None:
    from click.shell_completion import get_completion_class

    result = CliRunner().invoke(cli, ["completion", shell], prog_name="volimg")
    assert result.exit_code == 0, result
    completion_class = get_completion_class(shell)
    assert completion_class is not None
    expected = completion_class(cli, {}, "volimg", "_VOLIMG_COMPLETE").source()
    assert result.stdout == expected + "\n"
    assert "_VOLIMG_COMPLETE" in result.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_sourcing_the_script_completes_a_volume_name(
    sandbox_cloud: CloudUnderTest, tmp_path: Path
) -> None:
    """The guide's install line, run by a real bash with volimg on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "volimg").write_text(
        f'#!/bin/sh\ncd {REPO_ROOT} && exec {sys.executable} -m volimg "$@"\n'
    )
    (bin_dir / "volimg").chmod(0o755)
    script = (
        'eval "$(volimg completion bash)"\n'
        "COMP_WORDS=(volimg --os-cloud sandbox upload b); COMP_CWORD=4\n"
        "_volimg_completion volimg\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert names(proc.stdout.split()) == ["boot-vol", "busy-vol"], proc


def test_the_guide_states_the_cache_lifetime_and_the_timeout() -> None:
    guide = " ".join((REPO_ROOT / "docs" / "guide.md").read_text().split())
    assert f"cached for {completion.CACHE_TTL:g} s in `$XDG_CACHE_HOME/volimg`" in guide
    assert f"does not answer within {completion.REQUEST_TIMEOUT:g} s" in guide
    assert 'eval "$(volimg completion bash)"' in guide  # what the bash test runs
