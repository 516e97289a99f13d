"""uWSGI entry point for Glance: ``glance.wsgi.api:application`` with BEGIN IMMEDIATE.

glance 33 has no standalone server any more (``glance-api`` only prints that it is
unsupported); it is served as a WSGI app that reads ``OS_GLANCE_CONFIG_DIR``.
"""

from realstack import sqlite_txn

sqlite_txn.install()

from glance.wsgi.api import application  # noqa: E402

__all__ = ["application"]
