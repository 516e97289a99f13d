"""uWSGI entry point for Keystone: ``keystone.wsgi.api:application`` with BEGIN IMMEDIATE.

keystone 30 ships no ``keystone-wsgi-public`` script; the app reads
``OS_KEYSTONE_CONFIG_DIR``.
"""

from realstack import sqlite_txn

sqlite_txn.install()

from keystone.wsgi.api import application  # noqa: E402

__all__ = ["application"]
