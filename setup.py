"""Build hook: generate the man page volimg.1 from the click commands.

Everything else about the package is in pyproject.toml. The page is rendered by
``volimg.manpage`` from the source tree being built (so the build environment needs
volimg's import-time dependencies, click and tenacity: pyproject.toml's
build-system.requires) and installed as share/man/man1/volimg.1 (the wheel's data).
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
MAN_PAGE = Path("build") / "man" / "volimg.1"  # relative: setuptools wants it so


class BuildWithManPage(build_py):
    """build_py, then render volimg.1 next to the build for install_data to pick up."""

    def run(self) -> None:
        super().run()
        sys.path.insert(0, str(HERE))
        try:
            from volimg import __version__
            from volimg.cli import cli
            from volimg.manpage import render
        finally:
            sys.path.remove(str(HERE))
        target = HERE / MAN_PAGE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(cli, name="volimg", version=__version__), encoding="utf-8")


setup(
    cmdclass={"build_py": BuildWithManPage},
    data_files=[("share/man/man1", [str(MAN_PAGE)])],
)
