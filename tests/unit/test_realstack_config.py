"""The real tier's Keystone issues short-lived tokens (restarts on a changed template:
tests/unit/test_realstack_restart.py)."""

from __future__ import annotations

from tests.realcloud import stack as realstack


def test_the_real_tier_tokens_live_125_s() -> None:
    """Shorter than keystoneauth's 120 s renewal margin plus 5 s (test_token_expiry.py)."""
    template = (realstack.TEMPLATES / "keystone.conf").read_text()
    assert "\nexpiration = 125\n" in template
