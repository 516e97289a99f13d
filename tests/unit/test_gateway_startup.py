"""What opening a connection costs: openstacksdk's services volimg never calls load on
first use (volimg.gateway.services), and clouds.yaml is parsed once.

The services' finder must be in place before openstacksdk's first import, and this test
process may have imported openstacksdk already, so those checks run in a fresh
interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from volimg.gateway.services import USED, described_service

DEFER = "from volimg.gateway.services import defer_unused_services\ndefer_unused_services()\n"


def _run(code: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return proc.stdout.splitlines()


def _proxies_loaded_with_openstacksdk(prelude: str) -> set[str]:
    code = f"{prelude}import openstack.connection, sys\nprint('\\n'.join(sys.modules))"
    return {m for m in _run(code) if m.endswith("._proxy")}


def test_openstacksdk_loads_without_the_proxies_of_the_unused_services() -> None:
    deferred = _proxies_loaded_with_openstacksdk(DEFER)
    assert {
        "openstack.identity.v3._proxy",
        "openstack.image.v2._proxy",
        "openstack.block_storage.v3._proxy",
    } <= deferred
    # These nine load with openstacksdk unless deferred (openstack.cloud loads the rest).
    assert not deferred & {
        "openstack.load_balancer.v2._proxy",
        "openstack.key_manager.v1._proxy",
        "openstack.clustering.v1._proxy",
        "openstack.placement.v1._proxy",
        "openstack.workflow.v2._proxy",
    }
    assert _proxies_loaded_with_openstacksdk("") > deferred


def test_a_deferred_service_hands_over_to_its_real_description_on_first_use() -> None:
    lines = _run(
        DEFER + "import sys\n"
        "from openstack.connection import Connection\n"
        "stand_in = Connection.load_balancer  # the class's attribute: the description\n"
        "print(type(stand_in).__name__, stand_in.service_type)\n"
        "print('openstack.load_balancer.v2._proxy' in sys.modules)\n"
        "class Conn:  # what ServiceDescription.__get__ reads of a connection\n"
        "    _proxies = {'load-balancer': 'the proxy'}\n"
        "print(stand_in.__get__(Conn(), Conn))\n"
        "print('openstack.load_balancer.v2._proxy' in sys.modules)\n"
    )
    assert lines == ["LoadBalancerService load-balancer", "False", "the proxy", "True"]


def test_the_services_the_gateway_calls_load_as_usual() -> None:
    """Every ``self._conn.<service>`` in the gateway is a service in ``USED``."""
    from openstack.connection import Connection
    from openstack.service_description import ServiceDescription

    called = set()
    for path in (REPO_ROOT / "volimg" / "gateway").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "_conn"
            ):
                called.add(node.attr)
    services = {
        name for name in called if isinstance(getattr(Connection, name, None), ServiceDescription)
    }
    assert services == {"image", "block_storage"}
    for name in services:
        real = type(getattr(Connection, name)).__module__  # a stand-in's is volimg's
        assert described_service(real) in USED, (name, real)


def test_only_openstacksdks_service_description_modules_are_deferred() -> None:
    assert described_service("openstack.network.network_service") == "network"
    assert described_service("openstack.network.v2._proxy") is None
    assert described_service("openstack.network_service") is None
    assert described_service("volimg.image.image_service") is None


def test_the_clouds_yaml_openstacksdk_read_is_not_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """volimg parses clouds.yaml itself only when openstacksdk skipped it (to name the
    parse error): pure-Python YAML is a percent of `volimg stores`'s start-up."""
    import yaml

    from volimg.gateway import connect

    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  here:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n"
        "      username: u\n      password: p\n      project_name: p\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    parsed: list[str] = []
    real = yaml.safe_load

    def recording(stream: Any) -> Any:
        parsed.append(getattr(stream, "name", "?"))
        return real(stream)

    monkeypatch.setattr(yaml, "safe_load", recording)
    connect("here", None).close()  # authentication waits for the first request
    assert parsed.count(str(clouds)) == 1
