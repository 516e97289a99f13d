"""tests/realcloud/stack.py notices a changed template, so `up` restarts the services."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.realcloud import stack as realstack


def test_a_changed_template_makes_the_running_config_stale(tmp_path: Path) -> None:
    stack = realstack.Stack(state=tmp_path, port_base=27000, python=sys.executable)
    assert realstack.stale_config(stack) is not None  # nothing rendered yet

    realstack.render(stack)
    assert realstack.stale_config(stack) is None

    keystone_conf = tmp_path / "keystone" / "keystone.conf"
    keystone_conf.write_text(
        keystone_conf.read_text().replace("expiration = 125", "expiration = 86400")
    )
    assert realstack.stale_config(stack) == "keystone.conf of keystone changed"


def test_the_real_tier_tokens_live_125_s() -> None:
    """Shorter than keystoneauth's 120 s renewal margin plus 5 s (test_token_expiry.py)."""
    template = (realstack.TEMPLATES / "keystone.conf").read_text()
    assert "\nexpiration = 125\n" in template
