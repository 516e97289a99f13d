"""TLS: verification on by default, --insecure / verify: false off (with one warning),
and a cacert from clouds.yaml honoured; against the sandbox over loopback HTTPS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import REPO_ROOT, CloudUnderTest
from tests.scenarios.conftest import Run, make_runner
from volimg.sandbox import Sandbox, Timings

WARNING = "warning: TLS certificates are not verified"


@pytest.fixture
def tls_sandbox() -> Iterator[Sandbox]:
    with Sandbox(seed="demo", timings=Timings.instant(), tls=True) as sb:
        yield sb


def run_with(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: Any, *args: str
) -> Run:
    """volimg against the sandbox, with its clouds.yaml changed by ``edit``."""
    config = yaml.safe_load(sandbox.clouds_yaml.read_text())
    for cloud in config["clouds"].values():
        edit(cloud)
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    runner = make_runner(CloudUnderTest("sandbox", path, sandbox.admin_cloud, sandbox.member_cloud))
    return runner(*args)


def keep(_cloud: dict[str, Any]) -> None:
    pass


def without_cacert(cloud: dict[str, Any]) -> None:
    del cloud["cacert"]


def verify_false(cloud: dict[str, Any]) -> None:
    del cloud["cacert"]
    cloud["verify"] = False


def test_the_sandbox_serves_https_with_its_own_ca(tls_sandbox: Sandbox) -> None:
    assert tls_sandbox.url.startswith("https://")
    assert tls_sandbox.tls_files is not None
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls_sandbox.url + "/identity/v3", timeout=5)
    answer = requests.get(
        tls_sandbox.url + "/identity/v3", verify=str(tls_sandbox.tls_files.ca_cert), timeout=5
    )
    assert answer.status_code == 200
    assert answer.json()["version"]["links"][0]["href"].startswith("https://")


def test_a_cacert_from_clouds_yaml_is_honoured_end_to_end(
    tls_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_with(tls_sandbox, tmp_path, monkeypatch, keep, "upload", "boot-vol", "-f", "json")

    assert run.exit_code == 0, run
    assert set(run.doc["image"]["stores"]) == {"fast", "cheap", "archive"}  # Cinder over TLS too
    assert WARNING not in run.stderr


def test_verification_is_on_by_default_and_an_unknown_ca_is_one_line_exit_1(
    tls_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_with(tls_sandbox, tmp_path, monkeypatch, without_cacert, "plan", "boot-vol")

    assert run.exit_code == 1, run
    assert "CERTIFICATE_VERIFY_FAILED" in run.stderr
    assert "Traceback" not in run.stderr
    assert len([line for line in run.stderr.splitlines() if "error:" in line]) == 1


@pytest.mark.parametrize(
    ("edit", "flags"),
    [
        pytest.param(without_cacert, ("--insecure",), id="--insecure"),
        pytest.param(verify_false, (), id="verify-false"),
    ],
)
def test_verification_off_works_and_warns_once(
    tls_sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    edit: Any,
    flags: tuple[str, ...],
    recwarn: pytest.WarningsRecorder,
) -> None:
    run = run_with(tls_sandbox, tmp_path, monkeypatch, edit, *flags, "upload", "boot-vol")

    assert run.exit_code == 0, run
    assert run.stderr.count(WARNING) == 1, run.stderr
    assert not [w for w in recwarn if "InsecureRequestWarning" in type(w.message).__name__]


def test_volimg_sandbox_tls_serves_https_and_writes_the_cacert(tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "volimg", "sandbox", "--tls", "--speed", "instant"),
            *("--clouds-yaml", str(clouds)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not clouds.exists():
            assert time.monotonic() < deadline, server.stderr
            time.sleep(0.1)
        cacert = yaml.safe_load(clouds.read_text())["clouds"]["sandbox"]["cacert"]
        env.update(OS_CLIENT_CONFIG_FILE=str(clouds), OS_CLOUD="sandbox")
        plan = subprocess.run(
            [sys.executable, "-m", "volimg", "plan", "boot-vol"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert plan.returncode == 0, plan.stderr
        assert Path(cacert).exists()
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "https://" in stderr
