"""The release: ``python -m build`` makes a wheel and an sdist that work outside the checkout.

The wheel (built from the sdist, as ``python -m build`` does, so the sdist is proven
complete too) is installed into a fresh venv and with pipx, each in a temporary
directory, and ``volimg --version`` and ``volimg demo`` run from there: the demo's
sandbox cloud imports every module the product ships. pipx installs the wheel with its
dependencies, as a user's ``pipx install volimg`` would (pip's cache makes that
seconds), which proves the wheel's dependency metadata. The plain venv takes volimg
alone (``--no-deps``) and sees this test environment's dependencies through a ``.pth``
line, which adds the directory to sys.path without running that directory's own
``.pth`` files (so the checkout's editable install stays out of sight).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import click
import pytest

from tests.conftest import REPO_ROOT
from volimg import __version__
from volimg.cli import cli

DEPENDENCIES = sysconfig.get_paths()["purelib"]  # click, openstacksdk, rich, tenacity


def _run(args: list[str | Path], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(kwargs.pop("env", {}))  # type: ignore[arg-type]
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"{args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _site_packages(prefix: Path) -> Path:
    found = list(prefix.glob("lib/python3*/site-packages"))
    assert len(found) == 1, found
    return found[0]


def _see_dependencies(prefix: Path) -> None:
    (_site_packages(prefix) / "volimg_test_dependencies.pth").write_text(DEPENDENCIES + "\n")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", out, REPO_ROOT], cwd=out)
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    wheels = list(dist.glob("volimg-*.whl"))
    assert [w.name for w in wheels] == [f"volimg-{__version__}-py3-none-any.whl"]
    return wheels[0]


def test_build_makes_a_wheel_and_an_sdist(dist: Path, wheel: Path) -> None:
    assert (dist / f"volimg-{__version__}.tar.gz").is_file()


def test_the_wheel_ships_the_man_page_naming_every_command(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        page_name = f"volimg-{__version__}.data/data/share/man/man1/volimg.1"
        assert page_name in archive.namelist()
        page = archive.read(page_name).decode()
        shipped = set(archive.namelist())
    assert page.startswith(".TH VOLIMG 1 ")
    for name, command in cli.commands.items():
        assert f'.SS "volimg {name} ' in page, name
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.opts[-1].replace("-", "\\-") in page, (name, param.opts)
    modules = {
        f"volimg/{p.relative_to(REPO_ROOT / 'volimg')}"
        for p in (REPO_ROOT / "volimg").rglob("*.py")
    }
    assert modules <= shipped, modules - shipped
    assert "volimg/py.typed" in shipped


def _its_own_volimg(env_prefix: Path, volimg: Path, cwd: Path) -> subprocess.Popen[str]:
    """Check ``volimg --version`` and where volimg comes from; start ``volimg demo``."""
    where = _run(
        [env_prefix / "bin" / "python", "-c", "import volimg; print(volimg.__file__)"], cwd=cwd
    )
    assert where.stdout.startswith(str(_site_packages(env_prefix))), (
        where.stdout
    )  # not the checkout's
    version = _run([volimg, "--version"], cwd=cwd)
    assert version.stdout.startswith(f"volimg {__version__} (openstacksdk "), version.stdout
    assert f"Python {sys.version.split()[0]}" in version.stdout
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.Popen(
        [volimg, "demo"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_wheel_installed_in_a_venv_and_with_pipx_runs_version_and_demo(
    wheel: Path, tmp_path: Path
) -> None:
    # A plain venv; its demo runs (seconds, at human pace) while pipx installs.
    prefix = tmp_path / "venv"
    venv.create(prefix, with_pip=False)
    _run(
        [sys.executable, "-m", "pip", "--python", prefix / "bin" / "python", "install", "-q",
         "--no-deps", wheel],
        cwd=tmp_path,
    )  # fmt: skip
    _see_dependencies(prefix)
    assert (prefix / "share" / "man" / "man1" / "volimg.1").is_file()
    demos = [_its_own_volimg(prefix, prefix / "bin" / "volimg", tmp_path)]

    # pipx, with its home, binaries and man pages under tmp_path.
    pipx_env = {
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    _run([sys.executable, "-m", "pipx", "install", wheel], cwd=tmp_path, env=pipx_env)
    assert (tmp_path / "man" / "man1" / "volimg.1").is_file()  # pipx links the wheel's man page
    pipx_venv = tmp_path / "pipx" / "venvs" / "volimg"
    demos.append(_its_own_volimg(pipx_venv, tmp_path / "bin" / "volimg", tmp_path))

    for demo in demos:
        stdout, stderr = demo.communicate(timeout=120)
        assert demo.returncode == 0, stderr
        assert "store cheap    copied" in stdout
        assert "result         ok" in stdout
